"""The JSON Schema files publishers validate against, generated from the msgspec models.

    python -m schemas.jsonschema           # (re)write schemas/json/*.schema.json
    python -m schemas.jsonschema --check   # exit 1 naming each stale file

One file per event type (`sale.schema.json`, ...) and `event.schema.json`, a `oneOf`
with a discriminator on `event_type`. The models in `schemas.events` say almost
everything; this module adds what msgspec cannot express from a type:

- money: msgspec describes a `Decimal` as a string; the `anyOf` (decimal string or
  number) carried by the `Money` annotation's `extra_json_schema` replaces that;
- callback: `offered_categories` required and non-empty when `outcome` is `offer_made`
  (`if`/`then`), the rule `Callback.__post_init__` enforces;
- integers (`quantity`, `rating`, `score`): a description that they are spelled as integers.

The schema is the publisher's contract. It accepts nothing the decoder refuses, except
what it can only state in a description: line ids unique within a sale, the sale's total
below 10,000,000, the four decimal places of money sent as a JSON number (`multipleOf` is
unreliable on floats) and that such a number is not `-0`, the exact time bounds (an instant:
the pattern only keeps the years in 1969..2200), a real calendar date and time where a
validator does not assert `format: date-time`, that an integer is spelled without a fraction or
an exponent (JSON Schema's `integer` takes `5.0`; msgspec, and so the decoder, refuses it), and
that no object repeats a key (a validator sees parsed JSON, where a repeated key is already gone).
The decoder in turn accepts a money string with leading zeros beyond 7 digits (`"00000001"`),
never other values (SPEC section 10).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import EVENT_TYPES, Event

SCHEMA_DIR = Path(__file__).resolve().parent / "json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
COMBINED = "event.schema.json"

_CALLBACK_OFFER_RULE = {
    "if": {"properties": {"outcome": {"const": "offer_made"}}, "required": ["outcome"]},
    "then": {"required": ["offered_categories"], "properties": {"offered_categories": {"minItems": 1}}},
}


#: Where SPEC defines each event type and the topic (default name) it is published to.
_DEFINED: dict[str, tuple[str, str]] = {
    "sale": ("3", "crm.sales"),
    "cancellation": ("3", "crm.sales"),
    "refund": ("3", "crm.sales"),
    "callback": ("3", "crm.callbacks"),
    "lead_handoff": ("3", "crm.lead-handoffs"),
    "feedback": ("13", "crm.quality"),
    "quality_review": ("13", "crm.quality"),
}


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema: one per event type, then the combined `event.schema.json`."""
    files = {
        f"{name}.schema.json": _document(
            f"crmbonus {name} event",
            f"A `{name}` event (SPEC section {_DEFINED[name][0]}), published to the topic {_DEFINED[name][1]} "
            "(its default name). Unknown extra fields are ignored.",
            msgspec.json.schema(model),
        )
        for name, model in EVENT_TYPES.items()
    }
    combined = msgspec.json.schema(Event)
    combined["oneOf"] = combined.pop("anyOf")
    files[COMBINED] = _document(
        "crmbonus event",
        "Any CRM event (SPEC sections 3 and 13), chosen by `event_type`. Unknown extra fields are ignored.",
        combined,
    )
    return files


def render(schema: dict[str, Any]) -> str:
    """The committed text of a schema: stable key order, two-space indent, final newline."""
    return json.dumps(schema, indent=2) + "\n"


#: SPEC section 10, said once at the top of every file: no validator can check it.
_NO_REPEATED_KEY = " No object, at any depth, may repeat a key (compared after unescaping)."


def _document(title: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.pop("$defs")
    for name, definition in defs.items():
        _money_as_string_or_number(definition)
        _integers_as_spelled(definition)
        if name == "Callback":
            definition.update(_CALLBACK_OFFER_RULE)
    return {"$schema": DIALECT, "title": title, "description": description + _NO_REPEATED_KEY, **schema,
            "$defs": defs}


def _money_as_string_or_number(node: Any) -> None:
    """Drop msgspec's `type: string, format: decimal` where `Money` supplied its own `anyOf`."""
    if isinstance(node, dict):
        if node.get("format") == "decimal" and "anyOf" in node:
            del node["type"], node["format"]
        for value in node.values():
            _money_as_string_or_number(value)
    elif isinstance(node, list):
        for value in node:
            _money_as_string_or_number(value)


#: What a validator cannot check of an integer: `5.0` is one to JSON Schema, not to the decoder.
INTEGER_SPELLING = "spelled as an integer (5, not 5.0 or 5e0)"


def _integers_as_spelled(node: Any) -> None:
    """Say, in its description, that each integer is spelled without a fraction or exponent."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            described = node.get("description")
            node["description"] = INTEGER_SPELLING if described is None else f"{described}, {INTEGER_SPELLING}"
        for value in node.values():
            _integers_as_spelled(value)
    elif isinstance(node, list):
        for value in node:
            _integers_as_spelled(value)


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of files in `directory` that differ from freshly generated ones, or are missing or extra."""
    wanted = {name: render(schema) for name, schema in schemas().items()}
    out = [
        name
        for name, text in wanted.items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    ]
    out += sorted(p.name for p in directory.glob("*.schema.json") if p.name not in wanted)
    return out


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into `directory`; remove `*.schema.json` files no longer generated."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {name: render(schema) for name, schema in schemas().items()}
    for path in directory.glob("*.schema.json"):
        if path.name not in wanted:
            path.unlink()
    written = []
    for name, text in wanted.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.jsonschema", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file is stale")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="where the files are (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.dir)
        for name in names:
            print(f"{args.dir / name} is stale: run `python -m schemas.jsonschema`", file=sys.stderr)
        return 1 if names else 0
    for path in write(args.dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
