"""Ticks per second through the stats flow (Kafka -> windows -> MongoDB/Redis/Kafka), per worker.

Publishes a synthetic tape (trades and book tickers for a few symbols, 10 ms apart in event time)
to fresh topics, then in the same run measures

1. a plain consumer: confluent-kafka (the client the flow's source wraps) reading both topics
   to their end, no decoding: the ceiling for any consumer on this machine; then the same
   consumer parsing every record into ``Trade``/``BestBidAsk`` with pydantic;
2. the stats flow, ``python -m bytewax.run brokerflow.flows.stats:flow -w N`` with recovery on,
   stopping at the end of the partitions; wall time of the whole process, start-up included;
   with ``--processes P``, P such processes (``-i``/``-a``) started together, timed until the
   last one exits (the per-worker figure divides by P x N);
3. the same flow on empty topics: its fixed start/stop cost, subtracted for the "steady" rate.

Usage::

    .venv/bin/python bench/bench_stats_flow.py [--ticks 100000] [--symbols 10] [--workers 1 2]
        [--processes 1]

Needs the local stack (``brokerflow stack up``); topics, database and keys are unique per run and
the database and keys are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bytewax.recovery import init_db_dir
from confluent_kafka import Consumer, TopicPartition

from brokerflow.flows.stats import clear_outputs
from brokerflow.kafka_io import producer
from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.settings import Settings
from brokerflow.topics import catalog, delete_topics, ensure_topics

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model

T0 = datetime(2026, 1, 2, 13, 0, tzinfo=UTC)


def tape(symbols: int, ticks: int) -> list[tuple[str, Trade | BestBidAsk]]:
    """``ticks`` records, alternating trade and book ticker per symbol, 10 ms apart."""
    names = [f"SYM{i:03d}USDT" for i in range(symbols)]
    out: list[tuple[str, Trade | BestBidAsk]] = []
    for n in range(ticks):
        symbol = names[n % symbols]
        step = n // symbols
        when = T0 + timedelta(milliseconds=10 * (step // 2))
        price = Decimal(100) + Decimal(step % 50) / 100
        if step % 2 == 0:
            tick: Trade | BestBidAsk = Trade(
                venue="BINANCE",
                symbol=symbol,
                trade_id=str(step),
                price=price,
                quantity=Decimal("0.5") + step % 3,
                aggressor_side="BUY" if step % 4 == 0 else "SELL",
                event_time=when,
                receive_time=when,
            )
        else:
            tick = BestBidAsk(
                venue="BINANCE",
                symbol=symbol,
                bid_price=price,
                bid_quantity="1",
                ask_price=price + Decimal("0.01"),
                ask_quantity="1",
                event_time=when,
                receive_time=when,
            )
        out.append((symbol, tick))
    return out


async def publish_tape(settings: Settings, records: list[tuple[str, Trade | BestBidAsk]]) -> None:
    topics = catalog(settings)
    await ensure_topics(
        settings,
        [
            topics.market_trades,
            topics.market_book_ticker,
            topics.market_bars,
            topics.market_late_ticks,
            topics.dead_letters,
        ],
    )
    async with producer(settings, linger_ms=50, max_batch_size=256 * 1024) as client:
        futures = []
        for symbol, tick in records:
            topic = (
                topics.market_trades.name
                if isinstance(tick, Trade)
                else topics.market_book_ticker.name
            )
            futures.append(await client.send(topic, tick.to_json_bytes(), key=symbol.encode()))
        await asyncio.gather(*futures)


def plain_consumer_rate(
    settings: Settings, expected: int, *, decode_ticks: bool = False
) -> tuple[int, float]:
    """Read both topics from the beginning to their end; (records, seconds).

    ``decode_ticks`` also parses every record into its schema class, as the flow's first step
    does: the rate of the cheapest consumer that looks at the payloads.
    """
    topics = catalog(settings)
    names = [topics.market_trades.name, topics.market_book_ticker.name]
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    partitions = [
        TopicPartition(name, p, 0)
        for name in names
        for p in consumer.list_topics(name).topics[name].partitions
    ]
    consumer.assign(partitions)
    started = time.perf_counter()
    count, ended = 0, 0
    while ended < len(partitions):
        for msg in consumer.consume(1000, 1.0):
            if msg.error() is None:
                count += 1
                if decode_ticks:
                    model = Trade if msg.topic() == names[0] else BestBidAsk
                    model.model_validate_json(msg.value())
            else:
                ended += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    assert count == expected, (count, expected)
    return count, elapsed


def flow_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        MONGO_URL=settings.mongo_url,
        REDIS_URL=settings.redis_url,
        TOPIC_PREFIX=settings.topic_prefix,
        MONGO_DATABASE=settings.mongo_database,
        STATS_REDIS_PREFIX=settings.stats_redis_prefix,
        STATS_STOP_AT_END="true",
    )
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_flow(
    settings: Settings,
    workers: int,
    scratch: Path,
    processes: int = 1,
    flow: str = "brokerflow.flows.stats:flow",
) -> tuple[list[str], float]:
    """Run the flow to the end of its input; (command of process 0, wall seconds of all).

    ``processes`` > 1 runs that many cooperating processes (``-i n -a host:port;...``), each
    with ``workers`` worker threads, started together; the time is until the last one exits.
    """
    recovery = scratch / f"recovery-w{workers}-{uuid.uuid4().hex[:6]}"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    command = [sys.executable, "-m", "bytewax.run", flow]
    command += ["-w", str(workers), "-r", str(recovery), "-s", "1", "-b", "0"]
    commands = [command]
    if processes > 1:
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        commands = [[*command, "-i", str(n), "-a", addresses] for n in range(processes)]
    started = time.perf_counter()
    running = [
        subprocess.Popen(
            each,
            env=flow_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for each in commands
    ]
    failures = [(p.wait(), p.stderr.read() if p.stderr else "") for p in running]
    elapsed = time.perf_counter() - started
    for code, stderr in failures:
        if code != 0:
            raise SystemExit(stderr[-3000:])
    return commands[0], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="cooperating flow processes (-i/-a), each with --workers threads",
    )
    parser.add_argument(
        "--flow",
        default="brokerflow.flows.stats:flow",
        help="the dataflow to run (import string), e.g. an older version to compare",
    )
    args = parser.parse_args()

    print(f"machine: {' '.join(platform.uname())}")
    print(f"cpu: {cpu_model()} x {os.cpu_count()}")
    print(f"python: {sys.version.split()[0]} ({platform.python_implementation()})")
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")

    base = Settings()
    with tempfile.TemporaryDirectory() as scratch:
        records = tape(args.symbols, args.ticks)
        for workers in args.workers:
            tag = uuid.uuid4().hex[:8]
            settings = base.model_copy(
                update={
                    "topic_prefix": f"bench-{tag}.",
                    "mongo_database": f"bench_{tag}",
                    "stats_redis_prefix": f"bench:{tag}:",
                }
            )
            asyncio.run(publish_tape(settings, records))
            count, plain_s = plain_consumer_rate(settings, len(records))
            plain = count / plain_s
            _, decoding_s = plain_consumer_rate(settings, len(records), decode_ticks=True)
            decoding = count / decoding_s
            command, flow_s = run_flow(settings, workers, Path(scratch), args.processes, args.flow)
            # The same flow on empty topics: start-up, partition discovery, EOF and shutdown.
            empty = settings.model_copy(update={"topic_prefix": f"bench-{tag}-empty."})
            asyncio.run(publish_tape(empty, []))
            _, fixed_s = run_flow(empty, workers, Path(scratch), args.processes, args.flow)
            rate = len(records) / flow_s
            steady = len(records) / max(flow_s - fixed_s, 1e-9)
            total_workers = workers * args.processes
            print(f"flow: {shlex.join(command[1:])}")
            print(
                f"  ticks={len(records)} symbols={args.symbols} processes={args.processes} "
                f"workers={workers}: "
                f"stats flow {rate:,.0f} ticks/s end to end "
                f"({rate / total_workers:,.0f} per worker, "
                f"{flow_s:.2f} s), {steady:,.0f} ticks/s without the {fixed_s:.2f} s fixed "
                f"start/stop cost; plain consumer {plain:,.0f} records/s ({plain_s:.2f} s); "
                f"ratio flow/plain = {rate / plain:.3f} end to end, {steady / plain:.3f} steady"
            )
            print(
                f"  consumer that also decodes each tick (pydantic): {decoding:,.0f} records/s "
                f"({decoding_s:.2f} s); ratio flow/decoding consumer = {rate / decoding:.3f} "
                f"end to end, {steady / decoding:.3f} steady"
            )
            clear_outputs(settings)
            clear_outputs(empty)
            asyncio.run(delete_topics(settings, lambda name, tag=tag: f"bench-{tag}" in name))


if __name__ == "__main__":
    main()
