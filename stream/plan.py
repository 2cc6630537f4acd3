"""The bonus plan (SPEC §4, §12, §13): a TOML file loaded once into a frozen, validated `Plan`.

A plan decides pay, so a mistake in it must stop the worker at start-up with a message that
names the key, never pay by a silent default. Hence:

- every key of SPEC §4 is required, and a key the SPEC does not know is refused (a typo such
  as ``clawback_day`` would otherwise be ignored);
- the keys SPEC §12 and §13 added (``effective_from``, ``[cross_sell] min_amount``, ``[upsell]``,
  ``[lead_sharing]``, ``[kpi]``) are optional, and their defaults are the version-1 plan: a plan
  without them pays exactly what it paid before;
- money, rates and the share are exact decimals, read from TOML strings or integers; a TOML
  float (``rate = 0.3``) is binary and inexact, so it is refused with a hint to quote it;
- days and counts are non-negative TOML integers; a day is an exact 24-hour `timedelta`.

The shape of the file (which keys, which types) is declared once, as the msgspec structs
below, and checked by `msgspec.convert`; a key that becomes optional gets a default there and
nothing else changes. What a type cannot say (tiers sorted, the share within 0..1, a known
time zone, ...) is checked afterwards, on the typed document.

Every refusal is a `PlanError` reading ``plan <source>: <key path>: <what is wrong>``, where
the key path is dotted with zero-based list indices, e.g. ``cross_sell.tiers[1].up_to``.

A directory of effective-dated versions (SPEC §12) is `stream.plan_versions`, built on `parse_plan`.
"""

from __future__ import annotations

import os
import pathlib
import re
import tomllib
import types
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Annotated, Any

import msgspec

from schemas.events import ROLES
from stream.errors import CrmbonusError, PlanError

#: The shipped default plan: package data next to this module, so a plain wheel install has it too
#: (`deploy/plans/default.toml` in the repository is a symlink to it).
DEFAULT_PLAN_PATH: pathlib.Path = pathlib.Path(__file__).resolve().parent / "plans" / "default.toml"
#: The default plan with every programme of SPEC §13 switched on (package data too), for the demo.
DEMO_PLAN_PATH: pathlib.Path = DEFAULT_PLAN_PATH.with_name("demo.toml")

#: SPEC §5.6: how the telemarketer share of a cross-sell line is attributed.
ATTRIBUTION_MODELS = ("last_touch", "first_touch", "linear")

#: SPEC §13: what a KPI component measures (converted appointments, mean rating, share passed).
KPI_METRICS = ("conversions", "rating", "compliance")


@dataclass(frozen=True)
class Tier:
    """One band of the marginal cross-sell tiers (SPEC §4, §6); `up_to` None is open-ended."""

    up_to: Decimal | None
    rate: Decimal


@dataclass(frozen=True)
class KpiComponent:
    """One ``[[kpi.components]]`` entry (SPEC §13): attainment = min(value / target, cap)."""

    name: str
    weight: Decimal
    #: one of `KPI_METRICS`
    metric: str
    target: Decimal
    cap: Decimal


@dataclass(frozen=True)
class Kpi:
    """The ``[kpi]`` section (SPEC §13): kpi_bonus = target_bonus x sum(weight x attainment)."""

    target_bonus: Decimal
    #: the roles paid a KPI bonus, in the order of `schemas.events.ROLES` whatever the file's order
    roles: tuple[str, ...]
    #: in file order; names unique, weights summing to exactly 1
    components: tuple[KpiComponent, ...]


@dataclass(frozen=True)
class Plan:
    """A validated bonus plan (SPEC §4, §12, §13). Durations are exact; money is `Decimal`."""

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
    #: SPEC §13 amount gate, ``[cross_sell] min_amount``: 0 when the file has none
    min_amount: Decimal
    #: SPEC §13 ``[upsell] rate``; None (no upsell credit) when the file has no ``[upsell]``
    upsell_rate: Decimal | None
    #: SPEC §13 ``[lead_sharing]``: badge thresholds (5, 15) and the gold prize (0) by default
    bronze_points: int
    silver_points: int
    gold_prize: Decimal
    #: SPEC §13 ``[kpi]``; None (no KPI bonus) when the file has no ``[kpi]``
    kpi: Kpi | None
    #: SPEC §12 ``effective_from = "YYYY-MM"``, the first period of this version; None when absent
    effective_from: str | None


