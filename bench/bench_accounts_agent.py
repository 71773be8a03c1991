"""Benchmark of the broker's accounts agent end to end, against raw Kafka on the same broker.

Run ``python bench/bench_accounts_agent.py`` (``--orders N``; the local stack must be up). It
opens and funds ``--accounts`` accounts (cash and PETR4 shares), then publishes ``N`` limit-order
requests around one price (half buys, half sells, so about half of them trade) to fresh topics
(unique prefix), starts one worker (``faust -A brokerflow.app worker``: the accounts agent and the
exchange, exactly-once) and measures until the last decision is committed (read with
``read_committed``), start-up included, and from the first committed decision (steady state).
Each accepted order also goes through the matching agent and comes back as execution reports,
which the accounts agent settles: the worker does all of that work in the time measured, but the
clock stops at the last decision. In the same run it measures raw Kafka produce+consume of the
same number of records (``bench_exchange_agents.raw_kafka``). Prints the rates, their ratio, the
machine and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from brokerflow.exchange.io import follow_topic
from brokerflow.kafka_io import producer, publish
from brokerflow.schemas import (
    DepositCash,
    Message,
    OpenAccount,
    OrderType,
    RequestOrder,
    Side,
    TransferCustody,
)
from brokerflow.settings import Settings
from brokerflow.topics import catalog, delete_topics, ensure_topics

sys.path.insert(0, str(Path(__file__).parent))
from _common import exchange_env, machine_line, start_worker
from bench_exchange_agents import raw_kafka

T0 = datetime(2026, 6, 25, 13, 0, tzinfo=UTC)


def requests(orders: int, accounts: int, seed: int = 20261203) -> tuple[list[Message], int]:
    """The set-up requests and the orders; returns them and how many set-up requests lead."""
    rng = random.Random(seed)
    setup: list[Message] = []
    names = [f"acc-{i:04d}" for i in range(accounts)]
    for i, name in enumerate(names):
        setup += [
            OpenAccount(request_id=f"open-{i}", account_id=name, user_id=f"u-{i}", event_time=T0),
            DepositCash(
                request_id=f"dep-{i}",
                account_id=name,
                currency="BRL",
                amount="10000000.00",
                event_time=T0,
            ),
            TransferCustody(
                request_id=f"cus-{i}",
                account_id=name,
                symbol="PETR4",
                quantity="1000000",
                average_price="37.00",
                event_time=T0,
            ),
        ]
    body: list[Message] = []
    for n in range(orders):
        body.append(
            RequestOrder(
                request_id=f"o-{n}",
                account_id=rng.choice(names),
                order_id=f"o-{n}",
                symbol="PETR4",
                side=Side.BUY if n % 2 else Side.SELL,
                order_type=OrderType.LIMIT,
                quantity=str(rng.choice([100, 200, 500])),
                price=f"{Decimal('38.50') + Decimal(rng.randint(-5, 5)) / 100:.2f}",
                event_time=T0 + timedelta(milliseconds=n),
            )
        )
    return setup + body, len(setup)


async def publish_requests(settings: Settings, messages: list[Message]) -> None:
    topic = catalog(settings).account_commands.name
    async with producer(settings, enable_idempotence=True, acks="all") as client:
        for start in range(0, len(messages), 5000):
            chunk = messages[start : start + 5000]
            await publish(client, topic, ((m.__dict__["account_id"], m) for m in chunk))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=200)
    args = parser.parse_args(argv)
    unique = uuid.uuid4().hex[:8]
    settings = Settings().model_copy(update={"topic_prefix": f"bench{unique}-"})
    workdir = Path(tempfile.mkdtemp(prefix="bench-accounts-"))
    messages, setup = requests(args.orders, args.accounts)
    asyncio.run(ensure_topics(settings))
    asyncio.run(publish_requests(settings, messages))
    env = exchange_env(settings, f"bench-accounts-{unique}", workdir)
    worker_started = time.monotonic()
    worker = start_worker(env, workdir, "worker.log")
    try:
        followed = asyncio.run(
            follow_topic(
                settings,
                catalog(settings).account_events.name,
                len(messages),
                alive=lambda: worker.poll() is None,
            )
        )
    finally:
        worker.terminate()
        worker.wait(60)
    decided = [record.json() for record in followed.records]
    refused = sum(1 for value in decided if value["type"] == "RequestRefused")
    end_to_end_s = followed.done_at - worker_started
    rate = len(messages) / end_to_end_s
    steady = len(messages) / (followed.done_at - followed.first_at)
    produce_rate, consume_rate = asyncio.run(raw_kafka(settings, len(messages), 300))
    raw_rate = 1 / (1 / produce_rate + 1 / consume_rate)
    print(
        f"requests: {setup} set-up (open, deposit, custody) + {args.orders} limit orders over "
        f"{args.accounts} accounts; {refused} refused"
    )
    print(
        f"accounts agent (with the exchange in the same worker), exactly-once, start-up "
        f"included: {rate:,.0f} requests/s ({end_to_end_s:.1f} s to the last decision)"
    )
    print(f"from the first committed decision to the last: {steady:,.0f} requests/s (steady)")
    print(
        f"raw Kafka, {len(messages)} records of 300 B: produce {produce_rate:,.0f}/s, "
        f"consume {consume_rate:,.0f}/s, produce+consume {raw_rate:,.0f}/s"
    )
    print(f"ratio agent (start-up included) / raw produce+consume: {rate / raw_rate:.3f}")
    asyncio.run(delete_topics(settings, lambda name: unique in name))
    print(machine_line())
    print(
        "command: python bench/bench_accounts_agent.py "
        f"--orders {args.orders} --accounts {args.accounts}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
