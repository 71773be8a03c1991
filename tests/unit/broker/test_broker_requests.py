"""decide: account requests, holds and refusals, every amount computed by hand.

B3 fees are 0.03 % of the notional per side (rounded half-even to the centavo); a MARKET buy is
held at the last price plus 5 %, rounded up to the centavo.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from brokerflow.broker import AccountState, Cash, balances, decide

from .support import (
    ACCOUNT,
    RULES,
    D,
    amend,
    at,
    cancel,
    custody,
    deposit,
    open_account,
    opened,
    order,
    wire,
    withdraw,
)


def test_open_account_is_entry_zero_in_brl() -> None:
    state, outcome = decide(RULES, None, open_account())
    assert state == AccountState(account_id=ACCOUNT, user_id="u-1", next_sequence=1)
    assert wire(outcome.ledger) == [
        {
            "type": "AccountOpened",
            "schemaVersion": 1,
            "accountId": ACCOUNT,
            "sequence": 0,
            "entryId": f"{ACCOUNT}:0",
            "currency": "BRL",
            "eventTime": "2026-06-25T13:00:00.000000Z",
            "userId": "u-1",
        }
    ]
    assert [(d.type, d.request_id, d.command) for d in outcome.decisions] == [
        ("RequestAccepted", f"open-{ACCOUNT}", "OpenAccount")
    ]
    assert outcome.exchange == []


def test_opening_twice_is_refused_and_changes_nothing() -> None:
    account = opened()
    before = account.state
    outcome = account.request(open_account())
    assert account.state is before
    assert outcome.ledger == []
    assert [(d.type, d.code) for d in outcome.decisions] == [("RequestRefused", "ACCOUNT_EXISTS")]


def test_any_other_request_without_an_account_is_refused() -> None:
    state, outcome = decide(RULES, None, order("o1", "BUY", "1", "38.52"))
    assert state is None
    [refused] = outcome.decisions
    assert (refused.code, refused.order_id, refused.command) == (
        "UNKNOWN_ACCOUNT",
        "o1",
        "RequestOrder",
    )


def test_deposit_and_withdraw() -> None:
    account = opened(deposit("1000.00"))
    assert account.live.cash["BRL"] == Cash(settled=D("1000.00"))
    outcome = account.request(withdraw("250.50"))
    [entry] = wire(outcome.ledger)
    assert (entry["type"], entry["sequence"], entry["entryId"], entry["amount"]) == (
        "CashWithdrawn",
        2,
        f"{ACCOUNT}:2",
        "250.50",
    )
    assert account.live.cash["BRL"].settled == D("749.50")
    assert account.live.next_sequence == 3


def test_a_withdrawal_beyond_the_withdrawable_cash_is_refused_with_the_amount() -> None:
    # 1000.00 deposited, 385.32 held by a BUY 10 @ 38.52 (385.20 + fee 0.11556 -> 0.12):
    # withdrawable 614.68.
    account = opened(deposit("1000.00"), order("o1", "BUY", "10", "38.52"))
    before = account.state
    outcome = account.request(withdraw("614.69"))
    assert account.state is before
    [refused] = outcome.decisions
    assert refused.code == "INSUFFICIENT_FUNDS"
    assert "withdrawable 614.68 BRL" in refused.message
    assert account.request(withdraw("614.68")).decisions[0].type == "RequestAccepted"


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (deposit("10.001"), "AMOUNT_PRECISION"),
        (deposit("10.00", currency="EUR"), "UNKNOWN_CURRENCY"),
        (withdraw("0.000000001", currency="USDT"), "AMOUNT_PRECISION"),
    ],
)
def test_amounts_must_fit_a_catalog_currency(request_: object, code: str) -> None:
    account = opened()
    assert account.request(request_).decisions[0].code == code


def test_custody_transfer_moves_shares_in_at_average_cost() -> None:
    account = opened(custody("PETR4", "300", "30.00"))
    [entry] = wire(account.last.ledger)
    assert entry["quantity"] == "300"
    assert entry["positionQuantity"] == "300"
    assert entry["averagePrice"] == "30.00"
    # 300 @ 30.00 + 100 @ 31.01 = 9000.00 + 3101.00 = 12101.00 / 400 = 30.2525
    account.request(custody("PETR4", "100", "31.01", rid="c2"))
    assert wire(account.last.ledger)[0]["averagePrice"] == "30.2525"
    # + 3 @ 30.00: 12191.00 / 403 = 30.25062034739... -> 30.25062035 (8 places, half-even)
    account.request(custody("PETR4", "3", "30.00", rid="c3"))
    [entry] = wire(account.last.ledger)
    assert (entry["positionQuantity"], entry["averagePrice"]) == ("403", "30.25062035")
    assert entry["currency"] == "BRL"


def test_buy_limit_holds_notional_plus_fee() -> None:
    account = opened(deposit("10000.00"))
    outcome = account.request(order("o1", "BUY", "100", "38.52"))
    # 100 x 38.52 = 3852.00 + fee 1.1556 -> 1.16 = 3853.16
    [held] = wire(outcome.ledger)
    assert (held["type"], held["orderId"], held["amount"], held["currency"]) == (
        "FundsHeld",
        "o1",
        "3853.16",
        "BRL",
    )
    [accepted] = outcome.decisions
    assert (accepted.type, accepted.order_id, accepted.request_id) == (
        "RequestAccepted",
        "o1",
        "o1",
    )
    [place] = outcome.exchange
    assert place.to_wire() == {
        "type": "PlaceOrder",
        "schemaVersion": 1,
        "orderId": "o1",
        "accountId": ACCOUNT,
        "symbol": "PETR4",
        "side": "BUY",
        "orderType": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "100",
        "price": "38.52",
        "idempotencyKey": None,
        "eventTime": "2026-06-25T13:00:00.000000Z",
    }
    balance = balances(account.live)["BRL"]
    assert (balance.cash, balance.held, balance.buying_power, balance.withdrawable) == (
        D("10000.00"),
        D("3853.16"),
        D("6146.84"),
        D("6146.84"),
    )


def test_buy_market_holds_the_last_price_plus_the_collar_rounded_up() -> None:
    account = opened(deposit("1000.00"))
    # 3 @ 38.53 x 1.05 = 40.4565 -> 121.3695 + fee 0.03641085 -> 0.04 = 121.4095 -> up: 121.41
    outcome = account.request(order("m1", "BUY", "3", market_price="38.53"))
    assert wire(outcome.ledger)[0]["amount"] == "121.41"
    assert account.live.orders["m1"].estimate == D("40.4565")
    # the exchange gets it protected: a LIMIT IOC at the estimate down to the tick, 40.45,
    # so no fill can cost more than the 40.4565 a share it held for
    (place,) = outcome.exchange
    assert (place.order_type, place.time_in_force, place.price) == ("LIMIT", "IOC", D("40.45"))


def test_crypto_market_buy_holds_in_usdt_to_eight_places() -> None:
    account = opened(deposit("100", currency="USDT"))
    # 0.001 BTC @ 65000.00 x 1.05 = 68250.00 -> 68.25 + fee 0.06825 = 68.31825
    outcome = account.request(order("m1", "BUY", "0.001", None, "BTCUSDT", market_price="65000.00"))
    [held] = wire(outcome.ledger)
    assert (held["currency"], held["amount"]) == ("USDT", "68.31825000")


def test_market_buy_without_a_market_price_is_refused() -> None:
    account = opened(deposit("1000.00"))
    before = account.state
    outcome = account.request(order("m1", "BUY", "3"))
    assert account.state is before
    assert outcome.decisions[0].code == "NO_MARKET_PRICE"
    assert outcome.exchange == []


def test_a_buy_beyond_buying_power_is_refused_naming_both_amounts() -> None:
    account = opened(deposit("3853.15"))
    before = account.state
    outcome = account.request(order("o1", "BUY", "100", "38.52"))
    assert account.state is before
    assert (outcome.ledger, outcome.exchange) == ([], [])
    [refused] = outcome.decisions
    assert refused.code == "INSUFFICIENT_BUYING_POWER"
    assert "buying power 3853.15 BRL" in refused.message
    assert "needs 3853.16 BRL" in refused.message
    account.request(deposit("0.01", rid="d2"))
    assert (
        account.request(order("o1", "BUY", "100", "38.52")).decisions[0].type == "RequestAccepted"
    )


def test_sell_holds_shares_and_never_sells_short() -> None:
    account = opened(custody("PETR4", "100", "30.00"))
    outcome = account.request(order("s1", "SELL", "60", "40.00"))
    [held] = wire(outcome.ledger)
    assert (held["type"], held["symbol"], held["quantity"], held["currency"]) == (
        "SharesHeld",
        "PETR4",
        "60",
        "BRL",
    )
    assert account.live.positions["PETR4"].held == D("60")
    # 40 free: 41 is one too many
    outcome = account.request(order("s2", "SELL", "41", "40.00"))
    assert outcome.decisions[0].code == "INSUFFICIENT_SHARES"
    assert "40 PETR4 free to sell (60 held for open sells)" in outcome.decisions[0].message
    assert account.request(order("s2", "SELL", "40", None)).decisions[0].type == "RequestAccepted"


def test_order_checks_and_id_reuse() -> None:
    account = opened(deposit("10000.00"), order("o1", "BUY", "1", "38.52"))
    codes = [
        account.request(request).decisions[0].code
        for request in (
            order("o1", "BUY", "1", "38.52"),
            order("o2", "BUY", "1", "38.525"),
            order("o2", "BUY", "1", "38.52", "XPTO3"),
            order(
                "o2",
                "BUY",
                "1",
                "38.52",
                time_in_force="DAY",
                when=datetime(2026, 6, 25, 20, 0, tzinfo=UTC),
            ),
        )
    ]
    assert codes == ["ORDER_ID_IN_USE", "TICK_SIZE", "UNKNOWN_SYMBOL", "MARKET_CLOSED"]


def test_cancel_forwards_once() -> None:
    account = opened(deposit("10000.00"), order("o1", "BUY", "1", "38.52"))
    outcome = account.request(cancel("o1", rid="c1", when=at(5)))
    assert outcome.ledger == []
    assert [(d.type, d.order_id) for d in outcome.decisions] == [("RequestAccepted", "o1")]
    assert outcome.exchange[0].to_wire() == {
        "type": "CancelOrder",
        "schemaVersion": 1,
        "orderId": "o1",
        "accountId": ACCOUNT,
        "symbol": "PETR4",
        "eventTime": "2026-06-25T13:00:05.000000Z",
    }
    assert account.live.orders["o1"].cancel_request == "c1"
    assert account.request(cancel("o1", rid="c2")).decisions[0].code == "CANCEL_PENDING"
    assert account.request(cancel("nope", rid="c3")).decisions[0].code == "UNKNOWN_ORDER"
    assert account.request(amend("o1", quantity="2")).decisions[0].code == "CANCEL_PENDING"


def test_amend_up_holds_the_difference_now() -> None:
    account = opened(deposit("10000.00"), order("o1", "BUY", "100", "38.52"))
    # new hold 100 x 38.60 = 3860.00 + fee 1.158 -> 1.16 = 3861.16; held 3853.16: 8.00 more
    outcome = account.request(amend("o1", price="38.60"))
    assert [(e["type"], e["amount"]) for e in wire(outcome.ledger)] == [("FundsHeld", "8.00")]
    assert outcome.exchange[0].to_wire()["price"] == "38.60"
    assert outcome.exchange[0].to_wire()["quantity"] is None
    assert account.live.orders["o1"].hold == D("3861.16")
    assert account.live.cash["BRL"].held == D("3861.16")
    assert account.request(amend("o1", quantity="90")).decisions[0].code == "AMEND_PENDING"


def test_amend_down_holds_nothing_until_the_exchange_confirms() -> None:
    account = opened(deposit("10000.00"), order("o1", "BUY", "100", "38.52"))
    outcome = account.request(amend("o1", quantity="60"))
    assert outcome.ledger == []
    assert outcome.decisions[0].type == "RequestAccepted"
    assert account.live.orders["o1"].hold == D("3853.16")


def test_amend_up_beyond_buying_power_is_refused() -> None:
    # 3853.16 held, 1.00 free; 101 @ 38.52 needs 3890.52 + 1.167156 -> 1.17 = 3891.69: 38.53 more
    account = opened(deposit("3854.16"), order("o1", "BUY", "100", "38.52"))
    before = account.state
    outcome = account.request(amend("o1", quantity="101"))
    assert account.state is before
    assert outcome.decisions[0].code == "INSUFFICIENT_BUYING_POWER"
    assert "needs 38.53 BRL more" in outcome.decisions[0].message


def test_sell_amend_up_holds_more_shares_or_is_refused() -> None:
    account = opened(custody("PETR4", "100", "30.00"), order("s1", "SELL", "60", "40.00"))
    outcome = account.request(amend("s1", quantity="100"))
    assert [(e["type"], e["quantity"]) for e in wire(outcome.ledger)] == [("SharesHeld", "40")]
    assert account.live.positions["PETR4"].held == D("100")
    account = opened(custody("PETR4", "100", "30.00"), order("s1", "SELL", "60", "40.00"))
    assert account.request(amend("s1", quantity="101")).decisions[0].code == "INSUFFICIENT_SHARES"


def test_amend_refusals() -> None:
    account = opened(
        deposit("10000.00"),
        order("o1", "BUY", "10", "38.52"),
        order("m1", "BUY", "1", market_price="38.50"),
    )
    codes = [
        account.request(request).decisions[0].code
        for request in (
            amend("nope", quantity="5"),
            amend("m1", quantity="2"),
            amend("o1", price="38.525"),
            amend("o1", quantity="10.5"),
        )
    ]
    assert codes == ["UNKNOWN_ORDER", "ORDER_NOT_OPEN", "TICK_SIZE", "LOT_SIZE"]


def test_exactly_the_affordable_prefix_of_100_orders_is_accepted() -> None:
    # Each BUY 10 @ 38.52 holds 385.20 + fee 0.11556 -> 0.12 = 385.32.
    # 10000.00 / 385.32 = 25.95...: orders 1-25 hold 9633.00, 367.00 is left for the 26th.
    account = opened(deposit("10000.00"))
    decisions = []
    for i in range(1, 101):
        outcome = account.request(order(f"o{i}", "BUY", "10", "38.52", when=at(i)))
        decisions.append(outcome.decisions[0].type)
    assert decisions == ["RequestAccepted"] * 25 + ["RequestRefused"] * 75
    assert account.live.cash["BRL"] == Cash(settled=D("10000.00"), held=D("9633.00"))
    assert balances(account.live)["BRL"].buying_power == D("367.00")
    assert sorted(account.live.orders) == sorted(f"o{i}" for i in range(1, 26))
    # sequences stay gap-free: opened 0, deposit 1, 25 holds 2..26
    assert account.live.next_sequence == 27


def test_every_output_carries_the_request_time() -> None:
    when = datetime(2026, 6, 25, 14, 30, 15, 250000, tzinfo=UTC)
    account = opened(deposit("10000.00"))
    outcome = account.request(order("o1", "BUY", "1", "38.52", when=when))
    times = {o.event_time for o in [*outcome.ledger, *outcome.decisions, *outcome.exchange]}
    assert times == {when}


def test_requests_settle_what_is_due_first() -> None:
    # A pending D+2 settlement of 100.00 due Monday 2026-06-29.
    from brokerflow.broker import PendingSettlement

    account = opened(deposit("1.00"))
    state = account.live
    account.state = AccountState(
        account_id=state.account_id,
        user_id=state.user_id,
        next_sequence=state.next_sequence,
        cash={"BRL": Cash(settled=D("1.00"), unsettled=D("100.00"))},
        settlements=(PendingSettlement("PETR4-T1", "BRL", D("100.00"), date(2026, 6, 29)),),
    )
    # Friday: not yet, and the refusal leaves the state object alone.
    friday = account.state
    assert (
        account.request(withdraw("50.00", when=datetime(2026, 6, 26, 15, tzinfo=UTC)))
        .decisions[0]
        .code
        == "INSUFFICIENT_FUNDS"
    )
    assert account.state is friday
    # Monday 00:30 in Sao Paulo (03:30 UTC): settled, then the withdrawal.
    outcome = account.request(withdraw("50.00", when=datetime(2026, 6, 29, 3, 30, tzinfo=UTC)))
    assert [(e["type"], e.get("amount"), e["sequence"]) for e in wire(outcome.ledger)] == [
        ("CashSettled", "100.00", 2),
        ("CashWithdrawn", "50.00", 3),
    ]
    assert account.live.cash["BRL"] == Cash(settled=D("51.00"))
    assert account.live.settlements == ()
    # Even a refused request takes the settlement that is due (it is a fact of the date).
    account.state = AccountState(
        account_id=state.account_id,
        user_id=state.user_id,
        next_sequence=2,
        cash={"BRL": Cash(settled=D("1.00"), unsettled=D("100.00"))},
        settlements=(PendingSettlement("PETR4-T1", "BRL", D("100.00"), date(2026, 6, 29)),),
    )
    outcome = account.request(withdraw("500.00", when=datetime(2026, 6, 29, 15, tzinfo=UTC)))
    assert [e.type for e in outcome.ledger] == ["CashSettled"]
    assert outcome.decisions[0].code == "INSUFFICIENT_FUNDS"
    assert account.live.cash["BRL"] == Cash(settled=D("101.00"))


def test_settle_due_brings_in_what_is_due_and_nothing_else() -> None:
    from brokerflow.broker import PendingSettlement
    from brokerflow.schemas.accounts import SettleDue

    account = opened(deposit("1.00"))
    state = account.live
    account.state = AccountState(
        account_id=state.account_id,
        user_id=state.user_id,
        next_sequence=state.next_sequence,
        cash={"BRL": Cash(settled=D("1.00"), unsettled=D("150.00"))},
        settlements=(
            PendingSettlement("PETR4-T1", "BRL", D("100.00"), date(2026, 6, 29)),
            PendingSettlement("PETR4-T2", "BRL", D("50.00"), date(2026, 6, 30)),
        ),
    )

    def sweep(when: datetime) -> Any:
        return account.request(
            SettleDue(request_id=f"settle-{when:%Y%m%d}", account_id=ACCOUNT, event_time=when)
        )

    # Sunday 23:59 in Sao Paulo (Monday 02:59 UTC): nothing due yet; accepted, state untouched.
    before = account.state
    quiet = sweep(datetime(2026, 6, 29, 2, 59, tzinfo=UTC))
    assert quiet.ledger == []
    assert [(d.type, d.command) for d in quiet.decisions] == [("RequestAccepted", "SettleDue")]
    assert account.state is before
    # Monday 00:00 in Sao Paulo: only Monday's settlement.
    monday = sweep(datetime(2026, 6, 29, 3, 0, tzinfo=UTC))
    assert [(e["type"], e["tradeId"], e["amount"]) for e in wire(monday.ledger)] == [
        ("CashSettled", "PETR4-T1", "100.00")
    ]
    assert account.live.cash["BRL"] == Cash(settled=D("101.00"), unsettled=D("50.00"))
    assert [p.trade_id for p in account.live.settlements] == ["PETR4-T2"]