def load_plan(path: str | os.PathLike[str] | None = None) -> Plan:
    """Read and validate the plan FILE at `path` (default: the shipped plan, `DEFAULT_PLAN_PATH`).

    A directory of versions (SPEC §12) is refused, pointing to `stream.plan_versions.load_plans`: one
    `Plan` cannot stand for every period, and taking one of the versions would pay the other
    periods by a silent choice.
    """
    plan_path = DEFAULT_PLAN_PATH if path is None else pathlib.Path(path)
    source = os.fspath(plan_path)
    if plan_path.is_dir():
        raise PlanError(
            f"plan {source}: is a directory of plan versions (SPEC section 12); "
            f"load it with stream.plan_versions.load_plans, which picks the version in force for each period"
        )
    return parse_plan(read_plan_text(plan_path), source)


def read_plan_text(plan_path: pathlib.Path) -> str:
    """The text of the plan file at `plan_path`, or a `PlanError` naming it."""
    source = os.fspath(plan_path)
    try:
        text = plan_path.read_text(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PlanError(f"plan {source}: cannot read the plan file: {reason}") from error
    except UnicodeDecodeError as error:
        raise PlanError(f"plan {source}: the plan file is not UTF-8 text: {error}") from error
    return text


def parse_plan(text: str, source: str = "<plan>") -> Plan:
    """Parse TOML `text` into a `Plan`, refusing anything SPEC §4 does not allow."""
    try:
        document = tomllib.loads(text, parse_float=_TomlFloat.parse)
    except tomllib.TOMLDecodeError as error:
        raise PlanError(f"plan {source}: not valid TOML: {error}") from error
    try:
        shaped = msgspec.convert(document, _Document)
    except msgspec.ValidationError as error:
        invalid = _explain(error, document)
        raise PlanError(f"plan {source}: {invalid.key}: {invalid.problem}") from None
    try:
        return _plan(shaped, document)
    except _Invalid as error:
        raise PlanError(f"plan {source}: {error.key}: {error.problem}") from None


# -- the shape of the file ------------------------------------------------------------------
#
# Each TOML table is a struct: a field without a default is a required key, and a key with
# no field is refused (forbid_unknown_fields). kw_only lets a key made optional with a default
# stand anywhere, in the order the file documents it. msgspec does not inherit kw_only, hence
# the options on every struct rather than on a common base.
#
# A refusal of a type reads "must be <its description>, got <what the file has>", so each
# description states the whole rule of its type ("non-empty" included).

_Text = Annotated[str, msgspec.Meta(min_length=1, description="a non-empty string")]
_Count = Annotated[int, msgspec.Meta(ge=0, description="a whole number (TOML integer)")]
#: A window or a clawback in days; a century is far beyond any pay rule, and a bound keeps the
#: dates it moves by representable (99999999999 days would overflow `timedelta`).
MAX_DAYS = 36_525
_Days = Annotated[int, msgspec.Meta(ge=0, le=MAX_DAYS, description="a whole number (TOML integer)")]
_Exact = Annotated[Decimal, msgspec.Meta(description='a decimal string such as "0.30"')]
_Category = Annotated[str, msgspec.Meta(min_length=1, description="a category name")]


class _TierEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # Optional for the type, because the last tier has none; `_tiers` requires it elsewhere.
    up_to: _Exact | None = None
    rate: _Exact


class _CrossSell(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    min_count: _Count
    min_amount: _Exact = Decimal(0)
    tiers: Annotated[
        tuple[Annotated[_TierEntry, msgspec.Meta(description="a table { up_to = ..., rate = ... }")], ...],
        msgspec.Meta(min_length=1, description="a non-empty array of tables"),
    ]
    matrix: dict[str, Annotated[frozenset[_Category], msgspec.Meta(description="an array of category names")]]


class _Appointments(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    held_credit: _Exact
    conversion_bonus: _Exact
    conversion_window_days: _Days


class _Upsell(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    rate: _Exact


class _LeadSharing(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    bronze_points: _Count = 5
    silver_points: _Count = 15
    gold_prize: _Exact = Decimal(0)


class _KpiComponentEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: _Text
    weight: _Exact
    metric: _Text
    target: _Exact
    cap: _Exact = Decimal(1)


class _Kpi(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    target_bonus: _Exact
    roles: Annotated[
        tuple[Annotated[str, msgspec.Meta(description="a role name")], ...],
        msgspec.Meta(min_length=1, description="a non-empty array of role names"),
    ] = ROLES
    components: Annotated[
        tuple[Annotated[_KpiComponentEntry, msgspec.Meta(description="a table (an [[kpi.components]] entry)")], ...],
        msgspec.Meta(min_length=1, description="a non-empty array of tables ([[kpi.components]])"),
    ]


class _Document(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    version: _Text
    effective_from: Annotated[str, msgspec.Meta(description='a period string "YYYY-MM"')] | None = None
    timezone: _Text
    attribution_window_days: _Days
    attribution_model: _Text
    telemarketer_share: _Exact
    clawback_days: _Days
    cross_sell: _CrossSell
    appointments: _Appointments
    upsell: _Upsell | None = None
    lead_sharing: _LeadSharing = msgspec.field(default_factory=_LeadSharing)
    kpi: _Kpi | None = None


@dataclass(frozen=True)
class _TomlFloat:
    """A TOML float, kept from being a `float`: msgspec would quietly take a float for a `Decimal`.

    As an object of no type msgspec knows, it is refused wherever it stands, in msgspec's own
    walk of the document, and `_explain` gives the hint to quote it.
    """

    value: float

    @classmethod
    def parse(cls, text: str) -> _TomlFloat:
        return cls(float(text))


# -- msgspec's refusal, in the plan's words -------------------------------------------------

_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(.*)`", re.DOTALL)
#: a step of msgspec's path: `.field`, `[index]`, or `[...]` for a key of a dict, which
#: msgspec leaves out (the matrix's anchors); `_resolve` finds it again.
_STEP = re.compile(r"\.(\w+)|\[(\d+|\.\.\.)\]")


class _Invalid(Exception):
    """A rule broken at `key`; `parse_plan` turns it into a `PlanError` naming the source."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def _explain(error: msgspec.ValidationError, document: dict[str, Any]) -> _Invalid:
    """msgspec says ``<problem> - at `$.a.b[1]```; the plan says ``a.b[1]: <problem>``."""
    message = str(error)
    problem, at, where = message.rpartition(" - at `$")
    if not at:
        problem, where = message, ""
    key, value, shape = _resolve(document, where.removesuffix("`"))
    if match := _UNKNOWN.fullmatch(problem):
        known = ", ".join(info.encode_name for info in msgspec.structs.fields(_bare(shape)[0]))
        return _Invalid(_join(key, match[1]), f"unknown key; expected one of {known}")
    if match := _MISSING.fullmatch(problem):
        return _Invalid(_join(key, match[1]), "missing required key")
    return _Invalid(key, _wrong(value, shape, problem))


def _resolve(document: dict[str, Any], where: str) -> tuple[str, Any, Any]:
    """The dotted key, the value in the file, and the declared type at msgspec's path `where`."""
    key = ""
    value: Any = document
    shape: Any = _Document
    for name, index in _STEP.findall(where):
        bare = _bare(shape)[0]
        if name:
            shape = {info.encode_name: info.type for info in msgspec.structs.fields(bare)}[name]
            key, value = _join(key, name), value[name]
        elif index == "...":
            shape = typing.get_args(bare)[1]
            anchor = next((k for k, v in value.items() if not _fits(v, shape)), "...")
            key, value = _join(key, anchor), value.get(anchor)
        else:
            shape = typing.get_args(bare)[0]
            key, value = f"{key}[{index}]", value[int(index)]
    return key, value, shape


def _fits(value: object, shape: Any) -> bool:
    """Whether `value` converts to `shape`: how `_resolve` finds the dict entry msgspec refused."""
    try:
        msgspec.convert(value, shape)
    except msgspec.ValidationError:
        return False
    return True


def _bare(shape: Any) -> tuple[Any, list[msgspec.Meta]]:
    """`shape` without `Annotated` and `| None`, and the `msgspec.Meta` they carried (outer first)."""
    metas: list[msgspec.Meta] = []
    while True:
        origin = typing.get_origin(shape)
        if origin is Annotated:
            metas.extend(meta for meta in shape.__metadata__ if isinstance(meta, msgspec.Meta))
            shape = typing.get_args(shape)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [member for member in typing.get_args(shape) if member is not type(None)]
            if len(members) != 1:
                return shape, metas
            shape = members[0]
        else:
            return shape, metas


def _wrong(value: object, shape: Any, problem: str) -> str:
    """Why `value` is not of `shape`, as the plan words it (msgspec's `problem` as a fallback)."""
    bare, metas = _bare(shape)
    if bare is Decimal and isinstance(value, _TomlFloat):
        number = value.value
        return f'TOML float {number!r} is inexact binary; quote it as a string, e.g. "{number}"'
    if bare is Decimal and isinstance(value, str):
        return f"not a decimal number: {value!r}"
    if type(value) is int and any(meta.ge == 0 for meta in metas) and value < 0:
        return f"must not be negative, got {value}"
    if type(value) is int and (most := next((meta.le for meta in metas if meta.le is not None), None)) is not None \
            and value > most:
        return f"must be at most {most}, got {value}"
    description = next((meta.description for meta in metas if meta.description), None)
    if description is None and (bare is dict or typing.get_origin(bare) is dict or _is_table(bare)):
        description = "a table"
    if description is None:
        return problem
    return f"must be {description}, got {_kind(value)}"


def _is_table(shape: Any) -> bool:
    return isinstance(shape, type) and issubclass(shape, msgspec.Struct)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _kind(value: object) -> str:
    """The TOML name of a value's type, for messages."""
    names = {bool: "a boolean", int: "an integer", float: "a float", _TomlFloat: "a float", str: "a string"}
    names |= {date: "a date", time: "a time", datetime: "a date-time"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


# -- what a type cannot say -----------------------------------------------------------------


def _plan(shaped: _Document, document: dict[str, Any]) -> Plan:
    """The typed document as a `Plan`, once the rules that are not types hold (in file order)."""
    cross_sell, appointments, lead_sharing = shaped.cross_sell, shaped.appointments, shaped.lead_sharing
    return Plan(
        version=shaped.version,
        effective_from=_effective_from(shaped.effective_from),
        timezone=shaped.timezone,
        zone=_zone(shaped.timezone, "timezone"),
        attribution_window=timedelta(days=shaped.attribution_window_days),
        attribution_model=_model(shaped.attribution_model),
        telemarketer_share=_share(shaped.telemarketer_share, "telemarketer_share", document),
        clawback=timedelta(days=shaped.clawback_days),
        min_count=cross_sell.min_count,
        tiers=_tiers(cross_sell.tiers, document),
        matrix=_matrix(cross_sell.matrix),
        held_credit=_money(appointments.held_credit, "appointments.held_credit", document),
        conversion_bonus=_money(appointments.conversion_bonus, "appointments.conversion_bonus", document),
        conversion_window=timedelta(days=appointments.conversion_window_days),
        min_amount=_money(cross_sell.min_amount, "cross_sell.min_amount", document),
        upsell_rate=None if shaped.upsell is None else _share(shaped.upsell.rate, "upsell.rate", document),
        bronze_points=lead_sharing.bronze_points,
        silver_points=_silver_points(lead_sharing, document),
        gold_prize=_money(lead_sharing.gold_prize, "lead_sharing.gold_prize", document),
        kpi=None if shaped.kpi is None else _kpi(shaped.kpi, document),
    )


def _finite(number: Decimal, key: str, document: dict[str, Any]) -> Decimal:
    """``"Infinity"`` and ``"NaN"`` are decimal strings, but no amount; quoted as the file spells them."""
    if not number.is_finite():
        raise _Invalid(key, f"must be a finite number, got {_resolve(document, '.' + key)[1]!r}")
    return number


def _money(number: Decimal, key: str, document: dict[str, Any]) -> Decimal:
    if _finite(number, key, document) < 0:
        raise _Invalid(key, f"must not be negative, got {number}")
    return number


def _share(number: Decimal, key: str, document: dict[str, Any]) -> Decimal:
    if not 0 <= _finite(number, key, document) <= 1:
        raise _Invalid(key, f"must be between 0 and 1, got {number}")
    return number


def _model(model: str) -> str:
    if model not in ATTRIBUTION_MODELS:
        raise _Invalid(
            "attribution_model",
            f"unknown model {model!r}; expected one of {', '.join(ATTRIBUTION_MODELS)}",
        )
    return model


def _zone(name: str, key: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise _Invalid(key, f"unknown IANA time zone {name!r}") from None


def _tiers(entries: tuple[_TierEntry, ...], document: dict[str, Any]) -> tuple[Tier, ...]:
    """SPEC §4: marginal bands, sorted ascending by `up_to`; only the last is open-ended."""
    tiers: list[Tier] = []
    for index, entry in enumerate(entries):
        key = f"cross_sell.tiers[{index}]"
        rate = _money(entry.rate, f"{key}.rate", document)
        if index == len(entries) - 1:
            if entry.up_to is not None:
                raise _Invalid(f"{key}.up_to", "the last tier must not have up_to (it is open-ended)")
            tiers.append(Tier(up_to=None, rate=rate))
            continue
        if entry.up_to is None:
            raise _Invalid(f"{key}.up_to", "missing required key (only the last tier has no up_to)")
        up_to = _money(entry.up_to, f"{key}.up_to", document)
        if tiers and tiers[-1].up_to is not None and up_to <= tiers[-1].up_to:
            raise _Invalid(
                f"{key}.up_to",
                f"tiers must be sorted ascending by up_to: {up_to} is not above "
                f"cross_sell.tiers[{index - 1}].up_to = {tiers[-1].up_to}",
            )
        tiers.append(Tier(up_to=up_to, rate=rate))
    return tuple(tiers)


def _matrix(matrix: dict[str, frozenset[str]]) -> Mapping[str, frozenset[str]]:
    """SPEC §4: anchor category -> categories that count as cross-sells; never itself."""
    for anchor, categories in matrix.items():
        if anchor in categories:
            raise _Invalid(f"cross_sell.matrix.{anchor}", f"category {anchor!r} lists itself")
    return MappingProxyType(matrix)


def _effective_from(period: str | None) -> str | None:
    """SPEC §12: a version's first period, spelled like every period (`stream.periods.check_period`)."""
    if period is None:
        return None
    # Here, not at the top: stream.periods imports this module for `Plan`.
    from stream.periods import check_period

    try:
        return check_period(period)
    except CrmbonusError as error:
        raise _Invalid("effective_from", str(error)) from None


def _silver_points(lead_sharing: _LeadSharing, document: dict[str, Any]) -> int:
    """SPEC §13: silver is the higher badge, so its threshold is not below bronze's."""
    if lead_sharing.silver_points < lead_sharing.bronze_points:
        given = "silver_points" in document.get("lead_sharing", {})
        value = f"{lead_sharing.silver_points}{'' if given else ' (the default)'}"
        raise _Invalid(
            "lead_sharing.silver_points",
            f"must not be below lead_sharing.bronze_points = {lead_sharing.bronze_points}, got {value}",
        )
    return lead_sharing.silver_points


def _kpi(kpi: _Kpi, document: dict[str, Any]) -> Kpi:
    """SPEC §13: known roles, once each; components named once, weights in (0, 1] summing to 1."""
    target_bonus = _money(kpi.target_bonus, "kpi.target_bonus", document)
    for index, role in enumerate(kpi.roles):
        key = f"kpi.roles[{index}]"
        if role not in ROLES:
            raise _Invalid(key, f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if role in kpi.roles[:index]:
            raise _Invalid(key, f"role {role!r} is listed twice (also kpi.roles[{kpi.roles.index(role)}])")
    components: list[KpiComponent] = []
    for index, entry in enumerate(kpi.components):
        components.append(_component(entry, f"kpi.components[{index}]", components, document))
    total = sum((Fraction(component.weight) for component in components), Fraction(0))
    if total != 1:
        weights = " + ".join(str(component.weight) for component in components)
        raise _Invalid("kpi.components", f"the weights must sum to exactly 1, got {weights} = {_exact(total)}")
    return Kpi(
        target_bonus=target_bonus,
        roles=tuple(role for role in ROLES if role in kpi.roles),
        components=tuple(components),
    )


def _component(
    entry: _KpiComponentEntry, key: str, before: list[KpiComponent], document: dict[str, Any]
) -> KpiComponent:
    for index, other in enumerate(before):
        if other.name == entry.name:
            raise _Invalid(f"{key}.name", f"{entry.name!r} is already the name of kpi.components[{index}]")
    weight = _finite(entry.weight, f"{key}.weight", document)
    if not 0 < weight <= 1:
        raise _Invalid(f"{key}.weight", f"must be above 0 and at most 1, got {weight}")
    if entry.metric not in KPI_METRICS:
        raise _Invalid(f"{key}.metric", f"unknown metric {entry.metric!r}; expected one of {', '.join(KPI_METRICS)}")
    target = _finite(entry.target, f"{key}.target", document)
    if not target > 0:
        raise _Invalid(f"{key}.target", f"must be above 0, got {target}")
    cap = _finite(entry.cap, f"{key}.cap", document)
    if not cap >= 1:
        raise _Invalid(f"{key}.cap", f"must be at least 1, got {cap}")
    return KpiComponent(name=entry.name, weight=weight, metric=entry.metric, target=target, cap=cap)


def _exact(number: Fraction) -> str:
    """An exact sum of decimals, as a decimal: its denominator divides a power of ten."""
    digits = 0
    while (number * 10**digits).denominator != 1:
        digits += 1
    return format(Decimal(f"{number.numerator * 10**digits // number.denominator}E-{digits}"), "f")
