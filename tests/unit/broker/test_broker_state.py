"""AccountState's table record round-trips exactly; balances read it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from brokerflow.broker import (
    AccountState,
    Balance,
    Cash,
    OpenOrder,
    PendingAmend,
    PendingSettlement,
    Position,
    balances,
)

ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
symbols = st.sampled_from(["PETR4", "VALE3", "BTCUSDT", "DOGEUSDT"])
currencies = st.sampled_from(["BRL", "USDT"])
amounts = st.decimals(
    min_value=Decimal("-1e12"),
    max_value=Decimal("1e12"),
    allow_nan=False,
    allow_infinity=False,
    places=8,
) | st.decimals(min_value=0, max_value=10**6, allow_nan=False, allow_infinity=False)
maybe = st.none() | amounts

cash = st.builds(Cash, amounts, amounts, amounts)
positions = st.builds(Position, symbols, currencies, amounts, amounts, maybe, amounts)
amends = st.builds(PendingAmend, ids, maybe, maybe, amounts)
orders = st.builds(
    OpenOrder,
    order_id=ids,
    symbol=symbols,
    side=st.sampled_from(["BUY", "SELL"]),
    order_type=st.sampled_from(["LIMIT", "MARKET"]),
    time_in_force=st.sampled_from(["GTC", "DAY", "IOC", "FOK"]),
    quantity=amounts,
    price=maybe,
    currency=currencies,
    filled=amounts,
    hold=amounts,
    estimate=maybe,
    notional=amounts,
    fees=amounts,
    attributed=amounts,
    acknowledged=st.booleans(),
    cancel_request=st.none() | ids,
    amend=st.none() | amends,
)
settlements = st.builds(PendingSettlement, ids, currencies, amounts, st.dates())


@st.composite
def states(draw: st.DrawFn) -> AccountState:
    order_list = draw(st.lists(orders, max_size=4))
    position_list = draw(st.lists(positions, max_size=3))
    return AccountState(
        account_id=draw(ids),
        user_id=draw(ids),
        next_sequence=draw(st.integers(min_value=1, max_value=2**53)),
        currency=draw(currencies),
        cash=draw(st.dictionaries(currencies, cash, max_size=2)),
        positions={p.symbol: p for p in position_list},
        orders={o.order_id: o for o in order_list},
        settlements=tuple(draw(st.lists(settlements, max_size=3))),
        last_report_sequence=draw(st.dictionaries(symbols, st.integers(0, 2**53), max_size=3)),
    )


@settings(max_examples=150, deadline=None)
@given(states())
def test_to_bytes_round_trips_exactly(state: AccountState) -> None:
    data = state.to_bytes()
    again = AccountState.from_bytes(data)
    assert again == state
    assert again.to_bytes() == data


def test_the_record_is_plain_json_with_decimal_strings() -> None:
    state = AccountState(
        account_id="a1",
        user_id="u1",
        next_sequence=7,
        cash={"BRL": Cash(Decimal("100.50"), Decimal("0"), Decimal("38.53"))},
        positions={
            "PETR4": Position("PETR4", "BRL", Decimal("10"), Decimal("5"), Decimal("30.2525"))
        },
        settlements=(PendingSettlement("PETR4-T3", "BRL", Decimal("289.91"), date(2026, 6, 29)),),
        last_report_sequence={"PETR4": 12},
    )
    assert state.to_bytes() == (
        b'{"accountId":"a1","userId":"u1","nextSequence":7,"currency":"BRL",'
        b'"cash":{"BRL":{"s":"100.50","u":"0","h":"38.53"}},'
        b'"positions":{"PETR4":{"currency":"BRL","quantity":"10","held":"5",'
        b'"averagePrice":"30.2525","realizedPnl":"0"}},"orders":{},'
        b'"settlements":[{"tradeId":"PETR4-T3","currency":"BRL","amount":"289.91",'
        b'"settlementDate":"2026-06-29"}],"lastReportSequence":{"PETR4":12},"recentlyClosed":{}}'
    )


def test_balances_per_currency() -> None:
    state = AccountState(
        account_id="a1",
        user_id="u1",
        cash={
            "USDT": Cash(Decimal("10"), Decimal("0"), Decimal("2.5")),
            "BRL": Cash(Decimal("-100.00"), Decimal("500.00"), Decimal("50.00")),
        },
    )
    result = balances(state)
    assert list(result) == ["BRL", "USDT"]  # the home currency first
    # buying power S + U - H = -100 + 500 - 50 = 350; withdrawable max(0, S - H) = 0
    assert result["BRL"] == Balance(
        cash=Decimal("-100.00"),
        held=Decimal("50.00"),
        unsettled=Decimal("500.00"),
        buying_power=Decimal("350.00"),
        withdrawable=Decimal("0"),
    )
    assert result["USDT"].withdrawable == Decimal("7.5")
    assert result["BRL"].to_wire()["buyingPower"] == "350.00"
    # an account that never touched its home currency still shows it, all zero
    assert balances(AccountState(account_id="a2", user_id="u2"))["BRL"].cash == 0
