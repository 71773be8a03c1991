"""The broker's accounts agent on the real broker, in a real `faust -A brokerflow.app worker`.

Requests go to ``account-commands-v1`` as the API sends them; the worker's two agents do the
rest: the accounts agent holds and forwards, the matching agent matches and reports back on
``execution-reports-v1``, the accounts agent settles. Every amount below is computed by hand in
the comments (B3 fees 0.005 % + 0.025 % = 0.03 % of notional per side, rounded half-even to the
centavo; D+2 business days).
"""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from brokerflow.broker import postings
from brokerflow.exchange.io import TopicRecord, read_topic
from brokerflow.kafka_io import producer, publish
from brokerflow.schemas import (
    DepositCash,
    Message,
    OpenAccount,
    OrderType,
    RequestCancel,
    RequestOrder,
    Side,
    TransferCustody,
    WithdrawCash,
    decode,
)
from brokerflow.settings import Settings
from brokerflow.topics import catalog

from .exchange_workers import IsolatedExchange, isolated_exchange, kafka_settings, stop

pytestmark = pytest.mark.integration

WAIT_S = 180.0
#: Thursday 2026-06-25, 10:00 in Sao Paulo: D+2 is Monday 2026-06-29.
T0 = datetime(2026, 6, 25, 13, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return kafka_settings()


@pytest.fixture
def broker(settings: Settings, unique: str, tmp_path: Path) -> IsolatedExchange:
    # The instrument catalog's rules (PETR4 lot 1), as the broker's checks use, not a rules file.
    return isolated_exchange(settings, unique, tmp_path, "acct", EXCHANGE_RULES_PATH="")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def send_requests(settings: Settings, requests: Sequence[Message]) -> None:
    topic = catalog(settings).account_commands.name
    async with producer(settings, enable_idempotence=True, acks="all") as client:
        await publish(client, topic, ((r.__dict__["account_id"], r) for r in requests))


def read(settings: Settings, logical: str, count: int) -> list[TopicRecord]:
    topic = getattr(catalog(settings), logical).name
    return asyncio.run(read_topic(settings, topic, min_count=count, timeout_s=WAIT_S, settle_s=1.5))


def decisions_by_request(settings: Settings, count: int) -> dict[str, dict[str, Any]]:
    records = read(settings, "account_events", count)
    decided: dict[str, dict[str, Any]] = {}
    for record in records:
        value = record.json()
        if value["type"] in ("RequestAccepted", "RequestRefused"):
            assert value["requestId"] not in decided, f"two decisions for {value['requestId']}"
            decided[value["requestId"]] = value
    return decided


def ledger_by_account(records: Sequence[TopicRecord]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        value = record.json()
        assert record.key == value["accountId"].encode()
        grouped[value["accountId"]].append(value)
    for entries in grouped.values():
        assert [entry["sequence"] for entry in entries] == list(range(len(entries)))
    return dict(grouped)


def run_until(
    broker: IsolatedExchange, name: str, check: Any, **env: str
) -> subprocess.Popen[bytes]:
    worker = broker.start_worker(name, **env)
    try:
        check()
    except BaseException:
        stop(worker)
        print(broker.log(name)[-6000:])
        raise
    return worker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The worker's Prometheus samples by name: (labels, value) each."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def test_two_users_fund_trade_cancel_and_settle_with_exact_amounts(
    broker: IsolatedExchange,
) -> None:
    settings = broker.settings
    alice, bob = "acc-alice", "acc-bob"
    requests: list[Message] = [
        OpenAccount(request_id="r1", account_id=alice, user_id="u-alice", event_time=at(0)),
        OpenAccount(request_id="r2", account_id=bob, user_id="u-bob", event_time=at(0)),
        DepositCash(
            request_id="r3", account_id=alice, currency="BRL", amount="10000.00", event_time=at(1)
        ),
        TransferCustody(
            request_id="r4",
            account_id=bob,
            symbol="PETR4",
            quantity="300",
            average_price="30.00",
            event_time=at(1),
        ),
        # Hold: 200 x 38.50 = 7700.00 + fee 7700.00 x 0.0003 = 2.31 -> 7702.31.
        RequestOrder(
            request_id="o-alice-1",
            account_id=alice,
            order_id="o-alice-1",
            symbol="PETR4",
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            quantity="200",
            price="38.50",
            event_time=at(2),
        ),
    ]
    sell = RequestOrder(
        request_id="o-bob-1",
        account_id=bob,
        order_id="o-bob-1",
        symbol="PETR4",
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        quantity="150",
        price="38.40",
        event_time=at(3),
    )
    later: list[Message] = [
        RequestCancel(request_id="r7", account_id=alice, order_id="o-alice-1", event_time=at(4)),
        # 1000 x 38.50 + 11.55 = 38511.55 > Alice's 4223.27: refused, nothing held.
        RequestOrder(
            request_id="o-alice-2",
            account_id=alice,
            order_id="o-alice-2",
            symbol="PETR4",
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            quantity="1000",
            price="38.50",
            event_time=at(5),
        ),
        # Bob's proceeds settle on Monday: on Thursday nothing is withdrawable.
        WithdrawCash(
            request_id="r9", account_id=bob, currency="BRL", amount="100.00", event_time=at(6)
        ),
        # Bob still has 150 free shares; 151 is one too many (no short selling).
        RequestOrder(
            request_id="o-bob-2",
            account_id=bob,
            order_id="o-bob-2",
            symbol="PETR4",
            side=Side.SELL,
            order_type=OrderType.LIMIT,
            quantity="151",
            price="40.00",
            event_time=at(7),
        ),
        # Monday 2026-06-29: the D+2 settlement makes 5773.27 withdrawable.
        WithdrawCash(
            request_id="r11",
            account_id=bob,
            currency="BRL",
            amount="5773.27",
            event_time=datetime(2026, 6, 29, 13, 0, tzinfo=UTC),
        ),
    ]

    def scenario() -> None:
        asyncio.run(send_requests(settings, requests))
        decided = decisions_by_request(settings, 5)
        assert {r: d["type"] for r, d in decided.items()} == dict.fromkeys(
            ["r1", "r2", "r3", "r4", "o-alice-1"], "RequestAccepted"
        )
        asyncio.run(send_requests(settings, [sell]))
        # Both sides' fills come back before the cancel is sent, so the cancel finds 50 left.
        fills = [r for r in read(settings, "ledger_events", 8) if r.json()["type"] == "FillSettled"]
        assert len(fills) == 2
        asyncio.run(send_requests(settings, later))
        decisions_by_request(settings, 11)

    metrics_port = free_port()
    worker = run_until(broker, "w1", scenario, METRICS_PORT=str(metrics_port))
    try:
        exported = scrape(metrics_port)
    finally:
        stop(worker)
    assert {
        (labels["command"], labels["outcome"]): value
        for labels, value in exported["account_decisions_total"]
        if labels["outcome"] != "ACCEPTED"
    } == {
        ("RequestOrder", "INSUFFICIENT_BUYING_POWER"): 1,
        ("WithdrawCash", "INSUFFICIENT_FUNDS"): 1,
        ("RequestOrder", "INSUFFICIENT_SHARES"): 1,
    }
    settled = [
        v for labels, v in exported["ledger_entries_total"] if labels["type"] == "FillSettled"
    ]
    assert settled == [2]

    decided = decisions_by_request(settings, 11)
    assert {r: (d["type"], d.get("code")) for r, d in decided.items()} == {
        "r1": ("RequestAccepted", None),
        "r2": ("RequestAccepted", None),
        "r3": ("RequestAccepted", None),
        "r4": ("RequestAccepted", None),
        "o-alice-1": ("RequestAccepted", None),
        "o-bob-1": ("RequestAccepted", None),
        "r7": ("RequestAccepted", None),
        "o-alice-2": ("RequestRefused", "INSUFFICIENT_BUYING_POWER"),
        "r9": ("RequestRefused", "INSUFFICIENT_FUNDS"),
        "o-bob-2": ("RequestRefused", "INSUFFICIENT_SHARES"),
        "r11": ("RequestAccepted", None),
    }
    ledger = ledger_by_account(read(settings, "ledger_events", 11))
    summary = {
        account: [
            (
                e["type"],
                e.get("amount") or e.get("cashDelta") or e.get("quantity"),
            )
            for e in entries
        ]
        for account, entries in ledger.items()
    }
    assert summary == {
        alice: [
            ("AccountOpened", None),
            ("CashDeposited", "10000.00"),
            ("FundsHeld", "7702.31"),
            # 150 @ 38.50 (the resting buy's price): 5775.00 + fee 1.7325 -> 1.73.
            ("FillSettled", "-5776.73"),
            # What the hold had left: 7702.31 - 5776.73.
            ("FundsReleased", "1925.58"),
        ],
        bob: [
            ("AccountOpened", None),
            ("CustodyTransferredIn", "300"),
            ("SharesHeld", "150"),
            ("FillSettled", "5773.27"),
            ("CashSettled", "5773.27"),
            ("CashWithdrawn", "5773.27"),
        ],
    }
    alice_fill = ledger[alice][3]
    assert alice_fill["fees"] == "1.73"
    assert alice_fill["cashHoldReleased"] == "5776.73"
    assert alice_fill["positionQuantity"] == "150"
    # (5775.00 + 1.73) / 150 = 38.5115333... -> 8 places, half-even.
    assert alice_fill["averagePrice"] == "38.51153333"
    bob_fill = ledger[bob][3]
    # (38.50 - 30.00) x 150 - 1.73 = 1273.27 realized; 5775.00 - 1.73 unsettled until Monday.
    assert bob_fill["realizedPnl"] == "1273.27"
    assert bob_fill["settlementDate"] == "2026-06-29"
    assert bob_fill["positionQuantity"] == "150"
    assert bob_fill["averagePrice"] == "30.00"
    assert ledger[alice][4]["reason"] == "ORDER_CANCELLED"
    # Double entry: every entry balances, per asset.
    for entries in ledger.values():
        for entry in entries:
            totals: Counter[str] = Counter()
            for posting in postings(decode(entry)):
                totals[posting.asset] += posting.amount
            assert all(total == 0 for total in totals.values()), entry
    # Only the accepted requests reached the exchange: Alice's buy and cancel, Bob's sell.
    commands = [r.json() for r in read(settings, "order_commands", 3)]
    assert [(c["type"], c["orderId"]) for c in commands] == [
        ("PlaceOrder", "o-alice-1"),
        ("PlaceOrder", "o-bob-1"),
        ("CancelOrder", "o-alice-1"),
    ]


# --- kill -9 in the middle of a random session ---------------------------------------------


def random_session(seed: int, accounts: int, orders: int) -> list[Message]:
    """Deposits, then limit orders around 38.50 on PETR4 from every account, some cancels.

    Each account deposits enough for its buys and transfers shares in for its sells, so most
    orders are accepted and many trade; a few are too big and are refused.
    """
    rng = random.Random(seed)
    names = [f"acc-{i:02d}" for i in range(accounts)]
    requests: list[Message] = []
    for i, name in enumerate(names):
        requests.append(
            OpenAccount(request_id=f"open-{i}", account_id=name, user_id=f"u-{i}", event_time=at(0))
        )
        requests.append(
            DepositCash(
                request_id=f"dep-{i}",
                account_id=name,
                currency="BRL",
                amount="50000.00",
                event_time=at(1),
            )
        )
        requests.append(
            TransferCustody(
                request_id=f"cus-{i}",
                account_id=name,
                symbol="PETR4",
                quantity="1000",
                average_price="37.00",
                event_time=at(1),
            )
        )
    placed: list[tuple[str, str]] = []
    for n in range(orders):
        name = rng.choice(names)
        if placed and rng.random() < 0.15:
            account, order_id = placed.pop(rng.randrange(len(placed)))
            requests.append(
                RequestCancel(
                    request_id=f"cxl-{n}", account_id=account, order_id=order_id, event_time=at(3)
                )
            )
            continue
        order_id = f"o-{n}"
        placed.append((name, order_id))
        requests.append(
            RequestOrder(
                request_id=order_id,
                account_id=name,
                order_id=order_id,
                symbol="PETR4",
                side=rng.choice([Side.BUY, Side.SELL]),
                order_type=OrderType.LIMIT,
                quantity=str(rng.choice([10, 50, 100, 300, 2000])),
                price=f"{Decimal('38.50') + Decimal(rng.randint(-10, 10)) / 100:.2f}",
                event_time=at(2 + n / 1000),
            )
        )
    return requests


@pytest.mark.slow
def test_kill_9_mid_session_loses_and_doubles_nothing(broker: IsolatedExchange) -> None:
    settings = broker.settings
    requests = random_session(seed=7, accounts=12, orders=900)
    first = broker.start_worker("w1")
    second: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(send_requests(settings, requests[: len(requests) // 2]))
        # Let it get some way in, then kill it without a chance to commit or clean up.
        read(settings, "ledger_events", 200)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        asyncio.run(send_requests(settings, requests[len(requests) // 2 :]))
        second = broker.start_worker("w2")
        decided = decisions_by_request(settings, len(requests))
        time.sleep(3)  # reports of the last fills
        ledger_records = read(settings, "ledger_events", 1)
        stop(second)
        second = None
    except BaseException:
        print(broker.log("w1")[-4000:])
        print(broker.log("w2")[-6000:] if (broker.workdir / "w2.log").exists() else "")
        raise
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                stop(process)

    assert set(decided) == {r.__dict__["request_id"] for r in requests}
    ledger = ledger_by_account(ledger_records)  # gap-free sequences, no duplicate entry
    trades = [r.json() for r in read(settings, "trade_executions", 1)]
    assert trades, "the session should trade"
    # Every fill settled exactly once on each side: one FillSettled per (trade, order).
    settled = Counter(
        (entry["tradeId"], entry["orderId"])
        for entries in ledger.values()
        for entry in entries
        if entry["type"] == "FillSettled"
    )
    expected = Counter()
    for trade in trades:
        expected[(trade["tradeId"], trade["buyOrderId"])] += 1
        expected[(trade["tradeId"], trade["sellOrderId"])] += 1
    assert settled == expected
    # Cash is conserved: deposits minus fees, all accounts together (no withdrawals here).
    cash = Decimal(0)
    fees = Decimal(0)
    shares = Decimal(0)
    for entries in ledger.values():
        for entry in entries:
            if entry["type"] == "CashDeposited":
                cash += Decimal(entry["amount"])
            elif entry["type"] == "FillSettled":
                cash += Decimal(entry["cashDelta"])
                fees += Decimal(entry["fees"])
                shares += Decimal(entry["positionDelta"])
    assert cash == Decimal("50000.00") * 12 - fees
    assert shares == 0  # every share bought was sold by another account
