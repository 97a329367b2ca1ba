"""Validation of the nightly schedule in config.toml: a five-field cron line and an IANA time zone."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$|^[A-Za-z]{3}(-[A-Za-z]{3})?$")


def schedule_error(cron: str, timezone: str) -> str | None:
    """Why the schedule is unusable, or None; names the bad value."""
    fields = cron.split()
    if len(fields) != 5:
        return f"cron = {cron!r}: must have 5 fields (minute hour day month weekday), has {len(fields)}"
    bad = [f for f in fields if not _FIELD.match(f)]
    if bad:
        return f"cron = {cron!r}: field(s) {bad} are not cron syntax"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"timezone = {timezone!r}: not an IANA time zone (e.g. 'Europe/Berlin', 'UTC')"
    return None
