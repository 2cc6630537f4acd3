"""SPEC §4, §12, §13: the plan loads exactly, and every broken rule is refused naming its key."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from schemas.events import ROLES
from stream.errors import ConfigError, PlanError
from stream.plan import (
    DEFAULT_PLAN_PATH,
    DEMO_PLAN_PATH,
    KPI_METRICS,
    Kpi,
    KpiComponent,
    Plan,
    Tier,
    load_plan,
    parse_plan,
)

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


# -- SPEC §12 and §13: the optional keys ----------------------------------------------------

#: A `[kpi]` section with two components, appended to the default plan by `with_kpi`.
KPI_SECTION = """
[kpi]
target_bonus = "200.00"

[[kpi.components]]
name = "bought"
weight = "0.5"
metric = "conversions"
target = 4

[[kpi.components]]
name = "stars"
weight = "0.5"
metric = "rating"
target = "4.5"
"""


def appended(section: str) -> str:
    """The default plan with `section` (new tables) after its last table."""
    return DEFAULT_TEXT + "\n" + section.strip("\n") + "\n"


def with_kpi(old: str = "", new: str = "") -> str:
    """The default plan plus `KPI_SECTION`, with one exact snippet of the section replaced."""
    if old:
        assert KPI_SECTION.count(old) == 1, old
    return appended(KPI_SECTION.replace(old, new) if old else KPI_SECTION)


def test_a_version_1_plan_means_the_defaults() -> None:
    plan = load_plan()
    assert plan.min_amount == Decimal(0)
    assert plan.upsell_rate is None
    assert (plan.bronze_points, plan.silver_points, plan.gold_prize) == (5, 15, Decimal(0))
    assert plan.kpi is None
    assert plan.effective_from is None


def test_empty_sections_take_the_defaults() -> None:
    plan = parse_plan(appended("[lead_sharing]"))
    assert (plan.bronze_points, plan.silver_points, plan.gold_prize) == (5, 15, Decimal(0))
    assert plan == load_plan()  # an empty [lead_sharing] means what no [lead_sharing] means
    assert parse_plan(mutated("min_count = 3", 'min_count = 3\nmin_amount = "0"')) == load_plan()


def test_every_new_key_is_read() -> None:
    plan = parse_plan(
        mutated('version = "default-1"', 'version = "default-1"\neffective_from = "2027-01"').replace(
            "min_count = 3", 'min_count = 3\nmin_amount = "250.50"'
        )
        + '\n[upsell]\nrate = "0.10"\n\n[lead_sharing]\nbronze_points = 2\nsilver_points = 2\ngold_prize = "500.00"\n'
    )
    assert plan.effective_from == "2027-01"
    assert str(plan.min_amount) == "250.50"
    assert str(plan.upsell_rate) == "0.10"
    assert (plan.bronze_points, plan.silver_points, str(plan.gold_prize)) == (2, 2, "500.00")  # equal is allowed


def test_kpi_section_defaults_roles_and_cap() -> None:
    kpi = parse_plan(with_kpi()).kpi
    assert kpi == Kpi(
        target_bonus=Decimal("200.00"),
        roles=("telemarketer", "field_rep"),
        components=(
            KpiComponent("bought", Decimal("0.5"), "conversions", Decimal(4), Decimal(1)),
            KpiComponent("stars", Decimal("0.5"), "rating", Decimal("4.5"), Decimal(1)),
        ),
    )
    assert kpi is not None and kpi.roles == ROLES
    assert KPI_METRICS == ("conversions", "rating", "compliance")


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ('["field_rep"]', ("field_rep",)),
        ('["telemarketer"]', ("telemarketer",)),
        ('["field_rep", "telemarketer"]', ("telemarketer", "field_rep")),  # ROLES order: the same plan
    ],
)
def test_kpi_roles(roles: str, expected: tuple[str, ...]) -> None:
    kpi = parse_plan(with_kpi('target_bonus = "200.00"', f'target_bonus = "200.00"\nroles = {roles}')).kpi
    assert kpi is not None and kpi.roles == expected


def test_a_plan_with_every_programme_is_hashable() -> None:
    plan = load_plan(DEMO_PLAN_PATH)
    assert hash(plan) == hash(load_plan(DEMO_PLAN_PATH))
    assert plan == load_plan(DEMO_PLAN_PATH) != load_plan()


def test_demo_plan_is_the_default_plan_with_every_programme_on() -> None:
    root = Path(__file__).resolve().parents[2]
    assert DEMO_PLAN_PATH == root / "stream/plans/demo.toml"  # package data beside default.toml
    demo, default = load_plan(DEMO_PLAN_PATH), load_plan()
    assert demo.version == "demo-1"
    assert demo.min_amount == Decimal("100.00")
    assert demo.upsell_rate == Decimal("0.10")
    assert (demo.bronze_points, demo.silver_points, demo.gold_prize) == (20, 40, Decimal("500.00"))
    assert demo.kpi == Kpi(
        target_bonus=Decimal("200.00"),
        roles=ROLES,
        components=(
            KpiComponent("conversions", Decimal("0.5"), "conversions", Decimal(4), Decimal(1)),
            KpiComponent("rating", Decimal("0.3"), "rating", Decimal("4.5"), Decimal(1)),
            KpiComponent("compliance", Decimal("0.2"), "compliance", Decimal("0.95"), Decimal(1)),
        ),
    )
    assert demo.effective_from is None
    # Everything else is the default plan's.
    programmes = {"version", "min_amount", "upsell_rate", "bronze_points", "silver_points", "gold_prize", "kpi"}
    for name in Plan.__dataclass_fields__.keys() - programmes:
        assert getattr(demo, name) == getattr(default, name), name


NEW_KEY_REFUSALS = [
    # (plan text, exact "key: problem" expected after the source)
    pytest.param(
        mutated('version = "default-1"', 'version = "default-1"\neffective_from = "2026-13"'),
        "effective_from: period '2026-13' must be YYYY-MM, e.g. 2026-11",
        id="effective-from-month-13",
    ),
    pytest.param(
        mutated('version = "default-1"', 'version = "default-1"\neffective_from = "2026-1"'),
        "effective_from: period '2026-1' must be YYYY-MM, e.g. 2026-11",
        id="effective-from-one-digit-month",
    ),
    pytest.param(
        mutated('version = "default-1"', 'version = "default-1"\neffective_from = 2026-11-01'),
        'effective_from: must be a period string "YYYY-MM", got a date',
        id="effective-from-toml-date",
    ),
    pytest.param(
        mutated("min_count = 3", 'min_count = 3\nmin_amount = "-0.01"'),
        "cross_sell.min_amount: must not be negative, got -0.01",
        id="negative-min-amount",
    ),
    pytest.param(
        mutated("min_count = 3", "min_count = 3\nmin_amount = 100.0"),
        'cross_sell.min_amount: TOML float 100.0 is inexact binary; quote it as a string, e.g. "100.0"',
        id="float-min-amount",
    ),
    pytest.param(appended("[upsell]"), "upsell.rate: missing required key", id="upsell-without-rate"),
    pytest.param(
        appended('[upsell]\nrate = "1.5"'), "upsell.rate: must be between 0 and 1, got 1.5", id="upsell-rate-above-1"
    ),
    pytest.param(
        appended('[upsell]\nrate = "-0.1"'), "upsell.rate: must be between 0 and 1, got -0.1", id="upsell-rate-below-0"
    ),
    pytest.param(
        appended("[upsell]\nrate = 0.1"),
        'upsell.rate: TOML float 0.1 is inexact binary; quote it as a string, e.g. "0.1"',
        id="upsell-rate-float",
    ),
    pytest.param(
        appended('[upsell]\nrate = "0.1"\nmin_amount = "5"'),
        "upsell.min_amount: unknown key; expected one of rate",
        id="upsell-unknown-key",
    ),
    pytest.param(
        mutated('version = "default-1"', 'version = "default-1"\nupsell = "0.1"'),
        "upsell: must be a table, got a string",
        id="upsell-not-a-table",
    ),
    pytest.param(
        appended("[lead_sharing]\nsilver_points = 3"),
        "lead_sharing.silver_points: must not be below lead_sharing.bronze_points = 5, got 3",
        id="silver-below-bronze",
    ),
    pytest.param(
        appended("[lead_sharing]\nbronze_points = 20"),
        "lead_sharing.silver_points: must not be below lead_sharing.bronze_points = 20, got 15 (the default)",
        id="default-silver-below-bronze",
    ),
    pytest.param(
        appended("[lead_sharing]\nbronze_points = -1"),
        "lead_sharing.bronze_points: must not be negative, got -1",
        id="negative-bronze",
    ),
    pytest.param(
        appended('[lead_sharing]\nsilver_points = "15"'),
        "lead_sharing.silver_points: must be a whole number (TOML integer), got a string",
        id="silver-as-string",
    ),
    pytest.param(
        appended('[lead_sharing]\ngold_prize = "-500.00"'),
        "lead_sharing.gold_prize: must not be negative, got -500.00",
        id="negative-gold-prize",
    ),
    pytest.param(
        appended('[lead_sharing]\ngold_prize = "lots"'),
        "lead_sharing.gold_prize: not a decimal number: 'lots'",
        id="gold-prize-not-a-number",
    ),
    pytest.param(
        appended("[lead_sharing]\ngold = true"),
        "lead_sharing.gold: unknown key; expected one of bronze_points, silver_points, gold_prize",
        id="lead-sharing-unknown-key",
    ),
    pytest.param(
        with_kpi('target_bonus = "200.00"', ""), "kpi.target_bonus: missing required key", id="kpi-no-target-bonus"
    ),
    pytest.param(
        with_kpi('target_bonus = "200.00"', 'target_bonus = "-1"'),
        "kpi.target_bonus: must not be negative, got -1",
        id="kpi-negative-target-bonus",
    ),
    pytest.param(
        appended('[kpi]\ntarget_bonus = "200.00"'), "kpi.components: missing required key", id="kpi-no-components"
    ),
    pytest.param(
        appended('[kpi]\ntarget_bonus = "200.00"\ncomponents = []'),
        "kpi.components: must be a non-empty array of tables ([[kpi.components]]), got an array",
        id="kpi-empty-components",
    ),
    pytest.param(
        with_kpi('target_bonus = "200.00"', 'target_bonus = "200.00"\nbonus = 1'),
        "kpi.bonus: unknown key; expected one of target_bonus, roles, components",
        id="kpi-unknown-key",
    ),
    pytest.param(
        with_kpi('target_bonus = "200.00"', 'target_bonus = "200.00"\nroles = []'),
        "kpi.roles: must be a non-empty array of role names, got an array",
        id="kpi-no-roles",
    ),
    pytest.param(
        with_kpi('target_bonus = "200.00"', 'target_bonus = "200.00"\nroles = "field_rep"'),
        "kpi.roles: must be a non-empty array of role names, got a string",
        id="kpi-roles-not-an-array",
    ),
    pytest.param(
        with_kpi('target_bonus = "200.00"', 'target_bonus = "200.00"\nroles = ["field_rep", "manager"]'),
        "kpi.roles[1]: unknown role 'manager'; expected one of telemarketer, field_rep",
        id="kpi-unknown-role",
    ),
    pytest.param(
        with_kpi('target_bonus = "200.00"', 'target_bonus = "200.00"\nroles = ["field_rep", "field_rep"]'),
        "kpi.roles[1]: role 'field_rep' is listed twice (also kpi.roles[0])",
        id="kpi-role-twice",
    ),
    pytest.param(
        with_kpi('target_bonus = "200.00"', 'target_bonus = "200.00"\nroles = [1]'),
        "kpi.roles[0]: must be a role name, got an integer",
        id="kpi-role-type",
    ),
    pytest.param(
        with_kpi('name = "stars"', 'name = "bought"'),
        "kpi.components[1].name: 'bought' is already the name of kpi.components[0]",
        id="component-name-twice",
    ),
    pytest.param(
        with_kpi('name = "stars"', 'name = ""'),
        "kpi.components[1].name: must be a non-empty string, got a string",
        id="component-name-empty",
    ),
    pytest.param(
        with_kpi('name = "stars"\n', ""), "kpi.components[1].name: missing required key", id="component-no-name"
    ),
    pytest.param(
        with_kpi('weight = "0.5"\nmetric = "rating"', 'weight = "0"\nmetric = "rating"'),
        "kpi.components[1].weight: must be above 0 and at most 1, got 0",
        id="component-weight-zero",
    ),
    pytest.param(
        with_kpi('weight = "0.5"\nmetric = "conversions"', 'weight = "1.5"\nmetric = "conversions"'),
        "kpi.components[0].weight: must be above 0 and at most 1, got 1.5",
        id="component-weight-above-1",
    ),
    pytest.param(
        with_kpi('weight = "0.5"\nmetric = "rating"', 'weight = 0.5\nmetric = "rating"'),
        'kpi.components[1].weight: TOML float 0.5 is inexact binary; quote it as a string, e.g. "0.5"',
        id="component-weight-float",
    ),
    pytest.param(
        with_kpi('weight = "0.5"\nmetric = "rating"', 'weight = "0.4"\nmetric = "rating"'),
        "kpi.components: the weights must sum to exactly 1, got 0.5 + 0.4 = 0.9",
        id="weights-below-1",
    ),
    pytest.param(
        with_kpi('weight = "0.5"\nmetric = "rating"', 'weight = "0.5000000000000000000000000000001"\nmetric = "ra'
                 'ting"'),
        "kpi.components: the weights must sum to exactly 1, got 0.5 + 0.5000000000000000000000000000001 = "
        "1.0000000000000000000000000000001",
        id="weights-above-1-beyond-decimal-precision",
    ),
    pytest.param(
        with_kpi('metric = "rating"', 'metric = "sales"'),
        "kpi.components[1].metric: unknown metric 'sales'; expected one of conversions, rating, compliance",
        id="component-unknown-metric",
    ),
    pytest.param(
        with_kpi('target = "4.5"', 'target = "0"'),
        "kpi.components[1].target: must be above 0, got 0",
        id="component-target-zero",
    ),
    pytest.param(
        with_kpi('target = "4.5"', 'target = "-4.5"'),
        "kpi.components[1].target: must be above 0, got -4.5",
        id="component-target-negative",
    ),
    pytest.param(
        with_kpi('target = "4.5"', ""), "kpi.components[1].target: missing required key", id="component-no-target"
    ),
    pytest.param(
        with_kpi('target = "4.5"', 'target = "Infinity"'),
        "kpi.components[1].target: must be a finite number, got 'Infinity'",
        id="component-target-infinite",
    ),
    pytest.param(
        with_kpi('target = "4.5"', 'target = "4.5"\ncap = "0.99"'),
        "kpi.components[1].cap: must be at least 1, got 0.99",
        id="component-cap-below-1",
    ),
    pytest.param(
        with_kpi('target = "4.5"', 'target = "4.5"\ncap = "NaN"'),
        "kpi.components[1].cap: must be a finite number, got 'NaN'",
        id="component-cap-nan",
    ),
    pytest.param(
        with_kpi('target = "4.5"', 'target = "4.5"\nlimit = 2'),
        "kpi.components[1].limit: unknown key; expected one of name, weight, metric, target, cap",
        id="component-unknown-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), NEW_KEY_REFUSALS)
def test_new_key_refusal_names_the_key(text: str, expected: str) -> None:
    assert refusal(text) == f"plan deploy/x.toml: {expected}"


HALF, ONE, TARGET = Decimal("0.5"), Decimal(1), Decimal("4.5")


@pytest.mark.parametrize(
    ("old", "new", "component"),
    [
        ('target = "4.5"', 'target = "0.0001"', KpiComponent("stars", HALF, "rating", Decimal("0.0001"), ONE)),
        ('target = "4.5"', 'target = "4.5"\ncap = 3', KpiComponent("stars", HALF, "rating", TARGET, Decimal(3))),
        ('metric = "rating"', 'metric = "conversions"', KpiComponent("stars", HALF, "conversions", TARGET, ONE)),
    ],
    ids=["small-target", "cap-above-1", "metric-used-twice"],
)
def test_kpi_accepted_edges(old: str, new: str, component: KpiComponent) -> None:
    kpi = parse_plan(with_kpi(old, new)).kpi
    assert kpi is not None and kpi.components[1] == component


def test_kpi_target_bonus_may_be_zero_and_one_component_may_weigh_1() -> None:
    component = '[[kpi.components]]\nname = "all"\nweight = 1\nmetric = "compliance"\ntarget = "0.95"'
    kpi = parse_plan(appended(f"[kpi]\ntarget_bonus = 0\n\n{component}")).kpi
    assert kpi == Kpi(Decimal(0), ROLES, (KpiComponent("all", Decimal(1), "compliance", Decimal("0.95"), Decimal(1)),))


def test_upsell_rate_edges() -> None:
    assert parse_plan(appended("[upsell]\nrate = 0")).upsell_rate == 0  # a section, paying nothing
    assert parse_plan(appended('[upsell]\nrate = "1"')).upsell_rate == 1


@st.composite
def splits(draw: st.DrawFn) -> list[Decimal]:
    """Weights in (0, 1] that sum to exactly 1: the cuts of the unit interval at `places` digits."""
    places = draw(st.integers(0, 40))
    unit = 10**places
    cuts = draw(st.lists(st.integers(1, unit - 1), unique=True, max_size=min(6, unit - 1))) if unit > 1 else []
    bounds = [0, *sorted(cuts), unit]
    return [Decimal(f"{high - low}E-{places}") for low, high in itertools.pairwise(bounds)]


def components(weights: list[Decimal]) -> str:
    entries = "".join(
        f'\n[[kpi.components]]\nname = "c{index}"\nweight = "{weight}"\nmetric = "{KPI_METRICS[index % 3]}"\n'
        f"target = 1\n"
        for index, weight in enumerate(weights)
    )
    return appended(f'[kpi]\ntarget_bonus = "200.00"\n{entries}')


@given(splits())
def test_weights_summing_to_exactly_1_are_accepted_with_their_digits(weights: list[Decimal]) -> None:
    kpi = parse_plan(components(weights)).kpi
    assert kpi is not None
    assert [str(component.weight) for component in kpi.components] == [str(weight) for weight in weights]
    assert [component.name for component in kpi.components] == [f"c{index}" for index in range(len(weights))]


@given(splits(), st.data())
def test_weights_off_by_any_amount_are_refused(weights: list[Decimal], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(weights) - 1))
    off = Decimal(f"{data.draw(st.integers(1, 9))}E-{data.draw(st.integers(1, 45))}")
    with localcontext(prec=100):  # exact: more digits than any weight drawn here
        signs = [sign for sign in (-1, 1) if 0 < weights[index] + sign * off <= 1]  # each weight stays valid
        assume(signs)
        sign = data.draw(st.sampled_from(signs))
        weights[index] += sign * off
        total = 1 + sign * off
    message = refusal(components(weights))
    assert message.startswith("plan deploy/x.toml: kpi.components: the weights must sum to exactly 1, got ")
    assert message.endswith(f" = {total:f}")


@given(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False))
def test_money_keys_keep_the_exact_amount_written(amount: Decimal) -> None:
    plan = parse_plan(
        mutated("min_count = 3", f'min_count = 3\nmin_amount = "{amount}"')
        + f'\n[lead_sharing]\ngold_prize = "{amount}"\n'
    )
    assert (str(plan.min_amount), str(plan.gold_prize)) == (str(amount), str(amount))


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_silver_is_refused_exactly_when_below_bronze(bronze: int, silver: int) -> None:
    text = appended(f"[lead_sharing]\nbronze_points = {bronze}\nsilver_points = {silver}")
    if silver < bronze:
        assert refusal(text).startswith("plan deploy/x.toml: lead_sharing.silver_points: must not be below")
    else:
        assert (parse_plan(text).bronze_points, parse_plan(text).silver_points) == (bronze, silver)
