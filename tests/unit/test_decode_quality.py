"""The decoder on SPEC section 13's events of topic crm.quality, `feedback` and `quality_review`:
their own fields (exact reason and detail), then every section-10 rule the other events obey.

`rating` and `score` are integers as msgspec reads them: a JSON number with a fraction or an
exponent (`5.0`, `5e0`) is a float to it and refused, whatever its value, as `quantity` is; so is
`true` (a boolean is not an integer, and not `1`). `passed` is a JSON boolean only. An optional
field sent as `null` means it is absent (as `appointment_at: null` does).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import msgspec
import pytest

from schemas import decode
from schemas.decode import SCHEMA_VIOLATION, InvalidEvent, StoredDecoder, decode_event, same_content
from schemas.events import Event, Feedback, QualityReview
from tests.unit.test_decode import BOUND_RULE, SHAPE_RULE, VALID, changed, raw, refused, without


def test_feedback_decodes_with_and_without_its_sale() -> None:
    assert decode_event(raw(VALID["feedback"])) == Feedback(
        event_id="ev-1", occurred_at=datetime(2026, 11, 5, 12, tzinfo=UTC), customer_id="c1", person_id="fr-1",
        person_role="field_rep", rating=4, sale_id="S1")
    for absent in (without("feedback", "sale_id"), changed("feedback", "sale_id", None)):
        event = decode_event(absent)
        assert isinstance(event, Feedback) and event.sale_id is None


def test_quality_review_decodes_with_and_without_its_score() -> None:
    assert decode_event(raw(VALID["quality_review"])) == QualityReview(
        event_id="ev-1", occurred_at=datetime(2026, 11, 5, 12, tzinfo=UTC), customer_id="c1", person_id="tm-1",
        person_role="telemarketer", passed=True, score=87)
    for absent in (without("quality_review", "score"), changed("quality_review", "score", None)):
        event = decode_event(absent)
        assert isinstance(event, QualityReview) and event.score is None


@pytest.mark.parametrize("rating", [1, 2, 3, 4, 5])
def test_every_rating_from_1_to_5(rating: int) -> None:
    event = decode_event(changed("feedback", "rating", rating))
    assert isinstance(event, Feedback) and event.rating == rating


@pytest.mark.parametrize(("score", "passed"), [(0, False), (100, True), (0, True), (55, False)])
def test_scores_from_0_to_100_either_way(score: int, passed: bool) -> None:
    event = decode_event(changed("quality_review", "score", score).replace(b'"passed": true',
                                                                            b'"passed": ' + raw(passed)))
    assert isinstance(event, QualityReview) and (event.score, event.passed) == (score, passed)


def spelled(kind: str, field: str, text: bytes) -> bytes:
    """`VALID[kind]` with `field` set to the raw JSON `text`."""
    return changed(kind, field, "@@").replace(b'"@@"', text)


REFUSED = [
    # rating: an integer 1..5, spelled as one
    pytest.param(spelled("feedback", "rating", b"0"), "Expected `int` >= 1 - at `$.rating`", id="rating-0"),
    pytest.param(spelled("feedback", "rating", b"6"), "Expected `int` <= 5 - at `$.rating`", id="rating-6"),
    pytest.param(spelled("feedback", "rating", b"-1"), "Expected `int` >= 1 - at `$.rating`", id="rating-negative"),
    pytest.param(spelled("feedback", "rating", b"5.0"), "Expected `int`, got `float` - at `$.rating`",
                 id="rating-5.0"),
    pytest.param(spelled("feedback", "rating", b"5e0"), "Expected `int`, got `float` - at `$.rating`",
                 id="rating-exponent"),
    pytest.param(spelled("feedback", "rating", b"4.5"), "Expected `int`, got `float` - at `$.rating`",
                 id="rating-fraction"),
    pytest.param(spelled("feedback", "rating", b"true"), "Expected `int`, got `bool` - at `$.rating`",
                 id="rating-true"),
    pytest.param(spelled("feedback", "rating", b'"5"'), "Expected `int`, got `str` - at `$.rating`",
                 id="rating-string"),
    pytest.param(spelled("feedback", "rating", b"null"), "Expected `int`, got `null` - at `$.rating`",
                 id="rating-null"),
    pytest.param(spelled("feedback", "rating", b"1" + b"0" * 400), "Expected `int` <= 5 - at `$.rating`",
                 id="rating-400-digits"),
    # passed: a JSON boolean
    pytest.param(spelled("quality_review", "passed", b"1"), "Expected `bool`, got `int` - at `$.passed`",
                 id="passed-1"),
    pytest.param(spelled("quality_review", "passed", b'"true"'), "Expected `bool`, got `str` - at `$.passed`",
                 id="passed-string"),
    pytest.param(spelled("quality_review", "passed", b"null"), "Expected `bool`, got `null` - at `$.passed`",
                 id="passed-null"),
    # score: an optional integer 0..100
    pytest.param(spelled("quality_review", "score", b"-1"), "Expected `int` >= 0 - at `$.score`", id="score-negative"),
    pytest.param(spelled("quality_review", "score", b"101"), "Expected `int` <= 100 - at `$.score`", id="score-101"),
    pytest.param(spelled("quality_review", "score", b"50.0"), "Expected `int | null`, got `float` - at `$.score`",
                 id="score-50.0"),
    pytest.param(spelled("quality_review", "score", b"false"), "Expected `int | null`, got `bool` - at `$.score`",
                 id="score-false"),
    pytest.param(spelled("quality_review", "score", b'"87"'), "Expected `int | null`, got `str` - at `$.score`",
                 id="score-string"),
    # roles and ids
    pytest.param(changed("feedback", "person_role", "manager"), "Invalid enum value 'manager' - at `$.person_role`",
                 id="feedback-role"),
    pytest.param(changed("quality_review", "person_role", "Telemarketer"),
                 "Invalid enum value 'Telemarketer' - at `$.person_role`", id="review-role-case"),
    pytest.param(changed("feedback", "person_id", ""), "Expected `str` of length >= 1 - at `$.person_id`",
                 id="person-id-empty"),
    pytest.param(changed("quality_review", "person_id", "x" * 129),
                 "Expected `str` of length <= 128 - at `$.person_id`", id="person-id-129"),
    pytest.param(changed("feedback", "sale_id", ""), "Expected `str` of length >= 1 - at `$.sale_id`",
                 id="sale-id-empty"),
    pytest.param(changed("feedback", "sale_id", 7), "Expected `str | null`, got `int` - at `$.sale_id`",
                 id="sale-id-number"),
    pytest.param(changed("feedback", "sale_id", "S\n1"), "sale_id must not contain control characters (U+000A)",
                 id="sale-id-newline"),
]


@pytest.mark.parametrize(("raw_bytes", "detail"), REFUSED)
def test_refused_with_exact_detail(raw_bytes: bytes, detail: str) -> None:
    error = refused(raw_bytes)
    assert (error.reason, error.detail) == (SCHEMA_VIOLATION, detail)


# --- SPEC section 10, as for every other event ------------------------------------------------

KINDS = ["feedback", "quality_review"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("value", "detail"),
    [
        pytest.param("2026-11-05 12:00:00Z", f"occurred_at {SHAPE_RULE}, got '2026-11-05 12:00:00Z'", id="space"),
        pytest.param("2026-11-05T12:00:00+0200", f"occurred_at {SHAPE_RULE}, got '2026-11-05T12:00:00+0200'",
                     id="offset-without-colon"),
        pytest.param("1969-12-31T23:59:59Z", f"occurred_at {BOUND_RULE}, got '1969-12-31T23:59:59Z'",
                     id="before-1970"),
        pytest.param("2200-01-01T00:00:00Z", f"occurred_at {BOUND_RULE}, got '2200-01-01T00:00:00Z'",
                     id="after-2199"),
    ],
)
def test_times_refused_as_for_every_event(kind: str, value: str, detail: str) -> None:
    error = refused(changed(kind, "occurred_at", value))
    assert (error.reason, error.detail) == (SCHEMA_VIOLATION, f"{detail} - at `$.occurred_at`")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", ["2026-11-05T12:00:00", "2026-11-05T12:00:60Z", "2026-11-05T12:00:00+24:00"])
def test_naive_and_impossible_times_refused(kind: str, value: str) -> None:
    assert refused(changed(kind, "occurred_at", value)).reason == SCHEMA_VIOLATION


@pytest.mark.parametrize("kind", KINDS)
def test_a_fraction_is_truncated_never_rounded_and_the_store_agrees(kind: str) -> None:
    raw_bytes = changed(kind, "occurred_at", "2026-11-30T23:59:59.9999999z")
    event = decode_event(raw_bytes)
    assert event.occurred_at == datetime(2026, 11, 30, 23, 59, 59, 999_999, tzinfo=UTC)  # still November
    assert StoredDecoder().decode(raw_bytes) == event


@pytest.mark.parametrize("kind", KINDS)
def test_the_store_reads_back_what_the_decoder_took(kind: str) -> None:
    raw_bytes = raw(VALID[kind])
    assert StoredDecoder().decode(raw_bytes) == decode_event(raw_bytes) == msgspec.json.decode(raw_bytes, type=Event)


def _with_extra(raw_bytes: bytes, text: bytes) -> bytes:
    return raw_bytes[:-1] + b", " + text + b"}"


@pytest.mark.parametrize(
    ("raw_bytes", "key"),
    [
        pytest.param(_with_extra(raw(VALID["feedback"]), b'"rating": 5'), "rating", id="rating-twice"),
        pytest.param(_with_extra(without("feedback", "sale_id"), b'"sale_id": null, "sale_id": "S2"'), "sale_id",
                     id="optional-sale-id-twice"),
        pytest.param(_with_extra(raw(VALID["quality_review"]), b'"passed": false'), "passed", id="passed-twice"),
        pytest.param(_with_extra(changed("quality_review", "score", 0), b'"score": 0'), "score", id="score-0-twice"),
        pytest.param(_with_extra(raw(VALID["quality_review"]), b'"\\u0073core": 87'), "score", id="escaped-repeat"),
        pytest.param(_with_extra(raw(VALID["feedback"]), b'"x": [{"a": {"b": 1, "b": 1}}]'), "b", id="deep"),
    ],
)
def test_a_repeated_key_is_refused(raw_bytes: bytes, key: str) -> None:
    error = refused(raw_bytes)
    assert (error.reason, error.detail) == (SCHEMA_VIOLATION, f"an object has the key {key!r} more than once")


@pytest.mark.parametrize(
    "raw_bytes",
    [
        pytest.param(raw(VALID["feedback"]), id="feedback"),
        pytest.param(without("feedback", "sale_id"), id="feedback-without-sale"),
        pytest.param(raw(VALID["quality_review"]), id="review"),
        pytest.param(changed("quality_review", "score", 0), id="review-score-0"),
        pytest.param(changed("quality_review", "passed", False), id="review-failed"),
        pytest.param(without("quality_review", "score"), id="review-without-score"),
    ],
)
def test_no_repeated_key_is_checked_by_the_count_alone(raw_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path of `_check_section_10`: the colons match the keys the event must have had,
    a `score` of 0 (sent, though falsy) included; the slower checks are not needed."""
    def not_needed(raw_bytes: bytes) -> str | None:
        raise AssertionError("the repeated-key count should have sufficed")

    monkeypatch.setattr(decode, "_repeat", not_needed)
    decode_event(raw_bytes)


def test_explicit_nulls_take_the_slow_path_and_pass() -> None:
    for raw_bytes in (changed("feedback", "sale_id", None), changed("quality_review", "score", None)):
        decode_event(raw_bytes)


def test_a_rating_of_true_is_not_the_same_content_as_1() -> None:
    """`conflicting_duplicate` compares parsed JSON: `5` and `5.0` are the same number, `true` is not `1`."""
    one, five = changed("feedback", "rating", 1), changed("feedback", "rating", 5)
    assert same_content(five, spelled("feedback", "rating", b"5.0"))
    assert not same_content(one, changed("feedback", "rating", True))


def test_an_unknown_field_is_ignored() -> None:
    event = copy.deepcopy(VALID["quality_review"])
    event["reviewer"] = {"id": "qa-7", "notes": ["calm", "clear"]}
    assert decode_event(raw(event)) == decode_event(raw(VALID["quality_review"]))


def test_invalid_event_carries_the_reason() -> None:
    with pytest.raises(InvalidEvent, match=r"^schema_violation: Expected `int` <= 5 - at `\$.rating`$"):
        decode_event(changed("feedback", "rating", 9))
