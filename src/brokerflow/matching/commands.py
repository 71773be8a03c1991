"""Commands the matching core accepts, in book units (integer ticks and lots).

They are slotted dataclasses, cheap to build at the edge and cheap to read in the hot path (a
named tuple's fields cost several times more to read on CPython 3.11). Treat them as immutable:
the engine never changes a command, and copies into its events whatever it needs, so a tape of
commands can be replayed twice. The edge
(:class:`~brokerflow.matching.exchange.Exchange`, the ``brokerflow match`` replay) converts wire
decimals with :class:`~brokerflow.matching.rules.SymbolRules`; when a price or quantity does not
convert (off the tick grid, not a whole number of lots) it sends :class:`Reject` instead, so that
the engine, the only place that numbers events, still answers with an ``OrderRejected``.

``event_time`` is an ISO 8601 UTC string, passed through to every event the command causes: the
core has no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

__all__ = [
    "AMEND_ORDER",
    "BUY",
    "CANCEL_ORDER",
    "DAY",
    "FOK",
    "GTC",
    "IOC",
    "LIMIT",
    "MARKET",
    "PLACE_ORDER",
    "SELL",
    "Amend",
    "Cancel",
    "CloseSession",
    "Command",
    "NewOrder",
    "Reject",
    "SetReferencePrice",
]

# Plain strings, equal to the values of the schema enums (``Side.BUY == "BUY"``), so the core
# needs no import from the wire layer and either may be passed in.
BUY: Final = "BUY"
SELL: Final = "SELL"
LIMIT: Final = "LIMIT"
MARKET: Final = "MARKET"
GTC: Final = "GTC"
DAY: Final = "DAY"
IOC: Final = "IOC"
FOK: Final = "FOK"

#: Wire names of the commands, as carried by ``OrderDuplicateIgnored.command``.
PLACE_ORDER: Final = "PlaceOrder"
CANCEL_ORDER: Final = "CancelOrder"
AMEND_ORDER: Final = "AmendOrder"


@dataclass(slots=True)
class NewOrder:
    """Place an order. ``price`` is in ticks (``None`` for MARKET), ``quantity`` in lots."""

    symbol: str
    order_id: str
    account_id: str
    side: str
    order_type: str
    time_in_force: str
    quantity: int
    price: int | None
    event_time: str


@dataclass(slots=True)
class Cancel:
    """Cancel a resting order (reason ``USER``)."""

    symbol: str
    order_id: str
    event_time: str


@dataclass(slots=True)
class Amend:
    """Change a resting order's total quantity (lots) and/or price (ticks); ``None`` keeps it."""

    symbol: str
    order_id: str
    quantity: int | None
    price: int | None
    event_time: str


@dataclass(slots=True)
class CloseSession:
    """End of the trading session: every resting DAY order expires."""

    symbol: str
    event_time: str


@dataclass(slots=True)
class SetReferencePrice:
    """The market-data pipeline's last price, for price bands. Emits no event.

    A decimal, not ticks: the reference need not sit on the tick grid.
    """

    symbol: str
    price: Decimal


@dataclass(slots=True)
class Reject:
    """A PlaceOrder or AmendOrder the edge could not convert to book units.

    ``command`` is :data:`PLACE_ORDER` or :data:`AMEND_ORDER`; ``reason`` a machine-readable code
    (``TICK_SIZE``, ``LOT_SIZE``). The engine still applies the duplicate check (PlaceOrder) or the
    unknown-order check (AmendOrder) first, so answers do not depend on where a check runs.
    """

    symbol: str
    order_id: str
    account_id: str | None
    command: str
    reason: str
    detail: str
    event_time: str


Command = NewOrder | Cancel | Amend | CloseSession | SetReferencePrice | Reject
