"""The decoder against SPEC section 3, rule by rule: the exact reason code and detail text.

Each case is one valid event of `VALID` with one thing changed, so a row reads as the rule
it breaks. Details are msgspec's messages (with the JSON path) or ours, compared exactly.
"""

from __future__ import annotations

import copy
import gc
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from schemas.decode import (
    INVALID_JSON,
    MAX_DETAIL,
    PROCESSING_ERROR,
    REASONS,
    SCHEMA_VIOLATION,
    UNKNOWN_EVENT_TYPE,
    InvalidEvent,
    StoredDecoder,
    decode_event,
    routing_fields,
    same_content,
)
from schemas.events import (
    EARLIEST,
    EVENT_TYPES,
    ID_PATTERN,
    LATEST,
    Callback,
    Cancellation,
    Event,
    LeadHandoff,
    Refund,
    Sale,
    event_type,
)
from stream import store
from stream.periods import period_of
from stream.plan import load_plan

COMMON = {"event_id": "ev-1", "occurred_at": "2026-11-05T12:00:00Z", "customer_id": "c1"}
VALID: dict[str, dict[str, Any]] = {
    "sale": {
        **COMMON,
        "event_type": "sale",
        "sale_id": "S1",
        "seller_id": "fr-1",
        "seller_role": "field_rep",
        "currency": "EUR",
        "lines": [
            {"line_id": "L1", "sku": "LT-1", "category": "laptops", "quantity": 1, "unit_price": "1000.00"},
            {"line_id": "L2", "sku": "BAG", "category": "accessories", "quantity": 2, "unit_price": 50},
        ],
    },
    "cancellation": {**COMMON, "event_type": "cancellation", "sale_id": "S1"},
    "refund": {**COMMON, "event_type": "refund", "sale_id": "S1", "lines": [{"line_id": "L2", "quantity": 1}]},
    "callback": {
        **COMMON,
        "event_type": "callback",
        "telemarketer_id": "tm-1",
        "outcome": "offer_made",
        "offered_categories": ["accessories", "insurance"],
    },
    "lead_handoff": {
        **COMMON,
        "event_type": "lead_handoff",
        "lead_id": "lead-1",
        "telemarketer_id": "tm-1",
        "field_rep_id": "fr-1",
        "status": "booked",
        "appointment_at": "2026-11-06T09:30:00+01:00",
    },
    # SPEC section 13, topic crm.quality
    "feedback": {
        **COMMON,
        "event_type": "feedback",
        "person_id": "fr-1",
        "person_role": "field_rep",
        "rating": 4,
        "sale_id": "S1",
    },
    "quality_review": {
        **COMMON,
        "event_type": "quality_review",
        "person_id": "tm-1",
        "person_role": "telemarketer",
        "passed": True,
        "score": 87,
    },
}
REQUIRED = {
    "sale": ["event_id", "occurred_at", "customer_id", "sale_id", "seller_id", "seller_role", "currency", "lines"],
    "cancellation": ["event_id", "occurred_at", "customer_id", "sale_id"],
    "refund": ["event_id", "occurred_at", "customer_id", "sale_id", "lines"],
    "callback": ["event_id", "occurred_at", "customer_id", "telemarketer_id", "outcome"],
    "lead_handoff": ["event_id", "occurred_at", "customer_id", "lead_id", "telemarketer_id", "field_rep_id", "status"],
    "feedback": ["event_id", "occurred_at", "customer_id", "person_id", "person_role", "rating"],
    "quality_review": ["event_id", "occurred_at", "customer_id", "person_id", "person_role", "passed"],
}


def raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def changed(kind: str, path: str, value: Any) -> bytes:
    """`VALID[kind]` with the field at dotted `path` (`lines.0.quantity`) set to `value`."""
    event = copy.deepcopy(VALID[kind])
    *parents, last = path.split(".")
    node: Any = event
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return raw(event)


def without(kind: str, path: str) -> bytes:
    event = copy.deepcopy(VALID[kind])
    *parents, last = path.split(".")
    node: Any = event
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[last]
    return raw(event)


def spliced(kind: str, path: str, text: bytes) -> bytes:
    """`VALID[kind]` with the field at `path` set to raw JSON `text` (which may not be JSON)."""
    return changed(kind, path, "@@").replace(b'"@@"', text)


def refused(raw_bytes: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw_bytes)
    return caught.value


# --- every valid example decodes to its model -------------------------------------------------


@pytest.mark.parametrize("kind", list(VALID))
def test_valid_event_decodes_to_its_model(kind: str) -> None:
    event = decode_event(raw(VALID[kind]))
    assert type(event) is EVENT_TYPES[kind]
    assert event_type(event) == kind
    assert event.event_id == "ev-1"


@pytest.mark.parametrize("kind", list(VALID))
def test_decoded_events_are_not_tracked_by_the_cycle_collector(kind: str) -> None:
    """A worker caches tens of thousands of events; the collector must not walk them."""
    event = decode_event(raw(VALID[kind]))
    assert not gc.is_tracked(event)
    assert not any(gc.is_tracked(line) for line in getattr(event, "lines", []))


def test_sale_money_is_exact_decimal_from_string_and_number() -> None:
    sale = decode_event(raw(VALID["sale"]))
    assert isinstance(sale, Sale)
    assert [line.unit_price for line in sale.lines] == [Decimal("1000.00"), Decimal("50")]
    assert [line.amount for line in sale.lines] == [Decimal("1000.00"), Decimal("100")]


# --- refused: (raw, reason, exact detail) ------------------------------------------------------

