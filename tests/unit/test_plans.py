"""SPEC §12: plan directories of effective-dated versions, the version in force, content digests."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.errors import CrmbonusError, PlanError
from stream.plan import DEFAULT_PLAN_PATH, DEMO_PLAN_PATH, load_plan, parse_plan
from stream.plan_versions import Plans, PlanVersion, content_digest, load_plans, plan_digest

DEFAULT_TEXT = DEFAULT_PLAN_PATH.read_text(encoding="utf-8")
DEFAULT = load_plan()


def version_text(version: str, effective_from: str | None = None, timezone: str = "UTC") -> str:
    """The default plan renamed `version`, with `effective_from` (none when None) and `timezone`."""
    head = f'version = "{version}"\n' + ("" if effective_from is None else f'effective_from = "{effective_from}"\n')
    text = DEFAULT_TEXT.replace('version = "default-1"\n', head)
    return text.replace('timezone = "UTC"', f'timezone = "{timezone}"')


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(PlanError) as caught:
        load_plans(path)
    return str(caught.value)


@pytest.fixture
def three(tmp_path: Path) -> Path:
    """Versions from 2026-01, 2026-04 and 2026-09, the file names in another order than the dates."""
    plans = tmp_path / "plans"
    write(plans, "c.toml", version_text("v1", "2026-01"))
    write(plans, "a.toml", version_text("v2", "2026-04"))
    write(plans, "b.toml", version_text("v3", "2026-09"))
    return plans


# -- one file ------------------------------------------------------------------------------------


def test_the_shipped_plan_is_one_version_in_force_for_every_period() -> None:
    plans = load_plans()
    assert plans == load_plans(DEFAULT_PLAN_PATH) == load_plans(str(DEFAULT_PLAN_PATH))
    assert plans.single
    assert plans.versions == (DEFAULT,)
    assert plans.first == DEFAULT
    assert plans.timezone == "UTC" and plans.zone.key == "UTC"
    assert plans.source == str(DEFAULT_PLAN_PATH)
    (record,) = plans.records
    assert record == PlanVersion(DEFAULT, str(DEFAULT_PLAN_PATH), content_digest(DEFAULT_TEXT))
    assert record.version == "default-1" and record.effective_from is None
    assert record.describe() == (f"version 'default-1' for every period ({DEFAULT_PLAN_PATH}, "
                                 f"sha256 {record.digest[:12]})")
    for period in ("0001-01", "1999-12", "2026-11", "9999-12"):
        assert plans.for_period(period) is plans.first == DEFAULT
        assert plans.version_for(period) is record
    assert plans.digest(DEFAULT) == record.digest


def test_a_single_file_with_effective_from_is_in_force_for_every_period(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.toml", version_text("v2", "2026-06"))
    plans = load_plans(path)
    assert plans.single and plans.first.effective_from == "2026-06"
    assert {plans.for_period(period) for period in ("2026-05", "2026-06", "2026-07", "1970-01")} == {plans.first}
    assert plans.records[0].describe() == f"version 'v2' from 2026-06 ({path}, sha256 {plans.records[0].digest[:12]})"


def test_plans_are_frozen_and_hashable(three: Path) -> None:
    plans = load_plans(three)
    assert hash(plans) == hash(load_plans(three)) and plans == load_plans(three)
    assert len({plans, load_plans(three)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        plans.source = "elsewhere"  # type: ignore[misc]


# -- a directory ---------------------------------------------------------------------------------


def test_a_directory_holds_its_versions_sorted_by_effective_from(three: Path) -> None:
    plans = load_plans(three)
    assert not plans.single
    assert plans.source == str(three)
    assert [(r.version, r.effective_from, r.source) for r in plans.records] == [
        ("v1", "2026-01", str(three / "c.toml")),
        ("v2", "2026-04", str(three / "a.toml")),
        ("v3", "2026-09", str(three / "b.toml")),
    ]
    assert plans.versions == tuple(record.plan for record in plans.records)
    assert plans.first.version == "v1"
    assert [plans.digest(plan) for plan in plans.versions] == [r.digest for r in plans.records]


@pytest.mark.parametrize(
    ("period", "version"),
    [
        ("1999-12", "v1"),  # long before the earliest: the earliest covers it
        ("2025-12", "v1"),  # the month before the earliest
        ("2026-01", "v1"),  # exactly at an effective_from
        ("2026-03", "v1"),  # the month before the next one
        ("2026-04", "v2"),
        ("2026-08", "v2"),
        ("2026-09", "v3"),  # exactly at the last one
        ("2026-10", "v3"),
        ("2027-01", "v3"),  # after the last one, into the next year
        ("9999-12", "v3"),
    ],
)
def test_the_version_in_force_has_the_greatest_effective_from_not_after_the_period(
    three: Path, period: str, version: str
) -> None:
    plans = load_plans(three)
    assert plans.for_period(period).version == version
    assert plans.version_for(period).plan is plans.for_period(period)


def test_only_toml_files_directly_in_the_directory_are_versions(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    write(plans, "2026-01.toml", version_text("v1", "2026-01"))
    write(plans, "README.md", "not a plan")
    write(plans, "2026-02.toml.bak", "not a plan")
    write(plans, "2026-03.TOML", "not a plan")
    write(plans, ".2026-04.toml", "hidden: not a plan")  # e.g. an editor's lock or swap file
    write(plans / "old", "2025-01.toml", version_text("v0", "2025-01"))  # not recursive
    (plans / "dir.toml").mkdir()  # a directory, whatever its name
    assert [record.source for record in load_plans(plans).records] == [str(plans / "2026-01.toml")]


def test_a_directory_of_one_version_is_in_force_for_every_period(tmp_path: Path) -> None:
    plans = load_plans(write(tmp_path / "plans", "only.toml", version_text("v1", "2026-05")).parent)
    assert plans.single
    assert plans.for_period("2020-01").version == plans.for_period("2030-01").version == "v1"


def test_load_plan_refuses_a_directory_pointing_to_load_plans(three: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(three)
    assert str(caught.value) == (
        f"plan {three}: is a directory of plan versions (SPEC section 12); load it with "
        f"stream.plan_versions.load_plans, which picks the version in force for each period"
    )


# -- refused at start-up, naming the files ----------------------------------------------------


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plans").mkdir()
    expected = (f"plan {tmp_path / 'plans'}: the plan directory has no *.toml file (each version of the plan is "
                f"one *.toml file directly in it)")
    assert refusal(tmp_path / "plans") == expected
    write(tmp_path / "plans", "notes.txt", "")
    write(tmp_path / "plans" / "sub", "v.toml", version_text("v1", "2026-01"))
    assert refusal(tmp_path / "plans") == expected


def test_a_version_without_effective_from_in_a_directory_is_refused(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    write(plans, "a.toml", version_text("v1", "2026-01"))
    write(plans, "b.toml", version_text("v2"))
    assert refusal(plans) == (f"plan {plans / 'b.toml'}: effective_from: missing required key "
                              f"(every version in a plan directory has one)")
    (plans / "a.toml").unlink()  # alone in its directory, still a version of a directory
    assert refusal(plans) == (f"plan {plans / 'b.toml'}: effective_from: missing required key "
                              f"(every version in a plan directory has one)")


def test_two_versions_with_the_same_effective_from_are_refused(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    write(plans, "a.toml", version_text("v1", "2026-01"))
    write(plans, "b.toml", version_text("v2", "2026-03"))
    write(plans, "c.toml", version_text("v3", "2026-03"))
    assert refusal(plans) == (f"plan {plans}: effective_from: {plans / 'b.toml'} and {plans / 'c.toml'} have the "
                              f"same effective_from '2026-03'; each version needs its own first period")
    write(plans, "d.toml", version_text("v4", "2026-03"))
    assert refusal(plans) == (f"plan {plans}: effective_from: {plans / 'b.toml'}, {plans / 'c.toml'} and "
                              f"{plans / 'd.toml'} have the same effective_from '2026-03'; each version needs "
                              f"its own first period")


def test_two_versions_with_the_same_version_are_refused(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    write(plans, "a.toml", version_text("v1", "2026-01"))
    write(plans, "b.toml", version_text("v1", "2026-03"))
    assert refusal(plans) == (f"plan {plans}: version: {plans / 'a.toml'} and {plans / 'b.toml'} have the same "
                              f"version 'v1'; each version needs its own name, which bonus rows record as "
                              f"plan_version")


def test_versions_with_different_time_zones_are_refused(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    write(plans, "a.toml", version_text("v1", "2026-01"))
    write(plans, "b.toml", version_text("v2", "2026-03", timezone="Europe/Berlin"))
    write(plans, "c.toml", version_text("v3", "2026-05"))
    assert refusal(plans) == (f"plan {plans}: timezone: the versions must share one time zone (periods are months "
                              f"in it), got 'UTC' in {plans / 'a.toml'} and {plans / 'c.toml'}; 'Europe/Berlin' "
                              f"in {plans / 'b.toml'}")


def test_a_broken_version_is_refused_naming_its_file_and_key(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    write(plans, "a.toml", version_text("v1", "2026-01"))
    write(plans, "b.toml", version_text("v2", "2026-03").replace("min_count = 3", "min_count = -3"))
    assert refusal(plans) == f"plan {plans / 'b.toml'}: cross_sell.min_count: must not be negative, got -3"
    write(plans, "b.toml", version_text("v2", "2026-13"))
    assert refusal(plans) == (f"plan {plans / 'b.toml'}: effective_from: period '2026-13' must be YYYY-MM, "
                              f"e.g. 2026-11")
    write(plans, "b.toml", "version = \n")
    assert refusal(plans).startswith(f"plan {plans / 'b.toml'}: not valid TOML: ")
    (plans / "b.toml").unlink()
    (plans / "b.toml").symlink_to(tmp_path / "gone.toml")  # a version that cannot be read is no version to skip
    assert refusal(plans) == f"plan {plans / 'b.toml'}: cannot read the plan file: No such file or directory"


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    assert refusal(nowhere) == f"plan {nowhere}: cannot read the plan file: No such file or directory"


def test_a_period_is_checked() -> None:
    with pytest.raises(CrmbonusError) as caught:
        load_plans().for_period("2026-1")
    assert str(caught.value) == "period '2026-1' must be YYYY-MM, e.g. 2026-11"


# -- plans made in code ------------------------------------------------------------------------


def test_plans_of_follow_the_rules_of_a_directory() -> None:
    v1 = dataclasses.replace(DEFAULT, version="v1", effective_from="2026-05")
    v2 = dataclasses.replace(DEFAULT, version="v2", effective_from="2026-02")
    plans = Plans.of(v1, v2)
    assert plans.versions == (v2, v1)
    assert [record.source for record in plans.records] == ["<plans>[1]", "<plans>[0]"]
    assert plans.for_period("2026-01") is v2 and plans.for_period("2026-05") is v1
    assert Plans.of(DEFAULT).for_period("2026-05") is DEFAULT
    with pytest.raises(PlanError) as caught:
        Plans.of()
    assert str(caught.value) == "plan <plans>: no plan version"
    with pytest.raises(PlanError) as caught:
        Plans.of(v1, dataclasses.replace(DEFAULT, version="v3"), source="test")
    assert str(caught.value) == ("plan test[1]: effective_from: missing required key (each of several versions has "
                                 "one, the first period it is in force)")
    with pytest.raises(PlanError) as caught:
        Plans.of(v1, dataclasses.replace(v2, version="v1"))
    assert str(caught.value) == ("plan <plans>: version: <plans>[0] and <plans>[1] have the same version 'v1'; each "
                                 "version needs its own name, which bonus rows record as plan_version")
    with pytest.raises(ValueError, match=r"^plan version 'default-1' is not one of the plans of <plans>$"):
        plans.digest(DEFAULT)


def test_the_digest_of_a_plan_is_of_its_values() -> None:
    spelled = parse_plan(DEFAULT_TEXT.replace('"0.30"', '"0.3"'))
    assert spelled == DEFAULT and plan_digest(spelled) == plan_digest(DEFAULT)
    assert plan_digest(DEFAULT) == plan_digest(load_plan())
    assert plan_digest(dataclasses.replace(DEFAULT, min_count=4)) != plan_digest(DEFAULT)
    assert plan_digest(load_plan(DEMO_PLAN_PATH)) != plan_digest(DEFAULT)


# -- content digests ---------------------------------------------------------------------------

#: The default plan with other comments, whitespace, quotes, inline tables spelled out and the keys
#: in another order: the same document.
REORDERED = """
timezone='UTC'
clawback_days=90
telemarketer_share = '0.30'
attribution_model = "last_touch"
attribution_window_days = 30
version = "default-1"   # moved

