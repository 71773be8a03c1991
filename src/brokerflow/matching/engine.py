"""The matching engine for one symbol: price-time priority, pure, deterministic.

Feed it commands with :meth:`MatchingEngine.process`; it returns the events they caused, in order,
and records which resting orders changed (:attr:`MatchingEngine.changes`). No I/O, no clock, no
randomness: the same commands give the same events, byte for byte.

Event order
-----------
Every event takes the next per-symbol ``sequence`` number (starting at 1; trades and order events
share the counter) and the triggering command's ``event_time``.

* A new order that fails validation: ``OrderRejected`` only.
* A new order that passes: ``OrderAccepted`` first; then, for each match in price-time order,
  ``TradeExecuted``, the maker's ``OrderPartiallyFilled``/``OrderFilled``, the taker's
  ``OrderPartiallyFilled``/``OrderFilled``; then, if something is left that may not rest,
  ``OrderCancelled`` for the remainder (``MARKET_NO_LIQUIDITY`` for a MARKET order,
  ``IOC_REMAINDER``, ``FOK_UNFILLABLE`` with no trade at all, or ``SELF_TRADE``). A GTC/DAY
  remainder rests silently: ``OrderAccepted`` already said OPEN.
* With self-trade prevention ``CANCEL_OLDEST``, the resting order's ``OrderCancelled``
  (``SELF_TRADE``) appears where the match would have been.
* An amend: ``OrderAmended`` first; if it lost priority and now crosses, the matches and any
  remainder cancel follow as for a new order.
* A session close: ``OrderExpired`` for every resting DAY order, bids best price first, then asks
  best price first, FIFO within a price.
* A PlaceOrder whose ``orderId`` this symbol has seen before (resting or not, accepted or not):
  ``OrderDuplicateIgnored`` and no state change. That is the dedup key for exactly-once.

Rules
-----
* Price-time priority: best price first, FIFO within a price; a trade prints at the maker's price.
* A FOK order first sums what it could trade (honouring self-trade prevention) and trades nothing
  unless that covers its whole quantity. A MARKET order never rests.
* Amend: a lower quantity at the same price keeps the order's place; a new price or a higher
  quantity sends it to the back of its (new) level, trading first if it now crosses. A new
  quantity must exceed the filled quantity.
* Price band: a LIMIT price (new or amended) more than ``price_band_pct`` away from the reference
  price is rejected. The reference is the last trade price or the last ``SetReferencePrice``,
  whichever came later; without one there is no band.
* Self-trade prevention compares ``accountId``: ``CANCEL_NEWEST`` cancels the incoming order's
  remainder, ``CANCEL_OLDEST`` cancels the resting order and keeps matching.
* Checks on a new order, in order: duplicate id, then side, order type, time in force, quantity,
  price, band (tick and lot sizes are checked at the edge, before it, by ``Reject``).

Rejected cancels and amends
---------------------------
A cancel or amend that cannot be applied answers with ``OrderRejected`` whose ``detail`` starts
with the command's name (``"CancelOrder: ..."``, ``"AmendOrder: ..."``). It refers to the command,
not the order: a resting order is left exactly as it was, and the event's filled and leaves
quantities are its unchanged state (both zero when there is no such resting order, reason
``UNKNOWN_ORDER``, which also covers orders already filled, cancelled, expired or rejected).

Persistence
-----------
After each command :attr:`~MatchingEngine.changes` lists ``(order_id, order_or_None)`` pairs, at
most one per order: an order that now rests (new or changed), or ``None`` for an order id that is
*closed* (left the book, or never rested). A store keeps, per order id, either the resting order's
:meth:`~brokerflow.matching.book.RestingOrder.to_record` or a tombstone for ``None`` (the
tombstones are the duplicate-check memory), plus :meth:`~MatchingEngine.state` per symbol
(sequence, trade and priority counters, reference price). :meth:`MatchingEngine.restore` rebuilds
an identical engine from those. ``changes`` is derived from the last command's events when read,
so matching pays nothing for it; the orders in it are the live objects: snapshot them before the
next command.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from heapq import heappop, heappush
from math import ceil, floor
from operator import attrgetter
from typing import Any

from brokerflow.errors import ConfigError
from brokerflow.matching.book import (
    BookSide,
    Depth,
    PriceLevel,
    RestingOrder,
    TopOfBook,
    _BookOrder,
)
from brokerflow.matching.commands import (
    AMEND_ORDER,
    BUY,
    CANCEL_ORDER,
    DAY,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    PLACE_ORDER,
    SELL,
    Amend,
    Cancel,
    CloseSession,
    Command,
    NewOrder,
    Reject,
    SetReferencePrice,
)
from brokerflow.matching.events import (
    ORDER_ACCEPTED,
    ORDER_AMENDED,
    ORDER_CANCELLED,
    ORDER_DUPLICATE_IGNORED,
    ORDER_EXPIRED,
    ORDER_FILLED,
    ORDER_PARTIALLY_FILLED,
    ORDER_REJECTED,
    TRADE_EXECUTED,
    Event,
    EventCodec,
    Reason,
    event_order_id,
)
from brokerflow.matching.rules import (
    DEFAULT_RULES,
    MAX_LOTS,
    MAX_TICKS,
    SelfTradePrevention,
    SymbolRules,
)

__all__ = ["EngineState", "MatchingEngine", "is_symbol"]

#: Heap key bound of a MARKET order: crosses every price the book can hold.
_NO_LIMIT = MAX_TICKS + 1
_MAKER_FILL = 1  # a fill event's offset from its trade's sequence number
_TAKER_FILL = 2
_TIMES_IN_FORCE = frozenset((GTC, DAY, IOC, FOK))
_CANCEL_NEWEST = SelfTradePrevention.CANCEL_NEWEST
_SELF_TRADE = Reason.SELF_TRADE
_USER = Reason.USER
_FOK_UNFILLABLE = Reason.FOK_UNFILLABLE
_MARKET_NO_LIQUIDITY = Reason.MARKET_NO_LIQUIDITY
_IOC_REMAINDER = Reason.IOC_REMAINDER
_LEAVES = attrgetter("leaves")

Change = tuple[str, RestingOrder | None]


@dataclass(frozen=True, slots=True)
class EngineState:
    """The small per-symbol record that, with the resting orders and tombstones, is the engine.

    ``tick_size`` and ``lot_size`` are the units stored ticks and lots are counted in; a restore
    under different rules is refused rather than silently repricing the book.
    """

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    last_sequence: int
    last_trade_number: int
    last_priority: int
    reference_price: Decimal | None

    def to_record(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "tickSize": format(self.tick_size, "f"),
            "lotSize": format(self.lot_size, "f"),
            "lastSequence": self.last_sequence,
            "lastTradeNumber": self.last_trade_number,
            "lastPriority": self.last_priority,
            "referencePrice": None
            if self.reference_price is None
            else format(self.reference_price, "f"),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> EngineState:
        reference = record["referencePrice"]
        return cls(
            symbol=record["symbol"],
            tick_size=Decimal(record["tickSize"]),
            lot_size=Decimal(record["lotSize"]),
            last_sequence=record["lastSequence"],
            last_trade_number=record["lastTradeNumber"],
            last_priority=record["lastPriority"],
            reference_price=None if reference is None else Decimal(reference),
        )


class MatchingEngine:
    """One symbol's limit order book and the rules that drive it.

    >>> from brokerflow.matching.commands import NewOrder
    >>> from brokerflow.matching.wire import to_wire
    >>> engine = MatchingEngine("PETR4")
    >>> t = "2026-01-02T13:00:00.000000Z"
    >>> _ = engine.process(NewOrder("PETR4", "s1", "a1", "SELL", "LIMIT", "GTC", 100, 3852, t))
    >>> events = engine.process(NewOrder("PETR4", "b1", "a2", "BUY", "LIMIT", "GTC", 40, 3860, t))
    >>> [(to_wire(e)["type"], to_wire(e)["sequence"]) for e in events]
    [('OrderAccepted', 2), ('TradeExecuted', 3), ('OrderPartiallyFilled', 4), ('OrderFilled', 5)]
    >>> to_wire(events[1])["price"], engine.best_bid_ask().ask
    ('38.52', PriceLevel(price=Decimal('38.52'), quantity=Decimal('60'), orders=1))
    >>> [(order_id, order and order.leaves) for order_id, order in engine.changes]
    [('b1', None), ('s1', 60)]
    """

    __slots__ = (
        "_asks",
        "_band",
        "_band_denominator",
        "_band_numerator",
        "_bids",
        "_codec",
        "_forgotten",
        "_highest_price",
        "_last_events",
        "_level_cache",
        "_lowest_price",
        "_orders",
        "_priority",
        "_reference",
        "_reference_decimal",
        "_seen",
        "_sequence",
        "_stp",
        "_trade_number",
        "rules",
        "symbol",
    )

    def __init__(self, symbol: str, rules: SymbolRules = DEFAULT_RULES) -> None:
        if not is_symbol(symbol):
            raise ValueError(
                f"{symbol!r} is not a symbol: 1-32 upper-case ASCII letters, digits, '.' or '-'"
            )
        self.symbol = symbol
        self.rules = rules
        self._codec = EventCodec(symbol, rules)
        self._bids = BookSide(is_bid=True)
        self._asks = BookSide(is_bid=False)
        self._orders: dict[str, RestingOrder] = {}
        self._seen: set[str] = set()
        #: (the events list of the session close that forgot them, the order ids it forgot)
        self._forgotten: tuple[list[Event] | None, list[str]] = (None, [])
        self._last_events: list[Event] = []
        #: (is_bid, (ticks key, lots, orders)) -> PriceLevel, for depth_of_key.
        self._level_cache: dict[tuple[bool, tuple[int, int, int]], PriceLevel] = {}
        self._sequence = 0
        self._trade_number = 0
        self._priority = 0
        # Reference price in ticks: an int after a trade, possibly a Fraction when set from
        # outside (market data need not sit on the grid); the decimal is kept for state records.
        self._reference: int | Fraction | None = None
        self._reference_decimal: Decimal | None = None
        stp = rules.self_trade_prevention
        self._stp: SelfTradePrevention | None = None if stp is SelfTradePrevention.OFF else stp
        pct = rules.price_band_pct
        band = None if pct is None else Fraction(pct) / 100
        self._band: Fraction | None = band
        # The same fraction as two ints: the per-trade update reads no Fraction property.
        self._band_numerator = 0 if band is None else band.numerator
        self._band_denominator = 1 if band is None else band.denominator
        # Allowed limit prices in ticks, recomputed whenever the reference moves, so that the
        # per-order test is two integer comparisons (no band: every valid price).
        self._lowest_price = 1
        self._highest_price = MAX_TICKS

    # --- commands --------------------------------------------------------------------------

    def process(self, command: Command) -> list[Event]:
        """Apply one command; return the events it caused, in order.

        The new-order path (with its match loop, a copy of :meth:`_take`) and the cancel of a
        resting order are written out here rather than in helpers: they are most of the
        traffic, and on CPython 3.11 a method call, with its frame, is a visible share of the
        budget per command. The other commands go through ``_HANDLERS``.
        """
        if type(command) is not NewOrder:
            kind = type(command)
            if kind is Cancel:
                # Written out as well (about one command in ten): the common case is an order
                # at the front of its queue, which leaves at once.
                order = self._orders.pop(command.order_id, None)
                if order is not None:
                    leaves = order.leaves
                    order.leaves = 0
                    if order.side == BUY:
                        own, key = self._bids, -order.price
                    else:
                        own, key = self._asks, order.price
                    level = own.levels[key]
                    if level[0] is order:
                        level.popleft()
                        while level and not level[0].leaves:
                            level.popleft()
                            own.dead -= 1
                        if not level and own.keys[0] == key:
                            own.prune()
                    else:
                        own.dead += 1
                        if own.dead > own.compact_after:
                            own.compact()
                    self._sequence = seq = self._sequence + 1
                    events = self._last_events = [
                        (
                            ORDER_CANCELLED,
                            self._codec,
                            seq,
                            command.event_time,
                            order.order_id,
                            order.account_id,
                            order.quantity - leaves,
                            leaves,
                            _USER,
                        )
                    ]
                    return events
            events = self._last_events = _HANDLERS.get(kind, _not_a_command)(self, command)
            return events
        order_id = command.order_id
        seen = self._seen
        if order_id in seen:
            events = self._last_events = [self._duplicate(order_id, command.event_time)]
            return events
        seen.add(order_id)
        side = command.side
        order_type = command.order_type
        time_in_force = command.time_in_force
        quantity = command.quantity
        price = command.price
        # The common, valid case in one test; _new_order_rejection says what is wrong. The type
        # tests keep floats and decimals out of the book. A string comparison for the common
        # value costs less than frozenset membership (CONTAINS_OP is not specialised on 3.11).
        if not (
            (
                type(price) is int
                and self._lowest_price <= price  # not chained: fewer bytecodes
                and price <= self._highest_price
                if order_type == LIMIT
                else order_type == MARKET and price is None
            )
            and type(quantity) is int
            and quantity > 0
            and (time_in_force == GTC or time_in_force in _TIMES_IN_FORCE)
            and (side == BUY or side == SELL)  # noqa: SIM109
        ):
            events = self._last_events = [self._new_order_rejection(command)]
            return events
        account_id = command.account_id
        event_time = command.event_time
        self._sequence = seq = self._sequence + 1
        events = self._last_events = [
            (
                ORDER_ACCEPTED,
                self._codec,
                seq,
                event_time,
                order_id,
                account_id,
                side,
                order_type,
                time_in_force,
                quantity,
                price,
            )
        ]
        if side == BUY:
            own, opposite = self._bids, self._asks
            limit_key = _NO_LIMIT if price is None else price
        else:
            own, opposite = self._asks, self._bids
            limit_key = _NO_LIMIT if price is None else -price
        keys = opposite.keys
        remaining = quantity
        if not keys or keys[0] > limit_key:
            # Nothing to trade against. This short branch comes first so that the comparison
            # is followed by a short jump, which CPython 3.11 needs to specialise it.
            pass
        elif time_in_force != FOK or self._fillable(opposite, limit_key, account_id, quantity):
            # _take, written out: half the new orders trade, and the call cost a frame each.
            # Keep the two in step (the differential and property tests pin both paths).
            levels = opposite.levels
            orders = self._orders
            codec = self._codec
            stp = self._stp
            trade_number = self._trade_number
            filled = 0
            trade_price = 0
            while keys:
                key = keys[0]
                if key > limit_key:
                    break
                level = levels[key]
                while level:
                    maker = level[0]
                    leaves = maker.leaves
                    if not leaves:  # cancelled in place earlier (lazy deletion): drop it now
                        level.popleft()
                        opposite.dead -= 1
                        continue
                    maker_id = maker.order_id
                    maker_account = maker.account_id
                    if stp is not None and maker_account == account_id:
                        seq += 1
                        if stp is _CANCEL_NEWEST:
                            events.append(
                                (
                                    ORDER_CANCELLED,
                                    codec,
                                    seq,
                                    event_time,
                                    order_id,
                                    account_id,
                                    filled,
                                    remaining,
                                    _SELF_TRADE,
                                )
                            )
                            remaining = 0
                            break
                        level.popleft()
                        del orders[maker_id]
                        maker.leaves = 0
                        events.append(
                            (
                                ORDER_CANCELLED,
                                codec,
                                seq,
                                event_time,
                                maker_id,
                                maker_account,
                                maker.quantity - leaves,
                                leaves,
                                _SELF_TRADE,
                            )
                        )
                        continue
                    trade_price = maker.price
                    trade_number += 1
                    seq += 3
                    if leaves <= remaining:  # the maker fills
                        level.popleft()
                        del orders[maker_id]
                        maker.leaves = 0
                        remaining -= leaves
                        filled += leaves
                        trade = (
                            TRADE_EXECUTED,
                            codec,
                            seq - 2,
                            event_time,
                            trade_number,
                            trade_price,
                            leaves,
                            side,
                            order_id,
                            maker_id,
                            account_id,
                            maker_account,
                            maker.quantity,
                            0,
                            filled,
                            remaining,
                        )
                        events.append(trade)
                        events.append((ORDER_FILLED, trade, _MAKER_FILL))
                    else:  # the taker fills, the maker stays at the front
                        maker.leaves = leaves = leaves - remaining
                        filled += remaining
                        trade = (
                            TRADE_EXECUTED,
                            codec,
                            seq - 2,
                            event_time,
                            trade_number,
                            trade_price,
                            remaining,
                            side,
                            order_id,
                            maker_id,
                            account_id,
                            maker_account,
                            maker.quantity - leaves,
                            leaves,
                            filled,
                            0,
                        )
                        events.append(trade)
                        events.append((ORDER_PARTIALLY_FILLED, trade, _MAKER_FILL))
                        events.append((ORDER_FILLED, trade, _TAKER_FILL))
                        remaining = 0
                        break
                    if remaining:
                        events.append((ORDER_PARTIALLY_FILLED, trade, _TAKER_FILL))
                    else:
                        events.append((ORDER_FILLED, trade, _TAKER_FILL))
                        while level and not level[0].leaves:  # keep a live order at the front
                            level.popleft()
                            opposite.dead -= 1
                        break
                if not level:
                    heappop(keys)
                    del levels[key]
                    while keys and not levels[keys[0]]:
                        del levels[heappop(keys)]
                if not remaining:
                    break
            self._sequence = seq
            self._trade_number = trade_number
            if trade_price:  # traded: the last trade price is the new reference
                self._reference_decimal = None
                if trade_price != self._reference:
                    self._reference = trade_price
                    if self._band is not None:  # _update_band, inlined
                        delta = trade_price * self._band_numerator // self._band_denominator
                        self._lowest_price = trade_price - delta if delta < trade_price else 1
                        self._highest_price = (
                            trade_price + delta if delta < MAX_TICKS - trade_price else MAX_TICKS
                        )
            if not remaining:
                return events
        if price is not None and (time_in_force == GTC or time_in_force == DAY):  # noqa: SIM109
            # A GTC or DAY limit: rest at the back of its level (own heap key is -limit_key).
            # Built field by field: a constructor call costs a Python frame per resting order.
            order = _BookOrder()
            order.order_id = order_id
            order.account_id = account_id
            order.side = side
            order.price = price
            order.quantity = quantity
            order.leaves = remaining
            order.time_in_force = time_in_force
            self._priority = order.priority = self._priority + 1
            self._orders[order_id] = order
            key = -limit_key
            levels = own.levels
            level = levels.get(key)
            if level is None:
                levels[key] = deque((order,))
                heappush(own.keys, key)
            else:
                level.append(order)
            return events
        self._sequence += 1
        events.append(
            (
                ORDER_CANCELLED,
                self._codec,
                self._sequence,
                event_time,
                order_id,
                account_id,
                quantity - remaining,
                remaining,
                # FOK_UNFILLABLE only ever comes with no trade at all
                _FOK_UNFILLABLE
                if time_in_force == FOK
                else _MARKET_NO_LIQUIDITY
                if order_type == MARKET
                else _IOC_REMAINDER,
            )
        )
        return events

    def close_session(self, event_time: str) -> list[Event]:
        """Session close: expire every resting DAY order (``process(CloseSession(...))``)."""
        return self.process(CloseSession(self.symbol, event_time))

    def set_reference_price(self, price: Decimal) -> None:
        """The market-data pipeline's last price, for price bands; the later of it and the last
        trade price wins (``process(SetReferencePrice(...))``)."""
        self.process(SetReferencePrice(self.symbol, price))

    def _take(
        self,
        events: list[Event],
        opposite: BookSide,
        taker_side: str,
        taker_id: str,
        taker_account: str,
        remaining: int,
        filled: int,
        limit_key: int,
        event_time: str,
    ) -> int:
        """Match an incoming order against ``opposite`` while it crosses ``limit_key``.

        Walks levels best first and each level front to back; every trade prints at the maker's
        price. Appends to ``events`` and returns what is left of the taker, which is 0 also when
        self-trade prevention ``CANCEL_NEWEST`` stopped it (its ``OrderCancelled`` is appended).
        :meth:`process` carries a written-out copy of this loop for new orders; this one serves
        amends that lost priority and now cross. Change both together.
        """
        keys = opposite.keys
        levels = opposite.levels
        orders = self._orders
        codec = self._codec
        stp = self._stp
        seq = self._sequence
        trade_number = self._trade_number
        emit = events.append
        price = 0
        while keys:
            key = keys[0]
            if key > limit_key:
                break
            level = levels[key]
            while level:
                maker = level[0]
                leaves = maker.leaves
                if not leaves:  # cancelled in place earlier (lazy deletion): drop it now
                    level.popleft()
                    opposite.dead -= 1
                    continue
                maker_id = maker.order_id
                maker_account = maker.account_id
                if stp is not None and maker_account == taker_account:
                    seq += 1
                    if stp is _CANCEL_NEWEST:
                        emit(
                            (
                                ORDER_CANCELLED,
                                codec,
                                seq,
                                event_time,
                                taker_id,
                                taker_account,
                                filled,
                                remaining,
                                _SELF_TRADE,
                            )
                        )
                        remaining = 0
                        break
                    level.popleft()
                    del orders[maker_id]
                    maker.leaves = 0
                    emit(
                        (
                            ORDER_CANCELLED,
                            codec,
                            seq,
                            event_time,
                            maker_id,
                            maker_account,
                            maker.quantity - leaves,
                            leaves,
                            _SELF_TRADE,
                        )
                    )
                    continue
                if leaves <= remaining:
                    quantity = leaves
                    level.popleft()
                    del orders[maker_id]
                    maker.leaves = maker_leaves = 0
                    maker_fill = ORDER_FILLED
                else:
                    quantity = remaining
                    maker.leaves = maker_leaves = leaves - remaining
                    maker_fill = ORDER_PARTIALLY_FILLED
                price = maker.price
                remaining -= quantity
                filled += quantity
                trade_number += 1
                # The fills point at the trade instead of repeating it: (type, trade, offset),
                # the offset being 1 for the maker's fill and 2 for the taker's.
                seq += 3
                trade = (
                    TRADE_EXECUTED,
                    codec,
                    seq - 2,
                    event_time,
                    trade_number,
                    price,
                    quantity,
                    taker_side,
                    taker_id,
                    maker_id,
                    taker_account,
                    maker_account,
                    maker.quantity - maker_leaves,
                    maker_leaves,
                    filled,
                    remaining,
                )
                emit(trade)
                emit((maker_fill, trade, _MAKER_FILL))
                emit((ORDER_PARTIALLY_FILLED if remaining else ORDER_FILLED, trade, _TAKER_FILL))
                if not remaining:
                    while level and not level[0].leaves:  # keep a live order at the front
                        level.popleft()
                        opposite.dead -= 1
                    break
            if not level:
                heappop(keys)
                del levels[key]
                while keys and not levels[keys[0]]:
                    del levels[heappop(keys)]
            if not remaining:
                break
        self._sequence = seq
        self._trade_number = trade_number
        if price:  # traded: the last trade price is the new reference
            self._reference_decimal = None
            if price != self._reference:
                self._reference = price
                if self._band is not None:  # _update_band, inlined: this runs on most trades
                    delta = price * self._band_numerator // self._band_denominator
                    self._lowest_price = price - delta if delta < price else 1
                    self._highest_price = price + delta if delta < MAX_TICKS - price else MAX_TICKS
        return remaining

    def _fillable(self, opposite: BookSide, limit_key: int, account_id: str, needed: int) -> bool:
        """Can a FOK order fill completely now? Mirrors :meth:`_take`, changing nothing."""
        stp = self._stp
        available = 0
        levels = opposite.levels
        for key in sorted(opposite.keys):  # the heap holds exactly the levels' keys
            if key > limit_key:
                break
            for maker in levels[key]:  # an empty level has nothing to add
                if not maker.leaves:
                    continue  # dead (cancelled in place)
                if stp is not None and maker.account_id == account_id:
                    if stp is _CANCEL_NEWEST:
                        return False  # matching would stop here, short of the full quantity
                    continue  # CANCEL_OLDEST: that order would be cancelled, not traded
                available += maker.leaves
                if available >= needed:
                    return True
        return False

    def _cancel(self, command: Cancel) -> list[Event]:
        order_id = command.order_id
        order = self._orders.pop(order_id, None)
        if order is None:
            return [self._unknown_order(CANCEL_ORDER, order_id, None, command.event_time)]
        leaves = order.leaves
        (self._bids if order.side == BUY else self._asks).discard(order)
        self._sequence += 1
        return [
            (
                ORDER_CANCELLED,
                self._codec,
                self._sequence,
                command.event_time,
                order_id,
                order.account_id,
                order.quantity - leaves,
                leaves,
                Reason.USER,
            )
        ]

    def _amend(self, command: Amend) -> list[Event]:
        order_id = command.order_id
        event_time = command.event_time
        order = self._orders.get(order_id)
        if order is None:
            return [self._unknown_order(AMEND_ORDER, order_id, None, event_time)]
        filled = order.quantity - order.leaves
        quantity = order.quantity if command.quantity is None else command.quantity
        price = order.price if command.price is None else command.price
        reason: Reason | None = None
        detail = ""
        if type(quantity) is not int or not 0 < quantity <= MAX_LOTS:
            reason, detail = Reason.INVALID_QUANTITY, "quantity must be a positive number of lots"
        elif type(price) is not int or not 0 < price <= MAX_TICKS:
            reason, detail = Reason.INVALID_PRICE, "price must be a positive number of ticks"
        elif quantity <= filled:
            texts = self._codec.quantity_texts
            reason = Reason.AMEND_BELOW_FILLED
            detail = (
                f"new quantity {texts[quantity]} does not exceed the filled quantity "
                f"{texts[filled]}; cancel the order instead"
            )
        elif price != order.price and not self._lowest_price <= price <= self._highest_price:
            reason, detail = Reason.PRICE_BAND, self._band_detail(price)
        if reason is not None:
            detail = f"{AMEND_ORDER}: {detail}; order unchanged"
            return [
                self._rejection(
                    order_id,
                    order.account_id,
                    filled,
                    order.leaves,
                    reason,
                    detail,
                    event_time,
                    closes=False,
                )
            ]
        keeps_priority = price == order.price and quantity <= order.quantity
        own_side = self._bids if order.side == BUY else self._asks
        leaves = quantity - filled
        if keeps_priority:
            order.quantity = quantity
            order.leaves = leaves
        else:
            # The old queue entry dies in place; a new object will join the back of a level.
            own_side.discard(order)
            order = RestingOrder(
                order_id,
                order.account_id,
                order.side,
                price,
                quantity,
                leaves,
                order.time_in_force,
                order.priority,
            )
            self._orders[order_id] = order
        self._sequence = seq = self._sequence + 1
        events: list[Event] = [
            (
                ORDER_AMENDED,
                self._codec,
                seq,
                event_time,
                order_id,
                order.account_id,
                filled,
                leaves,
                quantity,
                price,
                keeps_priority,
            )
        ]
        if keeps_priority:
            return events
        # Lost priority: back of the queue at the new price, after trading if it now crosses.
        if order.side == BUY:
            opposite, limit_key = self._asks, price
        else:
            opposite, limit_key = self._bids, -price
        if opposite.keys and opposite.keys[0] <= limit_key:
            leaves = self._take(
                events,
                opposite,
                order.side,
                order_id,
                order.account_id,
                leaves,
                filled,
                limit_key,
                event_time,
            )
        if leaves:
            self._priority += 1
            order.priority = self._priority
            order.leaves = leaves
            own_side.add(order)
        else:  # filled, or cancelled by self-trade prevention
            del self._orders[order_id]
            order.leaves = 0
        return events

    def _close_session(self, command: CloseSession) -> list[Event]:
        """Expire every resting DAY order: bids best first, then asks best first, FIFO."""
        events: list[Event] = []
        codec = self._codec
        event_time = command.event_time
        seq = self._sequence
        for side in (self._bids, self._asks):
            for _, level in list(side.levels_best_first()):
                if all(order.time_in_force != DAY for order in level):
                    continue
                kept = []
                for order in level:
                    if order.time_in_force != DAY or not order.leaves:
                        kept.append(order)  # dead ones go at the compaction below
                        continue
                    seq += 1
                    events.append(
                        (
                            ORDER_EXPIRED,
                            codec,
                            seq,
                            event_time,
                            order.order_id,
                            order.account_id,
                            order.quantity - order.leaves,
                            order.leaves,
                        )
                    )
                    order.leaves = 0
                    del self._orders[order.order_id]
                level.clear()
                level.extend(kept)
            side.compact()  # also sweeps dead orders and empty levels left by lazy deletion
        self._sequence = seq
        # Order ids are unique within a session: the ids of orders that ended (filled,
        # cancelled, rejected, expired just now) are forgotten, so state does not grow with
        # every order ever placed. A resting order's id stays taken.
        resting = self._orders
        forgotten = [order_id for order_id in self._seen if order_id not in resting]
        self._seen = set(resting)
        self._forgotten = (events, forgotten)
        return events

    def _set_reference_price(self, command: SetReferencePrice) -> list[Event]:
        price = command.price
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            raise ValueError(f"reference price must be a positive decimal, got {price!r}")
        self._reference = self.rules.price_in_ticks(price)
        self._reference_decimal = price
        self._update_band()
        return []

    def _edge_reject(self, command: Reject) -> list[Event]:
        order_id = command.order_id
        event_time = command.event_time
        detail = f"{command.command}: {command.detail}"
        if command.command == PLACE_ORDER:
            if order_id in self._seen:
                return [self._duplicate(order_id, event_time)]
            self._seen.add(order_id)
            rejection = self._rejection(
                order_id, command.account_id, 0, 0, command.reason, detail, event_time, closes=True
            )
            return [rejection]
        order = self._orders.get(order_id)
        if order is None:
            return [self._unknown_order(command.command, order_id, command.account_id, event_time)]
        rejection = self._rejection(
            order_id,
            order.account_id,
            order.quantity - order.leaves,
            order.leaves,
            command.reason,
            f"{detail}; order unchanged",
            event_time,
            closes=False,
        )
        return [rejection]

    # --- event helpers ---------------------------------------------------------------------

    def _rejection(
        self,
        order_id: str,
        account_id: str | None,
        filled: int,
        leaves: int,
        reason: str,
        detail: str,
        event_time: str,
        closes: bool,
    ) -> Event:
        """An ``OrderRejected``; ``closes`` says it answered a PlaceOrder (the id is now closed)."""
        self._sequence += 1
        return (
            ORDER_REJECTED,
            self._codec,
            self._sequence,
            event_time,
            order_id,
            account_id,
            filled,
            leaves,
            reason,
            detail,
            closes,
        )

    def _duplicate(self, order_id: str, event_time: str) -> Event:
        self._sequence += 1
        return (
            ORDER_DUPLICATE_IGNORED,
            self._codec,
            self._sequence,
            event_time,
            order_id,
            PLACE_ORDER,
        )

    def _new_order_rejection(self, command: NewOrder) -> Event:
        """Why a NewOrder failed the one-line validity test in :meth:`process`."""
        price = command.price
        if command.side not in (BUY, SELL):
            reason, why = Reason.INVALID_SIDE, f"side {command.side!r} is not BUY or SELL"
        elif command.order_type not in (LIMIT, MARKET):
            reason = Reason.INVALID_ORDER_TYPE
            why = f"order type {command.order_type!r} is not LIMIT or MARKET"
        elif command.time_in_force not in _TIMES_IN_FORCE:
            reason = Reason.INVALID_TIME_IN_FORCE
            why = f"time in force {command.time_in_force!r} is not GTC, DAY, IOC or FOK"
        elif type(command.quantity) is not int or not 0 < command.quantity <= MAX_LOTS:
            reason, why = Reason.INVALID_QUANTITY, "quantity must be a positive number of lots"
        elif command.order_type == MARKET:
            reason, why = Reason.INVALID_PRICE, "a MARKET order takes no price"
        elif type(price) is not int or not 0 < price <= MAX_TICKS:
            reason, why = Reason.INVALID_PRICE, "a LIMIT order needs a positive number of ticks"
        else:
            reason, why = Reason.PRICE_BAND, self._band_detail(price)
        return self._rejection(
            command.order_id,
            command.account_id,
            0,
            0,
            reason,
            f"{PLACE_ORDER}: {why}",
            command.event_time,
            closes=True,
        )

    def _unknown_order(
        self, command_name: str, order_id: str, account_id: str | None, event_time: str
    ) -> Event:
        if order_id in self._seen:
            why = "is no longer resting (filled, cancelled, expired or rejected)"
        else:
            why = f"was never placed on {self.symbol}"
        detail = f"{command_name}: order {order_id!r} {why}"
        return self._rejection(
            order_id, account_id, 0, 0, Reason.UNKNOWN_ORDER, detail, event_time, closes=False
        )

    # --- price band ------------------------------------------------------------------------

    def _update_band(self) -> None:
        """Recompute the allowed limit prices from the reference (exact, in ticks)."""
        band, reference = self._band, self._reference
        if band is None or reference is None:
            low, high = 1, MAX_TICKS
        elif type(reference) is int:
            delta = reference * self._band_numerator // self._band_denominator
            low, high = reference - delta, reference + delta
        else:
            low, high = ceil(reference * (1 - band)), floor(reference * (1 + band))
        self._lowest_price = max(low, 1)
        self._highest_price = min(high, MAX_TICKS)

    def _band_detail(self, price: int) -> str:
        texts = self._codec.price_texts
        reference = self._reference_price()
        low, high = self._lowest_price, self._highest_price
        allowed = (
            f"allowed {texts[low]} to {texts[high]}"
            if low <= high
            else "no price on the tick grid is within the band"
        )
        return (
            f"price {texts[price]} is more than {format(self.rules.price_band_pct, 'f')}% away "
            f"from the reference price {format(reference, 'f')} ({allowed})"
        )

    def _reference_price(self) -> Decimal | None:
        if self._reference_decimal is not None:
            return self._reference_decimal
        if self._reference is None:
            return None
        return self.rules.ticks_to_price(self._reference)  # type: ignore[arg-type]  # an int

    # --- queries ---------------------------------------------------------------------------

    @property
    def changes(self) -> list[Change]:
        """``(order_id, resting order or None)`` for each order the last command touched.

        Derived from the last command's events on demand, so that matching pays nothing for it:
        ``None`` means the id is closed (store a tombstone), an order is the live object (store
        its ``to_record()`` before the next command). At most one entry per order id.
        """
        touched: dict[str, None] = {}
        for event in self._last_events:
            kind = event[0]
            if kind == ORDER_REJECTED:
                if event[10]:  # a PlaceOrder's rejection: the id is now seen, and closed
                    touched[event[4]] = None
            elif kind in (ORDER_FILLED, ORDER_PARTIALLY_FILLED):
                touched[event_order_id(event)] = None
            elif kind != TRADE_EXECUTED and kind != ORDER_DUPLICATE_IGNORED:
                touched[event[4]] = None
        orders = self._orders
        return [(order_id, orders.get(order_id)) for order_id in touched]

    @property
    def forgotten(self) -> list[str]:
        """Order ids the last command forgot (only a session close does): a store deletes
        their records, since a later order may use the id again."""
        events, order_ids = self._forgotten
        return order_ids if events is self._last_events else []

    def best_bid_ask(self) -> TopOfBook:
        """Best bid and ask with their aggregate open quantity (``None`` for an empty side)."""
        return TopOfBook(self._top_level(self._bids), self._top_level(self._asks))

    def depth(self, levels: int = 5) -> Depth:
        """The best ``levels`` price levels per side, best first. O(number of levels)."""
        return self.depth_of_key(self.depth_key(levels))

    def depth_key(self, levels: int = 5) -> tuple[tuple[tuple[int, int, int], ...], ...]:
        """What :meth:`depth` shows, in book units (ticks, lots, order count per level).

        Equal keys mean equal depths (the rules convert units the same way every time), and
        building it skips the decimal conversions: a publisher compares keys and asks for the
        :meth:`depth` only when the key changed.
        """
        return (self._side_key(self._bids, levels), self._side_key(self._asks, levels))

    def depth_of_key(self, key: tuple[tuple[tuple[int, int, int], ...], ...]) -> Depth:
        """:meth:`depth` from a :meth:`depth_key` taken since the last command (no second walk
        of the book; levels seen before come from a small cache)."""
        levels = self._level_cache
        if len(levels) > 4096:
            levels.clear()
        sides = []
        for is_bid, side_key in ((True, key[0]), (False, key[1])):
            out = []
            for level_key in side_key:
                level = levels.get((is_bid, level_key))
                if level is None:
                    ticks, lots, orders = level_key
                    level = levels[(is_bid, level_key)] = PriceLevel(
                        self.rules.ticks_to_price(-ticks if is_bid else ticks),
                        self.rules.lots_to_quantity(lots),
                        orders,
                    )
                out.append(level)
            sides.append(tuple(out))
        return Depth(sides[0], sides[1])

    @staticmethod
    def _side_key(side: BookSide, count: int) -> tuple[tuple[int, int, int], ...]:
        # C-level sort, map and count: two generator sums per level cost 16.5 us a command on
        # the bench tape (about 17 levels a side), this 11 (the matching itself: 1.8).
        by_key = side.levels
        out = []
        for key in sorted([key for key, level in by_key.items() if level])[:count]:
            leaves = list(map(_LEAVES, by_key[key]))
            out.append((key, sum(leaves), len(leaves) - leaves.count(0)))
        return tuple(out)

    def _top_level(self, side: BookSide) -> PriceLevel | None:
        if not side.keys:
            return None
        return self._price_level(side, side.keys[0])

    def _price_level(self, side: BookSide, key: int) -> PriceLevel:
        level = side.levels[key]
        return PriceLevel(
            self.rules.ticks_to_price(-key if side.is_bid else key),
            self.rules.lots_to_quantity(sum(order.leaves for order in level)),
            sum(1 for order in level if order.leaves),
        )

    def order(self, order_id: str) -> RestingOrder | None:
        """The resting order with this id (live object: do not mutate), or ``None``."""
        return self._orders.get(order_id)

    def resting_orders(self) -> Iterator[RestingOrder]:
        """Every resting order: bids best first, then asks best first, FIFO within a price."""
        yield from self._bids.orders_best_first()
        yield from self._asks.orders_best_first()

    @property
    def last_sequence(self) -> int:
        """Sequence number of the last event emitted (0 before the first)."""
        return self._sequence

    @property
    def trade_count(self) -> int:
        """Trades printed so far: the number in the last trade id."""
        return self._trade_number

    @property
    def reference_price(self) -> Decimal | None:
        """What price bands are measured from: the last trade price or the last price set from
        outside, whichever came later."""
        return self._reference_price()

    # --- persistence -----------------------------------------------------------------------

    def state(self) -> EngineState:
        """The per-symbol record to store after each command."""
        return EngineState(
            symbol=self.symbol,
            tick_size=self.rules.tick_size,
            lot_size=self.rules.lot_size,
            last_sequence=self._sequence,
            last_trade_number=self._trade_number,
            last_priority=self._priority,
            reference_price=self._reference_price(),
        )

    def closed_order_ids(self) -> set[str]:
        """Order ids seen here that are not resting: the tombstones of a store."""
        return self._seen - self._orders.keys()

    @classmethod
    def restore(
        cls,
        state: EngineState,
        resting_orders: Iterable[RestingOrder],
        closed_order_ids: Iterable[str],
        rules: SymbolRules = DEFAULT_RULES,
    ) -> MatchingEngine:
        """Rebuild an engine from stored records; it continues exactly as the original would.

        Orders are re-queued by ``priority`` (FIFO within each level is arrival order); the orders
        passed in are copied, never shared.
        """
        if (state.tick_size, state.lot_size) != (rules.tick_size, rules.lot_size):
            raise ConfigError(
                f"{state.symbol}: stored book uses tick {state.tick_size} and lot "
                f"{state.lot_size}, rules say tick {rules.tick_size} and lot {rules.lot_size}; "
                "migrate the stored orders before changing units"
            )
        engine = cls(state.symbol, rules)
        engine._sequence = state.last_sequence
        engine._trade_number = state.last_trade_number
        engine._priority = state.last_priority
        if state.reference_price is not None:
            engine._reference = rules.price_in_ticks(state.reference_price)
            engine._reference_decimal = state.reference_price  # its text, as last printed
            engine._update_band()
        for order in sorted(resting_orders, key=lambda order: order.priority):
            copy = order.copy()
            engine._orders[copy.order_id] = copy
            (engine._bids if copy.side == BUY else engine._asks).add(copy)
        engine._seen = set(closed_order_ids) | engine._orders.keys()
        return engine


def is_symbol(text: str) -> bool:
    """The wire's symbol rule, upper case and ASCII only, so events need no escaping."""
    return (
        0 < len(text) <= 32
        and text.isascii()
        and text == text.upper()
        and text.replace(".", "").replace("-", "").isalnum()
    )


def _not_a_command(engine: MatchingEngine, command: object) -> list[Event]:
    raise TypeError(f"not a matching command: {command!r}")


_HANDLERS: dict[type, Any] = {
    Cancel: MatchingEngine._cancel,
    Amend: MatchingEngine._amend,
    CloseSession: MatchingEngine._close_session,
    SetReferencePrice: MatchingEngine._set_reference_price,
    Reject: MatchingEngine._edge_reject,
}