CTRL = "\x00\x1f\x7f\x85"
REFUSED: list[Any] = [
    # not JSON at all
    pytest.param(b"", INVALID_JSON, "Input data was truncated", id="empty-input"),
    pytest.param(b"   ", INVALID_JSON, "Input data was truncated", id="only-whitespace"),
    pytest.param(b"not json", INVALID_JSON, "JSON is malformed: invalid character (byte 4)", id="not-json"),
    pytest.param(b'{"event_type": "sale"', INVALID_JSON, "Input data was truncated", id="truncated"),
    pytest.param(
        raw(VALID["cancellation"]) + b" x",
        INVALID_JSON,
        "JSON is malformed: trailing characters (byte 129)",
        id="trailing-garbage",
    ),
    pytest.param(
        b"\xff",
        INVALID_JSON,
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        id="utf8-invalid-byte",
    ),
    pytest.param(
        changed("cancellation", "sale_id", "S1").replace(b'"S1"', b'"S\xff1"'),
        INVALID_JSON,
        "'utf-8' codec can't decode byte 0xff in position 124: invalid start byte",
        id="utf8-invalid-in-string",
    ),
    pytest.param(
        changed("cancellation", "sale_id", "S1").replace(b'"S1"', b'"S\xc3"'),
        INVALID_JSON,
        "'utf-8' codec can't decode byte 0xc3 in position 124: invalid continuation byte",
        id="utf8-truncated-sequence",
    ),
    pytest.param(
        raw(VALID["cancellation"])[:-1] + b', "x\xff": "\xc3"}',
        INVALID_JSON,
        "'utf-8' codec can't decode byte 0xff in position 130: invalid start byte",
        id="utf8-invalid-in-unknown-field",
    ),
    pytest.param(
        b"\xef\xbb\xbf" + raw(VALID["cancellation"]),
        INVALID_JSON,
        "JSON is malformed: invalid character (byte 0)",
        id="utf8-bom",
    ),
    pytest.param(
        spliced("sale", "lines.0.unit_price", b"NaN"),
        INVALID_JSON,
        "JSON is malformed: invalid character (byte 283)",
        id="money-bare-NaN",
    ),
    pytest.param(
        spliced("sale", "lines.0.unit_price", b"Infinity"),
        INVALID_JSON,
        "JSON is malformed: invalid character (byte 283)",
        id="money-bare-Infinity",
    ),
    pytest.param(
        spliced("sale", "lines.0.unit_price", b"-Infinity"),
        INVALID_JSON,
        "JSON is malformed: invalid character (byte 284)",
        id="money-bare-minus-Infinity",
    ),
    pytest.param(
        b"[" * 100_000,
        INVALID_JSON,
        "maximum recursion depth exceeded while deserializing an object",
        id="nested-100k-arrays",
    ),
    pytest.param(
        raw(VALID["cancellation"])[:-1] + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        INVALID_JSON,
        "maximum recursion depth exceeded while deserializing an object",
        id="nested-5000-in-extra-field",
    ),
    # JSON, but not an object
    pytest.param(b"[]", SCHEMA_VIOLATION, "expected a JSON object, got array", id="array"),
    pytest.param(b'"sale"', SCHEMA_VIOLATION, "expected a JSON object, got string", id="string"),
    pytest.param(b"1", SCHEMA_VIOLATION, "expected a JSON object, got number", id="int"),
    pytest.param(b"1e400", SCHEMA_VIOLATION, "expected a JSON object, got number", id="huge-number"),
    pytest.param(b"1e" + b"9" * 30, SCHEMA_VIOLATION, "expected a JSON object, got number", id="beyond-decimal"),
    pytest.param(b"null", SCHEMA_VIOLATION, "expected a JSON object, got null", id="null"),
    pytest.param(b"true", SCHEMA_VIOLATION, "expected a JSON object, got boolean", id="bool"),
    # event_type
    pytest.param(b"{}", SCHEMA_VIOLATION, "Object missing required field `event_type`", id="empty-object"),
    pytest.param(
        without("sale", "event_type"),
        SCHEMA_VIOLATION,
        "Object missing required field `event_type`",
        id="no-event_type",
    ),
    pytest.param(
        changed("sale", "event_type", None),
        SCHEMA_VIOLATION,
        "Expected `str` - at `$.event_type`",
        id="event_type-null",
    ),
    pytest.param(
        changed("sale", "event_type", 5), SCHEMA_VIOLATION, "Expected `str` - at `$.event_type`", id="event_type-int"
    ),
    pytest.param(
        changed("sale", "event_type", "refund_v2"),
        UNKNOWN_EVENT_TYPE,
        "unknown event_type 'refund_v2'",
        id="event_type-unknown",
    ),
    pytest.param(
        changed("sale", "event_type", "Sale"),
        UNKNOWN_EVENT_TYPE,
        "unknown event_type 'Sale'",
        id="event_type-case-matters",
    ),
    pytest.param(changed("sale", "event_type", ""), UNKNOWN_EVENT_TYPE, "unknown event_type ''", id="event_type-empty"),
    pytest.param(
        b'{"event_type": "' + b"x" * 1_000_000 + b'"}',
        UNKNOWN_EVENT_TYPE,
        f"unknown event_type {'x' * 64!r}",
        id="event_type-1MB-cut-to-64",
    ),
    # wrong types
    pytest.param(
        changed("sale", "event_id", 5),
        SCHEMA_VIOLATION,
        "Expected `str`, got `int` - at `$.event_id`",
        id="event_id-int",
    ),
    pytest.param(
        changed("sale", "lines", {}),
        SCHEMA_VIOLATION,
        "Expected `array`, got `object` - at `$.lines`",
        id="lines-object",
    ),
    pytest.param(
        changed("sale", "lines.0.quantity", "1"),
        SCHEMA_VIOLATION,
        "Expected `int`, got `str` - at `$.lines[0].quantity`",
        id="quantity-string",
    ),
    pytest.param(
        changed("sale", "lines.0.quantity", 1.0),
        SCHEMA_VIOLATION,
        "Expected `int`, got `float` - at `$.lines[0].quantity`",
        id="quantity-float",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", True),
        SCHEMA_VIOLATION,
        "Expected `decimal`, got `bool` - at `$.lines[0].unit_price`",
        id="money-bool",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", None),
        SCHEMA_VIOLATION,
        "Expected `decimal`, got `null` - at `$.lines[0].unit_price`",
        id="money-null",
    ),
    pytest.param(
        changed("sale", "occurred_at", 1762344000),
        SCHEMA_VIOLATION,
        "Expected `datetime`, got `int` - at `$.occurred_at`",
        id="timestamp-epoch-int",
    ),
    pytest.param(
        changed("callback", "offered_categories", "accessories"),
        SCHEMA_VIOLATION,
        "Expected `array`, got `str` - at `$.offered_categories`",
        id="categories-string",
    ),
    # ids: 1..128 characters, no control characters
    pytest.param(
        changed("sale", "sale_id", ""),
        SCHEMA_VIOLATION,
        "Expected `str` of length >= 1 - at `$.sale_id`",
        id="id-empty",
    ),
    pytest.param(
        changed("sale", "event_id", "x" * 129),
        SCHEMA_VIOLATION,
        "Expected `str` of length <= 128 - at `$.event_id`",
        id="id-129-chars",
    ),
    pytest.param(
        changed("sale", "customer_id", "é" * 129),
        SCHEMA_VIOLATION,
        "Expected `str` of length <= 128 - at `$.customer_id`",
        id="id-129-non-ascii-chars",
    ),
    pytest.param(
        changed("sale", "lines.1.sku", "x" * 129),
        SCHEMA_VIOLATION,
        "Expected `str` of length <= 128 - at `$.lines[1].sku`",
        id="sku-is-an-id",
    ),
    pytest.param(
        changed("sale", "lines.0.category", "x" * 1_000_000),
        SCHEMA_VIOLATION,
        "Expected `str` of length <= 128 - at `$.lines[0].category`",
        id="category-1MB",
    ),
    pytest.param(
        changed("callback", "offered_categories", ["ok", ""]),
        SCHEMA_VIOLATION,
        "Expected `str` of length >= 1 - at `$.offered_categories[1]`",
        id="offered-category-empty",
    ),
    *[
        pytest.param(
            changed("sale", "seller_id", f"fr{char}1"),
            SCHEMA_VIOLATION,
            f"seller_id must not contain control characters (U+{ord(char):04X})",
            id=f"id-control-{ord(char):#04x}",
        )
        for char in CTRL
    ],
    pytest.param(
        changed("sale", "seller_id", "fr-1\n"),
        SCHEMA_VIOLATION,
        "seller_id must not contain control characters (U+000A)",
        id="id-trailing-newline",
    ),
    pytest.param(
        changed("sale", "seller_id", "\x9f"),
        SCHEMA_VIOLATION,
        "seller_id must not contain control characters (U+009F)",
        id="id-control-0x9f",
    ),
    pytest.param(
        changed("refund", "lines.0.line_id", "L\t2"),
        SCHEMA_VIOLATION,
        "line_id must not contain control characters (U+0009) - at `$.lines[0]`",
        id="line_id-tab",
    ),
    # timestamps: RFC 3339 with an explicit offset
    pytest.param(
        changed("sale", "occurred_at", "2026-11-05T12:00:00"),
        SCHEMA_VIOLATION,
        "Expected `datetime` with a timezone component - at `$.occurred_at`",
        id="timestamp-naive",
    ),
    pytest.param(
        changed("lead_handoff", "appointment_at", "2026-11-06T09:30:00"),
        SCHEMA_VIOLATION,
        "Expected `datetime` with a timezone component - at `$.appointment_at`",
        id="appointment-naive",
    ),
    pytest.param(
        changed("sale", "occurred_at", "2026-11-05"),
        SCHEMA_VIOLATION,
        "Invalid RFC3339 encoded datetime - at `$.occurred_at`",
        id="timestamp-date-only",
    ),
    pytest.param(
        changed("sale", "occurred_at", "2026-11-05T12:00:00+24:00"),
        SCHEMA_VIOLATION,
        "Invalid RFC3339 encoded datetime - at `$.occurred_at`",
        id="timestamp-offset-24h",
    ),
    pytest.param(
        changed("sale", "occurred_at", "2026-11-05T12:00:60Z"),
        SCHEMA_VIOLATION,
        "Invalid RFC3339 encoded datetime - at `$.occurred_at`",
        id="timestamp-second-60",
    ),
    pytest.param(
        changed("sale", "occurred_at", "2026-02-30T12:00:00Z"),
        SCHEMA_VIOLATION,
        "Invalid RFC3339 encoded datetime - at `$.occurred_at`",
        id="timestamp-no-such-day",
    ),
    pytest.param(
        changed("sale", "occurred_at", "5 Nov 2026 12:00 GMT"),
        SCHEMA_VIOLATION,
        "Invalid RFC3339 encoded datetime - at `$.occurred_at`",
        id="timestamp-not-rfc3339",
    ),
    pytest.param(  # SPEC section 10: the separator is T or t (it used to be accepted)
        changed("sale", "occurred_at", "2026-11-05 12:00:00Z"),
        SCHEMA_VIOLATION,
        "occurred_at must be RFC 3339 (YYYY-MM-DDTHH:MM:SS, an optional fraction, then Z or +HH:MM/-HH:MM "
        "with HH <= 23), got '2026-11-05 12:00:00Z' - at `$.occurred_at`",
        id="timestamp-space-for-T",
    ),
    pytest.param(  # SPEC section 10: the offset is Z, z or +HH:MM (it used to be accepted)
        changed("sale", "occurred_at", "2026-11-05T12:00:00+0200"),
        SCHEMA_VIOLATION,
        "occurred_at must be RFC 3339 (YYYY-MM-DDTHH:MM:SS, an optional fraction, then Z or +HH:MM/-HH:MM "
        "with HH <= 23), got '2026-11-05T12:00:00+0200' - at `$.occurred_at`",
        id="timestamp-offset-without-colon",
    ),
    # money: finite, 0 <= x < 10,000,000, at most 4 decimal places
    pytest.param(
        changed("sale", "lines.0.unit_price", "-1"),
        SCHEMA_VIOLATION,
        "unit_price must be >= 0 and < 10000000, got -1 - at `$.lines[0]`",
        id="money-negative-string",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", -0.01),
        SCHEMA_VIOLATION,
        "unit_price must be >= 0 and < 10000000, got -0.01 - at `$.lines[0]`",
        id="money-negative-number",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", "10000000"),
        SCHEMA_VIOLATION,
        "unit_price must be >= 0 and < 10000000, got 10000000 - at `$.lines[0]`",
        id="money-10M-string",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", 10_000_000),
        SCHEMA_VIOLATION,
        "unit_price must be >= 0 and < 10000000, got 10000000 - at `$.lines[0]`",
        id="money-10M-number",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", "9999999.99995"),
        SCHEMA_VIOLATION,
        "unit_price has more than 4 decimal places: 9999999.99995 - at `$.lines[0]`",
        id="money-5-places-string",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", 0.00001),
        SCHEMA_VIOLATION,
        "unit_price has more than 4 decimal places: 0.00001 - at `$.lines[0]`",
        id="money-5-places-number",
    ),
    pytest.param(  # SPEC section 10: a string is spelled with at most 4 places (a number is judged by value)
        changed("sale", "lines.0.unit_price", "80.00000"),
        SCHEMA_VIOLATION,
        'unit_price as a string must be ASCII digits with at most 4 decimal places and nothing around them, '
        'got "80.00000" - at `$.lines[0]`',
        id="money-5-places-zeros",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", "NaN"),
        SCHEMA_VIOLATION,
        "unit_price must be a finite number, got NaN - at `$.lines[0]`",
        id="money-NaN-string",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", "sNaN"),
        SCHEMA_VIOLATION,
        "unit_price must be a finite number, got sNaN - at `$.lines[0]`",
        id="money-sNaN-string",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", "Infinity"),
        SCHEMA_VIOLATION,
        "unit_price must be a finite number, got Infinity - at `$.lines[0]`",
        id="money-Infinity-string",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", "-Infinity"),
        SCHEMA_VIOLATION,
        "unit_price must be a finite number, got -Infinity - at `$.lines[0]`",
        id="money-minus-Infinity",
    ),
    pytest.param(
        spliced("sale", "lines.0.unit_price", b"1e400"),
        SCHEMA_VIOLATION,
        "unit_price must be >= 0 and < 10000000, got 1E+400 - at `$.lines[0]`",
        id="money-1e400",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", "1" * 100_000),
        SCHEMA_VIOLATION,
        "unit_price must be >= 0 and < 10000000, got 11111111111111111111...(100000 chars) - at `$.lines[0]`",
        id="money-100k-digits-not-echoed",
    ),
    pytest.param(
        spliced("sale", "lines.0.unit_price", b"1e" + b"9" * 30),
        SCHEMA_VIOLATION,
        "Invalid decimal string - at `$.lines[0].unit_price`",
        id="money-beyond-decimal-range",
    ),
    pytest.param(
        spliced("sale", "lines.0.unit_price", b"9" * 5000),
        INVALID_JSON,
        "Integer value out of range - at `$[...][0][...]`",
        id="money-5000-digit-integer-beyond-parser",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", "12abc"),
        SCHEMA_VIOLATION,
        "Invalid decimal string - at `$.lines[0].unit_price`",
        id="money-not-a-decimal",
    ),
    pytest.param(
        changed("sale", "lines.0.unit_price", ""),
        SCHEMA_VIOLATION,
        "Invalid decimal string - at `$.lines[0].unit_price`",
        id="money-empty-string",
    ),
    # quantity: an integer 1..10,000
    pytest.param(
        changed("sale", "lines.0.quantity", 0),
        SCHEMA_VIOLATION,
        "Expected `int` >= 1 - at `$.lines[0].quantity`",
        id="quantity-0",
    ),
    pytest.param(
        changed("sale", "lines.0.quantity", 10_001),
        SCHEMA_VIOLATION,
        "Expected `int` <= 10000 - at `$.lines[0].quantity`",
        id="quantity-10001",
    ),
    pytest.param(
        changed("refund", "lines.0.quantity", 0),
        SCHEMA_VIOLATION,
        "Expected `int` >= 1 - at `$.lines[0].quantity`",
        id="refund-quantity-0",
    ),
    pytest.param(
        changed("refund", "lines.0.quantity", 2**70),
        SCHEMA_VIOLATION,
        "Expected `int` <= 10000 - at `$.lines[0].quantity`",
        id="quantity-2**70",
    ),
    # sale
    pytest.param(
        changed("sale", "lines", []),
        SCHEMA_VIOLATION,
        "Expected `array` of length >= 1 - at `$.lines`",
        id="sale-lines-empty",
    ),
    pytest.param(
        changed("sale", "lines", [VALID["sale"]["lines"][0] | {"line_id": f"L{i}"} for i in range(1001)]),
        SCHEMA_VIOLATION,
        "Expected `array` of length <= 1000 - at `$.lines`",
        id="sale-1001-lines",
    ),
    pytest.param(
        changed("sale", "lines.1.line_id", "L1"),
        SCHEMA_VIOLATION,
        "line_id must be unique within a sale",
        id="sale-duplicate-line_id",
    ),
    pytest.param(
        changed("sale", "seller_role", "boss"),
        SCHEMA_VIOLATION,
        "Invalid enum value 'boss' - at `$.seller_role`",
        id="sale-seller_role",
    ),
    pytest.param(
        changed("sale", "currency", "EURO"),
        SCHEMA_VIOLATION,
        "Expected `str` matching regex '^[A-Za-z]{3}$(?!\\\\n)' - at `$.currency`",
        id="currency-4-letters",
    ),
    pytest.param(
        changed("sale", "currency", "EUR\n"),
        SCHEMA_VIOLATION,
        "Expected `str` matching regex '^[A-Za-z]{3}$(?!\\\\n)' - at `$.currency`",
        id="currency-newline",
    ),
    pytest.param(
        changed("sale", "currency", "E1R"),
        SCHEMA_VIOLATION,
        "Expected `str` matching regex '^[A-Za-z]{3}$(?!\\\\n)' - at `$.currency`",
        id="currency-digit",
    ),
    # refund
    pytest.param(
        changed("refund", "lines", []),
        SCHEMA_VIOLATION,
        "Expected `array` of length >= 1 - at `$.lines`",
        id="refund-lines-empty",
    ),
    pytest.param(
        without("refund", "lines.0.quantity"),
        SCHEMA_VIOLATION,
        "Object missing required field `quantity` - at `$.lines[0]`",
        id="refund-line-no-quantity",
    ),
    # callback
    pytest.param(
        without("callback", "offered_categories"),
        SCHEMA_VIOLATION,
        "offered_categories is required and non-empty when outcome is offer_made",
        id="offer_made-without-categories",
    ),
    pytest.param(
        changed("callback", "offered_categories", []),
        SCHEMA_VIOLATION,
        "offered_categories is required and non-empty when outcome is offer_made",
        id="offer_made-empty-categories",
    ),
    pytest.param(
        changed("callback", "offered_categories", [f"c{i}" for i in range(101)]),
        SCHEMA_VIOLATION,
        "Expected `array` of length <= 100 - at `$.offered_categories`",
        id="categories-101",
    ),
    pytest.param(
        changed("callback", "outcome", "sold"),
        SCHEMA_VIOLATION,
        "Invalid enum value 'sold' - at `$.outcome`",
        id="callback-outcome",
    ),
    # lead_handoff
    pytest.param(
        changed("lead_handoff", "status", "won"),
        SCHEMA_VIOLATION,
        "Invalid enum value 'won' - at `$.status`",
        id="lead-status",
    ),
]


