"""A random trading session through the broker core and the real matching core.

Several accounts deposit, withdraw, move shares in, place limit and market orders, cancel and
amend, on two B3 stocks (D+2) and one crypto pair (D+0), over several days (DAY orders expire
at each close, sale proceeds settle). Each request goes through :func:`decide`; each command it
sends goes through the real :class:`~brokerflow.matching.Exchange`; each order event that comes
back goes through :func:`apply_report` for its order's account. Commands and reports wait in
FIFO queues that drain at random moments, as Kafka topics would, so cancels and amends race
fills, and requests are decided on states that have not heard of the latest fills yet. After
every step:

* every ledger entry's postings sum to zero per asset, sequences are gap-free per account;
* the customer books, folded from the postings, equal each account's state (available = settled
  - held, held, unsettled, free shares, held shares);
* the customer cash plus the clearing book per currency equals deposits - withdrawals - fees,
  and the clearing book is flat whenever no report is in flight (every trade is between two of
  these accounts);
* no hold, unsettled amount, position or buying power is negative;
* exactly one decision per request, and at most one ``CancelRequestRejected`` per accepted
  cancel or amend.

At the end every open order is cancelled: no hold is left, and the shares in the accounts are
exactly the shares moved in by custody transfers.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from brokerflow.broker import (
    AccountState,
    apply_report,
    balances,
    customer_book,
    decide,
    postings,
)
from brokerflow.matching import CloseSession, format_event_time, to_wire
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

from .support import RULES, exchange_for, run_on_exchange

ACCOUNTS = [f"acc-{i}" for i in range(5)]
BASE = {"PETR4": Decimal("38.50"), "VALE3": Decimal("61.20"), "BTCUSDT": Decimal("65000.00")}
TICK = {"PETR4": Decimal("0.01"), "VALE3": Decimal("0.01"), "BTCUSDT": Decimal("0.01")}
LOT = {"PETR4": Decimal("1"), "VALE3": Decimal("1"), "BTCUSDT": Decimal("0.00001")}
CURRENCY = {"PETR4": "BRL", "VALE3": "BRL", "BTCUSDT": "USDT"}
#: Thursday 2026-06-25 10:00 in Sao Paulo.
START = datetime(2026, 6, 25, 13, 0, tzinfo=UTC)
ZERO = Decimal(0)


class Session:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.exchange = exchange_for(RULES)
        self.states: dict[str, AccountState] = {}
        self.books: Counter[tuple[str, str]] = Counter()
        self.next_sequence: dict[str, int] = {}
        self.deposited: Counter[str] = Counter()
        self.withdrawn: Counter[str] = Counter()
        self.fees: Counter[str] = Counter()
        self.custody: Counter[str] = Counter()
        self.now = START
        self.counter = 0
        self.fills = 0
        self.commands: list[Any] = []
        self.reports: list[Any] = []
        self.forwarded: set[str] = set()
        self.lost: Counter[str] = Counter()

    # --- driving ---------------------------------------------------------------------------

    def rid(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def tick(self) -> None:
        self.now += timedelta(seconds=self.rng.choice((1, 5, 30)))

    def next_day(self) -> None:
        """Close the B3 session (DAY orders expire), then the next business day's 10:00."""
        close = self.now.replace(hour=20, minute=0, second=0, microsecond=0)
        for symbol in ("PETR4", "VALE3"):
            engine = self.exchange.engine(symbol)
            events = engine.process(CloseSession(symbol, format_event_time(close)))
            self.deliver(self.decoded(events))
        self.drain(everything=True)
        day = self.now + timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        self.now = day.replace(hour=13, minute=0, second=0, microsecond=0)

    def decoded(self, events: list[Any]) -> list[Any]:
        reports = []
        for event in events:
            payload = to_wire(event)
            if payload["type"] != "TradeExecuted" and payload.get("accountId") is not None:
                reports.append(decode(json.dumps(payload).encode()))
        return reports

    def request(self, request: Any) -> Any:
        account = request.account_id
        state, outcome = decide(RULES, self.states.get(account), request)
        assert len(outcome.decisions) == 1
        assert outcome.decisions[0].request_id == request.request_id
        if state is not None:
            self.states[account] = state
        self.record(outcome.ledger)
        decision = outcome.decisions[0]
        if decision.type == "RequestAccepted" and request.type in ("RequestCancel", "RequestAmend"):
            self.forwarded.add(request.request_id)
        self.commands.extend(outcome.exchange)
        self.check()
        return decision

    def deliver(self, reports: list[Any]) -> None:
        self.reports.extend(reports)

    def drain(self, everything: bool = False) -> None:
        """Let the exchange take some queued commands, and the broker some queued reports."""
        while self.commands and (everything or self.rng.random() < 0.6):
            command = self.commands.pop(0)
            self.reports.extend(run_on_exchange(self.exchange, RULES, command))
        while self.reports and (everything or self.rng.random() < 0.7):
            report = self.reports.pop(0)
            account = report.account_id
            state, outcome = apply_report(RULES, self.states[account], report)
            assert state is not None
            self.states[account] = state
            assert outcome.exchange == []
            for lost in outcome.decisions:
                assert lost.type == "CancelRequestRejected"
                assert lost.request_id in self.forwarded
                self.lost[lost.request_id] += 1
                assert self.lost[lost.request_id] == 1
            self.record(outcome.ledger)
            self.check()
        if everything and (self.commands or self.reports):
            self.drain(everything=True)

    def record(self, ledger: list[Any]) -> None:
        for entry in ledger:
            account = entry.account_id
            assert entry.sequence == self.next_sequence.get(account, 0)
            assert entry.entry_id == f"{account}:{entry.sequence}"
            self.next_sequence[account] = entry.sequence + 1
            totals: Counter[str] = Counter()
            for posting in postings(entry):
                totals[posting.asset] += posting.amount
                self.books[(posting.book, posting.asset)] += posting.amount
            assert all(total == 0 for total in totals.values()), entry
            if entry.type == "CashDeposited":
                self.deposited[entry.currency] += entry.amount
            elif entry.type == "CashWithdrawn":
                self.withdrawn[entry.currency] += entry.amount
            elif entry.type == "CustodyTransferredIn":
                self.custody[entry.symbol] += entry.quantity
            elif entry.type == "FillSettled":
                self.fees[entry.currency] += entry.fees
                self.fills += 1

    # --- invariants ------------------------------------------------------------------------

    def check(self) -> None:
        cash_total: Counter[str] = Counter()
        for account, state in self.states.items():
            for currency, cash in state.cash.items():
                book = self.books.__getitem__
                assert (
                    book((customer_book(account, "available"), currency))
                    == cash.settled - cash.held
                )
                assert book((customer_book(account, "held"), currency)) == cash.held
                assert book((customer_book(account, "unsettled"), currency)) == cash.unsettled
                assert cash.held >= 0
                assert cash.unsettled >= 0
                assert cash.buying_power >= 0, (account, currency, cash)
                assert cash.settled + cash.unsettled >= 0
                cash_total[currency] += cash.settled + cash.unsettled
            for symbol, position in state.positions.items():
                assert position.quantity >= 0
                assert position.held >= 0
                assert position.held <= position.quantity
                assert self.books[(customer_book(account, "shares"), symbol)] == (
                    position.quantity - position.held
                )
                assert self.books[(customer_book(account, "shares_held"), symbol)] == position.held
                assert (position.average_price is None) == (position.quantity == 0)
            for order in state.orders.values():
                assert order.hold >= 0
                assert order.filled < order.quantity
            held_orders = sum((o.hold for o in state.orders.values() if o.side == "BUY"), ZERO)
            assert held_orders == sum((c.held for c in state.cash.values()), ZERO)
            for symbol, position in state.positions.items():
                sells = [
                    o for o in state.orders.values() if o.side == "SELL" and o.symbol == symbol
                ]
                assert sum((o.hold for o in sells), ZERO) == position.held
        for currency in ("BRL", "USDT"):
            expected = self.deposited[currency] - self.withdrawn[currency] - self.fees[currency]
            clearing = self.books[("exchange:clearing", currency)]
            assert cash_total[currency] + clearing == expected
            if not self.reports:
                assert clearing == 0
            assert self.books[("broker:fees", currency)] == self.fees[currency]
            assert (
                self.books[("external:bank", currency)]
                == self.withdrawn[currency] - self.deposited[currency]
            )

    # --- random requests -------------------------------------------------------------------

    def price(self, symbol: str) -> Decimal:
        steps = self.rng.randint(-40, 40)
        return BASE[symbol] + steps * TICK[symbol] * (1000 if symbol == "BTCUSDT" else 1)

    def quantity(self, symbol: str) -> Decimal:
        if symbol == "BTCUSDT":
            return self.rng.randint(1, 500) * LOT[symbol]
        return Decimal(self.rng.randint(1, 300))

    def market_price(self, symbol: str) -> Decimal | None:
        """The highest price this session ever quotes, so a MARKET buy's fills stay inside its
        5 % collar whatever the book looks like when it arrives (or none at all)."""
        if self.rng.random() < 0.1:
            return None
        return BASE[symbol] + 40 * TICK[symbol] * (1000 if symbol == "BTCUSDT" else 1)

    def random_step(self) -> None:
        rng = self.rng
        account = rng.choice(ACCOUNTS)
        roll = rng.random()
        when = self.now
        if roll < 0.08:
            currency = rng.choice(("BRL", "USDT"))
            amount = Decimal(rng.randint(100_00, 40_000_00)) / 100
            self.request(
                DepositCash(
                    request_id=self.rid("d"),
                    account_id=account,
                    currency=currency,
                    amount=amount,
                    event_time=when,
                )
            )
        elif roll < 0.13:
            currency = rng.choice(("BRL", "USDT"))
            amount = Decimal(rng.randint(1_00, 20_000_00)) / 100
            self.request(
                WithdrawCash(
                    request_id=self.rid("w"),
                    account_id=account,
                    currency=currency,
                    amount=amount,
                    event_time=when,
                )
            )
        elif roll < 0.18:
            symbol = rng.choice(list(BASE))
            self.request(
                TransferCustody(
                    request_id=self.rid("c"),
                    account_id=account,
                    symbol=symbol,
                    quantity=self.quantity(symbol) * 2,
                    average_price=self.price(symbol),
                    event_time=when,
                )
            )
        elif roll < 0.75:
            symbol = rng.choice(list(BASE))
            side = rng.choice(("BUY", "SELL"))
            market = rng.random() < 0.15
            order_id = self.rid("o")
            tif = rng.choice(("GTC", "GTC", "DAY", "IOC", "FOK"))
            self.request(
                RequestOrder(
                    request_id=order_id,
                    account_id=account,
                    order_id=order_id,
                    symbol=symbol,
                    side=side,
                    order_type="MARKET" if market else "LIMIT",
                    time_in_force="IOC" if market else tif,
                    quantity=self.quantity(symbol),
                    price=None if market else self.price(symbol),
                    market_price=self.market_price(symbol) if market and side == "BUY" else None,
                    event_time=when,
                )
            )
        elif roll < 0.87:
            open_ids = list(self.states.get(account, _EMPTY).orders) or ["nope"]
            self.request(
                RequestCancel(
                    request_id=self.rid("x"),
                    account_id=account,
                    order_id=rng.choice(open_ids),
                    event_time=when,
                )
            )
        else:
            state = self.states.get(account, _EMPTY)
            open_ids = list(state.orders) or ["nope"]
            order_id = rng.choice(open_ids)
            order = state.orders.get(order_id)
            symbol = order.symbol if order is not None else "PETR4"
            change = rng.random()
            quantity = None if change < 0.4 else self.quantity(symbol)
            price = None if 0.4 <= change < 0.7 else self.price(symbol)
            self.request(
                RequestAmend(
                    request_id=self.rid("a"),
                    account_id=account,
                    order_id=order_id,
                    quantity=quantity,
                    price=price,
                    event_time=when,
                )
            )


