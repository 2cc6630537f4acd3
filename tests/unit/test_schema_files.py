"""The committed JSON Schema files: fresh, and agreeing with the decoder on real and broken events."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from schemas import jsonschema as generator
from schemas.decode import InvalidEvent, decode_event
from schemas.events import EVENT_TYPES
from tests.examples import EXAMPLES
from tests.unit.test_decode import VALID

EXAMPLE_FILES = [EXAMPLES / "month.jsonl", EXAMPLES / "late.jsonl"]


def test_committed_files_equal_freshly_generated_ones() -> None:
    assert generator.stale() == []
    expected = {f"{name}.schema.json" for name in EVENT_TYPES} | {"event.schema.json"}
    assert {path.name for path in generator.SCHEMA_DIR.glob("*.schema.json")} == expected


def test_check_names_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generator.main(["--dir", str(tmp_path)]) == 0
    assert generator.main(["--dir", str(tmp_path), "--check"]) == 0
    (tmp_path / "refund.schema.json").write_text("{}\n")
    (tmp_path / "old.schema.json").write_text("{}\n")
    capsys.readouterr()
    assert generator.main(["--dir", str(tmp_path), "--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / name} is stale: run `python -m schemas.jsonschema`"
        for name in ["refund.schema.json", "old.schema.json"]
    ]


def test_money_is_a_decimal_string_or_a_number() -> None:
    sale = generator.schemas()["sale.schema.json"]
    price = sale["$defs"]["SaleLine"]["properties"]["unit_price"]
    assert "type" not in price and "format" not in price
    assert [branch["type"] for branch in price["anyOf"]] == ["string", "number"]
    assert "0 <= x < 10,000,000, at most 4 decimal places" in price["description"]


def test_combined_schema_is_a_oneof_discriminated_on_event_type() -> None:
    combined = generator.schemas()["event.schema.json"]
    assert combined["discriminator"]["propertyName"] == "event_type"
    assert sorted(combined["discriminator"]["mapping"]) == sorted(EVENT_TYPES)
    assert len(combined["oneOf"]) == len(EVENT_TYPES)


# --- validated with the `jsonschema` library, where installed ----------------------------------


def _validator(name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((generator.SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _example_lines() -> list[Any]:
    return [
        pytest.param(line, id=f"{path.name}:{number}")
        for path in EXAMPLE_FILES
        if path.exists()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip()
    ]


@pytest.mark.parametrize("line", _example_lines())
def test_example_line_validates_and_decodes(line: str) -> None:
    _validator("event.schema.json").validate(json.loads(line))
    decode_event(line.encode())


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_event_validates_against_its_file_and_the_combined_one(kind: str) -> None:
    _validator(f"{kind}.schema.json").validate(VALID[kind])
    _validator("event.schema.json").validate(VALID[kind])


def _broken(kind: str, change: dict[str, Any], line_change: dict[str, Any] | None = None) -> dict[str, Any]:
    event = copy.deepcopy(VALID[kind])
    event.update(change)
    if line_change is not None:
        event["lines"][0].update(line_change)
    return event


BROKEN = [
    pytest.param(_broken("sale", {"occurred_at": "2026-11-05T12:00:00"}), id="naive-timestamp"),
    pytest.param(_broken("sale", {"occurred_at": "2026-11-05"}), id="date-only"),
    # SPEC section 10
    pytest.param(_broken("sale", {"occurred_at": "2026-11-05 12:00:00Z"}), id="space-for-T"),
    pytest.param(_broken("sale", {"occurred_at": "2026-11-05T12:00:00+0200"}), id="offset-without-colon"),
    pytest.param(_broken("sale", {"occurred_at": "2026-11-05T12:00:00+24:00"}), id="offset-24h"),
    pytest.param(_broken("sale", {"occurred_at": "2026-11-05T12:00:60Z"}), id="second-60"),
    pytest.param(_broken("sale", {"occurred_at": "1960-01-01T00:00:00Z"}), id="before-1970"),
    pytest.param(_broken("sale", {"occurred_at": "2201-01-01T00:00:00Z"}), id="after-2199"),
    pytest.param(_broken("lead_handoff", {"appointment_at": "0001-01-01T00:00:00+01:00"}), id="appointment-year-1"),
    pytest.param(_broken("sale", {}, {"unit_price": " 5 "}), id="money-spaces"),
    pytest.param(_broken("sale", {}, {"unit_price": "1_000"}), id="money-underscore"),
    pytest.param(_broken("sale", {}, {"unit_price": "+5"}), id="money-plus"),
    pytest.param(_broken("sale", {}, {"unit_price": "-0"}), id="money-minus-zero-string"),
    pytest.param(_broken("sale", {}, {"unit_price": "1e3"}), id="money-exponent-string"),
    pytest.param(_broken("sale", {}, {"unit_price": "\uff11\uff12\uff13".encode().decode("unicode_escape")}),
                 id="money-full-width-digits"),
    pytest.param(_broken("sale", {"event_id": ""}), id="empty-id"),
    pytest.param(_broken("sale", {"event_id": "x" * 129}), id="129-char-id"),
    pytest.param(_broken("sale", {"seller_id": "fr\x851"}), id="id-with-NEL"),
    pytest.param(_broken("sale", {"seller_id": "fr-1\n"}), id="id-with-trailing-newline"),
    pytest.param(_broken("sale", {"currency": "EURO"}), id="currency"),
    pytest.param(_broken("sale", {"lines": []}), id="no-lines"),
    pytest.param(_broken("sale", {}, {"unit_price": "-1"}), id="money-negative-string"),
    pytest.param(_broken("sale", {}, {"unit_price": 10_000_000}), id="money-10M-number"),
    pytest.param(_broken("sale", {}, {"unit_price": "10000000"}), id="money-10M-string"),
    pytest.param(_broken("sale", {}, {"unit_price": "1.00001"}), id="money-5-places-string"),
    pytest.param(_broken("sale", {}, {"unit_price": "NaN"}), id="money-NaN-string"),
    pytest.param(_broken("sale", {}, {"unit_price": True}), id="money-bool"),
    pytest.param(_broken("sale", {}, {"quantity": 0}), id="quantity-0"),
    pytest.param(_broken("sale", {}, {"quantity": 10_001}), id="quantity-10001"),
    pytest.param(_broken("sale", {}, {"sku": "x" * 129}), id="sku-129"),
    pytest.param(_broken("callback", {"offered_categories": []}), id="offer-without-categories"),
    pytest.param({k: v for k, v in VALID["callback"].items() if k != "offered_categories"}, id="offer-no-field"),
    pytest.param(_broken("lead_handoff", {"status": "won"}), id="status"),
    pytest.param(_broken("lead_handoff", {"appointment_at": "2026-11-06T09:30:00"}), id="naive-appointment"),
    pytest.param(_broken("refund", {"event_type": "refund_v2"}), id="unknown-event-type"),
    pytest.param({k: v for k, v in VALID["refund"].items() if k != "sale_id"}, id="missing-field"),
    pytest.param([VALID["refund"]], id="not-an-object"),
    # SPEC section 13, topic crm.quality
    pytest.param(_broken("feedback", {"rating": 0}), id="rating-0"),
    pytest.param(_broken("feedback", {"rating": 6}), id="rating-6"),
    pytest.param(_broken("feedback", {"rating": 4.5}), id="rating-fraction"),
    pytest.param(_broken("feedback", {"rating": True}), id="rating-true"),
    pytest.param(_broken("feedback", {"rating": "5"}), id="rating-string"),
    pytest.param(_broken("feedback", {"person_role": "manager"}), id="feedback-role"),
    pytest.param(_broken("feedback", {"sale_id": ""}), id="feedback-empty-sale-id"),
    pytest.param({k: v for k, v in VALID["feedback"].items() if k != "rating"}, id="feedback-no-rating"),
    pytest.param(_broken("feedback", {"occurred_at": "2026-11-05T12:00:00"}), id="feedback-naive-time"),
    pytest.param(_broken("quality_review", {"passed": 1}), id="passed-1"),
    pytest.param(_broken("quality_review", {"passed": "true"}), id="passed-string"),
    pytest.param(_broken("quality_review", {"passed": None}), id="passed-null"),
    pytest.param(_broken("quality_review", {"score": -1}), id="score-negative"),
    pytest.param(_broken("quality_review", {"score": 101}), id="score-101"),
    pytest.param(_broken("quality_review", {"score": False}), id="score-false"),
    pytest.param(_broken("quality_review", {"person_id": "tm\x001"}), id="review-person-id-NUL"),
    pytest.param({k: v for k, v in VALID["quality_review"].items() if k != "passed"}, id="review-no-passed"),
]


@pytest.mark.parametrize("event", BROKEN)
def test_broken_event_rejected_by_schema_and_decoder(event: Any) -> None:
    assert not _validator("event.schema.json").is_valid(event)
    with pytest.raises(InvalidEvent):
        decode_event(json.dumps(event).encode())


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(_broken("sale", {"occurred_at": "1969-12-31T23:59:59Z"}), id="before-the-instant-bound"),
        pytest.param(_broken("sale", {"occurred_at": "2200-01-01T00:00:00Z"}), id="after-the-instant-bound"),
        pytest.param(_broken("sale", {}, {"unit_price": 9_999_999, "quantity": 2}), id="sale-total-10M"),
        # JSON Schema's `integer` is any number of zero fraction; msgspec's `int` is one spelled so
        pytest.param(_broken("feedback", {"rating": 5.0}), id="rating-5.0"),
        pytest.param(_broken("quality_review", {"score": 50.0}), id="score-50.0"),
        pytest.param(_broken("sale", {}, {"quantity": 1.0}), id="quantity-1.0"),
    ],
)
def test_what_only_a_description_can_say_is_refused_by_the_decoder(event: Any) -> None:
    """SPEC section 10 rules a JSON Schema cannot state (its descriptions say them)."""
    _validator("event.schema.json").validate(event)
    with pytest.raises(InvalidEvent):
        decode_event(json.dumps(event).encode())


def test_the_descriptions_say_what_the_patterns_cannot() -> None:
    sale = generator.schemas()["sale.schema.json"]
    assert "may repeat a key" in sale["description"]
    assert "1970-01-01T00:00:00Z .. 2199-12-31T23:59:59.999999Z" in sale["$defs"]["Sale"]["properties"][
        "occurred_at"]["description"]
    assert "below 10,000,000" in sale["$defs"]["Sale"]["properties"]["lines"]["description"]
    assert sale["$defs"]["SaleLine"]["properties"]["quantity"]["description"] == (
        "an integer 1..10,000, spelled as an integer (5, not 5.0 or 5e0)")


def test_the_quality_events_files_name_their_section_and_topic() -> None:
    files = generator.schemas()
    for name in ("feedback", "quality_review"):
        assert files[f"{name}.schema.json"]["description"].startswith(
            f"A `{name}` event (SPEC section 13), published to the topic crm.quality (its default name).")
    feedback = files["feedback.schema.json"]["$defs"]["Feedback"]
    assert feedback["properties"]["rating"] == {
        "type": "integer", "minimum": 1, "maximum": 5, "description": generator.INTEGER_SPELLING}
    assert feedback["required"] == ["event_type", "event_id", "occurred_at", "customer_id", "person_id",
                                    "person_role", "rating"]
    review = files["quality_review.schema.json"]["$defs"]["QualityReview"]
    assert review["properties"]["passed"] == {"type": "boolean"}
    assert review["properties"]["score"]["anyOf"] == [
        {"type": "integer", "minimum": 0, "maximum": 100, "description": generator.INTEGER_SPELLING},
        {"type": "null"}]
    assert "score" not in review["required"]
