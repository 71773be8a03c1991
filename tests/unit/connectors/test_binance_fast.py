"""The Binance fast path against the full parse: the same record, or ``None``.

Differential: every Binance frame of the sample tape, and mutations of them (fields dropped,
retyped, out of range, crossed, renamed streams, control replies, extra keys, bad JSON), go
through :func:`fast_parse` and :func:`parse_binance_frame_fully`. Whenever the fast path answers,
the full parse gives an equal result: the same records, equal field by field with the same
types, the same ``model_fields_set`` and the same JSON bytes; and the fast path answers for every
plain frame of the tape.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokerflow.connectors import read_tape, sample_tape_path
from brokerflow.connectors._binance_fast import fast_parse
from brokerflow.connectors.binance_ws import parse_binance_frame, parse_binance_frame_fully

RECEIVED = datetime(2026, 1, 2, 13, 30, 0, 180000, tzinfo=UTC)


def tape_frames() -> list[tuple[str, datetime]]:
    return [
        (frame.raw, frame.receive_time)
        for frame in read_tape(sample_tape_path())
        if frame.vendor == "binance"
    ]


FRAMES = tape_frames()


def same_result(raw: str, receive_time: datetime = RECEIVED) -> bool:
    """Check the fast path against the full parse; True if the fast path answered."""
    fast = fast_parse(raw, receive_time)
    if fast is None:
        return False
    full = parse_binance_frame_fully(raw, receive_time)
    assert full.dead_letters == fast.dead_letters == ()
    assert full.control is fast.control is None
    assert len(fast.records) == len(full.records) == 1
    got, want = fast.records[0], full.records[0]
    assert type(got) is type(want)
    assert got == want
    assert got.model_fields_set == want.model_fields_set
    for name in type(want).model_fields:
        assert type(getattr(got, name)) is type(getattr(want, name)), name
    assert got.to_json_bytes() == want.to_json_bytes()
    assert repr(got) == repr(want)
    return True


def test_the_fast_path_takes_every_plain_frame_of_the_sample_tape_and_agrees() -> None:
    answered = sum(same_result(raw, received) for raw, received in FRAMES)
    refused = [
        raw
        for raw, received in FRAMES
        if fast_parse(raw, received) is None and parse_binance_frame_fully(raw, received).records
    ]
    # The tape's records the fast path leaves to the full parse: empty book sides only.
    assert all('"0.00000000"' in raw for raw in refused), refused[:3]
    assert answered > 0.95 * len(FRAMES)


def test_parse_binance_frame_is_the_fast_path_or_the_full_parse() -> None:
    for raw, received in FRAMES[:2000]:
        assert parse_binance_frame(raw, received) == parse_binance_frame_fully(raw, received)


def mutations(message: dict[str, Any], rng: random.Random) -> list[Any]:
    """Variants of a combined-stream frame, most of which the full parse refuses."""
    payload = message["data"]
    odd_values: list[Any] = [
        None, True, False, 0, -1, 1, 2**63, 10**70, 253_402_300_800_000, 1.5, "1", "",
        " 1.5", "1.5 ", "-1", "0", "0.0", "1e3", "NaN", "Infinity", "1_000", "١٢", [], {},
        "x" * 70, "btcusdt", "BTC USDT", "trade", "bookTicker", "serverShutdown",
    ]  # fmt: skip
    out: list[Any] = []
    for key in payload:
        dropped = dict(payload)
        del dropped[key]
        out.append({**message, "data": dropped})
        for value in rng.sample(odd_values, 6):
            out.append({**message, "data": {**payload, key: value}})
    out.append({**message, "data": {**payload, "id": 1, "result": None}})
    out.append({**message, "data": {**payload, "id": 1, "error": {"code": 2, "msg": "x"}}})
    out.append({**message, "data": {**payload, "extra": "ignored", "E2": 5}})
    out.append({**message, "data": {**payload, "e": "serverShutdown"}})
    stream = message["stream"]
    symbol, _, channel = stream.partition("@")
    for other in ("ethusdt", symbol.upper(), "", f" {symbol}"):
        out.append({**message, "stream": f"{other}@{channel}"})
    for other in ("trades", "depth", "", "aggTrade"):
        out.append({**message, "stream": f"{symbol}@{other}"})
    out.append({**message, "stream": symbol})
    out.append({**message, "stream": 5})
    out.append({"stream": stream})  # no data: a bare payload without a shape
    out.append(payload)  # bare payload (a /ws/ connection)
    out.append({**payload, "stream": stream})
    out.append({"stream": stream, "data": [payload]})
    if "b" in payload and "a" in payload and isinstance(payload["b"], str):
        out.append({**message, "data": {**payload, "b": payload["a"], "a": payload["b"]}})
    return out


def test_mutated_frames_are_refused_or_parsed_exactly_as_the_full_parse() -> None:
    rng = random.Random(20261204)
    answered = 0
    total = 0
    for raw, received in rng.sample(FRAMES, 300):
        message = json.loads(raw)
        for variant in mutations(message, rng):
            text = json.dumps(variant)
            total += 1
            answered += same_result(text, received)
    assert total > 5000
    assert 0 < answered < total  # both outcomes were exercised


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        "null",
        '"trade"',
        '{"stream":"btcusdt@trade","data":{"e":"trade"}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,'
        '"p":"1","q":"1","T":1,"m":true,"e":"x"}}',  # duplicate key: the last counts
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,'
        '"p":"\\u0031","q":"1","T":1,"m":true}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,'
        '"p":"1","q":"1","T":1,"m":true,"x":"\\ud800"}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,'
        '"p":"1","q":"1","T":1,"m":true,"x":NaN}}',
    ],
)
def test_hand_written_edge_frames(text: str) -> None:
    same_result(text)


def test_a_receive_time_not_in_utc_goes_the_full_way() -> None:
    raw, _ = FRAMES[0]
    assert fast_parse(raw, RECEIVED.replace(tzinfo=None)) is None
    assert fast_parse(raw, RECEIVED.astimezone(timezone(timedelta(hours=-3)))) is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    payload=st.dictionaries(
        st.sampled_from(["e", "E", "s", "t", "p", "q", "T", "m", "M", "b", "a", "u", "B", "A"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-5, max_value=2**64),
            st.sampled_from(["trade", "bookTicker", "BTCUSDT", "btcusdt", "1", "0.5", "2.25"]),
            st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,8})?", fullmatch=True),
            st.text(max_size=8),
        ),
    ),
    channel=st.sampled_from(["trade", "bookTicker", None]),
)
def test_generated_payloads_are_refused_or_parsed_exactly_as_the_full_parse(
    payload: dict[str, Any], channel: str | None
) -> None:
    message = payload if channel is None else {"stream": f"btcusdt@{channel}", "data": payload}
    same_result(json.dumps(message))
