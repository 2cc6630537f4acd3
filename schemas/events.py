"""Typed CRM events (SPEC section 3), validated by msgspec in C, not in Python loops.

Every rule of SPEC section 3 that a type annotation can say is said here as a
`msgspec.Meta` constraint; the few it cannot (money's range and scale, unique
line ids, offered categories required for an offer) live in `__post_init__`, whose
errors msgspec reports as validation errors with the path of the struct. So does "no
control character in an id": msgspec can check it as a `pattern` per field, but one
search per struct costs a quarter as much (`check_ids`); the JSON Schema keeps the pattern.

The same annotations generate the JSON Schema files for publishers
(`python -m schemas.jsonschema`), so a regex here is written to mean the same in
Python's `re` (msgspec, the `jsonschema` library) and in ECMA-262 (other validators).

Events and lines are not tracked by Python's cycle collector (`gc=False`): they hold only
strings, numbers, times and lists of lines, so they can never be part of a reference cycle,
and a worker keeps tens of thousands of them cached (see `stream.memory.settle_garbage_collector`).

Every string and array accepted is bounded: ids (`sku` and `category` included) are
1..128 characters, `lines` at most 1000, `offered_categories` at most 100; the other
strings are enums, a currency code or timestamps. Unknown fields are skipped unread.

The models check what SPEC section 3 (version 1) says and no more, because they also decode
the events stored under version 1, which are not validated again (SPEC section 10): the
spelling rules of section 10 (timestamps, money strings, `-0`), the time bounds, the sale
total and repeated keys are checked on the raw message by `schemas.decode.decode_event`.
Money is kept in a normal form (`normal_money`): at most 4 decimal places and no positive
exponent, so `1.50000` and `1e2` enter the exact arithmetic as `1.5000` and `100`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Annotated, Literal, get_args

import msgspec

#: The end of the text. Python's `$` also matches before a final "\n" (so "abc\n" would
#: pass `^[a-z]+$`); `(?!\n)` forbids that, and is a no-op in ECMA-262, where `$` is the end.
END = r"$(?!\n)"

#: Unicode control characters (category Cc): C0, DEL and C1 (which has \x85, NEL).
_CONTROL = r"\x00-\x1f\x7f-\x9f"

ID_PATTERN = rf"^[^{_CONTROL}]+{END}"
CURRENCY_PATTERN = rf"^[A-Za-z]{{3}}{END}"
#: What publishers must send as a money string. The decoder takes any ASCII
#: `[0-9]+(\.[0-9]{1,4})?` below 10,000,000 (SPEC section 10), leading zeros included.
MONEY_PATTERN = rf"^[0-9]{{1,7}}(\.[0-9]{{1,4}})?{END}"
#: RFC 3339 date-time whose offset is explicit: `Z`/`z` or `+hh:mm` / `-hh:mm` with hh <= 23
#: (SPEC section 10). The years are those a time within `EARLIEST`..`LATEST` can show in
#: some offset; the exact bounds hold for the instant and are said in the description.
TIMESTAMP_PATTERN = (
    r"^(1969|19[7-9][0-9]|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    rf"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]){END}"
)
#: SPEC section 10: after truncation to microseconds and conversion to UTC, every
#: `occurred_at` and `appointment_at` lies in EARLIEST..LATEST.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2199, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)

#: The two roles of SPEC section 3 (`seller_role`) and section 6 (`role`), defined once here.
Role = Literal["telemarketer", "field_rep"]
FIELD_REP: Role = "field_rep"
TELEMARKETER: Role = "telemarketer"
ROLES: tuple[str, ...] = get_args(Role)

MONEY_LIMIT = Decimal("10000000")
MONEY_MAX_PLACES = 4
MAX_LINES = 1_000
MAX_CATEGORIES = 100
MAX_ID = 128

#: An id: 1..128 characters, none of them a control character (Unicode Cc). The JSON Schema
#: says so with `ID_PATTERN`; the decoder checks it with `check_ids`, once per struct.
Id = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_ID,
        description="1..128 characters, no control characters",
        extra_json_schema={"pattern": ID_PATTERN},
    ),
]
_CONTROL_CHARACTER = re.compile(f"[{_CONTROL}]")
#: An RFC 3339 time with an explicit offset; a naive time is invalid.
Timestamp = Annotated[
    datetime,
    msgspec.Meta(
        tz=True,
        description=(
            "RFC 3339 date-time with an explicit offset (Z or +02:00, hours of the offset <= 23); a naive "
            "time is invalid; a fraction beyond microseconds is truncated, never rounded; after that and "
            "conversion to UTC the time lies in 1970-01-01T00:00:00Z .. 2199-12-31T23:59:59.999999Z"
        ),
        extra_json_schema={"pattern": TIMESTAMP_PATTERN},
    ),
]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000, description="an integer 1..10,000")]
Currency = Annotated[str, msgspec.Meta(pattern=CURRENCY_PATTERN, description="3 letters")]
_MONEY_RULE = (
    "finite, 0 <= x < 10,000,000, at most 4 decimal places; handled as an exact decimal. A string is "
    "ASCII digits with an optional fraction and nothing around them; a number is judged by its exact "
    "value (1.50000 and 1e2 are fine, -0 and 1e-5 are not)"
)
#: Money arrives as a decimal string or a JSON number; msgspec decodes both exactly.
#: msgspec describes a Decimal as a string; `schemas.jsonschema` replaces that with this anyOf.
Money = Annotated[
    Decimal,
    msgspec.Meta(
        description=f"a decimal string or a JSON number, {_MONEY_RULE}",
        extra_json_schema={
            "anyOf": [
                {"type": "string", "pattern": MONEY_PATTERN},
                {
                    "type": "number",
                    "minimum": 0,
                    "exclusiveMaximum": 10_000_000,
                    "description": "at most 4 decimal places by its exact value; not -0",
                },
            ],
        },
    ),
]


def _shown(value: Decimal) -> str:
    """The value for an error message, cut short: a hostile number can have a million digits."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} chars)"


