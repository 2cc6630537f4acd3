"""The benchmark's input: the demo's realistic month, and per-customer histories of a fixed length."""

from __future__ import annotations

import itertools

from stream.demo_data import DemoConfig, customer_history, generate


def demo_events(count: int, seed: int = 2026, month: str = "2026-11", programmes: bool = True) -> list[bytes]:
    """The first `count` lines, in arrival order, of a generated month (SPEC-valid mix with a
    few duplicates and dead letters, as `crmbonus demo` publishes it); `programmes` False is
    the version-1 mix, without upgrades, feedback, reviews and the year's earlier hand-offs."""
    customers = count // 5 + 10  # about six events per customer
    while True:
        lines = generate(DemoConfig(seed=seed, month=month, customers=customers, programmes=programmes))
        if len(lines) >= count:
            return lines[:count]
        customers *= 2


def history_events(total: int, per_customer: int, seed: int = 2026) -> list[bytes]:
    """`total // per_customer` customers of exactly `per_customer` events each, interleaved.

    The histories share one time grid, so round-robin is their arrival order in time: every
    batch holds a few new events of each customer, the case where recomputing a customer
    from its whole history costs the most.
    """
    customers = max(1, total // per_customer)
    histories = [customer_history(index, per_customer, seed) for index in range(customers)]
    return [line for row in itertools.zip_longest(*histories) for line in row if line is not None]
