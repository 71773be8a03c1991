"""Events the core emits: plain tuples, turned into wire dicts only at the edge.

Building a pydantic model (or even a slotted object) per event would cost more than the matching
itself, so the engine appends tuples and :func:`brokerflow.matching.wire.to_wire` encodes them.
Every tuple starts with the same four fields::

    (type, codec, sequence, event_time, ...)

``type`` is the wire ``type`` (``"OrderFilled"``, ``"TradeExecuted"``...), ``codec`` the emitting
engine's :class:`EventCodec` (symbol, tick and lot sizes), ``sequence`` the per-symbol sequence
number. The rest, by type (prices in ticks, quantities in lots; ``closes_order`` is true when the
rejection answered a PlaceOrder, whose id is then closed)::

    OrderAccepted          order_id, account_id, side, order_type, time_in_force, quantity, price
    OrderRejected          order_id, account_id, filled, leaves, reason, detail, closes_order
    OrderPartiallyFilled   see below
    OrderFilled            see below
    OrderCancelled         order_id, account_id, filled, cancelled_quantity, reason
    OrderExpired           order_id, account_id, filled, expired_quantity
    OrderAmended           order_id, account_id, filled, leaves, quantity, price, kept_priority
    OrderDuplicateIgnored  order_id, command
    TradeExecuted          trade_number, price, quantity, aggressor_side, taker_order_id,
                           maker_order_id, taker_account_id, maker_account_id, maker_filled,
                           maker_leaves, taker_filled, taker_leaves

A fill is the exception to the common prefix: ``(type, trade, offset)``, pointing at the
``TradeExecuted`` tuple it belongs to. ``offset`` is 1 for the maker's fill and 2 for the taker's,
which is also how far its sequence number is from the trade's. A match then costs one full tuple
instead of three.

Read events through :func:`to_wire` (or the accessors below); the layout is internal and may
change.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from brokerflow.matching.rules import SymbolRules

__all__ = [
    "ORDER_ACCEPTED",
    "ORDER_AMENDED",
    "ORDER_CANCELLED",
    "ORDER_DUPLICATE_IGNORED",
    "ORDER_EXPIRED",
    "ORDER_FILLED",
    "ORDER_PARTIALLY_FILLED",
    "ORDER_REJECTED",
    "TRADE_EXECUTED",
    "Event",
    "EventCodec",
    "Reason",
    "event_account_id",
    "event_order_id",
    "event_sequence",
    "event_type",
]

ORDER_ACCEPTED: Final = "OrderAccepted"
ORDER_REJECTED: Final = "OrderRejected"
ORDER_PARTIALLY_FILLED: Final = "OrderPartiallyFilled"
ORDER_FILLED: Final = "OrderFilled"
ORDER_CANCELLED: Final = "OrderCancelled"
ORDER_EXPIRED: Final = "OrderExpired"
ORDER_AMENDED: Final = "OrderAmended"
ORDER_DUPLICATE_IGNORED: Final = "OrderDuplicateIgnored"
TRADE_EXECUTED: Final = "TradeExecuted"


class Reason(StrEnum):
    """Machine-readable ``reason`` codes of ``OrderRejected`` and ``OrderCancelled``."""

    # OrderRejected, for a PlaceOrder
    TICK_SIZE = "TICK_SIZE"  # price is not a whole number of ticks
    LOT_SIZE = "LOT_SIZE"  # quantity is not a whole number of lots
    PRICE_BAND = "PRICE_BAND"  # limit price too far from the reference price
    INVALID_PRICE = "INVALID_PRICE"  # LIMIT without a positive price, MARKET with one
    INVALID_QUANTITY = "INVALID_QUANTITY"  # not a positive number of lots
    INVALID_SIDE = "INVALID_SIDE"
    INVALID_ORDER_TYPE = "INVALID_ORDER_TYPE"
    INVALID_TIME_IN_FORCE = "INVALID_TIME_IN_FORCE"
    # OrderRejected, for a CancelOrder or AmendOrder (the order, if any, is unchanged)
    UNKNOWN_ORDER = "UNKNOWN_ORDER"  # no resting order with that id
    AMEND_BELOW_FILLED = "AMEND_BELOW_FILLED"  # new quantity not above the filled quantity
    # OrderCancelled
    USER = "USER"
    IOC_REMAINDER = "IOC_REMAINDER"
    FOK_UNFILLABLE = "FOK_UNFILLABLE"
    MARKET_NO_LIQUIDITY = "MARKET_NO_LIQUIDITY"
    SELF_TRADE = "SELF_TRADE"


#: An emitted event; see the module docstring for the layout.
Event = tuple[Any, ...]

# A cache of decimal texts must not grow without bound on a long tape of distinct quantities.
_TEXT_CACHE_LIMIT = 1 << 16


class _DecimalTexts(dict[int, str]):
    """``texts[n]`` is the plain decimal text of ``n * unit``, computed once per ``n``."""

    __slots__ = ("unit",)

    def __init__(self, unit: Decimal) -> None:
        super().__init__()
        self.unit = unit

    def __missing__(self, units: int) -> str:
        if len(self) >= _TEXT_CACHE_LIMIT:
            self.clear()
        text = format(units * self.unit, "f")
        self[units] = text
        return text


class EventCodec:
    """What an encoder needs to turn one engine's events into wire values.

    Prices print at tick precision (``38.50`` for tick 0.01) and quantities at lot precision, so
    the same book state always prints the same text.
    """

    __slots__ = ("price_texts", "quantity_texts", "rules", "symbol", "trade_id_prefix")

    def __init__(self, symbol: str, rules: SymbolRules) -> None:
        self.symbol = symbol
        self.rules = rules
        self.trade_id_prefix = f"{symbol}-T"
        self.price_texts = _DecimalTexts(rules.tick_size)
        self.quantity_texts = _DecimalTexts(rules.lot_size)

    def trade_id(self, trade_number: int) -> str:
        """``PETR4-T17``: derived from the per-symbol trade counter, so replays agree."""
        return f"{self.trade_id_prefix}{trade_number}"


def event_type(event: Event) -> str:
    """The wire ``type`` of an event, e.g. ``"TradeExecuted"``."""
    return event[0]


def event_sequence(event: Event) -> int:
    """The per-symbol sequence number of an event."""
    if len(event) == 3:  # a fill: (type, trade, offset)
        return event[1][2] + event[2]
    return event[2]


def event_account_id(event: Event) -> str | None:
    """The account of the order an order event is about (``None`` for a trade, a duplicate, or
    an order placed without one)."""
    kind = event[0]
    if kind in (TRADE_EXECUTED, ORDER_DUPLICATE_IGNORED):
        return None
    if len(event) == 3:  # a fill: the maker's (offset 1) or the taker's (offset 2)
        return event[1][11] if event[2] == 1 else event[1][10]
    return event[5]


def event_order_id(event: Event) -> str | None:
    """The order an order event is about (``None`` for a trade)."""
    kind = event[0]
    if kind == TRADE_EXECUTED:
        return None
    if len(event) == 3:  # a fill: the maker's (offset 1) or the taker's (offset 2)
        return event[1][9] if event[2] == 1 else event[1][8]
    return event[4]
