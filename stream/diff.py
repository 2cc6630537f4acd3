"""One customer's recomputation as a change to what is stored: the ledger's pure core.

The ledger (stream/ledger.py) recomputes a customer's credits and facts from all of its
events (stream/rules.py) whenever a batch brings it new events, and writes only this change:
the rows to retract, those to insert, and what the change adds to each person's month
(`Tally` deltas, SPEC §6, §13) and to each telemarketer's year of leads (`LeadTally` deltas).
Pure, so the property tests drive exactly this code through any batching without Postgres
(tests/unit/test_incremental.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import chain
from typing import NamedTuple, TypeVar

from schemas.events import Event, Feedback, QualityReview
from stream import rules
from stream.bonus import NOTHING, PersonKey, Tally, add_tallies, lead_tally, tally
from stream.customer_cache import CachedCustomer, CustomerCache
from stream.leads import NO_LEADS, LeadTally, YearKey
from stream.plan_versions import Plans
from stream.rules import LEAD, Credit, Fact, Outcome

T = TypeVar("T", Credit, Fact)


class CustomerChange(NamedTuple):
    """Credits and facts in force before -> wanted now, for one customer. Row ids ride along,
    so the ledger can delete by id and keep the ids of the rows that stay."""

    kept: dict[Credit, int]
    added: list[Credit]  # in the order of the outcome
    removed: dict[Credit, int]
    facts_kept: dict[Fact, int]
    facts_added: list[Fact]
    facts_removed: dict[Fact, int]
    #: per (period, person) whose credits or month facts changed: after - before
    deltas: dict[PersonKey, Tally]
    #: per (year, telemarketer) whose lead facts changed: after - before
    lead_deltas: dict[YearKey, LeadTally]


def _split(in_force: Mapping[T, int], wanted: list[T]) -> tuple[dict[T, int], list[T], dict[T, int]]:
    wanted_set = dict.fromkeys(wanted)
    kept: dict[T, int] = {}
    removed: dict[T, int] = {}
    for row, row_id in in_force.items():
        if row in wanted_set:
            kept[row] = row_id
        else:
            removed[row] = row_id
    return kept, [row for row in wanted_set if row not in in_force], removed


def diff_customer(
    in_force: Mapping[Credit, int], facts_in_force: Mapping[Fact, int], wanted: Outcome
) -> CustomerChange:
    """Compare one customer's rows in force (with their row ids) with those the rules want.

    The deltas are taken over the customer's whole credits and facts of each person
    concerned, not over the added and removed rows alone: a person who keeps the field rep
    part of a line and loses its telemarketer part still counts the line (SPEC §5.6).
    """
    kept, added, removed = _split(in_force, wanted.credits)
    facts_kept, facts_added, facts_removed = _split(facts_in_force, wanted.facts)
    concerned = {(c.period, c.person_id) for c in chain(added, removed)}
    concerned |= {(f.scope, f.person_id) for f in chain(facts_added, facts_removed) if f.kind != LEAD}
    deltas: dict[PersonKey, Tally] = {}
    if concerned:
        before = tally((c for c in in_force if (c.period, c.person_id) in concerned),
                       (f for f in facts_in_force if f.kind != LEAD and (f.scope, f.person_id) in concerned))
        after = tally((c for c in wanted.credits if (c.period, c.person_id) in concerned),
                      (f for f in wanted.facts if f.kind != LEAD and (f.scope, f.person_id) in concerned))
        deltas = {key: after.get(key, NOTHING) - before.get(key, NOTHING) for key in concerned}
    lead_deltas: dict[YearKey, LeadTally] = {}
    if any(f.kind == LEAD for f in chain(facts_added, facts_removed)):
        gained, lost = lead_tally(facts_added), lead_tally(facts_removed)
        lead_deltas = {key: gained.get(key, NO_LEADS) - lost.get(key, NO_LEADS) for key in {*gained, *lost}}
    return CustomerChange(kept, added, removed, facts_kept, facts_added, facts_removed, deltas, lead_deltas)


# -- a batch of customers -------------------------------------------------------------------------


class RulesError(Exception):
    """The pure rules (`stream.rules`, `stream.bonus`, `stream.diff`) raised an ArithmeticError
    or a ValueError on a customer's events: what SPEC section 10 counts, with a Postgres data
    exception, as a message failing on its own data. Raised where the rules are called (`diff_batch`),
    so the pipeline can tell it from the same exception raised anywhere else (a bug there).
    """

    def __init__(self, customer_id: str | None, error: ArithmeticError | ValueError) -> None:
        self.customer_id = customer_id
        self.error = error
        where = "the bonus rows" if customer_id is None else f"customer {customer_id[:64]!r}"
        super().__init__(f"the rules failed for {where}: {type(error).__name__}: {error}")


def sort_customers(
    ids: Sequence[str], new_events: Mapping[str, Sequence[Event]], versions: Mapping[str, int],
    cache: CustomerCache, force: bool,
) -> tuple[dict[str, CachedCustomer], set[str], set[str], list[str]]:
    """The batch's customers by what their recomputation needs: (cached entries, `unchanged`,
    `kpi_only`, `missing`). One pass, as it runs for every customer of every batch.

    Credits in force always equal the rules over the stored events, so a customer whose new
    events cannot change them keeps its credits: no reading, no recomputation (`unchanged`).
    KPI events (SPEC 13) are read by no other rule and their facts are their own, so a customer
    whose new events are all KPI events gains those facts without a recomputation or a read
    (`kpi_only`). The rest are recomputed, from the cache or, if `missing`, from Postgres.
    `force` (a rebuild, a changed plan) recomputes every one.
    """
    cached: dict[str, CachedCustomer] = {}
    unchanged: set[str] = set()
    kpi_only: set[str] = set()
    missing: list[str] = []
    for cid in ids:
        entry = cache.get(cid, versions[cid] - 1)
        if entry is not None:
            cached[cid] = entry
        new = new_events[cid]
        if not force:
            if not rules.can_change_credits(new, None if entry is None else entry.events):
                unchanged.add(cid)
                continue
            if rules.only_kpi_events(new):
                kpi_only.add(cid)
                continue
        if entry is None:
            missing.append(cid)
    return cached, unchanged, kpi_only, missing


@dataclass
class BatchDiff:
    """What a batch's customers change in what is stored, all customers together."""

    removed: list[int] = field(default_factory=list)  # credit row ids to delete
    facts_removed: list[int] = field(default_factory=list)
    added: list[Credit] = field(default_factory=list)  # new rows, in the outcomes' order
    facts_added: list[Fact] = field(default_factory=list)
    deltas: dict[PersonKey, Tally] = field(default_factory=dict)
    lead_deltas: dict[YearKey, LeadTally] = field(default_factory=dict)
    #: the cache entries once the batch commits; new rows' ids are added by the ledger
    staged: dict[str, CachedCustomer] = field(default_factory=dict)