#: Where `normal_money` rescales: a value below 10,000,000 with 4 places has at most 11 digits,
#: so this never rounds (and would raise if it did).
_NORMAL = Context(prec=40, traps=[InvalidOperation, Inexact])
_PLACES = Decimal(1).scaleb(-MONEY_MAX_PLACES)
_UNITS = Decimal(1)


def check_money(value: Decimal, field: str) -> Decimal:
    """Refuse what SPEC section 3 says money cannot be (NaN, infinite, negative, too big, too fine);
    return the value in its normal form (`normal_money`).

    The places are those of the exact value, whatever the spelling (SPEC section 10): `1.50000`
    has one. The sign of a zero is not looked at here: `-0` is refused by the decoder, on the
    raw message, and events stored under version 1 may hold one.
    """
    if not value.is_finite():
        raise ValueError(f"{field} must be a finite number, got {_shown(value)}")
    if not (0 <= value < MONEY_LIMIT):
        raise ValueError(f"{field} must be >= 0 and < 10000000, got {_shown(value)}")
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    if -MONEY_MAX_PLACES <= exponent <= 0:
        return value
    if exponent < -MONEY_MAX_PLACES:
        beyond = digits[exponent + MONEY_MAX_PLACES:]  # the digits past the 4th place
        if any(beyond):
            raise ValueError(f"{field} has more than {MONEY_MAX_PLACES} decimal places: {_shown(value)}")
    return normal_money(value)


def normal_money(value: Decimal) -> Decimal:
    """A checked money value with at most 4 places and no positive exponent, equal to `value`.

    `1.50000` becomes `1.5000` and `1E+2` becomes `100`: amounts then stay short whatever the
    spelling (the exact context of `stream.money` traps a result of more than 1,000 digits,
    which `1.5` followed by 2,000 zeros would have given), and print without an exponent.
    """
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent > 0:
        return value.quantize(_UNITS, context=_NORMAL)
    if exponent < -MONEY_MAX_PLACES:
        return value.quantize(_PLACES, context=_NORMAL)
    return value


def check_ids(struct: msgspec.Struct, *ids: str) -> None:
    """Refuse a control character in any of a struct's ids (SPEC section 3), naming the field.

    One search over the ids joined: msgspec checking a `pattern` on every id field was
    most of the decoder's time (3.5 vs 0.6 µs for a callback).
    """
    if _CONTROL_CHARACTER.search("".join(ids)) is None:
        return
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and (found := _CONTROL_CHARACTER.search(text)):
                raise ValueError(f"{name} must not contain control characters (U+{ord(found.group()):04X})")


class SaleLine(msgspec.Struct, frozen=True, gc=False):
    """One line of a sale; its amount is quantity x unit_price."""

    line_id: Id
    sku: Id
    category: Id
    quantity: Quantity
    unit_price: Money

    def __post_init__(self) -> None:
        check_ids(self, self.line_id, self.sku, self.category)
        price = check_money(self.unit_price, "unit_price")
        if price is not self.unit_price:
            msgspec.structs.force_setattr(self, "unit_price", price)

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price