_EMPTY = AccountState(account_id="-", user_id="-")


@pytest.mark.parametrize("seed", range(6))
def test_random_session_balances_conserves_and_releases_every_hold(seed: int) -> None:
    session = Session(seed)
    for account in ACCOUNTS:
        session.request(
            OpenAccount(
                request_id=f"open-{account}",
                account_id=account,
                user_id=f"u-{account}",
                event_time=START,
            )
        )
        session.request(
            DepositCash(
                request_id=f"seed-{account}",
                account_id=account,
                currency="BRL",
                amount=Decimal("20000.00"),
                event_time=START,
            )
        )
        session.request(
            DepositCash(
                request_id=f"seed-usdt-{account}",
                account_id=account,
                currency="USDT",
                amount=Decimal("5000"),
                event_time=START,
            )
        )
    for step in range(500):
        if step and step % 120 == 0:
            session.next_day()
        session.random_step()
        session.drain()
        session.tick()
    # Wind down: cancel everything still open.
    session.drain(everything=True)
    for account, state in list(session.states.items()):
        for order_id in list(state.orders):
            session.request(
                RequestCancel(
                    request_id=session.rid("end"),
                    account_id=account,
                    order_id=order_id,
                    event_time=session.now,
                )
            )
    session.drain(everything=True)
    # A week later every sale has settled.
    session.now += timedelta(days=7)
    for account in ACCOUNTS:
        session.request(
            WithdrawCash(
                request_id=session.rid("final"),
                account_id=account,
                currency="BRL",
                amount=Decimal("0.01"),
                event_time=session.now,
            )
        )
    positions: Counter[str] = Counter()
    for state in session.states.values():
        assert state.orders == {}
        assert state.settlements == ()
        for currency, balance in balances(state).items():
            assert balance.held == 0, currency
            assert balance.unsettled == 0, currency
        for symbol, position in state.positions.items():
            assert position.held == 0
            positions[symbol] += position.quantity
    assert positions == session.custody
    # the session did trade: fills happened and fees were charged in both currencies
    assert session.fills > 20
    assert session.fees["BRL"] > 0
    assert session.fees["USDT"] > 0
    # and cancels or amends lost races to fills
    assert sum(session.lost.values()) > 0
