"""Turn the raw bytes of a Kafka message into an event, or into a dead-letter reason.

The fast path is a single typed msgspec decode. Only when it fails do we parse
again, untyped, to tell the publisher *why* (SPEC section 3, "Invalid input"):

- `invalid_json`: not UTF-8, not JSON, or beyond the parser's limits (nesting deeper
  than about a thousand levels, an integer of thousands of digits);
- `unknown_event_type`: a JSON object whose `event_type` is a string SPEC section 3 does
  not know;
- `schema_violation`: anything else, with msgspec's message and the field's path.

Then the rules of SPEC section 10 that the models do not check (they also decode the
events stored under version 1, which are not validated again; see `StoredDecoder`):

- timestamps and money strings are checked as spelled. A second msgspec pass over the same
  bytes (`_Spelling`, ~0.2 µs: it reads two strings and each line's price as raw JSON, and
  skips the rest in C) gives them as sent, because the typed pass accepts more spellings
  (`2026-11-05 12:00:00Z`, `+0200`, `" 5 "`, `"1_000"`, full-width digits) and rounds a
  fraction beyond microseconds, where SPEC section 10 truncates;
- times lie in `EARLIEST`..`LATEST`; a sale's total is below 10,000,000;
- no object repeats a key, at any depth, compared after unescaping. msgspec keeps the last
  of a repeated key silently, so the bytes are looked at, in three tiers. Every key is
  followed by one structural `:`; so when the message has no more colons, those inside its
  (plain) timestamps set aside, than the keys the decoded event must have had (`_KEYS`), no
  key can be repeated: ~0.3 µs, and what nearly every event takes. Anything else (an unknown
  field, an optional field sent with its default value, a colon in an id, an escaped time)
  takes a count in C (`_repeat`: the colons against those of msgspec's untyped decode,
  re-encoded, which keeps one of each key), and only a message that fails it the tokenizer
  (`_first_repeated_key`: a set of keys per open object, no recursion), to name the key.

The checks run only on what the typed pass accepted, so they read valid JSON.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Context, Decimal, getcontext
from typing import Any, NamedTuple, Union

import msgspec

from schemas.events import (
    EARLIEST,
    EVENT_TYPES,
    LATEST,
    MONEY_LIMIT,
    Event,
    LeadHandoff,
    Refund,
    RefundLine,
    Sale,
    SaleLine,
)

#: Dead-letter reason codes of SPEC sections 3 and 10; the decoder decides the first three,
#: the store the next two, the pipeline `processing_error` (a valid event whose processing
#: fails on its own data, SPEC section 10).
INVALID_JSON = "invalid_json"
SCHEMA_VIOLATION = "schema_violation"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
DUPLICATE_SALE_ID = "duplicate_sale_id"
PROCESSING_ERROR = "processing_error"
REASONS = (INVALID_JSON, SCHEMA_VIOLATION, UNKNOWN_EVENT_TYPE, CONFLICTING_DUPLICATE, DUPLICATE_SALE_ID,
           PROCESSING_ERROR)

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
    _check_section_10(raw, event)
    return event


class StoredDecoder:
    """Decodes an event from the bytes the store holds, for the ledger (`store.load_customer_events`).

    Lenient, on purpose: events stored under version 1 are not validated again (SPEC section
    10), and a recomputation must never refuse an event it stored. So this is the typed pass
    alone, whose checks are those of version 1 or laxer (money's places are now judged by the
    exact value), never the rules of section 10 that `decode_event` adds. It does one thing
    `decode_event` does too: a fraction beyond microseconds is truncated, not rounded, so an
    event decodes to the same time whether the ledger has it cached from the batch or reads
    it back. (A version-1 event spelled so had been rounded: its next recomputation puts it
    where SPEC section 10 says.) It raises only what the typed pass raises, which an event
    the store took never does.
    """

    def decode(self, raw: bytes) -> Event:
        event = _decoder.decode(raw)
        if raw.find(b"\\") >= 0 or _SUBMICROSECOND.search(raw) is not None:  # an escape or 7 digits: look closer
            _truncate_stored_times(raw, event)
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


# --- SPEC section 10 on the raw message ---------------------------------------------------------


class _LineSpelling(msgspec.Struct, gc=False):
    unit_price: msgspec.Raw  # the JSON text of the price: a string with its quotes, or a number


class _Spelling(msgspec.Struct, gc=False, tag_field="event_type"):
    """An event's timestamps and prices as spelled (JSON text); everything else is skipped unread."""

    occurred_at: msgspec.Raw


