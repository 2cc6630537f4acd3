"""Reading JSON-lines files and turning each line into a Kafka message (SPEC section 8)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.decode import InvalidEvent, decode_event, routing_fields
from stream.errors import CrmbonusError
from stream.kafka import Outgoing
from stream.settings import Topics


@dataclass(frozen=True)
class Line:
    path: Path
    number: int
    raw: bytes


#: Kafka's default limit for one message is 1 MB (broker and producer): a longer line cannot travel.
MAX_LINE_BYTES = 1_000_000


def read_lines(paths: Iterable[str | Path]) -> list[Line]:
    """Every non-blank line of the files, in order, as bytes exactly as written (without newline).

    A line too long to be a Kafka message is refused before anything is published.
    """
    lines: list[Line] = []
    for path in map(Path, paths):
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CrmbonusError(f"cannot read {path}: {error.strerror or error}") from error
        for number, raw in enumerate(data.split(b"\n"), start=1):
            raw = raw.removesuffix(b"\r")
            if raw.strip():
                lines.append(Line(path, number, raw))
    too_long = [line for line in lines if len(line.raw) > MAX_LINE_BYTES]
    if too_long:
        named = ", ".join(f"{line.path}:{line.number} ({len(line.raw)} bytes)" for line in too_long[:5])
        raise CrmbonusError(f"{len(too_long)} line(s) longer than a Kafka message may be "
                            f"({MAX_LINE_BYTES} bytes): {named}; nothing was published")
    return lines


def to_outgoing(raw: bytes, topics: Topics) -> Outgoing:
    """Topic by event_type (anything else to sales), keyed by customer_id where present."""
    event_type, customer_id = routing_fields(raw)
    key = customer_id.encode() if customer_id is not None else None
    return Outgoing(topics.for_event_type(event_type), key, raw)


def refusals(lines: Iterable[Line]) -> Iterator[str]:
    """`publish --check`: one message per invalid line, naming file, line and reason."""
    for line in lines:
        try:
            decode_event(line.raw)
        except InvalidEvent as error:
            yield f"{line.path}:{line.number}: {error.reason}: {error.detail}"
