"""SPEC §12: which periods a change of the plans recomputes (`plan_changes.changed_periods`, pure).

The versions stored in Postgres (`Stored`: what computed the tables) against the plans a worker
starts with: a period changes when the content (digest) or the time zone of its version in force
changes, whatever the version's name; with nothing stored, every period does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.plan import DEFAULT_PLAN_PATH
from stream.plan_changes import Stored, changed_periods, fingerprint
from stream.plan_versions import Plans, load_plans

DEFAULT_TEXT = DEFAULT_PLAN_PATH.read_text(encoding="utf-8")
#: Periods with data, unsorted and with a repeat: the answer is sorted and unique.
PERIODS = ["2026-09", "2025-12", "2026-03", "2026-05", "2026-07", "2026-03", "2027-01"]


def version_text(version: str, effective_from: str | None, held_credit: str = "25.00", timezone: str = "UTC") -> str:
    """The shipped plan named `version`, from `effective_from`, with its own held credit and zone."""
    head = f'version = "{version}"\n' + ("" if effective_from is None else f'effective_from = "{effective_from}"\n')
    text = DEFAULT_TEXT.replace('version = "default-1"\n', head)
    text = text.replace('held_credit = "25.00"', f'held_credit = "{held_credit}"')
    return text.replace('timezone = "UTC"', f'timezone = "{timezone}"')


def plans_of(directory: Path, *versions: tuple[str, str | None, str]) -> Plans:
    """A plan directory of (version, effective_from, held_credit), loaded as a worker loads it."""
    directory.mkdir(parents=True)
    for name, since, held in versions:
        (directory / f"{name}.toml").write_text(version_text(name, since, held), encoding="utf-8")
    return load_plans(directory)


def stored(plans: Plans) -> list[Stored]:
    """`plans` as `plan_versions` keeps them once a worker stored them."""
    return [Stored(r.effective_from, r.version, r.digest, r.plan.timezone) for r in plans.records]


V1, V2, V3 = ("v1", "2026-01", "25.00"), ("v2", "2026-06", "30.00"), ("v3", "2026-08", "20.00")


@pytest.fixture
def three(tmp_path: Path) -> Plans:
    return plans_of(tmp_path / "three", V1, V2, V3)


def test_the_same_plans_change_no_period(three: Plans, tmp_path: Path) -> None:
    assert changed_periods(stored(three), three, PERIODS) == []
    # the same content elsewhere, in other files, with a comment: the same digests
    again = tmp_path / "again"
    again.mkdir()
    for index, (name, since, held) in enumerate((V3, V1, V2)):
        (again / f"{index}-{name}.toml").write_text("# moved\n" + version_text(name, since, held), encoding="utf-8")
    moved = load_plans(again)
    assert changed_periods(stored(three), moved, PERIODS) == []
    assert fingerprint(moved) == fingerprint(three)


def test_nothing_stored_changes_every_period(three: Plans) -> None:
    assert changed_periods([], three, PERIODS) == ["2025-12", "2026-03", "2026-05", "2026-07", "2026-09", "2027-01"]
    assert changed_periods([], three, []) == []


def test_a_version_added_mid_year_changes_the_periods_from_it_on(tmp_path: Path) -> None:
    before = plans_of(tmp_path / "one", V1)
    after = plans_of(tmp_path / "two", V1, V2)
    assert changed_periods(stored(before), after, PERIODS) == ["2026-07", "2026-09", "2027-01"]


def test_an_edited_version_changes_its_periods_only(three: Plans, tmp_path: Path) -> None:
    # v2 keeps its name and its effective_from; only its held credit changes (its digest)
    edited = plans_of(tmp_path / "edited", V1, ("v2", "2026-06", "31.00"), V3)
    assert changed_periods(stored(three), edited, PERIODS) == ["2026-07"]
    # the earliest version also covers the periods before it
    first = plans_of(tmp_path / "first", ("v1", "2026-01", "26.00"), V2, V3)
    assert changed_periods(stored(three), first, PERIODS) == ["2025-12", "2026-03", "2026-05"]


def test_a_version_renamed_changes_its_periods(three: Plans, tmp_path: Path) -> None:
    """The content decides, and `version` is part of it (rows carry it as plan_version)."""
    renamed = plans_of(tmp_path / "renamed", V1, ("v2b", "2026-06", "30.00"), V3)
    assert changed_periods(stored(three), renamed, PERIODS) == ["2026-07"]


def test_a_version_removed_hands_its_periods_to_the_one_before(three: Plans, tmp_path: Path) -> None:
    without_v2 = plans_of(tmp_path / "without-v2", V1, V3)
    assert changed_periods(stored(three), without_v2, PERIODS) == ["2026-07"]


def test_the_earliest_version_removed_hands_the_periods_before_to_the_next(three: Plans, tmp_path: Path) -> None:
    without_v1 = plans_of(tmp_path / "without-v1", V2, V3)
    assert changed_periods(stored(three), without_v1, PERIODS) == ["2025-12", "2026-03", "2026-05"]
    only_v3 = plans_of(tmp_path / "only-v3", V3)
    assert changed_periods(stored(three), only_v3, PERIODS) == ["2025-12", "2026-03", "2026-05", "2026-07"]


def test_a_version_moved_to_another_month_changes_the_months_between(three: Plans, tmp_path: Path) -> None:
    earlier = plans_of(tmp_path / "earlier", V1, ("v2", "2026-04", "30.00"), V3)
    # 2026-05 moves from v1 to v2; v2's content changed (effective_from is part of it): 2026-07 too
    assert changed_periods(stored(three), earlier, PERIODS) == ["2026-05", "2026-07"]


def test_a_single_file_against_a_directory(three: Plans, tmp_path: Path) -> None:
    """A single file (no effective_from) is in force for every period; stored, it covers them all."""
    single = tmp_path / "plan.toml"
    single.write_text(version_text("v1", None), encoding="utf-8")
    file_plans = load_plans(single)
    # v1 from a file differs from v1 of the directory (no effective_from): every period changes
    assert changed_periods(stored(three), file_plans, PERIODS) == sorted(set(PERIODS))
    assert changed_periods(stored(file_plans), file_plans, PERIODS) == []
    assert changed_periods(stored(file_plans), three, PERIODS) == sorted(set(PERIODS))


def test_another_time_zone_changes_every_period(three: Plans) -> None:
    zoned = [Stored(s.effective_from, s.version, s.digest, "Europe/Paris") for s in stored(three)]
    assert changed_periods(zoned, three, PERIODS) == sorted(set(PERIODS))
