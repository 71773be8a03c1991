"""Benchmark of the exchange's Faust agents end to end, against raw Kafka on the same broker.

Run ``python bench/bench_exchange_agents.py`` (``--commands N``; the local stack must be up).
It generates the seeded tape of ``bench/bench_matching.py`` (several symbols, about half the
commands trade), publishes it all to fresh topics (unique prefix), then starts one worker
(``faust -A brokerflow.app worker``, exactly-once) and measures from the worker's start until
the last order event is committed (read with ``read_committed``), start-up included, and also from
the first committed output (steady state). Then a do-nothing Faust agent
(``bench/faust_null_agent.py``) reads the same commands with the same settings: Faust's own
ceiling. In the same run it measures raw Kafka with aiokafka:
produce the same number of records of the same size to a fresh 6-partition topic (acks=all,
idempotent), then consume them all (``read_committed``). Prints both rates, their ratio, the
machine and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from brokerflow.exchange.io import follow_topic, publish_commands
from brokerflow.kafka_io import consumer, producer
from brokerflow.matching.replay import load_rules, replay
from brokerflow.settings import Settings
from brokerflow.topics import TopicSpec, catalog, delete_topics, ensure_topics

sys.path.insert(0, str(Path(__file__).parent))
import bench_matching

FAUST = str(Path(sys.executable).with_name("faust"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    """The line every benchmark prints about the machine it ran on."""
    return (
        f"machine: {platform.uname().system} {platform.uname().release} {platform.machine()}, "
        f"{cpu_model()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    )


async def raw_kafka(settings: Settings, count: int, size: int) -> tuple[float, float]:
    """(produce rate, consume rate) in records/s for ``count`` records of ``size`` bytes."""
    name = settings.topic("bench-raw-v1")
    spec = TopicSpec(
        logical="bench_raw",
        name=name,
        partitions=6,
        key="symbol",
        value_types=(),
        retention_ms=3600_000,
    )
    await ensure_topics(settings, [spec])
    value = b"x" * size
    keys = [f"SYM{i % 8}".encode() for i in range(8)]
    async with producer(settings, enable_idempotence=True, acks="all") as client:
        started = time.perf_counter()
        futures = [await client.send(name, value, key=keys[i % 8]) for i in range(count)]
        await asyncio.gather(*futures)
        produce_s = time.perf_counter() - started
    async with consumer(settings) as client:
        assignment = [TopicPartition(name, p) for p in range(6)]
        client.assign(assignment)
        await client.seek_to_beginning(*assignment)
        started = time.perf_counter()
        seen = 0
        while seen < count:
            batch = await client.getmany(*assignment, timeout_ms=1000, max_records=10_000)
            seen += sum(len(messages) for messages in batch.values())
        consume_s = time.perf_counter() - started
    return count / produce_s, count / consume_s


async def wait_for_group(settings: Settings, group: str, members: int) -> None:
    """Until the consumer group is stable with ``members`` members, and 3 s more (the
    workers restore their empty tables after the assignment)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            (response,) = await admin.describe_consumer_groups([group])
            described = response.to_object()["groups"][0]
            if described["state"] == "Stable" and len(described["members"]) == members:
                await asyncio.sleep(3)
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"group {group} not stable with {members} members in 180 s")
    finally:
        await admin.close()


