"""The multi-symbol façade: one :class:`MatchingEngine` per symbol, decimals in, events out.

This is the edge between wire values and book units. :func:`place_command` and
:func:`amend_command` turn decimal prices and quantities into ticks and lots with the symbol's
:class:`SymbolRules`; a value off the grid becomes a :class:`Reject` (``TICK_SIZE`` before
``LOT_SIZE``), which the engine answers with ``OrderRejected``. Still pure: no I/O, no clock, no
pydantic (``apply`` reads the schema commands by attribute).

>>> from decimal import Decimal
>>> from brokerflow.matching.wire import to_wire
>>> exchange = Exchange({"PETR4": SymbolRules(lot_size=Decimal("100"))})
>>> [to_wire(e)["reason"] for e in exchange.place("PETR4", "o1", "a1", "BUY", "LIMIT",
...                                             Decimal("150"), Decimal("38.52"))]
['LOT_SIZE']
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from brokerflow.matching.commands import (
    AMEND_ORDER,
    GTC,
    PLACE_ORDER,
    Amend,
    Cancel,
    CloseSession,
    Command,
    NewOrder,
    Reject,
    SetReferencePrice,
)
from brokerflow.matching.engine import MatchingEngine
from brokerflow.matching.events import Event, Reason
from brokerflow.matching.rules import DEFAULT_RULES, SymbolRules

__all__ = [
    "EPOCH_TIME",
    "Exchange",
    "amend_command",
    "format_event_time",
    "lot_size_detail",
    "place_command",
    "tick_size_detail",
]

#: The event time of a command that carries none: clearly synthetic, and deterministic.
EPOCH_TIME: Final = "1970-01-01T00:00:00.000000Z"


def format_event_time(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``: the wire format of every event time."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tick_size_detail(rules: SymbolRules, price: Decimal) -> str:
    return (
        f"price {format(price, 'f')} is not a multiple of the tick size "
        f"{format(rules.tick_size, 'f')}"
    )


def lot_size_detail(rules: SymbolRules, quantity: Decimal) -> str:
    return (
        f"quantity {format(quantity, 'f')} is not a multiple of the lot size "
        f"{format(rules.lot_size, 'f')}"
    )


def place_command(
    rules: SymbolRules,
    symbol: str,
    order_id: str,
    account_id: str,
    side: str,
    order_type: str,
    time_in_force: str,
    quantity: Decimal,
    price: Decimal | None,
    event_time: str,
) -> NewOrder | Reject:
    """A PlaceOrder in book units, or the Reject that says which unit it missed."""
    ticks = None
    if price is not None:
        ticks = rules.price_to_ticks(price)
        if ticks is None:
            detail = tick_size_detail(rules, price)
            return Reject(
                symbol, order_id, account_id, PLACE_ORDER, Reason.TICK_SIZE, detail, event_time
            )
    lots = rules.quantity_to_lots(quantity)
    if lots is None:
        detail = lot_size_detail(rules, quantity)
        return Reject(
            symbol, order_id, account_id, PLACE_ORDER, Reason.LOT_SIZE, detail, event_time
        )
    return NewOrder(
        symbol, order_id, account_id, side, order_type, time_in_force, lots, ticks, event_time
    )


def amend_command(
    rules: SymbolRules,
    symbol: str,
    order_id: str,
    quantity: Decimal | None,
    price: Decimal | None,
    event_time: str,
    account_id: str | None = None,
) -> Amend | Reject:
    """An AmendOrder in book units, or the Reject that says which unit it missed."""
    ticks = lots = None
    if price is not None:
        ticks = rules.price_to_ticks(price)
        if ticks is None:
            detail = tick_size_detail(rules, price)
            return Reject(
                symbol, order_id, account_id, AMEND_ORDER, Reason.TICK_SIZE, detail, event_time
            )
    if quantity is not None:
        lots = rules.quantity_to_lots(quantity)
        if lots is None:
            detail = lot_size_detail(rules, quantity)
            return Reject(
                symbol, order_id, account_id, AMEND_ORDER, Reason.LOT_SIZE, detail, event_time
            )
    return Amend(symbol, order_id, lots, ticks, event_time)


class Exchange:
    """Every symbol's engine, created on first use with that symbol's rules (or the defaults).

    Symbols are case-sensitive here; the wire layer upper-cases them before they arrive.
    """

    __slots__ = ("_default_rules", "_engines", "_rules")

    def __init__(
        self,
        rules: Mapping[str, SymbolRules] | None = None,
        default_rules: SymbolRules = DEFAULT_RULES,
    ) -> None:
        self._rules: dict[str, SymbolRules] = dict(rules or {})
        self._default_rules = default_rules
        self._engines: dict[str, MatchingEngine] = {}

    def rules_for(self, symbol: str) -> SymbolRules:
        return self._rules.get(symbol, self._default_rules)

    def engine(self, symbol: str) -> MatchingEngine:
        """The symbol's engine, created empty on first use."""
        engine = self._engines.get(symbol)
        if engine is None:
            engine = self._engines[symbol] = MatchingEngine(symbol, self.rules_for(symbol))
        return engine

    @property
    def engines(self) -> Mapping[str, MatchingEngine]:
        """Engines by symbol, in order of first use (a read-only view)."""
        return MappingProxyType(self._engines)

    def install(self, engine: MatchingEngine) -> None:
        """Put a restored engine in place of the symbol's current one."""
        if engine.rules != self.rules_for(engine.symbol):
            raise ValueError(f"{engine.symbol}: engine rules differ from the exchange's rules")
        self._engines[engine.symbol] = engine

    def process(self, command: Command) -> list[Event]:
        """Route a book-unit command to its symbol's engine."""
        engine = self._engines.get(command.symbol)
        if engine is None:
            engine = self.engine(command.symbol)
        return engine.process(command)

    # --- decimal entry points ----------------------------------------------------------------

    def place(
        self,
        symbol: str,
        order_id: str,
        account_id: str,
        side: str,
        order_type: str,
        quantity: Decimal,
        price: Decimal | None = None,
        time_in_force: str = GTC,
        event_time: str = EPOCH_TIME,
    ) -> list[Event]:
        rules = self.rules_for(symbol)
        command = place_command(
            rules,
            symbol,
            order_id,
            account_id,
            side,
            order_type,
            time_in_force,
            quantity,
            price,
            event_time,
        )
        return self.process(command)

    def cancel(self, symbol: str, order_id: str, event_time: str = EPOCH_TIME) -> list[Event]:
        return self.process(Cancel(symbol, order_id, event_time))

    def amend(
        self,
        symbol: str,
        order_id: str,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        event_time: str = EPOCH_TIME,
    ) -> list[Event]:
        rules = self.rules_for(symbol)
        return self.process(amend_command(rules, symbol, order_id, quantity, price, event_time))

    def close_session(self, event_time: str = EPOCH_TIME, symbol: str | None = None) -> list[Event]:
        """Expire DAY orders of one symbol, or of every symbol in order of first use."""
        symbols = list(self._engines) if symbol is None else [symbol]
        events: list[Event] = []
        for name in symbols:
            events.extend(self.process(CloseSession(name, event_time)))
        return events

    def set_reference_price(self, symbol: str, price: Decimal) -> None:
        """The market-data pipeline's last price, for price bands (the latest of it and the last
        trade wins)."""
        self.process(SetReferencePrice(symbol, price))

    def apply(self, command: Any) -> list[Event]:
        """Apply a wire command (``PlaceOrder``, ``CancelOrder``, ``AmendOrder`` models).

        Read by attribute, so the core does not import pydantic.
        """
        event_time = format_event_time(command.event_time)
        kind = command.type
        if kind == PLACE_ORDER:
            return self.place(
                command.symbol,
                command.order_id,
                command.account_id,
                str(command.side),
                str(command.order_type),
                command.quantity,
                command.price,
                str(command.time_in_force),
                event_time,
            )
        if kind == "CancelOrder":
            return self.cancel(command.symbol, command.order_id, event_time)
        if kind == AMEND_ORDER:
            return self.amend(
                command.symbol, command.order_id, command.quantity, command.price, event_time
            )
        raise TypeError(f"not an order command: {kind!r}")
