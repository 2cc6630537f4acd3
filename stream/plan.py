"""The bonus plan (SPEC §4): a TOML file loaded once into a frozen, validated `Plan`.

A plan decides pay, so a mistake in it must stop the worker at start-up with a message that
names the key, never pay by a silent default. Hence:

- every key of SPEC §4 is required, and a key SPEC §4 does not know is refused (a typo such
  as ``clawback_day`` would otherwise be ignored);
- money, rates and the share are exact decimals, read from TOML strings or integers; a TOML
  float (``rate = 0.3``) is binary and inexact, so it is refused with a hint to quote it;
- days and counts are non-negative TOML integers; a day is an exact 24-hour `timedelta`.

Every refusal is a `PlanError` reading ``plan <source>: <key path>: <what is wrong>``, where
the key path is dotted with zero-based list indices, e.g. ``cross_sell.tiers[1].up_to``.
"""

from __future__ import annotations

import os
import pathlib
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from stream.errors import PlanError

DEFAULT_PLAN_PATH: pathlib.Path = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "plans" / "default.toml"

#: SPEC §5.6: how the telemarketer share of a cross-sell line is attributed.
ATTRIBUTION_MODELS = ("last_touch", "first_touch", "linear")

_TOP_KEYS = (
    "version",
    "timezone",
    "attribution_window_days",
    "attribution_model",
    "telemarketer_share",
    "clawback_days",
    "cross_sell",
    "appointments",
)
_CROSS_SELL_KEYS = ("min_count", "tiers", "matrix")
_APPOINTMENT_KEYS = ("held_credit", "conversion_bonus", "conversion_window_days")
_TIER_KEYS = ("up_to", "rate")


@dataclass(frozen=True)
class Tier:
    """One band of the marginal cross-sell tiers (SPEC §4, §6); `up_to` None is open-ended."""

    up_to: Decimal | None
    rate: Decimal


@dataclass(frozen=True)
class Plan:
    """A validated bonus plan (SPEC §4). Durations are exact; money is `Decimal`."""

    version: str
    timezone: str
    zone: zoneinfo.ZoneInfo
    attribution_window: timedelta
    attribution_model: str
    telemarketer_share: Decimal
    clawback: timedelta
    min_count: int
    tiers: tuple[Tier, ...]
    #: anchor category -> categories that count as cross-sells of it (read-only mapping;
    #: left out of the hash because a mapping is not hashable).
    matrix: Mapping[str, frozenset[str]] = field(hash=False)
    held_credit: Decimal
    conversion_bonus: Decimal
    conversion_window: timedelta


class _Invalid(Exception):
    """A rule broken at `key`; `parse_plan` turns it into a `PlanError` naming the source."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def load_plan(path: str | os.PathLike[str] | None = None) -> Plan:
    """Read and validate the plan at `path` (default: the shipped `deploy/plans/default.toml`)."""
    plan_path = DEFAULT_PLAN_PATH if path is None else pathlib.Path(path)
    source = os.fspath(plan_path)
    try:
        text = plan_path.read_text(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PlanError(f"plan {source}: cannot read the plan file: {reason}") from error
    except UnicodeDecodeError as error:
        raise PlanError(f"plan {source}: the plan file is not UTF-8 text: {error}") from error
    return parse_plan(text, source)


def parse_plan(text: str, source: str = "<plan>") -> Plan:
    """Parse TOML `text` into a `Plan`, refusing anything SPEC §4 does not allow."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PlanError(f"plan {source}: not valid TOML: {error}") from error
    try:
        return _build(document)
    except _Invalid as error:
        raise PlanError(f"plan {source}: {error.key}: {error.problem}") from None


def _build(doc: dict[str, Any]) -> Plan:
    _refuse_unknown(doc, _TOP_KEYS, "")
    cross_sell = _table(doc, "cross_sell", "cross_sell")
    _refuse_unknown(cross_sell, _CROSS_SELL_KEYS, "cross_sell.")
    appointments = _table(doc, "appointments", "appointments")
    _refuse_unknown(appointments, _APPOINTMENT_KEYS, "appointments.")
    timezone = _string(doc, "timezone", "timezone")
    return Plan(
        version=_string(doc, "version", "version"),
        timezone=timezone,
        zone=_zone(timezone, "timezone"),
        attribution_window=_days(doc, "attribution_window_days", "attribution_window_days"),
        attribution_model=_model(doc),
        telemarketer_share=_share(doc, "telemarketer_share", "telemarketer_share"),
        clawback=_days(doc, "clawback_days", "clawback_days"),
        min_count=_count(cross_sell, "min_count", "cross_sell.min_count"),
        tiers=_tiers(cross_sell),
        matrix=_matrix(cross_sell),
        held_credit=_money(appointments, "held_credit", "appointments.held_credit"),
        conversion_bonus=_money(appointments, "conversion_bonus", "appointments.conversion_bonus"),
        conversion_window=_days(appointments, "conversion_window_days", "appointments.conversion_window_days"),
    )


# -- structure ------------------------------------------------------------------------------


