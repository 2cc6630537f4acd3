"""Real processes for fault tests: brokers (tansu and Apache Kafka), `crmbonus worker` subprocesses, Postgres.

Nothing here is mocked. A test gets its broker from the integration conftest's `brokers`
(parametrised: ids `tansu` and `kafka`; a tansu broker is announced in the test's data
directory, so workers started there find it and use the embedded consumer-group timing; an
Apache Kafka one is passed with --broker and a topic prefix of the test's own), runs real
`python -m stream worker` processes against a fresh migrated database (`pg_url`), injects the
fault, and compares the tables with the from-scratch oracle `stream.bonus.compute_tables` and
with a clean `crmbonus replay` of the same events (on a fresh embedded broker: the reference).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schemas.decode import CONFLICTING_DUPLICATE, DUPLICATE_SALE_ID, InvalidEvent, decode_event, same_content
from schemas.events import Sale
from stream.bonus import compute_tables
from stream.plan import load_plan
from tests.conftest import TANSU
from tests.integration.conftest import (  # noqa: F401  (fixtures and helpers, re-exported for this directory)
    GROUP,
    KAFKA,
    PARTITIONS,
    ROOT,
    RUNNING_COLUMNS,
    Broker,
    Brokers,
    KafkaBroker,
    StartWorker,
    TansuBroker,
    Worker,
    broker,
    broker_factory,
    brokers,
    committed_offsets,
    count,
    create_database,
    crmbonus,
    drop_database,
    merge_ends,
    own_broker,
    pg_server_url,
    pg_url,
    query,
    read_log,
    running,
    shared_kafka,
    snapshot,
    wait_caught_up,
    wait_stored,
    with_database,
    workers,
)
from tests.integration.conftest import wait_until as wait_for  # noqa: F401  (the tests' name for it)

PLAN = load_plan(None)


# -- figures for the README table ---------------------------------------------------------

@dataclass
class Figures:
    """One row of the README's fault table, filled in by a test with measured numbers."""

    scenario: str
    broker: str = ""
    faults: str = ""
    inputs: int = 0
    processed: int = 0
    lost: int = -1
    doubled: int = -1
    notes: str = ""
    seconds: float = 0.0

    def record(self, inputs: int, verdict: Verdict, expected: Expected) -> None:
        """The measured columns: what went in, what was processed, lost and doubled."""
        self.inputs = inputs
        self.processed = verdict.stored + verdict.dead_letters + expected.duplicates
        self.lost, self.doubled = verdict.lost, verdict.doubled


RESULTS: list[Figures] = []


def broker_label(request: pytest.FixtureRequest) -> str:
    """The broker a test ran on, for its row: its `broker_kind`; `crmbonus replay`'s own tansu without one."""
    callspec = getattr(request.node, "callspec", None)
    kind = callspec.params.get("broker_kind", TANSU) if callspec is not None else TANSU
    return KafkaBroker.label if kind == KAFKA else TansuBroker.label


SKIPPED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call" and report.skipped:
        item.stash[SKIPPED] = True
    return report


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """A row of the table for this test (none if it is skipped, e.g. on a broker that cannot do it)."""
    row = Figures(scenario=request.node.originalname.removeprefix("test_"), broker=broker_label(request))
    started = time.monotonic()
    yield row
    row.seconds = round(time.monotonic() - started, 1)
    if not request.node.stash.get(SKIPPED, False):
        RESULTS.append(row)


@pytest.fixture(scope="session", autouse=True)
def fault_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    path = tmp_path_factory.getbasetemp() / "fault_table.json"
    path.write_text(json.dumps([row.__dict__ for row in RESULTS], indent=2))
    header = "| scenario | broker | faults injected | inputs tried | events processed | lost | doubled | s |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row in RESULTS:
        lines.append(f"| {row.scenario} | {row.broker} | {row.faults} | {row.inputs} | {row.processed} "
                     f"| {row.lost} | {row.doubled} | {row.seconds} |")
    print("\n\nfault suite figures (" + str(path) + ")\n" + "\n".join(lines), flush=True)
    for row in RESULTS:
        if row.notes:
            print(f"  {row.scenario} [{row.broker}]: {row.notes}", flush=True)


# -- Postgres ------------------------------------------------------------------------------