@pytest.mark.parametrize(("raw_bytes", "reason", "detail"), REFUSED)
def test_refused_with_exact_reason_and_detail(raw_bytes: bytes, reason: str, detail: str) -> None:
    error = refused(raw_bytes)
    assert (error.reason, error.detail) == (reason, detail)
    assert str(error) == f"{reason}: {detail}"


@pytest.mark.parametrize(("kind", "field"), [(kind, field) for kind, fields in REQUIRED.items() for field in fields])
def test_missing_required_field(kind: str, field: str) -> None:
    error = refused(without(kind, field))
    assert (error.reason, error.detail) == (SCHEMA_VIOLATION, f"Object missing required field `{field}`")


@pytest.mark.parametrize("field", ["line_id", "sku", "category", "quantity", "unit_price"])
def test_missing_sale_line_field(field: str) -> None:
    error = refused(without("sale", f"lines.1.{field}"))
    assert (error.reason, error.detail) == (
        SCHEMA_VIOLATION,
        f"Object missing required field `{field}` - at `$.lines[1]`",
    )


def test_only_the_decoder_reasons_are_decided_here() -> None:
    reasons = {refused(case.values[0]).reason for case in REFUSED}  # type: ignore[index]
    assert reasons == {INVALID_JSON, SCHEMA_VIOLATION, UNKNOWN_EVENT_TYPE}
    assert reasons < set(REASONS)


