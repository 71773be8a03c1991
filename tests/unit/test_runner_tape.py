"""A looping tape moved to "now" (what `brokerflow run` feeds ingest): times, ids, passes.

The tiny tape's expected values are worked out by hand in the comments; the sample tape's
figures come from the README (record counts) and from reading the tape (id ranges).
"""

from __future__ import annotations

import doctest
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from brokerflow.connectors import Frame, parse_frame, read_tape, sample_tape_path
from brokerflow.connectors import tape as tape_module
from brokerflow.connectors.tape import (
    TapeExtent,
    encode_tape_line,
    measure_tape,
    shift_frame,
    shift_to_now,
)
from brokerflow.flows._ingest_sources import TapeSource, tape_partition_of
from brokerflow.flows.ingest import Parsed, drop_repeated_quotes, history_id
from brokerflow.schemas.market import BestBidAsk, Quote, Trade


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# 2026-01-02T12:00:00Z is 1767355200 s after the epoch (2026-01-01 is 1767225600, plus 1.5 days).
def _trade(trade_id: int, trade_ms: int, event_ms: int) -> str:
    data = {"e": "trade", "E": event_ms, "s": "BTCUSDT", "t": trade_id, "p": "94000.10"}
    data |= {"q": "0.5", "b": 11, "a": 12, "T": trade_ms, "m": True, "M": True}
    return json.dumps({"stream": "btcusdt@trade", "data": data})


BOOK = json.dumps(
    {
        "stream": "ethusdt@bookTicker",
        "data": {"u": 7, "s": "ETHUSDT", "b": "3000.10", "B": "1", "a": "3000.20", "A": "2"},
    }
)
BRAPI = (
    '{"results":[{"symbol":"PETR4","currency":"BRL","regularMarketPrice":37.86,'
    '"regularMarketTime":"2026-01-02T11:59:30.000Z"}],"requestedAt":"2026-01-02T12:00:02.100Z"}'
)
TINY = [
    Frame("binance", _trade(100, 1767355200400, 1767355200450), _at("2026-01-02T12:00:00.5Z")),
    Frame("binance", BOOK, _at("2026-01-02T12:00:01Z")),
    Frame("binance", _trade(103, 1767355201150, 1767355201200), _at("2026-01-02T12:00:01.25Z")),
    Frame("brapi", BRAPI, _at("2026-01-02T12:00:02.25Z")),
]


@pytest.fixture
def tiny_tape(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(encode_tape_line(frame) for frame in TINY))
    return path


def _records(frame: Frame) -> list[Trade | BestBidAsk | Quote]:
    result = parse_frame(*frame)
    assert result.dead_letters == ()
    return list(result.records)


# --- the pure steps ------------------------------------------------------------------------------
def test_the_extent_of_the_tiny_tape() -> None:
    extent = measure_tape(TINY)

    assert extent.first_receive == _at("2026-01-02T12:00:00.5Z")
    # Receive times span 1.75 s (the widest span): the next whole second above it is 2 s.
    assert extent.period == timedelta(seconds=2)
    # BTCUSDT trade ids 100..103 (4 ids), ETHUSDT book update id 7 (1 id).
    assert extent.id_strides == {("BTCUSDT", "t"): 4, ("ETHUSDT", "u"): 1}


def test_the_shift_to_now_is_whole_seconds_and_never_below_its_floor() -> None:
    first = _at("2026-01-02T12:00:00.5Z")

    # 3 h 0.2 s after the first frame: 10800 s (the frame lands 0.2 s before now, not after).
    assert shift_to_now(first, _at("2026-01-02T15:00:00.7Z")) == timedelta(seconds=10800)
    assert shift_to_now(first, _at("2026-01-02T15:00:00.7Z"), timedelta(seconds=10802)) == (
        timedelta(seconds=10802)
    )
    assert shift_to_now(first, _at("2026-01-02T16:00:00.9Z"), timedelta(seconds=10802)) == (
        timedelta(seconds=14400)
    )


