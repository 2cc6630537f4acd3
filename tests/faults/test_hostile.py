"""Hostile input through the real pipeline (`crmbonus replay`): each line stored or dead-lettered once."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas.decode import REASONS
from stream.demo_data import DemoConfig, generate
from tests.faults.conftest import (
    Broker,
    Brokers,
    Expected,
    Figures,
    Worker,
    check_against_oracle,
    crmbonus,
    query,
    wait_caught_up,
    wait_for,
)

pytestmark = pytest.mark.faults

MB = 1 << 20


def hostile_lines(valid: list[bytes], count: int, seed: int) -> list[bytes]:
    """`count` hostile lines, seeded; conflicting duplicates and second sales copy earlier `valid` lines."""
    rng = random.Random(seed)
    events = [json.loads(raw) for raw in valid]
    sales = [e for e in events if e["event_type"] == "sale"]
    stamp = "2026-11-14T10:00:00Z"

    def ev(n: int, **fields: object) -> dict[str, object]:
        return {"event_id": f"h-{n}", "event_type": "callback", "occurred_at": stamp,
                "customer_id": f"hc-{n % 7}", "telemarketer_id": "tm-h", "outcome": "declined", **fields}

    def sale(n: int, price: object) -> dict[str, object]:
        return ev(n, event_type="sale", sale_id=f"HS-{n}", seller_id="fr-h", seller_role="field_rep",
                  currency="EUR", lines=[{"line_id": "a", "sku": "x", "category": "tv", "quantity": 1,
                                         "unit_price": price}])

    def random_bytes() -> bytes:
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))).replace(b"\n", b"?")
        raw = raw.rstrip(b"\r")
        return raw if raw.strip() else b"\x00"

    makers = [
        lambda n: random_bytes(),
        lambda n: b"[" * 5000 + b"]" * 5000,  # deeper than the parser's limit
        lambda n: json.dumps(ev(n, extra=json.loads("[" * 200 + "]" * 200))).encode(),  # deep but fine
        lambda n: json.dumps(ev(n, event_id="x" * rng.randint(129, 300_000))).encode(),  # id too long
        lambda n: json.dumps(ev(n, telemarketer_id="t" * 900_000)).encode(),  # ~0.9 MB, under the 1 MB limit
        lambda n: json.dumps(ev(n, note="n" * 300_000)).encode(),  # a valid event with a huge unknown field
        lambda n: json.dumps(sale(n, rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1", "0.00001",
                                                 "10000000", "nan", "", "12,50"]))).encode(),
        lambda n: json.dumps(sale(n, 1.5)).encode().replace(b"1.5", rng.choice([b"NaN", b"Infinity",
                                                                                  b"1e999", b"-0.0"])),
        lambda n: json.dumps(ev(n, occurred_at=rng.choice(["2026-11-14T10:00:00", "2026-11-14", "yesterday",
                                                           "2026-13-40T10:00:00Z", 1763114400]))).encode(),
        lambda n: json.dumps(ev(n, event_type=rng.choice(["teleport", "Sale", "", None, 7]))).encode(),
        lambda n: json.dumps(ev(n)).encode().replace(b'"tm-h"', b'"tm-\xff\xfe"'),  # invalid UTF-8
        lambda n: json.dumps(ev(n, customer_id="c\u0000x")).encode(),  # control character
        lambda n: json.dumps(ev(n, telemarketer_id="\ud800")).encode(),  # lone surrogate escape
        lambda n: json.dumps(ev(n, outcome="offer_made", offered_categories=[])).encode(),
        lambda n: json.dumps(sale(n, "10.00")).encode().replace(b'"quantity": 1', rng.choice(
            [b'"quantity": 0', b'"quantity": "1"', b'"quantity": 1.5', b'"quantity": 10001',
             b'"quantity": ' + b"9" * 5000])),
        lambda n: json.dumps([ev(n)]).encode(),
        lambda n: b'{"event_id": "h-' + str(n).encode() + b'", "event_type": "callback"',  # truncated
        lambda n: json.dumps({**rng.choice(events), "customer_id": None}).encode(),  # wrong type
        # SPEC section 10's poison: times beyond the bounds, fractions finer than a microsecond (valid,
        # truncated: stored in November), money spelled loosely, repeated keys, a sale worth 10 million
        lambda n: json.dumps(ev(n, occurred_at=rng.choice([
            "0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "2026-11-14T10:00:60Z",
            "2026-11-14T10:00:00+24:00", "2026-11-30T23:59:59.9999999Z"]))).encode(),
        lambda n: json.dumps(sale(n, rng.choice(["\uff11\uff12\uff13", "1_000", " 5 ", "+5", "-0", "1e2"]))).encode(),
        lambda n: json.dumps(ev(n)).encode().replace(b'{"event_id"', b'{"outcome": "offer_made", "event_id"', 1)
        .replace(b'"outcome": "declined"', b'"outcome": "declined", "outcome": "no_answer"'),
        lambda n: json.dumps(sale(n, "9999999.99")).encode().replace(
            b'"lines": [', b'"lines": [{"line_id": "b", "sku": "y", "category": "tv", "quantity": 2, '
                           b'"unit_price": "9999999"}, '),
    ]
    out: list[bytes] = []
    for n in range(count):
        kind = n % (len(makers) + 3)
        if kind == len(makers):  # a conflicting duplicate: same event_id, customer and topic, other content
            original = rng.choice(events)
            out.append(json.dumps({**original, "occurred_at": "2026-11-30T23:59:59Z", "n": n}).encode())
        elif kind == len(makers) + 1:  # a second sale with an existing sale_id (same customer)
            original = rng.choice(sales)
            out.append(json.dumps({**original, "event_id": f"dup-sale-{n}"}).encode())
        elif kind == len(makers) + 2:  # an exact redelivery: silently ignored
            out.append(rng.choice(valid))
        else:
            out.append(makers[kind](n))
    return out


async def test_hostile_lines_through_replay(pg_url: str, brokers: Brokers, tmp_path: Path, figures: Figures) -> None:
    valid = generate(DemoConfig(customers=150, seed=909, invalid_lines=0))
    hostile = hostile_lines(valid, 330, seed=909)
    rng = random.Random(910)
    lines = list(valid)
    for raw in hostile:  # interleaved, but every copy after the line it copies
        lines.insert(rng.randint(len(lines) // 2, len(lines)), raw)
    expected = Expected(lines)
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = await brokers.replay(str(path), "--database-url", pg_url, data_dir=tmp_path, timeout=240)
    print("\n" + done.stderr.strip().splitlines()[-1])
    assert (f"replayed {len(lines)} lines" in done.stderr
            and f"{len(expected.admitted)} events stored, {expected.duplicates} duplicates ignored, "
                f"{expected.dead_letters} dead letters" in done.stderr), done.stderr[-2000:]
    verdict = await check_against_oracle(pg_url, expected)
    letters = await query(pg_url, 'SELECT payload, reason, detail FROM dead_letters')
    assert Counter((bytes(r["payload"]), r["reason"]) for r in letters) == Counter(expected.letters)
    assert all(r["reason"] in REASONS and r["detail"] for r in letters)
    sizes = await query(pg_url, "SELECT max(octet_length(payload)) AS dl, "
                        "(SELECT max(octet_length(raw)) FROM events) AS ev FROM dead_letters")
    reasons = Counter(reason for _, reason in expected.letters)
    figures.faults = "hostile lines: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    figures.record(len(lines), verdict, expected)
    figures.notes = (f"largest dead letter stored byte-exact: {sizes[0]['dl']} bytes; largest accepted event: "
                     f"{sizes[0]['ev']} bytes (an unknown field is not bounded)")


async def test_replay_of_a_line_over_one_megabyte_names_it(pg_url: str, tmp_path: Path) -> None:
    valid = generate(DemoConfig(customers=5, seed=911, invalid_lines=0))
    big = json.dumps({"event_id": "big-1", "event_type": "callback", "occurred_at": "2026-11-02T10:00:00Z",
                      "customer_id": "c1", "telemarketer_id": "t" * (3 * MB // 2), "outcome": "declined"})
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join([*valid, big.encode()]) + b"\n")
    done = crmbonus("replay", str(path), "--database-url", pg_url, data_dir=tmp_path, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-1500:]
    assert re.search(r"big\.jsonl:\d+", done.stderr), done.stderr[-1500:]


class AgentCrashed(AssertionError):
    """The worker's agent crashed: a dead letter too big to forward must not do that."""


