"""Hostile input: whatever the bytes, `decode_event` returns an Event or raises InvalidEvent.

Never another exception, never a reason the decoder does not decide, never a detail longer
than MAX_DETAIL (SPEC section 3: no invalid input ever stops the pipeline).
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
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
    StoredDecoder,
    _repeated_key,
    decode_event,
    routing_fields,
    same_content,
)
from schemas.events import EVENT_TYPES, Event, LeadHandoff, Sale
from tests.unit.test_decode import VALID, changed

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


# --- SPEC section 10, against slow obvious references ---------------------------------------


def reference_repeated(raw: bytes) -> bool:
    """Whether some object of `raw` repeats a key, by the obvious parser (keys unescaped)."""
    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        names = [name for name, _ in items]
        found = found or len(set(names)) != len(names)
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return found


SPACE = st.sampled_from(["", "", "", " ", "\n", "\t ", "\r\n"])


@st.composite
def json_text(draw: st.DrawFn, depth: int = 0) -> str:
    """JSON text that may repeat keys, spell them with escapes and put whitespace anywhere."""
    kind = draw(st.sampled_from(["object", "object", "array", "leaf", "string"] if depth < 4 else ["leaf", "string"]))
    if kind == "leaf":
        return json.dumps(draw(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)))
    if kind == "string":  # any character may be escaped; `\\u003a` as text must not count as a colon
        text = draw(st.sampled_from(["", ":", "\\u003a", "a:b"]) | st.text(":\"\\{}[]abu03A", max_size=8))
        return '"' + "".join(f"\\u{ord(c):04x}" if draw(st.booleans()) else json.dumps(c)[1:-1] for c in text) + '"'
    if kind == "array":
        items = draw(st.lists(json_text(depth + 1), max_size=3))
        return "[" + ",".join(draw(SPACE) + item + draw(SPACE) for item in items) + "]"
    members = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["a", "b", "é", "a:", ":", "\"", "\\", "{", "occurred_at"]))
        spelled = "".join(f"\\u{ord(c):04x}" if draw(st.booleans()) else json.dumps(c, ensure_ascii=False)[1:-1]
                          for c in name)
        members.append(f'"{spelled}"{draw(SPACE)}:{draw(SPACE)}{draw(json_text(depth + 1))}')
    return "{" + ",".join(draw(SPACE) + member + draw(SPACE) for member in members) + "}"


@NESTED
@given(json_text())
@example('{"a":1,"\\u0061":2}')
@example('{"x":{"a":1},"a":{"a":2}}')
@example('{"a" : 1, "a"\n:2}')
@example('{"a":"\\\\u003a","b":1}')
@example('{"a":"\\\\u003a","a":1}')
@example('{"a":"\\u003a\\u003A:","b":{"a":1,"b":"\\\\u003A"}}')
def test_repeated_key_scan_agrees_with_the_obvious_parser(text: str) -> None:
    raw = text.encode()
    assert (_repeated_key(raw) is not None) == reference_repeated(raw)


@st.composite
def events_with_extras(draw: st.DrawFn) -> bytes:
    """A valid event with members spliced in: unknown fields, known ones again, escaped names."""
    kind = draw(st.sampled_from(sorted(VALID)))
    body = json.dumps(VALID[kind], ensure_ascii=False, indent=draw(st.sampled_from([None, 1])))[:-1]
    extras = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["x", "y", *VALID[kind]]))
        if name in VALID[kind] and draw(st.booleans()):
            value = json.dumps(VALID[kind][name], ensure_ascii=False)  # the known field again, same value
        else:
            value = draw(json_text(2))
        spelled = "".join(f"\\u{ord(c):04x}" if draw(st.booleans()) else c for c in name)
        extras.append(f'"{spelled}"{draw(SPACE)}:{draw(SPACE)}{value}')
    return (body + "".join(f",{draw(SPACE)}{extra}" for extra in extras) + "}").encode()


@NESTED
@given(events_with_extras())
def test_events_with_repeated_keys_are_refused_and_others_unchanged(raw: bytes) -> None:
    result = outcome(raw)
    if reference_repeated(raw):  # refused: for the repeat, or for a value the typed pass read first
        assert isinstance(result, InvalidEvent), result
    elif isinstance(result, InvalidEvent):  # an unknown field is ignored, a known one must still be valid
        assert "more than once" not in result.detail
    else:
        without_extras = {k: v for k, v in json.loads(raw).items() if k in VALID[type_of(raw)]}
        assert result == decode_event(encode(without_extras))


def type_of(raw: bytes) -> str:
    kind: str = json.loads(raw)["event_type"]
    return kind


_REFERENCE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def reference_time(text: str) -> datetime | None:
    """SPEC section 10, spelled out the slow way: the time, or None where it is refused."""
    found = _REFERENCE_TIME.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = found.groups()
    if int(off_h or 0) > 23 or int(off_m or 0) > 59:
        return None
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((fraction or "0")[:6].ljust(6, "0")))
    except ValueError:  # no such date, hour 24, minute or second 60
        return None
    offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0)) * (-1 if sign == "-" else 1)
    try:
        instant = local - offset  # naive UTC
    except OverflowError:  # beyond year 9999 or before year 1: far outside the bounds
        return None
    if not (datetime(1970, 1, 1) <= instant <= datetime(2199, 12, 31, 23, 59, 59, 999_999)):
        return None
    return instant.replace(tzinfo=UTC)


@st.composite
def time_texts(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from([1, 1969, 1970, 1971, 2026, 2198, 2199, 2200, 2201, 9999]))
    month = draw(st.sampled_from([1, 1, 2, 6, 11, 12, 12, 0, 13]))
    date = f"{year:04d}-{month:02d}-{draw(st.sampled_from([1, 1, 15, 28, 29, 30, 31, 31, 0, 32])):02d}"
    hour, minute = draw(st.sampled_from([0, 0, 12, 23, 23, 24])), draw(st.sampled_from([0, 30, 59, 59, 60]))
    clock = f"{hour:02d}:{minute:02d}:{draw(st.sampled_from([0, 30, 59, 59, 60, 61])):02d}"
    fraction = draw(st.sampled_from(["", "", ".", ".5", ".999999", ".9999999", ".0000001", ".123456789012"]))
    offset = draw(st.sampled_from(["Z", "Z", "z", "+00:00", "-00:00", "+01:00", "-01:00", "+23:59", "-23:59",
                                   "+14:00", "-12:00", "+24:00", "+00:60", "+0100", "+01", "", "Z "]))
    return date + draw(st.sampled_from(["T", "T", "T", "t", " ", "_"])) + clock + fraction + offset


@FAST
@given(time_texts(), st.booleans())
@example("2199-12-31T23:59:59.9999999Z", False)
@example("1970-01-01T00:59:59.9999999+01:00", False)
@example("2026-11-30T23:59:59.9999999-00:00", True)
def test_times_agree_with_the_reference(text: str, escaped: bool) -> None:
    spelled = "".join(f"\\u{ord(c):04x}" for c in text) if escaped else text  # the same string
    raw = changed("lead_handoff", "appointment_at", "@").replace(b'"@"', f'"{spelled}"'.encode())
    raw = raw.replace(b'"2026-11-05T12:00:00Z"', f'"{spelled}"'.encode())  # occurred_at too
    expected = reference_time(text)
    result = outcome(raw)
    if expected is None:
        assert isinstance(result, InvalidEvent) and result.reason == SCHEMA_VIOLATION, result
    else:
        assert isinstance(result, LeadHandoff), result
        assert result.occurred_at == result.appointment_at == expected
        assert StoredDecoder().decode(raw) == result  # the store reads it back the same


def reference_money(spelled: bytes) -> Decimal | None:
    """SPEC sections 3 and 10 for a JSON price, spelled out the slow way."""
    value = json.loads(spelled, parse_float=Decimal, parse_int=Decimal)
    if isinstance(value, str):
        if re.fullmatch(r"[0-9]+(\.[0-9]{1,4})?", value, flags=re.ASCII) is None:
            return None
        value = Decimal(value)
    if not isinstance(value, Decimal) or value.is_signed() or not value < 10_000_000:
        return None
    return value if value == value.quantize(Decimal("0.0001"), context=Context(prec=100)) else None


money_spellings = st.one_of(
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,8})(\.[0-9]{0,6})?([eE][+-]?[0-9]{1,2})?\Z").filter(
        lambda s: not s.endswith((".", "e", "E", "+", "-")) and ".e" not in s.lower()).map(str.encode),
    st.from_regex("\\A[ +\\-]?[0-9_\uff10-\uff19]{0,9}(\\.[0-9]{0,6})?([eE][0-9])?[ \n]?\\Z").map(
        lambda s: json.dumps(s, ensure_ascii=False).encode()),
)


@FAST
@given(money_spellings)
@example(b"-0")
@example(b"1.50000")
@example(b"1e2")
@example(b'"1_000"')
@example(b'"\\uff11"')
def test_money_agrees_with_the_reference(spelled: bytes) -> None:
    raw = changed("sale", "lines", [VALID["sale"]["lines"][0] | {"unit_price": "@"}]).replace(b'"@"', spelled)
    try:
        expected = reference_money(spelled)
    except ValueError:
        return  # not JSON (`01`): the decoder says invalid_json, covered elsewhere
    result = outcome(raw)
    if expected is None:
        assert isinstance(result, InvalidEvent), (spelled, result)
    else:
        assert isinstance(result, Sale), (spelled, result)
        assert result.lines[0].unit_price == expected
        exponent = result.lines[0].unit_price.as_tuple().exponent
        assert isinstance(exponent, int) and -4 <= exponent <= 0  # kept short (normal_money)


@FAST
@given(mutated_events() | events_with_extras())
def test_the_store_reads_back_whatever_the_decoder_accepted(raw: bytes) -> None:
    result = outcome(raw)
    if not isinstance(result, InvalidEvent):
        assert StoredDecoder().decode(raw) == result