[appointments]
conversion_window_days = 14
conversion_bonus = "10.00"
held_credit = "25.00"

[cross_sell.matrix]
insurance = ["warranty"]
tv = ["accessories", "warranty", "streaming"]
plans = ["phones", "insurance"]
phones = ["accessories", "insurance", "plans", "warranty"]
laptops = [
  "accessories", "software", "insurance", "warranty",
]

[cross_sell]
tiers = [{ rate = "0.03", up_to = "5000.00" }, { rate = "0.05" }]
min_count = 3
"""


def test_the_digest_ignores_comments_whitespace_and_key_order() -> None:
    assert parse_plan(REORDERED) == DEFAULT
    assert content_digest(REORDERED) == content_digest(DEFAULT_TEXT)
    uncommented = "\n".join(line.split("#")[0] for line in DEFAULT_TEXT.splitlines())
    assert content_digest(uncommented) == content_digest(DEFAULT_TEXT)
    assert len(content_digest(DEFAULT_TEXT)) == 64 and int(content_digest(DEFAULT_TEXT), 16) >= 0


def test_the_same_content_in_two_files_has_one_digest(tmp_path: Path) -> None:
    first = load_plans(write(tmp_path, "one.toml", DEFAULT_TEXT)).records[0]
    second = load_plans(write(tmp_path, "two.toml", REORDERED)).records[0]
    assert first.digest == second.digest == load_plans().records[0].digest
    assert first.source != second.source


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('version = "default-1"', 'version = "default-2"'),
        ('version = "default-1"', 'version = "default-1"\neffective_from = "2026-01"'),
        ('timezone = "UTC"', 'timezone = "Europe/Berlin"'),
        ('"0.30"', '"0.31"'),
        ('"0.30"', '"0.3"'),  # the same share, spelled otherwise: the file's content changed
        ("clawback_days = 90", "clawback_days = 91"),
        ("min_count = 3", "min_count = 4"),
        ("min_count = 3", 'min_count = 3\nmin_amount = "0"'),  # the default, now written out
        ('{ rate = "0.05" }', '{ rate = "0.06" }'),
        ('plans    = ["phones", "insurance"]', 'plans    = ["insurance", "phones"]'),
        ('insurance = ["warranty"]', 'insurance = ["warranty", "plans"]'),
        ('"25.00"', '"25.01"'),
        ("conversion_window_days = 14", "conversion_window_days = 15"),
        ("conversion_window_days = 14", 'conversion_window_days = 14\n\n[upsell]\nrate = "0.02"'),
    ],
)
def test_the_digest_changes_with_any_value(old: str, new: str) -> None:
    assert DEFAULT_TEXT.count(old) == 1, old
    changed = DEFAULT_TEXT.replace(old, new)
    parse_plan(changed)  # still a plan
    assert content_digest(changed) != content_digest(DEFAULT_TEXT)


# -- properties ----------------------------------------------------------------------------------

MONTHS = st.tuples(st.integers(2020, 2030), st.integers(1, 12)).map(lambda ym: f"{ym[0]:04d}-{ym[1]:02d}")


@settings(max_examples=60, deadline=None)
@given(starts=st.sets(MONTHS, min_size=1, max_size=6), periods=st.lists(MONTHS, min_size=1, max_size=8),
       names=st.randoms(use_true_random=False))
def test_for_period_picks_the_latest_version_started_by_then(
    starts: set[str], periods: list[str], names: object
) -> None:
    """Any distinct effective_from months, files named in any order: the version in force is the
    one with the greatest effective_from <= P, else the earliest."""
    order = sorted(starts)
    shuffled = list(order)
    names.shuffle(shuffled)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as directory:
        for index, start in enumerate(shuffled):
            write(Path(directory), f"{index:02d}.toml", version_text(f"from-{start}", start))
        plans = load_plans(directory)
    assert [plan.effective_from for plan in plans.versions] == order
    for period in periods:
        started = [start for start in order if start <= period]
        expected = started[-1] if started else order[0]
        assert plans.for_period(period).version == f"from-{expected}"
        assert plans.for_period(period) == Plans.of(*plans.versions).for_period(period)