def diff_batch(
    ids: Sequence[str],
    new_events: Mapping[str, Sequence[Event]],
    versions: Mapping[str, int],
    cached: Mapping[str, CachedCustomer],
    skipped: tuple[AbstractSet[str], AbstractSet[str]],
    read: tuple[Mapping[str, list[Event]], Mapping[str, Mapping[Credit, int]], Mapping[str, Mapping[Fact, int]]],
    plans: Plans,
) -> BatchDiff:
    """Every customer of a batch through `diff_customer`, from the cache or from what was `read`
    back (stored events, credits and facts in force); `skipped` are the `unchanged` and `kpi_only`
    customers of `sort_customers`. Raises `RulesError` naming the customer whose rules failed.

    Every staged entry is new (new lists and dicts): a batch that rolls back leaves the cache's
    entries as they were.
    """
    unchanged, kpi_only = skipped
    stored, in_force, facts_in_force = read
    found = BatchDiff()
    staged = found.staged
    for cid in ids:
        entry = cached.get(cid)
        if cid in unchanged:
            if entry is not None:  # still current after this batch, with the new events
                # the same rows: nothing adds to them
                staged[cid] = CachedCustomer(versions[cid], [*entry.events, *new_events[cid]],
                                             entry.credits, entry.facts)
            continue
        if cid in kpi_only:
            gained = [rules.kpi_event_fact(event, plans.first) for event in new_events[cid]
                      if isinstance(event, (Feedback, QualityReview))]  # all of them (only_kpi_events)
            add_tallies(found.deltas, tally((), gained))
            found.facts_added.extend(gained)
            if entry is not None:  # facts join below
                staged[cid] = CachedCustomer(versions[cid], [*entry.events, *new_events[cid]],
                                             entry.credits, dict(entry.facts))
            continue
        history = [*entry.events, *new_events[cid]] if entry else stored[cid]
        try:
            customer = diff_customer(entry.credits if entry else in_force.get(cid, {}),
                                     entry.facts if entry else facts_in_force.get(cid, {}),
                                     rules.outcome_under(history, plans))
            add_tallies(found.deltas, customer.deltas)
            for key, lead_delta in customer.lead_deltas.items():
                found.lead_deltas[key] = found.lead_deltas.get(key, NO_LEADS) + lead_delta
        except (ArithmeticError, ValueError) as error:
            raise RulesError(cid, error) from error
        found.removed += customer.removed.values()
        found.facts_removed += customer.facts_removed.values()
        found.added.extend(customer.added)
        found.facts_added.extend(customer.facts_added)
        staged[cid] = CachedCustomer(versions[cid], history, customer.kept, customer.facts_kept)  # new rows join later
    return found
