import pytest

from stages.config import load_config
from stages.errors import ConfigError


def test_repo_config_parses_into_frozen_tables(repo):
    cfg = load_config(repo / "config.toml")
    assert cfg.layout.width == 1024 and cfg.matte.backend == "studio"
    assert cfg.base_dir == str(repo)
    with pytest.raises(Exception):
        cfg.layout.width = 5  # frozen


@pytest.mark.parametrize("text,match", [
    ("[layout]\nwidht = 3\n", r"\[layout\] has unknown key\(s\) \['widht'\]"),
    ("[layout]\nwidth = 'big'\n", r"layout.width = 'big': expected int"),
    ("[layout]\nplacement = 'left'\n", r"layout.placement = 'left': must be one of \['center', 'floor'"),
    ("[layout.presets.hero]\nplacement = 'diagonal'\n", r"layout.presets.hero.placement = 'diagonal': must be one of"),
    ("[layout.presets.hero]\nbox = [0.5, 0.1, 0.4, 0.9]\n", r"layout.presets.hero.box = \[0.5, 0.1, 0.4, 0.9\]"),
    ("[renditions]\nactive = ['web']\n", r"renditions.active names 'web', which has no \[renditions.presets.web\]"),
    ("[renditions.presets.web]\nformats = ['gif']\n", r"renditions.presets.web.formats\[0\] = 'gif': must be one of"),
    ("[renditions.presets.web]\nplacement = 'hero'\n", r"renditions.presets.web.placement = 'hero': must be one of"),
    ("[renditions.presets.web]\nbackground = 'white'\n", r"renditions.presets.web.background = 'white': expected a colour"),
    ("[renditions.presets.Web]\nwidth = 512\n", r"\[renditions.presets.Web\]: preset names are lower-case"),
    ("[layout]\nwidth = 10\n", r"layout.width = 10: must be 64..8192"),
    ("[nsfw]\nthreads = -1\n", r"nsfw.threads = -1: must be 0..256"),
    ("[bogus]\nx = 1\n", r"unknown key\(s\) \['bogus'\]"),
    ("[layout\n", "not valid TOML"),
])
def test_bad_values_are_named(tmp_path, text, match):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)


def test_digest_changes_only_with_output_affecting_tables(tmp_path):
    base = load_config(None)
    assert load_config(None, {"run": {"batch_size": 99}}).digest() == base.digest()
    assert load_config(None, {"scene": {"studio": {"grain": 0.0}}}).digest() != base.digest()


def test_nested_override_keeps_sibling_keys():
    cfg = load_config(None, {"scene": {"studio": {"grain": 0.0}}})
    assert cfg.scene.studio.grain == 0.0 and cfg.scene.studio.wall_color == "#e9e4dc"
