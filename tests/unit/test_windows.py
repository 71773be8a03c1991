"""The window maths core on a hand-computed tape (every expected figure worked out by hand)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.orders import Side
from brokerflow.schemas.stats import BarClosed, BarWindow
from brokerflow.windows import (
    LateReason,
    SymbolWindows,
    WindowsConfig,
    compute_bars,
    facts_of,
    quantize_price,
    window_bounds,
)

T0 = datetime(2026, 1, 2, 13, 0, tzinfo=UTC)
COMPUTED = datetime(2026, 1, 2, 14, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def trade(trade_id: int, seconds: float, price: str, qty: str, side: str | None = None) -> Trade:
    return Trade(
        venue="BINANCE",
        symbol="BTCUSDT",
        trade_id=str(trade_id),
        price=price,
        quantity=qty,
        aggressor_side=side,
        event_time=at(seconds),
        receive_time=at(seconds),
    )


def book(seconds: float, bid: str | None, ask: str | None) -> BestBidAsk:
    return BestBidAsk(
        venue="BINANCE",
        symbol="BTCUSDT",
        bid_price=bid,
        bid_quantity=None if bid is None else "1",
        ask_price=ask,
        ask_quantity=None if ask is None else "1",
        event_time=at(seconds),
        receive_time=at(seconds),
    )


# A small tape in arrival order.
# 1 s windows [00,01) [01,02) [02,03) [03,04) [05,06); 1 min [00:00,01:00).
TAPE = [
    book(0.05, "99.90", "100.10"),  # spread 0.20
    trade(1, 0.1, "100.00", "1", "BUY"),
    trade(2, 0.5, "101.00", "2", "SELL"),
    book(0.6, "100.00", "100.50"),  # spread 0.50
    trade(3, 0.9, "99.50", "1"),  # aggressor unknown: volume only
    trade(4, 1.0, "102.00", "0.5", "BUY"),  # exactly on the boundary: window [01,02)
    book(1.1, "101.00", "101.30"),  # spread 0.30
    trade(5, 1.2, "101.50", "1.5", "SELL"),
    book(2.2, "101.20", "101.25"),  # spread 0.05; [02,03) has no trade
    trade(6, 5.0, "103", "1", "BUY"),
    book(5.0, "102.90", "103.10"),  # spread 0.20; book clock 5.0: frontier 3.0 closes [00..03)
    trade(7, 2.5, "50", "10", "BUY"),  # 2.5 s behind the trade clock (5.0) > 2 s: late
    trade(8, 3.5, "104", "1"),  # 1.5 s behind: within lateness, accepted into [03,04)
]


def bar(bars: list[BarClosed], window: BarWindow, start_s: float) -> BarClosed:
    (found,) = [b for b in bars if b.window is window and b.window_start == at(start_s)]
    return found


def figures(b: BarClosed) -> dict[str, object]:
    wire = b.to_wire()
    keys = ("tradeCount", "open", "high", "low", "close", "volume", "vwap")
    keys += ("buyVolume", "sellVolume", "bboCount", "spreadMean", "spreadMax")
    return {key: wire[key] for key in keys}


@pytest.fixture(scope="module")
def result() -> tuple[list[BarClosed], list]:
    return compute_bars(TAPE, COMPUTED, WindowsConfig(allowed_lateness=timedelta(seconds=2)))


def test_first_second_bar(result) -> None:
    bars, _ = result
    assert figures(bar(bars, BarWindow.SECOND_1, 0)) == {
        "tradeCount": 3,
        "open": "100.00",
        "high": "101.00",
        "low": "99.50",
        "close": "99.50",
        "volume": "4",
        "vwap": "100.37500000",  # (100 + 202 + 99.5) / 4
        "buyVolume": "1",
        "sellVolume": "2",
        "bboCount": 2,
        "spreadMean": "0.35000000",  # (0.20 + 0.50) / 2
        "spreadMax": "0.50",
    }


def test_tick_on_the_boundary_opens_the_next_window(result) -> None:
    bars, _ = result
    assert figures(bar(bars, BarWindow.SECOND_1, 1)) == {
        "tradeCount": 2,
        "open": "102.00",
        "high": "102.00",
        "low": "101.50",
        "close": "101.50",
        "volume": "2.0",
        "vwap": "101.62500000",  # (51 + 152.25) / 2
        "buyVolume": "0.5",
        "sellVolume": "1.5",
        "bboCount": 1,
        "spreadMean": "0.30000000",
        "spreadMax": "0.30",
    }
    assert window_bounds(at(1.0), BarWindow.SECOND_1) == (at(1), at(2))
    assert window_bounds(at(0.999999), BarWindow.SECOND_1) == (at(0), at(1))
    assert window_bounds(at(60), BarWindow.MINUTE_1) == (at(60), at(120))


def test_book_ticker_only_window_has_null_prices(result) -> None:
    bars, _ = result
    quiet = bar(bars, BarWindow.SECOND_1, 2)
    assert figures(quiet) == {
        "tradeCount": 0,
        "open": None,
        "high": None,
        "low": None,
        "close": None,
        "volume": "0",
        "vwap": None,
        "buyVolume": "0",
        "sellVolume": "0",
        "bboCount": 1,
        "spreadMean": "0.05000000",
        "spreadMax": "0.05",
    }
    assert quiet.event_time == quiet.window_end == at(3)


def test_out_of_order_tick_within_lateness_is_counted(result) -> None:
    bars, _ = result
    assert figures(bar(bars, BarWindow.SECOND_1, 3))["open"] == "104"
    assert figures(bar(bars, BarWindow.SECOND_1, 3))["vwap"] == "104.00000000"


def test_minute_bar_holds_every_on_time_tick_and_not_the_late_one(result) -> None:
    bars, late = result
    assert figures(bar(bars, BarWindow.MINUTE_1, 0)) == {
        "tradeCount": 7,  # trades 1-6 and 8; trade 7 was late
        "open": "100.00",
        "high": "104",
        "low": "99.50",  # the late trade at 50 never lowered it
        "close": "103",  # trade 6 has the latest event time (5.0 s), trade 8 arrived after it
        "volume": "8.0",
        "vwap": "101.46875000",  # 811.75 / 8
        "buyVolume": "2.5",
        "sellVolume": "3.5",
        "bboCount": 5,
        "spreadMean": "0.25000000",  # 1.25 / 5
        "spreadMax": "0.50",
    }
    assert [(lt.tick.trade_id, lt.reason, lt.lateness) for lt in late] == [
        ("7", LateReason.BEHIND_STREAM, timedelta(seconds=2.5))
    ]


def test_bars_come_out_in_window_end_order_and_no_empty_window(result) -> None:
    bars, _ = result
    starts = [(b.window.value, (b.window_start - T0).total_seconds()) for b in bars]
    assert starts == [
        ("1s", 0.0),
        ("1s", 1.0),
        ("1s", 2.0),  # closed by the book ticker at 5.0 s (frontier 3.0)
        ("1s", 3.0),  # the rest at the flush
        ("1s", 5.0),
        ("1m", 0.0),
    ]
    assert all(b.computed_time == COMPUTED for b in bars)


def test_windows_close_only_when_both_streams_pass_the_end_plus_lateness() -> None:
    windows = SymbolWindows(WindowsConfig(allowed_lateness=timedelta(seconds=2)))
    assert windows.add(trade(1, 0.1, "10", "1"), COMPUTED) == ([], None)
    assert windows.add(book(0.2, "9", "11"), COMPUTED) == ([], None)
    # The trade clock runs ahead; the book clock (0.2) holds the frontier back.
    assert windows.add(trade(2, 10.0, "10", "1"), COMPUTED) == ([], None)
    bars, late = windows.add(book(3.0, "9", "11"), COMPUTED)  # frontier 3.0 - 2 = 1.0
    assert late is None
    assert [(b.window.value, b.window_start) for b in bars] == [("1s", at(0))]


def test_an_idle_stream_stops_holding_the_frontier_and_its_late_ticks_are_refused() -> None:
    config = WindowsConfig(
        allowed_lateness=timedelta(seconds=2), idle_stream_timeout=timedelta(seconds=30)
    )
    windows = SymbolWindows(config)
    windows.add(trade(1, 0.5, "10", "1"), COMPUTED)
    # The book stream is awaited for 30 s of wall clock: far ahead, nothing closes yet.
    assert windows.add(trade(2, 40.0, "11", "1"), COMPUTED + timedelta(seconds=30)) == ([], None)
    later = COMPUTED + timedelta(seconds=31)
    bars, _ = windows.add(trade(3, 40.5, "11", "1"), later)  # frontier 40.5 - 2 = 38.5
    assert [(b.window.value, b.window_start) for b in bars] == [("1s", at(0))]
    # The book stream shows up now, for a window already closed: late, the bar untouched.
    bars, late = windows.add(book(0.7, "9", "11"), later)
    assert bars == []
    assert late is not None
    assert late.reason is LateReason.WINDOW_CLOSED


def test_a_restored_state_waits_again_for_a_quiet_stream() -> None:
    windows = SymbolWindows()
    windows.add(trade(1, 0.5, "10", "1"), COMPUTED)
    windows.add(book(0.6, "9", "11"), COMPUTED)
    # Restored an hour later: the book stream is not idle just because the flow was down.
    later = COMPUTED + timedelta(hours=1)
    windows.resumed(later)
    assert windows.add(trade(2, 9.0, "10", "1"), later) == ([], None)


def test_a_tick_for_a_flushed_window_is_late() -> None:
    windows = SymbolWindows()
    windows.add(trade(1, 0.5, "10", "1"), COMPUTED)
    flushed = windows.flush(COMPUTED)
    assert [b.window.value for b in flushed] == ["1s", "1m"]
    assert windows.flush(COMPUTED) == []
    bars, late = windows.add(book(30.0, "9", "11"), COMPUTED)  # inside the flushed minute
    assert bars == []
    assert late is not None
    assert late.reason is LateReason.WINDOW_CLOSED


def test_open_and_close_break_event_time_ties_by_trade_id() -> None:
    ticks = [trade(10, 0.5, "12", "1"), trade(9, 0.5, "11", "1")]
    for order in (ticks, ticks[::-1]):
        bars, _ = compute_bars(order, COMPUTED)
        second = bar(bars, BarWindow.SECOND_1, 0)
        assert (second.open, second.close) == (Decimal("11"), Decimal("12"))  # id 9 < id 10


def test_one_sided_book_counts_no_spread() -> None:
    bars, _ = compute_bars([book(0.5, None, "11"), trade(1, 0.6, "10", "1")], COMPUTED)
    second = bar(bars, BarWindow.SECOND_1, 0)
    assert (second.bbo_count, second.spread_mean, second.spread_max) == (0, None, None)


def test_vwap_rounding_is_half_even_to_eight_places() -> None:
    # 1 @ 1 + 2 @ 2 = 5 / 3 = 1.6666...: rounded up; 0.000000005 is a tie: to even (down).
    bars, _ = compute_bars([trade(1, 0.1, "1", "1"), trade(2, 0.2, "2", "2")], COMPUTED)
    assert bar(bars, BarWindow.SECOND_1, 0).vwap == Decimal("1.66666667")
    assert quantize_price(Decimal("0.000000005")) == Decimal("0E-8")
    assert quantize_price(Decimal("0.000000015")) == Decimal("0.00000002")


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        window_bounds(datetime(2026, 1, 2, 13, 0), BarWindow.SECOND_1)  # noqa: DTZ001


def test_windows_are_aligned_to_the_epoch_for_every_length() -> None:
    moment = datetime(2026, 1, 2, 13, 7, 42, 500_000, tzinfo=UTC)
    assert window_bounds(moment, BarWindow.MINUTE_5)[0] == datetime(2026, 1, 2, 13, 5, tzinfo=UTC)
    assert window_bounds(moment, BarWindow.HOUR_1)[0] == datetime(2026, 1, 2, 13, 0, tzinfo=UTC)
    assert window_bounds(moment, BarWindow.DAY_1)[0] == datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("size", [2, 3, 5, len(TAPE)])
def test_a_batch_gives_the_bars_and_late_ticks_of_tick_by_tick(size: int) -> None:
    # The flow feeds one poll's ticks at once; the closing runs at the end of each batch.
    windows = SymbolWindows(WindowsConfig(allowed_lateness=timedelta(seconds=2)))
    bars: list[BarClosed] = []
    late = []
    for first in range(0, len(TAPE), size):
        closed, refused = windows.add_batch(TAPE[first : first + size], COMPUTED)
        bars += closed
        late += [(first + index, lt.reason, lt.lateness) for index, lt in refused]
    bars += windows.flush(COMPUTED)
    # Trade 7 (index 11) is 2.5 s behind the trade clock whatever the batching.
    assert late == [(11, LateReason.BEHIND_STREAM, timedelta(seconds=2.5))]
    starts = [(b.window.value, (b.window_start - T0).total_seconds()) for b in bars]
    assert starts == [("1s", 0.0), ("1s", 1.0), ("1s", 2.0), ("1s", 3.0), ("1s", 5.0), ("1m", 0.0)]
    assert figures(bar(bars, BarWindow.SECOND_1, 0))["vwap"] == "100.37500000"
    assert figures(bar(bars, BarWindow.MINUTE_1, 0))["vwap"] == "101.46875000"
    assert figures(bar(bars, BarWindow.MINUTE_1, 0))["tradeCount"] == 7


def test_within_a_batch_a_tick_for_a_window_closed_earlier_in_it_is_late() -> None:
    # The trade stream is idle (31 s of wall clock): the book stream alone moves the frontier.
    config = WindowsConfig(
        allowed_lateness=timedelta(seconds=2), idle_stream_timeout=timedelta(seconds=30)
    )
    windows = SymbolWindows(config)
    windows.add_batch([trade(1, 0.5, "10", "1"), book(0.6, "9", "11")], COMPUTED)
    later = COMPUTED + timedelta(seconds=31)
    # book 5.0: frontier 3.0 closes [00,01); then a book tick at 0.8 (2.2 s behind its stream's
    # 5.0 > 2 s) and a trade at 0.9 (its stream's clock is 0.5: not behind, but [00,01) closed).
    bars, late = windows.add_batch(
        [book(5.0, "9", "11"), book(0.8, "9", "11"), trade(2, 0.9, "10", "1")], later
    )
    assert [(b.window.value, b.window_start) for b in bars] == [("1s", at(0))]
    assert [(index, lt.reason) for index, lt in late] == [
        (1, LateReason.BEHIND_STREAM),
        (2, LateReason.WINDOW_CLOSED),
    ]
    assert late[1][1].lateness == timedelta(seconds=4.1)  # the book clock (5.0) - 0.9


def test_facts_hold_integer_microseconds_and_the_quote_spread() -> None:
    trade_facts = facts_of(trade(10, 1.5, "100.50", "2", "SELL"))
    # 2026-01-02T13:00:01.5Z = 1767358801.5 s since the epoch.
    assert trade_facts == (
        True,
        1_767_358_801_500_000,
        "BINANCE",
        "BTCUSDT",
        Decimal("100.50"),
        Decimal("2"),
        Side.SELL,
        (1_767_358_801_500_000, 2, "10"),
    )
    quote = facts_of(book(0.25, "99.90", "100.10"))
    spread = Decimal("0.20")  # 100.10 - 99.90
    assert quote == (False, 1_767_358_800_250_000, "BINANCE", "BTCUSDT", spread, None, None, None)
    assert facts_of(book(0.25, None, "100.10"))[4] is None  # one side empty: no spread


def test_a_quiet_symbol_closes_its_windows_on_the_wall_clock() -> None:
    config = WindowsConfig(
        allowed_lateness=timedelta(seconds=2), idle_stream_timeout=timedelta(seconds=30)
    )
    windows = SymbolWindows(config)
    assert windows.idle_deadline() is None  # nothing open
    windows.add(trade(1, 0.5, "10", "1"), COMPUTED)
    windows.add(book(0.6, "9", "11"), COMPUTED)
    # Both streams must be silent for more than 30 s; [00,01) would then have closed already
    # (its end + 2 s is 2.4 s of event time after the clock, 0.6).
    assert windows.idle_deadline() == COMPUTED + timedelta(seconds=30, microseconds=1)
    assert windows.close_idle(COMPUTED + timedelta(seconds=30)) == []  # not yet idle
    # 31 s of silence: the clock is taken to be 0.6 + 31 = 31.6 s; 31.6 - 2 closes [00,01).
    later = COMPUTED + timedelta(seconds=31)
    closed = windows.close_idle(later)
    assert [(b.window.value, b.window_start, b.computed_time) for b in closed] == [
        ("1s", at(0), later)
    ]
    # The minute [00:00, 01:00) closes when the clock would reach 62 s: 61.4 s after 0.6.
    assert windows.idle_deadline() == COMPUTED + timedelta(seconds=61.4)
    assert windows.close_idle(COMPUTED + timedelta(seconds=61.3)) == []
    minute = windows.close_idle(COMPUTED + timedelta(seconds=61.4))
    assert [(b.window.value, b.trade_count, b.bbo_count) for b in minute] == [("1m", 1, 1)]
    assert windows.idle_deadline() is None
    # A straggler for a window closed that way is late, and changes nothing.
    bars, late = windows.add(trade(2, 59.0, "12", "1"), COMPUTED + timedelta(seconds=62))
    assert bars == []
    assert late is not None
    assert late.reason is LateReason.WINDOW_CLOSED


def test_a_restore_restarts_the_idle_timer() -> None:
    windows = SymbolWindows(WindowsConfig(idle_stream_timeout=timedelta(seconds=30)))
    windows.add(trade(1, 0.5, "10", "1"), COMPUTED)
    later = COMPUTED + timedelta(hours=1)
    windows.resumed(later)  # the flow was down for an hour: not a silence of the feed
    assert windows.close_idle(later + timedelta(seconds=30)) == []
    assert windows.idle_deadline() == later + timedelta(seconds=30, microseconds=1)