@pytest.fixture
async def new_database(pg_server_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:  # noqa: F811
    """Make more fresh, migrated databases (for the clean reference replay); dropped after."""
    made: list[str] = []

    async def make() -> str:
        made.append(await create_database(pg_server_url))
        return made[-1]

    yield make
    for url in made:
        await drop_database(pg_server_url, url)


# -- the oracle ----------------------------------------------------------------------------

@dataclass
class Expected:
    """What the pipeline must end with for `lines`, computed from scratch."""

    lines: Sequence[bytes]
    admitted: dict[str, bytes] = field(default_factory=dict)  # event_id -> raw of the first
    invalid: list[bytes] = field(default_factory=list)  # lines the decoder refuses
    rejected: list[bytes] = field(default_factory=list)  # conflicting duplicates / duplicate sale ids
    duplicates: int = 0  # exact redeliveries
    rows: list[dict[str, str]] = field(default_factory=list)
    letters: list[tuple[bytes, str]] = field(default_factory=list)  # (payload, reason) expected

    def __post_init__(self) -> None:
        events = []
        sales: set[str] = set()
        for raw in self.lines:
            try:
                event = decode_event(raw)
            except InvalidEvent as error:
                self.invalid.append(raw)
                self.letters.append((raw, error.reason))
                continue
            if event.event_id in self.admitted:
                if same_content(self.admitted[event.event_id], raw):
                    self.duplicates += 1
                else:
                    self.rejected.append(raw)
                    self.letters.append((raw, CONFLICTING_DUPLICATE))
                continue
            sale_id = getattr(event, "sale_id", None)
            if isinstance(event, Sale):
                if sale_id in sales:
                    self.rejected.append(raw)
                    self.letters.append((raw, DUPLICATE_SALE_ID))
                    continue
                sales.add(sale_id)
            self.admitted[event.event_id] = raw
            events.append(event)
        self.rows = [{name: str(getattr(row, name)) for name in RUNNING_COLUMNS}
                     for row in compute_tables(events, PLAN)]

    @property
    def dead_letters(self) -> int:
        return len(self.invalid) + len(self.rejected)


def nonzero(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """`bonus_running` rows without the all-zero ones a person keeps when credits go (SPEC §6)."""
    numbers = [c for c in RUNNING_COLUMNS if c not in ("period", "person_id", "role")]
    return [row for row in rows if any(float(row[c]) != 0 for c in numbers)]


def nonzero_snapshot(snap: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    first_number = RUNNING_COLUMNS.index("cross_sell_count")
    out = dict(snap)
    out["bonus_running"] = [row for row in snap["bonus_running"] if any(v != 0 for v in row[first_number:])]
    return out


@dataclass
class Verdict:
    stored: int
    lost: int
    doubled: int
    dead_letters: int


async def check_against_oracle(url: str, expected: Expected) -> Verdict:
    """Tables == oracle; every admitted event stored once with its first bytes; no dead letter twice."""
    stored = await query(url, "SELECT event_id, raw FROM events")
    letters = await query(url, 'SELECT topic, "partition", "offset", payload FROM dead_letters')
    stored_ids = [row["event_id"] for row in stored]
    lost = len(set(expected.admitted) - set(stored_ids))
    doubled = len(stored_ids) - len(set(stored_ids))
    places = [(r["topic"], r["partition"], r["offset"]) for r in letters]
    doubled += len(places) - len(set(places))
    assert lost == 0, f"{lost} valid events lost, e.g. {sorted(set(expected.admitted) - set(stored_ids))[:5]}"
    assert doubled == 0, "an event or a dead letter was stored twice"
    assert set(stored_ids) == set(expected.admitted), "events stored that the oracle did not admit"
    assert {row["event_id"]: bytes(row["raw"]) for row in stored} == expected.admitted
    assert nonzero(await running(url)) == expected.rows
    return Verdict(stored=len(stored_ids), lost=lost, doubled=doubled, dead_letters=len(letters))


async def check_against_clean_replay(url: str, lines: Sequence[bytes], clean_url: str, data_dir: Path) -> None:
    """A clean single `crmbonus replay` of the same lines into a fresh database gives the same tables."""
    path = data_dir / f"replay-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    await asyncio.to_thread(crmbonus, "replay", str(path), "--database-url", clean_url,
                            data_dir=data_dir / "clean-replay")
    ours, clean = nonzero_snapshot(await snapshot(url)), nonzero_snapshot(await snapshot(clean_url))
    for table in ("events", "credits", "bonus_running"):
        assert ours[table] == clean[table], f"{table} differs from a clean replay"


async def feed(to: Broker, lines: Sequence[bytes], rate: float, chunk: int = 100) -> dict[tuple[str, int], int]:
    """Publish `lines` to `to` as a steady stream of about `rate` lines a second; the broker's ends."""
    ends: dict[tuple[str, int], int] = {}
    started = time.monotonic()
    for index in range(0, len(lines), chunk):
        ends = merge_ends(ends, await to.publish(lines[index:index + chunk]))
        due = started + (index + chunk) / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    return ends
