"""Invariants over random command sequences (hypothesis).

After every command: the book is not crossed; orders at one price queue in arrival order and are
filled in that order; each order's quantity is accounted for; FOK is all or nothing; the stored
copy of the book (from ``changes``) equals the book. Over a whole tape: the same commands give the
same bytes, and an engine restored from the store mid-tape continues byte for byte.
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from brokerflow.matching import (
    Command,
    EngineState,
    MatchingEngine,
    NewOrder,
    RestingOrder,
    SymbolRules,
    to_json,
    to_wire,
)

from .support import SYMBOL, tapes

RULES = st.sampled_from(
    [
        SymbolRules(),
        SymbolRules(price_band_pct=Decimal("2"), self_trade_prevention="CANCEL_NEWEST"),
        SymbolRules(lot_size=Decimal("0.5"), self_trade_prevention="CANCEL_OLDEST"),
    ]
)
PROPERTY_SETTINGS = settings(max_examples=120, deadline=None)


@PROPERTY_SETTINGS
@given(tape=tapes(max_length=60), rules=RULES)
def test_the_book_is_never_crossed(tape: list[Command], rules: SymbolRules) -> None:
    engine = MatchingEngine(SYMBOL, rules)
    for command in tape:
        engine.process(command)
        top = engine.best_bid_ask()
        if top.bid is not None and top.ask is not None:
            assert top.bid.price < top.ask.price


@PROPERTY_SETTINGS
@given(tape=tapes(max_length=60), rules=RULES)
def test_fifo_within_a_price_level(tape: list[Command], rules: SymbolRules) -> None:
    engine = MatchingEngine(SYMBOL, rules)
    for command in tape:
        priority_before = {order.order_id: order.priority for order in engine.resting_orders()}
        events = engine.process(command)
        # Makers met at one price within a command are met in arrival order.
        last_at_price: dict[str, int] = {}
        for event in events:
            wire = to_wire(event)
            if wire["type"] == "TradeExecuted" and wire["makerOrderId"] in priority_before:
                priority = priority_before[wire["makerOrderId"]]
                assert priority > last_at_price.get(wire["price"], 0)
                last_at_price[wire["price"]] = priority
        # And every queue on the book is in arrival order.
        queues: dict[tuple[str, int], list[int]] = defaultdict(list)
        for order in engine.resting_orders():
            queues[order.side, order.price].append(order.priority)
        for priorities in queues.values():
            assert priorities == sorted(priorities)
            assert len(set(priorities)) == len(priorities)


@PROPERTY_SETTINGS
@given(tape=tapes(max_length=60), rules=RULES)
def test_every_order_quantity_is_accounted_for(tape: list[Command], rules: SymbolRules) -> None:
    """filled + open + cancelled + expired = the order's quantity (its latest, after amends)."""
    engine = MatchingEngine(SYMBOL, rules)
    ordered: dict[str, Decimal] = {}
    filled: dict[str, Decimal] = defaultdict(Decimal)
    gone: dict[str, Decimal] = defaultdict(Decimal)
    for command in tape:
        for event in engine.process(command):
            wire = to_wire(event)
            kind, order_id = wire["type"], wire.get("orderId")
            if kind == "OrderAccepted" and order_id in ordered:
                # An id forgotten at a session close, placed again: the old order ended whole.
                assert filled[order_id] + gone[order_id] == ordered[order_id], order_id
                filled.pop(order_id, None)
                gone.pop(order_id, None)
            if kind in ("OrderAccepted", "OrderAmended"):
                ordered[order_id] = Decimal(wire["quantity"])
            elif kind in ("OrderFilled", "OrderPartiallyFilled"):
                filled[order_id] += Decimal(wire["lastQuantity"])
                assert Decimal(wire["filledQuantity"]) == filled[order_id]
            elif kind == "OrderCancelled":
                gone[order_id] += Decimal(wire["cancelledQuantity"])
            elif kind == "OrderExpired":
                gone[order_id] += Decimal(wire["expiredQuantity"])
            if kind not in ("TradeExecuted", "OrderDuplicateIgnored", "OrderRejected"):
                # Each event's own view: filled + leaves (+ what it takes away) = quantity.
                taken = Decimal(wire.get("cancelledQuantity", wire.get("expiredQuantity", "0")))
                total = Decimal(wire["filledQuantity"]) + Decimal(wire["leavesQuantity"]) + taken
                assert total == ordered[order_id]
        resting = {order.order_id: order for order in engine.resting_orders()}
        for order_id, quantity in ordered.items():
            order = resting.get(order_id)
            open_quantity = (
                Decimal(0) if order is None else engine.rules.lots_to_quantity(order.leaves)
            )
            assert filled[order_id] + open_quantity + gone[order_id] == quantity, order_id