def test_a_shifted_trade_moves_its_times_and_in_a_later_pass_its_id() -> None:
    extent = measure_tape(TINY)

    moved = shift_frame(TINY[0], timedelta(seconds=10800))
    second_pass = shift_frame(TINY[2], timedelta(seconds=10802), pass_number=1, extent=extent)

    # 10800 s = 10,800,000 ms on E and T; pass 0 keeps trade id 100.
    assert moved.receive_time == _at("2026-01-02T15:00:00.5Z")
    assert json.loads(moved.raw)["data"] | {} == json.loads(TINY[0].raw)["data"] | {
        "E": 1767366000450,
        "T": 1767366000400,
    }
    [trade] = _records(moved)
    assert (trade.trade_id, trade.event_time) == ("100", _at("2026-01-02T15:00:00.4Z"))
    # Pass 1: id 103 + 4, times + 10802 s; the buyer and seller order ids stay as they were.
    [later] = _records(second_pass)
    assert (later.trade_id, later.event_time) == ("107", _at("2026-01-02T15:00:03.15Z"))
    assert json.loads(second_pass.raw)["data"]["b"] == 11


def test_a_shifted_book_ticker_and_brapi_body_keep_their_text_but_the_numbers() -> None:
    extent = measure_tape(TINY)

    book = shift_frame(TINY[1], timedelta(seconds=10802), pass_number=1, extent=extent)
    body = shift_frame(TINY[3], timedelta(seconds=10802), pass_number=1, extent=extent)

    assert book.raw == BOOK.replace('"u": 7', '"u": 8')
    [ticker] = _records(book)
    assert (ticker.update_id, ticker.event_time) == (8, _at("2026-01-02T15:00:03Z"))
    # 11:59:30 + 3 h 0 min 2 s; milliseconds and the Z kept; nothing else in the body changed.
    assert body.raw == BRAPI.replace("11:59:30.000Z", "14:59:32.000Z").replace(
        "12:00:02.100Z", "15:00:04.100Z"
    )
    [quote] = _records(body)
    assert quote.event_time == _at("2026-01-02T14:59:32Z")


def test_brapi_unix_seconds_move_too_and_a_bad_frame_stays_bad() -> None:
    body = (
        '{"results":[{"symbol":"VALE3","regularMarketPrice":61.2,"regularMarketTime":1767355170}]}'
    )
    bad = '{"stream":"btcusdt@trade","data":{"e":"trade","E":1767355200450,"s":"BTCUSDT","t":'

    moved = shift_frame(Frame("brapi", body, TINY[0].receive_time), timedelta(seconds=60))
    still_bad = shift_frame(Frame("binance", bad, TINY[0].receive_time), timedelta(seconds=60))

    assert '"regularMarketTime":1767355230}' in moved.raw
    assert still_bad.raw == bad.replace("1767355200450", "1767355260450")
    assert parse_frame(*still_bad).dead_letters[0].reason == "NOT_JSON"


def test_a_shift_must_be_whole_seconds_and_later_passes_need_the_extent() -> None:
    with pytest.raises(ValueError, match="whole seconds"):
        shift_frame(TINY[0], timedelta(milliseconds=1500))
    with pytest.raises(ValueError, match="extent"):
        shift_frame(TINY[0], timedelta(seconds=2), pass_number=1)
    with pytest.raises(tape_module.TapeError, match="no frame"):
        measure_tape([])


def test_the_tape_module_examples_run() -> None:
    outcome = doctest.testmod(tape_module)
    assert (outcome.failed, outcome.attempted > 0) == (0, True)


# --- the looping source --------------------------------------------------------------------------
def _batches(part: object, count: int) -> list[list[Frame]]:
    return [part.next_batch() for _ in range(count)]  # type: ignore[attr-defined]


