"""Builders shared by the matching tests: terse commands, event summaries, random tapes.

Summaries reduce each wire event to the fields a test states by hand, in a fixed shape per type:

    ("OrderAccepted", seq, order_id)
    ("OrderRejected", seq, order_id, reason)
    ("TradeExecuted", seq, trade_id, price, quantity, taker_order_id, maker_order_id)
    ("OrderFilled" | "OrderPartiallyFilled", seq, order_id, filled, leaves, last_price, last_qty)
    ("OrderCancelled", seq, order_id, reason, cancelled_quantity)
    ("OrderExpired", seq, order_id, expired_quantity)
    ("OrderAmended", seq, order_id, quantity, price, kept_priority, leaves)
    ("OrderDuplicateIgnored", seq, order_id)

Decimals stay strings, exactly as they travel.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from brokerflow.matching import (
    Amend,
    Cancel,
    CloseSession,
    Command,
    Event,
    MatchingEngine,
    NewOrder,
    SetReferencePrice,
    to_json,
    to_wire,
)

SYMBOL = "TEST"
TIME = "2026-01-02T13:00:00.000000Z"


def limit(
    order_id: str,
    side: str,
    quantity: int,
    price: int,
    account: str = "acc1",
    time_in_force: str = "GTC",
) -> NewOrder:
    """A LIMIT order in book units (lots, ticks)."""
    return NewOrder(SYMBOL, order_id, account, side, "LIMIT", time_in_force, quantity, price, TIME)


def market(
    order_id: str, side: str, quantity: int, account: str = "acc1", time_in_force: str = "GTC"
) -> NewOrder:
    return NewOrder(SYMBOL, order_id, account, side, "MARKET", time_in_force, quantity, None, TIME)


def cancel(order_id: str) -> Cancel:
    return Cancel(SYMBOL, order_id, TIME)


def amend(order_id: str, quantity: int | None = None, price: int | None = None) -> Amend:
    return Amend(SYMBOL, order_id, quantity, price, TIME)


def close() -> CloseSession:
    return CloseSession(SYMBOL, TIME)


def summarize(event: Event) -> tuple[Any, ...]:
    """The hand-checkable fields of one event (see the module docstring)."""
    wire = to_wire(event)
    kind = wire["type"]
    if kind == "OrderAccepted":
        return (kind, wire["sequence"], wire["orderId"])
    if kind == "OrderRejected":
        return (kind, wire["sequence"], wire["orderId"], wire["reason"])
    if kind == "TradeExecuted":
        return (
            kind,
            wire["sequence"],
            wire["tradeId"],
            wire["price"],
            wire["quantity"],
            wire["takerOrderId"],
            wire["makerOrderId"],
        )
    if kind in ("OrderFilled", "OrderPartiallyFilled"):
        return (
            kind,
            wire["sequence"],
            wire["orderId"],
            wire["filledQuantity"],
            wire["leavesQuantity"],
            wire["lastPrice"],
            wire["lastQuantity"],
        )
    if kind == "OrderCancelled":
        return (kind, wire["sequence"], wire["orderId"], wire["reason"], wire["cancelledQuantity"])
    if kind == "OrderExpired":
        return (kind, wire["sequence"], wire["orderId"], wire["expiredQuantity"])
    if kind == "OrderAmended":
        return (
            kind,
            wire["sequence"],
            wire["orderId"],
            wire["quantity"],
            wire["price"],
            wire["keptPriority"],
            wire["leavesQuantity"],
        )
    if kind == "OrderDuplicateIgnored":
        return (kind, wire["sequence"], wire["orderId"])
    raise AssertionError(f"unexpected event type {kind}")


def run(engine: MatchingEngine, *commands: Command) -> list[tuple[Any, ...]]:
    """Process commands; summaries of all the events they caused, in order."""
    summaries: list[tuple[Any, ...]] = []
    for command in commands:
        summaries.extend(summarize(event) for event in engine.process(command))
    return summaries


def book(engine: MatchingEngine) -> list[tuple[str, str, int, int]]:
    """Resting orders in book order as (side, order_id, price_ticks, leaves_lots)."""
    return [
        (order.side, order.order_id, order.price, order.leaves) for order in engine.resting_orders()
    ]


def json_lines(engine: MatchingEngine, commands: Iterable[Command]) -> list[str]:
    lines: list[str] = []
    for command in commands:
        lines.extend(to_json(event) for event in engine.process(command))
    return lines


def random_tape(
    rng: random.Random,
    length: int,
    *,
    symbol: str = SYMBOL,
    accounts: int = 3,
    low: int = 95,
    high: int = 105,
    max_quantity: int = 8,
    with_references: bool = True,
) -> list[Command]:
    """A random command tape in book units: every order type, TIF, cancel, amend, duplicate,
    session close and reference price, aimed at a narrow price range so that much trades."""
    commands: list[Command] = []
    ids: list[str] = []
    for number in range(length):
        roll = rng.random()
        event_time = f"2026-01-02T13:{number // 60 % 60:02d}:{number % 60:02d}.000000Z"
        if roll < 0.62 or not ids:
            order_id = f"o{number}"
            ids.append(order_id)
            side = rng.choice(("BUY", "SELL"))
            account = f"acc{rng.randrange(accounts)}"
            quantity = rng.randint(1, max_quantity)
            time_in_force = rng.choices(("GTC", "DAY", "IOC", "FOK"), (6, 2, 1, 1))[0]
            if rng.random() < 0.1:
                commands.append(
                    NewOrder(
                        symbol,
                        order_id,
                        account,
                        side,
                        "MARKET",
                        time_in_force,
                        quantity,
                        None,
                        event_time,
                    )
                )
            else:
                price = rng.randint(low, high)
                commands.append(
                    NewOrder(
                        symbol,
                        order_id,
                        account,
                        side,
                        "LIMIT",
                        time_in_force,
                        quantity,
                        price,
                        event_time,
                    )
                )
        elif roll < 0.76:
            commands.append(Cancel(symbol, rng.choice(ids), event_time))
        elif roll < 0.88:
            quantity = rng.randint(1, max_quantity) if rng.random() < 0.7 else None
            price = rng.randint(low, high) if quantity is None or rng.random() < 0.3 else None
            commands.append(Amend(symbol, rng.choice(ids), quantity, price, event_time))
        elif roll < 0.93:  # a redelivered PlaceOrder: same id, maybe different content
            source = rng.choice([c for c in commands if isinstance(c, NewOrder)] or [None])
            if source is not None:
                commands.append(source)
        elif roll < 0.96:
            commands.append(CloseSession(symbol, event_time))
        elif with_references:
            ticks = rng.randint(low, high)
            commands.append(SetReferencePrice(symbol, Decimal(ticks) / 100))
    return commands


_kind = st.sampled_from(["limit", "limit", "limit", "market", "cancel", "amend", "close", "ref"])


@st.composite
def tapes(draw: st.DrawFn, max_length: int = 40) -> list[Command]:
    """Short tapes from hypothesis, which shrinks a failure to a minimal story.

    Prices 0.97 to 1.03, two accounts (so self-trades happen), redelivered order ids.
    """
    commands: list[Command] = []
    ids: list[str] = []
    for number in range(draw(st.integers(1, max_length))):
        event_time = f"2026-01-02T13:{number // 60 % 60:02d}:{number % 60:02d}.000000Z"
        kind = draw(_kind)
        if kind in ("limit", "market") or not ids:
            order_id = (
                draw(st.sampled_from(ids))
                if ids and draw(st.booleans()) and number % 7 == 0
                else f"o{number}"
            )
            ids.append(order_id)
            side = draw(st.sampled_from(["BUY", "SELL"]))
            account = draw(st.sampled_from(["a", "b"]))
            tif = draw(st.sampled_from(["GTC", "DAY", "IOC", "FOK"]))
            quantity = draw(st.integers(1, 6))
            price = None if kind == "market" else draw(st.integers(97, 103))
            order_type = "MARKET" if kind == "market" else "LIMIT"
            commands.append(
                NewOrder(
                    SYMBOL, order_id, account, side, order_type, tif, quantity, price, event_time
                )
            )
        elif kind == "cancel":
            commands.append(Cancel(SYMBOL, draw(st.sampled_from(ids)), event_time))
        elif kind == "amend":
            quantity = draw(st.none() | st.integers(1, 6))
            price = (
                draw(st.integers(97, 103))
                if quantity is None
                else draw(st.none() | st.integers(97, 103))
            )
            order_id = draw(st.sampled_from(ids))
            commands.append(Amend(SYMBOL, order_id, quantity, price, event_time))
        elif kind == "close":
            commands.append(CloseSession(SYMBOL, event_time))
        else:
            commands.append(SetReferencePrice(SYMBOL, Decimal(draw(st.integers(97, 103))) / 100))
    return commands
