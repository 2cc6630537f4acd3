"""SPEC §15 (issue 17 item 2): the arithmetic a statement shows, recomputed from what it lists, equals the
person's `bonus_running` row of `compute_results` (the from-scratch reference), for random months with every
programme on (tests/unit/test_programme_properties.py `programme_sets`, `programme_plans`).

The statement is built from what the Postgres adapter reads: the person's credits of the month, the KPI facts
of the month, the year's lead_points row and gold holders. The test does not take the statement's own totals:
it counts the listed credits, sums their amounts, applies the listed gates, adds the listed tier bands, the
upsell rate, the flat appointment amounts and the listed KPI parts, and compares those with the row.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Event
from stream.bonus import compute_results
from stream.leads import december
from stream.plan import Plan
from stream.rules import APPOINTMENT_CONVERTED, APPOINTMENT_HELD, CROSS_SELL, LEAD, UPSELL, Fact, customer_outcome
from stream.statement import CreditLine, LeadYear, Statement, build_statement, statement_json
from tests.unit.test_programme_properties import programme_plans, programme_sets
from tests.unit.test_rules_properties import FAST, MODELS

CENT = Decimal("0.01")


def _cents(value: Decimal | Fraction) -> Decimal:
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def statements_of(events: list[Event], the_plan: Plan) -> tuple[Any, dict[tuple[str, str], Statement]]:
    """compute_results' rows, and a statement for each row's (period, person) from the inputs the adapter reads."""
    results = compute_results(events, the_plan)
    by_customer: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_customer[event.customer_id].append(event)
    facts: list[Fact] = [f for found in by_customer.values() for f in customer_outcome(found, the_plan).facts
                         if f.kind != LEAD]
    lead_rows = {(row.year, row.person_id): row for row in results.lead_points}
    holders: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for row in results.lead_points:
        if row.gold:
            holders[row.year][row.person_id] = row.turnover
    found = {}
    for row in results.running:
        year = int(row.period[:4])
        lead = lead_rows.get((year, row.person_id))
        lead_year = LeadYear(year, lead.points, lead.turnover, lead.badge, lead.gold, holders[year]) if lead else \
            LeadYear(year, gold_holders=holders[year])
        credits = [CreditLine(c) for c in results.credits if (c.period, c.person_id) == (row.period, row.person_id)]
        found[(row.period, row.person_id)] = build_statement(row.person_id, row.period, the_plan, credits,
                                                             [f for f in facts if f.scope == row.period], lead_year)
    return results, found


@pytest.mark.parametrize("model", MODELS)
@FAST
@given(events=programme_sets(), data=st.data())
def test_the_statements_arithmetic_from_its_credits_is_the_running_row(model: str, events: list[Event],
                                                                       data: Any) -> None:
    the_plan = data.draw(programme_plans(model))
    results, statements = statements_of(events, the_plan)
    for row in results.running:
        s = statements[(row.period, row.person_id)]
        document = statement_json(s)
        listed = s.credits
        lines = {kind: {(c.credit.customer_id, c.credit.sale_id, c.credit.line_id) for c in listed
                        if c.credit.kind == kind} for kind in (CROSS_SELL, UPSELL)}
        amount = sum((c.credit.amount for c in listed if c.credit.kind == CROSS_SELL), Decimal(0))
        uplift = sum((c.credit.amount for c in listed if c.credit.kind == UPSELL), Decimal(0))
        held = sum(1 for c in listed if c.credit.kind == APPOINTMENT_HELD)
        converted = sum(1 for c in listed if c.credit.kind == APPOINTMENT_CONVERTED)
        assert (len(lines[CROSS_SELL]), _cents(amount)) == (row.cross_sell_count, row.cross_sell_amount)
        assert (len(lines[UPSELL]), _cents(uplift)) == (row.upsell_count, row.upsell_amount)
        assert (held, converted) == (row.appointments_held, row.appointments_converted)

        # the gates as listed decide; the bands as listed add up to the bonus
        assert all(g.met == (g.actual >= g.required) for g in s.gates)
        assert sum((b.amount for b in s.bands), Decimal(0)) == amount
        cross_sell = _cents(sum((b.bonus for b in s.bands), Decimal(0))) if s.gates_met else Decimal("0.00")
        assert cross_sell == row.cross_sell_bonus
        assert s.gates_met == (len(lines[CROSS_SELL]) >= the_plan.min_count and amount >= the_plan.min_amount)
        assert [b.current for b in s.bands].count(True) == 1

        upsell = _cents(uplift * the_plan.upsell_rate) if the_plan.upsell_rate is not None else Decimal("0.00")
        appointments = held * the_plan.held_credit + converted * the_plan.conversion_bonus
        kpi = _cents(sum((k.part for k in s.kpi_lines), Fraction(0))) if s.kpi_takes_part else Decimal("0.00")
        prize = row.prize_bonus if row.period == december(int(row.period[:4])) else Decimal("0.00")
        assert (upsell, _cents(appointments), kpi, s.computed.prize_bonus) == (
            row.upsell_bonus, row.appointment_bonus, row.kpi_bonus, prize)
        assert cross_sell + upsell + _cents(appointments) + kpi + prize == row.total_bonus
        # and the statement's own row is the reference row, whatever path it took
        assert s.computed == row
        assert document["totals"]["total_bonus"] == f"{row.total_bonus:.2f}"
        assert document["role"] == row.role
