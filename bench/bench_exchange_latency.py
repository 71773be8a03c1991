"""The exchange's latency: a command published to its trade visible to a ``read_committed`` reader.

Run ``python bench/bench_exchange_latency.py`` (``--rate 1000 --seconds 10 --intervals
0.5,0.1,0.02``; the local stack must be up). For each ``EXCHANGE_COMMIT_INTERVAL_S`` it starts a
fresh worker (``faust -A brokerflow.app worker``, exactly-once) on topics of its own, waits until
it answers a first command, then publishes the seeded tape of ``bench/bench_matching.py`` open
loop at ``--rate`` commands/s (each at its due instant, whatever happened before: no coordinated
omission) while a ``read_committed`` consumer follows ``trade-executions-v1``. A trade's latency
runs from the instant its taker's command was sent to the instant the consumer received the
trade. Prints p50/p90/p99/max per interval, the rate achieved, the machine and the command.

What sets it: the worker commits its Kafka transaction every ``EXCHANGE_COMMIT_INTERVAL_S``, and
nothing it wrote is visible to a ``read_committed`` reader before that commit, so a trade waits
on average half an interval plus the commit itself; a shorter interval costs more commits per
second (throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import TopicPartition

sys.path.insert(0, str(Path(__file__).parent))

import bench_matching
from _common import exchange_env, machine_line, percentile, start_worker

from brokerflow.exchange.io import commands_from_tape
from brokerflow.kafka_io import consumer, producer
from brokerflow.settings import Settings
from brokerflow.topics import catalog, delete_topics, ensure_topics


async def measure(settings: Settings, lines: list[str], rate: float) -> tuple[list[float], float]:
    """(latencies in ms of every trade, the publish rate achieved)."""
    topics = catalog(settings)
    commands = commands_from_tape(lines)
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    spec = topics.trade_executions
    parts = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
    done = asyncio.Event()

    async def follow() -> None:
        async with consumer(settings) as reader:
            reader.assign(parts)
            await reader.seek_to_beginning(*parts)
            while not done.is_set():
                fetched = await reader.getmany(timeout_ms=50, max_records=5000)
                now = time.monotonic()
                for records in fetched.values():
                    for record in records:
                        taker = json.loads(record.value)["takerOrderId"]
                        if taker in sent_at:
                            latencies.append((now - sent_at[taker]) * 1000)

    follower = asyncio.create_task(follow())
    await asyncio.sleep(1)  # the consumer is assigned and positioned
    async with producer(settings, linger_ms=0, acks="all", enable_idempotence=True) as writer:
        start = time.monotonic()
        futures = []
        for n, command in enumerate(commands):
            due = start + n / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            data = command.__dict__
            futures.append(
                await writer.send(
                    topics.order_commands.name,
                    command.to_json_bytes(),
                    key=data["symbol"].encode(),
                )
            )
            sent_at[data.get("order_id", f"#{n}")] = time.monotonic()
        achieved = len(commands) / (time.monotonic() - start)
        for future in futures:
            await future
    await asyncio.sleep(3)  # the last commits
    done.set()
    await follower
    return latencies, achieved


async def warm_up(settings: Settings, worker: subprocess.Popen[bytes]) -> None:
    """Until the worker answers: a resting order and its event."""
    topics = catalog(settings)
    probe = commands_from_tape(
        [
            '{"op":"new","orderId":"warm-1","accountId":"w","symbol":"PETR4","side":"SELL",'
            '"type":"LIMIT","quantity":100,"price":"99.00"}'
        ]
    )[0]
    async with producer(settings) as writer:
        await writer.send_and_wait(topics.order_commands.name, probe.to_json_bytes(), key=b"PETR4")
    spec = topics.order_events
    parts = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
    async with consumer(settings) as reader:
        reader.assign(parts)
        await reader.seek_to_beginning(*parts)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and worker.poll() is None:
            fetched = await reader.getmany(timeout_ms=500)
            if any(b"warm-1" in r.value for records in fetched.values() for r in records):
                return
    raise RuntimeError("the worker did not answer within 120 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--intervals", default="0.5,0.1,0.02")
    args = parser.parse_args()
    lines = bench_matching.generate_tape(int(args.rate * args.seconds))
    print(f"tape: {len(lines)} commands at {args.rate:,.0f}/s for {args.seconds:g} s")
    for interval in [float(i) for i in args.intervals.split(",")]:
        unique = uuid.uuid4().hex[:8]
        settings = Settings().model_copy(update={"topic_prefix": f"benchlat{unique}-"})
        workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
        rules_path = workdir / "rules.json"
        rules_path.write_text(json.dumps(bench_matching.rules_document()))
        asyncio.run(ensure_topics(settings))
        env = exchange_env(
            settings,
            f"bench-latency-{unique}",
            workdir,
            EXCHANGE_RULES_PATH=str(rules_path),
            EXCHANGE_COMMIT_INTERVAL_S=str(interval),
            METRICS_PORT="0",
        )
        worker = start_worker(env, workdir, "worker.log")
        try:
            asyncio.run(warm_up(settings, worker))
            latencies, achieved = asyncio.run(measure(settings, lines, args.rate))
        finally:
            worker.terminate()
            worker.wait(60)
            marker = unique
            asyncio.run(delete_topics(settings, lambda name, m=marker: m in name))
        if not latencies:
            print(f"EXCHANGE_COMMIT_INTERVAL_S={interval:g}: no trade seen; see {workdir}")
            continue
        print(
            f"EXCHANGE_COMMIT_INTERVAL_S={interval:g}: {len(latencies)} trades, sent at "
            f"{achieved:,.0f} commands/s; command -> trade visible (read_committed): p50 "
            f"{statistics.median(latencies):.1f} ms, p90 {percentile(latencies, 0.9):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
        )
    print(machine_line())
    print(f"command: python bench/bench_exchange_latency.py {' '.join(sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
