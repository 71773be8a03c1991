"""The bundled sample tape: what is in it, that it parses, and that the generator remakes it."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, datetime

import pytest

from brokerflow.connectors import (
    ControlEvent,
    Frame,
    ParseResult,
    parse_frame,
    read_tape,
    sample_tape_path,
)
from brokerflow.connectors.tape import encode_tape_line
from brokerflow.schemas import BestBidAsk, Trade
from brokerflow.tapes.market import DEFAULT_MINUTES, DEFAULT_SEED, MALFORMED, generate_frames

FRAMES = 47_154


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return list(read_tape(sample_tape_path()))


@pytest.fixture(scope="module")
def results(frames: list[Frame]) -> list[ParseResult]:
    return [parse_frame(*frame) for frame in frames]


def test_size_and_span(frames: list[Frame]) -> None:
    assert sample_tape_path().stat().st_size < 3_000_000
    assert len(frames) == FRAMES
    assert Counter(frame.vendor for frame in frames) == {"binance": 47_034, "brapi": 120}
    assert frames[0].receive_time == datetime(2026, 4, 23, 13, 30, 0, 82541, tzinfo=UTC)
    assert frames[-1].receive_time < datetime(2026, 4, 23, 14, 0, 1, tzinfo=UTC)
    times = [frame.receive_time for frame in frames]
    assert times == sorted(times)


def test_records_per_kind_and_symbol(results: list[ParseResult]) -> None:
    counts = Counter(
        (record.type, record.symbol) for result in results for record in result.records
    )

    assert counts == {
        ("BestBidAsk", "BTCUSDT"): 14_662,
        ("BestBidAsk", "ETHUSDT"): 9_782,
        ("BestBidAsk", "SOLUSDT"): 7_368,
        ("Trade", "BTCUSDT"): 7_043,
        ("Trade", "ETHUSDT"): 4_660,
        ("Trade", "SOLUSDT"): 3_512,
        ("Quote", "PETR4"): 30,
        ("Quote", "VALE3"): 30,
        ("Quote", "ITUB4"): 29,
        ("Quote", "BBDC4"): 29,
    }


def test_the_malformed_frames_dead_letter_with_the_expected_reasons(
    results: list[ParseResult],
) -> None:
    letters = [letter for result in results for letter in result.dead_letters]

    assert [(letter.reason, letter.source, letter.fields) for letter in letters] == [
        ("NOT_JSON", "binance_ws", ()),
        ("INVALID_FIELD", "binance_ws/ethusdt@trade", ("data.q",)),
        ("CROSSED_QUOTE", "binance_ws/btcusdt@bookTicker", ("data.b", "data.a")),
        ("INVALID_FIELD", "binance_ws/solusdt@trade", ("data.p",)),
        ("UNKNOWN_EVENT", "binance_ws/btcusdt@aggTrade", ("stream",)),
        ("VENDOR_ERROR", "brapi/quote", ("message",)),
        ("NOT_JSON", "binance_ws", ()),
        ("INVALID_FIELD", "brapi/quote", ("results.0.regularMarketPrice",)),
    ]
    assert [letter.reason for letter in letters] == [reason for _, _, reason in MALFORMED]


def test_one_server_shutdown_and_nothing_else_is_a_control_frame(
    results: list[ParseResult],
) -> None:
    controls = [result.control for result in results if result.control is not None]
    assert controls == [ControlEvent.SERVER_SHUTDOWN]


def test_trades_print_at_the_touch_of_the_last_book_ticker(results: list[ParseResult]) -> None:
    touch: dict[str, BestBidAsk] = {}
    off_touch: list[Trade] = []
    for record in (record for result in results for record in result.records):
        if isinstance(record, BestBidAsk):
            touch[record.symbol] = record
        elif isinstance(record, Trade):
            book = touch[record.symbol]
            if record.price not in (book.bid_price, book.ask_price):
                off_touch.append(record)
            assert record.aggressor_side is not None

    # Only one, just after the reconnect: its book ticker was lost with the old connection.
    assert [(trade.symbol, trade.receive_time.strftime("%H:%M:%S")) for trade in off_touch] == [
        ("ETHUSDT", "13:55:01")
    ]


def test_the_generator_remakes_the_bundled_tape_byte_for_byte() -> None:
    remade = "".join(encode_tape_line(frame) for frame in generate_frames(DEFAULT_SEED))

    bundled = sample_tape_path().read_bytes()
    assert gzip.decompress(bundled) == remade.encode("ascii")
    # The gzip header has no time stamp or name that would make two runs differ.
    assert bundled[4:8] == b"\x00\x00\x00\x00"
    assert DEFAULT_MINUTES == 30
