"""A person in both roles, through the real pipeline and Postgres (issue 12).

A field rep who also made the touch holds both parts of a line and counts it once
(SPEC §5.6); the role shown is the one with more credited items (SPEC §6). Fed in any
order, in small batches with redeliveries and restarts, the tables must equal
`compute_tables`; and a database that the old per-role count got wrong is mended at the
worker's start, a settled month's error reaching payroll as an adjustment (SPEC §7).
"""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

import asyncpg
import msgspec
import pytest

from schemas.events import Event
from stream import db, ledger
from stream.bonus import compute_tables
from stream.plan import load_plan
from stream.rules import credit_customer
from tests.integration.conftest import RUNNING_COLUMNS, Feeder, create_database, running, snapshot
from tests.unit.builders import at, callback, handoff, line, refund, sale

pytestmark = pytest.mark.integration

PEOPLE = ("x-1", "x-2", "tm-1", "fr-1")  # x-* sell, touch and book, in both roles


def month(customers: int, seed: int) -> list[Event]:
    """Customers of laptops with add-ons sold by anyone in either role, after offers and
    bookings by anyone, some refunded: many lines with both parts held by one person."""
    rng = random.Random(seed)
    events: list[Event] = []
    for number in range(customers):
        customer = f"c{number}"
        for index in range(rng.randint(1, 2)):
            role = rng.choice(("field_rep", "field_rep", "telemarketer"))
            add_ons = rng.sample(("accessories", "software", "warranty"), rng.randint(1, 3))
            lines = [line("L1", "laptops", "1000.00"),
                     *(line(f"L{n}", c, rng.choice(("10.00", "99.99", "250.00"))) for n, c in enumerate(add_ons, 2))]
            events.append(sale(f"{customer}-S{index}", at(index, seconds=number), *lines, seller=rng.choice(PEOPLE),
                               role=role, customer=customer, event_id=f"{customer}-s{index}"))  # fmt: skip
            if rng.random() < 0.3:
                events.append(refund(f"{customer}-S{index}", at(index + 2), {"L2": 1}, customer,
                                     f"{customer}-r{index}"))  # fmt: skip
        for index in range(rng.randint(1, 4)):
            when = at(-rng.randint(0, 20) / 4)
            if rng.random() < 0.25:
                events.append(handoff(f"{customer}-lead{index}", rng.choice(("booked", "held")), when,
                                      rng.choice(PEOPLE), rng.choice(PEOPLE), customer, f"{customer}-h{index}"))
            else:
                events.append(callback(rng.choice(PEOPLE), when, *rng.sample(("accessories", "software"), 1),
                                       customer=customer, event_id=f"{customer}-cb{index}"))  # fmt: skip
    return events


def as_lines(events: list[Event]) -> list[bytes]:
    return [msgspec.json.encode(event) for event in events]


def oracle(events: list[Event]) -> list[dict[str, str]]:
    return [{name: str(getattr(row, name)) for name in RUNNING_COLUMNS} for row in compute_tables(events, load_plan())]


def nonzero(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in rows if any(row[c] not in ("0", "0.00") for c in RUNNING_COLUMNS[3:])]


