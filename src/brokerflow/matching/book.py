"""The resting side of a limit order book: price levels of FIFO queues.

One :class:`BookSide` per side. A level is a ``deque`` of :class:`RestingOrder` in arrival order
(FIFO within the price); levels live in a dict keyed by a *heap key*, the price in ticks for asks
and minus the price for bids, so that for both sides the best level is the smallest key and one
matching loop serves both. The keys also sit in a binary heap (``heapq``), touched only when a
level appears or surfaces empty: adding an order to an existing level or filling part of one costs
no sorting at all.

Deletion is lazy. A level emptied below the top stays in the dict (empty) and in the heap until it
surfaces at the top, where :meth:`BookSide.prune` drops it; a new order at that price reuses it.
Invariant: the heap holds exactly the dict's keys, and its top level, if any, is non-empty, so the
best price is ``keys[0]`` in O(1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from decimal import Decimal
from heapq import heapify, heappop, heappush
from typing import Any, NamedTuple

__all__ = ["BookSide", "Depth", "PriceLevel", "RestingOrder", "TopOfBook"]

# A side is compacted once it holds more dead orders than this, or than it had live orders.
_MIN_COMPACT_AFTER = 1024


class RestingOrder:
    """An order on the book. Mutable: the engine updates ``leaves`` (and, on amend, more).

    ``priority`` is the per-symbol arrival number given when the order joined the back of its
    level (again after an amend that lost priority); it is what a restore sorts by.
    """

    __slots__ = (
        "account_id",
        "leaves",
        "order_id",
        "price",
        "priority",
        "quantity",
        "side",
        "time_in_force",
    )

    def __init__(
        self,
        order_id: str,
        account_id: str,
        side: str,
        price: int,
        quantity: int,
        leaves: int,
        time_in_force: str,
        priority: int,
    ) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.side = side
        self.price = price  # ticks
        self.quantity = quantity  # lots, the order's current total (after amends)
        self.leaves = leaves  # lots still open
        self.time_in_force = time_in_force
        self.priority = priority

    @property
    def filled(self) -> int:
        return self.quantity - self.leaves

    def to_record(self) -> dict[str, Any]:
        """A JSON-friendly snapshot for a per-order store (ticks and lots, not decimals)."""
        return {
            "orderId": self.order_id,
            "accountId": self.account_id,
            "side": self.side,
            "priceTicks": self.price,
            "quantityLots": self.quantity,
            "leavesLots": self.leaves,
            "timeInForce": self.time_in_force,
            "priority": self.priority,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RestingOrder:
        return cls(
            order_id=record["orderId"],
            account_id=record["accountId"],
            side=record["side"],
            price=record["priceTicks"],
            quantity=record["quantityLots"],
            leaves=record["leavesLots"],
            time_in_force=record["timeInForce"],
            priority=record["priority"],
        )

    def copy(self) -> RestingOrder:
        return RestingOrder(
            self.order_id,
            self.account_id,
            self.side,
            self.price,
            self.quantity,
            self.leaves,
            self.time_in_force,
            self.priority,
        )

    def __repr__(self) -> str:
        return (
            f"RestingOrder({self.order_id!r}, {self.account_id!r}, {self.side}, "
            f"price={self.price}, quantity={self.quantity}, leaves={self.leaves}, "
            f"{self.time_in_force}, priority={self.priority})"
        )


class _BookOrder(RestingOrder):
    """A :class:`RestingOrder` built with no arguments; the engine then sets every slot.

    The engine creates one per resting order; ``object.__init__`` as the initialiser makes that
    a plain C allocation (``object.__new__(RestingOrder)`` goes through a slower generic wrapper,
    ``RestingOrder(...)`` through a Python frame). It is a ``RestingOrder`` in every other way.
    """

    __slots__ = ()
    __init__ = object.__init__  # type: ignore[assignment]


class BookSide:
    """Bids or asks: levels keyed by heap key (``price`` for asks, ``-price`` for bids).

    Cancellation is lazy as well. An order leaving from the front of its queue goes at once; one
    leaving from inside its queue is marked dead (``leaves == 0``) and stays until it reaches the
    front, where whoever pops the front drops it, or until the side is compacted (after as many
    such cancels as there were orders: amortised O(1)). So every non-empty queue has a live order
    at its front, and dead orders carry no quantity. ``deque.remove`` would cost a scan of the
    queue per cancel.
    """

    __slots__ = ("compact_after", "dead", "is_bid", "keys", "levels")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.keys: list[int] = []
        self.levels: dict[int, deque[RestingOrder]] = {}
        self.dead = 0  # orders marked dead inside their queues
        self.compact_after = _MIN_COMPACT_AFTER

    def add(self, order: RestingOrder) -> None:
        """Put ``order`` at the back of its price level."""
        key = -order.price if self.is_bid else order.price
        level = self.levels.get(key)
        if level is None:
            self.levels[key] = deque((order,))
            heappush(self.keys, key)
        else:
            level.append(order)

    def discard(self, order: RestingOrder) -> None:
        """Take ``order`` off the book (its ``leaves`` becomes 0), wherever it is queued."""
        key = -order.price if self.is_bid else order.price
        level = self.levels[key]
        order.leaves = 0
        if level[0] is order:
            level.popleft()
            while level and not level[0].leaves:
                level.popleft()
                self.dead -= 1
            if not level and self.keys[0] == key:
                self.prune()
        else:
            self.dead += 1
            if self.dead > self.compact_after:
                self.compact()

    def prune(self) -> None:
        """Drop empty levels from the top until the best level is a real one."""
        keys, levels = self.keys, self.levels
        while keys and not levels[keys[0]]:
            del levels[heappop(keys)]

    def compact(self) -> None:
        """Drop dead orders and empty levels, in place (callers may hold ``keys``/``levels``)."""
        levels = self.levels
        remaining = 0
        for key in list(levels):
            level = levels[key]
            live = [order for order in level if order.leaves]
            if not live:
                del levels[key]
                continue
            if len(live) != len(level):
                level.clear()
                level.extend(live)
            remaining += len(live)
        self.keys[:] = levels
        heapify(self.keys)
        self.dead = 0
        self.compact_after = max(_MIN_COMPACT_AFTER, remaining)

    def best_price(self) -> int | None:
        """Best price in ticks, or ``None`` for an empty side."""
        if not self.keys:
            return None
        key = self.keys[0]
        return -key if self.is_bid else key

    def levels_best_first(self) -> Iterator[tuple[int, deque[RestingOrder]]]:
        """Non-empty ``(price_ticks, queue)`` pairs, best price first. O(levels log levels).

        A queue may hold dead orders (``leaves == 0``) behind its live front: skip them.
        """
        sign = -1 if self.is_bid else 1
        for key in sorted(key for key, level in self.levels.items() if level):
            yield sign * key, self.levels[key]

    def orders_best_first(self) -> Iterator[RestingOrder]:
        """Every live resting order in matching order: best price first, FIFO within a price."""
        for _, level in self.levels_best_first():
            for order in level:
                if order.leaves:
                    yield order

    def __len__(self) -> int:
        return sum(1 for level in self.levels.values() for order in level if order.leaves)


class PriceLevel(NamedTuple):
    """One aggregated level: price, total open quantity, number of orders."""

    price: Decimal
    quantity: Decimal
    orders: int


class TopOfBook(NamedTuple):
    bid: PriceLevel | None
    ask: PriceLevel | None


class Depth(NamedTuple):
    """Top-N levels per side, best first."""

    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]
