"""The window maths of the stats flow: tumbling bars per symbol, with exact decimals.

Pure: no Bytewax, Kafka or database import. The flow (:mod:`brokerflow.flows.stats`) keeps one
:class:`SymbolWindows` per symbol in a stateful operator and feeds it the decoded ticks; the same
object runs in unit tests, in replays and live.

Windows
    Tumbling, aligned to the UTC epoch: a ``1s`` window starts on a whole second, a ``1m`` window
    on a whole minute. A window holds ``window_start <= event_time < window_end``, so a tick
    exactly on a boundary belongs to the *next* window.

Clocks, closing and lateness (the policy, as code in :meth:`SymbolWindows.add`)
    Each input *stream* (``trades`` and ``book``: they come from two topics whose consumption
    can skew by a whole poll batch) has its own clock per symbol: the highest event time it has
    delivered. The symbol's *frontier* is ``min(clocks of the active streams) -
    allowed_lateness``; every window whose end is at or before the frontier closes and yields
    its :class:`BarClosed`, once; the frontier never moves back. A stream is active unless it
    has delivered nothing for ``idle_stream_timeout`` of *wall-clock* time (a stream not yet
    seen counts as active, and infinitely behind, for that long after the symbol's first tick):
    a symbol without book tickers gets its bars that much later, but a replay in which one
    topic's backlog is read a batch ahead of the other's still closes nothing early.

    A tick is **late** when it is more than ``allowed_lateness`` behind the clock of its own
    stream, or when a window it belongs to has already closed. A late tick never enters a bar:
    the caller receives it back as a :class:`LateTick` (the flow sends it to
    ``market-late-ticks-v1`` and counts it). While no stream goes idle, a closed window's end is
    at or before every stream's clock minus the allowed lateness, so the second rule never fires
    before the first: lateness depends only on the order of ticks within one stream, not on how
    the two streams interleave. That is what makes restarts and ``-w 2`` give the same bars.

    :meth:`SymbolWindows.flush` closes every open window (the flow calls it at the end of its
    input); the closed frontier is kept, so a tick for a flushed window later is late too.

Rounding
    Sums, volumes, high/low/open/close and ``spread_max`` are exact. ``vwap`` and ``spread_mean``
    are divisions: computed with 60 significant digits and quantized to :data:`PRICE_DECIMALS`
    (8) decimal places, half-even (Binance's price precision, finer than any B3 tick), everywhere.

Empty sides
    A window that saw book tickers but no trade yields a bar with ``trade_count == 0``, null
    prices and zero volumes; a window that saw trades but no two-sided quote has null spread
    fields. A window that saw nothing yields no bar. Open and close are the trades with the
    lowest and highest ``(event_time, trade_id)``, so a bar does not depend on arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum

from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.orders import Side
from brokerflow.schemas.stats import BarClosed, BarWindow

__all__ = [
    "DEFAULT_ALLOWED_LATENESS",
    "DEFAULT_IDLE_STREAM_TIMEOUT",
    "DEFAULT_WINDOWS",
    "PRICE_DECIMALS",
    "BarAccumulator",
    "LateReason",
    "LateTick",
    "Stream",
    "SymbolWindows",
    "Tick",
    "WindowsConfig",
    "bar_key",
    "compute_bars",
    "quantize_price",
    "sort_bars",
    "stream_of",
    "window_bounds",
]

Tick = Trade | BestBidAsk

#: Decimal places of ``vwap`` and ``spread_mean`` (the only two divided values).
PRICE_DECIMALS = 8
_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMALS)
_DIVISION = Context(prec=60)

DEFAULT_WINDOWS: tuple[BarWindow, ...] = (BarWindow.SECOND_1, BarWindow.MINUTE_1)
DEFAULT_ALLOWED_LATENESS = timedelta(seconds=2)
DEFAULT_IDLE_STREAM_TIMEOUT = timedelta(seconds=30)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = timedelta(0)


class Stream(StrEnum):
    """The input streams that each keep a clock (one per source topic)."""

    TRADES = "trades"
    BOOK = "book"


class LateReason(StrEnum):
    #: More than the allowed lateness behind the latest tick of its own stream.
    BEHIND_STREAM = "BEHIND_STREAM"
    #: Its window had already closed (the other stream, or the end of input, closed it).
    WINDOW_CLOSED = "WINDOW_CLOSED"


def stream_of(tick: Tick) -> Stream:
    return Stream.TRADES if isinstance(tick, Trade) else Stream.BOOK


def quantize_price(value: Decimal) -> Decimal:
    """The one rounding rule for divided prices: :data:`PRICE_DECIMALS` places, half-even."""
    return value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def window_bounds(event_time: datetime, window: BarWindow) -> tuple[datetime, datetime]:
    """``[start, end)`` of the window holding ``event_time``, aligned to the UTC epoch."""
    if event_time.tzinfo is None or event_time.utcoffset() is None:
        raise ValueError(f"{event_time!r} is naive; windows are assigned in UTC")
    length = window.duration
    start = event_time - (event_time - _EPOCH) % length  # timedelta maths: exact microseconds
    return start, start + length


def _trade_order(trade: Trade) -> tuple[datetime, int, str]:
    # Numeric ids (Binance) compare as numbers, so "10" sorts after "9"; others as text.
    ident = trade.trade_id
    return (trade.event_time, len(ident) if ident.isdigit() else 0, ident)


@dataclass(frozen=True, slots=True)
class WindowsConfig:
    windows: tuple[BarWindow, ...] = DEFAULT_WINDOWS
    allowed_lateness: timedelta = DEFAULT_ALLOWED_LATENESS
    idle_stream_timeout: timedelta = DEFAULT_IDLE_STREAM_TIMEOUT
    streams: tuple[Stream, ...] = (Stream.TRADES, Stream.BOOK)
    #: ``(window, length)`` pairs, shortest first (derived; saves an enum lookup per tick).
    lengths: tuple[tuple[BarWindow, timedelta], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("at least one window length is needed")
        if self.allowed_lateness < timedelta(0) or self.idle_stream_timeout < timedelta(0):
            raise ValueError("allowed_lateness and idle_stream_timeout must not be negative")
        lengths = sorted(((w, w.duration) for w in self.windows), key=lambda pair: pair[1])
        object.__setattr__(self, "lengths", tuple(lengths))


@dataclass(slots=True)
class BarAccumulator:
    """Running totals of one (venue, symbol, window, start): O(1) memory whatever the volume."""

    venue: str
    symbol: str
    window: BarWindow
    window_start: datetime
    window_end: datetime
    trade_count: int = 0
    open_key: tuple[datetime, int, str] | None = None
    open: Decimal | None = None
    close_key: tuple[datetime, int, str] | None = None
    close: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    volume: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    buy_volume: Decimal = Decimal(0)
    sell_volume: Decimal = Decimal(0)
    bbo_count: int = 0
    spread_sum: Decimal = Decimal(0)
    spread_max: Decimal | None = None

    def add_trade(self, trade: Trade) -> None:
        price, quantity, order = trade.price, trade.quantity, _trade_order(trade)
        self.trade_count += 1
        if self.open_key is None or order < self.open_key:
            self.open_key, self.open = order, price
        if self.close_key is None or order > self.close_key:
            self.close_key, self.close = order, price
        self.high = price if self.high is None else max(self.high, price)
        self.low = price if self.low is None else min(self.low, price)
        self.volume += quantity
        self.notional += price * quantity
        if trade.aggressor_side is Side.BUY:
            self.buy_volume += quantity
        elif trade.aggressor_side is Side.SELL:
            self.sell_volume += quantity

    def add_quote(self, quote: BestBidAsk) -> None:
        spread = quote.spread
        if spread is None:  # one side of the book is empty: no spread to average
            return
        self.bbo_count += 1
        self.spread_sum += spread
        self.spread_max = spread if self.spread_max is None else max(self.spread_max, spread)

    def to_bar(self, computed_time: datetime) -> BarClosed:
        vwap = (
            quantize_price(_DIVISION.divide(self.notional, self.volume))
            if self.trade_count
            else None
        )
        spread_mean = (
            quantize_price(_DIVISION.divide(self.spread_sum, Decimal(self.bbo_count)))
            if self.bbo_count
            else None
        )
        return BarClosed(
            venue=self.venue,
            symbol=self.symbol,
            window=self.window,
            window_start=self.window_start,
            window_end=self.window_end,
            trade_count=self.trade_count,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            vwap=vwap,
            buy_volume=self.buy_volume,
            sell_volume=self.sell_volume,
            bbo_count=self.bbo_count,
            spread_mean=spread_mean,
            spread_max=self.spread_max,
            event_time=self.window_end,
            computed_time=computed_time,
        )


@dataclass(frozen=True, slots=True)
class LateTick:
    """A tick refused by the windows, with why and by how much (for the late stream and metrics)."""

    tick: Tick
    reason: LateReason
    #: How far behind the symbol's most advanced clock the tick's event time was.
    lateness: timedelta


_WindowKey = tuple[BarWindow, datetime, str]  # (window, start, venue)


@dataclass(slots=True)
class SymbolWindows:
    """The open windows and stream clocks of one symbol; the state the flow snapshots."""

    config: WindowsConfig = field(default_factory=WindowsConfig)
    #: Per stream: the highest event time delivered.
    clocks: dict[Stream, datetime] = field(default_factory=dict)
    #: Per stream: the wall-clock time of its last tick (idle detection only).
    last_arrival: dict[Stream, datetime] = field(default_factory=dict)
    #: Wall-clock time of the symbol's first tick (how long an unseen stream is waited for).
    first_arrival: datetime | None = None
    #: Every window ending at or before this has closed (never moves back).
    closed_through: datetime | None = None
    open_windows: dict[_WindowKey, BarAccumulator] = field(default_factory=dict)

    def resumed(self, now: datetime) -> None:
        """Restart the idle timers after a restore: downtime is not a stream going quiet."""
        self.last_arrival = dict.fromkeys(self.last_arrival, now)
        if self.first_arrival is not None:
            self.first_arrival = now

    def frontier(self, now: datetime) -> datetime | None:
        """Windows ending at or before this instant may close; ``None`` while one is awaited."""
        config, clocks, last_arrival = self.config, self.clocks, self.last_arrival
        timeout = config.idle_stream_timeout
        held: list[datetime] = []
        for stream in config.streams:
            clock = clocks.get(stream)
            if clock is None:
                waited_since = self.first_arrival
                if waited_since is not None and now - waited_since <= timeout:
                    return None  # not seen yet, still expected
                continue
            if now - last_arrival[stream] <= timeout:
                held.append(clock)
        if not held:  # every expected stream idle: follow whatever still moves
            held = list(clocks.values())
        if not held:
            return None
        return min(held) - config.allowed_lateness

    def add(self, tick: Tick, now: datetime) -> tuple[list[BarClosed], LateTick | None]:
        """Feed one tick at wall-clock ``now``: the bars it closed, and the tick if it was late.

        ``now`` is also each bar's ``computed_time``.
        """
        is_trade = isinstance(tick, Trade)
        stream = Stream.TRADES if is_trade else Stream.BOOK
        when = tick.event_time
        if self.first_arrival is None:
            self.first_arrival = now
        self.last_arrival[stream] = now
        clocks = self.clocks
        own_clock = clocks.get(stream)
        config = self.config
        lengths = config.lengths
        since_epoch = when - _EPOCH
        late: LateTick | None = None
        if own_clock is not None and when < own_clock - config.allowed_lateness:
            leader = max(clocks.values(), default=when)
            late = LateTick(tick, LateReason.BEHIND_STREAM, leader - when)
        elif self.closed_through is not None:
            shortest = lengths[0][1]  # the end of the shortest window holding the tick
            if when - since_epoch % shortest + shortest <= self.closed_through:
                leader = max(clocks.values(), default=when)
                late = LateTick(tick, LateReason.WINDOW_CLOSED, max(leader - when, _ZERO))
        if late is not None:
            return self._close_through(self.frontier(now), now), late
        open_windows = self.open_windows
        venue = tick.venue
        for window, length in lengths:
            start = when - since_epoch % length
            key = (window, start, venue)
            accumulator = open_windows.get(key)
            if accumulator is None:
                accumulator = BarAccumulator(venue, tick.symbol, window, start, start + length)
                open_windows[key] = accumulator
            if is_trade:
                accumulator.add_trade(tick)  # type: ignore[arg-type]
            else:
                accumulator.add_quote(tick)  # type: ignore[arg-type]
        if own_clock is None or when > own_clock:
            clocks[stream] = when
        return self._close_through(self.frontier(now), now), None

    def _first_window_end(self, when: datetime) -> datetime:
        """The end of the shortest window holding ``when``: the first of its windows to close."""
        _, length = self.config.lengths[0]
        return when - (when - _EPOCH) % length + length

    def flush(self, now: datetime) -> list[BarClosed]:
        """Close every open window (end of input); later ticks for them will be late."""
        if not self.open_windows:
            return []
        last_end = max(acc.window_end for acc in self.open_windows.values())
        return self._close_through(last_end, now)

    def _close_through(self, frontier: datetime | None, now: datetime) -> list[BarClosed]:
        if frontier is None or (
            self.closed_through is not None and frontier <= self.closed_through
        ):
            return []
        self.closed_through = frontier
        closing = sorted(
            (key for key, acc in self.open_windows.items() if acc.window_end <= frontier),
            key=lambda key: (
                self.open_windows[key].window_end,
                self.open_windows[key].window_end - key[1],  # shorter windows first
                key[2],
            ),
        )
        return [self.open_windows.pop(key).to_bar(now) for key in closing]


def compute_bars(
    ticks: Iterable[Tick],
    computed_time: datetime,
    config: WindowsConfig | None = None,
) -> tuple[list[BarClosed], list[LateTick]]:
    """Run one symbol's ticks through :class:`SymbolWindows` and flush: all bars, all late ticks.

    A convenience for tests, replays and benchmarks; the flow drives :class:`SymbolWindows`
    itself so that it can snapshot between ticks.
    """
    windows = SymbolWindows(config or WindowsConfig())
    bars: list[BarClosed] = []
    late: list[LateTick] = []
    for tick in ticks:  # one wall-clock instant: no stream ever looks idle
        closed, refused = windows.add(tick, computed_time)
        bars.extend(closed)
        if refused is not None:
            late.append(refused)
    bars.extend(windows.flush(computed_time))
    return bars, late


def bar_key(bar: BarClosed) -> tuple[str, str, str, datetime]:
    """The identity of a bar, for upserts: (symbol, window, venue, window start)."""
    return (bar.symbol, bar.window.value, bar.venue, bar.window_start)


def sort_bars(bars: Sequence[BarClosed]) -> list[BarClosed]:
    return sorted(bars, key=lambda b: (b.symbol, b.window.duration, b.window_start, b.venue))
