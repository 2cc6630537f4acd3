"""Turn the raw bytes of a Kafka message into an event, or into a dead-letter reason.

The fast path is a single typed msgspec decode. Only when it fails do we parse
again, untyped, to tell the publisher *why* (SPEC section 3, "Invalid input").
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

_decoder = msgspec.json.Decoder(Event)
_untyped = msgspec.json.Decoder()


class InvalidEvent(Exception):
    """Input that SPEC section 3 says is not processed; carries the dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:MAX_DETAIL]


def decode_event(raw: bytes) -> Event:
    """Decode and validate one message value; raise `InvalidEvent` with the reason code."""
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        raise _classify(raw, error) from None


def _classify(raw: bytes, error: Exception) -> InvalidEvent:
    try:
        obj: Any = _untyped.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as parse_error:
        return InvalidEvent(INVALID_JSON, str(parse_error) or type(parse_error).__name__)
    if not isinstance(obj, dict):
        return InvalidEvent(SCHEMA_VIOLATION, f"expected a JSON object, got {type(obj).__name__}")
    event_type = obj.get("event_type")
    if event_type is None:
        return InvalidEvent(SCHEMA_VIOLATION, "Object missing required field `event_type`")
    if isinstance(event_type, str) and event_type not in EVENT_TYPES:
        return InvalidEvent(UNKNOWN_EVENT_TYPE, f"unknown event_type {event_type[:64]!r}")
    return InvalidEvent(SCHEMA_VIOLATION, str(error))


def routing_fields(raw: bytes) -> tuple[str | None, str | None]:
    """(`event_type`, `customer_id`) of a line where present as strings, for topic and key."""
    try:
        obj: Any = _untyped.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    event_type, customer_id = obj.get("event_type"), obj.get("customer_id")
    return (
        event_type if isinstance(event_type, str) else None,
        customer_id if isinstance(customer_id, str) else None,
    )


_exact = msgspec.json.Decoder(float_hook=Decimal)


def same_content(a: bytes, b: bytes) -> bool:
    """Whether two messages carry the same parsed JSON (SPEC section 3, duplicates).

    Key order and number spelling (`80` vs `80.0`) do not matter; `true` is not `1`.
    """
    return _canonical(_exact.decode(a)) == _canonical(_exact.decode(b))


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    return ("number", Decimal(value))
