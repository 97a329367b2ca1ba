import dataclasses

import pytest

from ops.config import Config, load_config
from stages import depth, matte, scene
from stages.check import nsfw
from stages.errors import ConfigError, UnknownBackendError
from stages.registry import options_key


def test_repo_config_parses_into_frozen_tables(repo):
    cfg = load_config(repo / "config.toml")
    assert cfg.layout.width == 1024 and cfg.matte.backend == "plain-backdrop" and cfg.scene.backend == "procedural"
    assert cfg.base_dir == str(repo) and cfg.path == str(repo / "config.toml")
    with pytest.raises(Exception):
        cfg.layout.width = 5  # frozen


def _tables(cfg: Config) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: v for k, v in d.items() if k not in ("base_dir", "path")}


def test_the_shipped_config_is_the_built_in_defaults(repo):
    """One source of defaults: `stage run` without a config file makes what the shipped config.toml
    makes, and config.toml (which lists every value with its comment) cannot drift from them."""
    shipped, built_in = load_config(repo / "config.toml"), load_config(None)
    assert _tables(shipped) == _tables(built_in)
    assert shipped.digest() == built_in.digest() == Config().digest()
    assert built_in.origin.startswith("built-in defaults") and shipped.origin == str(repo / "config.toml")
    assert built_in.renditions.active == ("social", "marketplace")  # the channel presets come with the defaults


def test_every_backend_has_its_own_options_table():
    """Adding a backend is a module plus a line in its step's table: its [step.<backend>] options
    table follows from that table."""
    cfg = Config()
    for step, table in (("matte", matte.BACKENDS), ("depth", depth.BACKENDS), ("scene", scene.BACKENDS),
                        ("nsfw", nsfw.BACKENDS)):
        for name, backend in table.items():
            options = getattr(cfg, step).options_for(name)
            assert isinstance(options, backend.Options), (step, name)
            assert getattr(getattr(cfg, step), options_key(name)) is options


@pytest.mark.parametrize("text,match", [
    ("[layout]\nwidht = 3\n", r"\[layout\] has unknown key\(s\) \['widht'\]"),
    ("[layout]\nwidth = 'big'\n", r"layout.width = 'big': expected int"),
    ("[layout]\nplacement = 'left'\n", r"layout.placement = 'left': must be one of \['center', 'floor'"),
    ("[layout.presets.hero]\nplacement = 'diagonal'\n", r"layout.presets.hero.placement = 'diagonal': must be one of"),
    ("[layout.presets.hero]\nbox = [0.5, 0.1, 0.4, 0.9]\n", r"layout.presets.hero.box = \[0.5, 0.1, 0.4, 0.9\]"),
    ("[renditions]\nactive = ['print']\n", r"renditions.active names 'print', which has no \[renditions.presets.print\]"),
    ("[renditions.presets.web]\nformats = ['gif']\n", r"renditions.presets.web.formats\[0\] = 'gif': must be one of"),
    ("[renditions.presets.web]\nplacement = 'hero'\n", r"renditions.presets.web.placement = 'hero': must be one of"),
    ("[renditions.presets.web]\nbackground = 'white'\n", r"renditions.presets.web.background = 'white': expected a colour"),
    ("[renditions.presets.Web]\nwidth = 512\n", r"\[renditions.presets.Web\]: preset names are lower-case"),
    ("[layout]\nwidth = 10\n", r"layout.width = 10: must be 64..8192"),
    ("[nsfw.opennsfw]\nthreads = -1\n", r"nsfw.opennsfw.threads = -1: must be 0..256"),
    ("[matte.plain_backdrop]\nborder_px = 0\n", r"matte.plain_backdrop.border_px = 0: must be >= 1"),
    ("[write]\nformat_copies = ['jpeg', 'jpeg']\n", r"write.format_copies = \['jpeg', 'jpeg'\]: duplicates"),
    ("[bogus]\nx = 1\n", r"unknown key\(s\) \['bogus'\]"),
    ("[load]\nallow_hosts = ['10.0.0.0/8', 'ftp://x']\n", r"load.allow_hosts\[1\] = 'ftp://x': expected a host name"),
    ("[load]\nlocal_roots = ['no-such-share']\n", r"load.local_roots\[0\] = 'no-such-share': no such folder"),
    ("[layout\n", "not valid TOML"),
])
def test_bad_values_are_named(tmp_path, text, match):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)


@pytest.mark.parametrize("step", ["matte", "depth", "scene", "nsfw"])
def test_an_unknown_backend_fails_when_the_config_is_read(step):
    with pytest.raises(UnknownBackendError, match=f"unknown {step} backend 'nope'"):
        load_config(None, {step: {"backend": "nope"}})


def test_the_backend_a_matte_escalates_to_is_checked_when_the_config_is_read():
    with pytest.raises(UnknownBackendError, match="unknown matte.escalate_to backend 'nope'"):
        load_config(None, {"matte": {"escalate_to": "nope"}})
    with pytest.raises(ConfigError, match="matte.escalate_to = 'plain-backdrop': the same backend as matte.backend"):
        load_config(None, {"matte": {"escalate_to": "plain-backdrop"}})
    assert load_config(None, {"matte": {"escalate_to": "rembg"}}).matte.escalate_to == "rembg"


def test_a_preset_table_adds_to_the_built_in_ones():
    cfg = load_config(None, {"renditions": {"presets": {"print": {"width": 512, "height": 512}},
                                            "active": ["print", "marketplace"]}})
    assert set(cfg.renditions.presets) == {"web", "social", "banner", "marketplace", "print"}
    assert cfg.renditions.presets["print"].width == 512


def test_digest_changes_only_with_output_affecting_tables(tmp_path):
    base = load_config(None)
    assert load_config(None, {"run": {"batch_size": 99}}).digest() == base.digest()
    assert load_config(None, {"scene": {"procedural": {"grain": 0.0}}}).digest() != base.digest()
    # where photos may come from changes no output (but a worker's behaviour: its fingerprint)
    opened = load_config(None, {"load": {"allow_hosts": ["10.0.0.0/8"], "local_roots": [str(tmp_path)]}})
    assert opened.digest() == base.digest() and opened.fingerprint() != base.fingerprint()


def test_nested_override_keeps_sibling_keys():
    cfg = load_config(None, {"scene": {"procedural": {"grain": 0.0}}})
    assert cfg.scene.procedural.grain == 0.0 and cfg.scene.procedural.wall_color == "#e9e4dc"
