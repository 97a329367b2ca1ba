"""Prompt templates for the learned scene backends."""

from __future__ import annotations

import re
import string

FIELDS = ("prompt", "category", "title")


def template_error(template: str) -> str | None:
    """Why a template cannot be used, or None when it is fine."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a valid template ({exc}); write literal braces as {{{{ and }}}}"
    names = [name for _, name, _, _ in parsed if name is not None]
    bad = sorted({n for n in names if n not in FIELDS})
    if bad:
        return f"unknown field(s) {bad}; known: {list(FIELDS)}"
    if any(spec or conv for _, name, spec, conv in parsed if name is not None):
        return "fields take no format spec or conversion"
    if "prompt" not in names:
        return "must contain {prompt}"
    return None


def render(template: str, prompt: str, category: str = "", title: str = "") -> str:
    """The template filled in; whitespace collapsed and separators left by empty fields removed.

    A template wraps the row's scene prompt (or the config's default) in the wording a model
    responds to, e.g. "{prompt}, professional product photography". Fields: `{prompt}` (the row's
    scene prompt, or `[scene] default_prompt`), `{category}` and `{title}` (the row's, when the
    caller passes them, else empty). Empty fields leave no stray separators behind ("a , on"
    becomes "a on").
    """
    text = template.format(prompt=prompt.strip(), category=category.strip(), title=title.strip())
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:])", r"\1", text)  # " ," -> ","
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)  # ", ," -> ","
    return text.strip(" ,;:")
