"""Properties of the window core over generated tapes (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.stats import BarWindow
from brokerflow.windows import Tick, WindowsConfig, compute_bars

T0 = datetime(2026, 1, 2, 13, 0, 58, tzinfo=UTC)  # tapes straddle a minute boundary
COMPUTED = datetime(2026, 1, 2, 14, 0, tzinfo=UTC)
LATENESS = timedelta(seconds=2)
CONFIG = WindowsConfig(allowed_lateness=LATENESS, idle_stream_timeout=timedelta(hours=1))

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000"), places=2)
quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("50"), places=3)
offsets_ms = st.integers(min_value=0, max_value=8_000)


@st.composite
def trades(draw: st.DrawFn, trade_id: int) -> Trade:
    when = T0 + timedelta(milliseconds=draw(offsets_ms))
    return Trade(
        venue="BINANCE",
        symbol="BTCUSDT",
        trade_id=str(trade_id),
        price=draw(prices),
        quantity=draw(quantities),
        aggressor_side=draw(st.sampled_from(["BUY", "SELL", None])),
        event_time=when,
        receive_time=when,
    )


@st.composite
def quotes(draw: st.DrawFn) -> BestBidAsk:
    when = T0 + timedelta(milliseconds=draw(offsets_ms))
    bid = draw(prices)
    ask = bid + draw(st.decimals(min_value=Decimal(0), max_value=Decimal(5), places=2))
    return BestBidAsk(
        venue="BINANCE",
        symbol="BTCUSDT",
        bid_price=bid,
        bid_quantity="1",
        ask_price=ask,
        ask_quantity="1",
        event_time=when,
        receive_time=when,
    )


@st.composite
def tapes(draw: st.DrawFn) -> list[Tick]:
    count = draw(st.integers(min_value=1, max_value=40))
    ticks: list[Tick] = [draw(trades(i)) for i in range(count)]
    ticks += draw(st.lists(quotes(), max_size=20))
    return sorted(ticks, key=lambda t: t.event_time)


@settings(max_examples=80, deadline=None)
@given(tapes())
def test_volume_is_conserved_across_window_lengths(tape: list[Tick]) -> None:
    bars, late = compute_bars(tape, COMPUTED, CONFIG)
    assert late == []  # in event-time order nothing is late
    traded = sum((t.quantity for t in tape if isinstance(t, Trade)), Decimal(0))
    for window in (BarWindow.SECOND_1, BarWindow.MINUTE_1):
        of_window = [b for b in bars if b.window is window]
        assert sum((b.volume for b in of_window), Decimal(0)) == traded
        assert sum(b.trade_count for b in of_window) == sum(isinstance(t, Trade) for t in tape)
        assert sum(b.bbo_count for b in of_window) == sum(isinstance(t, BestBidAsk) for t in tape)
        for b in of_window:
            assert b.buy_volume + b.sell_volume <= b.volume
            if b.trade_count:
                assert b.low is not None
                assert b.high is not None
                assert b.vwap is not None
                assert b.low <= b.high
                assert b.low <= b.vwap <= b.high


@settings(max_examples=80, deadline=None)
@given(tapes(), st.data())
def test_bars_do_not_depend_on_arrival_order_within_lateness(
    tape: list[Tick], data: st.DataObject
) -> None:
    # Delay every tick by less than the allowed lateness: arrival order = event time + delay.
    delays = data.draw(
        st.lists(
            st.integers(min_value=0, max_value=int(LATENESS / timedelta(milliseconds=1)) - 1),
            min_size=len(tape),
            max_size=len(tape),
        )
    )
    shuffled = [
        tick
        for _, _, tick in sorted(
            (tick.event_time + timedelta(milliseconds=delay), index, tick)
            for index, (tick, delay) in enumerate(zip(tape, delays, strict=True))
        )
    ]
    in_order, _ = compute_bars(tape, COMPUTED, CONFIG)
    reordered, late = compute_bars(shuffled, COMPUTED, CONFIG)
    assert late == []
    key = lambda b: (b.window.duration, b.window_start)  # noqa: E731
    assert sorted(reordered, key=key) == sorted(in_order, key=key)


@settings(max_examples=60, deadline=None)
@given(tapes(), st.integers(min_value=0, max_value=39))
def test_a_late_tick_never_changes_a_bar(tape: list[Tick], pick: int) -> None:
    # Replay one tick again far behind: it is refused and every bar stays as it was.
    reference, _ = compute_bars(tape, COMPUTED, CONFIG)
    straggler = tape[pick % len(tape)]
    ahead = straggler.model_copy(update={"event_time": tape[-1].event_time + timedelta(seconds=10)})
    late_copy = straggler.model_copy(update={"event_time": tape[0].event_time})
    bars, late = compute_bars([*tape, ahead, late_copy], COMPUTED, CONFIG)
    assert [lt.tick for lt in late] == [late_copy]
    untouched = {(b.window, b.window_start): b for b in reference}
    for b in bars:
        if b.window_start + b.window.duration <= tape[-1].event_time:
            assert b == untouched[(b.window, b.window_start)]