def _refuse_unknown(table: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
    """A key SPEC §4 does not know is most likely a typo of one it does: refuse it."""
    for key in table:
        if key not in known:
            raise _Invalid(f"{prefix}{key}", f"unknown key; expected one of {', '.join(known)}")


def _require(table: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in table:
        raise _Invalid(path, "missing required key")
    return table[key]


def _table(table: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
    value = _require(table, key, path)
    if not isinstance(value, dict):
        raise _Invalid(path, f"must be a table, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    """The TOML name of a value's type, for messages."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


# -- scalars --------------------------------------------------------------------------------


def _string(table: Mapping[str, Any], key: str, path: str) -> str:
    value = _require(table, key, path)
    if not isinstance(value, str) or not value:
        raise _Invalid(path, f"must be a non-empty string, got {_kind(value)}")
    return value


def _count(table: Mapping[str, Any], key: str, path: str) -> int:
    value = _require(table, key, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(path, f"must be a whole number (TOML integer), got {_kind(value)}")
    if value < 0:
        raise _Invalid(path, f"must not be negative, got {value}")
    return value


def _days(table: Mapping[str, Any], key: str, path: str) -> timedelta:
    """SPEC §4: days are exact 24-hour durations."""
    return timedelta(days=_count(table, key, path))


def _decimal(value: object, path: str) -> Decimal:
    """An exact decimal from a TOML string or integer; a TOML float is refused as inexact."""
    if isinstance(value, float):
        raise _Invalid(
            path,
            f'TOML float {value!r} is inexact binary; quote it as a string, e.g. "{value}"',
        )
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Invalid(path, f'must be a decimal string such as "0.30", got {_kind(value)}')
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Invalid(path, f"not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise _Invalid(path, f"must be a finite number, got {value!r}")
    return number


def _money(table: Mapping[str, Any], key: str, path: str) -> Decimal:
    number = _decimal(_require(table, key, path), path)
    if number < 0:
        raise _Invalid(path, f"must not be negative, got {number}")
    return number


def _share(table: Mapping[str, Any], key: str, path: str) -> Decimal:
    number = _decimal(_require(table, key, path), path)
    if not 0 <= number <= 1:
        raise _Invalid(path, f"must be between 0 and 1, got {number}")
    return number


def _model(doc: Mapping[str, Any]) -> str:
    model = _string(doc, "attribution_model", "attribution_model")
    if model not in ATTRIBUTION_MODELS:
        raise _Invalid(
            "attribution_model",
            f"unknown model {model!r}; expected one of {', '.join(ATTRIBUTION_MODELS)}",
        )
    return model


def _zone(name: str, path: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise _Invalid(path, f"unknown IANA time zone {name!r}") from None


# -- cross_sell.tiers and cross_sell.matrix -------------------------------------------------


def _tiers(cross_sell: Mapping[str, Any]) -> tuple[Tier, ...]:
    """SPEC §4: marginal bands, sorted ascending by `up_to`; only the last is open-ended."""
    raw = _require(cross_sell, "tiers", "cross_sell.tiers")
    if not isinstance(raw, list) or not raw:
        raise _Invalid("cross_sell.tiers", f"must be a non-empty array of tables, got {_kind(raw)}")
    tiers: list[Tier] = []
    for index, item in enumerate(raw):
        tiers.append(_tier(item, index, last=index == len(raw) - 1, previous=tiers))
    return tuple(tiers)


def _tier(item: object, index: int, *, last: bool, previous: list[Tier]) -> Tier:
    path = f"cross_sell.tiers[{index}]"
    if not isinstance(item, dict):
        raise _Invalid(path, f"must be a table {{ up_to = ..., rate = ... }}, got {_kind(item)}")
    _refuse_unknown(item, _TIER_KEYS, f"{path}.")
    rate = _money(item, "rate", f"{path}.rate")
    if last:
        if "up_to" in item:
            raise _Invalid(f"{path}.up_to", "the last tier must not have up_to (it is open-ended)")
        return Tier(up_to=None, rate=rate)
    if "up_to" not in item:
        raise _Invalid(f"{path}.up_to", "missing required key (only the last tier has no up_to)")
    up_to = _money(item, "up_to", f"{path}.up_to")
    if previous and previous[-1].up_to is not None and up_to <= previous[-1].up_to:
        raise _Invalid(
            f"{path}.up_to",
            f"tiers must be sorted ascending by up_to: {up_to} is not above "
            f"cross_sell.tiers[{index - 1}].up_to = {previous[-1].up_to}",
        )
    return Tier(up_to=up_to, rate=rate)


def _matrix(cross_sell: Mapping[str, Any]) -> Mapping[str, frozenset[str]]:
    """SPEC §4: anchor category -> categories that count as cross-sells; never itself."""
    raw = _table(cross_sell, "matrix", "cross_sell.matrix")
    matrix: dict[str, frozenset[str]] = {}
    for anchor, listed in raw.items():
        path = f"cross_sell.matrix.{anchor}"
        if not isinstance(listed, list):
            raise _Invalid(path, f"must be an array of category names, got {_kind(listed)}")
        for index, category in enumerate(listed):
            if not isinstance(category, str) or not category:
                raise _Invalid(f"{path}[{index}]", f"must be a category name, got {_kind(category)}")
            if category == anchor:
                raise _Invalid(path, f"category {anchor!r} lists itself")
        matrix[anchor] = frozenset(listed)
    return MappingProxyType(matrix)
