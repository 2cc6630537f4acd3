"""Issue 15 item 4a: two workers at once, the totals of one person spread over both, stay exact.

Many customers, keyed over every partition of the four input topics, so each of two workers
recomputes some of them at the same time. Every customer's sale is by the same field rep
(`fr-1`), after a lead held by one of four telemarketers, with an offer of that telemarketer
before it, feedback and a quality review about both: so fr-1's month (`credit_totals`: cross-sells,
upsells, KPI inputs) and each telemarketer's year (`lead_totals`: points and turnover) are moved by
both workers' batches, and the gold prize, derived from the whole year, is recomputed by
whichever worker moves it. The telemarketers are close in turnover and the events come in
phases, so the gold holder changes as they arrive: tm-1, then tm-2 and tm-3 tied, then tm-4, and
back to the tie when refunds take tm-4's laptops away. After each phase every table equals
`compute_results` of the events so far, exactly, and each worker has stored some of the phase's
events (its `crmbonus_events_stored_total`).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from stream.bonus import compute_results
from tests.integration.conftest import (
    Broker,
    Offsets,
    StartWorker,
    committed_offsets,
    merge_ends,
    query,
    wait_caught_up,
)
from tests.integration.test_programmes_order import (
    assert_tables_equal,
    decoded,
    expected_tables,
    feedback_line,
    handoff_line,
    line,
    publish_in_chunks,
    review_line,
    sale_line,
    stored_tables,
    write_plan,
)

pytestmark = pytest.mark.integration

CUSTOMERS = 50  # per telemarketer
#: The laptop each telemarketer's customers buy: tm-2 and tm-3 tie, tm-4 leads until refunded.
LAPTOP = {"tm-1": "1000.00", "tm-2": "1100.00", "tm-3": "1100.00", "tm-4": "1300.00"}
REFUNDED = 20  # tm-4 customers whose laptop is refunded in the last phase


def customer_events(tm: str, n: int) -> list[bytes]:
    """One customer of `tm`: an offer, a lead booked and held, fr-1's sale (a conversion with a
    cross-sell), for some a dearer laptop later (an upsell), feedback and a review of both."""
    cid = f"c-{tm}-{n:03d}"
    month = "11" if n % 2 else "12"
    day = 1 + n % 14
    when = f"2026-{month}-{day:02d}T"
    events = [
        line(event_id=f"{cid}-cb", event_type="callback", occurred_at=f"{when}08:00:00Z", customer_id=cid,
             telemarketer_id=tm, outcome="offer_made", offered_categories=["accessories", "software"]),
        handoff_line(f"{cid}-bk", f"{when}09:00:00Z", cid, f"lead-{cid}", "booked", tm, "fr-1"),
        handoff_line(f"{cid}-hd", f"{when}10:00:00Z", cid, f"lead-{cid}", "held", tm, "fr-1"),
        sale_line(f"{cid}-s1", f"{when}15:00:00Z", cid, f"S-{cid}-1", "fr-1",
                  ("L1", "laptops", LAPTOP[tm]), ("L2", "accessories", f"{40 + n % 7}.50")),
        feedback_line(f"{cid}-fb-fr", f"{when}16:00:00Z", cid, "fr-1", "field_rep", 1 + n % 5),
        feedback_line(f"{cid}-fb-tm", f"{when}16:30:00Z", cid, tm, "telemarketer", 5 - n % 3),
        review_line(f"{cid}-qr-fr", f"{when}17:00:00Z", cid, "fr-1", "field_rep", n % 4 != 0),
        review_line(f"{cid}-qr-tm", f"{when}17:30:00Z", cid, tm, "telemarketer", n % 5 != 0),
    ]
    if n % 5 == 0:  # a dearer laptop two days later: an upsell of the uplift, and more turnover
        events.append(sale_line(f"{cid}-s2", f"2026-{month}-{day + 2:02d}T11:00:00Z", cid, f"S-{cid}-2", "fr-1",
                                ("L1", "laptops", "1500.00")))
    return events


def refunds() -> list[bytes]:
    return [line(event_id=f"c-tm-4-{n:03d}-rf", event_type="refund", occurred_at=f"2026-12-20T12:0{n % 10}:00Z",
                 customer_id=f"c-tm-4-{n:03d}", sale_id=f"S-c-tm-4-{n:03d}-1", lines=[{"line_id": "L1", "quantity": 1}])
            for n in range(REFUNDED)]


def phases() -> list[tuple[list[bytes], list[str]]]:
    """The events of each phase, with the gold holders of 2026 once it is in."""
    of = {tm: [raw for n in range(CUSTOMERS) for raw in customer_events(tm, n)] for tm in LAPTOP}
    return [
        (of["tm-1"], ["tm-1"]),
        (of["tm-2"] + of["tm-3"], ["tm-2", "tm-3"]),
        (of["tm-4"], ["tm-4"]),
        (refunds(), ["tm-2", "tm-3"]),
    ]


async def test_two_workers_on_one_persons_customers_keep_every_total_exact(
    pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path
) -> None:
    plan_path, plan = write_plan(tmp_path)
    env = {"CRMBONUS_PLAN": str(plan_path)}
    pair = workers(pg_url, "a", env=env), workers(pg_url, "b", env=env)
    for worker in pair:
        await worker.wait_healthy()
    rng = random.Random(4)
    so_far: list[bytes] = []
    ends: Offsets = {}
    stored = {w.name: 0.0 for w in pair}  # events each worker stored so far (its metrics)
    for number, (lines, gold) in enumerate(phases(), start=1):
        arrival = lines + rng.sample(lines, len(lines) // 10)  # redeliveries
        rng.shuffle(arrival)
        ends = merge_ends(ends, await publish_in_chunks(broker, arrival, chunk=40, pause=0.01))
        await wait_caught_up(pg_url, ends, 120, *pair)
        now = {w.name: (await w.metrics()).get("crmbonus_events_stored_total", 0.0) for w in pair}
        if len(lines) > 100:  # each worker had a share of this phase's customers
            assert all(now[name] > stored[name] for name in now), f"phase {number}: {stored} -> {now}"
        stored = now
        so_far += lines
        expected = compute_results(decoded(so_far), plan)
        assert [row.person_id for row in expected.lead_points if row.gold] == gold, f"phase {number}: the design"
        assert_tables_equal(await stored_tables(pg_url), expected_tables(expected))
    prizes = {row.person_id: str(row.prize_bonus) for row in expected.running if row.prize_bonus}
    assert prizes == {"tm-2": "250.01", "tm-3": "250.00"}
    [fr] = [row for row in expected.running if row.person_id == "fr-1" and row.period == "2026-12"]
    assert fr.upsell_count and fr.kpi_bonus and fr.cross_sell_count > 50
    assert sum(stored.values()) == len(decoded(so_far)), stored  # each event stored once, by one of them
    assert set(await committed_offsets(pg_url)) == set(ends)
    assert (await query(pg_url, "SELECT count(*) AS n FROM dead_letters"))[0]["n"] == 0


async def test_two_workers_on_everything_at_once_keep_every_total_exact(
    pg_url: str, broker: Broker, workers: StartWorker, tmp_path: Path
) -> None:
    """The same events in one shuffled stream, refunds before their sales included: the most
    batches of both workers at once on fr-1's months and the year's gold."""
    plan_path, plan = write_plan(tmp_path)
    env = {"CRMBONUS_PLAN": str(plan_path)}
    pair = workers(pg_url, "a", env=env), workers(pg_url, "b", env=env)
    for worker in pair:
        await worker.wait_healthy()
    lines = [raw for found, _ in phases() for raw in found]
    rng = random.Random(44)
    arrival = lines + rng.sample(lines, len(lines) // 10)
    rng.shuffle(arrival)
    ends = await publish_in_chunks(broker, arrival, chunk=60, pause=0.0)
    await wait_caught_up(pg_url, ends, 120, *pair)
    expected = compute_results(decoded(lines), plan)
    assert_tables_equal(await stored_tables(pg_url), expected_tables(expected))
    assert [row.person_id for row in expected.lead_points if row.gold] == ["tm-2", "tm-3"]
    stored = {w.name: (await w.metrics()).get("crmbonus_events_stored_total", 0.0) for w in pair}
    assert all(count > 0 for count in stored.values()) and sum(stored.values()) == len(lines), stored