class _SaleSpelling(_Spelling, tag="sale"):
    lines: list[_LineSpelling]


class _LeadHandoffSpelling(_Spelling, tag="lead_handoff"):
    appointment_at: msgspec.Raw = msgspec.Raw()  # read only where the event has one


_SPELLINGS: dict[str, type[_Spelling]] = {"sale": _SaleSpelling, "lead_handoff": _LeadHandoffSpelling}
for _tag in EVENT_TYPES:  # the others carry only occurred_at; one spelling per event type
    if _tag not in _SPELLINGS:
        _SPELLINGS[_tag] = msgspec.defstruct(f"_{_tag}_spelling", [], bases=(_Spelling,), tag=_tag)  # type: ignore[assignment]
_spelling: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Union[tuple(_SPELLINGS.values())])  # noqa: UP007

#: The shape SPEC section 10 allows for a time (group 1: the fraction's digits). The typed pass
#: has already checked the values (month, day, hour 0..23, minute and second 0..59, offset
#: under a day), so shape and typed pass together are the rule.
_time_text = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]+))?"
                        r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})").fullmatch
#: The same without a fraction, as JSON text without escapes: what nearly every event sends.
_plain_time = re.compile(rb'"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"'
                         ).fullmatch
_TIME_RULE = ("RFC 3339 (YYYY-MM-DDTHH:MM:SS, an optional fraction, then Z or +HH:MM/-HH:MM with "
              "HH <= 23)")
_BOUNDS = "1970-01-01T00:00:00Z .. 2199-12-31T23:59:59.999999Z"
_datetime = msgspec.json.Decoder(datetime)
#: A fraction of 7 or more digits somewhere in the message: maybe a timestamp msgspec rounded.
_SUBMICROSECOND = re.compile(rb"\.[0-9]{7}")
_FRACTION = re.compile(r"\.([0-9]+)")

#: A money string as SPEC section 10 spells it, with its quotes; or a JSON number (checked
#: by value in the typed pass) that does not start with a minus: `-0` is negative too.
_MONEY_LITERAL = rb'"[0-9]+(?:\.[0-9]{1,4})?"|[0-9][0-9.eE+-]*'
_money_literal = re.compile(_MONEY_LITERAL).fullmatch
_money_literals = re.compile(rb"(?:%s)(?:\x00(?:%s))*" % (_MONEY_LITERAL, _MONEY_LITERAL)).fullmatch
_money_text = re.compile(r"[0-9]+(?:\.[0-9]{1,4})?").fullmatch
#: Sums of at most 1,000 lines of < 10^11 with 4 places have at most 18 digits.
_TOTAL = Context(prec=60)
_TOTAL_DIGITS = 18


def _check_section_10(raw: bytes, event: Event) -> None:
    """SPEC section 10 on an event the typed pass accepted; may truncate its times in place.

    Written for speed (it runs for every event): straight-line C calls in the common case;
    `_check_time` takes what is rare (escapes, a fraction, a time near the bounds).
    """
    try:
        spelling = _spelling.decode(raw)
    except msgspec.DecodeError as error:  # the typed pass read the same fields more strictly
        raise InvalidEvent(SCHEMA_VIOLATION, str(error)) from None
    kind = type(event)
    # `colons`: those inside the timestamps' JSON text, which are not structural; None if unknown.
    # A plain time has no fraction, so its text is 22 bytes with Z and 27 with an offset. A
    # local year 1971..2198 lies inside the bounds whatever the offset (less than a day): no
    # comparison of aware times (~1 µs with an offset other than UTC) for nearly every event.
    literal = spelling.occurred_at
    colons: int | None
    if _plain_time(literal) is not None and 1970 < event.occurred_at.year < 2199:
        colons = 2 if len(literal) == 22 else 3
    else:
        colons = _check_time(event, "occurred_at", literal)
    if kind is LeadHandoff and event.appointment_at is not None:  # type: ignore[union-attr]
        literal = spelling.appointment_at
        if _plain_time(literal) is not None and 1970 < event.appointment_at.year < 2199:  # type: ignore[union-attr]
            more: int | None = 2 if len(literal) == 22 else 3
        else:
            more = _check_time(event, "appointment_at", literal)
        colons = None if colons is None or more is None else colons + more
    # No repeated key: every key has one structural colon after it (module docstring).
    required, optional, default, per_line = _KEYS[kind]
    if optional is not None and getattr(event, optional) != default:
        required += 1
    if per_line:
        required += per_line * len(event.lines)  # type: ignore[union-attr]
    if (colons is None or raw.count(b":") - colons > required) and (repeat := _repeat(raw)) is not None:
        raise InvalidEvent(SCHEMA_VIOLATION, repeat)
    if kind is Sale:
        _check_sale(event, spelling)  # type: ignore[arg-type]