def faust_null_agent(
    env: dict[str, str], workdir: Path, topic: str, records: int
) -> tuple[float, float]:
    """(rate from its first batch, seconds from process start to the last record) of
    ``bench/faust_null_agent.py`` reading ``topic``: what Faust alone costs per record."""
    null_env = {
        **env,
        "NULL_APP_ID": f"{env['EXCHANGE_APP_ID']}-null",
        "NULL_TOPIC": topic,
        "NULL_RECORDS": str(records),
        "PYTHONPATH": str(Path(__file__).parent),
    }
    started = time.monotonic()
    done = subprocess.run(
        [FAUST, "-A", "faust_null_agent", "worker", "-l", "warn"],
        env=null_env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    found = re.search(r"null agent: \d+ records, (\d+)/s", done.stdout + done.stderr)
    if found:
        return float(found.group(1)), elapsed
    raise RuntimeError(f"the do-nothing agent did not finish: {done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="run the worker under cProfile and write its stats to FILE (slows it down)",
    )
    parser.add_argument(
        "--execution-reports",
        action="store_true",
        help="the exchange also sends each event of an order with an account to "
        "execution-reports-v1 for the broker's accounts agent (in the same worker), as "
        "`brokerflow run` does; off by default: the exchange alone",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="exchange workers started together (one consumer group: partitions split)",
    )
    parser.add_argument(
        "--hot-share",
        type=float,
        metavar="F",
        help="send this fraction of the commands to one symbol (e.g. 0.8)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="start the workers on empty topics, wait until their group is stable, then publish "
        "the tape; the rate runs from the start of the publish to the last order event (no "
        "start-up, no rebalance: what --workers is compared by)",
    )
    args = parser.parse_args(argv)
    base = Settings()
    unique = uuid.uuid4().hex[:8]
    settings = base.model_copy(update={"topic_prefix": f"bench{unique}-"})
    workdir = Path(tempfile.mkdtemp(prefix="bench-exchange-"))
    rules_path = workdir / "rules.json"
    rules_path.write_text(json.dumps(bench_matching.rules_document()))
    lines = bench_matching.generate_tape(args.commands, hot_share=args.hot_share)

    class _Sink:
        """The replay's output: counts, and each symbol's order events in order."""

        def __init__(self) -> None:
            self.lines = 0
            self.trades = 0
            self.events_by_symbol: dict[str, list[bytes]] = {}

        def write(self, text: str) -> None:
            for line in text.splitlines():
                self.lines += 1
                if '"type":"TradeExecuted"' in line:
                    self.trades += 1
                    continue
                symbol = json.loads(line)["symbol"]
                self.events_by_symbol.setdefault(symbol, []).append(line.encode())

        def flush(self) -> None:
            pass

    sink = _Sink()
    with open(os.devnull, "w") as devnull:
        replay(lines, sink, devnull, load_rules(str(rules_path)))  # type: ignore[arg-type]
    expected_events = sink.lines - sink.trades
    topics = catalog(settings)
    asyncio.run(ensure_topics(settings))
    publish_s = 0.0
    if not args.warm:
        started = time.perf_counter()
        asyncio.run(publish_commands(settings, lines))
        publish_s = time.perf_counter() - started
    env = {
        **os.environ,
        "TOPIC_PREFIX": settings.topic_prefix,
        "EXCHANGE_APP_ID": f"bench-exchange-{unique}",
        "EXCHANGE_DATA_DIR": str(workdir / "data"),
        "EXCHANGE_RULES_PATH": str(rules_path),
        "EXCHANGE_SESSION_SYMBOLS": "",
        "EXCHANGE_WEB_PORT_BASE": "26166",
        "BROKER_EXECUTION_REPORTS": "true" if args.execution_reports else "false",
    }
    worker_started = time.monotonic()
    profiler = (
        [] if args.profile is None else [sys.executable, "-m", "cProfile", "-o", args.profile]
    )
    workers = [
        subprocess.Popen(
            [*profiler, FAUST, "-A", "brokerflow.app", "worker", "-l", "warn"],
            env=env,
            cwd=workdir,
            stdout=open(workdir / f"worker{number}.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        for number in range(args.workers)
    ]
    try:
        if args.warm:
            asyncio.run(wait_for_group(settings, env["EXCHANGE_APP_ID"], args.workers))
            worker_started = time.monotonic()  # the clock starts with the publish
            started = time.perf_counter()
            asyncio.run(publish_commands(settings, lines))
            publish_s = time.perf_counter() - started
        followed = asyncio.run(
            follow_topic(
                settings,
                topics.order_events.name,
                expected_events,
                alive=lambda: all(worker.poll() is None for worker in workers),
            )
        )
        first_at, done_at = followed.first_at, followed.done_at
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)
    by_symbol: dict[str, list[bytes]] = {}
    for record in followed.records:  # (partition, offset) order: each symbol's own order
        by_symbol.setdefault((record.key or b"").decode(), []).append(record.value)
    identical = by_symbol == sink.events_by_symbol
    end_to_end_s = done_at - worker_started
    agent_rate = args.commands / end_to_end_s
    steady_rate = args.commands / (done_at - first_at)
    null_rate, null_s = faust_null_agent(env, workdir, topics.order_commands.name, args.commands)
    produce_rate, consume_rate = asyncio.run(raw_kafka(settings, args.commands, 200))
    raw_rate = 1 / (1 / produce_rate + 1 / consume_rate)
    hot = "" if args.hot_share is None else f", {args.hot_share:.0%} of them on one symbol"
    print(
        f"tape: {args.commands} commands{hot}, {sink.trades} trades, {expected_events} order events"
    )
    print(f"order events equal to the replay's, symbol by symbol, record for record: {identical}")
    print(
        "publish of the tape (aiokafka, idempotent, acks=all): "
        f"{args.commands / publish_s:,.0f} commands/s"
    )
    print(
        f"exchange agents, exactly-once, {args.workers} worker(s), execution reports "
        f"{'on' if args.execution_reports else 'off'}, "
        f"{'from the publish (workers warm)' if args.warm else 'start-up included'}: "
        f"{agent_rate:,.0f} commands/s "
        f"({end_to_end_s:.1f} s until the last order event was committed)"
    )
    print(
        f"raw Kafka, {args.commands} records of 200 B: produce {produce_rate:,.0f}/s, "
        f"consume {consume_rate:,.0f}/s, produce+consume {raw_rate:,.0f}/s"
    )
    print(
        f"exchange agents, from the first committed output to the last: {steady_rate:,.0f} "
        "commands/s (steady state, an upper bound)"
    )
    print(
        f"a do-nothing Faust agent on the same {args.commands} commands, same settings: "
        f"{args.commands / null_s:,.0f} records/s start-up included, {null_rate:,.0f} from its "
        f"first batch (Faust's own ceiling: {args.commands / null_s / raw_rate:.3f} of raw)"
    )
    print(f"ratio agents (start-up included) / raw produce+consume: {agent_rate / raw_rate:.3f}")
    print(f"ratio agents (steady) / do-nothing agent (steady): {steady_rate / null_rate:.3f}")
    asyncio.run(delete_topics(settings, lambda name: unique in name))  # the worker's too
    print(machine_line())
    flag = " --execution-reports" if args.execution_reports else ""
    flag += f" --workers {args.workers}" if args.workers != 1 else ""
    flag += f" --hot-share {args.hot_share}" if args.hot_share is not None else ""
    flag += " --warm" if args.warm else ""
    print(f"command: python bench/bench_exchange_agents.py --commands {args.commands}{flag}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
