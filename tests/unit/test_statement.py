"""The statement's arithmetic spelled out (SPEC §15), exactly: gates and their words, tier bands and the
distance to the next, upsells, appointments, KPI components, the prize, adjustments, the JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from stream.rules import (
    APPOINTMENT_CONVERTED,
    APPOINTMENT_HELD,
    CONVERSION,
    CROSS_SELL,
    RATING,
    REVIEW,
    UPSELL,
    Credit,
    Fact,
)
from stream.statement import (
    Adjustment,
    CreditLine,
    LeadYear,
    Settled,
    build_statement,
    money,
    sections,
    statement_json,
)
from tests.unit.builders import DEFAULT, kpi, plan, programmes

D = Decimal
P = "2026-11"


def credit(kind: str, amount: str = "0", line: str = "L1", person: str = "fr-1", role: str = "field_rep",
           sale: str | None = "S1", lead: str | None = None, touch: str | None = None) -> Credit:
    return Credit(P, person, role, kind, "c1", sale if kind in (CROSS_SELL, UPSELL) else None,
                  line if kind in (CROSS_SELL, UPSELL) else None, lead, D(amount), D(1), touch, f"ev-{line}")


def sells(*amounts: str, person: str = "fr-1") -> list[CreditLine]:
    return [CreditLine(credit(CROSS_SELL, amount, f"L{i}", person), "accessories") for i, amount in enumerate(amounts)]


def section(statement: Any, title: str) -> Any:
    return next(s for s in sections(statement) if s.title.startswith(title))


@pytest.mark.parametrize(("amounts", "min_amount", "message"), [
    (("100.00",), "0", "2 more cross-sells unlock the bonus."),
    (("100.00", "50.00"), "0", "1 more cross-sell unlocks the bonus."),
    (("100.00", "50.00", "5.00"), "0", "The gates are met: the cross-sell bonus is paid."),
    (("100.00", "50.00", "5.00"), "300.00", "145.00 more in cross-sell amount unlocks the bonus."),
    (("100.00", "99.995", "5.00"), "205.00", "0.01 more in cross-sell amount unlocks the bonus."),
    (("100.00",), "300.00", "2 more cross-sells and 200.00 more in cross-sell amount unlock the bonus."),
    (("100.00", "1.00"), "300.00", "1 more cross-sell and 199.00 more in cross-sell amount unlock the bonus."),
])
def test_the_gates_say_what_is_missing(amounts: tuple[str, ...], min_amount: str, message: str) -> None:
    found = build_statement("fr-1", P, plan(min_amount=D(min_amount)), sells(*amounts))
    assert found.gate_message == message
    assert message in section(found, "Cross-sells").lines
    assert statement_json(found)["cross_sell"]["gate_message"] == message
    assert found.gates_met == message.startswith("The gates are met")


def test_an_unmet_gate_shows_what_the_bands_would_pay() -> None:
    found = build_statement("fr-1", P, plan(min_amount=D("300.00")), sells("100.00", "50.00", "5.00"))
    assert found.computed.cross_sell_bonus == D("0.00")
    assert section(found, "Cross-sells").lines[1:3] == (
        "Gate: at least 3 cross-sells; 3 so far: met.",
        "Gate: an amount of at least 300.00; 155.00 so far: 145.00 more needed.")
    assert section(found, "Cross-sells").after == (
        "4,845.00 more reaches the 5% band.",
        "Cross-sell bonus: 0.00 (the bands would pay 4.65 once the gates are met).")


@pytest.mark.parametrize(("amounts", "bands", "after", "bonus"), [
    # 355.00 in the first band: 3% of it, 4,645.00 to the 5% band
    (("200.00", "100.00", "55.00"), [("0.00 - 5,000.00", "3%", "355.00", "10.65", "reached"),
                                     ("5,000.00 - and above", "5%", "0.00", "0.00", "")],
     "4,645.00 more reaches the 5% band.", "10.65"),
    # exactly 5,000.00: the first band is full, the next cent is paid at 5%
    (("4000.00", "900.00", "100.00"), [("0.00 - 5,000.00", "3%", "5,000.00", "150.00", "reached"),
                                       ("5,000.00 - and above", "5%", "0.00", "0.00", "")],
     "The next cross-sell amount is paid at 5%.", "150.00"),
    # 6,000.0001: 5,000.00 at 3% and 1,000.0001 at 5% (exact), rounded once
    (("5000.00", "999.0001", "1.00"), [("0.00 - 5,000.00", "3%", "5,000.00", "150.00", ""),
                                       ("5,000.00 - and above", "5%", "1,000.0001", "50.000005", "reached")],
     "The amount is in the last band.", "200.00"),
])
def test_tier_bands_and_the_distance_to_the_next(amounts: tuple[str, ...], bands: list[tuple[str, ...]], after: str,
                                                 bonus: str) -> None:
    found = build_statement("fr-1", P, DEFAULT, sells(*amounts))
    shown = section(found, "Cross-sells")
    assert list(shown.table.rows) == bands
    assert shown.after == (after, f"Cross-sell bonus: {bonus}.")
    assert found.band_bonus == found.computed.cross_sell_bonus == D(bonus)


def test_upsells_appointments_and_their_arithmetic() -> None:
    lines = [CreditLine(credit(UPSELL, "300.00", "U1"), "phones"), CreditLine(credit(UPSELL, "22.05", "U2"), "tv"),
             CreditLine(credit(APPOINTMENT_HELD, "25.00", person="fr-1", lead="lead-1")),
             CreditLine(credit(APPOINTMENT_HELD, "25.00", person="fr-1", lead="lead-2")),
             CreditLine(credit(APPOINTMENT_CONVERTED, "10.00", person="fr-1", lead="lead-2"))]
    found = build_statement("fr-1", P, plan(upsell_rate=D("0.10")), lines)
    assert section(found, "Upsells").lines == ("2 upsells, uplift 322.05 x 10% = 32.21 (no gate).",)
    assert section(found, "Appointments").lines == ("2 held x 25.00 + 1 converted x 10.00 = 60.00.",)
    assert (found.computed.upsell_bonus, found.computed.appointment_bonus, found.computed.total_bonus) == (
        D("32.21"), D("60.00"), D("92.21"))
    assert section(build_statement("fr-1", P, DEFAULT, lines), "Upsells").lines == (
        "The plan has no upsell programme. 2 upsell line(s) are credited.",)


def fact(kind: str, key: str, value: str, person: str = "fr-1", role: str | None = "field_rep") -> Fact:
    return Fact(kind, P, person, "c1", key, D(value), role, datetime(2026, 11, 3, tzinfo=UTC))


def test_kpi_components_with_value_target_attainment_and_part() -> None:
    # conversions 2 of target 3 (cap 1.5): 2/3; rating (5 + 4) / 2 = 4.5 of 4.5: 1; compliance 1 of 2 passed
    # against 0.9: 5/9. 200 x (0.5 x 2/3 + 0.3 x 1 + 0.2 x 5/9) = 200 x 0.7444.. = 148.89
    facts = [fact(CONVERSION, "lead-1", "1", role=None), fact(CONVERSION, "lead-2", "1", role=None),
             fact(RATING, "fb-1", "5"), fact(RATING, "fb-2", "4"), fact(REVIEW, "qr-1", "1"), fact(REVIEW, "qr-2", "0")]
    found = build_statement("fr-1", P, plan(kpi=kpi()), facts=facts)
    shown = section(found, "KPI")
    assert shown.lines == ("KPI bonus: 200.00 x the sum of weight x attainment (0.7444) = 148.89.",)
    assert list(shown.table.rows) == [
        ("conversions", "conversions", "2", "3", "1.5", "0.6667", "0.5", "66.67"),
        ("rating", "rating", "4.5", "4.5", "1", "1", "0.3", "60.00"),
        ("compliance", "compliance", "0.5", "0.9", "1", "0.5556", "0.2", "22.22"),
    ]
    assert found.computed.kpi_bonus == D("148.89")
    document = statement_json(found)["kpi"]
    assert document["components"][0] == {"name": "conversions", "metric": "conversions", "value": "2", "target": "3",
                                         "cap": "1.5", "weight": "0.5", "attainment": "0.6666666667"}
    assert [i["key"] for i in document["inputs"]] == ["lead-1", "lead-2", "fb-1", "fb-2", "qr-1", "qr-2"]
    only_telemarketers = build_statement("fr-1", P, plan(kpi=kpi("200.00", ("telemarketer",))), facts=facts)
    assert section(only_telemarketers, "KPI").lines == ("The KPI bonus is for telemarketers only.",)
    assert only_telemarketers.computed.kpi_bonus == D("0.00")


def test_lead_points_badge_distance_and_the_december_prize() -> None:
    the_plan = programmes(gold_prize=D("1000.01"), bronze_points=2, silver_points=4)
    holders = {"tm-1": D("900.00"), "tm-2": D("900.00")}
    year = LeadYear(2026, 3, D("900.00"), "bronze", True, holders)
    december = build_statement("tm-1", "2026-12", the_plan, lead_year=year)
    assert section(december, "Lead points").lines == (
        "3 lead points in 2026, turnover 900.00, badge bronze, gold.",
        "1 more converted appointment reaches silver (bronze at 2, silver at 4).",
        "Gold prize 1,000.01, split between the year's gold holders, paid in 2026-12: 500.01 this month.")
    assert december.computed.prize_bonus == D("500.01") and december.role == "telemarketer"
    assert build_statement("tm-2", "2026-12", the_plan, lead_year=LeadYear(2026, 3, D("900.00"), "bronze", True,
                                                                           holders)).computed.prize_bonus == D("500.00")
    november = build_statement("tm-1", P, the_plan, lead_year=year)
    assert november.computed.prize_bonus == D("0.00")
    assert section(november, "Lead points").lines[-1].endswith("paid in 2026-12.")


def test_adjustments_in_with_their_months_and_out_with_their_settlement() -> None:
    into = [Adjustment("2026-09", P, "field_rep", D("-12.50"), D("10.00"), D("22.50"), True),
            Adjustment("2026-10", P, "field_rep", D("30.00"), D("40.00"), D("10.00"), True)]
    out = [Adjustment(P, "2026-12", "field_rep", D("5.00"), D("15.00"), D("10.00"), False)]
    settled = Settled("8d0c1c1e-0000-4000-8000-000000000001", datetime(2026, 12, 1, 8, tzinfo=UTC),
                      {"period": P, "person_id": "fr-1", "role": "field_rep", "cross_sell_count": 3,
                       "cross_sell_amount": D("355.00"), "appointments_held": 0, "appointments_converted": 0,
                       "cross_sell_bonus": D("10.65"), "appointment_bonus": D("0.00"), "prior_adjustments": D("17.50"),
                       "total_bonus": D("28.15"), "upsell_count": 0, "upsell_amount": D("0.00"),
                       "upsell_bonus": D("0.00"), "kpi_bonus": D("0.00"), "prize_bonus": D("0.00"),
                       "plan_version": "default-1"})
    found = build_statement("fr-1", P, DEFAULT, sells("200.00", "100.00", "55.00", "100.00"), adjustments_in=into,
                            adjustments_out=out, settled=settled)
    assert found.computed.prior_adjustments == D("17.50") and found.computed.total_bonus == D("31.15")
    shown = section(found, "Prior adjustments")
    assert list(shown.table.rows) == [("2026-09", "10.00", "22.50", "-12.50"), ("2026-10", "40.00", "10.00", "30.00")]
    assert section(found, "Settlement").after == ("Sent to 2026-12: 5.00 (earned 15.00, paid 10.00).",)
    document = statement_json(found)
    assert (document["settled"], document["settlement_id"]) == (True, "8d0c1c1e-0000-4000-8000-000000000001")
    assert document["settled_totals"]["cross_sell_bonus"] == "10.65"
    assert document["settled_totals"]["cross_sell_count"] == 3
    assert document["adjustments_out"] == [{"source_period": P, "target_period": "2026-12", "role": "field_rep",
                                            "amount": "5.00", "earned": "15.00", "paid": "10.00", "settled": False}]
    assert document["totals"]["total_bonus"] == "31.15" and document["totals"]["prior_adjustments"] == "17.50"


def test_a_person_without_a_row_gets_zeros_and_no_role() -> None:
    document = statement_json(build_statement("nobody", P, DEFAULT, compared=True))
    assert (document["role"], document["settled"], document["settlement_id"], document["settled_totals"]) == (
        None, False, None, None)
    assert document["credits"] == [] and document["adjustments_out"] == []
    assert document["totals"] == {
        "period": P, "person_id": "nobody", "role": None, "cross_sell_count": 0, "cross_sell_amount": "0.00",
        "appointments_held": 0, "appointments_converted": 0, "cross_sell_bonus": "0.00", "appointment_bonus": "0.00",
        "prior_adjustments": "0.00", "total_bonus": "0.00", "upsell_count": 0, "upsell_amount": "0.00",
        "upsell_bonus": "0.00", "kpi_bonus": "0.00", "prize_bonus": "0.00", "plan_version": "default-1"}
    assert document["arithmetic_agrees"] is True


def test_a_stored_row_that_differs_is_named() -> None:
    found = build_statement("fr-1", P, DEFAULT, sells("200.00", "100.00", "55.00"), compared=True, stored={
        "period": P, "person_id": "fr-1", "role": "field_rep", "cross_sell_count": 3, "cross_sell_amount": D("355.00"),
        "appointments_held": 0, "appointments_converted": 0, "cross_sell_bonus": D("17.75"),
        "appointment_bonus": D("0.00"), "prior_adjustments": D("0.00"), "total_bonus": D("17.75"), "upsell_count": 0,
        "upsell_amount": D("0.00"), "upsell_bonus": D("0.00"), "kpi_bonus": D("0.00"), "prize_bonus": D("0.00"),
        "plan_version": "other-1"})
    assert found.differences == ["cross_sell_bonus", "total_bonus"]
    assert statement_json(found)["arithmetic_agrees"] is False
    assert ("Note: the stored row differs from these inputs in cross_sell_bonus, total_bonus (the row was computed "
            "under plan other-1).") in sections(found)[0].lines


def test_credits_list_category_touch_and_source() -> None:
    touch_at = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    line = CreditLine(Credit(P, "tm-1", "telemarketer", CROSS_SELL, "c1", "S1", "L2", None, D("30.0000"), D("0.3"),
                             "cb-7", "ev-S1"), "warranty", touch_at)
    found = build_statement("tm-1", P, DEFAULT, [line])
    assert section(found, "Credits").table.rows == (
        ("cross sell", "telemarketer", "c1", "S1", "L2", "warranty", "30.00", "0.3",
         "cb-7 at 2026-11-02T09:30:00+00:00", "ev-S1"),)
    assert statement_json(found)["credits"] == [{
        "kind": "cross_sell", "role": "telemarketer", "customer_id": "c1", "sale_id": "S1", "line_id": "L2",
        "lead_id": None, "category": "warranty", "amount": "30.00", "share": "0.3", "touch_event_id": "cb-7",
        "touch_at": "2026-11-02T09:30:00+00:00", "source_event_id": "ev-S1"}]


@pytest.mark.parametrize(("value", "text"), [("0", "0.00"), ("1234.5", "1,234.50"), ("-12.5", "-12.50"),
                                             ("1000.0001", "1,000.0001"), ("30.0000", "30.00")])
def test_money_is_never_rounded_for_people(value: str, text: str) -> None:
    assert money(D(value)) == text
