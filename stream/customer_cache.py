"""What a worker remembers of the customers it recently committed: their events and rows in force.

Pure (no driver): the ledger (stream/ledger.py) asks it before reading a customer back from
Postgres, and the batch's pure bookkeeping (stream/diff.py `diff_batch`) builds the entries
that a committed batch hands back to it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.events import Event
from stream.rules import Credit, Fact


@dataclass
class CachedCustomer:
    """A customer as this worker last committed it: valid while the database's version matches."""

    version: int
    #: its stored events, but for callbacks without an offer stored while it was cached: no rule
    #: reads them (`rules.only_inert_events`), and the ledger does not take the customer for them
    events: list[Event]
    credits: dict[Credit, int]  # credit in force -> its row id
    facts: dict[Fact, int] = field(default_factory=dict)  # fact in force -> its row id


class CustomerCache:
    """Decoded events and credits in force of recently seen customers, least recently used out.

    It saves reading and decoding a customer's whole history on every batch that touches
    the customer. It is never trusted blindly: an entry is used only when the customer's
    version in Postgres is the one it was cached at, so another worker's writes, or a
    batch that rolled back, simply make it miss.

    Bounded by events, not customers: a cached event costs ~0.9 KB of worker memory
    (measured), so the default bound keeps the cache under ~45 MB; with two workers, a 300,000-event
    burst ran as fast with 50,000 as with 100,000.
    """

    def __init__(self, max_events: int = 50_000) -> None:
        self.max_events = max_events
        self.entries: OrderedDict[str, CachedCustomer] = OrderedDict()
        self.events = 0
        self.hits = 0
        self.misses = 0

    def get(self, customer_id: str, version: int) -> CachedCustomer | None:
        """The customer as committed at `version`, or None if not cached at that version.

        Version 0 is a customer whose row this very batch created (`_take_customers`
        starts at 1, and migration 0004 gave every older customer a row): nothing of
        it was stored before but callbacks without an offer, which no rule reads, so
        there is nothing to read back.
        """
        if version == 0:
            return CachedCustomer(0, [], {}, {})
        entry = self.entries.get(customer_id)
        if entry is None or entry.version != version:
            self.misses += 1
            return None
        self.entries.move_to_end(customer_id)
        self.hits += 1
        return entry

    def update(self, staged: dict[str, CachedCustomer]) -> None:
        """Take in what a batch committed; call only after its transaction is in."""
        for customer_id, entry in staged.items():
            self._forget(customer_id)
            self.entries[customer_id] = entry
            self.events += len(entry.events)
        while self.events > self.max_events and self.entries:
            _, oldest = self.entries.popitem(last=False)
            self.events -= len(oldest.events)

    def discard(self, customer_ids: Iterable[str]) -> None:
        for customer_id in customer_ids:
            self._forget(customer_id)

    def _forget(self, customer_id: str) -> None:
        entry = self.entries.pop(customer_id, None)
        if entry is not None:
            self.events -= len(entry.events)


class RecentIds:
    """The event ids this worker committed lately, the oldest forgotten first.

    A redelivered or resent event is usually met again soon and by the same worker (its
    customer's partition). Known here, it is sorted out before the batch's COPY, which would
    otherwise meet the stored id, fail, and send the whole batch down the slower staged path
    (`store.insert_events`). Only a hint: the store checks each id against `events` first.
    ~80 bytes an id with the default bound: ~8 MB a worker.
    """

    def __init__(self, max_ids: int = 100_000) -> None:
        self.max_ids = max_ids
        self.ids: set[str] = set()
        self.order: deque[str] = deque()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.ids

    def add_all(self, event_ids: Iterable[str]) -> None:
        """Take in the ids of a committed batch; call only after its transaction is in."""
        ids, order = self.ids, self.order
        for event_id in event_ids:
            if event_id not in ids:
                ids.add(event_id)
                order.append(event_id)
        while len(order) > self.max_ids:
            ids.discard(order.popleft())
