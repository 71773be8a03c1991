"""Normalized market ticks: the same three records whichever vendor produced them.

Each connector has its own small wire schema and one ``to_domain()`` step that yields these
(cryptofeed's normalized types). ``event_time`` is the venue's clock, ``receive_time`` ours
(nautilus' ``ts_event``/``ts_init``), so feed latency is always measurable.

Vendor fields each record is normalized from:

``Trade`` from a Binance ``<symbol>@trade`` frame (``m`` is "the buyer is the maker", so
``m: true`` means a SELL aggressor)::

    {"e": "trade", "E": 1767360600123, "s": "BTCUSDT", "t": 5120334417, "p": "94112.01000000",
     "q": "0.00106000", "T": 1767360600122, "m": true, "M": true}

    venue="BINANCE", symbol=s, trade_id=str(t), price=p, quantity=q,
    aggressor_side=SELL if m else BUY, event_time=T (ms since epoch, UTC)

and from our own exchange's ``TradeExecuted`` (venue ``"BROKERFLOW"``).

``BestBidAsk`` from a Binance ``<symbol>@bookTicker`` frame (spot frames carry no time, so the
connector's receive time stands in for ``event_time``)::

    {"u": 400900217, "s": "BTCUSDT", "b": "94112.00000000", "B": "1.20420000",
     "a": "94112.01000000", "A": "0.31000000"}

    bid_price=b, bid_quantity=B, ask_price=a, ask_quantity=A, update_id=u

``Quote`` from one entry of Brapi's ``GET /api/quote/{tickers}`` ``results`` (numbers arrive as
JSON floats: the connector parses them with ``parse_float=Decimal``)::

    {"symbol": "PETR4", "currency": "BRL", "regularMarketPrice": 38.12,
     "regularMarketDayHigh": 38.45, "regularMarketDayLow": 37.9, "regularMarketOpen": 38.0,
     "regularMarketPreviousClose": 37.9, "regularMarketVolume": 41234500,
     "regularMarketChange": 0.22, "regularMarketChangePercent": 0.58,
     "regularMarketTime": "2026-01-02T20:07:00.000Z"}

    venue="BRAPI", last_price=regularMarketPrice, day_high/day_low/day_open=regularMarketDay*,
    previous_close=regularMarketPreviousClose, volume=regularMarketVolume,
    change=regularMarketChange, change_percent=regularMarketChangePercent,
    event_time=regularMarketTime
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from brokerflow.schemas.base import (
    Currency,
    DecimalStr,
    Message,
    NonNegativeDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
    format_decimal,
    invalid_field,
)
from brokerflow.schemas.orders import Side

__all__ = ["BestBidAsk", "Quote", "Trade", "Venue"]

Id = Annotated[str, Field(min_length=1, max_length=64)]


def _venue(value: str) -> str:
    code = value.upper()
    if not (1 <= len(code) <= 32 and code.isascii() and code.replace("_", "").isalnum()):
        raise ValueError(f"{value!r} is not a venue (1-32 letters, digits, '_'; e.g. 'BINANCE')")
    return code


#: Who produced the tick: ``BINANCE``, ``BRAPI``, ``BROKERFLOW`` (our exchange); upper-cased.
Venue = Annotated[str, AfterValidator(_venue)]


class Trade(Message):
    """One print on a venue's tape."""

    type: Literal["Trade"] = "Trade"
    venue: Venue
    symbol: Symbol
    #: The venue's own trade id, as text (Binance's is a number, ours a string).
    trade_id: Id
    price: PositiveDecimal
    quantity: PositiveDecimal
    #: The side that crossed the spread; ``None`` when the vendor does not say.
    aggressor_side: Side | None = None
    event_time: UtcDatetime
    receive_time: UtcDatetime


class BestBidAsk(Message):
    """The top of one venue's book.

    A side is absent (price and quantity both ``None``) when that side of the book is empty. A
    crossed quote (bid above ask) is refused: downstream spread maths relies on bid <= ask, and a
    vendor that sends one belongs on the dead-letter stream, not in the averages.
    """

    type: Literal["BestBidAsk"] = "BestBidAsk"
    venue: Venue
    symbol: Symbol
    bid_price: PositiveDecimal | None
    bid_quantity: PositiveDecimal | None
    ask_price: PositiveDecimal | None
    ask_quantity: PositiveDecimal | None
    #: The vendor's book update id (Binance ``u``), when it has one: detects gaps and replays.
    update_id: int | None = Field(default=None, ge=0)
    event_time: UtcDatetime
    receive_time: UtcDatetime

    @model_validator(mode="after")
    def _sides_are_whole_and_uncrossed(self) -> BestBidAsk:
        if (self.bid_price is None) != (self.bid_quantity is None):
            raise invalid_field("bid_quantity", "bid price and bid quantity come together")
        if (self.ask_price is None) != (self.ask_quantity is None):
            raise invalid_field("ask_quantity", "ask price and ask quantity come together")
        bid, ask = self.bid_price, self.ask_price
        if bid is not None and ask is not None and bid > ask:
            raise invalid_field(
                "bid_price",
                f"crossed quote: bid {format_decimal(bid)} is above ask {format_decimal(ask)}",
                format_decimal(bid),
            )
        return self

    @property
    def spread(self) -> Decimal | None:
        """Ask minus bid, or ``None`` while a side is empty."""
        if self.bid_price is None or self.ask_price is None:
            return None
        return self.ask_price - self.bid_price


class Quote(Message):
    """A vendor's snapshot of a listed asset's trading day (Brapi for B3)."""

    type: Literal["Quote"] = "Quote"
    venue: Venue
    symbol: Symbol
    currency: Currency
    last_price: PositiveDecimal
    day_high: PositiveDecimal | None = None
    day_low: PositiveDecimal | None = None
    day_open: PositiveDecimal | None = None
    previous_close: PositiveDecimal | None = None
    #: Shares traded today.
    volume: NonNegativeDecimal | None = None
    #: ``last_price`` minus ``previous_close``, and the same as a percentage (2.5 means 2.5 %).
    change: DecimalStr | None = None
    change_percent: DecimalStr | None = None
    #: The vendor's market time of the snapshot.
    event_time: UtcDatetime
    receive_time: UtcDatetime

    @model_validator(mode="after")
    def _day_range_is_ordered(self) -> Quote:
        low, high = self.day_low, self.day_high
        if low is not None and high is not None and low > high:
            raise invalid_field(
                "day_low",
                f"day low {format_decimal(low)} is above day high {format_decimal(high)}",
                format_decimal(low),
            )
        return self