def test_detail_and_message_are_bounded() -> None:
    error = InvalidEvent(SCHEMA_VIOLATION, "y" * 10_000)
    assert len(error.detail) == MAX_DETAIL
    assert str(error) == f"{SCHEMA_VIOLATION}: {'y' * MAX_DETAIL}"


# --- accepted edge cases -----------------------------------------------------------------------


def _line0(raw_bytes: bytes) -> Any:
    sale = decode_event(raw_bytes)
    assert isinstance(sale, Sale)
    return sale.lines[0]


def one_line(price: Any, quantity: int = 1) -> bytes:
    """`VALID["sale"]` with its first line only, of this price and quantity: the sale's total is
    then that line's amount (SPEC section 10 bounds it below 10,000,000)."""
    return changed("sale", "lines", [VALID["sale"]["lines"][0] | {"unit_price": price, "quantity": quantity}])


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        pytest.param("899.00", Decimal("899.00"), id="string"),
        pytest.param(80, Decimal("80"), id="int"),
        pytest.param(80.5, Decimal("80.5"), id="float-kept-exact"),
        pytest.param("0", Decimal("0"), id="zero"),
        pytest.param(0.0001, Decimal("0.0001"), id="4-places-number"),
        pytest.param("9999999.9999", Decimal("9999999.9999"), id="largest-string"),
        pytest.param(9999999.9999, Decimal("9999999.9999"), id="largest-number-not-rounded-to-float"),
        pytest.param(0.1, Decimal("0.1"), id="0.1-exact-not-binary"),
    ],
)
def test_money_accepted_exactly(price: Any, expected: Decimal) -> None:
    line = _line0(one_line(price))  # one line: the largest price plus the other line would pass 10,000,000
    assert line.unit_price == expected
    assert str(line.unit_price) == str(expected)


@pytest.mark.parametrize("quantity", [1, 10_000])
def test_quantity_bounds_accepted(quantity: int) -> None:
    assert _line0(one_line("999.9999", quantity)).quantity == quantity  # 10,000 x 1000.00 is 10,000,000


@pytest.mark.parametrize(
    ("value", "offset"),
    [
        pytest.param("2026-11-05T12:00:00Z", timedelta(0), id="Z"),
        pytest.param("2026-11-05T12:00:00+02:00", timedelta(hours=2), id="+02:00"),
        pytest.param("2026-11-05T12:00:00-05:30", timedelta(hours=-5, minutes=-30), id="-05:30"),
        pytest.param("2026-11-05T12:00:00.123456+00:00", timedelta(0), id="fraction"),
    ],
)
def test_timestamps_with_an_explicit_offset(value: str, offset: timedelta) -> None:
    event = decode_event(changed("sale", "occurred_at", value))
    assert event.occurred_at.utcoffset() == offset