async def test_both_roles_any_order_batching_and_restarts_equal_compute_tables(pg_url: str,
                                                                               pg_server_url: str) -> None:
    events = month(customers=60, seed=12)
    expected = oracle(events)
    assert any(row["person_id"].startswith("x-") for row in expected)
    await Feeder(pg_url).feed(as_lines(events))
    assert nonzero(await running(pg_url)) == expected

    rng = random.Random(4)
    shuffled = events + rng.sample(events, len(events) // 4)  # a quarter redelivered
    rng.shuffle(shuffled)
    other = await create_database(pg_server_url)
    feeder = Feeder(other)
    for start in range(0, len(shuffled), 40):  # each feed is a fresh pipeline: a restart, a cold cache
        await feeder.feed(as_lines(shuffled[start:start + 40]), batch_size=3)
    assert nonzero(await running(other)) == expected
    assert (await snapshot(other))["credits"] == (await snapshot(pg_url))["credits"]


#: The database as a version before migrations 0005 and 0008 left it (0006 and 0007 do not
#: depend on either), so both run again on populated tables.
_NEW_COLUMNS = "upsell_count, upsell_amount, upsell_bonus, kpi_bonus, prize_bonus, plan_version"
UNDO_0005_AND_0008 = f"""
DROP TABLE ledger_rebuilds, customer_facts, lead_totals, lead_points, kpi_scores;
ALTER TABLE bonus_running {", ".join(f"DROP COLUMN {c}" for c in _NEW_COLUMNS.split(", "))};
ALTER TABLE bonus_settled {", ".join(f"DROP COLUMN {c}" for c in _NEW_COLUMNS.split(", "))};
ALTER TABLE credits DROP CONSTRAINT credits_kind_check;
ALTER TABLE credits ADD CONSTRAINT credits_kind_check
    CHECK (kind IN ('cross_sell', 'appointment_held', 'appointment_converted'));
DELETE FROM schema_migrations WHERE version IN ('0005_person_totals', '0008_programmes');
"""


async def test_the_old_double_count_is_mended_at_start_and_paid_back_as_an_adjustment(pg_url: str) -> None:
    """x-1 offers accessories and sells them as field rep with software: two lines, one of
    them in both roles. The old per-role count said 3 (>= min_count) and paid 3% of 300.00."""
    events = [callback("x-1", at(-1), "accessories", event_id="cb"),
              sale("S1", at(0), line("L1", "laptops", "1000.00"), line("L2", "accessories", "100.00"),
                   line("L3", "software", "200.00"), seller="x-1", event_id="s1")]  # fmt: skip
    await Feeder(pg_url).feed(as_lines(events))
    conn = await asyncpg.connect(pg_url)
    try:
        row = await conn.fetchrow("SELECT * FROM bonus_running WHERE person_id = 'x-1'")
        assert (row["role"], row["cross_sell_count"], row["cross_sell_bonus"]) == ("field_rep", 2, Decimal("0.00"))
        # The database as the old ledger left it, settled that way: payroll paid 9.00.
        await conn.execute("UPDATE bonus_running SET cross_sell_count = 3, cross_sell_bonus = 9.00,"
                           " total_bonus = 9.00 WHERE person_id = 'x-1'")
        await Feeder(pg_url).settle("2026-11")
        # The upgrade: migrations 0005 and 0008 run on the populated database, the worker then starts.
        await conn.execute(UNDO_0005_AND_0008)
        pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
        assert await db.migrate(pool) == ["0005_person_totals", "0008_programmes"]
        await pool.close()
        assert await conn.fetchval("SELECT count(*) FROM ledger_rebuilds") == 2
        async with conn.transaction():
            changed = await ledger.rebuild_if_pending(conn, load_plan())
        assert changed == [("2026-11", "x-1")]
        november = await conn.fetchrow("SELECT * FROM bonus_running WHERE period = '2026-11' AND person_id = 'x-1'")
        assert (november["cross_sell_count"], november["cross_sell_bonus"]) == (2, Decimal("0.00"))
        settled = await conn.fetchrow("SELECT * FROM bonus_settled WHERE person_id = 'x-1'")
        assert (settled["cross_sell_count"], settled["total_bonus"]) == (3, Decimal("9.00"))
        audit = await conn.fetch("SELECT source_period, target_period, amount, earned, paid FROM bonus_adjustments")
        assert [tuple(a) for a in audit] == [("2026-11", "2026-12", Decimal("-9.00"), Decimal("0.00"),
                                              Decimal("9.00"))]
        december = await conn.fetchrow("SELECT * FROM bonus_running WHERE period = '2026-12' AND person_id = 'x-1'")
        assert (december["prior_adjustments"], december["total_bonus"]) == (Decimal("-9.00"), Decimal("-9.00"))
        totals = await conn.fetchrow("SELECT * FROM credit_totals WHERE person_id = 'x-1'")
        assert (totals["cross_sell_count"], totals["telemarketer_items"], totals["field_rep_items"]) == (2, 1, 2)
        async with conn.transaction():  # done once: a second start finds nothing to do
            assert await ledger.rebuild_if_pending(conn, load_plan()) == []
    finally:
        await conn.close()


def test_month_has_lines_held_in_both_roles() -> None:
    """The generator above really draws the case: some line has two parts of one person."""
    events = month(customers=60, seed=12)
    credits = [c for cid in {e.customer_id for e in events}
               for c in credit_customer([e for e in events if e.customer_id == cid], load_plan())]
    per_line = Counter((c.person_id, c.customer_id, c.sale_id, c.line_id) for c in credits if c.kind == "cross_sell")
    assert any(count == 2 for count in per_line.values())
