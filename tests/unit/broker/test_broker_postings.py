"""Double entry: each ledger entry's postings, written out by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from brokerflow.broker import Posting, postings
from brokerflow.schemas.ledger import (
    AccountOpened,
    CashDeposited,
    CashSettled,
    CashWithdrawn,
    CustodyTransferredIn,
    FillSettled,
    FundsHeld,
    FundsReleased,
    SharesHeld,
    SharesReleased,
)

HEAD = {
    "account_id": "a1",
    "sequence": 1,
    "entry_id": "a1:1",
    "currency": "BRL",
    "event_time": "2026-06-25T13:00:00Z",
}
AVAILABLE, HELD, UNSETTLED = "customer:a1:available", "customer:a1:held", "customer:a1:unsettled"
SHARES, SHARES_HELD = "customer:a1:shares", "customer:a1:shares_held"


def p(book: str, asset: str, amount: str) -> Posting:
    return Posting(book, asset, Decimal(amount))


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (AccountOpened(**{**HEAD, "sequence": 0, "entry_id": "a1:0"}, user_id="u1"), []),
        (
            CashDeposited(**HEAD, amount="100.00"),
            [p(AVAILABLE, "BRL", "100.00"), p("external:bank", "BRL", "-100.00")],
        ),
        (
            CashWithdrawn(**HEAD, amount="40.00"),
            [p("external:bank", "BRL", "40.00"), p(AVAILABLE, "BRL", "-40.00")],
        ),
        (
            FundsHeld(**HEAD, order_id="o1", amount="3853.16"),
            [p(HELD, "BRL", "3853.16"), p(AVAILABLE, "BRL", "-3853.16")],
        ),
        (
            FundsReleased(**HEAD, order_id="o1", amount="8.00", reason="ORDER_FILLED"),
            [p(AVAILABLE, "BRL", "8.00"), p(HELD, "BRL", "-8.00")],
        ),
        (
            CashSettled(
                **HEAD, trade_id="PETR4-T1", amount="5773.27", settlement_date=date(2026, 6, 29)
            ),
            [p(AVAILABLE, "BRL", "5773.27"), p(UNSETTLED, "BRL", "-5773.27")],
        ),
        (
            CustodyTransferredIn(
                **HEAD,
                symbol="PETR4",
                quantity="300",
                price="30.00",
                position_quantity="300",
                average_price="30.00",
            ),
            [p(SHARES, "PETR4", "300"), p("external:custody", "PETR4", "-300")],
        ),
        (
            SharesHeld(**HEAD, order_id="s1", symbol="PETR4", quantity="150"),
            [p(SHARES_HELD, "PETR4", "150"), p(SHARES, "PETR4", "-150")],
        ),
        (
            SharesReleased(
                **HEAD, order_id="s1", symbol="PETR4", quantity="50", reason="ORDER_CANCELLED"
            ),
            [p(SHARES, "PETR4", "50"), p(SHARES_HELD, "PETR4", "-50")],
        ),
    ],
)
def test_postings_of_simple_entries(entry: object, expected: list[Posting]) -> None:
    assert postings(entry) == expected


def test_a_buy_fill_moves_the_hold_pays_the_clearing_and_the_fees() -> None:
    entry = FillSettled(
        **HEAD,
        trade_id="PETR4-T2",
        order_id="o1",
        symbol="PETR4",
        side="BUY",
        quantity="40",
        price="38.50",
        fees="0.46",
        cash_delta="-1540.46",
        position_delta="40",
        cash_hold_released="1541.26",
        shares_hold_released="0",
        position_quantity="40",
        average_price="38.5115",
        realized_pnl="0",
    )
    assert postings(entry) == [
        p(AVAILABLE, "BRL", "1541.26"),
        p(HELD, "BRL", "-1541.26"),
        p("exchange:clearing", "BRL", "1540.00"),
        p(AVAILABLE, "BRL", "-1540.00"),
        p(SHARES, "PETR4", "40"),
        p("exchange:clearing", "PETR4", "-40"),
        p("broker:fees", "BRL", "0.46"),
        p(AVAILABLE, "BRL", "-0.46"),
    ]


def test_a_sell_fill_with_a_settlement_date_lands_in_unsettled() -> None:
    entry = FillSettled(
        **HEAD,
        trade_id="PETR4-T1",
        order_id="s1",
        symbol="PETR4",
        side="SELL",
        quantity="150",
        price="38.50",
        fees="1.73",
        cash_delta="5773.27",
        position_delta="-150",
        cash_hold_released="0",
        shares_hold_released="150",
        position_quantity="150",
        average_price="30.00",
        realized_pnl="1273.27",
        settlement_date=date(2026, 6, 29),
    )
    assert postings(entry) == [
        p(UNSETTLED, "BRL", "5775.00"),
        p("exchange:clearing", "BRL", "-5775.00"),
        p("exchange:clearing", "PETR4", "150"),
        p(SHARES_HELD, "PETR4", "-150"),
        p("broker:fees", "BRL", "1.73"),
        p(UNSETTLED, "BRL", "-1.73"),
    ]
    same_day = entry.model_copy(update={"settlement_date": None})
    assert {x.book for x in postings(same_day)} == {
        AVAILABLE,
        "exchange:clearing",
        SHARES_HELD,
        "broker:fees",
    }


def test_a_free_fill_posts_no_fee() -> None:
    entry = FillSettled(
        **HEAD,
        trade_id="PETR4-T3",
        order_id="s1",
        symbol="PETR4",
        side="SELL",
        quantity="1",
        price="10.00",
        fees="0.00",
        cash_delta="10.00",
        position_delta="-1",
        cash_hold_released="0",
        shares_hold_released="1",
        position_quantity="0",
        average_price=None,
        realized_pnl="-20.00",
    )
    assert [x.book for x in postings(entry)] == [
        AVAILABLE,
        "exchange:clearing",
        "exchange:clearing",
        SHARES_HELD,
    ]