def _check_time(event: Event, name: str, literal: msgspec.Raw) -> int | None:
    """A timestamp that is not plain (`_check_section_10`): spelled with escapes, with a
    fraction (truncated here), or near the bounds. The colons of its JSON text, None if escaped."""
    text = msgspec.json.decode(literal)
    assert isinstance(text, str)  # the typed pass read a time from it
    found = _time_text(text)
    if found is None:
        raise InvalidEvent(SCHEMA_VIOLATION, f"{name} must be {_TIME_RULE}, got {text[:40]!r} - at `$.{name}`")
    value: datetime = getattr(event, name)
    fraction = found.group(1)
    if fraction is not None and len(fraction) > 6:
        value = _truncated(text, found.start(1), found.end(1))
        msgspec.structs.force_setattr(event, name, value)
    if not (EARLIEST <= value <= LATEST):
        raise InvalidEvent(SCHEMA_VIOLATION, f"{name} must lie in {_BOUNDS} (in UTC), got {text!r} - at `$.{name}`")
    spelled = bytes(literal)
    return None if b"\\" in spelled else spelled.count(b":")


def _truncated(text: str, start: int, end: int) -> datetime:
    """The time of `text` with the fraction digits at `start`..`end` cut to microseconds."""
    value: datetime = _datetime.decode(msgspec.json.encode(text[:start + 6] + text[end:]))
    return value


def _truncate_stored_times(raw: bytes, event: Event) -> None:
    """`StoredDecoder`: truncate, never round, a stored event's times; never raise."""
    try:
        spelling = _spelling.decode(raw)
        literals = {"occurred_at": spelling.occurred_at}
        if isinstance(event, LeadHandoff) and event.appointment_at is not None:
            literals["appointment_at"] = spelling.appointment_at
        for name, literal in literals.items():
            text = msgspec.json.decode(literal)
            found = _FRACTION.search(text)
            if found is not None and len(found.group(1)) > 6:
                msgspec.structs.force_setattr(event, name, _truncated(text, found.start(1), found.end(1)))
    except (msgspec.DecodeError, ValueError, TypeError):  # keep the typed pass's time, as version 1 did
        return


def _check_sale(sale: Sale, spelling: _SaleSpelling) -> None:
    """Money as spelled (SPEC section 10), then the sale's total."""
    # One regex call for all the prices, joined by a byte no JSON text of one contains.
    if _money_literals(b"\x00".join([line.unit_price for line in spelling.lines])) is None:
        for index, line in enumerate(spelling.lines):
            token = line.unit_price
            if _money_literal(token) is None and not _escaped_money(token):
                text = bytes(token)
                shown = text if len(text) <= 40 else text[:40] + b"..."
                problem = "must not be negative" if text.startswith(b"-") else (
                    "as a string must be ASCII digits with at most 4 decimal places and nothing around them")
                shown_text = shown.decode(errors="replace")
                raise InvalidEvent(SCHEMA_VIOLATION, f"unit_price {problem}, got {shown_text} - at `$.lines[{index}]`")
    # Exact: the prices have at most 4 places (`normal_money`), so no sum here has more than
    # 18 digits, which the thread's context keeps whatever its rounding (28 by default).
    total: Decimal | int = 0
    if getcontext().prec >= _TOTAL_DIGITS:
        for item in sale.lines:
            total = item.unit_price * item.quantity + total
    else:
        for item in sale.lines:
            total = _TOTAL.add(total, _TOTAL.multiply(item.quantity, item.unit_price))
    if total >= MONEY_LIMIT:
        raise InvalidEvent(SCHEMA_VIOLATION, f"the sale's total (quantity x unit_price over its lines) must be "
                                             f"below 10000000, got {total}")


def _escaped_money(token: msgspec.Raw) -> bool:
    """A money string spelled with JSON escapes (`"\\u0031"`): judged by the string it means."""
    text = bytes(token)
    if not (text.startswith(b'"') and b"\\" in text):
        return False
    value = msgspec.json.decode(text)
    return isinstance(value, str) and _money_text(value) is not None


