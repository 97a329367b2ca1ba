"""The nightly schedule in config.toml is validated when the config is read."""

from __future__ import annotations

import pytest

from ops.config import load_config
from stages.errors import ConfigError


def test_schedule_is_read_and_bad_values_are_named(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[schedule]\ncron = "30 4 * * 1-5"\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    cfg = load_config(path)
    assert (cfg.schedule.cron, cfg.schedule.timezone) == ("30 4 * * 1-5", "Europe/Berlin")
    for table, match in (('cron = "30 4 * *"', "must have 5 fields"), ('cron = "every day 2am x y"', "not cron syntax"),
                         ('timezone = "Mars/Olympus"', "'Mars/Olympus': not an IANA time zone")):
        path.write_text(f"[schedule]\n{table}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=match):
            load_config(path)


def test_schedule_does_not_change_the_cache_key():
    base = load_config(None)
    other = load_config(None, {"schedule": {"cron": "0 5 * * *"}})
    assert base.digest() == other.digest()  # when it runs does not change what it makes
