"""Simulated members: the maker's ladder, its refills and inventory bounds, the taker's flow."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokerflow.participants.core import (
    MakerConfig,
    MarketMaker,
    Taker,
    TakerConfig,
    mid_price,
)
from brokerflow.schemas.orders import (
    CancelOrder,
    OrderCancelled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderStatus,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)

NOW = datetime(2026, 6, 25, 13, 30, tzinfo=UTC)
CONFIG = MakerConfig(
    half_spread_bps=Decimal(10),
    level_step_bps=Decimal(10),
    levels=2,
    notional=Decimal(3800),
    max_inventory_notional=Decimal(7600),
    requote_bps=Decimal(5),
)


def maker(config: MakerConfig = CONFIG) -> MarketMaker:
    return MarketMaker("mm-1", "PETR4", Decimal("0.01"), Decimal(1), config, session="s1")


def places(commands: list[object]) -> list[tuple[str, str, str]]:
    return [
        (c.side.value, str(c.price), str(c.quantity)) for c in commands if isinstance(c, PlaceOrder)
    ]


def fill(order_id: str, quantity: str, leaves: str, filled: str) -> OrderFilled:
    cls = OrderFilled if leaves == "0" else OrderPartiallyFilled
    return cls(
        order_id=order_id,
        account_id="mm-1",
        symbol="PETR4",
        sequence=9,
        trade_id="PETR4-T9",
        last_price=Decimal("37.96"),
        last_quantity=Decimal(quantity),
        filled_quantity=Decimal(filled),
        leaves_quantity=Decimal(leaves),
        event_time=NOW,
    )


def rejected(order_id: str, reason: str, detail: str = "") -> OrderRejected:
    return OrderRejected(
        order_id=order_id,
        account_id="mm-1",
        symbol="PETR4",
        status=OrderStatus.REJECTED,
        sequence=10,
        filled_quantity=Decimal(0),
        leaves_quantity=Decimal(0),
        reason=reason,
        detail=detail,
        event_time=NOW,
    )


def test_the_mid_is_the_quotes_middle_else_the_last_price() -> None:
    assert mid_price(Decimal("37.99"), Decimal("38.01"), Decimal("40")) == Decimal("38.00")
    assert mid_price(None, Decimal("38.01"), Decimal("38.50")) == Decimal("38.50")
    assert mid_price(Decimal("38.02"), Decimal("38.01"), None) is None  # crossed, no last


def test_a_ladder_of_limit_gtc_orders_around_the_mid_rounded_outward_to_the_tick() -> None:
    mm = maker()
    commands = mm.on_mid(Decimal("38.00"), NOW)
    # 10 bps of 38.00 = 0.038: bid 37.962 -> 37.96, ask 38.038 -> 38.04; 20 bps: 37.92 / 38.08.
    # Each level worth 3,800 BRL: 100 shares.
    assert places(commands) == [
        ("BUY", "37.96", "100"),
        ("SELL", "38.04", "100"),
        ("BUY", "37.92", "100"),
        ("SELL", "38.08", "100"),
    ]
    assert all(
        c.order_type is OrderType.LIMIT and c.time_in_force is TimeInForce.GTC for c in commands
    )
    assert [c.order_id for c in commands] == [
        "mm-1-PETR4-s1-1",
        "mm-1-PETR4-s1-2",
        "mm-1-PETR4-s1-3",
        "mm-1-PETR4-s1-4",
    ]


def test_a_small_move_changes_nothing_a_large_one_moves_the_ladder() -> None:
    mm = maker()
    first = mm.on_mid(Decimal("38.00"), NOW)
    assert mm.on_mid(Decimal("38.01"), NOW) == []  # 2.6 bps < 5
    moved = mm.on_mid(Decimal("38.10"), NOW)  # 26 bps
    cancelled = [c.order_id for c in moved if isinstance(c, CancelOrder)]
    assert sorted(cancelled) == sorted(c.order_id for c in first)
    assert places(moved) == [
        ("BUY", "38.06", "99"),
        ("SELL", "38.14", "99"),
        ("BUY", "38.02", "99"),
        ("SELL", "38.18", "99"),
    ]


def test_a_filled_level_is_placed_again_a_partly_filled_one_keeps_its_place() -> None:
    mm = maker(replace(CONFIG, max_inventory_notional=Decimal(38000)))
    bid_1, _, bid_2, _ = mm.on_mid(Decimal("38.00"), NOW)
    assert mm.on_event(fill(bid_2.order_id, "40", "60", "40")) is False
    assert mm.refill(NOW) == []
    assert mm.on_event(fill(bid_1.order_id, "100", "0", "100")) is True
    assert mm.inventory == Decimal(140)
    again = mm.refill(NOW)
    assert places(again) == [("BUY", "37.96", "100")]
    assert again[0].order_id == "mm-1-PETR4-s1-5"


def test_at_its_inventory_limit_it_stops_bidding_until_it_sells() -> None:
    mm = maker()
    bid_1, ask_1, bid_2, _ = mm.on_mid(Decimal("38.00"), NOW)
    mm.on_event(fill(bid_1.order_id, "100", "0", "100"))
    mm.on_event(fill(bid_2.order_id, "100", "0", "100"))
    # Long 200 = 7,600 BRL at 38: one more bid would pass the limit.
    assert mm.refill(NOW) == []
    assert {(o.side, str(o.price)) for o in mm.resting.values()} == {
        (Side.SELL, "38.04"),
        (Side.SELL, "38.08"),
    }
    mm.on_event(fill(ask_1.order_id, "100", "0", "100"))
    assert places(mm.refill(NOW)) == [("BUY", "37.96", "100"), ("SELL", "38.04", "100")]


def test_a_refused_cancel_leaves_the_order_resting() -> None:
    mm = maker()
    bid_1, *_ = mm.on_mid(Decimal("38.00"), NOW)
    lost = rejected(bid_1.order_id, "UNKNOWN_ORDER", "CancelOrder: the order is not on the book")
    assert mm.on_event(lost) is False
    assert bid_1.order_id in mm.resting


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="levels >= 1"):
        MakerConfig(levels=0)
    with pytest.raises(ValueError, match="half_spread_bps > 0"):
        MakerConfig(half_spread_bps=Decimal(0))
    with pytest.raises(ValueError, match="max_lots >= 1"):
        TakerConfig(max_lots=0)


def test_a_taker_sends_market_ioc_orders_sized_at_the_mid_the_same_for_the_same_seed() -> None:
    def flow(seed: int) -> list[tuple[str, str]]:
        taker = Taker("tk-1", "s1", TakerConfig(notional=Decimal(1000), max_lots=3), seed=seed)
        orders = [
            taker.order("BTCUSDT", Decimal(94000), Decimal("0.00001"), NOW) for _ in range(20)
        ]
        assert all(o.order_type is OrderType.MARKET for o in orders)
        assert all(o.time_in_force is TimeInForce.IOC for o in orders)
        return [(o.side.value, str(o.quantity)) for o in orders]

    assert flow(7) == flow(7)
    assert flow(7) != flow(8)
    sizes = {quantity for _, quantity in flow(7)}
    # 1,000 / 94,000 = 0.01063829... -> 0.01063 lots of 0.00001; x2, x3 likewise.
    assert sizes <= {"0.01063", "0.02127", "0.03191"}
    assert {side for side, _ in flow(7)} == {"BUY", "SELL"}


def test_a_refused_order_leaves_a_gap_for_the_next_refresh_not_an_instant_resend() -> None:
    mm = maker()
    bid_1, *_ = mm.on_mid(Decimal("38.00"), NOW)
    refused = rejected(bid_1.order_id, "MARKET_CLOSED")
    assert mm.on_event(refused) is False
    assert bid_1.order_id not in mm.resting
    assert places(mm.refill(NOW)) == [("BUY", "37.96", "100")]


def test_an_order_is_cancelled_once_however_often_the_ladder_is_refilled() -> None:
    mm = maker()
    first = mm.on_mid(Decimal("38.00"), NOW)
    moved = mm.on_mid(Decimal("38.10"), NOW)
    assert len([c for c in moved if isinstance(c, CancelOrder)]) == 4
    # Until the exchange says they are cancelled, they rest: no second cancel, no new quote.
    assert mm.refill(NOW) == []
    assert mm.on_mid(Decimal("38.101"), NOW) == []
    gone = OrderCancelled(
        order_id=first[0].order_id,
        account_id="mm-1",
        symbol="PETR4",
        sequence=11,
        filled_quantity=Decimal(0),
        leaves_quantity=Decimal(0),
        reason="USER",
        cancelled_quantity=Decimal(100),
        event_time=NOW,
    )
    assert mm.on_event(gone) is True
    assert first[0].order_id not in mm.resting
    assert mm.refill(NOW) == []  # the new ladder is complete; nothing to cancel again