def test_a_looping_source_starts_each_pass_at_now_with_new_ids(tiny_tape: Path) -> None:
    clock = [_at("2026-01-02T15:00:00.7Z")]
    source = TapeSource(tiny_tape, batch_size=4, loop=True, shift_to_now=True, now=lambda: clock[0])
    part = source.build_part("tape", "tape-0-of-1", None)

    first = part.next_batch()
    clock[0] = _at("2026-01-02T15:00:01Z")  # a fast replay: the pass ends before 2 s passed
    second = part.next_batch()
    clock[0] = _at("2026-01-02T16:00:00.9Z")  # an hour later
    third = part.next_batch()
    part.close()

    # Pass 0: 10800 s. Pass 1: now gives 10800 s, the floor 10800 + 2 = 10802 wins.
    # Pass 2: now gives 4 h 0.4 s -> 14400 s, above the floor 10804.
    assert [f.receive_time for f in first] == [
        _at("2026-01-02T15:00:00.5Z"),
        _at("2026-01-02T15:00:01Z"),
        _at("2026-01-02T15:00:01.25Z"),
        _at("2026-01-02T15:00:02.25Z"),
    ]
    assert second[0].receive_time == _at("2026-01-02T15:00:02.5Z")
    assert third[0].receive_time == _at("2026-01-02T16:00:00.5Z")
    every = [r for f in first + second + third for r in _records(f)]
    trade_ids = [r.trade_id for r in every if isinstance(r, Trade)]
    assert trade_ids == ["100", "103", "104", "107", "108", "111"]
    books = [r.update_id for r in every if isinstance(r, BestBidAsk)]
    assert books == [7, 8, 9]


def test_a_looping_source_without_the_shift_moves_each_pass_one_period(tiny_tape: Path) -> None:
    source = TapeSource(tiny_tape, batch_size=4, loop=True)
    part = source.build_part("tape", "tape-0-of-1", None)

    passes = _batches(part, 3)
    part.close()

    # The period is 2 s: pass n starts at 12:00:00.5 + 2n s.
    assert [batch[0].receive_time for batch in passes] == [
        _at("2026-01-02T12:00:00.5Z"),
        _at("2026-01-02T12:00:02.5Z"),
        _at("2026-01-02T12:00:04.5Z"),
    ]
    assert passes[0][0].raw == TINY[0].raw  # pass 0 is the tape itself


def test_a_resumed_pass_keeps_its_ids_and_moves_on_to_now(tiny_tape: Path) -> None:
    clock = [_at("2026-01-02T15:00:00.7Z")]
    source = TapeSource(tiny_tape, batch_size=2, loop=True, shift_to_now=True, now=lambda: clock[0])
    part = source.build_part("tape", "tape-0-of-1", None)
    part.next_batch()
    state = part.snapshot()
    part.close()

    clock[0] = _at("2026-01-02T15:00:05Z")
    resumed = source.build_part("tape", "tape-0-of-1", state)
    rest = resumed.next_batch()
    resumed.close()

    assert state == (0, 2, 10800)  # pass 0, two lines handed on, shift 10800 s
    # Line 2 was received at 12:00:01.25; now is 3 h 3.75 s later: the shift becomes 10803 s.
    [trade] = _records(rest[0])
    assert (trade.trade_id, trade.event_time) == ("103", _at("2026-01-02T15:00:04.15Z"))


def test_a_resumed_source_at_the_end_of_a_pass_starts_the_next_one(tiny_tape: Path) -> None:
    source = TapeSource(
        tiny_tape, loop=True, shift_to_now=True, now=lambda: _at("2026-01-02T16:00:00.9Z")
    )

    resumed = source.build_part("tape", "tape-0-of-1", (0, 4, 10800))
    batch = resumed.next_batch()
    resumed.close()

    # Pass 1 from line 0: at least 10800 + 2 s, and now gives 14400 s.
    assert batch[0].receive_time == _at("2026-01-02T16:00:00.5Z")
    assert _records(batch[0])[0].trade_id == "104"


def test_a_plain_replay_still_snapshots_a_line_number(tiny_tape: Path) -> None:
    part = TapeSource(tiny_tape, batch_size=3).build_part("tape", "tape-0-of-1", None)
    part.next_batch()

    assert part.snapshot() == 3
    part.close()


