"""The engine against a small matcher that is obviously correct, over many random tapes.

The reference keeps every resting order in one list and, for each match, scans it for the best
counter-order: best price, then earliest arrival. It is slow and short; it shares no code with the
engine (it formats its own decimals) and follows the rules as the issue states them. Both must
produce the same events, in the same order, with the same numbers, and leave the same book.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokerflow.matching import (
    Amend,
    Cancel,
    CloseSession,
    Command,
    MatchingEngine,
    NewOrder,
    SelfTradePrevention,
    SetReferencePrice,
    SymbolRules,
)

from .support import SYMBOL, TIME, book, random_tape, summarize, tapes

RULE_SETS = (
    SymbolRules(),
    SymbolRules(price_band_pct=Decimal("3"), self_trade_prevention="CANCEL_NEWEST"),
    SymbolRules(
        tick_size=Decimal("0.05"),
        lot_size=Decimal("10"),
        price_band_pct=Decimal("5"),
        self_trade_prevention="CANCEL_OLDEST",
    ),
)


@dataclass
class _Order:
    order_id: str
    account_id: str
    side: str
    price: int
    quantity: int
    leaves: int
    time_in_force: str
    arrival: int


class ReferenceMatcher:
    """Price-time priority by linear scan; emits the same summaries as ``support.summarize``."""

    def __init__(self, rules: SymbolRules) -> None:
        self.rules = rules
        self.resting: list[_Order] = []
        self.seen: set[str] = set()
        self.reference: Fraction | None = None
        self.arrivals = 0
        self.sequence = 0
        self.trades = 0
        self.out: list[tuple[Any, ...]] = []

    # formatting, independently of the engine's codec
    def price(self, ticks: int) -> str:
        return format(ticks * self.rules.tick_size, "f")

    def qty(self, lots: int) -> str:
        return format(lots * self.rules.lot_size, "f")

    def emit(self, kind: str, *fields: Any) -> None:
        self.sequence += 1
        self.out.append((kind, self.sequence, *fields))

    def outside_band(self, price: int) -> bool:
        pct = self.rules.price_band_pct
        if pct is None or self.reference is None:
            return False
        return abs(price - self.reference) * 100 > Fraction(pct) * self.reference

    def crosses(self, taker_side: str, limit: int | None, resting: _Order) -> bool:
        if resting.side == taker_side:
            return False
        if limit is None:
            return True
        return resting.price <= limit if taker_side == "BUY" else resting.price >= limit

    def queue(self, taker_side: str, limit: int | None) -> list[_Order]:
        """Crossing resting orders, in the order they would be met."""
        crossing = [o for o in self.resting if self.crosses(taker_side, limit, o)]
        if taker_side == "BUY":
            return sorted(crossing, key=lambda o: (o.price, o.arrival))
        return sorted(crossing, key=lambda o: (-o.price, o.arrival))

    def stp(self) -> SelfTradePrevention:
        return self.rules.self_trade_prevention

    def fillable(self, side: str, limit: int | None, account: str, quantity: int) -> bool:
        available = 0
        for resting in self.queue(side, limit):
            if resting.account_id == account and self.stp() is SelfTradePrevention.CANCEL_NEWEST:
                break
            if resting.account_id == account and self.stp() is SelfTradePrevention.CANCEL_OLDEST:
                continue
            available += resting.leaves
        return available >= quantity

    def take(
        self, taker_id: str, account: str, side: str, limit: int | None, remaining: int, filled: int
    ) -> tuple[int, int, bool]:
        """Match; returns (remaining, filled, stopped by self-trade prevention)."""
        while remaining > 0:
            queue = self.queue(side, limit)
            if not queue:
                break
            maker = queue[0]
            if maker.account_id == account and self.stp() is SelfTradePrevention.CANCEL_NEWEST:
                self.emit("OrderCancelled", taker_id, "SELF_TRADE", self.qty(remaining))
                return 0, filled, True
            if maker.account_id == account and self.stp() is SelfTradePrevention.CANCEL_OLDEST:
                self.resting.remove(maker)
                self.emit("OrderCancelled", maker.order_id, "SELF_TRADE", self.qty(maker.leaves))
                continue
            quantity = min(remaining, maker.leaves)
            maker.leaves -= quantity
            remaining -= quantity
            filled += quantity
            self.trades += 1
            trade_id = f"{SYMBOL}-T{self.trades}"
            price = self.price(maker.price)
            self.emit(
                "TradeExecuted", trade_id, price, self.qty(quantity), taker_id, maker.order_id
            )
            self.emit(
                "OrderFilled" if maker.leaves == 0 else "OrderPartiallyFilled",
                maker.order_id,
                self.qty(maker.quantity - maker.leaves),
                self.qty(maker.leaves),
                price,
                self.qty(quantity),
            )
            self.emit(
                "OrderFilled" if remaining == 0 else "OrderPartiallyFilled",
                taker_id,
                self.qty(filled),
                self.qty(remaining),
                price,
                self.qty(quantity),
            )
            if maker.leaves == 0:
                self.resting.remove(maker)
            self.reference = Fraction(maker.price)
        return remaining, filled, False

    def rest(self, order: _Order) -> None:
        self.arrivals += 1
        order.arrival = self.arrivals
        self.resting.append(order)

    def find(self, order_id: str) -> _Order | None:
        for order in self.resting:
            if order.order_id == order_id:
                return order
        return None

    def apply(self, command: Command) -> None:
        if isinstance(command, NewOrder):
            self.new(command)
        elif isinstance(command, Cancel):
            order = self.find(command.order_id)
            if order is None:
                self.emit("OrderRejected", command.order_id, "UNKNOWN_ORDER")
            else:
                self.resting.remove(order)
                self.emit("OrderCancelled", order.order_id, "USER", self.qty(order.leaves))
        elif isinstance(command, Amend):
            self.amend(command)
        elif isinstance(command, CloseSession):
            bids = sorted(
                (o for o in self.resting if o.side == "BUY"), key=lambda o: (-o.price, o.arrival)
            )
            asks = sorted(
                (o for o in self.resting if o.side == "SELL"), key=lambda o: (o.price, o.arrival)
            )
            for order in bids + asks:
                if order.time_in_force == "DAY":
                    self.resting.remove(order)
                    self.emit("OrderExpired", order.order_id, self.qty(order.leaves))
            # Ids are unique within a session: only resting orders keep theirs.
            self.seen = {order.order_id for order in self.resting}
        elif isinstance(command, SetReferencePrice):
            self.reference = Fraction(command.price) / Fraction(self.rules.tick_size)
        else:
            raise AssertionError(command)

    def new(self, command: NewOrder) -> None:
        if command.order_id in self.seen:
            self.emit("OrderDuplicateIgnored", command.order_id)
            return
        self.seen.add(command.order_id)
        limit = command.price
        if command.order_type == "LIMIT" and self.outside_band(limit):  # type: ignore[arg-type]
            self.emit("OrderRejected", command.order_id, "PRICE_BAND")
            return
        self.emit("OrderAccepted", command.order_id)
        tif = command.time_in_force
        if tif == "FOK" and not self.fillable(
            command.side, limit, command.account_id, command.quantity
        ):
            self.emit(
                "OrderCancelled", command.order_id, "FOK_UNFILLABLE", self.qty(command.quantity)
            )
            return
        remaining, _, stopped = self.take(
            command.order_id, command.account_id, command.side, limit, command.quantity, 0
        )
        if stopped or remaining == 0:
            return
        if command.order_type == "MARKET":
            self.emit(
                "OrderCancelled", command.order_id, "MARKET_NO_LIQUIDITY", self.qty(remaining)
            )
        elif tif == "IOC":
            self.emit("OrderCancelled", command.order_id, "IOC_REMAINDER", self.qty(remaining))
        else:
            self.rest(
                _Order(
                    command.order_id,
                    command.account_id,
                    command.side,
                    limit,  # type: ignore[arg-type]
                    command.quantity,
                    remaining,
                    tif,
                    0,
                )
            )

    def amend(self, command: Amend) -> None:
        order = self.find(command.order_id)
        if order is None:
            self.emit("OrderRejected", command.order_id, "UNKNOWN_ORDER")
            return
        quantity = order.quantity if command.quantity is None else command.quantity
        price = order.price if command.price is None else command.price
        filled = order.quantity - order.leaves
        if quantity <= filled:
            self.emit("OrderRejected", order.order_id, "AMEND_BELOW_FILLED")
            return
        if price != order.price and self.outside_band(price):
            self.emit("OrderRejected", order.order_id, "PRICE_BAND")
            return
        keeps = price == order.price and quantity <= order.quantity
        order.quantity, order.leaves = quantity, quantity - filled
        self.emit(
            "OrderAmended", order.order_id, self.qty(quantity), self.price(price), keeps,
            self.qty(order.leaves),
        )  # fmt: skip
        if keeps:
            return
        self.resting.remove(order)
        order.price = price
        remaining, _, stopped = self.take(
            order.order_id, order.account_id, order.side, price, order.leaves, filled
        )
        if remaining and not stopped:
            order.leaves = remaining
            self.rest(order)

    def book(self) -> list[tuple[str, str, int, int]]:
        bids = sorted(
            (o for o in self.resting if o.side == "BUY"), key=lambda o: (-o.price, o.arrival)
        )
        asks = sorted(
            (o for o in self.resting if o.side == "SELL"), key=lambda o: (o.price, o.arrival)
        )
        return [(o.side, o.order_id, o.price, o.leaves) for o in bids + asks]


def assert_same_behaviour(rules: SymbolRules, commands: list[Command]) -> None:
    engine = MatchingEngine(SYMBOL, rules)
    reference = ReferenceMatcher(rules)
    for step, command in enumerate(commands):
        got = [summarize(event) for event in engine.process(command)]
        start = len(reference.out)
        reference.apply(command)
        assert got == reference.out[start:], f"step {step}: {command}"
    assert book(engine) == reference.book()


@pytest.mark.parametrize("rules", RULE_SETS, ids=["plain", "band-newest", "grid-oldest"])
def test_engine_matches_the_reference_on_seeded_random_tapes(rules: SymbolRules) -> None:
    rng = random.Random(2026)
    for _ in range(120):
        tape = random_tape(rng, rng.randint(20, 160), accounts=rng.randint(1, 4))
        assert_same_behaviour(rules, tape)


@settings(max_examples=150, deadline=None)
@given(tape=tapes(), rules=st.sampled_from(RULE_SETS))
def test_engine_matches_the_reference_on_hypothesis_tapes(
    tape: list[Command], rules: SymbolRules
) -> None:
    assert_same_behaviour(rules, tape)


def test_reference_matcher_knows_the_basics() -> None:
    """The reference itself, on the story every other test starts from."""
    reference = ReferenceMatcher(SymbolRules())
    reference.apply(NewOrder(SYMBOL, "s", "a", "SELL", "LIMIT", "GTC", 10, 3852, TIME))
    reference.apply(NewOrder(SYMBOL, "b", "c", "BUY", "LIMIT", "GTC", 4, 3860, TIME))
    assert reference.out == [
        ("OrderAccepted", 1, "s"),
        ("OrderAccepted", 2, "b"),
        ("TradeExecuted", 3, "TEST-T1", "38.52", "4", "b", "s"),
        ("OrderPartiallyFilled", 4, "s", "4", "6", "38.52", "4"),
        ("OrderFilled", 5, "b", "4", "0", "38.52", "4"),
    ]


def test_engine_matches_the_reference_when_compacting_eagerly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelled-in-place orders swept after every cancel: the book must not notice."""
    import brokerflow.matching.book as book_module

    monkeypatch.setattr(book_module, "_MIN_COMPACT_AFTER", 0)
    rng = random.Random(5)
    for rules in RULE_SETS:
        for _ in range(30):
            assert_same_behaviour(rules, random_tape(rng, 120, accounts=2))
