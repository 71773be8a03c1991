"""Every event the core emits is a valid wire message, and the fast JSON encoder agrees."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter

from brokerflow.matching import (
    Event,
    Exchange,
    MatchingEngine,
    SelfTradePrevention,
    SymbolRules,
    event_account_id,
    event_order_id,
    event_sequence,
    event_type,
    to_json,
    to_json_lines,
    to_wire,
)
from brokerflow.schemas.orders import OrderEvent
from brokerflow.schemas.trades import TradeExecuted

from .support import random_tape

ORDER_EVENT = TypeAdapter(OrderEvent)

RULES = (
    SymbolRules(),
    SymbolRules(
        tick_size=Decimal("0.05"),
        lot_size=Decimal("100"),
        price_band_pct=Decimal("3"),
        self_trade_prevention=SelfTradePrevention.CANCEL_NEWEST,
    ),
    SymbolRules(
        tick_size=Decimal("0.25"),
        lot_size=Decimal("0.001"),
        price_band_pct=Decimal("2.5"),
        self_trade_prevention=SelfTradePrevention.CANCEL_OLDEST,
    ),
)


def _big_tape_events() -> list[Event]:
    rng = random.Random(7)
    events: list[Event] = []
    for index, rules in enumerate(RULES):
        engine = MatchingEngine(f"SYM{index}", rules)
        for command in random_tape(rng, 3000, symbol=engine.symbol, accounts=4):
            events.extend(engine.process(command))
    # Rejections decided at the decimal edge, and their duplicates.
    exchange = Exchange({"EDGE": RULES[1]})
    for order_id, quantity, price in (("t", "100", "1.02"), ("l", "150", "1.00"), ("t", "1", "1")):
        events.extend(
            exchange.place("EDGE", order_id, "a", "BUY", "LIMIT", Decimal(quantity), Decimal(price))
        )
    events.extend(exchange.amend("EDGE", "missing", price=Decimal("1.01")))
    events.extend(exchange.place("EDGE", "s", "a", "SELL", "LIMIT", Decimal(300), Decimal(1)))
    events.extend(exchange.place("EDGE", "b", "x", "BUY", "LIMIT", Decimal(200), Decimal(1)))
    events.extend(exchange.amend("EDGE", "s", quantity=Decimal(100)))
    return events


@pytest.fixture(scope="module")
def tape_events() -> list[Event]:
    return _big_tape_events()


def test_the_tape_covers_every_event_type(tape_events: list[Event]) -> None:
    kinds = {event_type(event) for event in tape_events}
    assert kinds == {
        "OrderAccepted",
        "OrderRejected",
        "OrderPartiallyFilled",
        "OrderFilled",
        "OrderCancelled",
        "OrderExpired",
        "OrderAmended",
        "OrderDuplicateIgnored",
        "TradeExecuted",
    }
    reasons = {to_wire(event).get("reason") for event in tape_events}
    assert {
        "USER",
        "IOC_REMAINDER",
        "FOK_UNFILLABLE",
        "MARKET_NO_LIQUIDITY",
        "SELF_TRADE",
        "UNKNOWN_ORDER",
        "AMEND_BELOW_FILLED",
        "PRICE_BAND",
        "TICK_SIZE",
        "LOT_SIZE",
    } <= reasons


def test_every_event_validates_against_the_wire_schema(tape_events: list[Event]) -> None:
    for event in tape_events:
        wire = to_wire(event)
        if wire["type"] == "TradeExecuted":
            model: Any = TradeExecuted.model_validate(wire)
        else:
            model = ORDER_EVENT.validate_python(wire)
        # A model round trip gives back the same dict: same names, types and decimal texts.
        assert model.to_wire() == wire, wire


def test_fast_json_is_byte_identical_to_json_dumps_of_the_wire_dict(
    tape_events: list[Event],
) -> None:
    for event in tape_events:
        assert to_json(event) == json.dumps(to_wire(event), separators=(",", ":"))
    assert to_json_lines(tape_events[:50]) == [to_json(event) for event in tape_events[:50]]


def test_sequences_are_gap_free_per_symbol(tape_events: list[Event]) -> None:
    last: dict[str, int] = {}
    for event in tape_events:
        symbol = to_wire(event)["symbol"]
        assert event_sequence(event) == last.get(symbol, 0) + 1
        assert to_wire(event)["sequence"] == event_sequence(event)
        last[symbol] = event_sequence(event)


def test_account_and_order_accessors_agree_with_the_wire_dict(tape_events: list[Event]) -> None:
    """The exchange routes execution reports by ``event_account_id``: it must name the account
    the wire event names, fills of both sides included."""
    routed = 0
    for event in tape_events:
        wire = to_wire(event)
        if wire["type"] in ("TradeExecuted", "OrderDuplicateIgnored"):
            assert event_account_id(event) is None
            continue
        assert event_account_id(event) == wire["accountId"]
        assert event_order_id(event) == wire["orderId"]
        routed += wire["accountId"] is not None
    assert routed > 100


def test_ids_and_times_with_awkward_characters_are_escaped() -> None:
    engine = MatchingEngine("X")
    awkward = 'quote"back\\slash\tnon-ascii é €'
    from brokerflow.matching import NewOrder

    events = engine.process(
        NewOrder("X", awkward, awkward, "BUY", "LIMIT", "GTC", 1, 100, "2026-01-02T13:00:00Z")
    )
    events += engine.process(
        NewOrder("X", "s", awkward, "SELL", "LIMIT", "GTC", 1, 100, "2026-01-02T13:00:00Z")
    )
    for event in events:
        line = to_json(event)
        assert line.isascii()
        assert json.loads(line) == to_wire(event)
