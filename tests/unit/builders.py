"""Terse builders for CRM events and plans, so a rule's test table reads like the SPEC.

Times are given as offsets from `T0` (a Sunday noon, UTC, mid-November 2026); money as
strings, so every amount in a test is exact.
"""

from __future__ import annotations

import dataclasses
import itertools
import zoneinfo
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas.events import (
    Callback,
    Cancellation,
    Feedback,
    LeadHandoff,
    QualityReview,
    Refund,
    RefundLine,
    Sale,
    SaleLine,
)
from stream.plan import Kpi, KpiComponent, Plan, load_plan
from stream.rules import Credit

T0 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
DEFAULT = load_plan()
_ids = itertools.count(1)


def at(days: float = 0, seconds: float = 0) -> datetime:
    """`T0` shifted by exact days and seconds."""
    return T0 + timedelta(days=days, seconds=seconds)


def plan(**changes: Any) -> Plan:
    """The default plan with some fields replaced."""
    return dataclasses.replace(DEFAULT, **changes)


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def line(line_id: str, category: str, price: str, quantity: int = 1) -> SaleLine:
    return SaleLine(line_id, f"sku-{line_id}", category, quantity, Decimal(price))


def sale(
    sale_id: str,
    when: datetime,
    *lines: SaleLine,
    seller: str = "fr-1",
    role: str = "field_rep",
    customer: str = "c1",
    event_id: str | None = None,
) -> Sale:
    return Sale(
        event_id=event_id or f"ev-{sale_id}",
        occurred_at=when,
        customer_id=customer,
        sale_id=sale_id,
        seller_id=seller,
        seller_role=role,  # type: ignore[arg-type]
        currency="EUR",
        lines=list(lines),
    )


def refund(
    sale_id: str,
    when: datetime,
    units: dict[str, int],
    customer: str = "c1",
    event_id: str | None = None,
) -> Refund:
    return Refund(
        event_id=event_id or _id("rf"),
        occurred_at=when,
        customer_id=customer,
        sale_id=sale_id,
        lines=[RefundLine(line_id, quantity) for line_id, quantity in units.items()],
    )


def cancellation(sale_id: str, when: datetime, customer: str = "c1", event_id: str | None = None) -> Cancellation:
    return Cancellation(event_id=event_id or _id("cx"), occurred_at=when, customer_id=customer, sale_id=sale_id)


def callback(
    telemarketer: str,
    when: datetime,
    *categories: str,
    outcome: str = "offer_made",
    customer: str = "c1",
    event_id: str | None = None,
) -> Callback:
    return Callback(
        event_id=event_id or _id("cb"),
        occurred_at=when,
        customer_id=customer,
        telemarketer_id=telemarketer,
        outcome=outcome,  # type: ignore[arg-type]
        offered_categories=list(categories),
    )


def handoff(
    lead_id: str,
    status: str,
    when: datetime,
    telemarketer: str = "tm-1",
    field_rep: str = "fr-1",
    customer: str = "c1",
    event_id: str | None = None,
) -> LeadHandoff:
    return LeadHandoff(
        event_id=event_id or _id("lh"),
        occurred_at=when,
        customer_id=customer,
        lead_id=lead_id,
        telemarketer_id=telemarketer,
        field_rep_id=field_rep,
        status=status,  # type: ignore[arg-type]
    )


def parts(credits: Iterable[Credit], kind: str = "cross_sell") -> list[tuple[str, ...]]:
    """Credits of `kind` as (line_id, person, role, amount, share, touch), amounts as text."""
    return sorted(
        (
            credit.line_id or credit.lead_id or "",
            credit.person_id,
            credit.role,
            num(credit.amount),
            num(credit.share),
            credit.touch_event_id or "-",
        )
        for credit in credits
        if credit.kind == kind
    )


def num(value: Decimal) -> str:
    """An exact decimal as plain text without trailing zeros: 84.0000 -> "84", 0.70 -> "0.7"."""
    return f"{value.normalize():f}"


# -- SPEC §13 programmes -------------------------------------------------------------------------


def feedback(
    person: str,
    when: datetime,
    rating: int,
    role: str = "field_rep",
    customer: str = "c1",
    event_id: str | None = None,
    sale_id: str | None = None,
) -> Feedback:
    return Feedback(
        event_id=event_id or _id("fb"),
        occurred_at=when,
        customer_id=customer,
        person_id=person,
        person_role=role,  # type: ignore[arg-type]
        rating=rating,
        sale_id=sale_id,
    )


def review(
    person: str,
    when: datetime,
    passed: bool,
    role: str = "field_rep",
    customer: str = "c1",
    event_id: str | None = None,
    score: int | None = None,
) -> QualityReview:
    return QualityReview(
        event_id=event_id or _id("qr"),
        occurred_at=when,
        customer_id=customer,
        person_id=person,
        person_role=role,  # type: ignore[arg-type]
        passed=passed,
        score=score,
    )


def kpi(
    target_bonus: str = "200.00",
    roles: tuple[str, ...] = ("telemarketer", "field_rep"),
    *components: tuple[str, str, str, str, str],
) -> Kpi:
    """A `[kpi]` section; each component as (name, weight, metric, target, cap); by default
    conversions / rating / compliance at 0.5 / 0.3 / 0.2, conversions capped at 1.5."""
    chosen = components or (
        ("conversions", "0.5", "conversions", "3", "1.5"),
        ("rating", "0.3", "rating", "4.5", "1"),
        ("compliance", "0.2", "compliance", "0.9", "1"),
    )
    return Kpi(Decimal(target_bonus), roles, tuple(
        KpiComponent(name, Decimal(weight), metric, Decimal(target), Decimal(cap))
        for name, weight, metric, target, cap in chosen
    ))


def programmes(**changes: Any) -> Plan:
    """The default plan with every SPEC §13 programme on (amount gate, upsells, lead sharing with a
    gold prize, KPI), then `changes`; `timezone` also sets the zone."""
    if "timezone" in changes:
        changes.setdefault("zone", zoneinfo.ZoneInfo(changes["timezone"]))
    every = {"version": "programmes-1", "min_amount": Decimal("100.00"), "upsell_rate": Decimal("0.10"),
             "bronze_points": 2, "silver_points": 3, "gold_prize": Decimal("500.00"), "kpi": kpi()}
    return plan(**{**every, **changes})
