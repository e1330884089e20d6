"""Clickstream message validation: every bad input gets its reason, nothing raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from recomart.streaming.events import parse_event, parse_event_fast, split_batch

GOOD = {"event_id": "e1", "user_id": 3, "product_id": 7, "event_type": "view", "session_id": "s1",
        "timestamp": "2024-05-01T10:00:00Z", "price": 9.5}


def enc(obj) -> bytes:
    return json.dumps(obj).encode()


def with_(**kw) -> bytes:
    return enc({**GOOD, **kw})


def without(field: str) -> bytes:
    return enc({k: v for k, v in GOOD.items() if k != field})


CASES = [
    (b"{not json", "not_json"), (b"\xff\xfe", "not_json"), (None, "not_json"),
    (b"[1, 2]", "not_object"), (b'"text"', "not_object"),
    (without("event_id"), "missing_field:event_id"), (without("timestamp"), "missing_field:timestamp"),
    (with_(user_id=None), "missing_field:user_id"),
    (with_(user_id="3"), "wrong_type:user_id"), (with_(user_id=True), "wrong_type:user_id"),
    (with_(user_id=2**64), "wrong_type:user_id"), (with_(product_id=1.5), "wrong_type:product_id"),
    (with_(event_id=""), "wrong_type:event_id"), (with_(session_id=5), "wrong_type:session_id"),
    (with_(event_id="\ud800"), "wrong_type:event_id"),
    (with_(price="cheap"), "wrong_type:price"), (with_(price=-1), "wrong_type:price"),
    (with_(event_type="click"), "unknown_event_type"), (with_(event_type=1), "wrong_type:event_type"),
    (with_(timestamp="yesterday"), "bad_timestamp"), (with_(timestamp="1970-01-01T00:00:00Z"),
                                                      "bad_timestamp"),
    (with_(timestamp=1714557600), "wrong_type:timestamp"),
    (with_(padding="x" * 20_000), "oversized"),
]


@pytest.mark.parametrize(("raw", "reason"), CASES)
def test_bad_messages_get_their_reason_on_both_paths(raw, reason):
    assert parse_event(raw) == (None, reason)
    assert parse_event_fast(raw) == (None, reason)


def test_valid_event_is_typed_and_extra_fields_dropped():
    event, reason = parse_event_fast(with_(extra=1, timestamp="2024-05-01T12:00:00+02:00"))
    assert reason is None and set(event) == set(GOOD) | {"request_id"}  # optional, None here
    assert event["timestamp"] == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert event == parse_event(with_(extra=1, timestamp="2024-05-01T12:00:00+02:00"))[0]


def expected(**kw):
    """GOOD as ``parse_event`` promises to return it (aware UTC timestamp, float price),
    with ``kw`` replacing fields."""
    return {**GOOD, "timestamp": datetime(2024, 5, 1, 10, tzinfo=UTC), "price": 9.5,
            "request_id": None, **kw}


# (message, the decoded event it must give): an explicit expectation per input, so an input
# where the fast path falls back to parse_event is still checked against a known answer
VALID_VARIANTS = [
    (enc(GOOD), expected()),
    (with_(price=None), expected(price=None)),
    (without("price"), expected(price=None)),
    (with_(price=3), expected(price=3.0)),  # an integer price becomes a float
    (with_(price=0), expected(price=0.0)),
    (with_(timestamp="2024-05-01T10:00:00"), expected()),  # naive = UTC
    (with_(timestamp="2024-05-01"), expected(timestamp=datetime(2024, 5, 1, tzinfo=UTC))),
    (with_(timestamp="2024-05-01T12:30:00.250+02:00"),
     expected(timestamp=datetime(2024, 5, 1, 10, 30, 0, 250_000, tzinfo=UTC))),
    (with_(timestamp="2024-05-01T10:00:00Z", extra="dropped"), expected()),
    (with_(request_id="9f2c" * 8), expected(request_id="9f2c" * 8)),  # the served list's id
]


@pytest.mark.parametrize(("raw", "want"), VALID_VARIANTS)
def test_valid_variants_decode_to_the_expected_event(raw, want):
    for parse in (parse_event, parse_event_fast):
        event, reason = parse(raw)
        assert reason is None and event == want, parse.__name__
        assert type(event["price"]) is (float if want["price"] is not None else type(None))
        assert event["timestamp"].utcoffset() == timedelta(0)  # aware, in UTC
    assert parse_event_fast(raw) == parse_event(raw)


def test_oversized_limit_is_configurable():
    assert parse_event(enc(GOOD), max_bytes=50) == (None, "oversized")


def test_split_batch_keeps_positions():
    good, bad = split_batch([enc(GOOD), b"nope", with_(event_id="e2")])
    assert [i for i, _ in good] == [0, 2] and bad == [(1, "not_json")]


def test_decode_batch_agrees_with_parse_event_per_message():
    from recomart.streaming.events import decode_batch

    raws = [raw for raw, _ in CASES] + [enc(GOOD), with_(price=None), with_(price=3),
                                        with_(timestamp="2024-05-01T12:00:00+02:00"),
                                        with_(timestamp="2024-05-01"), without("price")]
    decoded = decode_batch(raws)
    expected = [parse_event(raw) for raw in raws]
    assert decoded.bad == [(i, r) for i, (e, r) in enumerate(expected) if e is None]
    good = [(i, e) for i, (e, _) in enumerate(expected) if e is not None]
    assert decoded.index == [i for i, _ in good] and len(decoded) == 6
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rows = [{"event_id": decoded.event_id[k], "user_id": decoded.user_id[k],
             "product_id": decoded.product_id[k], "event_type": decoded.event_type[k],
             "session_id": decoded.session_id[k],
             "timestamp": epoch + timedelta(microseconds=decoded.timestamp_us[k]),
             "price": decoded.price[k], "request_id": decoded.request_id[k]}
            for k in range(len(decoded))]
    assert rows == [e for _, e in good]


def test_decode_batch_gives_the_expected_events():
    from recomart.streaming.events import decode_batch

    decoded = decode_batch([raw for raw, _ in VALID_VARIANTS])
    assert decoded.bad == [] and decoded.index == list(range(len(VALID_VARIANTS)))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for k, (_, want) in enumerate(VALID_VARIANTS):
        assert decoded.event_id[k] == want["event_id"] and decoded.user_id[k] == want["user_id"]
        assert decoded.product_id[k] == want["product_id"]
        assert decoded.event_type[k] == want["event_type"]
        assert decoded.session_id[k] == want["session_id"]
        assert epoch + timedelta(microseconds=decoded.timestamp_us[k]) == want["timestamp"]
        assert decoded.price[k] == want["price"]
        assert type(decoded.price[k]) is (float if want["price"] is not None else type(None))