@pytest.mark.parametrize(
    ("value", "offset"),
    [
        pytest.param("2026-11-05t12:00:00z", timedelta(0), id="lower-case"),
        pytest.param("2026-11-05t12:00:00-00:00", timedelta(0), id="minus-zero-is-utc"),
        pytest.param("2026-11-05T12:00:00+23:59", timedelta(hours=23, minutes=59), id="largest-offset"),
        pytest.param("2026-11-05T12:00:00-23:59", -timedelta(hours=23, minutes=59), id="smallest-offset"),
    ],
)
def test_spellings_section_10_allows(value: str, offset: timedelta) -> None:
    """SPEC section 10: T or t, Z or z, +HH:MM with HH <= 23. (A space for T and +0200 used to
    be accepted too; they are refused now, see REFUSED.)"""
    assert decode_event(changed("sale", "occurred_at", value)).occurred_at.utcoffset() == offset


def test_plus_two_hours_is_the_same_instant_as_utc() -> None:
    utc = decode_event(changed("sale", "occurred_at", "2026-11-05T10:00:00Z"))
    local = decode_event(changed("sale", "occurred_at", "2026-11-05T12:00:00+02:00"))
    assert utc.occurred_at == local.occurred_at


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("x" * 128, id="128-chars"),
        pytest.param("é" * 128, id="128-non-ascii"),
        pytest.param("a b\u00a0c", id="spaces-and-nbsp"),
        pytest.param("😀-\u2028", id="emoji-and-line-separator-not-Cc"),
    ],
)
def test_ids_accepted(value: str) -> None:
    event = decode_event(changed("sale", "sale_id", value))
    assert isinstance(event, Sale)
    assert event.sale_id == value


def test_unknown_extra_fields_are_ignored() -> None:
    event = copy.deepcopy(VALID["sale"])
    event["source"] = {"crm": "x", "nested": [[[[[1, 2, {"deep": None}]]]]], "big": "z" * 100_000}
    event["lines"][0]["discount_code"] = "SPRING"
    event["version"] = 2
    assert decode_event(raw(event)) == decode_event(raw(VALID["sale"]))


def test_unknown_fields_nested_50_deep_are_ignored() -> None:
    assert isinstance(
        decode_event(raw(VALID["cancellation"])[:-1] + b', "x": ' + b"[" * 50 + b"]" * 50 + b"}"), Cancellation
    )


def test_field_order_does_not_matter() -> None:
    reordered = dict(reversed(list(VALID["refund"].items())))
    assert decode_event(raw(reordered)) == decode_event(raw(VALID["refund"]))
    assert isinstance(decode_event(raw(reordered)), Refund)


@pytest.mark.parametrize("outcome", ["no_answer", "declined"])
def test_callback_without_offer_needs_no_categories(outcome: str) -> None:
    event = copy.deepcopy(VALID["callback"])
    event["outcome"] = outcome
    del event["offered_categories"]
    callback = decode_event(raw(event))
    assert isinstance(callback, Callback)
    assert callback.offered_categories == []


@pytest.mark.parametrize("appointment", [None, "absent"])
def test_appointment_is_optional(appointment: str | None) -> None:
    event = copy.deepcopy(VALID["lead_handoff"])
    if appointment == "absent":
        del event["appointment_at"]
    else:
        event["appointment_at"] = appointment
    handoff = decode_event(raw(event))
    assert isinstance(handoff, LeadHandoff)
    assert handoff.appointment_at is None


def test_refund_may_repeat_a_line_id() -> None:
    """Uniqueness is a rule of sales only; a refund naming a line twice reverses it twice at most."""
    event = changed("refund", "lines", [{"line_id": "L2", "quantity": 1}, {"line_id": "L2", "quantity": 1}])
    assert isinstance(decode_event(event), Refund)


# --- same_content and routing_fields ------------------------------------------------------------

SAME = [
    pytest.param(b'{"a": 1, "b": 2}', b'{"b": 2, "a": 1}', True, id="key-order"),
    pytest.param(b'{"p": 80}', b'{"p": 80.0}', True, id="80-vs-80.0"),
    pytest.param(b'{"p": 80}', b'{"p": 8e1}', True, id="80-vs-8e1"),
    pytest.param(b'{"p": 0.1}', b'{"p": 0.10}', True, id="trailing-zero"),
    pytest.param(b'{"p": 1e400}', b'{"p": 1e400}', True, id="huge-number-exact"),
    pytest.param(b'{"p": 1e400}', b'{"p": 2e400}', False, id="huge-numbers-differ"),
    pytest.param(b' {"a" : [1, 2]}\n', b'{"a":[1,2]}', True, id="whitespace"),
    pytest.param(b'{"a": true}', b'{"a": 1}', False, id="true-vs-1"),
    pytest.param(b'{"a": false}', b'{"a": 0}', False, id="false-vs-0"),
    pytest.param(b'{"a": null}', b'{"a": 0}', False, id="null-vs-0"),
    pytest.param(b'{"a": "1"}', b'{"a": 1}', False, id="string-vs-number"),
    pytest.param(b'{"a": [1, 2]}', b'{"a": [2, 1]}', False, id="array-order-matters"),
    pytest.param(b'{"a": [[1], 2]}', b'{"a": [[1, 2]]}', False, id="nesting-matters"),
    pytest.param(b'{"a": {"b": 1}}', b'{"a": {"b": 1, "c": 2}}', False, id="extra-field-differs"),
    pytest.param(b'{"k": "v"}', b'{"v": "k"}', False, id="key-is-not-value"),
    pytest.param(b'{"a": "\\u00e9"}', '{"a": "é"}'.encode(), True, id="escape-vs-utf8"),
    pytest.param(b"[" * 800 + b"]" * 800, b"[" * 800 + b"]" * 800, True, id="deep-no-recursion-error"),
    pytest.param(b'{"x": 1e99999999999999999999}', b'{"x": 1e99999999999999999999}', True, id="beyond-decimal"),
    pytest.param(b'{"x": 1e99999999999999999999}', b'{"x": 1e99999999999999999998}', False, id="beyond-decimal-differ"),
    pytest.param(b'{"x": ' + b"9" * 5000 + b"}", b'{"x": ' + b"9" * 5000 + b"}", True, id="beyond-parser-same-bytes"),
    pytest.param(b'{"x": ' + b"9" * 5000 + b"}", b'{"x":' + b"9" * 5000 + b"}", False, id="beyond-parser-other-bytes"),
    pytest.param(b"not json", b"not json", True, id="not-json-same-bytes"),
]


@pytest.mark.parametrize(("a", "b", "same"), SAME)
def test_same_content(a: bytes, b: bytes, same: bool) -> None:
    assert same_content(a, b) is same
    assert same_content(b, a) is same


def test_same_content_of_a_reformatted_event() -> None:
    event = VALID["sale"]
    compact = json.dumps(event, separators=(",", ":")).encode()
    pretty = json.dumps(dict(reversed(list(event.items()))), indent=2).encode()
    assert same_content(compact, pretty)
    assert not same_content(compact, changed("sale", "lines.0.quantity", 2))


