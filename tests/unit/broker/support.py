"""Builders shared by the broker core's tests: the bundled catalog with default rates, requests
and exchange reports with hand-picked numbers, and a tiny driver through the real matching core."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from brokerflow.broker import AccountState, BrokerRules, Outcome, apply_report, decide
from brokerflow.exchange.state import engine_command
from brokerflow.instruments import InstrumentCatalog
from brokerflow.matching import Exchange, to_wire
from brokerflow.schemas import decode
from brokerflow.schemas.accounts import (
    DepositCash,
    OpenAccount,
    RequestAmend,
    RequestCancel,
    RequestOrder,
    TransferCustody,
    WithdrawCash,
)
from brokerflow.schemas.orders import (
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
)

ACCOUNT = "acc-1"
#: Thursday 2026-06-25 10:00 in Sao Paulo (UTC-3): inside the B3 session; D+2 is Monday 06-29.
T0 = datetime(2026, 6, 25, 13, 0, tzinfo=UTC)

CATALOG = InstrumentCatalog.from_wire(
    {
        "currencies": {"BRL": {"decimals": 2}, "USDT": {"decimals": 8}},
        "instruments": {
            "PETR4": {
                "venue": "B3",
                "currency": "BRL",
                "tickSize": "0.01",
                "lotSize": "1",
                "session": "B3",
                "settlementDays": 2,
                "feeSchedule": "B3",
            },
            "VALE3": {
                "venue": "B3",
                "currency": "BRL",
                "tickSize": "0.01",
                "lotSize": "1",
                "session": "B3",
                "settlementDays": 2,
                "feeSchedule": "B3",
            },
            "BTCUSDT": {
                "venue": "BINANCE",
                "currency": "USDT",
                "tickSize": "0.01",
                "lotSize": "0.00001",
                "session": "24x7",
                "settlementDays": 0,
                "feeSchedule": "CRYPTO",
            },
        },
    }
)
#: B3 0.005 % + 0.025 % = 0.03 % per side, crypto 0.1 %, MARKET buys held at last price + 5 %,
#: session 10:00-17:00 Sao Paulo.
RULES = BrokerRules(instruments=CATALOG)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def D(text: str) -> Decimal:  # noqa: N802  (reads like a literal)
    return Decimal(text)


# --- requests --------------------------------------------------------------------------------


def open_account(account: str = ACCOUNT, when: datetime = T0) -> OpenAccount:
    return OpenAccount(
        request_id=f"open-{account}", account_id=account, user_id="u-1", event_time=when
    )


def deposit(
    amount: str, currency: str = "BRL", when: datetime = T0, rid: str = "dep"
) -> DepositCash:
    return DepositCash(
        request_id=rid, account_id=ACCOUNT, currency=currency, amount=amount, event_time=when
    )


def withdraw(
    amount: str, currency: str = "BRL", when: datetime = T0, rid: str = "wd"
) -> WithdrawCash:
    return WithdrawCash(
        request_id=rid, account_id=ACCOUNT, currency=currency, amount=amount, event_time=when
    )


def custody(
    symbol: str, quantity: str, price: str, when: datetime = T0, rid: str = "cust"
) -> TransferCustody:
    return TransferCustody(
        request_id=rid,
        account_id=ACCOUNT,
        symbol=symbol,
        quantity=quantity,
        average_price=price,
        event_time=when,
    )


def order(
    order_id: str,
    side: str,
    quantity: str,
    price: str | None = None,
    symbol: str = "PETR4",
    *,
    market_price: str | None = None,
    time_in_force: str = "GTC",
    when: datetime = T0,
) -> RequestOrder:
    return RequestOrder(
        request_id=order_id,
        account_id=ACCOUNT,
        order_id=order_id,
        symbol=symbol,
        side=side,
        order_type="LIMIT" if price is not None else "MARKET",
        time_in_force=time_in_force,
        quantity=quantity,
        price=price,
        market_price=market_price,
        event_time=when,
    )


def cancel(order_id: str, rid: str = "cxl", when: datetime = T0) -> RequestCancel:
    return RequestCancel(request_id=rid, account_id=ACCOUNT, order_id=order_id, event_time=when)


def amend(
    order_id: str,
    quantity: str | None = None,
    price: str | None = None,
    rid: str = "amd",
    when: datetime = T0,
) -> RequestAmend:
    return RequestAmend(
        request_id=rid,
        account_id=ACCOUNT,
        order_id=order_id,
        quantity=quantity,
        price=price,
        event_time=when,
    )


# --- exchange reports ------------------------------------------------------------------------


def _head(
    order_id: str, sequence: int, filled: str, leaves: str, symbol: str, when: datetime
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "account_id": ACCOUNT,
        "symbol": symbol,
        "sequence": sequence,
        "filled_quantity": filled,
        "leaves_quantity": leaves,
        "event_time": when,
    }


def accepted(
    order_id: str,
    sequence: int,
    side: str,
    quantity: str,
    price: str | None,
    symbol: str = "PETR4",
    when: datetime = T0,
) -> OrderAccepted:
    return OrderAccepted(
        **_head(order_id, sequence, "0", quantity, symbol, when),
        side=side,
        order_type="LIMIT" if price is not None else "MARKET",
        time_in_force="GTC",
        quantity=quantity,
        price=price,
    )


def fill(
    order_id: str,
    sequence: int,
    quantity: str,
    price: str,
    *,
    filled: str,
    leaves: str,
    trade: str | None = None,
    symbol: str = "PETR4",
    when: datetime = T0,
) -> OrderPartiallyFilled | OrderFilled:
    kind = OrderFilled if Decimal(leaves) == 0 else OrderPartiallyFilled
    return kind(
        **_head(order_id, sequence, filled, leaves, symbol, when),
        trade_id=trade or f"{symbol}-T{sequence}",
        last_price=price,
        last_quantity=quantity,
    )


def cancelled(
    order_id: str,
    sequence: int,
    filled: str,
    cancelled_quantity: str,
    reason: str = "USER",
    symbol: str = "PETR4",
    when: datetime = T0,
) -> OrderCancelled:
    return OrderCancelled(
        **_head(order_id, sequence, filled, "0", symbol, when),
        reason=reason,
        cancelled_quantity=cancelled_quantity,
    )


def expired(
    order_id: str,
    sequence: int,
    filled: str,
    expired_quantity: str,
    symbol: str = "PETR4",
    when: datetime = T0,
) -> OrderExpired:
    return OrderExpired(
        **_head(order_id, sequence, filled, "0", symbol, when), expired_quantity=expired_quantity
    )


def rejected(
    order_id: str,
    sequence: int,
    reason: str,
    detail: str,
    filled: str = "0",
    leaves: str = "0",
    symbol: str = "PETR4",
    when: datetime = T0,
) -> OrderRejected:
    return OrderRejected(
        **_head(order_id, sequence, filled, leaves, symbol, when), reason=reason, detail=detail
    )


def amended(
    order_id: str,
    sequence: int,
    quantity: str,
    price: str,
    filled: str = "0",
    symbol: str = "PETR4",
    when: datetime = T0,
) -> OrderAmended:
    leaves = str(Decimal(quantity) - Decimal(filled))
    return OrderAmended(
        **_head(order_id, sequence, filled, leaves, symbol, when),
        status="PARTIALLY_FILLED" if Decimal(filled) else "OPEN",
        quantity=quantity,
        price=price,
        kept_priority=False,
    )


# --- one account, step by step ---------------------------------------------------------------


class Account:
    """One account driven by hand: every step keeps the outcome for the assertions."""

    def __init__(self, rules: BrokerRules = RULES) -> None:
        self.rules = rules
        self.state: AccountState | None = None
        self.last = Outcome()

    def request(self, request: Any) -> Outcome:
        self.state, self.last = decide(self.rules, self.state, request)
        return self.last

    def report(self, report: Any) -> Outcome:
        self.state, self.last = apply_report(self.rules, self.state, report)
        return self.last

    @property
    def live(self) -> AccountState:
        assert self.state is not None
        return self.state


def opened(*requests: Any, rules: BrokerRules = RULES) -> Account:
    account = Account(rules)
    account.request(open_account())
    for request in requests:
        account.request(request)
    return account


def wire(events: Iterable[Any]) -> list[dict[str, Any]]:
    return [event.to_wire() for event in events]


# --- through the real matching core ----------------------------------------------------------


def exchange_for(rules: BrokerRules) -> Exchange:
    return Exchange({instrument.symbol: instrument.rules() for instrument in rules.instruments})


def run_on_exchange(exchange: Exchange, rules: BrokerRules, command: Any) -> list[Any]:
    """The order events (decoded wire messages) a broker command causes, with an account."""
    engine = exchange.engine(command.symbol)
    reports = []
    for event in engine.process(engine_command(command, engine.rules)):
        payload = to_wire(event)
        if payload.get("accountId") is not None and payload["type"] != "TradeExecuted":
            reports.append(decode(json.dumps(payload).encode()))
    return reports
