"""Periods (SPEC §6, §7): calendar months named ``YYYY-MM`` in the plan's time zone.

Pure: the crediting rules date every credit with `period_of`, settlement walks months with
`next_period` and `adjustment_target`, and every command checks a period it is given with
`check_period`, so a month means the same thing everywhere.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Container
from datetime import datetime
from typing import Protocol

from stream.errors import CrmbonusError

#: ``YYYY-MM``, month 01..12. ``\Z``, not ``$``: ``$`` also matches before a final newline.
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])\Z")


def check_period(period: str) -> str:
    """The period itself, or a `CrmbonusError` that shows the expected spelling."""
    if not PERIOD.match(period):
        raise CrmbonusError(f"period {period!r} must be YYYY-MM, e.g. 2026-11")
    return period


class Zoned(Protocol):
    """What a period needs of a plan: its time zone (a `Plan`, or the versions of `Plans`)."""

    @property
    def zone(self) -> zoneinfo.ZoneInfo: ...


def period_of(at: datetime, plan: Zoned) -> str:
    """SPEC §6: the period of `at` is its calendar month in the plan's time zone."""
    if at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()} has no instant; events carry an offset")
    local = at.astimezone(plan.zone)
    return f"{local.year:04d}-{local.month:02d}"


def next_period(period: str) -> str:
    """The month after `period`: ``2026-12`` -> ``2027-01``."""
    year, month = int(period[:4]), int(period[5:])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def adjustment_target(source: str, closed: Container[str]) -> str:
    """SPEC §7: the earliest period after `source` that is not closed, where its adjustment goes."""
    target = next_period(source)
    while target in closed:
        target = next_period(target)
    return target
