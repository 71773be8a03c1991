"""Pure: simulated exchange members, so a user's order meets liquidity shaped like the market's.

* :class:`MarketMaker` quotes a ladder on both sides of one symbol around the real market's mid
  (Binance's best bid/ask, or Brapi's last price for a B3 stock): ``levels`` prices per side,
  the first ``half_spread_bps`` from the mid and each next one ``level_step_bps`` further, each
  worth ``notional`` in the symbol's currency (so 5,000 is 131 PETR4 at 38 or 0.053 BTC at
  94,000, rounded down to the lot). It keeps the ladder by diffing it against what rests: a
  level that was filled is placed again, a level no longer wanted is cancelled, a partly filled
  one is left to queue.
  The ladder moves only when the mid has moved ``requote_bps`` since it was last drawn, so a
  jittering feed does not churn the book. Inventory bounds it: a level is quoted only if the
  position would stay within ``max_inventory_notional`` (long or short, at the mid) were it and
  every better level on its side filled, so a maker at its limit stops adding to its position
  until trades bring it back.
* :class:`Taker` sends marketable orders (``MARKET``, ``IOC``) of a random side and size, from a
  seeded generator, so the same seed gives the same flow.

Both only say which commands to send; the service (:mod:`.service`) reads the market and the
exchange's events of their orders and sends the commands to ``order-commands-v1``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from brokerflow.schemas.base import Message
from brokerflow.schemas.orders import (
    CancelOrder,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)

__all__ = ["MakerConfig", "MarketMaker", "Resting", "Taker", "TakerConfig", "mid_price"]

_BPS = Decimal(10_000)
#: The exchange refuses a cancel or amend that lost its race with ``detail`` naming the command.
_LOST_RACES = ("CancelOrder:", "AmendOrder:")


@dataclass(frozen=True, slots=True)
class MakerConfig:
    half_spread_bps: Decimal = Decimal(5)
    level_step_bps: Decimal = Decimal(5)
    levels: int = 3
    notional: Decimal = Decimal(5000)
    max_inventory_notional: Decimal = Decimal(50000)
    requote_bps: Decimal = Decimal(2)

    def __post_init__(self) -> None:
        if self.levels < 1 or self.notional <= 0 or self.max_inventory_notional <= 0:
            raise ValueError(
                "a market maker needs levels >= 1, notional > 0 and max_inventory_notional > 0"
            )
        if self.half_spread_bps <= 0 or self.level_step_bps < 0 or self.requote_bps < 0:
            raise ValueError("spreads are positive basis points (half_spread_bps > 0)")


@dataclass(frozen=True, slots=True)
class TakerConfig:
    #: Each order is worth 1..max_lots times ``notional`` at the mid, rounded down to the lot.
    notional: Decimal = Decimal(2000)
    max_lots: int = 5

    def __post_init__(self) -> None:
        if self.notional <= 0 or self.max_lots < 1:
            raise ValueError("a taker needs notional > 0 and max_lots >= 1")


def mid_price(bid: Decimal | None, ask: Decimal | None, last: Decimal | None) -> Decimal | None:
    """The reference a maker quotes around: the mid of a two-sided quote, else the last price."""
    if bid is not None and ask is not None and bid <= ask:
        return (bid + ask) / 2
    return last


def _to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).quantize(Decimal(1), rounding=rounding) * tick


def _to_lot(quantity: Decimal, lot: Decimal) -> Decimal:
    return max(lot, (quantity / lot).quantize(Decimal(1), rounding=ROUND_FLOOR) * lot)


@dataclass(slots=True)
class Resting:
    side: Side
    price: Decimal
    leaves: Decimal


@dataclass
class MarketMaker:
    """One member's ladder on one symbol."""

    account_id: str
    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    config: MakerConfig
    #: Makes this run's order ids unique (the service passes its start time).
    session: str
    inventory: Decimal = Decimal(0)
    resting: dict[str, Resting] = field(default_factory=dict)
    #: Resting orders whose cancel is on its way: not cancelled twice, not counted as quotes.
    cancelling: set[str] = field(default_factory=set)
    #: The mid the current ladder was drawn around.
    quoted_mid: Decimal | None = None
    _next_id: int = 0

    def ladder(self, mid: Decimal) -> list[tuple[Side, Decimal]]:
        """The (side, price) levels wanted around ``mid`` at the current inventory."""
        wanted: list[tuple[Side, Decimal]] = []
        size = _to_lot(self.config.notional / mid, self.lot_size)
        limit = self.config.max_inventory_notional / mid
        for level in range(self.config.levels):
            offset = (self.config.half_spread_bps + level * self.config.level_step_bps) / _BPS
            bid = _to_tick(mid * (1 - offset), self.tick_size, ROUND_FLOOR)
            ask = _to_tick(mid * (1 + offset), self.tick_size, ROUND_CEILING)
            if ask <= bid:
                ask = bid + self.tick_size
            # Were this level and every better one filled, the position would still be in
            # bounds.
            reach = size * (level + 1)
            if self.inventory + reach <= limit and bid > 0:
                wanted.append((Side.BUY, bid))
            if self.inventory - reach >= -limit:
                wanted.append((Side.SELL, ask))
        return list(dict.fromkeys(wanted))  # a coarse tick can map two levels to one price

    def on_mid(self, mid: Decimal | None, now: datetime) -> list[Message]:
        """A new market mid: redraw the ladder if it moved far enough, and refill it."""
        if mid is None or mid <= 0:
            return []
        if self.quoted_mid is not None:
            moved = abs(mid - self.quoted_mid) / self.quoted_mid * _BPS
            if moved < self.config.requote_bps:
                return self.refill(now)
        self.quoted_mid = mid
        return self.refill(now)

    def refill(self, now: datetime) -> list[Message]:
        """Commands that turn what rests into the ladder around ``quoted_mid``."""
        if self.quoted_mid is None:
            return []
        wanted = self.ladder(self.quoted_mid)
        commands: list[Message] = []
        have = {
            (order.side, order.price)
            for order_id, order in self.resting.items()
            if order_id not in self.cancelling
        }
        for order_id, order in sorted(self.resting.items()):
            if (order.side, order.price) not in wanted and order_id not in self.cancelling:
                self.cancelling.add(order_id)
                commands.append(
                    CancelOrder(
                        order_id=order_id,
                        account_id=self.account_id,
                        symbol=self.symbol,
                        event_time=now,
                    )
                )
        size = _to_lot(self.config.notional / self.quoted_mid, self.lot_size)
        for side, price in wanted:
            if (side, price) in have:
                continue
            self._next_id += 1
            order_id = f"{self.account_id}-{self.symbol}-{self.session}-{self._next_id}"
            self.resting[order_id] = Resting(side, price, size)
            commands.append(
                PlaceOrder(
                    order_id=order_id,
                    account_id=self.account_id,
                    symbol=self.symbol,
                    side=side,
                    order_type=OrderType.LIMIT,
                    time_in_force=TimeInForce.GTC,
                    quantity=size,
                    price=price,
                    event_time=now,
                )
            )
        return commands

    def on_event(self, event: Message) -> bool:
        """An exchange event of one of this maker's orders; ``True`` when the ladder has a gap
        to refill now (a level filled or cancelled)."""
        order_id = getattr(event, "order_id", None)
        order = self.resting.get(order_id) if order_id is not None else None
        if order is None:
            return False
        if isinstance(event, OrderFilled | OrderPartiallyFilled):
            signed = event.last_quantity if order.side is Side.BUY else -event.last_quantity
            self.inventory += signed
            order.leaves = event.leaves_quantity
        if isinstance(event, OrderRejected):
            if event.detail.startswith(_LOST_RACES):
                # A cancel that lost its race (the order filled first): the order itself is as
                # its own events say; a later one will end it.
                self.cancelling.discard(order_id)
                return False
            # Refused (price band, session closed...): the level waits for the next redraw or
            # refresh, rather than being sent straight back to be refused again.
            del self.resting[order_id]
            self.cancelling.discard(order_id)
            return False
        if isinstance(event, OrderFilled | OrderCancelled | OrderExpired):
            del self.resting[order_id]
            self.cancelling.discard(order_id)
            return True
        return False


@dataclass
class Taker:
    """One member sending marketable orders on a set of symbols."""

    account_id: str
    session: str
    config: TakerConfig
    seed: int = 0
    _next_id: int = 0
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def order(self, symbol: str, mid: Decimal, lot_size: Decimal, now: datetime) -> PlaceOrder:
        """A marketable order on ``symbol``, sized at ``mid``."""
        self._next_id += 1
        lots = self._random.randint(1, self.config.max_lots)
        return PlaceOrder(
            order_id=f"{self.account_id}-{self.session}-{self._next_id}",
            account_id=self.account_id,
            symbol=symbol,
            side=self._random.choice((Side.BUY, Side.SELL)),
            order_type=OrderType.MARKET,
            time_in_force=TimeInForce.IOC,
            quantity=_to_lot(self.config.notional * lots / mid, lot_size),
            event_time=now,
        )