ROUTING = [
    pytest.param(raw(VALID["sale"]), ("sale", "c1"), id="valid"),
    pytest.param(changed("sale", "event_type", "nope"), ("nope", "c1"), id="unknown-type-still-routed"),
    pytest.param(changed("sale", "customer_id", 7), ("sale", None), id="customer-not-string"),
    pytest.param(spliced("sale", "lines.0.unit_price", b"1e400"), ("sale", "c1"), id="huge-number-elsewhere"),
    pytest.param(without("sale", "event_type"), (None, "c1"), id="no-type"),
    pytest.param(b"[1, 2]", (None, None), id="not-an-object"),
    pytest.param(b"\xff{", (None, None), id="not-json"),
    pytest.param(b"", (None, None), id="empty"),
]


@pytest.mark.parametrize(("raw_bytes", "expected"), ROUTING)
def test_routing_fields(raw_bytes: bytes, expected: tuple[str | None, str | None]) -> None:
    assert routing_fields(raw_bytes) == expected


# --- no id field escapes the control-character check -----------------------------------------


def id_paths(model: type[msgspec.Struct], prefix: str = "") -> list[str]:
    """Dotted paths (`lines.0.sku`, `offered_categories.0`) of every `Id` field, found in the models."""
    found: list[str] = []
    info = msgspec.inspect.type_info(model)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        kind, path = field.type, f"{prefix}{field.name}"
        if isinstance(kind, msgspec.inspect.UnionType):  # an optional field: `Id | None`
            kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
        if isinstance(kind, msgspec.inspect.Metadata) and isinstance(kind.type, msgspec.inspect.ListType):
            kind = kind.type
        if isinstance(kind, msgspec.inspect.ListType):
            kind, path = kind.item_type, f"{path}.0"
        if isinstance(kind, msgspec.inspect.StructType):
            found += id_paths(kind.cls, f"{path}.")
        elif isinstance(kind, msgspec.inspect.Metadata) and (kind.extra_json_schema or {}).get("pattern") == ID_PATTERN:
            found.append(path)
    return found


@pytest.mark.parametrize(("kind", "path"), [(kind, path) for kind, model in EVENT_TYPES.items()
                                            for path in id_paths(model)])
def test_every_id_field_refuses_a_control_character(kind: str, path: str) -> None:
    event = copy.deepcopy(VALID[kind])
    if kind == "callback":
        event["outcome"], event["offered_categories"] = "offer_made", ["tv"]
    node: Any = event
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = "a\x7fb"
    error = refused(raw(event))
    named = parents[-1] if last.isdigit() else last
    assert error.reason == SCHEMA_VIOLATION and f"{named} must not contain control characters (U+007F)" in error.detail


def test_the_id_paths_are_the_ones_the_spec_names() -> None:
    assert id_paths(EVENT_TYPES["sale"]) == ["event_id", "customer_id", "sale_id", "seller_id", "lines.0.line_id",
                                             "lines.0.sku", "lines.0.category"]
    assert id_paths(EVENT_TYPES["callback"]) == ["event_id", "customer_id", "telemarketer_id", "offered_categories.0"]
    assert id_paths(EVENT_TYPES["feedback"]) == ["event_id", "customer_id", "person_id", "sale_id"]
    assert id_paths(EVENT_TYPES["quality_review"]) == ["event_id", "customer_id", "person_id"]


# --- SPEC section 10: input bounds ------------------------------------------------------------

FULL_WIDTH_123 = "\uff11\uff12\uff13"  # what Python's Decimal reads as 123
BOUND_RULE = "must lie in 1970-01-01T00:00:00Z .. 2199-12-31T23:59:59.999999Z (in UTC)"
SHAPE_RULE = ("must be RFC 3339 (YYYY-MM-DDTHH:MM:SS, an optional fraction, then Z or +HH:MM/-HH:MM "
              "with HH <= 23)")


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        pytest.param("1970-01-01T00:00:00Z", EARLIEST, id="earliest"),
        pytest.param("1970-01-01T01:00:00+01:00", EARLIEST, id="earliest-in-an-offset"),
        pytest.param("1969-12-31T23:00:00-01:00", EARLIEST, id="earliest-local-1969"),
        pytest.param("2199-12-31T23:59:59.999999Z", LATEST, id="latest"),
        pytest.param("2199-12-31T23:59:59.9999999Z", LATEST, id="latest-truncated-not-rounded-into-2200"),
        pytest.param("2200-01-01T00:59:59.999999999+01:00", LATEST, id="latest-local-2200"),
        pytest.param("2026-11-30T23:59:59.9999999Z", datetime(2026, 11, 30, 23, 59, 59, 999_999, UTC),
                     id="7-digits-stay-in-november"),
        pytest.param("2026-11-05T12:00:00.123456789012345678901234567890Z",
                     datetime(2026, 11, 5, 12, 0, 0, 123_456, UTC), id="30-digits-truncated"),
        pytest.param("2026-11-05T12:00:00.5Z", datetime(2026, 11, 5, 12, 0, 0, 500_000, UTC), id="one-digit"),
        pytest.param("2026-11-05T12:00:00.9999995+02:00", datetime(2026, 11, 5, 10, 0, 0, 999_999, UTC),
                     id="half-a-microsecond-is-dropped"),
    ],
)
def test_times_within_the_bounds_truncated_to_microseconds(value: str, instant: datetime) -> None:
    event = decode_event(changed("sale", "occurred_at", value))
    assert event.occurred_at == instant
    handoff = decode_event(changed("lead_handoff", "appointment_at", value))
    assert isinstance(handoff, LeadHandoff) and handoff.appointment_at == instant


def test_a_fraction_never_moves_a_time_into_the_next_period() -> None:
    event = decode_event(changed("sale", "occurred_at", "2026-11-30T23:59:59.99999999Z"))
    assert period_of(event.occurred_at, load_plan()) == "2026-11"
    assert period_of(StoredDecoder().decode(changed("sale", "occurred_at", "2026-11-30T23:59:59.99999999Z"))
                     .occurred_at, load_plan()) == "2026-11"


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        pytest.param("1969-12-31T23:59:59.999999Z", BOUND_RULE, id="before-1970"),
        pytest.param("1970-01-01T00:59:59+01:00", BOUND_RULE, id="before-1970-in-an-offset"),
        pytest.param("2200-01-01T00:00:00Z", BOUND_RULE, id="2200"),
        pytest.param("2199-12-31T23:59:59-00:01", BOUND_RULE, id="2200-in-an-offset"),
        pytest.param("0001-01-01T00:00:00+01:00", BOUND_RULE, id="year-1-before-utc-year-0"),
        pytest.param("9999-12-31T23:59:59-01:00", BOUND_RULE, id="year-9999-after-utc-year-10000"),
        pytest.param("2026-11-05T12:00:00+23:60", "Invalid RFC3339 encoded datetime", id="offset-minute-60"),
        pytest.param("2026-11-05T12:00:00+24:00", "Invalid RFC3339 encoded datetime", id="offset-hour-24"),
        pytest.param("2026-11-05T12:00:60Z", "Invalid RFC3339 encoded datetime", id="second-60"),
        pytest.param("2026-12-31T23:59:60Z", "Invalid RFC3339 encoded datetime", id="leap-second"),
        pytest.param("2026-11-05T12:00Z", "Invalid RFC3339 encoded datetime", id="no-seconds"),
        pytest.param("2026-11-05T12:00:00.Z", "Invalid RFC3339 encoded datetime", id="empty-fraction"),
        pytest.param("2026-11-05 12:00:00Z", SHAPE_RULE, id="space"),
        pytest.param("2026-11-05T12:00:00+0200", SHAPE_RULE, id="offset-without-colon"),
        pytest.param("2026-11-05T12:00:00.1234567+0200", SHAPE_RULE, id="offset-without-colon-with-fraction"),
    ],
)
def test_times_refused(value: str, detail: str) -> None:
    for kind, name in (("sale", "occurred_at"), ("lead_handoff", "appointment_at")):
        error = refused(changed(kind, name, value))
        assert error.reason == SCHEMA_VIOLATION
        assert error.detail.startswith(f"{name} {detail}" if detail != "Invalid RFC3339 encoded datetime"
                                       else detail), error.detail
        assert error.detail.endswith(f" - at `$.{name}`")