@pytest.mark.brokers("tansu", reason="Apache Kafka refuses a record over message.max.bytes (1 MB by default) "
                                     "at the broker: it never reaches a worker")
async def test_message_over_one_megabyte_reaching_the_worker_is_dead_lettered(
    pg_url: str, broker: Broker, workers: object, figures: Figures,
) -> None:
    """tansu takes a 1.5 MB record from a producer allowed to send it; the worker must not choke."""
    assert callable(workers)
    worker: Worker = workers(pg_url, "big")
    await worker.wait_healthy()
    big = json.dumps({"event_id": "big-2", "event_type": "callback", "occurred_at": "2026-11-02T10:00:00Z",
                      "customer_id": "c1", "telemarketer_id": "t" * (3 * MB // 2),
                      "outcome": "declined"}).encode()
    after = generate(DemoConfig(customers=20, seed=912, invalid_lines=0))
    producer = AIOKafkaProducer(bootstrap_servers=broker.url.removeprefix("kafka://"), acks="all",
                                max_request_size=4 * MB)
    await producer.start()
    try:
        sent = await producer.send_and_wait(broker.topics.callbacks, big, key=b"c1")
    finally:
        await producer.stop()
    await wait_for(lambda: _dead_lettered(pg_url), 30, "the 1.5 MB record dead-lettered", worker)
    ends = await broker.publish(after)  # in later batches than the big record
    stalled = ""
    try:
        await wait_caught_up(pg_url, ends, 20, worker)
    except AssertionError:
        health = await worker.health()
        stalled = f"the worker stopped consuming after the big dead letter (/health: {health}); "
        worker.kill()
        await wait_caught_up(pg_url, ends, 60, workers(pg_url, "big-restarted"))
    ends[(sent.topic, sent.partition)] = max(ends.get((sent.topic, sent.partition), 0), sent.offset + 1)
    rows = await query(pg_url, "SELECT payload, reason FROM dead_letters")
    assert [(bytes(r["payload"]), r["reason"]) for r in rows] == [(big, "schema_violation")]
    expected = Expected([big, *after])
    verdict = await check_against_oracle(pg_url, expected)
    figures.faults = "one 1.5 MB record (producer max_request_size raised), then 20 customers' events"
    figures.record(1 + len(after), verdict, expected)
    crashes = [line for line in worker.log_path.read_text(errors="replace").splitlines() if "Crashed" in line]
    figures.notes = f"{stalled}agent crashes in the worker log: {len(crashes)}"
    if crashes or stalled:
        raise AgentCrashed(stalled + (crashes[0][:400] if crashes else ""))


async def _dead_lettered(url: str) -> bool:
    return bool(await query(url, "SELECT 1 FROM dead_letters"))


del asyncpg
