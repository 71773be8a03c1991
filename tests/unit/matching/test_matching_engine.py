"""Every matching rule, with the expected events written out by hand.

Prices are in ticks of 0.01 (so 100 is "1.00") and quantities in lots of 1 unless a test says
otherwise; summaries are described in ``matching_support``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokerflow.matching import (
    MatchingEngine,
    NewOrder,
    PriceLevel,
    Reject,
    SelfTradePrevention,
    SetReferencePrice,
    SymbolRules,
    to_wire,
)

from .support import (
    SYMBOL,
    TIME,
    amend,
    book,
    cancel,
    close,
    limit,
    market,
    run,
)


@pytest.fixture
def engine() -> MatchingEngine:
    return MatchingEngine(SYMBOL)


# --- price-time priority -------------------------------------------------------------------


def test_a_crossing_order_trades_at_the_resting_order_price(engine: MatchingEngine) -> None:
    assert run(engine, limit("s1", "SELL", 10, 3852, "a1")) == [("OrderAccepted", 1, "s1")]
    assert run(engine, limit("b1", "BUY", 4, 3860, "a2")) == [
        ("OrderAccepted", 2, "b1"),
        ("TradeExecuted", 3, "TEST-T1", "38.52", "4", "b1", "s1"),
        ("OrderPartiallyFilled", 4, "s1", "4", "6", "38.52", "4"),
        ("OrderFilled", 5, "b1", "4", "0", "38.52", "4"),
    ]
    assert book(engine) == [("SELL", "s1", 3852, 6)]


def test_a_sell_crossing_bids_trades_at_the_bid_price(engine: MatchingEngine) -> None:
    run(engine, limit("b1", "BUY", 5, 101, "a1"))
    assert run(engine, limit("s1", "SELL", 5, 99, "a2")) == [
        ("OrderAccepted", 2, "s1"),
        ("TradeExecuted", 3, "TEST-T1", "1.01", "5", "s1", "b1"),
        ("OrderFilled", 4, "b1", "5", "0", "1.01", "5"),
        ("OrderFilled", 5, "s1", "5", "0", "1.01", "5"),
    ]
    assert book(engine) == []


def test_an_incoming_order_walks_levels_until_no_longer_marketable(
    engine: MatchingEngine,
) -> None:
    run(
        engine,
        limit("s1", "SELL", 5, 100),
        limit("s2", "SELL", 5, 101),
        limit("s3", "SELL", 5, 102),
    )
    assert run(engine, limit("b", "BUY", 12, 101, "a2")) == [
        ("OrderAccepted", 4, "b"),
        ("TradeExecuted", 5, "TEST-T1", "1.00", "5", "b", "s1"),
        ("OrderFilled", 6, "s1", "5", "0", "1.00", "5"),
        ("OrderPartiallyFilled", 7, "b", "5", "7", "1.00", "5"),
        ("TradeExecuted", 8, "TEST-T2", "1.01", "5", "b", "s2"),
        ("OrderFilled", 9, "s2", "5", "0", "1.01", "5"),
        ("OrderPartiallyFilled", 10, "b", "10", "2", "1.01", "5"),
    ]
    # The remainder rests at its own limit, behind nothing; 1.02 was never reached.
    assert book(engine) == [("BUY", "b", 101, 2), ("SELL", "s3", 102, 5)]


def test_orders_at_one_price_fill_first_in_first_out(engine: MatchingEngine) -> None:
    run(
        engine,
        limit("s1", "SELL", 3, 100, "a"),
        limit("s2", "SELL", 3, 100, "b"),
        limit("s3", "SELL", 3, 100, "c"),
    )
    assert run(engine, limit("b1", "BUY", 5, 100, "d")) == [
        ("OrderAccepted", 4, "b1"),
        ("TradeExecuted", 5, "TEST-T1", "1.00", "3", "b1", "s1"),
        ("OrderFilled", 6, "s1", "3", "0", "1.00", "3"),
        ("OrderPartiallyFilled", 7, "b1", "3", "2", "1.00", "3"),
        ("TradeExecuted", 8, "TEST-T2", "1.00", "2", "b1", "s2"),
        ("OrderPartiallyFilled", 9, "s2", "2", "1", "1.00", "2"),
        ("OrderFilled", 10, "b1", "5", "0", "1.00", "2"),
    ]
    assert book(engine) == [("SELL", "s2", 100, 1), ("SELL", "s3", 100, 3)]


def test_better_priced_orders_fill_before_earlier_ones(engine: MatchingEngine) -> None:
    run(engine, limit("b1", "BUY", 1, 99), limit("b2", "BUY", 1, 100), limit("b3", "BUY", 1, 98))
    assert [s[6] for s in run(engine, market("s", "SELL", 3, "x")) if s[0] == "TradeExecuted"] == [
        "b2",
        "b1",
        "b3",
    ]


def test_a_non_crossing_order_rests_silently(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 5, 101))
    assert run(engine, limit("b1", "BUY", 5, 100)) == [("OrderAccepted", 2, "b1")]
    assert book(engine) == [("BUY", "b1", 100, 5), ("SELL", "s1", 101, 5)]


# --- order types and time in force ---------------------------------------------------------


def test_a_market_order_takes_liquidity_at_any_price(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 2, 100), limit("s2", "SELL", 2, 105))
    assert run(engine, market("m", "BUY", 3, "a2")) == [
        ("OrderAccepted", 3, "m"),
        ("TradeExecuted", 4, "TEST-T1", "1.00", "2", "m", "s1"),
        ("OrderFilled", 5, "s1", "2", "0", "1.00", "2"),
        ("OrderPartiallyFilled", 6, "m", "2", "1", "1.00", "2"),
        ("TradeExecuted", 7, "TEST-T2", "1.05", "1", "m", "s2"),
        ("OrderPartiallyFilled", 8, "s2", "1", "1", "1.05", "1"),
        ("OrderFilled", 9, "m", "3", "0", "1.05", "1"),
    ]


def test_a_market_order_never_rests_what_it_cannot_fill_is_cancelled(
    engine: MatchingEngine,
) -> None:
    run(engine, limit("s1", "SELL", 2, 100))
    assert run(engine, market("m", "BUY", 5, "a2")) == [
        ("OrderAccepted", 2, "m"),
        ("TradeExecuted", 3, "TEST-T1", "1.00", "2", "m", "s1"),
        ("OrderFilled", 4, "s1", "2", "0", "1.00", "2"),
        ("OrderPartiallyFilled", 5, "m", "2", "3", "1.00", "2"),
        ("OrderCancelled", 6, "m", "MARKET_NO_LIQUIDITY", "3"),
    ]
    assert book(engine) == []


def test_a_market_order_on_an_empty_side_is_cancelled_whole(engine: MatchingEngine) -> None:
    run(engine, limit("b1", "BUY", 2, 100))
    assert run(engine, market("m", "BUY", 5)) == [
        ("OrderAccepted", 2, "m"),
        ("OrderCancelled", 3, "m", "MARKET_NO_LIQUIDITY", "5"),
    ]
    assert book(engine) == [("BUY", "b1", 100, 2)]


def test_ioc_fills_what_crosses_and_cancels_the_rest(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 2, 100))
    assert run(engine, limit("i", "BUY", 5, 100, "a2", "IOC")) == [
        ("OrderAccepted", 2, "i"),
        ("TradeExecuted", 3, "TEST-T1", "1.00", "2", "i", "s1"),
        ("OrderFilled", 4, "s1", "2", "0", "1.00", "2"),
        ("OrderPartiallyFilled", 5, "i", "2", "3", "1.00", "2"),
        ("OrderCancelled", 6, "i", "IOC_REMAINDER", "3"),
    ]
    assert run(engine, limit("j", "BUY", 5, 100, "a2", "IOC")) == [
        ("OrderAccepted", 7, "j"),
        ("OrderCancelled", 8, "j", "IOC_REMAINDER", "5"),
    ]
    assert book(engine) == []


def test_fok_that_cannot_fill_completely_trades_nothing(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 2, 100), limit("s2", "SELL", 2, 101))
    assert run(engine, limit("f", "BUY", 5, 101, "a2", "FOK")) == [
        ("OrderAccepted", 3, "f"),
        ("OrderCancelled", 4, "f", "FOK_UNFILLABLE", "5"),
    ]
    # 4 are offered in all, but only 2 at or below the FOK's limit of 1.00.
    assert run(engine, limit("g", "BUY", 3, 100, "a2", "FOK")) == [
        ("OrderAccepted", 5, "g"),
        ("OrderCancelled", 6, "g", "FOK_UNFILLABLE", "3"),
    ]
    assert book(engine) == [("SELL", "s1", 100, 2), ("SELL", "s2", 101, 2)]


def test_fok_that_can_fill_completely_fills(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 2, 100), limit("s2", "SELL", 2, 101))
    assert run(engine, limit("f", "BUY", 4, 101, "a2", "FOK")) == [
        ("OrderAccepted", 3, "f"),
        ("TradeExecuted", 4, "TEST-T1", "1.00", "2", "f", "s1"),
        ("OrderFilled", 5, "s1", "2", "0", "1.00", "2"),
        ("OrderPartiallyFilled", 6, "f", "2", "2", "1.00", "2"),
        ("TradeExecuted", 7, "TEST-T2", "1.01", "2", "f", "s2"),
        ("OrderFilled", 8, "s2", "2", "0", "1.01", "2"),
        ("OrderFilled", 9, "f", "4", "0", "1.01", "2"),
    ]


def test_market_fok_is_all_or_nothing_too(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 2, 100))
    assert run(engine, market("f", "BUY", 3, "a2", "FOK")) == [
        ("OrderAccepted", 2, "f"),
        ("OrderCancelled", 3, "f", "FOK_UNFILLABLE", "3"),
    ]


# --- cancel and amend ----------------------------------------------------------------------


def test_cancel_takes_the_order_off_the_book(engine: MatchingEngine) -> None:
    run(engine, limit("b1", "BUY", 5, 100, "a1"))
    assert run(engine, cancel("b1")) == [("OrderCancelled", 2, "b1", "USER", "5")]
    assert book(engine) == []
    assert engine.best_bid_ask().bid is None


def test_cancel_of_a_partly_filled_order_cancels_what_is_left(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 5, 100), limit("b1", "BUY", 2, 100, "a2"))
    events = engine.process(cancel("s1"))
    wire = to_wire(events[0])
    assert (wire["filledQuantity"], wire["leavesQuantity"], wire["cancelledQuantity"]) == (
        "2",
        "0",
        "3",
    )


def test_cancel_from_the_middle_of_a_queue_keeps_the_others_in_order(
    engine: MatchingEngine,
) -> None:
    run(
        engine,
        limit("s1", "SELL", 1, 100),
        limit("s2", "SELL", 1, 100),
        limit("s3", "SELL", 1, 100),
        cancel("s2"),
    )
    trades = [s for s in run(engine, market("m", "BUY", 3, "x")) if s[0] == "TradeExecuted"]
    assert [trade[6] for trade in trades] == ["s1", "s3"]


def test_unknown_order_cancel_is_rejected_and_changes_nothing(engine: MatchingEngine) -> None:
    run(engine, limit("b1", "BUY", 5, 100))
    events = engine.process(cancel("nope"))
    assert [to_wire(event) for event in events] == [
        {
            "type": "OrderRejected",
            "schemaVersion": 1,
            "orderId": "nope",
            "accountId": None,
            "symbol": "TEST",
            "status": "REJECTED",
            "sequence": 2,
            "filledQuantity": "0",
            "leavesQuantity": "0",
            "eventTime": TIME,
            "receiveTime": None,
            "reason": "UNKNOWN_ORDER",
            "detail": "CancelOrder: order 'nope' was never placed on TEST",
        }
    ]
    assert engine.changes == []
    assert book(engine) == [("BUY", "b1", 100, 5)]


def test_cancel_of_a_closed_order_is_rejected_as_unknown(engine: MatchingEngine) -> None:
    run(engine, limit("b1", "BUY", 5, 100), cancel("b1"))
    assert run(engine, cancel("b1")) == [("OrderRejected", 3, "b1", "UNKNOWN_ORDER")]
    assert to_wire(engine.process(cancel("b1"))[0])["detail"] == (
        "CancelOrder: order 'b1' is no longer resting (filled, cancelled, expired or rejected)"
    )


def test_amend_quantity_down_keeps_time_priority(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 5, 100), limit("s2", "SELL", 5, 100))
    assert run(engine, amend("s1", quantity=3)) == [
        ("OrderAmended", 3, "s1", "3", "1.00", True, "3")
    ]
    # Proof by fill: the next buyer still meets s1 first.
    assert run(engine, limit("b", "BUY", 3, 100, "x")) == [
        ("OrderAccepted", 4, "b"),
        ("TradeExecuted", 5, "TEST-T1", "1.00", "3", "b", "s1"),
        ("OrderFilled", 6, "s1", "3", "0", "1.00", "3"),
        ("OrderFilled", 7, "b", "3", "0", "1.00", "3"),
    ]
    assert book(engine) == [("SELL", "s2", 100, 5)]


def test_amend_quantity_up_loses_time_priority(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 5, 100), limit("s2", "SELL", 5, 100))
    assert run(engine, amend("s1", quantity=6)) == [
        ("OrderAmended", 3, "s1", "6", "1.00", False, "6")
    ]
    trades = [s for s in run(engine, limit("b", "BUY", 5, 100, "x")) if s[0] == "TradeExecuted"]
    assert [trade[6] for trade in trades] == ["s2"]
    assert book(engine) == [("SELL", "s1", 100, 6)]


def test_amend_price_loses_time_priority_even_when_moved_back(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 5, 100), limit("s2", "SELL", 5, 100))
    assert run(engine, amend("s1", price=101), amend("s1", price=100)) == [
        ("OrderAmended", 3, "s1", "5", "1.01", False, "5"),
        ("OrderAmended", 4, "s1", "5", "1.00", False, "5"),
    ]
    trades = [s for s in run(engine, limit("b", "BUY", 5, 100, "x")) if s[0] == "TradeExecuted"]
    assert [trade[6] for trade in trades] == ["s2"]


def test_amend_to_a_crossing_price_matches_as_a_taker(engine: MatchingEngine) -> None:
    run(engine, limit("b1", "BUY", 3, 99, "a"), limit("s1", "SELL", 5, 101, "b"))
    assert run(engine, amend("s1", price=99)) == [
        ("OrderAmended", 3, "s1", "5", "0.99", False, "5"),
        ("TradeExecuted", 4, "TEST-T1", "0.99", "3", "s1", "b1"),
        ("OrderFilled", 5, "b1", "3", "0", "0.99", "3"),
        ("OrderPartiallyFilled", 6, "s1", "3", "2", "0.99", "3"),
    ]
    assert book(engine) == [("SELL", "s1", 99, 2)]


def test_amend_of_a_partly_filled_order_counts_the_fills(engine: MatchingEngine) -> None:
    run(engine, limit("s1", "SELL", 10, 100), limit("b1", "BUY", 6, 100, "x"))
    assert run(engine, amend("s1", quantity=5), amend("s1", quantity=6)) == [
        ("OrderRejected", 6, "s1", "AMEND_BELOW_FILLED"),
        ("OrderRejected", 7, "s1", "AMEND_BELOW_FILLED"),
    ]
    assert book(engine) == [("SELL", "s1", 100, 4)]  # unchanged
    assert run(engine, amend("s1", quantity=8)) == [
        ("OrderAmended", 8, "s1", "8", "1.00", True, "2")
    ]
    rejected = engine.process(amend("s1", quantity=1))[0]
    assert to_wire(rejected)["detail"] == (
        "AmendOrder: new quantity 1 does not exceed the filled quantity 6; cancel the order "
        "instead; order unchanged"
    )
    assert (to_wire(rejected)["filledQuantity"], to_wire(rejected)["leavesQuantity"]) == ("6", "2")


def test_amend_of_an_unknown_order_is_rejected(engine: MatchingEngine) -> None:
    assert run(engine, amend("ghost", quantity=1)) == [
        ("OrderRejected", 1, "ghost", "UNKNOWN_ORDER")
    ]


# --- symbol rules --------------------------------------------------------------------------


def test_tick_lot_and_band_rejects_at_the_decimal_edge() -> None:
    from brokerflow.matching import Exchange

    rules = SymbolRules(
        tick_size=Decimal("0.05"), lot_size=Decimal("100"), price_band_pct=Decimal("10")
    )
    exchange = Exchange({"PETR4": rules})

    def reasons(*place: tuple[str, str, str]) -> list[str]:
        out = []
        for order_id, quantity, price in place:
            events = exchange.place(
                "PETR4", order_id, "a1", "BUY", "LIMIT", Decimal(quantity), Decimal(price)
            )
            wire = to_wire(events[0])
            out.append(wire["reason"] if wire["type"] == "OrderRejected" else "OK")
        return out

    assert reasons(("t", "100", "38.52"), ("l", "150", "38.50")) == ["TICK_SIZE", "LOT_SIZE"]
    # No reference price yet: no band.
    assert reasons(("far", "100", "99.95")) == ["OK"]
    exchange.set_reference_price("PETR4", Decimal("40.00"))
    assert reasons(
        ("hi", "100", "44.00"),
        ("hi2", "100", "44.05"),
        ("lo", "100", "36.00"),
        ("lo2", "100", "35.95"),
    ) == ["OK", "PRICE_BAND", "OK", "PRICE_BAND"]
    rejected = exchange.place("PETR4", "x", "a1", "BUY", "LIMIT", Decimal("100"), Decimal("44.05"))[
        0
    ]
    assert to_wire(rejected)["detail"] == (
        "PlaceOrder: price 44.05 is more than 10% away from the reference price 40.00 "
        "(allowed 36.00 to 44.00)"
    )
    assert to_wire(rejected)["accountId"] == "a1"


def test_band_reference_is_the_latest_of_last_trade_and_set_price() -> None:
    engine = MatchingEngine(SYMBOL, SymbolRules(price_band_pct=Decimal("10")))
    engine.process(SetReferencePrice(SYMBOL, Decimal("1.00")))
    assert run(engine, limit("hi", "SELL", 1, 111)) == [("OrderRejected", 1, "hi", "PRICE_BAND")]
    run(engine, limit("s", "SELL", 1, 109), limit("b", "BUY", 1, 109, "x"))  # trades at 1.09
    assert engine.reference_price == Decimal("1.09")
    assert run(engine, limit("hi2", "SELL", 1, 111)) == [("OrderAccepted", 7, "hi2")]
    engine.process(SetReferencePrice(SYMBOL, Decimal("2.00")))
    assert run(engine, limit("low", "BUY", 1, 111)) == [("OrderRejected", 8, "low", "PRICE_BAND")]
    assert run(engine, limit("ok", "SELL", 1, 180)) == [("OrderAccepted", 9, "ok")]


def test_reference_price_off_the_grid_bands_exactly() -> None:
    # 10 % around 1.005 is 0.9045 .. 1.1055: on a 0.01 grid, 0.91 .. 1.10.
    engine = MatchingEngine(SYMBOL, SymbolRules(price_band_pct=Decimal("10")))
    engine.process(SetReferencePrice(SYMBOL, Decimal("1.005")))
    results = run(
        engine,
        limit("a", "BUY", 1, 90),
        limit("b", "BUY", 1, 91),
        limit("c", "SELL", 1, 110),
        limit("d", "SELL", 1, 111),
    )
    assert [r[0] for r in results] == [
        "OrderRejected",
        "OrderAccepted",
        "OrderAccepted",
        "OrderRejected",
    ]


def test_market_orders_are_not_band_checked() -> None:
    engine = MatchingEngine(SYMBOL, SymbolRules(price_band_pct=Decimal("1")))
    engine.process(SetReferencePrice(SYMBOL, Decimal("1.00")))
    assert run(engine, market("m", "BUY", 1)) == [
        ("OrderAccepted", 1, "m"),
        ("OrderCancelled", 2, "m", "MARKET_NO_LIQUIDITY", "1"),
    ]


def test_amend_to_a_price_outside_the_band_is_rejected() -> None:
    engine = MatchingEngine(SYMBOL, SymbolRules(price_band_pct=Decimal("5")))
    engine.process(SetReferencePrice(SYMBOL, Decimal("1.00")))
    run(engine, limit("b", "BUY", 1, 100))
    assert run(engine, amend("b", price=94)) == [("OrderRejected", 2, "b", "PRICE_BAND")]
    assert book(engine) == [("BUY", "b", 100, 1)]


def test_self_trade_prevention_off_lets_an_account_trade_with_itself(
    engine: MatchingEngine,
) -> None:
    run(engine, limit("s1", "SELL", 2, 100, "same"))
    assert run(engine, limit("b1", "BUY", 2, 100, "same"))[1][0] == "TradeExecuted"


def test_self_trade_prevention_cancel_newest_cancels_the_incoming_remainder() -> None:
    rules = SymbolRules(self_trade_prevention=SelfTradePrevention.CANCEL_NEWEST)
    engine = MatchingEngine(SYMBOL, rules)
    run(engine, limit("s0", "SELL", 2, 100, "other"), limit("s1", "SELL", 5, 100, "me"))
    assert run(engine, limit("b", "BUY", 4, 100, "me")) == [
        ("OrderAccepted", 3, "b"),
        ("TradeExecuted", 4, "TEST-T1", "1.00", "2", "b", "s0"),
        ("OrderFilled", 5, "s0", "2", "0", "1.00", "2"),
        ("OrderPartiallyFilled", 6, "b", "2", "2", "1.00", "2"),
        ("OrderCancelled", 7, "b", "SELF_TRADE", "2"),
    ]
    assert book(engine) == [("SELL", "s1", 100, 5)]


def test_self_trade_prevention_cancel_oldest_cancels_resting_and_keeps_matching() -> None:
    rules = SymbolRules(self_trade_prevention=SelfTradePrevention.CANCEL_OLDEST)
    engine = MatchingEngine(SYMBOL, rules)
    run(engine, limit("s1", "SELL", 5, 100, "me"), limit("s2", "SELL", 5, 100, "other"))
    assert run(engine, limit("b", "BUY", 3, 100, "me")) == [
        ("OrderAccepted", 3, "b"),
        ("OrderCancelled", 4, "s1", "SELF_TRADE", "5"),
        ("TradeExecuted", 5, "TEST-T1", "1.00", "3", "b", "s2"),
        ("OrderPartiallyFilled", 6, "s2", "3", "2", "1.00", "3"),
        ("OrderFilled", 7, "b", "3", "0", "1.00", "3"),
    ]
    assert book(engine) == [("SELL", "s2", 100, 2)]


def test_fok_counts_only_what_self_trade_prevention_lets_it_trade() -> None:
    newest = MatchingEngine(SYMBOL, SymbolRules(self_trade_prevention="CANCEL_NEWEST"))
    run(newest, limit("s1", "SELL", 2, 100, "me"), limit("s2", "SELL", 5, 100, "other"))
    assert run(newest, limit("f", "BUY", 3, 100, "me", "FOK"))[-1] == (
        "OrderCancelled",
        4,
        "f",
        "FOK_UNFILLABLE",
        "3",
    )
    oldest = MatchingEngine(SYMBOL, SymbolRules(self_trade_prevention="CANCEL_OLDEST"))
    run(oldest, limit("s1", "SELL", 2, 100, "me"), limit("s2", "SELL", 3, 100, "other"))
    assert [s[0] for s in run(oldest, limit("f", "BUY", 3, 100, "me", "FOK"))] == [
        "OrderAccepted",
        "OrderCancelled",  # s1, self-trade
        "TradeExecuted",
        "OrderFilled",
        "OrderFilled",
    ]


# --- session close, duplicates -------------------------------------------------------------


def test_session_close_expires_day_orders_in_book_order(engine: MatchingEngine) -> None:
    run(
        engine,
        limit("b1", "BUY", 5, 99, time_in_force="DAY"),
        limit("b2", "BUY", 5, 99, time_in_force="GTC"),
        limit("b3", "BUY", 4, 98, time_in_force="DAY"),
        limit("b4", "BUY", 3, 99, time_in_force="DAY"),
        limit("s1", "SELL", 2, 102, time_in_force="DAY"),
        limit("s2", "SELL", 1, 101, time_in_force="DAY"),
    )
    assert run(engine, close()) == [
        ("OrderExpired", 7, "b1", "5"),
        ("OrderExpired", 8, "b4", "3"),
        ("OrderExpired", 9, "b3", "4"),
        ("OrderExpired", 10, "s2", "1"),
        ("OrderExpired", 11, "s1", "2"),
    ]
    assert book(engine) == [("BUY", "b2", 99, 5)]
    assert run(engine, close()) == []


def test_close_session_and_set_reference_price_are_methods_too(engine: MatchingEngine) -> None:
    run(engine, limit("d", "BUY", 1, 100, time_in_force="DAY"))
    assert [to_wire(e)["type"] for e in engine.close_session(TIME)] == ["OrderExpired"]
    engine.set_reference_price(Decimal("1.23"))
    assert engine.reference_price == Decimal("1.23")
    assert engine.changes == []


def test_a_duplicate_order_id_changes_nothing(engine: MatchingEngine) -> None:
    run(engine, limit("o1", "BUY", 5, 100))
    again = NewOrder(SYMBOL, "o1", "acc1", "SELL", "LIMIT", "GTC", 9, 90, TIME)
    assert run(engine, again) == [("OrderDuplicateIgnored", 2, "o1")]
    assert engine.changes == []
    assert book(engine) == [("BUY", "o1", 100, 5)]


def test_an_id_stays_a_duplicate_after_the_order_is_gone(engine: MatchingEngine) -> None:
    run(engine, limit("o1", "BUY", 5, 100), cancel("o1"))
    assert run(engine, limit("o1", "BUY", 5, 100)) == [("OrderDuplicateIgnored", 3, "o1")]
    engine.process(Reject(SYMBOL, "r1", "a", "PlaceOrder", "TICK_SIZE", "off grid", TIME))
    assert run(engine, limit("r1", "BUY", 5, 100)) == [("OrderDuplicateIgnored", 5, "r1")]
    assert book(engine) == []


def test_invalid_new_orders_are_rejected_with_a_reason(engine: MatchingEngine) -> None:
    def new(order_id: str, **changes: object) -> NewOrder:
        fields: dict[str, object] = {
            "symbol": SYMBOL,
            "order_id": order_id,
            "account_id": "a",
            "side": "BUY",
            "order_type": "LIMIT",
            "time_in_force": "GTC",
            "quantity": 1,
            "price": 100,
            "event_time": TIME,
        }
        fields.update(changes)
        return NewOrder(**fields)  # type: ignore[arg-type]

    assert run(
        engine,
        new("a", side="HOLD"),
        new("b", order_type="STOP"),
        new("c", time_in_force="GTD"),
        new("d", quantity=0),
        new("e", price=None),
        new("f", order_type="MARKET"),
        new("g", price=0),
        new("h", quantity=1.5),
    ) == [
        ("OrderRejected", 1, "a", "INVALID_SIDE"),
        ("OrderRejected", 2, "b", "INVALID_ORDER_TYPE"),
        ("OrderRejected", 3, "c", "INVALID_TIME_IN_FORCE"),
        ("OrderRejected", 4, "d", "INVALID_QUANTITY"),
        ("OrderRejected", 5, "e", "INVALID_PRICE"),
        ("OrderRejected", 6, "f", "INVALID_PRICE"),
        ("OrderRejected", 7, "g", "INVALID_PRICE"),
        ("OrderRejected", 8, "h", "INVALID_QUANTITY"),
    ]


def test_edge_reject_of_an_amend_reports_the_unchanged_order(engine: MatchingEngine) -> None:
    run(engine, limit("o1", "BUY", 5, 100))
    events = engine.process(Reject(SYMBOL, "o1", None, "AmendOrder", "TICK_SIZE", "why", TIME))
    wire = to_wire(events[0])
    assert (wire["reason"], wire["leavesQuantity"], wire["detail"]) == (
        "TICK_SIZE",
        "5",
        "AmendOrder: why; order unchanged",
    )
    assert run(engine, Reject(SYMBOL, "zz", None, "AmendOrder", "LOT_SIZE", "why", TIME)) == [
        ("OrderRejected", 3, "zz", "UNKNOWN_ORDER")
    ]


# --- numbering, queries, changes ---------------------------------------------------------


def test_sequence_and_trade_numbers_count_per_engine(engine: MatchingEngine) -> None:
    other = MatchingEngine("OTHER")
    run(engine, limit("s", "SELL", 2, 100), limit("b", "BUY", 1, 100, "x"))
    assert run(other, limit("s", "SELL", 1, 100)) == [("OrderAccepted", 1, "s")]
    assert run(engine, limit("b2", "BUY", 1, 100, "x"))[1] == (
        "TradeExecuted",
        7,
        "TEST-T2",
        "1.00",
        "1",
        "b2",
        "s",
    )
    assert (engine.last_sequence, engine.trade_count) == (9, 2)


def test_best_bid_ask_and_depth_aggregate_levels(engine: MatchingEngine) -> None:
    assert engine.best_bid_ask() == (None, None)
    run(
        engine,
        limit("b1", "BUY", 5, 99),
        limit("b2", "BUY", 2, 99),
        limit("b3", "BUY", 1, 97),
        limit("s1", "SELL", 4, 101),
        limit("s2", "SELL", 6, 103),
        limit("s3", "SELL", 1, 102),
        cancel("b2"),
    )
    top = engine.best_bid_ask()
    assert top.bid == PriceLevel(Decimal("0.99"), Decimal("5"), 1)
    assert top.ask == PriceLevel(Decimal("1.01"), Decimal("4"), 1)
    depth = engine.depth(2)
    assert depth.bids == (
        PriceLevel(Decimal("0.99"), Decimal("5"), 1),
        PriceLevel(Decimal("0.97"), Decimal("1"), 1),
    )
    assert depth.asks == (
        PriceLevel(Decimal("1.01"), Decimal("4"), 1),
        PriceLevel(Decimal("1.02"), Decimal("1"), 1),
    )


def test_depth_counts_lots_in_units_of_the_lot_size() -> None:
    engine = MatchingEngine(SYMBOL, SymbolRules(lot_size=Decimal("100")))
    run(engine, limit("b1", "BUY", 3, 99), limit("b2", "BUY", 2, 99))
    assert engine.depth(1).bids == (PriceLevel(Decimal("0.99"), Decimal("500"), 2),)


def test_changes_name_each_touched_order_once(engine: MatchingEngine) -> None:
    engine.process(limit("s1", "SELL", 2, 100))
    assert [(oid, order.leaves) for oid, order in engine.changes] == [("s1", 2)]
    engine.process(limit("s2", "SELL", 2, 100))
    engine.process(limit("b1", "BUY", 3, 100, "x"))
    assert [(oid, order and order.leaves) for oid, order in engine.changes] == [
        ("b1", None),  # filled on arrival: closed (a tombstone for the store)
        ("s1", None),
        ("s2", 1),
    ]
    engine.process(limit("b2", "BUY", 1, 100, time_in_force="GTD"))
    assert engine.changes == [("b2", None)]  # rejected ids are remembered too
    engine.process(amend("s2", quantity=5))
    assert [(oid, order.quantity) for oid, order in engine.changes] == [("s2", 5)]
    engine.process(close())
    assert engine.changes == []


def test_order_ids_are_unique_within_a_session_and_forgotten_at_its_close(
    engine: MatchingEngine,
) -> None:
    """State must not grow with every order ever placed: a session close forgets the ids of
    orders that ended, and only those (a resting GTC order keeps its id)."""
    run(
        engine,
        limit("g1", "BUY", 2, 99),  # GTC, rests across the close
        limit("d1", "BUY", 1, 98, time_in_force="DAY"),  # expires at the close
        limit("s1", "SELL", 1, 101),
        limit("b1", "BUY", 1, 101),  # fills s1 and itself
    )
    assert [summary[0] for summary in run(engine, limit("b1", "BUY", 1, 97))] == [
        "OrderDuplicateIgnored"  # within the session: a duplicate
    ]
    assert engine.forgotten == []
    expired = run(engine, close())
    assert [(summary[0], summary[2]) for summary in expired] == [("OrderExpired", "d1")]
    assert sorted(engine.forgotten) == ["b1", "d1", "s1"]
    assert engine.closed_order_ids() == set()
    engine.process(limit("x1", "SELL", 1, 150))
    assert engine.forgotten == []  # the next command forgets nothing
    # After the close an ended id is free again; a resting order's id is still taken.
    assert [summary[0] for summary in run(engine, limit("b1", "BUY", 1, 97))] == ["OrderAccepted"]
    assert [summary[0] for summary in run(engine, limit("g1", "BUY", 1, 97))] == [
        "OrderDuplicateIgnored"
    ]
