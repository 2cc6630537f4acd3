"""Typed CRM events (SPEC section 3), validated by msgspec in C, not in Python loops.

Every rule of SPEC section 3 that a type annotation can say is said here as a
`msgspec.Meta` constraint; the few it cannot (money's range and scale, unique
line ids, offered categories required for an offer) live in `__post_init__`,
whose errors msgspec reports as validation errors with the field's path.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal, Union

import msgspec

#: An id: 1..128 characters, none of them a control character (Unicode Cc).
Id = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]+$",
        description="1..128 characters, no control characters",
    ),
]
#: An RFC 3339 time with an explicit offset; a naive time is invalid.
Timestamp = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 with an explicit offset (Z or +02:00)"),
]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{3}$", description="3 letters")]
#: Money arrives as a decimal string or a JSON number; msgspec decodes both exactly.
Money = Annotated[
    Decimal,
    msgspec.Meta(
        description="decimal string or JSON number, 0 <= x < 10,000,000, at most 4 decimal places",
    ),
]

MONEY_LIMIT = Decimal("10000000")
MONEY_MAX_PLACES = 4
MAX_LINES = 1_000
MAX_CATEGORIES = 100


def check_money(value: Decimal, field: str) -> None:
    """Refuse what SPEC section 3 says money cannot be (NaN, infinite, negative, too big, too fine)."""
    if not value.is_finite():
        raise ValueError(f"{field} must be a finite number, got {value}")
    if not (0 <= value < MONEY_LIMIT):
        raise ValueError(f"{field} must be >= 0 and < 10000000, got {value}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_MAX_PLACES:
        raise ValueError(f"{field} has more than {MONEY_MAX_PLACES} decimal places: {value}")


class SaleLine(msgspec.Struct, frozen=True):
    line_id: Id
    sku: Id
    category: Id
    quantity: Quantity
    unit_price: Money

    def __post_init__(self) -> None:
        check_money(self.unit_price, "unit_price")

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price


class RefundLine(msgspec.Struct, frozen=True):
    line_id: Id
    quantity: Quantity


class _Event(msgspec.Struct, frozen=True, tag_field="event_type"):
    """Fields every event carries (SPEC section 3, common fields)."""

    event_id: Id
    occurred_at: Timestamp
    customer_id: Id


class Sale(_Event, tag="sale"):
    sale_id: Id
    seller_id: Id
    seller_role: Literal["field_rep", "telemarketer"]
    currency: Currency
    lines: Annotated[list[SaleLine], msgspec.Meta(min_length=1, max_length=MAX_LINES)]

    def __post_init__(self) -> None:
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("line_id must be unique within a sale")


class Cancellation(_Event, tag="cancellation"):
    sale_id: Id


class Refund(_Event, tag="refund"):
    sale_id: Id
    lines: Annotated[list[RefundLine], msgspec.Meta(min_length=1, max_length=MAX_LINES)]


class Callback(_Event, tag="callback"):
    telemarketer_id: Id
    outcome: Literal["no_answer", "declined", "offer_made"]
    offered_categories: Annotated[list[Id], msgspec.Meta(max_length=MAX_CATEGORIES)] = []

    def __post_init__(self) -> None:
        if self.outcome == "offer_made" and not self.offered_categories:
            raise ValueError("offered_categories is required and non-empty when outcome is offer_made")


class LeadHandoff(_Event, tag="lead_handoff"):
    lead_id: Id
    telemarketer_id: Id
    field_rep_id: Id
    status: Literal["booked", "held", "no_show", "cancelled"]
    appointment_at: Timestamp | None = None


Event = Union[Sale, Cancellation, Refund, Callback, LeadHandoff]
Reversal = Union[Cancellation, Refund]

#: event_type -> model, for every type SPEC section 3 knows.
EVENT_TYPES: dict[str, type[_Event]] = {
    "sale": Sale,
    "cancellation": Cancellation,
    "refund": Refund,
    "callback": Callback,
    "lead_handoff": LeadHandoff,
}


def event_type(event: Event) -> str:
    """The `event_type` tag of a decoded event."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]
