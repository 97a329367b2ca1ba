"""Prompt safety before generation: clean the catalog's prompt text, bound it, check a blocklist."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from stages.errors import ConfigError

# Controls, format characters (zero-width, bidi overrides), surrogates, private use, separators.
_DROP = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
INJECTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.IGNORECASE)) for name, rx in (
        ("ignore-instructions", r"\b(?:ignore|disregard|forget|override|bypass)\b[^.,;:\n]{0,40}?"
                                r"\b(?:instructions?|prompts?|rules?|guidelines?|polic(?:y|ies)|filters?)\b"),
        ("role-marker", r"(?:^|(?<=[\s,.;]))(?:system|assistant|user|developer)\s*:"),
        ("chat-token", r"<\|[^|>]{0,40}\|>|\[/?(?:INST|SYS)\]|<</?SYS>>|###\s*(?:instruction|system)s?\b"),
        ("new-instructions", r"\b(?:new|updated)\s+instructions?\s*:"),
        ("jailbreak", r"\b(?:jailbreak|developer\s+mode|DAN\s+mode|do\s+anything\s+now)\b"),
    )
)


@dataclass(frozen=True)
class SafetyOptions:
    """[safety]"""

    max_prompt_chars: int = 400  # longer prompts (after clean-up) reject the row
    blocklist: tuple[str, ...] = ()  # words or phrases; a prompt, title or category holding one rejects the row
    blocklist_file: str = ""  # one term a line ('#' comments), relative to config.toml; adds to `blocklist`

    def check(self, where: str) -> None:
        if not 20 <= self.max_prompt_chars <= 10_000:
            raise ConfigError(f"{where}.max_prompt_chars = {self.max_prompt_chars}: must be 20..10000")
        for i, term in enumerate(self.blocklist):
            if not term.strip():
                raise ConfigError(f"{where}.blocklist[{i}] is empty")


@dataclass(frozen=True)
class PromptCheck:
    prompt: str  # cleaned positive prompt, what the scene backend gets
    negative_prompt: str
    title: str
    category: str
    blocked: list[str] = field(default_factory=list)  # reasons; non-empty: the row must not be generated
    stripped: list[str] = field(default_factory=list)  # what was removed, for the record

    @property
    def ok(self) -> bool:
        return not self.blocked

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "blocked": self.blocked, "stripped": self.stripped}


def fold(text: str) -> str:
    """Matching form: NFKC, case-folded, invisible characters gone, non-letters as single spaces."""
    text = "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) not in _DROP)
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


class PromptGuard:
    """Built once per worker: holds the folded blocklist.

    Prompts come from merchant spreadsheets and end up in a text encoder (and, through templates,
    next to the row's title and category). Control and invisible characters are removed, text
    that tries to act as an instruction to a model ("ignore previous instructions", "system:",
    chat-template tokens) is stripped, and a row whose prompt, title or category holds a blocked
    term is rejected with the reason instead of being generated. Blocklist matching is done on a
    folded form (NFKC, lower case, invisible characters removed, runs of non-letters as one space)
    so look-alike spellings and zero-width joiners do not slip through.
    """

    def __init__(self, max_prompt_chars: int, terms: Iterable[str]) -> None:
        self.max_prompt_chars = max_prompt_chars
        self.terms = sorted({f for t in terms if (f := fold(t))})
        self._re = (re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in sorted(self.terms, key=len, reverse=True))
                               + r")(?!\w)") if self.terms else None)

    def clean(self, text: str, where: str, stripped: list[str]) -> str:
        """Remove invisible characters and instruction-like text; collapse whitespace."""
        out = "".join(" " if unicodedata.category(ch) in ("Zl", "Zp") or ch in "\t\r\n" else ch
                      for ch in unicodedata.normalize("NFC", text)
                      if ch in "\t\r\n" or unicodedata.category(ch) not in _DROP)
        if len(out) != len(text):
            stripped.append(f"{where}: control or invisible characters")
        for name, rx in INJECTION_PATTERNS:
            out, n = rx.subn(" ", out)
            if n:
                stripped.append(f"{where}: {name}")
        return " ".join(out.split()).strip(" ,;:")

    def blocked_terms(self, text: str) -> list[str]:
        if self._re is None:
            return []
        return sorted(set(self._re.findall(fold(text))))

    def check(self, prompt: str, negative_prompt: str, title: str, category: str) -> PromptCheck:
        stripped: list[str] = []
        blocked: list[str] = []
        # blocklist on the raw text: stripping must not be a way to hide a term. The negative prompt
        # is not checked: it names what must NOT appear ("nude, nsfw" there is a safeguard)
        fields = {"scene prompt": prompt, "title": title, "category": category}
        for where, text in fields.items():
            hits = self.blocked_terms(text)
            if hits:
                blocked.append(f"{where} holds blocked term(s) {hits}")
        clean_prompt = self.clean(prompt, "scene prompt", stripped)
        clean_negative = self.clean(negative_prompt, "negative prompt", stripped)
        clean_title = self.clean(title, "title", stripped)
        clean_category = self.clean(category, "category", stripped)
        if len(clean_prompt) > self.max_prompt_chars:
            blocked.append(f"scene prompt is {len(clean_prompt)} characters, over safety.max_prompt_chars = "
                           f"{self.max_prompt_chars}")
        if len(clean_negative) > self.max_prompt_chars:
            blocked.append(f"negative prompt is {len(clean_negative)} characters, over safety.max_prompt_chars = "
                           f"{self.max_prompt_chars}")
        if prompt.strip() and not clean_prompt:
            blocked.append("scene prompt is empty once instruction-like text is removed")
        return PromptCheck(clean_prompt, clean_negative, clean_title, clean_category, blocked, stripped)
