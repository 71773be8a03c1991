"""Pure: what the dashboard shows, folded from the stream (bars, the exchange's book and trades).

:class:`Board` keeps, per symbol, the newest bars of each window and venue, a copy of the
exchange's top-N book (snapshots replace it, updates are applied in sequence, a gap marks it
stale until the next snapshot, as a Coinbase level2 or Binance depth client does) and the last
trades; :meth:`Board.tile` turns that into a tile. No I/O: the service feeds it records and
sends what it returns to the browsers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from brokerflow.schemas.base import format_decimal, format_utc
from brokerflow.schemas.book import BookLevel, BookSnapshot, BookUpdate
from brokerflow.schemas.stats import BarClosed, BarWindow
from brokerflow.schemas.trades import TradeExecuted

__all__ = ["STALE_AFTER", "Board", "BookCopy", "bar_json"]

#: A symbol whose newest bar ended longer ago than this is shown stale (red).
STALE_AFTER = timedelta(seconds=10)
_TRADES_KEPT = 50


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def bar_json(bar: BarClosed) -> dict[str, Any]:
    """A bar as the page draws it: epoch seconds for the chart, decimals as text."""
    return {
        "symbol": bar.symbol,
        "venue": bar.venue,
        "window": bar.window.value,
        "time": int(bar.window_start.timestamp()),
        "open": _text(bar.open),
        "high": _text(bar.high),
        "low": _text(bar.low),
        "close": _text(bar.close),
        "volume": _text(bar.volume),
        "vwap": _text(bar.vwap),
        "tradeCount": bar.trade_count,
        "spreadMean": _text(bar.spread_mean),
        "windowEnd": format_utc(bar.window_end),
        "computedTime": format_utc(bar.computed_time),
    }


@dataclass
class BookCopy:
    """The exchange's top-N book of one symbol, as its feed rebuilds it."""

    bids: dict[Decimal, BookLevel] = field(default_factory=dict)
    asks: dict[Decimal, BookLevel] = field(default_factory=dict)
    sequence: int = 0
    #: False until a snapshot, and after a gap until the next one.
    synced: bool = False

    def apply(self, message: BookSnapshot | BookUpdate) -> bool:
        """Apply one message; ``True`` when the copy changed and is in sync."""
        if isinstance(message, BookSnapshot):
            self.bids = {level.price: level for level in message.bids}
            self.asks = {level.price: level for level in message.asks}
            self.sequence, self.synced = message.sequence, True
            return True
        if not self.synced or message.sequence <= self.sequence:
            return False
        if message.sequence != self.sequence + 1:
            self.synced = False  # missed something: wait for the next snapshot
            return False
        for side, levels in ((self.bids, message.bids), (self.asks, message.asks)):
            for level in levels:
                if level.quantity == 0:
                    side.pop(level.price, None)
                else:
                    side[level.price] = level
        self.sequence = message.sequence
        return True

    def ladder(self) -> dict[str, Any]:
        def rows(side: dict[Decimal, BookLevel], best_first: bool) -> list[list[Any]]:
            ordered = sorted(side.values(), key=lambda lv: lv.price, reverse=best_first)
            return [[_text(lv.price), _text(lv.quantity), lv.orders] for lv in ordered]

        return {
            "sequence": self.sequence,
            "synced": self.synced,
            "bids": rows(self.bids, True),
            "asks": rows(self.asks, False),
        }


@dataclass
class _Symbol:
    #: (window, venue) -> the newest bar.
    latest: dict[tuple[str, str], BarClosed] = field(default_factory=dict)
    #: The close of the first priced bar seen: the tile's change is against it.
    first_close: Decimal | None = None
    book: BookCopy = field(default_factory=BookCopy)
    trades: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_TRADES_KEPT))


class Board:
    """Everything the page shows, per symbol."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols: dict[str, _Symbol] = {symbol: _Symbol() for symbol in symbols}

    def _of(self, symbol: str) -> _Symbol:
        found = self.symbols.get(symbol)
        if found is None:
            found = self.symbols[symbol] = _Symbol()
        return found

    def on_bar(self, bar: BarClosed) -> bool:
        """Keep the newest bar of its window and venue; ``True`` when it is newer."""
        state = self._of(bar.symbol)
        key = (bar.window.value, bar.venue)
        current = state.latest.get(key)
        if current is not None and current.window_start >= bar.window_start:
            return False
        state.latest[key] = bar
        if state.first_close is None and bar.close is not None:
            state.first_close = bar.close
        return True

    def on_book(self, message: BookSnapshot | BookUpdate) -> bool:
        return self._of(message.symbol).book.apply(message)

    def on_trade(self, trade: TradeExecuted) -> dict[str, Any]:
        row = {
            "symbol": trade.symbol,
            "tradeId": trade.trade_id,
            "price": _text(trade.price),
            "quantity": _text(trade.quantity),
            "side": trade.aggressor_side.value,
            "time": format_utc(trade.event_time),
        }
        self._of(trade.symbol).trades.appendleft(row)
        return row

    def _newest(self, state: _Symbol, window: BarWindow, traded: bool) -> BarClosed | None:
        bars = [
            bar
            for (label, _), bar in state.latest.items()
            if label == window.value and (bar.close is not None or not traded)
        ]
        return max(bars, key=lambda bar: (bar.window_end, bar.venue), default=None)

    def tile(self, symbol: str, now: datetime) -> dict[str, Any]:
        """Last price, change since the first bar seen, 1-minute VWAP and trades, the newest
        spread, and how fresh the newest bar is."""
        state = self._of(symbol)
        second = self._newest(state, BarWindow.SECOND_1, traded=False)
        priced = self._newest(state, BarWindow.SECOND_1, traded=True)
        minute = self._newest(state, BarWindow.MINUTE_1, traded=True)
        last = priced.close if priced is not None else (minute.close if minute else None)
        change = None
        if last is not None and state.first_close:
            change = (last - state.first_close) / state.first_close * 100
        newest = max((bar.window_end for bar in state.latest.values()), default=None)
        age = None if newest is None else (now - newest).total_seconds()
        return {
            "symbol": symbol,
            "last": _text(last),
            "changePct": None if change is None else f"{change:.2f}",
            "vwap1m": _text(minute.vwap) if minute else None,
            "tradesPerMin": minute.trade_count if minute else None,
            "spread": _text(second.spread_mean) if second else None,
            "venue": (priced or second or minute).venue if (priced or second or minute) else None,
            "ageS": None if age is None else round(age, 1),
            "stale": age is None or age > STALE_AFTER.total_seconds(),
            "barEnd": None if newest is None else format_utc(newest),
        }

    def tiles(self, now: datetime) -> list[dict[str, Any]]:
        return [self.tile(symbol, now) for symbol in self.symbols]

    def book(self, symbol: str) -> dict[str, Any]:
        state = self._of(symbol)
        return {"symbol": symbol, **state.book.ladder(), "trades": list(state.trades)}
