"""Per-window market statistics computed from normalized ticks (:mod:`brokerflow.schemas.market`).

One ``BarClosed`` per (venue, symbol, window length, window start), emitted when the watermark
passes ``window_end``. Lateness policy: a closed bar never changes silently. Ticks that arrive
after their window closed go, unchanged, to a late stream; if a bar is ever restated, it is
republished with a higher ``revision`` and readers keep the highest one per key.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from brokerflow.schemas.base import (
    Message,
    NonNegativeDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
    format_decimal,
    format_utc,
    invalid_field,
)
from brokerflow.schemas.market import Venue

__all__ = ["BarClosed", "BarWindow"]

_UNIT_LENGTH = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}


class BarWindow(StrEnum):
    """The window lengths the flows compute; the value is the label used on the wire."""

    SECOND_1 = "1s"
    SECOND_5 = "5s"
    MINUTE_1 = "1m"
    MINUTE_5 = "5m"
    MINUTE_15 = "15m"
    HOUR_1 = "1h"
    DAY_1 = "1d"

    @property
    def duration(self) -> timedelta:
        return int(self.value[:-1]) * _UNIT_LENGTH[self.value[-1]]


class BarClosed(Message):
    """OHLCV, VWAP, aggressor split and spread statistics for one closed tumbling window.

    Trade fields (``open`` .. ``vwap``) are ``None`` when the window saw no trade, and spread
    fields when it saw no best bid/ask with both sides present. ``buy_volume`` and
    ``sell_volume`` count trades by aggressor; trades whose aggressor is unknown count only in
    ``volume``.
    """

    type: Literal["BarClosed"] = "BarClosed"
    venue: Venue
    symbol: Symbol
    window: BarWindow
    #: Inclusive start and exclusive end; ``window_end - window_start`` is the window's length.
    window_start: UtcDatetime
    window_end: UtcDatetime
    trade_count: int = Field(ge=0)
    open: PositiveDecimal | None
    high: PositiveDecimal | None
    low: PositiveDecimal | None
    close: PositiveDecimal | None
    volume: NonNegativeDecimal
    #: Volume-weighted average price: sum(price * quantity) / sum(quantity).
    vwap: PositiveDecimal | None
    buy_volume: NonNegativeDecimal
    sell_volume: NonNegativeDecimal
    #: Best bid/ask updates seen with both sides present, and their ask - bid statistics.
    bbo_count: int = Field(ge=0)
    spread_mean: NonNegativeDecimal | None
    spread_max: NonNegativeDecimal | None
    #: 0 when first published; a restatement carries a higher number (see the module docstring).
    revision: int = Field(default=0, ge=0)
    #: Equal to ``window_end``: the bar is a fact about the moment its window closed.
    event_time: UtcDatetime
    #: When the flow closed the bar (nautilus' ``ts_init``); minus ``event_time`` is its delay.
    computed_time: UtcDatetime

    @model_validator(mode="after")
    def _is_consistent(self) -> BarClosed:
        self._check_window()
        self._check_trades()
        self._check_spread()
        return self

    def _check_window(self) -> None:
        length = self.window_end - self.window_start
        if length != self.window.duration:
            raise invalid_field(
                "window_end",
                f"a {self.window.value} window ends {self.window.value} after it starts,"
                f" not {length}",
                format_utc(self.window_end),
            )
        if self.event_time != self.window_end:
            raise invalid_field(
                "event_time", "a bar's event time is its window end", format_utc(self.event_time)
            )

    def _check_trades(self) -> None:
        prices = {
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "vwap": self.vwap,
        }
        if self.trade_count == 0:
            for name, price in prices.items():
                if price is not None:
                    raise invalid_field(name, "must be null when tradeCount is 0", str(price))
            if self.volume != 0:
                raise invalid_field("volume", "must be 0 when tradeCount is 0", str(self.volume))
        else:
            for name, price in prices.items():
                if price is None:
                    raise invalid_field(name, "is required when tradeCount is above 0")
            if self.volume == 0:
                raise invalid_field("volume", "must be above 0 when tradeCount is above 0", "0")
            self._check_price_range()
        if self.buy_volume + self.sell_volume > self.volume:
            raise invalid_field(
                "buy_volume",
                f"buyVolume + sellVolume ({format_decimal(self.buy_volume + self.sell_volume)})"
                f" exceeds volume ({format_decimal(self.volume)})",
                format_decimal(self.buy_volume),
            )

    def _check_price_range(self) -> None:
        low, high = self.low, self.high
        if low is None or high is None:  # presence is checked by the caller
            return
        if low > high:
            raise invalid_field(
                "low",
                f"low {format_decimal(low)} is above high {format_decimal(high)}",
                format_decimal(low),
            )
        for name, price in (("open", self.open), ("close", self.close)):
            if price is not None and not low <= price <= high:
                raise invalid_field(
                    name,
                    f"{format_decimal(price)} is outside low..high"
                    f" ({format_decimal(low)}..{format_decimal(high)})",
                    format_decimal(price),
                )

    def _check_spread(self) -> None:
        for name, spread in (("spread_mean", self.spread_mean), ("spread_max", self.spread_max)):
            if self.bbo_count == 0 and spread is not None:
                raise invalid_field(name, "must be null when bboCount is 0", str(spread))
            if self.bbo_count > 0 and spread is None:
                raise invalid_field(name, "is required when bboCount is above 0")
        mean, peak = self.spread_mean, self.spread_max
        if mean is not None and peak is not None and mean > peak:
            raise invalid_field(
                "spread_mean",
                f"mean spread {format_decimal(mean)} is above max spread {format_decimal(peak)}",
                format_decimal(mean),
            )