def test_a_time_is_judged_as_the_string_it_means() -> None:
    """JSON escapes spell the same string: an escaped colon is a colon, an escaped space a space."""
    plain = decode_event(changed("sale", "occurred_at", "2026-11-05T12:00:00Z"))
    escaped = changed("sale", "occurred_at", "@").replace(b'"@"', b'"2026-11-05T12\\u003a00:00\\u005a"')
    assert decode_event(escaped) == plain
    spaced = changed("sale", "occurred_at", "@").replace(b'"@"', b'"2026-11-05\\u002012:00:00Z"')
    assert refused(spaced).detail.startswith(f"occurred_at {SHAPE_RULE}")


@pytest.mark.parametrize(
    ("price", "detail"),
    [
        pytest.param(FULL_WIDTH_123, 'as a string must be ASCII digits with at most 4 decimal places and nothing '
                     f'around them, got "{FULL_WIDTH_123}"', id="full-width-digits"),
        pytest.param("١٢٣", None, id="arabic-indic-digits"),
        pytest.param("1_000", None, id="underscore"),
        pytest.param(" 5 ", None, id="spaces"),
        pytest.param("5 ", None, id="trailing-space"),
        pytest.param("5\n", None, id="trailing-newline"),
        pytest.param("+5", None, id="plus"),
        pytest.param("-0", None, id="minus-zero-string"),
        pytest.param("-0.00", None, id="minus-zero-string-places"),
        pytest.param("1e3", None, id="exponent-string"),
        pytest.param("1E3", None, id="exponent-string-upper"),
        pytest.param(".5", None, id="no-integer-part"),
        pytest.param("5.", None, id="no-fraction-digits"),
        pytest.param("0x10", None, id="hex"),
        pytest.param("1.00000", None, id="5-places-of-zeros"),
    ],
)
def test_money_strings_refused(price: str, detail: str | None) -> None:
    error = refused(one_line(price))
    assert error.reason == SCHEMA_VIOLATION
    if detail is not None:
        assert error.detail == f"unit_price {detail} - at `$.lines[0]`"
    # refused as spelled, or already by msgspec's typed pass (not even a decimal)
    assert error.detail.startswith("unit_price ") or (
        error.detail == "Invalid decimal string - at `$.lines[0].unit_price`")


@pytest.mark.parametrize(
    ("number", "detail"),
    [
        pytest.param(b"-0", "unit_price must not be negative, got -0 - at `$.lines[0]`", id="minus-zero"),
        pytest.param(b"-0.0", "unit_price must not be negative, got -0.0 - at `$.lines[0]`", id="minus-zero-places"),
        pytest.param(b"-0e3", "unit_price must not be negative, got -0e3 - at `$.lines[0]`", id="minus-zero-exponent"),
        pytest.param(b"1e-5", "unit_price has more than 4 decimal places: 0.00001 - at `$.lines[0]`", id="1e-5"),
        pytest.param(b"1.00001", "unit_price has more than 4 decimal places: 1.00001 - at `$.lines[0]`",
                     id="5-places"),
        pytest.param(b"1.5e-4", "unit_price has more than 4 decimal places: 0.00015 - at `$.lines[0]`",
                     id="5-places-by-exponent"),
    ],
)
def test_money_numbers_refused_by_exact_value(number: bytes, detail: str) -> None:
    error = refused(one_line("@").replace(b'"@"', number))
    assert (error.reason, error.detail) == (SCHEMA_VIOLATION, detail)


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [
        pytest.param(b"1.50000", "1.5000", id="trailing-zeros-number"),
        pytest.param(b"1e2", "100", id="exponent-number"),
        pytest.param(b"1E+2", "100", id="exponent-plus-number"),
        pytest.param(b"15e-1", "1.5", id="negative-exponent-number"),
        pytest.param(b"0e-10", "0.0000", id="zero-with-many-places"),
        pytest.param(b"0", "0", id="zero-number"),
        pytest.param(b"1.5" + b"0" * 2000, "1.5000", id="2000-trailing-zeros"),
        pytest.param(b'"0000012.5"', "12.5", id="leading-zeros-string"),
        pytest.param(b'"0.0000"', "0.0000", id="zero-string-4-places"),
        pytest.param(b'"\\u0031\\u0032.5"', "12.5", id="escaped-digits-string"),
        pytest.param(b"9999999.99990000", "9999999.9999", id="largest-with-zeros"),
    ],
)
def test_money_is_judged_by_its_exact_value_and_kept_short(spelled: bytes, expected: str) -> None:
    """1.50000 is 1.5 whatever its spelling, and is kept with at most 4 places, so the exact
    arithmetic of the rules never meets a 2,000-digit price."""
    line = _line0(one_line("@").replace(b'"@"', spelled))
    assert str(line.unit_price) == expected
    assert line.amount == Decimal(expected)


@pytest.mark.parametrize(
    ("lines", "accepted"),
    [
        pytest.param([("9999999.9999", 1)], True, id="largest-price"),
        pytest.param([("999.9999", 10_000)], True, id="largest-quantity"),
        pytest.param([("1000", 10_000)], False, id="exactly-10M"),
        pytest.param([("5000000", 1), ("5000000", 1)], False, id="two-lines-10M"),
        pytest.param([("4999999.9999", 1), ("5000000", 1)], True, id="two-lines-just-below"),
        pytest.param([("9999.9999", 1)] * 1000, True, id="1000-lines-below"),
        pytest.param([("10000", 1)] * 1000, False, id="1000-lines-10M"),
        pytest.param([("9999999.9999", 10_000)] * 1000, False, id="largest-everything"),
    ],
)
def test_a_sale_totals_below_10_million(lines: list[tuple[str, int]], accepted: bool) -> None:
    base = VALID["sale"]["lines"][0]
    raw_bytes = changed("sale", "lines", [base | {"line_id": f"L{i}", "unit_price": price, "quantity": quantity}
                                          for i, (price, quantity) in enumerate(lines)])
    if accepted:
        assert isinstance(decode_event(raw_bytes), Sale)
        return
    error = refused(raw_bytes)
    total = sum(Decimal(price) * quantity for price, quantity in lines)
    assert (error.reason, error.detail) == (
        SCHEMA_VIOLATION,
        f"the sale's total (quantity x unit_price over its lines) must be below 10000000, got {total}")


def _with_extra(kind: str, text: bytes) -> bytes:
    return raw(VALID[kind])[:-1] + b", " + text + b"}"


