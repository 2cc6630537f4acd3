"""Turn the raw bytes of a Kafka message into an event, or into a dead-letter reason.

The fast path is a single typed msgspec decode. Only when it fails do we parse
again, untyped, to tell the publisher *why* (SPEC section 3, "Invalid input"):

- `invalid_json`: not UTF-8, not JSON, or beyond the parser's limits (nesting deeper
  than about a thousand levels, an integer of thousands of digits);
- `unknown_event_type`: a JSON object whose `event_type` is a string SPEC section 3 does
  not know;
- `schema_violation`: anything else, with msgspec's message and the field's path.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from schemas.events import EVENT_TYPES, Event

#: Dead-letter reason codes of SPEC section 3; the last two are decided by the store.
INVALID_JSON = "invalid_json"
SCHEMA_VIOLATION = "schema_violation"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
DUPLICATE_SALE_ID = "duplicate_sale_id"
REASONS = (INVALID_JSON, SCHEMA_VIOLATION, UNKNOWN_EVENT_TYPE, CONFLICTING_DUPLICATE, DUPLICATE_SALE_ID)

#: Longest detail text kept; a hostile payload must not make the error message huge.
MAX_DETAIL = 500
#: Largest event accepted: a sale of 1,000 lines fits; an unknown field cannot bloat the store.
MAX_EVENT_BYTES = 256 * 1024

_decoder = msgspec.json.Decoder(Event)


class _HugeNumber(str):
    """The text of a JSON number too large even for a Decimal (`1e99999999999999999999`)."""


def _number(text: str) -> Decimal | _HugeNumber:
    try:
        return Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation: exponent beyond Decimal's range
        return _HugeNumber(text)


#: Untyped and exact: a float is kept as a Decimal, so 1e400 is a number, not a parse error.
_exact = msgspec.json.Decoder(float_hook=_number)
_PARSE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class InvalidEvent(Exception):
    """Input that SPEC section 3 says is not processed; carries the dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail[:MAX_DETAIL]
        super().__init__(f"{reason}: {self.detail}")


def decode_event(raw: bytes) -> Event:
    """Decode and validate one message value; raise `InvalidEvent` with the reason code."""
    if not raw.isascii() and (error := _utf8_error(raw)):
        # msgspec checks UTF-8 only in what it reads: invalid bytes in an unknown field
        # would pass, and then break whatever parses the stored message again.
        raise InvalidEvent(INVALID_JSON, str(error))
    try:
        event = _decoder.decode(raw)
    except _PARSE_ERRORS as error:
        raise _classify(raw, error) from None
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(SCHEMA_VIOLATION, f"event is {len(raw)} bytes; at most {MAX_EVENT_BYTES} are accepted")
    return event


def _classify(raw: bytes, error: Exception) -> InvalidEvent:
    try:
        obj: Any = _exact.decode(raw)
    except _PARSE_ERRORS as parse_error:
        return InvalidEvent(INVALID_JSON, str(parse_error) or type(parse_error).__name__)
    if not isinstance(obj, dict):
        return InvalidEvent(SCHEMA_VIOLATION, f"expected a JSON object, got {_json_name(obj)}")
    event_type = obj.get("event_type")
    if isinstance(event_type, str) and event_type not in EVENT_TYPES:
        return InvalidEvent(UNKNOWN_EVENT_TYPE, f"unknown event_type {event_type[:64]!r}")
    return InvalidEvent(SCHEMA_VIOLATION, str(error))


def _json_name(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "string" if isinstance(value, str) and not isinstance(value, _HugeNumber) else "number"


def _utf8_error(raw: bytes) -> UnicodeDecodeError | None:
    """Why `raw` is not UTF-8, with the byte's position in the message; None if it is."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return error
    return None


def routing_fields(raw: bytes) -> tuple[str | None, str | None]:
    """(`event_type`, `customer_id`) of a line where present as strings, for topic and key."""
    try:
        obj: Any = _exact.decode(raw)
    except _PARSE_ERRORS:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    event_type, customer_id = obj.get("event_type"), obj.get("customer_id")
    return (
        event_type if isinstance(event_type, str) else None,
        customer_id if isinstance(customer_id, str) else None,
    )


def same_content(a: bytes, b: bytes) -> bool:
    """Whether two messages carry the same parsed JSON (SPEC section 3, duplicates).

    Key order and number spelling (`80` vs `80.0`) do not matter; `true` is not `1`.
    Never raises: where either cannot be parsed (not JSON, or an unknown field beyond the
    parser's limits, such as an integer of thousands of digits), the bytes are compared.
    """
    try:
        return _tokens(_exact.decode(a)) == _tokens(_exact.decode(b))
    except _PARSE_ERRORS:
        return a == b


def _tokens(value: Any) -> list[tuple[Any, ...]]:
    """A flat, canonical spelling of parsed JSON: keys sorted, numbers as Decimals.

    Flat and built without recursion: msgspec accepts nesting nearly as deep as Python's
    recursion limit, so walking (or comparing with `==`) a hostile unknown field
    recursively could overflow the stack. Containers carry their size, so the spelling
    is unambiguous.
    """
    out: list[tuple[Any, ...]] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Key):
            out.append(("key", item.name))
        elif isinstance(item, dict):
            out.append(("object", len(item)))
            for key in sorted(item, reverse=True):
                stack.append(item[key])
                stack.append(_Key(key))
        elif isinstance(item, list):
            out.append(("array", len(item)))
            stack.extend(reversed(item))
        elif isinstance(item, _HugeNumber):
            out.append(("huge number", str(item)))
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            out.append((type(item).__name__, item))
        else:
            out.append(("number", Decimal(item)))
    return out


class _Key:
    """An object key on the stack of `_tokens`, told apart from a string value."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name
