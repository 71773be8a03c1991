"""apply_report: fills, price improvement, releases, cancels, amends, duplicates, settlement.

Every amount is computed by hand in the comments. B3 fees: 0.03 % of the order's cumulative
notional, rounded half-even to the centavo.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from brokerflow.broker import Cash, balances

from .support import (
    D,
    accepted,
    amend,
    amended,
    at,
    cancel,
    cancelled,
    custody,
    deposit,
    expired,
    fill,
    opened,
    order,
    rejected,
    wire,
    withdraw,
)

MONDAY = datetime(2026, 6, 29, 13, 0, tzinfo=UTC)


def buying_100_at_38_52():  # type: ignore[no-untyped-def]
    """10000.00 deposited, BUY 100 PETR4 @ 38.52 holding 3853.16 (3852.00 + fee 1.16)."""
    account = opened(deposit("10000.00"), order("o1", "BUY", "100", "38.52"))
    account.report(accepted("o1", 1, "BUY", "100", "38.52"))
    return account


def test_order_accepted_is_acknowledged_quietly() -> None:
    account = opened(deposit("10000.00"), order("o1", "BUY", "100", "38.52"))
    outcome = account.report(accepted("o1", 1, "BUY", "100", "38.52"))
    assert not outcome
    assert account.live.orders["o1"].acknowledged is True
    assert account.live.last_report_sequence == {"PETR4": 1}


def test_a_partial_fill_below_the_limit_frees_the_price_improvement() -> None:
    account = buying_100_at_38_52()
    outcome = account.report(fill("o1", 2, "40", "38.50", filled="40", leaves="60"))
    [entry] = wire(outcome.ledger)
    # paid 40 x 38.50 = 1540.00 + fee 0.462 -> 0.46 = 1540.46
    # hold used at the limit: 40 x 38.52 = 1540.80 + fee 0.46224 -> 0.46 = 1541.26
    assert {
        k: entry[k]
        for k in (
            "type",
            "sequence",
            "tradeId",
            "side",
            "quantity",
            "price",
            "fees",
            "cashDelta",
            "positionDelta",
            "cashHoldReleased",
            "sharesHoldReleased",
            "positionQuantity",
            "averagePrice",
            "realizedPnl",
            "settlementDate",
            "currency",
        )
    } == {
        "type": "FillSettled",
        "sequence": 3,
        "tradeId": "PETR4-T2",
        "side": "BUY",
        "quantity": "40",
        "price": "38.50",
        "fees": "0.46",
        "cashDelta": "-1540.46",
        "positionDelta": "40",
        "cashHoldReleased": "1541.26",
        "sharesHoldReleased": "0",
        "positionQuantity": "40",
        # (1540.00 + 0.46) / 40 = 38.5115
        "averagePrice": "38.5115",
        "realizedPnl": "0",
        "settlementDate": None,
        "currency": "BRL",
    }
    # cash 10000.00 - 1540.46 = 8459.54; held 3853.16 - 1541.26 = 2311.90;
    # buying power 6147.64 = 10000.00 - 3853.16 + 0.80 (40 x 0.02 improvement)
    balance = balances(account.live)["BRL"]
    assert (balance.cash, balance.held, balance.buying_power) == (
        D("8459.54"),
        D("2311.90"),
        D("6147.64"),
    )
    assert account.live.orders["o1"].hold == D("2311.90")
    assert account.live.orders["o1"].filled == D("40")


def test_the_final_fill_uses_the_rest_and_fees_follow_the_cumulative_notional() -> None:
    account = buying_100_at_38_52()
    account.report(fill("o1", 2, "40", "38.50", filled="40", leaves="60"))
    outcome = account.report(fill("o1", 3, "60", "38.52", filled="100", leaves="0"))
    # notional 1540.00 + 2311.20 = 3851.20, fee 1.15536 -> 1.16, of which 0.46 paid: 0.70
    # (a fill of 2311.20 alone would round to 0.69; the order pays what one fill would)
    # hold used: 2311.20 + (fee(3852.00) 1.16 - fee(1540.80) 0.46) = 2311.90: all of it
    [entry] = wire(outcome.ledger)
    assert (entry["fees"], entry["cashDelta"], entry["cashHoldReleased"]) == (
        "0.70",
        "-2311.90",
        "2311.90",
    )
    # (1540.46 + 2311.20 + 0.70) / 100 = 38.5236
    assert (entry["positionQuantity"], entry["averagePrice"]) == ("100", "38.5236")
    assert "o1" not in account.live.orders
    assert account.live.cash["BRL"] == Cash(settled=D("6147.64"), held=D("0.00"))


def test_a_market_buy_releases_the_unused_estimate_when_filled() -> None:
    # 3 @ last 38.53 held at 40.4565: 121.3695 + fee 0.04 -> 121.41 (rounded up)
    account = opened(deposit("1000.00"), order("m1", "BUY", "3", market_price="38.53"))
    outcome = account.report(fill("m1", 1, "1", "38.55", filled="1", leaves="2"))
    # paid 38.55 + fee 0.011565 -> 0.01 = 38.56; hold used 40.4565 + fee 0.01 = 40.4665 -> 40.47
    [entry] = wire(outcome.ledger)
    assert (entry["cashDelta"], entry["cashHoldReleased"]) == ("-38.56", "40.47")
    outcome = account.report(fill("m1", 2, "2", "38.56", filled="3", leaves="0"))
    # notional 38.55 + 77.12 = 115.67, fee 0.034701 -> 0.03: 0.02 more; paid 77.14
    # hold used: 80.913 + fee(121.3695) 0.04 - fee(40.4565) 0.01 = 80.943 -> 80.95, but only
    # 121.41 - 40.47 = 80.94 is left: all of it, nothing to release
    assert [
        (e["type"], e.get("cashDelta"), e.get("cashHoldReleased")) for e in wire(outcome.ledger)
    ] == [("FillSettled", "-77.14", "80.94")]
    assert account.live.cash["BRL"] == Cash(settled=D("884.30"), held=D("0.00"))


def test_leftover_hold_after_the_final_fill_is_released_as_order_filled() -> None:
    account = buying_100_at_38_52()
    # An amend to 38.60 holds 8.00 more (3861.16); the order fills at 38.52 before it lands.
    account.request(amend("o1", price="38.60", rid="a1"))
    outcome = account.report(fill("o1", 2, "100", "38.52", filled="100", leaves="0"))
    assert [
        (e["type"], e.get("amount"), e.get("reason"), e.get("cashHoldReleased"))
        for e in wire(outcome.ledger)
    ] == [
        ("FillSettled", None, None, "3853.16"),
        ("FundsReleased", "8.00", "ORDER_FILLED", None),
    ]
    [lost] = outcome.decisions
    assert (lost.type, lost.request_id, lost.command, lost.reason, lost.order_id) == (
        "CancelRequestRejected",
        "a1",
        "RequestAmend",
        "ORDER_FILLED",
        "o1",
    )
    assert account.live.cash["BRL"] == Cash(settled=D("6146.84"), held=D("0.00"))


def test_cancel_after_a_partial_fill_releases_exactly_the_rest() -> None:
    account = buying_100_at_38_52()
    account.report(fill("o1", 2, "40", "38.50", filled="40", leaves="60"))
    account.request(cancel("o1", rid="c1"))
    outcome = account.report(cancelled("o1", 3, filled="40", cancelled_quantity="60"))
    assert [(e["type"], e["amount"], e["reason"]) for e in wire(outcome.ledger)] == [
        ("FundsReleased", "2311.90", "ORDER_CANCELLED")
    ]
    assert outcome.decisions == []
    assert account.live.orders == {}
    assert account.live.cash["BRL"] == Cash(settled=D("8459.54"), held=D("0.00"))
    assert account.live.positions["PETR4"].quantity == D("40")


def test_a_cancel_that_loses_to_the_final_fill_is_answered() -> None:
    account = buying_100_at_38_52()
    account.request(cancel("o1", rid="c1"))
    outcome = account.report(fill("o1", 2, "100", "38.52", filled="100", leaves="0"))
    [lost] = outcome.decisions
    assert (lost.request_id, lost.command, lost.reason) == ("c1", "RequestCancel", "ORDER_FILLED")


def test_expiry_and_rejection_release_the_hold() -> None:
    account = buying_100_at_38_52()
    outcome = account.report(expired("o1", 2, filled="0", expired_quantity="100"))
    assert [(e["type"], e["amount"], e["reason"]) for e in wire(outcome.ledger)] == [
        ("FundsReleased", "3853.16", "ORDER_EXPIRED")
    ]
    account = opened(custody("PETR4", "100", "30.00"), order("s1", "SELL", "100", "99.00"))
    outcome = account.report(
        rejected("s1", 1, "PRICE_BAND", "PlaceOrder: price 99.00 is outside the band")
    )
    assert [(e["type"], e["quantity"], e["reason"]) for e in wire(outcome.ledger)] == [
        ("SharesReleased", "100", "ORDER_REJECTED")
    ]
    assert account.live.positions["PETR4"].held == D("0")
    assert account.live.orders == {}


def test_amend_down_is_released_when_the_exchange_confirms() -> None:
    account = buying_100_at_38_52()
    account.request(amend("o1", quantity="60", rid="a1"))
    outcome = account.report(amended("o1", 2, quantity="60", price="38.52"))
    # 60 x 38.52 = 2311.20 + fee 0.69336 -> 0.69 = 2311.89; release 3853.16 - 2311.89 = 1541.27
    assert [(e["type"], e["amount"], e["reason"]) for e in wire(outcome.ledger)] == [
        ("FundsReleased", "1541.27", "ORDER_AMENDED")
    ]
    assert account.live.orders["o1"].quantity == D("60")
    assert account.live.orders["o1"].amend is None
    assert account.live.cash["BRL"].held == D("2311.89")


def test_amend_down_after_a_partial_fill() -> None:
    account = buying_100_at_38_52()
    account.report(fill("o1", 2, "40", "38.50", filled="40", leaves="60"))
    account.request(amend("o1", quantity="70", rid="a1"))
    outcome = account.report(amended("o1", 3, quantity="70", price="38.52", filled="40"))
    # leaves 30: 1155.60 + fee(1540.80 + 1155.60 = 2696.40) 0.80892 -> 0.81 - 0.46 = 1155.95
    # release 2311.90 - 1155.95 = 1155.95
    assert [(e["type"], e["amount"]) for e in wire(outcome.ledger)] == [
        ("FundsReleased", "1155.95")
    ]


def test_amend_up_then_confirmed_keeps_the_new_hold() -> None:
    account = buying_100_at_38_52()
    account.request(amend("o1", price="38.60", rid="a1"))
    outcome = account.report(amended("o1", 2, quantity="100", price="38.60"))
    assert outcome.ledger == []
    assert account.live.orders["o1"].price == D("38.60")
    assert account.live.cash["BRL"].held == D("3861.16")


def test_an_amend_the_exchange_refuses_is_answered_and_its_extra_hold_released() -> None:
    account = buying_100_at_38_52()
    account.request(amend("o1", quantity="110", price="38.60", rid="a1"))
    # 110 x 38.60 = 4246.00 + fee 1.2738 -> 1.27 = 4247.27: 394.11 more than 3853.16
    assert account.live.cash["BRL"].held == D("4247.27")
    outcome = account.report(
        rejected(
            "o1",
            2,
            "PRICE_BAND",
            "AmendOrder: price 38.60 is outside the band; order unchanged",
            leaves="100",
        )
    )
    [lost] = outcome.decisions
    assert (lost.request_id, lost.command, lost.reason) == ("a1", "RequestAmend", "PRICE_BAND")
    assert [(e["type"], e["amount"], e["reason"]) for e in wire(outcome.ledger)] == [
        ("FundsReleased", "394.11", "ORDER_AMENDED")
    ]
    assert account.live.orders["o1"].hold == D("3853.16")
    assert "o1" in account.live.orders


def test_amend_below_filled_at_the_exchange() -> None:
    account = buying_100_at_38_52()
    account.request(amend("o1", quantity="30", rid="a1"))
    account.report(fill("o1", 2, "40", "38.52", filled="40", leaves="60"))
    outcome = account.report(
        rejected(
            "o1",
            3,
            "AMEND_BELOW_FILLED",
            "AmendOrder: new quantity 30 does not exceed the filled quantity 40; order unchanged",
            filled="40",
            leaves="60",
        )
    )
    [lost] = outcome.decisions
    assert (lost.command, lost.reason) == ("RequestAmend", "AMEND_BELOW_FILLED")
    assert outcome.ledger == []
    assert account.live.orders["o1"].amend is None


def test_sell_amend_down_releases_shares() -> None:
    account = opened(custody("PETR4", "100", "30.00"), order("s1", "SELL", "100", "40.00"))
    account.request(amend("s1", quantity="30", rid="a1"))
    outcome = account.report(amended("s1", 1, quantity="30", price="40.00"))
    assert [(e["type"], e["quantity"], e["reason"]) for e in wire(outcome.ledger)] == [
        ("SharesReleased", "70", "ORDER_AMENDED")
    ]
    assert account.live.positions["PETR4"].held == D("30")


def test_sell_realizes_pnl_after_fees_and_proceeds_settle_d_plus_2() -> None:
    # 300 in at 30.00; SELL 150 @ 38.40 fills at 38.50 on Thursday 2026-06-25.
    account = opened(custody("PETR4", "300", "30.00"), order("s1", "SELL", "150", "38.40"))
    outcome = account.report(fill("s1", 1, "150", "38.50", filled="150", leaves="0"))
    [entry] = wire(outcome.ledger)
    # 5775.00 - fee 1.7325 -> 1.73 = 5773.27; realized (38.50 - 30.00) x 150 - 1.73 = 1273.27
    assert {
        k: entry[k]
        for k in (
            "cashDelta",
            "fees",
            "positionDelta",
            "sharesHoldReleased",
            "cashHoldReleased",
            "positionQuantity",
            "averagePrice",
            "realizedPnl",
            "settlementDate",
        )
    } == {
        "cashDelta": "5773.27",
        "fees": "1.73",
        "positionDelta": "-150",
        "sharesHoldReleased": "150",
        "cashHoldReleased": "0",
        "positionQuantity": "150",
        "averagePrice": "30.00",
        "realizedPnl": "1273.27",
        "settlementDate": "2026-06-29",
    }
    balance = balances(account.live)["BRL"]
    assert (balance.cash, balance.unsettled, balance.buying_power, balance.withdrawable) == (
        D("0"),
        D("5773.27"),
        D("5773.27"),
        D("0"),
    )
    # Unsettled proceeds buy at once: 100 @ 38.50 = 3850.00 + fee 1.155 -> 1.16 = 3851.16
    assert (
        account.request(order("b1", "BUY", "100", "38.50")).decisions[0].type == "RequestAccepted"
    )
    # ... but are not withdrawable before they settle
    assert account.request(withdraw("0.01")).decisions[0].code == "INSUFFICIENT_FUNDS"
    # Monday: settled first, then 5773.27 - 3851.16 = 1922.11 is withdrawable
    outcome = account.request(withdraw("1922.11", when=MONDAY))
    assert [(e["type"], e["amount"]) for e in wire(outcome.ledger)] == [
        ("CashSettled", "5773.27"),
        ("CashWithdrawn", "1922.11"),
    ]
    assert wire(outcome.ledger)[0]["settlementDate"] == "2026-06-29"
    assert account.live.cash["BRL"] == Cash(
        settled=D("3851.16"), unsettled=D("0.00"), held=D("3851.16")
    )
    assert account.live.positions["PETR4"].realized_pnl == D("1273.27")


def test_selling_out_flattens_the_position() -> None:
    account = opened(custody("PETR4", "10", "30.00"), order("s1", "SELL", "10", "29.00"))
    outcome = account.report(fill("s1", 1, "10", "29.00", filled="10", leaves="0"))
    [entry] = wire(outcome.ledger)
    # 290.00 - fee 0.087 -> 0.09 = 289.91; realized (29.00 - 30.00) x 10 - 0.09 = -10.09
    assert (entry["positionQuantity"], entry["averagePrice"], entry["realizedPnl"]) == (
        "0",
        None,
        "-10.09",
    )
    assert account.live.positions["PETR4"].average_price is None


def test_average_cost_includes_buy_fees() -> None:
    account = opened(deposit("20000.00"), custody("PETR4", "100", "30.00"))
    account.request(order("b1", "BUY", "50", "36.00"))
    outcome = account.report(fill("b1", 1, "50", "36.00", filled="50", leaves="0"))
    # 100 x 30.00 + 50 x 36.00 + fee(1800.00) 0.54 = 4800.54 / 150 = 32.0036
    assert wire(outcome.ledger)[0]["averagePrice"] == "32.0036"


def test_crypto_proceeds_settle_at_once() -> None:
    account = opened(custody("BTCUSDT", "0.01", "60000.00"))
    account.request(order("s1", "SELL", "0.01", "65000.00", "BTCUSDT"))
    outcome = account.report(
        fill("s1", 1, "0.01", "65000.00", filled="0.01", leaves="0", symbol="BTCUSDT")
    )
    [entry] = wire(outcome.ledger)
    # 650.00 - 0.1 % 0.65 = 649.35; realized (65000 - 60000) x 0.01 - 0.65 = 49.35
    # (USDT amounts carry their 8 places)
    assert (
        entry["cashDelta"],
        entry["realizedPnl"],
        entry["settlementDate"],
        entry["currency"],
    ) == (
        "649.35000000",
        "49.35000000",
        None,
        "USDT",
    )
    assert account.live.cash["USDT"] == Cash(settled=D("649.35"))


def test_duplicates_and_unknown_orders_are_ignored() -> None:
    account = buying_100_at_38_52()
    first = fill("o1", 2, "40", "38.50", filled="40", leaves="60")
    account.report(first)
    before = account.state
    assert not account.report(first)
    assert account.state is before
    # an older sequence of the symbol, another order's report, nothing at all
    assert not account.report(accepted("o1", 1, "BUY", "100", "38.52"))
    assert not account.report(fill("zz", 9, "1", "38.50", filled="1", leaves="0"))
    assert account.state is before
    # another symbol counts its own sequence
    assert account.live.last_report_sequence == {"PETR4": 2}


def test_reports_settle_what_is_due_first_and_carry_the_report_time() -> None:
    account = opened(custody("PETR4", "300", "30.00"), order("s1", "SELL", "150", "38.40"))
    account.request(order("s2", "SELL", "150", "38.40"))
    account.report(fill("s1", 1, "150", "38.50", filled="150", leaves="0"))
    outcome = account.report(fill("s2", 2, "150", "38.50", filled="150", leaves="0", when=MONDAY))
    assert [(e.type, e.event_time) for e in outcome.ledger] == [
        ("CashSettled", MONDAY),
        ("FillSettled", MONDAY),
    ]
    # Monday's sale settles on Wednesday 2026-07-01
    assert outcome.ledger[1].settlement_date == date(2026, 7, 1)


def test_a_closed_order_id_is_refused_for_a_day_then_forgotten() -> None:
    """The API sends a PENDING order again on a retry with its idempotency key. Were the copy
    accepted after the first had closed, the exchange would ignore the known id and the copy's
    hold would never be released: it is refused for as long as a key lives (24 h)."""
    account = opened(deposit("10000.00"), order("o1", "BUY", "100", "38.52"))
    account.report(accepted("o1", 1, "BUY", "100", "38.52"))
    account.report(fill("o1", 2, "100", "38.52", filled="100", leaves="0"))
    assert "o1" not in account.live.orders
    held_before = balances(account.live)["BRL"].held

    again = account.request(order("o1", "BUY", "100", "38.52", when=at(3600)))
    assert [(d.type, getattr(d, "code", None)) for d in again.decisions] == [
        ("RequestRefused", "ORDER_ID_IN_USE")
    ]
    assert again.ledger == []
    assert again.exchange == []
    assert balances(account.live)["BRL"].held == held_before == 0

    # Closing another order a day later forgets o1 (the memory stays bounded).
    day_later = at(24 * 3600 + 60)
    account.request(order("o2", "BUY", "1", "38.52", when=day_later))
    account.report(accepted("o2", 3, "BUY", "1", "38.52", when=day_later))
    account.report(cancelled("o2", 4, "0", "1", when=day_later))
    assert set(account.live.recently_closed) == {"o2"}