class RefundLine(msgspec.Struct, frozen=True, gc=False):
    """How many units of one sale line a refund reverses."""

    line_id: Id
    quantity: Quantity

    def __post_init__(self) -> None:
        check_ids(self, self.line_id)


class _Event(msgspec.Struct, frozen=True, gc=False, tag_field="event_type"):
    """Fields every event carries (SPEC section 3, common fields)."""

    event_id: Id
    occurred_at: Timestamp
    customer_id: Id


class Sale(_Event, tag="sale", frozen=True):
    """A sale (SPEC section 3). `line_id` is unique within the sale; amounts are summed as given."""

    sale_id: Id
    seller_id: Id
    seller_role: Role
    currency: Currency
    lines: Annotated[
        list[SaleLine],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_LINES,
            description=(
                "line_id is unique within the sale; the sale's total, the sum of quantity x unit_price "
                "over its lines, is below 10,000,000"
            ),
        ),
    ]

    def __post_init__(self) -> None:
        check_ids(self, self.event_id, self.customer_id, self.sale_id, self.seller_id)
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("line_id must be unique within a sale")


class Cancellation(_Event, tag="cancellation", frozen=True):
    """Reverses every line of the sale `sale_id` in full (SPEC section 3)."""

    sale_id: Id

    def __post_init__(self) -> None:
        check_ids(self, self.event_id, self.customer_id, self.sale_id)


class Refund(_Event, tag="refund", frozen=True):
    """Reverses that many units of each line of the sale `sale_id` (SPEC section 3)."""

    sale_id: Id
    lines: Annotated[list[RefundLine], msgspec.Meta(min_length=1, max_length=MAX_LINES)]

    def __post_init__(self) -> None:
        check_ids(self, self.event_id, self.customer_id, self.sale_id)


class Callback(_Event, tag="callback", frozen=True):
    """A telemarketer's call (SPEC section 3); `offered_categories` is required for an offer."""

    telemarketer_id: Id
    outcome: Literal["no_answer", "declined", "offer_made"]
    offered_categories: Annotated[
        list[Id],
        msgspec.Meta(max_length=MAX_CATEGORIES, description="required and non-empty when outcome is offer_made"),
    ] = []

    def __post_init__(self) -> None:
        check_ids(self, self.event_id, self.customer_id, self.telemarketer_id, *self.offered_categories)
        if self.outcome == "offer_made" and not self.offered_categories:
            raise ValueError("offered_categories is required and non-empty when outcome is offer_made")


class LeadHandoff(_Event, tag="lead_handoff", frozen=True):
    """One step of a lead's lifecycle, from telemarketer to field rep (SPEC section 3)."""

    lead_id: Id
    telemarketer_id: Id
    field_rep_id: Id
    status: Literal["booked", "held", "no_show", "cancelled"]
    appointment_at: Timestamp | None = None

    def __post_init__(self) -> None:
        check_ids(self, self.event_id, self.customer_id, self.lead_id, self.telemarketer_id, self.field_rep_id)


class Feedback(_Event, tag="feedback", frozen=True):
    """A customer's rating of a person (SPEC section 13, topic `crm.quality`): KPI `rating`."""

    person_id: Id
    person_role: Role
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)]
    sale_id: Id | None = None

    def __post_init__(self) -> None:
        sale = () if self.sale_id is None else (self.sale_id,)
        check_ids(self, self.event_id, self.customer_id, self.person_id, *sale)


class QualityReview(_Event, tag="quality_review", frozen=True):
    """A review of whether a person followed the instructions (SPEC section 13): KPI `compliance`."""

    person_id: Id
    person_role: Role
    passed: bool
    score: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None

    def __post_init__(self) -> None:
        check_ids(self, self.event_id, self.customer_id, self.person_id)


Event = Sale | Cancellation | Refund | Callback | LeadHandoff | Feedback | QualityReview
#: The KPI events of SPEC section 13, on topic `crm.quality`.
KpiEvent = Feedback | QualityReview
Reversal = Cancellation | Refund

#: event_type -> model, for every type SPEC section 3 knows.
EVENT_TYPES: dict[str, type[_Event]] = {
    "sale": Sale,
    "cancellation": Cancellation,
    "refund": Refund,
    "callback": Callback,
    "lead_handoff": LeadHandoff,
    "feedback": Feedback,
    "quality_review": QualityReview,
}


_TAGS: dict[type[_Event], str] = {model: tag for tag, model in EVENT_TYPES.items()}


def event_type(event: Event) -> str:
    """The `event_type` tag of a decoded event (a lookup: `__struct_config__` builds an object)."""
    return _TAGS[type(event)]
