"""The in-memory customer cache is used only when Postgres says it is current, and stays bounded."""

from __future__ import annotations

import msgspec

from schemas.events import Event
from stream.customer_cache import CachedCustomer, CustomerCache
from tests.unit.test_decode import VALID

EVENT: Event = msgspec.json.decode(msgspec.json.encode(VALID["cancellation"]), type=Event)


def entry(version: int, events: int) -> CachedCustomer:
    return CachedCustomer(version, [EVENT] * events, {})


def test_an_entry_is_used_only_at_its_own_version() -> None:
    cache = CustomerCache()
    cache.update({"c1": entry(3, 2)})
    assert cache.get("c1", 3) is not None
    assert cache.get("c1", 4) is None  # another worker (or a rolled-back batch) moved the customer on
    assert cache.get("c2", 1) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_least_recently_used_customers_go_first_and_the_event_count_stays_bounded() -> None:
    cache = CustomerCache(max_events=10)
    cache.update({"a": entry(1, 4), "b": entry(1, 4)})
    assert cache.get("a", 1) is not None  # a is now the most recently used
    cache.update({"c": entry(1, 4)})
    assert list(cache.entries) == ["a", "c"] and cache.events == 8
    cache.update({"a": entry(2, 9)})  # a replaced: its old events no longer count
    assert list(cache.entries) == ["a"] and cache.events == 9


def test_discard_forgets_and_uncounts() -> None:
    cache = CustomerCache()
    cache.update({"a": entry(1, 3), "b": entry(1, 2)})
    cache.discard(["a", "missing"])
    assert list(cache.entries) == ["b"] and cache.events == 2


def test_a_customer_new_in_this_batch_has_nothing_stored_before_it() -> None:
    cache = CustomerCache()
    new = cache.get("never-seen", 0)  # the batch created its row: version 1, so the prior one is 0
    assert new is not None and new.events == [] and new.credits == {}
    new.credits[object()] = 1  # type: ignore[index]  # the batch fills its own copy ...
    assert cache.get("never-seen", 0).credits == {}  # type: ignore[union-attr]  # ... never a shared one
