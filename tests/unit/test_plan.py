"""SPEC §4: the plan loads exactly, and every broken rule is refused naming its key."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from stream.errors import ConfigError, PlanError
from stream.plan import DEFAULT_PLAN_PATH, Plan, Tier, load_plan, parse_plan

DEFAULT_TEXT = DEFAULT_PLAN_PATH.read_text(encoding="utf-8")


def mutated(old: str, new: str) -> str:
    """The default plan with one exact snippet replaced (fails loudly if the snippet moved)."""
    assert DEFAULT_TEXT.count(old) == 1, old
    return DEFAULT_TEXT.replace(old, new)


def refusal(text: str) -> str:
    with pytest.raises(PlanError) as caught:
        parse_plan(text, "deploy/x.toml")
    return str(caught.value)


def test_default_plan_has_the_values_of_spec_section_4() -> None:
    plan = load_plan()
    assert plan.version == "default-1"
    assert plan.timezone == "UTC"
    assert plan.zone.key == "UTC"
    assert plan.attribution_window == timedelta(days=30)
    assert plan.attribution_model == "last_touch"
    assert str(plan.telemarketer_share) == "0.30"
    assert plan.clawback == timedelta(days=90)
    assert plan.min_count == 3
    assert plan.tiers == (Tier(Decimal("5000.00"), Decimal("0.03")), Tier(None, Decimal("0.05")))
    assert dict(plan.matrix) == {
        "laptops": frozenset({"accessories", "software", "insurance", "warranty"}),
        "phones": frozenset({"accessories", "insurance", "plans", "warranty"}),
        "plans": frozenset({"phones", "insurance"}),
        "tv": frozenset({"accessories", "warranty", "streaming"}),
        "insurance": frozenset({"warranty"}),
    }
    assert str(plan.held_credit) == "25.00"
    assert str(plan.conversion_bonus) == "10.00"
    assert plan.conversion_window == timedelta(days=14)


def test_default_path_is_the_shipped_file_and_none_means_it() -> None:
    root = Path(__file__).resolve().parents[2]
    assert DEFAULT_PLAN_PATH == root / "stream/plans/default.toml"  # package data, in the wheel too
    assert (root / "deploy/plans/default.toml").resolve() == DEFAULT_PLAN_PATH  # the repository's link to it
    assert load_plan(None) == load_plan(DEFAULT_PLAN_PATH) == load_plan(str(DEFAULT_PLAN_PATH))


def test_plan_is_immutable_and_hashable() -> None:
    plan = load_plan()
    with pytest.raises(TypeError):
        plan.matrix["tv"] = frozenset()  # type: ignore[index]
    assert hash(plan) == hash(load_plan())


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PlanError, match=re.escape(f"plan {missing}: cannot read the plan file")):
        load_plan(missing)


def test_plan_error_is_a_config_error_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(mutated("clawback_days = 90", "clawback_days = -90"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_plan(path)
    assert str(caught.value) == f"plan {path}: clawback_days: must not be negative, got -90"


def test_invalid_toml_is_refused() -> None:
    assert refusal("version = ").startswith("plan deploy/x.toml: not valid TOML: ")


REFUSALS = [
    # (old snippet, new snippet, exact "key: problem" expected after the source)
    pytest.param("clawback_days = 90", "", "clawback_days: missing required key", id="missing-top-key"),
    pytest.param("min_count = 3", "", "cross_sell.min_count: missing required key", id="missing-nested-key"),
    pytest.param(
        'held_credit = "25.00"',
        "",
        "appointments.held_credit: missing required key",
        id="missing-money",
    ),
    pytest.param(
        'version = "default-1"',
        "version = 3",
        "version: must be a non-empty string, got an integer",
        id="version-type",
    ),
    pytest.param(
        "attribution_window_days = 30",
        'attribution_window_days = "30"',
        "attribution_window_days: must be a whole number (TOML integer), got a string",
        id="days-as-string",
    ),
    pytest.param(
        "conversion_window_days = 14",
        "conversion_window_days = 1.5",
        "appointments.conversion_window_days: must be a whole number (TOML integer), got a float",
        id="days-as-float",
    ),
    pytest.param(
        "clawback_days = 90",
        "clawback_days = -1",
        "clawback_days: must not be negative, got -1",
        id="negative-days",
    ),
    pytest.param(
        "attribution_window_days = 30",
        "attribution_window_days = 99999999999",
        "attribution_window_days: must be at most 36525, got 99999999999",
        id="days-beyond-a-century",
    ),
    pytest.param(
        "min_count = 3",
        "min_count = -1",
        "cross_sell.min_count: must not be negative, got -1",
        id="negative-min-count",
    ),
    pytest.param(
        "min_count = 3",
        "min_count = true",
        "cross_sell.min_count: must be a whole number (TOML integer), got a boolean",
        id="bool-min-count",
    ),
    pytest.param(
        'laptops  = ["accessories"',
        'laptops  = ["laptops", "accessories"',
        "cross_sell.matrix.laptops: category 'laptops' lists itself",
        id="matrix-lists-itself",
    ),
    pytest.param(
        'laptops  = ["accessories"',
        'laptops  = [1, "accessories"',
        "cross_sell.matrix.laptops[0]: must be a category name, got an integer",
        id="matrix-item-type",
    ),
    pytest.param(
        'insurance = ["warranty"]',
        'insurance = ["warranty", 0.5]',
        "cross_sell.matrix.insurance[1]: must be a category name, got a float",
        id="matrix-item-type-not-first-anchor",
    ),
    pytest.param(
        'insurance = ["warranty"]',
        'insurance = "warranty"',
        "cross_sell.matrix.insurance: must be an array of category names, got a string",
        id="matrix-value-type",
    ),
    pytest.param(
        '{ rate = "0.05" } ]',
        '{ up_to = "1000.00", rate = "0.04" }, { rate = "0.05" } ]',
        "cross_sell.tiers[1].up_to: tiers must be sorted ascending by up_to: 1000.00 is not "
        "above cross_sell.tiers[0].up_to = 5000.00",
        id="unsorted-tiers",
    ),
    pytest.param(
        '{ rate = "0.05" } ]',
        '{ up_to = "5000.00", rate = "0.04" }, { rate = "0.05" } ]',
        "cross_sell.tiers[1].up_to: tiers must be sorted ascending by up_to: 5000.00 is not "
        "above cross_sell.tiers[0].up_to = 5000.00",
        id="equal-tiers",
    ),
    pytest.param(
        '{ rate = "0.05" } ]',
        '{ up_to = "9000.00", rate = "0.05" } ]',
        "cross_sell.tiers[1].up_to: the last tier must not have up_to (it is open-ended)",
        id="last-tier-bounded",
    ),
    pytest.param(
        '{ up_to = "5000.00", rate = "0.03" }',
        '{ rate = "0.03" }',
        "cross_sell.tiers[0].up_to: missing required key (only the last tier has no up_to)",
        id="non-last-tier-open",
    ),
    pytest.param(
        'rate = "0.03"',
        'rate = "-0.03"',
        "cross_sell.tiers[0].rate: must not be negative, got -0.03",
        id="negative-rate",
    ),
    pytest.param(
        'rate = "0.03"',
        "rate = 0.03",
        'cross_sell.tiers[0].rate: TOML float 0.03 is inexact binary; quote it as a string, e.g. "0.03"',
        id="float-rate",
    ),
    pytest.param(
        'up_to = "5000.00"',
        'up_to = "-1"',
        "cross_sell.tiers[0].up_to: must not be negative, got -1",
        id="negative-up-to",
    ),
    pytest.param(
        'tiers = [ { up_to = "5000.00", rate = "0.03" }, { rate = "0.05" } ]',
        "tiers = []",
        "cross_sell.tiers: must be a non-empty array of tables, got an array",
        id="no-tiers",
    ),
    pytest.param(
        'rate = "0.03"',
        'rate = "0.03", cap = "9"',
        "cross_sell.tiers[0].cap: unknown key; expected one of up_to, rate",
        id="tier-unknown-key",
    ),
    pytest.param(
        'telemarketer_share = "0.30"',
        'telemarketer_share = "1.01"',
        "telemarketer_share: must be between 0 and 1, got 1.01",
        id="share-above-1",
    ),
    pytest.param(
        'telemarketer_share = "0.30"',
        'telemarketer_share = "-0.01"',
        "telemarketer_share: must be between 0 and 1, got -0.01",
        id="share-below-0",
    ),
    pytest.param(
        'telemarketer_share = "0.30"',
        "telemarketer_share = 0.3",
        'telemarketer_share: TOML float 0.3 is inexact binary; quote it as a string, e.g. "0.3"',
        id="float-share",
    ),
    pytest.param(
        'telemarketer_share = "0.30"',
        "telemarketer_share = true",
        'telemarketer_share: must be a decimal string such as "0.30", got a boolean',
        id="bool-share",
    ),
    pytest.param(
        'held_credit = "25.00"',
        "held_credit = 25.0",
        'appointments.held_credit: TOML float 25.0 is inexact binary; quote it as a string, e.g. "25.0"',
        id="float-money",
    ),
    pytest.param(
        'held_credit = "25.00"',
        'held_credit = "-25.00"',
        "appointments.held_credit: must not be negative, got -25.00",
        id="negative-credit",
    ),
    pytest.param(
        'conversion_bonus = "10.00"',
        'conversion_bonus = "ten"',
        "appointments.conversion_bonus: not a decimal number: 'ten'",
        id="not-a-number",
    ),
    pytest.param(
        'conversion_bonus = "10.00"',
        'conversion_bonus = "Infinity"',
        "appointments.conversion_bonus: must be a finite number, got 'Infinity'",
        id="infinite",
    ),
    pytest.param(
        'conversion_bonus = "10.00"',
        'conversion_bonus = "-inf"',
        "appointments.conversion_bonus: must be a finite number, got '-inf'",
        id="infinite-as-spelled",
    ),
    pytest.param(
        'attribution_model = "last_touch"',
        'attribution_model = "even_split"',
        "attribution_model: unknown model 'even_split'; expected one of last_touch, first_touch, linear",
        id="unknown-model",
    ),
    pytest.param(
        'timezone = "UTC"',
        'timezone = "Mars/Olympus_Mons"',
        "timezone: unknown IANA time zone 'Mars/Olympus_Mons'",
        id="unknown-zone",
    ),
    pytest.param(
        'timezone = "UTC"',
        'timezone = "Europe"',
        "timezone: unknown IANA time zone 'Europe'",
        id="zone-directory",
    ),
    pytest.param(
        'timezone = "UTC"',
        'timezone = "/etc/passwd"',
        "timezone: unknown IANA time zone '/etc/passwd'",
        id="zone-path",
    ),
    pytest.param(
        'version = "default-1"',
        'version = "default-1"\nclawback_day = 9',
        "clawback_day: unknown key; expected one of version, effective_from, timezone, attribution_window_days, "
        "attribution_model, telemarketer_share, clawback_days, cross_sell, appointments, upsell, lead_sharing, kpi",
        id="unknown-top-key",
    ),
    pytest.param(
        "conversion_window_days = 14",
        "conversion_window_days = 14\nbonus = 1",
        "appointments.bonus: unknown key; expected one of held_credit, conversion_bonus, conversion_window_days",
        id="unknown-nested-key",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), REFUSALS)
def test_refusal_names_the_key(old: str, new: str, expected: str) -> None:
    assert refusal(mutated(old, new)) == f"plan deploy/x.toml: {expected}"


def test_missing_table_is_refused() -> None:
    text = DEFAULT_TEXT[: DEFAULT_TEXT.index("[appointments]")]
    assert refusal(text) == "plan deploy/x.toml: appointments: missing required key"


def test_table_of_wrong_type_is_refused() -> None:
    text = DEFAULT_TEXT[: DEFAULT_TEXT.index("[cross_sell]")] + "cross_sell = 3\n"
    text += DEFAULT_TEXT[DEFAULT_TEXT.index("[appointments]") :]
    assert refusal(text) == "plan deploy/x.toml: cross_sell: must be a table, got an integer"


@pytest.mark.parametrize(
    ("old", "new", "field", "value"),
    [
        ('held_credit = "25.00"', "held_credit = 25", "held_credit", Decimal(25)),
        ('telemarketer_share = "0.30"', "telemarketer_share = 0", "telemarketer_share", 0),
        ('telemarketer_share = "0.30"', 'telemarketer_share = "1"', "telemarketer_share", 1),
        ("clawback_days = 90", "clawback_days = 0", "clawback", timedelta(0)),
        ('timezone = "UTC"', 'timezone = "Europe/Berlin"', "timezone", "Europe/Berlin"),
        ('laptops  = ["accessories"', 'laptops  = ["accessories", "accessories"', "matrix", None),
    ],
)
def test_accepted_edges(old: str, new: str, field: str, value: object) -> None:
    plan = parse_plan(mutated(old, new))
    assert isinstance(plan, Plan)
    if value is not None:
        assert getattr(plan, field) == value


def test_decimals_keep_their_exact_digits() -> None:
    plan = parse_plan(mutated('telemarketer_share = "0.30"', 'telemarketer_share = "0.1"'))
    assert plan.telemarketer_share == Decimal("0.1")
    assert plan.telemarketer_share * 3 == Decimal("0.3")  # would not hold for a float
