"""The exchange's own market data: its book, as snapshots and increments keyed by symbol.

``exchange-book-v1`` carries, per symbol and in one ``sequence`` (each message one more than the
previous, snapshots included), a ``BookSnapshot`` of the top N levels per side (the first
message, then every ``EXCHANGE_BOOK_SNAPSHOT_EVERY`` updates) and a ``BookUpdate`` after every
command that changed the top N: the levels whose aggregate changed, with their new quantity (0:
the level left the top N), plus the best bid and ask and whether they moved (L1). A consumer
keeps a copy by replacing it on a snapshot and applying updates; a jump in ``sequence`` means it
missed one and waits for the next snapshot (Binance's diff-depth and Coinbase's level2
conventions; :mod:`brokerflow.matching.marketdata` is the producing side)::

    {"type": "BookUpdate", "schemaVersion": 1, "venue": "BROKERFLOW", "symbol": "PETR4",
     "sequence": 42, "bids": [{"price": "38.49", "quantity": "0", "orders": 0}],
     "asks": [], "bestBid": {"price": "38.48", "quantity": "300", "orders": 2},
     "bestAsk": {"price": "38.50", "quantity": "100", "orders": 1}, "topChanged": true,
     "eventTime": "2026-06-25T13:30:00.000000Z"}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from brokerflow.schemas.base import (
    Message,
    NonNegativeDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
)
from brokerflow.schemas.market import Venue

__all__ = ["BookLevel", "BookSnapshot", "BookUpdate"]


class BookLevel(BaseModel):
    """One price level: the open quantity of its orders and how many they are."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel)

    price: PositiveDecimal
    #: 0 in an update: the level is gone from the top N.
    quantity: NonNegativeDecimal
    orders: int = Field(ge=0)


class BookSnapshot(Message):
    type: Literal["BookSnapshot"] = "BookSnapshot"
    venue: Venue = "BROKERFLOW"
    symbol: Symbol
    sequence: int = Field(ge=1)
    #: The top N levels, best first.
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    event_time: UtcDatetime


class BookUpdate(Message):
    type: Literal["BookUpdate"] = "BookUpdate"
    venue: Venue = "BROKERFLOW"
    symbol: Symbol
    sequence: int = Field(ge=1)
    #: Changed levels only, best first; quantity 0 removes one.
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    best_bid: BookLevel | None
    best_ask: BookLevel | None
    #: The best bid or ask moved (price or size): what an L1 subscriber reacts to.
    top_changed: bool
    event_time: UtcDatetime
