"""Read models as the API shows them: balances, portfolio valuation, orders (hand-computed)."""

from __future__ import annotations

from decimal import Decimal

from brokerflow.api.account import account_view, portfolio_view

ACCOUNT = {
    "_id": "acct-1",
    "balances": {
        # A D+2 purchase not yet paid (unsettled -200.00) and a buy order holding 381.20.
        "BRL": {"cash": "1000.00", "held": "381.20", "unsettled": "-200.00"},
        # Sale proceeds on their way (spendable, not withdrawable).
        "USDT": {"cash": "50", "held": "0", "unsettled": "25.5"},
    },
    "sharesHeld": {"PETR4": "100", "VALE3": "0"},
}


def _wire(model: object) -> dict:
    return model.model_dump(mode="json", by_alias=True)  # type: ignore[attr-defined]


def test_balances_per_currency() -> None:
    view = _wire(account_view("acct-1", ACCOUNT, {"BRL", "USDT"}))
    assert view == {
        "accountId": "acct-1",
        "balances": {
            # 1000.00 - 200.00 - 381.20 = 418.80; withdrawable: the settled cash not held,
            # 1000.00 - 381.20 = 618.80 (the accounts agent's rule, brokerflow.broker.Cash)
            "BRL": {
                "cash": "1000.00",
                "held": "381.20",
                "unsettledCash": "-200.00",
                "buyingPower": "418.80",
                "withdrawable": "618.80",
            },
            # 50 + 25.5 - 0 = 75.5; withdrawable only the settled 50
            "USDT": {
                "cash": "50",
                "held": "0",
                "unsettledCash": "25.5",
                "buyingPower": "75.5",
                "withdrawable": "50",
            },
        },
        "sharesHeld": {"PETR4": "100"},
    }


def test_withdrawable_never_goes_below_zero() -> None:
    overdrawn = {"balances": {"BRL": {"cash": "10", "held": "30", "unsettled": "0"}}}
    balance = account_view("a", overdrawn, {"BRL"}).balances["BRL"]
    assert balance.buying_power == Decimal("-20")
    assert balance.withdrawable == Decimal("0")


def test_an_account_without_a_read_model_yet_shows_zeros() -> None:
    view = _wire(account_view("acct-new", None, {"BRL", "USDT"}))
    zero = {
        "cash": "0",
        "held": "0",
        "unsettledCash": "0",
        "buyingPower": "0",
        "withdrawable": "0",
    }
    assert view == {
        "accountId": "acct-new",
        "balances": {"BRL": zero, "USDT": zero},
        "sharesHeld": {},
    }


def test_portfolio_values_positions_at_the_last_price() -> None:
    positions = [
        {
            "symbol": "PETR4",
            "currency": "BRL",
            "quantity": "100",
            "averagePrice": "37.5043",
            "realizedPnl": "12.34",
        },
        {
            "symbol": "BTCUSDT",
            "currency": "USDT",
            "quantity": "0.5",
            "averagePrice": "60000",
            "realizedPnl": "-3.5",
        },
    ]
    prices = {"PETR4": Decimal("38.12")}
    view = _wire(portfolio_view(ACCOUNT, positions, prices, {"BRL": 2, "USDT": 8}, {"BRL", "USDT"}))
    # cash: BRL 1000.00 - 200.00 = 800.00; USDT 50 + 25.5 = 75.5
    assert view["cash"] == {"BRL": "800.00", "USDT": "75.5"}
    assert view["positions"] == [
        {
            # no price known: value and unrealized P&L unknown, so is the total
            "symbol": "BTCUSDT",
            "currency": "USDT",
            "quantity": "0.5",
            "avgPrice": "60000",
            "currentPrice": None,
            "marketValue": None,
            "realizedPnl": "-3.5",
            "unrealizedPnl": None,
            "pnl": None,
        },
        {
            # 100 x 38.12 = 3812.00; (38.12 - 37.5043) x 100 = 61.57; 12.34 + 61.57 = 73.91
            "symbol": "PETR4",
            "currency": "BRL",
            "quantity": "100",
            "avgPrice": "37.5043",
            "currentPrice": "38.12",
            "marketValue": "3812.00",
            "realizedPnl": "12.34",
            "unrealizedPnl": "61.57",
            "pnl": "73.91",
        },
    ]


def test_unreadable_read_model_values_count_as_zero() -> None:
    broken = {"balances": {"BRL": {"cash": "NaN", "held": None, "unsettled": "x"}}, "sharesHeld": 3}
    view = account_view("a", broken, {"BRL"})
    assert view.balances["BRL"].cash == Decimal(0)
    assert view.shares_held == {}