@PROPERTY_SETTINGS
@given(tape=tapes(max_length=60), rules=RULES)
def test_fok_is_all_or_nothing(tape: list[Command], rules: SymbolRules) -> None:
    engine = MatchingEngine(SYMBOL, rules)
    for command in tape:
        events = [to_wire(event) for event in engine.process(command)]
        if not (isinstance(command, NewOrder) and command.time_in_force == "FOK"):
            continue
        if events[0]["type"] != "OrderAccepted":
            continue  # rejected or duplicate: nothing happened at all
        own = [e for e in events if e.get("orderId") == command.order_id]
        trades = [e for e in events if e["type"] == "TradeExecuted"]
        if own[-1]["type"] == "OrderFilled":
            assert own[-1]["filledQuantity"] == own[0]["quantity"]
        else:
            assert own[-1]["type"] == "OrderCancelled"
            assert own[-1]["reason"] == "FOK_UNFILLABLE"
            assert own[-1]["cancelledQuantity"] == own[0]["quantity"]
            assert trades == []
            assert len(events) == 2


@PROPERTY_SETTINGS
@given(tape=tapes(max_length=60), rules=RULES)
def test_same_tape_same_bytes(tape: list[Command], rules: SymbolRules) -> None:
    def play() -> list[str]:
        engine = MatchingEngine(SYMBOL, rules)
        return [to_json(event) for command in tape for event in engine.process(command)]

    assert play() == play()


class _Store:
    """What the Faust agent keeps: one record per order id (or a tombstone), one per symbol.

    Values are JSON text, as they would be bytes in RocksDB, so nothing is shared with the
    engine by reference.
    """

    TOMBSTONE = '{"closed":true}'

    def __init__(self) -> None:
        self.orders: dict[str, str] = {}
        self.state = ""

    def write(self, engine: MatchingEngine) -> None:
        touched = [order_id for order_id, _ in engine.changes]
        assert len(touched) == len(set(touched)), "one change per order per command"
        for order_id, order in engine.changes:
            self.orders[order_id] = (
                self.TOMBSTONE if order is None else json.dumps(order.to_record())
            )
        for order_id in engine.forgotten:  # a session close: those records are deleted
            del self.orders[order_id]
        self.state = json.dumps(engine.state().to_record())

    def restore(self, rules: SymbolRules) -> MatchingEngine:
        resting, closed = [], []
        for order_id, value in self.orders.items():
            if value == self.TOMBSTONE:
                closed.append(order_id)
            else:
                resting.append(RestingOrder.from_record(json.loads(value)))
        state = EngineState.from_record(json.loads(self.state))
        return MatchingEngine.restore(state, resting, closed, rules)

    def resting_records(self) -> dict[str, Any]:
        return {
            order_id: json.loads(value)
            for order_id, value in self.orders.items()
            if value != self.TOMBSTONE
        }


@PROPERTY_SETTINGS
@given(tape=tapes(max_length=60), rules=RULES)
def test_the_store_written_from_changes_mirrors_the_book(
    tape: list[Command], rules: SymbolRules
) -> None:
    engine = MatchingEngine(SYMBOL, rules)
    store = _Store()
    for command in tape:
        engine.process(command)
        store.write(engine)
        assert store.resting_records() == {
            order.order_id: order.to_record() for order in engine.resting_orders()
        }
        tombstones = {oid for oid, value in store.orders.items() if value == _Store.TOMBSTONE}
        assert tombstones == engine.closed_order_ids()


@PROPERTY_SETTINGS
@given(tape=tapes(max_length=60), rules=RULES, data=st.data())
def test_a_restored_engine_continues_byte_for_byte(
    tape: list[Command], rules: SymbolRules, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(tape)), label="cut")
    uninterrupted = MatchingEngine(SYMBOL, rules)
    expected: list[str] = []
    for index, command in enumerate(tape):
        lines = [to_json(event) for event in uninterrupted.process(command)]
        if index >= cut:
            expected.extend(lines)

    first = MatchingEngine(SYMBOL, rules)
    store = _Store()
    store.state = json.dumps(first.state().to_record())
    for command in tape[:cut]:
        first.process(command)
        store.write(first)
    restored = store.restore(rules)
    got = [to_json(event) for command in tape[cut:] for event in restored.process(command)]
    assert got == expected
    assert restored.state() == uninterrupted.state()
    assert [o.to_record() for o in restored.resting_orders()] == [
        o.to_record() for o in uninterrupted.resting_orders()
    ]
