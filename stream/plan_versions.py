"""Plan versions (SPEC §12): a plan file, or a directory of effective-dated versions, as `Plans`.

``--plan`` may name a directory: every ``*.toml`` directly in it is a version with its own
``effective_from = "YYYY-MM"``, and the version in force for period P is the one with the
greatest ``effective_from`` <= P; the earliest also covers the periods before it. A single file
is in force for every period, with or without ``effective_from``.

Whatever would make that choice ambiguous is refused at start-up with a `PlanError` naming the
files: two versions with the same ``effective_from`` or the same ``version``, versions in
different time zones (a period is a month in the plan's one zone), an empty directory, a version
in a directory without ``effective_from``; a file's own mistakes are `stream.plan.parse_plan`'s.

Each version keeps a digest of its content (`content_digest`), so that a change of the plans (a
version added, edited or deleted) can be found by comparing digests with the ones stored.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import tomllib
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

from stream.errors import PlanError
from stream.periods import check_period
from stream.plan import DEFAULT_PLAN_PATH, Plan, parse_plan, read_plan_text


@dataclass(frozen=True)
class PlanVersion:
    """One version of the plans: the validated `Plan`, the file it came from, its content digest."""

    plan: Plan
    #: the version's file (``<source>[i]`` for the plans of `Plans.of`, which have no file)
    source: str
    #: hex sha256 of the content (`content_digest`); equal for the same content whatever the file's
    #: comments and key order, different for any change of a value
    digest: str

    @property
    def version(self) -> str:
        return self.plan.version

    @property
    def effective_from(self) -> str | None:
        return self.plan.effective_from

    def describe(self) -> str:
        """For messages: ``version 'v2' from 2026-03 (plans/2026-03.toml, sha256 0123456789ab)``."""
        since = "for every period" if self.effective_from is None else f"from {self.effective_from}"
        return f"version {self.version!r} {since} ({self.source}, sha256 {self.digest[:12]})"


@dataclass(frozen=True)
class Plans:
    """The plan versions in force (SPEC §12): at least one, sorted by `effective_from`, one time zone.

    Built by `load_plans` (or `Plans.of` for plans made in code); constructing one checks the
    rules of SPEC §12, so every `Plans` picks exactly one version for every period.
    """

    #: sorted by `effective_from` whatever the order given
    records: tuple[PlanVersion, ...]
    #: the file or directory the versions came from, for messages
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", _checked(tuple(self.records), self.source))

    @classmethod
    def of(cls, *plans: Plan, source: str = "<plans>") -> Plans:
        """Plans made in code (tests, what-if), under the rules of a directory of several versions.

        Having no file, each version's digest is of the `Plan` itself (`plan_digest`), which is
        never the digest of a file; compare such digests only with digests made the same way.
        """
        records = (PlanVersion(plan, f"{source}[{index}]", plan_digest(plan)) for index, plan in enumerate(plans))
        return cls(tuple(records), source)

    @property
    def versions(self) -> tuple[Plan, ...]:
        """The plans, earliest first."""
        return tuple(record.plan for record in self.records)

    @property
    def first(self) -> Plan:
        """The earliest version, which also covers every period before its `effective_from`."""
        return self.records[0].plan

    @property
    def single(self) -> bool:
        """One version only: it is in force for every period."""
        return len(self.records) == 1

    @property
    def timezone(self) -> str:
        """The IANA time zone every version shares, in which periods are calendar months."""
        return self.first.timezone

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self.first.zone

    def version_for(self, period: str) -> PlanVersion:
        """SPEC §12: the version with the greatest `effective_from` <= `period`, else the earliest."""
        return _version_for(self, period)  # asked for every credit of every customer: cached

    def for_period(self, period: str) -> Plan:
        """The plan in force for `period` (``YYYY-MM``), as `version_for` picks it."""
        return self.version_for(period).plan

    def digest(self, plan: Plan) -> str:
        """The content digest of `plan`, one of `versions` (else `ValueError`)."""
        for record in self.records:
            if record.plan == plan:
                return record.digest
        raise ValueError(f"plan version {plan.version!r} is not one of the plans of {self.source}")


@functools.lru_cache(maxsize=4096)
def _version_for(plans: Plans, period: str) -> PlanVersion:
    check_period(period)
    starts = [record.effective_from or "" for record in plans.records]
    return plans.records[max(bisect.bisect_right(starts, period) - 1, 0)]


def load_plans(path: str | os.PathLike[str] | None = None) -> Plans:
    """The plans at `path`: a file is one version, a directory one version per ``*.toml`` in it.

    None is the shipped plan (`stream.plan.DEFAULT_PLAN_PATH`). In a directory only the
    ``*.toml`` files directly in it count, in name order; subdirectories, other files and hidden
    names (``.#a.toml``, an editor's lock file) are ignored, as a shell's ``*.toml`` would.
    """
    plan_path = DEFAULT_PLAN_PATH if path is None else pathlib.Path(path)
    source = os.fspath(plan_path)
    if not plan_path.is_dir():
        return Plans((_version(plan_path),), source)
    files = _version_files(plan_path)
    if not files:
        raise PlanError(f"plan {source}: the plan directory has no *.toml file (each version of the plan is "
                        f"one *.toml file directly in it)")
    records = tuple(_version(file) for file in files)
    _require_effective_from(records, "every version in a plan directory has one")
    return Plans(records, source)


def content_digest(text: str) -> str:
    """Hex sha256 of a plan's TOML `text` as parsed: canonical JSON of its document.

    Comments, whitespace, key order and TOML's spellings of one value (``'a'`` or ``"a"``) do not
    change it; any value, key or array order does. `text` is a plan `parse_plan` accepted, so its
    values are strings, integers, booleans, arrays and tables, every one of them JSON.
    """
    return _sha256(tomllib.loads(text))


def plan_digest(plan: Plan) -> str:
    """Hex sha256 of a `Plan`'s fields (exact: decimals as fractions), for plans that have no file."""
    return _sha256(_canonical(plan))


def _version(path: pathlib.Path) -> PlanVersion:
    text = read_plan_text(path)
    source = os.fspath(path)
    return PlanVersion(parse_plan(text, source), source, content_digest(text))


def _version_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """The ``*.toml`` entries directly in `directory`, in name order; a broken link stays, to be refused."""
    try:
        entries = sorted(directory.iterdir())
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PlanError(f"plan {os.fspath(directory)}: cannot read the plan directory: {reason}") from error
    return [entry for entry in entries
            if entry.name.endswith(".toml") and not entry.name.startswith(".") and not entry.is_dir()]


def _checked(records: tuple[PlanVersion, ...], source: str) -> tuple[PlanVersion, ...]:
    """`records` sorted by `effective_from`, once SPEC §12's rules hold, else a `PlanError` naming the files."""
    if not records:
        raise PlanError(f"plan {source}: no plan version")
    if len(records) == 1:
        return records
    _require_effective_from(records, "each of several versions has one, the first period it is in force")
    _unique(records, "effective_from", source, "each version needs its own first period")
    _unique(records, "version", source, "each version needs its own name, which bonus rows record as plan_version")
    records = tuple(sorted(records, key=lambda record: record.effective_from or ""))
    zones: dict[str, list[str]] = {}
    for record in records:
        zones.setdefault(record.plan.timezone, []).append(record.source)
    if len(zones) > 1:
        found = "; ".join(f"{zone!r} in {_names(files)}" for zone, files in zones.items())
        raise PlanError(f"plan {source}: timezone: the versions must share one time zone (periods are months "
                        f"in it), got {found}")
    return records


def _require_effective_from(records: Iterable[PlanVersion], why: str) -> None:
    for record in records:
        if record.effective_from is None:
            raise PlanError(f"plan {record.source}: effective_from: missing required key ({why})")


def _unique(records: tuple[PlanVersion, ...], key: str, source: str, why: str) -> None:
    """Refuse two versions with the same value of `key`, naming every file that has it."""
    files: dict[object, list[str]] = {}
    for record in records:
        files.setdefault(getattr(record, key), []).append(record.source)
    for value, sources in files.items():
        if len(sources) > 1:
            raise PlanError(f"plan {source}: {key}: {_names(sources)} have the same {key} {value!r}; {why}")


def _names(sources: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return sources[0] if len(sources) == 1 else f"{', '.join(sources[:-1])} and {sources[-1]}"


def _sha256(document: object) -> str:
    canonical = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _canonical(value: object) -> object:
    """`value` (a `Plan` or one of its parts) as JSON data, exact and independent of set order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _canonical(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, zoneinfo.ZoneInfo):
        return value.key
    if isinstance(value, Decimal):
        return str(Fraction(value))
    if isinstance(value, timedelta):
        return [value.days, value.seconds, value.microseconds]
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, frozenset):
        return sorted(str(item) for item in value)
    if isinstance(value, tuple):
        return [_canonical(item) for item in value]
    if value is None or isinstance(value, str | int):
        return value
    raise TypeError(f"no canonical form for {type(value).__name__} in a plan")


@functools.lru_cache(maxsize=64)
def as_plans(plans: Plan | Plans) -> Plans:
    """`plans` as `Plans`: a single `Plan` is the one version in force for every period. Lets the
    pure core and the ledger take either, so code (and tests) that know one plan stay simple."""
    return plans if isinstance(plans, Plans) else Plans.of(plans, source=f"plan {plans.version!r}")