def test_a_looping_partition_with_no_line_of_its_own_ends(tiny_tape: Path) -> None:
    lines = tiny_tape.read_text().splitlines()
    used = {tape_partition_of(line, 16) for line in lines}
    empty = next(index for index in range(16) if index not in used)
    part = TapeSource(tiny_tape, partitions=16, loop=True).build_part(
        "tape", f"tape-{empty}-of-16", None
    )

    with pytest.raises(StopIteration):
        part.next_batch()
    part.close()


# --- the sample tape: every pass valid and new ---------------------------------------------------
def _parsed(frames: list[Frame]) -> list[Parsed]:
    return [Parsed(frame, parse_frame(*frame)) for frame in frames]


def test_a_second_pass_of_the_sample_tape_is_as_valid_and_shares_no_id_or_time() -> None:
    frames = list(read_tape(sample_tape_path()))
    extent = measure_tape(frames)
    shift = extent.period  # pass 1 of a loop without the shift to now
    first = _parsed(frames)
    second = _parsed([shift_frame(f, shift, pass_number=1, extent=extent) for f in frames])

    def kinds(parsed: list[Parsed]) -> Counter[str]:
        return Counter(type(r).__name__ for p in parsed for r in p.result.records)

    def reasons(parsed: list[Parsed]) -> Counter[str]:
        return Counter(letter.reason for p in parsed for letter in p.result.dead_letters)

    # README: 15,215 trades, 31,812 book tickers, 118 quotes, 8 dead letters, in every pass.
    expected = Counter(Trade=15_215, BestBidAsk=31_812, Quote=118)
    assert kinds(first) == kinds(second) == expected
    assert sum(reasons(second).values()) == 8
    assert reasons(first) == reasons(second)
    # The history's ids (trade ids, book update ids, quote times) of the passes do not meet.
    ids = [
        {history_id(p.frame.vendor, r) for p in ps for r in p.result.records}
        for ps in (first, second)
    ]
    assert len(ids[0]) == len(ids[1]) == 15_215 + 31_812 + 118
    assert ids[0].isdisjoint(ids[1])
    # BTCUSDT trade ids run 343296842..343303888 in the tape: pass 1 continues at 343303889.
    btc = [
        int(r.trade_id)
        for p in second
        for r in p.result.records
        if isinstance(r, Trade) and r.symbol == "BTCUSDT"
    ]
    assert (min(btc), max(btc)) == (343_303_889, 343_303_888 + 7_047)
    # Every record is the same but for its times, moved by exactly one period (30 min).
    assert extent.period == timedelta(minutes=30)
    pairs = zip(
        (r for p in first for r in p.result.records),
        (r for p in second for r in p.result.records),
        strict=True,
    )
    assert all(b.event_time - a.event_time == shift for a, b in pairs)


def test_no_quote_of_a_second_pass_is_taken_for_a_repeat_of_the_first() -> None:
    frames = list(read_tape(sample_tape_path()))
    extent = measure_tape(frames)
    passes = [
        shift_frame(frame, extent.period * n, pass_number=n, extent=extent)
        for n in range(2)
        for frame in frames
        if frame.vendor == "brapi"
    ]

    state: dict[str, datetime] | None = None
    kept = 0
    for parsed in _parsed(passes):
        state, out = drop_repeated_quotes(state, parsed)
        kept += len(out.result.records)
    single: dict[str, datetime] | None = None
    once = 0
    for parsed in _parsed(passes[: len(passes) // 2]):
        single, out = drop_repeated_quotes(single, parsed)
        once += len(out.result.records)

    assert once > 0
    assert kept == 2 * once


def test_an_extent_is_what_looping_needs(tiny_tape: Path) -> None:
    source = TapeSource(tiny_tape, loop=True)

    assert source.extent() == TapeExtent(
        first_receive=_at("2026-01-02T12:00:00.5Z"),
        period=timedelta(seconds=2),
        id_strides={("BTCUSDT", "t"): 4, ("ETHUSDT", "u"): 1},
    )
    assert source.extent() is source.extent()  # measured once