class _KeyCount(NamedTuple):
    """How many keys the message of an event must have had (`_check_section_10`): its tag and
    required fields, the optional field if its value is not the default, the keys of its lines."""

    required: int
    optional: str | None  # the one field with a default
    default: Any  # its default ([] or None): a value other than this was sent (a `score` of 0 too)
    per_line: int  # keys of each line, all required


def _key_count(model: type[msgspec.Struct], line: type[msgspec.Struct] | None) -> _KeyCount:
    required, optional, defaults = 1, [], []
    for info in msgspec.structs.fields(model):
        if info.required:
            required += 1
        else:
            optional.append(info.name)
            defaults.append(info.default_factory() if info.default is msgspec.NODEFAULT else info.default)
    assert len(optional) <= 1, model  # one optional field per event: the count below is exact
    per_line = 0
    if line is not None:
        assert all(info.required for info in msgspec.structs.fields(line)), line
        per_line = len(msgspec.structs.fields(line))
    return _KeyCount(required, optional[0] if optional else None, defaults[0] if defaults else None, per_line)


_LINES: dict[type[msgspec.Struct], type[msgspec.Struct]] = {Sale: SaleLine, Refund: RefundLine}
_KEYS = {model: _key_count(model, _LINES.get(model)) for model in EVENT_TYPES.values()}


def _repeat(raw: bytes) -> str | None:
    """What `_check_section_10` says of a repeated key in `raw` (valid JSON), or None if none.

    First a count, in C: msgspec's untyped decode keeps one of each key, and its compact
    re-encoding writes every colon of a string as the byte `:`. So the colons of `raw` (those
    escaped as `\\u003a` counted too) outnumber those of the re-encoding exactly when a key
    was dropped, unless `raw` holds the text `\\\\u003a` (an escaped backslash before
    `u003a`), which is counted but is no colon. The tokenizer (`_first_repeated_key`) names the
    key in a message up to `_NAMED_BYTES`; a larger one, refused all the same, costs no more
    than the count (~8 ms for 256 KB of tiny objects in an unknown field, the worst case).
    """
    if not _may_repeat(raw):
        return None
    if len(raw) > _NAMED_BYTES and b"\\\\u003" not in raw:
        return f"an object has a key more than once (not named: the event is over {_NAMED_BYTES} bytes)"
    key = _first_repeated_key(raw)
    if key is None:
        return None
    return f"an object has the key {key if len(key) <= 64 else key[:64] + '...'!r} more than once"


def _repeated_key(raw: bytes) -> str | None:
    """The key some object of `raw` (valid JSON) has twice, compared after unescaping; else None."""
    return _first_repeated_key(raw) if _may_repeat(raw) else None


_NAMED_BYTES = 16 * 1024


def _may_repeat(raw: bytes) -> bool:
    colons = raw.count(b":") + raw.count(b"\\u003a") + raw.count(b"\\u003A")
    try:
        return colons > _compact.encode(_untyped.decode(raw)).count(b":")
    except (msgspec.DecodeError, msgspec.EncodeError, RecursionError):  # e.g. an integer of 5,000 digits
        return True


#: Untyped and lossless for this purpose: a float's text is kept as a string (no colon in it).
_untyped = msgspec.json.Decoder(float_hook=str)
_compact = msgspec.json.Encoder()
#: Between the interesting tokens, whatever is not a quote or a brace, and whole strings that are
#: not keys, skipped inside the regex (possessive: no backtracking); then a brace, or a key with
#: its quotes (group 1). In valid JSON nothing else holds a quote or a brace.
_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*+"'
_KEY_OR_BRACE = re.compile(rb"(?:[^\"{}]++|%s(?![ \t\n\r]*:))*+([{}]|%s)" % (_STRING, _STRING), re.DOTALL)


def _first_repeated_key(raw: bytes) -> str | None:
    """The tokenizer: a set of keys per open object, no recursion."""
    open_objects: list[set[str]] = []
    for token in _KEY_OR_BRACE.findall(raw):
        if token == b"{":
            open_objects.append(set())
        elif token == b"}":
            if open_objects:
                open_objects.pop()
        elif open_objects:
            key: str = msgspec.json.decode(token) if b"\\" in token else token[1:-1].decode()
            seen = open_objects[-1]
            if key in seen:
                return key
            seen.add(key)
    return None
