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
    :meth:`SymbolWindows.close_idle` closes, live, the windows of a symbol whose every stream
    has been silent for more than ``idle_stream_timeout``, as if its event clock had kept pace
    with the wall clock since its last tick (:meth:`SymbolWindows.idle_deadline` says when).

Batches and integers
    :meth:`SymbolWindows.add_facts` takes a whole batch of one symbol's ticks as plain
    :data:`TickFacts` tuples (event times in epoch microseconds) with one wall-clock ``now``: each
    tick is checked against the frontier reached so far in the batch, and the windows that
    frontier passed close once, at the end, so the bars and late ticks are those of feeding the
    ticks one by one. Window starts are ``t - t % length`` on integers; prices and sizes stay
    ``Decimal`` (same exponents, same rounding as before), datetimes appear only in the bars.

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
from typing import Any

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
    "TickFacts",
    "WindowsConfig",
    "bar_key",
    "compute_bars",
    "facts_of",
    "quantize_price",
    "quote_facts",
    "sort_bars",
    "stream_of",
    "trade_facts",
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
_US = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    """Microseconds since the UTC epoch: the core's clock unit (exact, like timedelta maths)."""
    return (moment - _EPOCH) // _US


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


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
    #: ``(length in microseconds, window)`` pairs, shortest first (derived: integer maths).
    lengths_us: tuple[tuple[int, BarWindow], ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    #: ``allowed_lateness`` in microseconds (derived).
    lateness_us: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("at least one window length is needed")
        if self.allowed_lateness < timedelta(0) or self.idle_stream_timeout < timedelta(0):
            raise ValueError("allowed_lateness and idle_stream_timeout must not be negative")
        lengths = sorted(((w, w.duration) for w in self.windows), key=lambda pair: pair[1])
        object.__setattr__(self, "lengths", tuple(lengths))
        object.__setattr__(self, "lengths_us", tuple((length // _US, w) for w, length in lengths))
        object.__setattr__(self, "lateness_us", self.allowed_lateness // _US)


@dataclass(slots=True)
class BarAccumulator:
    """Running totals of one (venue, symbol, window, start): O(1) memory whatever the volume.

    Times are epoch microseconds; :meth:`SymbolWindows.add_facts` updates the fields inline (a
    method call per tick and window cost more than the arithmetic).
    """

    venue: str
    symbol: str
    window: BarWindow
    start_us: int
    end_us: int
    trade_count: int = 0
    #: ``(event time us, id length if numeric else 0, trade id)``: numeric ids compare as numbers.
    open_key: tuple[int, int, str] | None = None
    open: Decimal | None = None
    close_key: tuple[int, int, str] | None = None
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
        window_end = _moment(self.end_us)
        return BarClosed(
            venue=self.venue,
            symbol=self.symbol,
            window=self.window,
            window_start=_moment(self.start_us),
            window_end=window_end,
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
            event_time=window_end,
            computed_time=computed_time,
        )


@dataclass(frozen=True, slots=True)
class LateTick:
    """A tick refused by the windows, with why and by how much (for the late stream and metrics)."""

    tick: Tick
    reason: LateReason
    #: How far behind the symbol's most advanced clock the tick's event time was.
    lateness: timedelta


_WindowKey = tuple[int, int, str]  # (length us, start us, venue)

#: What the windows need of a tick, as a plain tuple (cheap to build, unpacked in one step):
#: ``(is_trade, event time us, venue, symbol, price, quantity, aggressor side, order key)`` for
#: a trade; ``(False, event time us, venue, symbol, spread or None, None, None, None)`` for a
#: quote. The order key is ``(event time us, id length if numeric else 0, trade id)``: numeric
#: ids (Binance) compare as numbers, so "10" sorts after "9"; others as text.
TickFacts = tuple[
    bool,
    int,
    str,
    str,
    Decimal | None,
    Decimal | None,
    Side | None,
    tuple[int, int, str] | None,
]


def trade_facts(
    when_us: int,
    venue: str,
    symbol: str,
    trade_id: str,
    price: Decimal,
    quantity: Decimal,
    side: Side | None,
) -> TickFacts:
    order = (when_us, len(trade_id) if trade_id.isdigit() else 0, trade_id)
    return (True, when_us, venue, symbol, price, quantity, side, order)


def quote_facts(
    when_us: int,
    venue: str,
    symbol: str,
    bid: Decimal | None,
    ask: Decimal | None,
) -> TickFacts:
    spread = None if bid is None or ask is None else ask - bid
    return (False, when_us, venue, symbol, spread, None, None, None)


def facts_of(tick: Tick) -> TickFacts:
    """The windows' view of a ``Trade`` or ``BestBidAsk``."""
    when = _micros(tick.event_time)
    if isinstance(tick, Trade):
        return trade_facts(
            when,
            tick.venue,
            tick.symbol,
            tick.trade_id,
            tick.price,
            tick.quantity,
            tick.aggressor_side,
        )
    return quote_facts(when, tick.venue, tick.symbol, tick.bid_price, tick.ask_price)


_TRADES, _BOOK, _BUY, _SELL = Stream.TRADES, Stream.BOOK, Side.BUY, Side.SELL


@dataclass(slots=True)
class SymbolWindows:
    """The open windows and stream clocks of one symbol; the state the flow snapshots.

    Event times are kept as epoch microseconds (integer maths: no ``timedelta`` per tick);
    Decimal arithmetic is kept for prices and sizes, so bars are exactly those of per-tick
    ``Decimal``/``datetime`` maths.
    """

    config: WindowsConfig = field(default_factory=WindowsConfig)
    #: Per stream: the highest event time delivered (epoch microseconds).
    clocks: dict[Stream, int] = field(default_factory=dict)
    #: Per stream: the wall-clock time of its last tick (idle detection only).
    last_arrival: dict[Stream, datetime] = field(default_factory=dict)
    #: Wall-clock time of the symbol's first tick (how long an unseen stream is waited for).
    first_arrival: datetime | None = None
    #: Every window ending at or before this (epoch microseconds) has closed (never moves back).
    closed_through: int | None = None
    open_windows: dict[_WindowKey, BarAccumulator] = field(default_factory=dict)

    def resumed(self, now: datetime) -> None:
        """Restart the idle timers after a restore: downtime is not a stream going quiet."""
        self.last_arrival = dict.fromkeys(self.last_arrival, now)
        if self.first_arrival is not None:
            self.first_arrival = now

    def _frontier_us(self, now: datetime) -> int | None:
        config, clocks, last_arrival = self.config, self.clocks, self.last_arrival
        timeout = config.idle_stream_timeout
        held: list[int] = []
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
        return min(held) - config.lateness_us

    def _all_active(self, now: datetime) -> bool:
        """Whether every stream has a clock and is not idle at ``now``."""
        clocks, last_arrival = self.clocks, self.last_arrival
        timeout = self.config.idle_stream_timeout
        return all(
            stream in clocks and now - last_arrival[stream] <= timeout
            for stream in self.config.streams
        )

    def frontier(self, now: datetime) -> datetime | None:
        """Windows ending at or before this instant may close; ``None`` while one is awaited."""
        micros = self._frontier_us(now)
        return None if micros is None else _moment(micros)

    def add(self, tick: Tick, now: datetime) -> tuple[list[BarClosed], LateTick | None]:
        """Feed one tick at wall-clock ``now``: the bars it closed, and the tick if it was late.

        ``now`` is also each bar's ``computed_time``.
        """
        bars, late = self.add_batch((tick,), now)
        return bars, late[0][1] if late else None

    def add_batch(
        self, ticks: Sequence[Tick], now: datetime
    ) -> tuple[list[BarClosed], list[tuple[int, LateTick]]]:
        """:meth:`add_facts` for models: closed bars, and the late ticks with their index."""
        bars, late = self.add_facts([facts_of(tick) for tick in ticks], now)
        return bars, [
            (index, LateTick(ticks[index], reason, _US * behind)) for index, reason, behind in late
        ]

    def add_facts(
        self, ticks: Sequence[TickFacts], now: datetime
    ) -> tuple[list[BarClosed], list[tuple[int, LateReason, int]]]:
        """Feed ticks in arrival order at one wall-clock ``now``.

        Returns the closed bars and, per late tick, ``(index, reason, microseconds behind the
        leading clock)``. Exactly :meth:`add` tick by tick with the same ``now`` (the unit tests
        pin it), but the closing (sort, pop, build bars) runs once at the end: within the batch,
        a tick is checked against the frontier reached so far, so the same ticks are late and the
        same bars come out, in the same order.
        """
        if not ticks:
            return [], []
        config = self.config
        lateness = config.lateness_us
        lengths = config.lengths_us
        shortest = lengths[0][0]
        clocks, last_arrival = self.clocks, self.last_arrival
        if self.first_arrival is None:
            self.first_arrival = now
        closed = pending = self.closed_through
        late: list[tuple[int, LateReason, int]] = []
        # Per window length, the window the previous tick went to: [length, window, start, end,
        # venue, accumulator]. Consecutive ticks mostly share it, which saves the modulo and the
        # dict lookup. A closed window is never found again here: a tick for it is late.
        slots: list[list[Any]] = [[length, window, 0, 0, None, None] for length, window in lengths]
        # The frontier changes only when a clock advances, or (wall clock) at the batch's start.
        refresh = True
        # Once every stream has a clock and delivered within the idle timeout, all stay active
        # for the rest of the batch (``now`` is fixed, a delivering stream is active).
        steady = False
        frontier: int | None
        for index, (is_trade, when, venue, symbol, price, quantity, side, order) in enumerate(
            ticks
        ):
            stream = _TRADES if is_trade else _BOOK
            last_arrival[stream] = now
            own = clocks.get(stream)
            if own is not None and when < own - lateness:
                late.append((index, LateReason.BEHIND_STREAM, max(clocks.values()) - when))
            elif pending is not None and when - when % shortest + shortest <= pending:
                leader = max(clocks.values(), default=when)
                late.append((index, LateReason.WINDOW_CLOSED, max(leader - when, 0)))
            else:
                if is_trade:
                    notional = price * quantity
                    for slot in slots:
                        if slot[2] <= when < slot[3] and slot[4] == venue:
                            acc = slot[5]
                        else:
                            acc = self._window(slot, when, venue, symbol)
                        acc.trade_count += 1
                        open_key = acc.open_key
                        if open_key is None:
                            acc.open_key = acc.close_key = order
                            acc.open = acc.close = acc.high = acc.low = price
                        else:
                            if order < open_key:
                                acc.open_key, acc.open = order, price
                            if order > acc.close_key:  # type: ignore[operator]
                                acc.close_key, acc.close = order, price
                            if price > acc.high:  # type: ignore[operator]
                                acc.high = price
                            if price < acc.low:  # type: ignore[operator]
                                acc.low = price
                        acc.volume += quantity
                        acc.notional += notional
                        if side is _BUY:
                            acc.buy_volume += quantity
                        elif side is _SELL:
                            acc.sell_volume += quantity
                else:
                    # A quote's facts carry its spread in the price slot (None: one side empty).
                    for slot in slots:
                        if slot[2] <= when < slot[3] and slot[4] == venue:
                            acc = slot[5]
                        else:
                            acc = self._window(slot, when, venue, symbol)
                        if price is None:  # one side of the book is empty: nothing to average
                            continue
                        acc.bbo_count += 1
                        acc.spread_sum += price
                        if acc.spread_max is None or price > acc.spread_max:
                            acc.spread_max = price
                if own is None or when > own:
                    clocks[stream] = when
                    refresh = True
            if refresh:
                refresh = False
                if steady:  # every stream active all batch long: the slowest clock decides
                    frontier = min(clocks.values()) - lateness
                else:
                    frontier = self._frontier_us(now)
                    # Only when the clocks are exactly those of the configured streams.
                    steady = self._all_active(now) and len(clocks) == len(config.streams)
                if frontier is not None and (pending is None or frontier > pending):
                    pending = frontier
        bars = self._close_through(pending, now) if pending != closed else []
        return bars, late

    def _window(self, slot: list[Any], when: int, venue: str, symbol: str) -> BarAccumulator:
        """The accumulator of ``slot``'s length holding ``when``; ``slot`` now points at it."""
        length, window = slot[0], slot[1]
        start = when - when % length
        key = (length, start, venue)
        acc = self.open_windows.get(key)
        if acc is None:
            acc = self.open_windows[key] = BarAccumulator(
                venue, symbol, window, start, start + length
            )
        slot[2:] = start, start + length, venue, acc
        return acc

    def idle_deadline(self) -> datetime | None:
        """When (wall clock) :meth:`close_idle` will next close a window if no tick comes first.

        ``None`` when no window is open. At the earliest ``idle_stream_timeout`` after the
        symbol's last tick (every stream idle), and when its first open window would close had
        its event clock kept pace with the wall clock since that tick.
        """
        if not self.open_windows or not self.last_arrival or not self.clocks:
            return None
        config = self.config
        first_end = min(acc.end_us for acc in self.open_windows.values())
        behind = _US * (first_end + config.lateness_us - max(self.clocks.values()))
        wait = max(config.idle_stream_timeout + _US, behind)  # idle: strictly past the timeout
        return max(self.last_arrival.values()) + wait

    def close_idle(self, now: datetime) -> list[BarClosed]:
        """Close what a quiet symbol's windows would have closed had its clock kept running.

        Live, a symbol that stops trading never gets a later tick to close its last windows.
        Once every stream has been silent for more than ``idle_stream_timeout`` (wall clock),
        the event clock is taken to have advanced with the wall clock since the last tick, and
        the windows that clock closes (end + allowed lateness) close; later ticks for them are
        late, as after :meth:`flush`. A replay reads its backlog without such silences, and
        :meth:`resumed` restarts the timers after a restore, so a replay closes the same
        windows through the ordinary frontier.
        """
        if not self.open_windows or not self.last_arrival or not self.clocks:
            return []
        silent = now - max(self.last_arrival.values())
        if silent <= self.config.idle_stream_timeout:
            return []
        virtual = max(self.clocks.values()) + silent // _US
        return self._close_through(virtual - self.config.lateness_us, now)

    def flush(self, now: datetime) -> list[BarClosed]:
        """Close every open window (end of input); later ticks for them will be late."""
        if not self.open_windows:
            return []
        last_end = max(acc.end_us for acc in self.open_windows.values())
        return self._close_through(last_end, now)

    def _close_through(self, frontier: int | None, now: datetime) -> list[BarClosed]:
        if frontier is None or (
            self.closed_through is not None and frontier <= self.closed_through
        ):
            return []
        self.closed_through = frontier
        open_windows = self.open_windows
        # (end, length: shorter windows first, venue); keys are (length, start, venue).
        closing = sorted(
            (key[1] + key[0], key[0], key[2], key)
            for key, acc in open_windows.items()
            if acc.end_us <= frontier
        )
        return [open_windows.pop(item[3]).to_bar(now) for item in closing]


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
