"""The multi-symbol façade, its decimal entry points, and persistence records."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokerflow.errors import ConfigError
from brokerflow.matching import (
    EngineState,
    Exchange,
    MatchingEngine,
    RestingOrder,
    SymbolRules,
    to_wire,
)
from brokerflow.schemas.orders import AmendOrder, CancelOrder, PlaceOrder

from .support import SYMBOL, limit, run

WHEN = datetime(2026, 1, 2, 13, 0, tzinfo=UTC)


def test_each_symbol_gets_its_own_engine_with_its_rules_or_the_defaults() -> None:
    lots = SymbolRules(lot_size=Decimal("100"))
    exchange = Exchange({"PETR4": lots})
    assert exchange.engine("PETR4").rules is lots
    assert exchange.engine("ZZZZ3").rules == SymbolRules()
    assert list(exchange.engines) == ["PETR4", "ZZZZ3"]
    assert exchange.engine("PETR4") is exchange.engine("PETR4")


def test_decimal_entry_points_convert_to_book_units() -> None:
    exchange = Exchange({"PETR4": SymbolRules(lot_size=Decimal("100"))})
    events = exchange.place(
        "PETR4", "o1", "a1", "BUY", "LIMIT", Decimal("300"), Decimal("38.50"), "DAY"
    )
    assert to_wire(events[0])["quantity"] == "300"
    order = exchange.engine("PETR4").order("o1")
    assert order is not None
    assert (order.price, order.quantity, order.time_in_force) == (3850, 3, "DAY")
    exchange.amend("PETR4", "o1", quantity=Decimal("200"))
    assert exchange.engine("PETR4").order("o1").leaves == 2  # type: ignore[union-attr]
    assert [to_wire(e)["type"] for e in exchange.cancel("PETR4", "o1")] == ["OrderCancelled"]


def test_apply_takes_the_wire_commands() -> None:
    exchange = Exchange()
    place = PlaceOrder(
        order_id="o1",
        account_id="a1",
        symbol="petr4",
        side="SELL",
        order_type="LIMIT",
        quantity="10",
        price="38.52",
        event_time="2026-01-02T10:00:00-03:00",
    )
    accepted = to_wire(exchange.apply(place)[0])
    assert (accepted["symbol"], accepted["eventTime"], accepted["timeInForce"]) == (
        "PETR4",
        "2026-01-02T13:00:00.000000Z",
        "GTC",
    )
    amended = exchange.apply(
        AmendOrder(order_id="o1", symbol="PETR4", price="38.55", event_time=WHEN)
    )
    assert to_wire(amended[0])["price"] == "38.55"
    cancelled = exchange.apply(CancelOrder(order_id="o1", symbol="PETR4", event_time=WHEN))
    assert to_wire(cancelled[0])["reason"] == "USER"


def test_close_session_without_a_symbol_closes_every_symbol_in_order_of_first_use() -> None:
    exchange = Exchange()
    for symbol in ("VALE3", "PETR4"):
        exchange.place(symbol, "d", "a", "BUY", "LIMIT", Decimal(1), Decimal(1), "DAY")
    expired = [to_wire(event)["symbol"] for event in exchange.close_session()]
    assert expired == ["VALE3", "PETR4"]


def test_records_round_trip_and_restore_refuses_other_units() -> None:
    engine = MatchingEngine(SYMBOL)
    run(engine, limit("b1", "BUY", 5, 99), limit("s1", "SELL", 2, 99, "x"))
    order = engine.order("b1")
    assert order is not None
    assert RestingOrder.from_record(order.to_record()).to_record() == order.to_record()
    state = engine.state()
    assert EngineState.from_record(state.to_record()) == state
    assert state.to_record() == {
        "symbol": "TEST",
        "tickSize": "0.01",
        "lotSize": "1",
        "lastSequence": 5,
        "lastTradeNumber": 1,
        "lastPriority": 1,
        "referencePrice": "0.99",
    }
    with pytest.raises(ConfigError, match="migrate the stored orders"):
        MatchingEngine.restore(state, [order], [], SymbolRules(tick_size=Decimal("0.05")))
    exchange = Exchange()
    restored = MatchingEngine.restore(state, [order], engine.closed_order_ids())
    exchange.install(restored)
    assert exchange.engine(SYMBOL) is restored
    assert run(restored, limit("s1", "SELL", 1, 99, "x")) == [("OrderDuplicateIgnored", 6, "s1")]