REPEATED = [
    pytest.param(_with_extra("sale", b'"event_id": "ev-2"'), "event_id", id="top-level"),
    pytest.param(_with_extra("sale", b'"occurred_at": "2026-11-05T12:00:00+01:00"'), "occurred_at",
                 id="occurred_at-other-colons"),
    pytest.param(_with_extra("callback", b'"event_type": "callback"'), "event_type", id="the-tag"),
    pytest.param(_with_extra("cancellation", b'"\\u0065vent_id": "ev-1"'), "event_id", id="escaped-repeat"),
    pytest.param(_with_extra("cancellation", b'"x": {"a": 1, "a": 2}'), "a", id="in-an-unknown-object"),
    pytest.param(_with_extra("cancellation", b'"x": {"a": 1, "\\u0061": 2}'), "a", id="unescaped-equal"),
    pytest.param(_with_extra("cancellation", b'"x": [{"b": 1}, {"a": [{"c": 1, "c": 1}]}]'), "c", id="deep"),
    pytest.param(_with_extra("cancellation", b'"x": {"\\u00e9": 1, "\xc3\xa9": 2}'), "é", id="escape-vs-utf8"),
    pytest.param(_with_extra("cancellation", b'"x": 1, "x": 1'), "x", id="same-value-twice"),
    pytest.param(_with_extra("cancellation", b'"x" : 1 , "x"\n:\t1'), "x", id="whitespace-before-colon"),
    pytest.param(changed("sale", "lines.0.sku", "@").replace(b'"sku": "@"', b'"sku": "A", "sku": "B"'), "sku",
                 id="in-a-line"),
    pytest.param(_with_extra("lead_handoff", b'"appointment_at": null'), "appointment_at", id="null-after-a-time"),
    pytest.param(_with_extra("cancellation", b'"x": {"n": "\\\\u003a", "n": "\\u003a"}'), "n",
                 id="colon-escapes-and-lookalikes"),
]


@pytest.mark.parametrize(("raw_bytes", "key"), REPEATED)
def test_a_repeated_key_is_refused(raw_bytes: bytes, key: str) -> None:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in items]
        assert len(set(names)) == len(names) or key in names
        return dict(items)

    json.loads(raw_bytes, object_pairs_hook=pairs)  # the test's premise, by the obvious parser
    error = refused(raw_bytes)
    assert (error.reason, error.detail) == (SCHEMA_VIOLATION, f"an object has the key {key!r} more than once")


@pytest.mark.parametrize(
    "raw_bytes",
    [
        pytest.param(raw(VALID["sale"]), id="same-keys-in-two-lines"),
        pytest.param(json.dumps(VALID["sale"], indent=2, separators=(" , ", " : ")).encode(), id="whitespace"),
        pytest.param(_with_extra("cancellation", b'"a:b": ":c", "d": "\\":e"'), id="colons-in-strings"),
        pytest.param(_with_extra("cancellation", b'"x": [{"a": 1}, {"a": 2}]'), id="same-key-in-sibling-objects"),
        pytest.param(_with_extra("cancellation", b'"x": {"x": {"x": 1}}'), id="same-key-at-each-depth"),
        pytest.param(_with_extra("cancellation", b'"n": "\\"a\\": 1, \\"a\\": 2"'), id="repeat-inside-a-string"),
        pytest.param(changed("cancellation", "event_id", "@").replace(b'"event_id": "@"', b'"\\u0065vent_id": "ev"'),
                     id="escaped-key-once"),
        pytest.param(changed("lead_handoff", "appointment_at", None), id="explicit-null"),
        pytest.param(changed("callback", "outcome", "declined").replace(b'["accessories", "insurance"]', b"[]"),
                     id="empty-categories-sent"),
        pytest.param(_with_extra("callback", b'"a": {}, "b": {"a": []}'), id="empty-objects"),
        pytest.param(_with_extra("cancellation", b'"n": "\\\\u003a", "m": "\\u003a\\u003A"'),
                     id="colon-escapes-and-lookalikes"),
        pytest.param(_with_extra("cancellation", b'"x": [' + b",".join([b'{"a": 1, "b": 2}'] * 5000) + b"]"),
                     id="5000-objects-in-an-unknown-field"),
    ],
)
def test_no_repeated_key_is_accepted(raw_bytes: bytes) -> None:
    decode_event(raw_bytes)


def test_a_repeated_key_in_a_large_event_is_refused_without_its_name() -> None:
    """Naming it takes the tokenizer; beyond 16 KB the count alone decides (and costs ~8 ms at most)."""
    raw_bytes = _with_extra("cancellation", b'"x": [' + b",".join([b'{"a": 1, "b": 2}'] * 2000) + b'], "x": 1')
    assert len(raw_bytes) > 16 * 1024
    error = refused(raw_bytes)
    assert (error.reason, error.detail) == (
        SCHEMA_VIOLATION, "an object has a key more than once (not named: the event is over 16384 bytes)")


# --- events stored under version 1 are not validated again ------------------------------------

STORED_UNDER_VERSION_1 = [
    pytest.param(changed("sale", "occurred_at", "2026-11-05 12:00:00Z"), id="space-for-T"),
    pytest.param(changed("sale", "occurred_at", "2026-11-05T12:00:00+0200"), id="offset-without-colon"),
    pytest.param(changed("sale", "occurred_at", "1960-01-01T00:00:00Z"), id="1960"),
    pytest.param(changed("sale", "occurred_at", "2500-01-01T00:00:00Z"), id="2500"),
    pytest.param(changed("sale", "occurred_at", "0001-01-01T00:00:00+01:00"), id="year-1"),
    *[pytest.param(one_line(price), id=f"money-{price!r}")
      for price in [" 5 ", "1_000", "+5", "-0", FULL_WIDTH_123, "1e3"]],
    pytest.param(one_line("@").replace(b'"@"', b"-0"), id="money-minus-zero-number"),
    pytest.param(one_line("9999999", 10_000), id="sale-total-10^11"),
    pytest.param(_with_extra("sale", b'"event_id": "ev-1"'), id="repeated-key"),
]


@pytest.mark.parametrize("raw_bytes", STORED_UNDER_VERSION_1)
def test_the_store_decodes_what_version_1_stored(raw_bytes: bytes) -> None:
    """Version 1 took these; version 2 refuses them, but the ledger still reads them back."""
    assert refused(raw_bytes).reason == SCHEMA_VIOLATION
    assert isinstance(store._decoder, StoredDecoder)  # what `load_customer_events` decodes with
    assert store._decoder.decode(raw_bytes) == msgspec.json.decode(raw_bytes, type=Event)


def test_the_store_truncates_as_the_decoder_does() -> None:
    """A cached event and the same event read back must have the same time (SPEC section 5)."""
    for value in ["2026-11-30T23:59:59.9999999Z", "2026-11-30 23:59:59.99999999+0100"]:
        raw_bytes = changed("lead_handoff", "occurred_at", value).replace(
            b'"2026-11-06T09:30:00+01:00"', b'"2026-11-06T09:30:00.12345678+01:00"')
        stored = StoredDecoder().decode(raw_bytes)
        assert isinstance(stored, LeadHandoff)
        assert stored.occurred_at.microsecond == 999_999 and stored.appointment_at is not None
        assert stored.appointment_at.microsecond == 123_456
        if "T" in value:
            assert decode_event(raw_bytes) == stored


def test_processing_error_is_a_reason() -> None:
    assert PROCESSING_ERROR == "processing_error" and PROCESSING_ERROR in REASONS
