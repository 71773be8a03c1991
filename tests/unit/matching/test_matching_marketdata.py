"""The exchange's book feed: a subscriber applying its messages keeps the top N exactly."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokerflow.matching import MatchingEngine, SymbolRules
from brokerflow.matching.book import Depth, PriceLevel, TopOfBook
from brokerflow.matching.marketdata import (
    BookMessage,
    DepthFeed,
    LevelChange,
    apply_changes,
    book_json,
    book_wire,
    diff_levels,
    market_trade,
)
from brokerflow.schemas import decode
from brokerflow.schemas.book import BookSnapshot, BookUpdate
from brokerflow.schemas.examples import example_of
from brokerflow.schemas.trades import TradeExecuted

from .support import SYMBOL, cancel, limit, run, tapes

D = Decimal


def level(price: str, quantity: str, orders: int = 1) -> PriceLevel:
    return PriceLevel(D(price), D(quantity), orders)


def test_a_better_level_pushes_the_worst_out_of_the_view_with_quantity_zero() -> None:
    before = (level("0.99", "5"), level("0.98", "2"))
    after = (level("1.00", "1"), level("0.99", "5"))
    assert diff_levels(before, after, is_bid=True) == [
        LevelChange(True, D("1.00"), D("1"), 1),
        LevelChange(True, D("0.98"), D("0"), 0),
    ]
    asks_before = (level("1.01", "4"), level("1.02", "1"))
    asks_after = (level("1.01", "3", 2), level("1.02", "1"))
    assert diff_levels(asks_before, asks_after, is_bid=False) == [
        LevelChange(False, D("1.01"), D("3"), 2)
    ]


def test_first_message_is_a_snapshot_then_updates_with_l1_only_when_the_top_moves() -> None:
    engine = MatchingEngine(SYMBOL, SymbolRules())
    feed = DepthFeed(levels=2, snapshot_every=100)
    run(engine, limit("b1", "BUY", 5, 99), limit("s1", "SELL", 4, 101))
    [first] = feed.update(SYMBOL, engine.depth(2))
    assert (first.snapshot, first.sequence) == (True, 1)
    assert first.top == TopOfBook(level("0.99", "5"), level("1.01", "4"))
    assert first.depth == Depth((level("0.99", "5"),), (level("1.01", "4"),))

    run(engine, limit("b2", "BUY", 1, 97))  # a second bid level: depth changes, top does not
    [deeper] = feed.update(SYMBOL, engine.depth(2))
    assert (deeper.snapshot, deeper.sequence, deeper.top_changed) == (False, 2, False)
    assert deeper.top == first.top
    assert deeper.changes == (LevelChange(True, D("0.97"), D("1"), 1),)

    run(engine, limit("b3", "BUY", 1, 96))  # third level: outside the top 2, nothing to say
    assert feed.update(SYMBOL, engine.depth(2)) == []
    assert feed.sequence(SYMBOL) == 2

    run(engine, limit("x1", "SELL", 2, 99))  # trades 2 of b1: the best bid shrinks
    [traded] = feed.update(SYMBOL, engine.depth(2))
    assert traded.sequence == 3
    assert traded.top_changed
    assert traded.top == TopOfBook(level("0.99", "3"), level("1.01", "4"))
    assert traded.changes == (LevelChange(True, D("0.99"), D("3"), 1),)

    run(engine, cancel("b1"))  # 0.97 becomes best, 0.96 enters the view
    [gone] = feed.update(SYMBOL, engine.depth(2))
    assert gone.changes == (
        LevelChange(True, D("0.99"), D("0"), 0),
        LevelChange(True, D("0.96"), D("1"), 1),
    )
    assert gone.top_changed
    assert gone.top.bid == level("0.97", "1")


def test_a_snapshot_follows_every_nth_update() -> None:
    engine = MatchingEngine(SYMBOL, SymbolRules())
    feed = DepthFeed(levels=3, snapshot_every=2)
    kinds: list[tuple[int, bool]] = []
    for n in range(5):
        run(engine, limit(f"b{n}", "BUY", 1, 90 + n))
        kinds += [(m.sequence, m.snapshot) for m in feed.update(SYMBOL, engine.depth(3))]
    assert kinds == [
        (1, True),
        (2, False),
        (3, False),
        (4, True),
        (5, False),
        (6, False),
        (7, True),
    ]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DepthFeed(levels=0)


@settings(max_examples=150, deadline=None)
@given(tape=tapes(max_length=60), levels=st.integers(1, 4), every=st.integers(1, 7))
def test_a_subscriber_applying_the_feed_holds_the_books_top_n(
    tape: list, levels: int, every: int
) -> None:
    engine = MatchingEngine(SYMBOL, SymbolRules())
    feed = DepthFeed(levels=levels, snapshot_every=every)
    copy: Depth | None = None
    last = 0
    for command in tape:
        engine.process(command)
        messages: list[BookMessage] = feed.update(SYMBOL, engine.depth(levels))
        for message in messages:
            assert message.sequence == last + 1  # no gap, snapshots included
            last = message.sequence
            if message.snapshot:
                copy = message.depth
            else:
                assert copy is not None
                copy = apply_changes(copy, message.changes, levels)
        assert copy == engine.depth(levels)
        top = engine.best_bid_ask()
        if messages:
            assert messages[-1].top == top
            when = "2026-06-25T13:30:00.000000Z"
            for message in messages:  # the hand-made bytes are json.dumps of the wire dict
                assert (
                    book_json(message, when)
                    == json.dumps(book_wire(message, when), separators=(",", ":")).encode()
                )
            wire = [decode(book_json(m, when)) for m in messages]
            assert [w.sequence for w in wire] == [m.sequence for m in messages]
            assert [type(w) for w in wire] == [
                BookSnapshot if m.snapshot else BookUpdate for m in messages
            ]
        assert (copy.bids[0] if copy.bids else None, copy.asks[0] if copy.asks else None) == top


def depth_from_orders(engine: MatchingEngine, levels: int) -> Depth:
    """The top ``levels`` per side summed from the resting orders, in decimals."""
    sides = []
    for side, best_first in (("BUY", True), ("SELL", False)):
        quantity: dict[Decimal, Decimal] = {}
        orders: dict[Decimal, int] = {}
        for order in engine.resting_orders():
            if order.side != side:
                continue
            price = engine.rules.ticks_to_price(order.price)
            quantity[price] = quantity.get(price, D(0)) + engine.rules.lots_to_quantity(
                order.leaves
            )
            orders[price] = orders.get(price, 0) + 1
        prices = sorted(quantity, reverse=best_first)[:levels]
        sides.append(tuple(PriceLevel(p, quantity[p], orders[p]) for p in prices))
    return Depth(sides[0], sides[1])


@settings(max_examples=150, deadline=None)
@given(tape=tapes(max_length=60), levels=st.integers(1, 4))
def test_the_depth_key_changes_exactly_when_the_depth_does(tape: list, levels: int) -> None:
    """The agent publishes only when the key (book units) changed and builds the depth from
    the key: both must agree with the depth read from the book after every command."""
    engine = MatchingEngine(SYMBOL, SymbolRules(tick_size=D("0.01"), lot_size=D("5")))
    previous_key, previous_depth = None, None
    for command in tape:
        engine.process(command)
        key, depth = engine.depth_key(levels), engine.depth(levels)
        assert engine.depth_of_key(key) == depth
        assert depth == depth_from_orders(engine, levels)  # built another way: the orders
        assert all(len(side) <= levels for side in key)
        if previous_key is not None:
            assert (key == previous_key) == (depth == previous_depth)
        previous_key, previous_depth = key, depth


def test_the_wire_form_is_the_schemas() -> None:
    engine = MatchingEngine(SYMBOL, SymbolRules())
    feed = DepthFeed(levels=2)
    run(engine, limit("b1", "BUY", 5, 99), limit("s1", "SELL", 4, 101))
    [snapshot] = feed.update(SYMBOL, engine.depth(2))
    run(engine, cancel("s1"))
    [update] = feed.update(SYMBOL, engine.depth(2))
    when = "2026-06-25T13:30:00.000000Z"
    assert decode(book_json(snapshot, when)).to_wire() == {
        "type": "BookSnapshot",
        "schemaVersion": 1,
        "venue": "BROKERFLOW",
        "symbol": SYMBOL,
        "sequence": 1,
        "bids": [{"price": "0.99", "quantity": "5", "orders": 1}],
        "asks": [{"price": "1.01", "quantity": "4", "orders": 1}],
        "eventTime": when,
    }
    assert decode(book_json(update, when)).to_wire() == {
        "type": "BookUpdate",
        "schemaVersion": 1,
        "venue": "BROKERFLOW",
        "symbol": SYMBOL,
        "sequence": 2,
        "bids": [],
        "asks": [{"price": "1.01", "quantity": "0", "orders": 0}],
        "bestBid": {"price": "0.99", "quantity": "5", "orders": 1},
        "bestAsk": None,
        "topChanged": True,
        "eventTime": when,
    }


def test_an_exchange_trade_is_a_print_of_venue_brokerflow_received_when_made() -> None:
    executed = example_of(TradeExecuted)
    trade = market_trade(executed)
    assert (trade.venue, trade.symbol, trade.trade_id) == (
        "BROKERFLOW",
        executed.symbol,
        executed.trade_id,
    )
    assert (trade.price, trade.quantity, trade.aggressor_side) == (
        executed.price,
        executed.quantity,
        executed.aggressor_side,
    )
    assert trade.event_time == trade.receive_time == executed.event_time
