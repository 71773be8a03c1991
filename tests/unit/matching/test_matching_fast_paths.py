"""Pins for the hand-optimised paths of the core: they must mean what the plain code meant.

The engine writes out the new-order match loop and the cancel of a resting order inside
``process`` (the amend path still calls ``_take``), converts reference prices with integer
ratios, and builds resting orders without an ``__init__`` frame. These tests compare each with
the straightforward formulation it replaced.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import ceil, floor
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from brokerflow.matching import (
    MatchingEngine,
    RestingOrder,
    SetReferencePrice,
    SymbolRules,
)
from brokerflow.matching.events import Event
from brokerflow.matching.rules import MAX_TICKS
from tests.unit.matching.support import amend, cancel, limit, run

TICKS = st.sampled_from(["0.01", "0.05", "0.10", "0.25", "1", "5"])
PRICES = st.decimals(
    min_value=Decimal("0.0001"), max_value=Decimal("100000"), allow_nan=False, places=4
)


@given(tick=TICKS, price=PRICES)
def test_price_in_ticks_is_the_exact_fraction(tick: str, price: Decimal) -> None:
    expected = Fraction(price) / Fraction(Decimal(tick))
    ticks = SymbolRules(tick_size=Decimal(tick)).price_in_ticks(price)
    assert ticks == expected
    # a whole number of ticks is a plain int (it is compared with trade prices in ticks)
    assert type(ticks) is (int if expected.denominator == 1 else Fraction)


@given(
    band=st.sampled_from(["0.5", "1", "2.5", "10", "15", "20", "99"]),
    reference=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=3),
    trade_price=st.integers(min_value=1, max_value=10**7),
)
def test_band_bounds_match_the_fraction_formula(
    band: str, reference: Decimal, trade_price: int
) -> None:
    """Both the reference-price path and the inlined per-trade update give ceil/floor bounds."""
    rules = SymbolRules(tick_size=Decimal("0.01"), lot_size=Decimal("1"), price_band_pct=band)
    fraction = Fraction(Decimal(band)) / 100

    def bounds(center: Fraction) -> tuple[int, int]:
        low = max(ceil(center * (1 - fraction)), 1)
        return low, min(floor(center * (1 + fraction)), MAX_TICKS)

    engine = MatchingEngine("PETR4", rules)
    engine.process(SetReferencePrice("PETR4", reference))
    center = Fraction(reference) / Fraction(Decimal("0.01"))
    assert (engine._lowest_price, engine._highest_price) == bounds(center)

    # a trade at trade_price moves the band through the inlined update in process()
    plain = MatchingEngine("PETR4", SymbolRules(tick_size=Decimal("0.01")))
    run(plain, limit("s", "SELL", 1, trade_price, account="a1"))
    run(plain, limit("b", "BUY", 1, trade_price, account="a2"))
    engine = MatchingEngine.restore(plain.state(), [], plain.closed_order_ids(), rules)
    assert (engine._lowest_price, engine._highest_price) == bounds(Fraction(trade_price))
    moved = engine._highest_price  # inside the band, and a new last price unless the band is 0
    run(engine, limit("s2", "SELL", 2, moved, account="a1"))
    run(engine, limit("b2", "BUY", 1, moved, account="a2"))
    assert engine.trade_count == 2
    assert (engine._lowest_price, engine._highest_price) == bounds(Fraction(moved))


def test_resting_orders_are_resting_orders() -> None:
    engine = MatchingEngine("PETR4")
    run(engine, limit("b1", "BUY", 10, 3850, account="a1"))
    (order,) = engine.resting_orders()
    assert isinstance(order, RestingOrder)
    assert repr(order).startswith("RestingOrder('b1', 'a1', BUY, price=3850")
    assert order.to_record() == {
        "orderId": "b1",
        "accountId": "a1",
        "side": "BUY",
        "priceTicks": 3850,
        "quantityLots": 10,
        "leavesLots": 10,
        "timeInForce": "GTC",
        "priority": 1,
    }
    assert type(order.copy()) is RestingOrder
    assert RestingOrder.from_record(order.to_record()).to_record() == order.to_record()


def test_new_order_and_amend_match_the_same_way() -> None:
    """The written-out loop in process() and _take (used by amend) print the same events."""
    makers = [
        limit("s1", "SELL", 5, 3851, account="a1"),
        limit("s2", "SELL", 5, 3851, account="a2"),
        limit("s3", "SELL", 7, 3852, account="a3"),
        limit("s4", "SELL", 9, 3853, account="a4"),
    ]
    by_new_order = MatchingEngine("PETR4")
    run(by_new_order, *makers, cancel("s2"))
    taker = by_new_order.process(limit("b1", "BUY", 15, 3852, account="a9"))

    by_amend = MatchingEngine("PETR4")
    run(by_amend, *makers, cancel("s2"), limit("b1", "BUY", 15, 3800, account="a9"))
    amended = by_amend.process(amend("b1", price=3852))

    def shape(events: list[Event]) -> list[tuple[Any, ...]]:
        # all but the first event (OrderAccepted vs OrderAmended), without codec and sequence
        return [e[:1] + e[3:] if len(e) > 3 else (e[0], e[1][3:], e[2]) for e in events[1:]]

    assert [e[0] for e in taker[1:]] == [e[0] for e in amended[1:]]
    assert shape(taker) == shape(amended)

    def book(engine: MatchingEngine) -> list[tuple[str, int, int]]:
        return [(o.order_id, o.price, o.leaves) for o in engine.resting_orders()]

    assert book(by_new_order) == book(by_amend) == [("b1", 3852, 3), ("s4", 3853, 9)]
