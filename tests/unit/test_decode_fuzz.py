"""Hostile input: whatever the bytes, `decode_event` returns an Event or raises InvalidEvent.

Never another exception, never a reason the decoder does not decide, never a detail longer
than MAX_DETAIL (SPEC section 3: no invalid input ever stops the pipeline).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.decode import (
    INVALID_JSON,
    MAX_DETAIL,
    MAX_EVENT_BYTES,
    SCHEMA_VIOLATION,
    UNKNOWN_EVENT_TYPE,
    InvalidEvent,
    decode_event,
    routing_fields,
    same_content,
)
from schemas.events import EVENT_TYPES, Event
from tests.unit.test_decode import VALID

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: For strategies that build nested JSON, which hypothesis generates more slowly.
NESTED = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DECIDED = {INVALID_JSON, SCHEMA_VIOLATION, UNKNOWN_EVENT_TYPE}


def outcome(raw: bytes) -> Event | InvalidEvent:
    """Decode `raw`, asserting the contract; the event or the error."""
    try:
        event = decode_event(raw)
    except InvalidEvent as error:
        assert error.reason in DECIDED
        assert len(error.detail) <= MAX_DETAIL
        assert len(str(error)) <= len(error.reason) + 2 + MAX_DETAIL
        return error
    assert isinstance(event, tuple(EVENT_TYPES.values()))
    assert same_content(raw, raw)  # the store can always compare what was accepted
    return event


def refused_as(raw: bytes, reason: str) -> None:
    result = outcome(raw)
    assert isinstance(result, InvalidEvent), result
    assert result.reason == reason, result


json_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


# --- arbitrary input ---------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=512))
@example(b"")
@example(b"\x00")
@example(b"\xff\xfe{}")
@example(b'{"event_type": "sale", "lines": [')
def test_random_bytes(raw: bytes) -> None:
    outcome(raw)
    routing_fields(raw)


@NESTED
@given(json_values)
def test_random_json_values(value: Any) -> None:
    raw = encode(value)
    result = outcome(raw)
    if not isinstance(value, dict):
        assert isinstance(result, InvalidEvent) and result.reason == SCHEMA_VIOLATION
    assert same_content(raw, raw)


@NESTED
@given(st.dictionaries(st.sampled_from([*VALID["sale"], "lines", "x"]), json_values, max_size=10))
def test_random_objects_with_event_field_names(value: dict[str, Any]) -> None:
    outcome(encode(value))


# --- valid events, mutated ---------------------------------------------------------------------


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a field or array item in `value`."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def set_at(event: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        event = event[key]
    event[path[-1]] = value


def drop_at(event: Any, path: tuple[Any, ...]) -> None:
    for key in path[:-1]:
        event = event[key]
    del event[path[-1]]


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    event = copy.deepcopy(VALID[draw(st.sampled_from(sorted(VALID)))])
    path = draw(st.sampled_from(paths(event)))
    how = draw(st.sampled_from(["drop", "swap", "money", "time", "type", "id"]))
    if how == "drop":
        drop_at(event, path)
    elif how == "swap":
        set_at(event, path, draw(json_values))
    elif how == "money" and event["event_type"] == "sale":
        price = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "sNaN", "1e400", "-0", "1e-7", "1E+3"]))
        set_at(event, ("lines", 0, "unit_price"), price)
    elif how == "time":
        when = draw(st.sampled_from(["2026-11-05T12:00:00", "2026-11-05", "", "24:00", "2026-11-05T12:00:00+25:00"]))
        set_at(event, ("occurred_at",), when)
    elif how == "type":
        event["event_type"] = draw(st.text(max_size=12) | st.sampled_from(sorted(VALID)))
    elif how == "id":
        set_at(event, path, draw(st.text(max_size=130)))
    return encode(event)


@FAST
@given(mutated_events())
def test_mutated_valid_events(raw: bytes) -> None:
    outcome(raw)


@FAST
@given(mutated_events(), st.data())
def test_invalid_utf8_spliced_into_an_event(raw: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(raw)))
    bad = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]))
    refused_as(raw[:at] + bad + raw[at:], INVALID_JSON)


@FAST
@given(mutated_events(), st.data())
def test_truncated_events(raw: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(raw) - 1))
    refused_as(raw[:at], INVALID_JSON)


@NESTED
@given(st.sampled_from(sorted(VALID)), st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_unknown_fields_never_change_the_event(kind: str, extra: dict[str, Any]) -> None:
    event = copy.deepcopy(VALID[kind])
    known = set(event)
    event.update({key: value for key, value in extra.items() if key not in known})
    assert decode_event(encode(event)) == decode_event(encode(VALID[kind]))


HOSTILE_EXTRA = [
    b"1e99999999999999999999999999",
    b"9" * 5000,
    b'"\\ud800"',
    b'"a\xffb"',
    b"[" * 900 + b"]" * 900,
    b'{"a": 1, "a": 2}',
]


@FAST
@given(st.sampled_from(sorted(VALID)), st.sampled_from(HOSTILE_EXTRA), st.booleans())
def test_hostile_unknown_fields(kind: str, extra: bytes, in_key: bool) -> None:
    body = encode(VALID[kind])[:-1]
    field = b'"' + extra.strip(b'"') + b'": 1' if in_key and extra.startswith(b'"') else b'"x": ' + extra
    outcome(body + b", " + field + b"}")


# --- sizes: deep, long, many -------------------------------------------------------------------

DEEP = 100_000
MB = 1_000_000


def test_deeply_nested_arrays_objects_and_mixes() -> None:
    for raw in [
        b"[" * DEEP,
        b"[" * DEEP + b"]" * DEEP,
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        b'[{"a":' * (DEEP // 2),
        encode(VALID["sale"])[:-1] + b', "x": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    ]:
        refused_as(raw, INVALID_JSON)
        assert routing_fields(raw) == (None, None)


def test_huge_strings_are_refused_briefly() -> None:
    for path, reason in [
        (("event_id",), SCHEMA_VIOLATION),
        (("lines", 0, "sku"), SCHEMA_VIOLATION),
        (("lines", 0, "unit_price"), SCHEMA_VIOLATION),
        (("event_type",), UNKNOWN_EVENT_TYPE),
    ]:
        event = copy.deepcopy(VALID["sale"])
        set_at(event, path, "9" * MB)
        refused_as(encode(event), reason)


def test_huge_numbers_are_refused_briefly() -> None:
    sale = encode(VALID["sale"])
    for number, reason in [
        (b"9" * MB, INVALID_JSON),  # beyond the parser's integer limit (4300 digits)
        (b"1e" + b"9" * 30, SCHEMA_VIOLATION),
        (b"0." + b"0" * MB + b"1", SCHEMA_VIOLATION),
    ]:
        refused_as(sale.replace(b'"1000.00"', number), reason)


def test_an_unknown_field_is_ignored_but_bounds_the_event() -> None:
    """Unknown fields are ignored (SPEC §3), yet an event is stored whole: its size is bounded."""
    event = copy.deepcopy(VALID["cancellation"])
    event["notes"] = "x" * 1000
    assert outcome(encode(event)) == decode_event(encode(VALID["cancellation"]))
    event["notes"] = "x" * MB
    raw = encode(event)
    refused = outcome(raw)
    assert isinstance(refused, InvalidEvent)
    assert (refused.reason, refused.detail) == (
        SCHEMA_VIOLATION, f"event is {len(raw)} bytes; at most {MAX_EVENT_BYTES} are accepted")


def test_many_lines_and_categories_are_refused() -> None:
    sale = copy.deepcopy(VALID["sale"])
    sale["lines"] = [dict(sale["lines"][0], line_id=f"L{i}") for i in range(100_000)]
    refused_as(encode(sale), SCHEMA_VIOLATION)
    callback = copy.deepcopy(VALID["callback"])
    callback["offered_categories"] = ["c"] * 100_000
    refused_as(encode(callback), SCHEMA_VIOLATION)
