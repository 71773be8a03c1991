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
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
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
from _common import FAUST, exchange_env, machine_line, start_worker


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


@dataclass
class AgentsRun:
    """One run of the exchange workers on a fresh copy of the tape's topics."""

    workers: int
    settings: Settings
    env: dict[str, str]
    workdir: Path
    publish_s: float
    #: From the workers' start (or, warm, the publish's) to the last order event committed.
    end_to_end_s: float
    #: From the first committed output to the last.
    steady_s: float
    identical: bool


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


def run_agents(
    args: argparse.Namespace, lines: list[str], expected: _Sink, workers: int
) -> AgentsRun:
    """Publish the tape to fresh topics, run ``workers`` exchange workers until the last order
    event is committed, compare the events with the replay's."""
    unique = uuid.uuid4().hex[:8]
    settings = Settings().model_copy(update={"topic_prefix": f"bench{unique}-"})
    workdir = Path(tempfile.mkdtemp(prefix="bench-exchange-"))
    rules_path = workdir / "rules.json"
    rules_path.write_text(json.dumps(bench_matching.rules_document()))
    expected_events = expected.lines - expected.trades
    topics = catalog(settings)
    asyncio.run(ensure_topics(settings))
    publish_s = 0.0
    if not args.warm:
        started = time.perf_counter()
        asyncio.run(publish_commands(settings, lines))
        publish_s = time.perf_counter() - started
    env = exchange_env(
        settings,
        f"bench-exchange-{unique}",
        workdir,
        EXCHANGE_RULES_PATH=str(rules_path),
        BROKER_EXECUTION_REPORTS="true" if args.execution_reports else "false",
    )
    worker_started = time.monotonic()
    profiler = (
        [] if args.profile is None else [sys.executable, "-m", "cProfile", "-o", args.profile]
    )
    processes = [
        start_worker(env, workdir, f"worker{number}.log", prefix=profiler)
        for number in range(workers)
    ]
    try:
        if args.warm:
            asyncio.run(wait_for_group(settings, env["EXCHANGE_APP_ID"], workers))
            worker_started = time.monotonic()  # the clock starts with the publish
            started = time.perf_counter()
            asyncio.run(publish_commands(settings, lines))
            publish_s = time.perf_counter() - started
        followed = asyncio.run(
            follow_topic(
                settings,
                topics.order_events.name,
                expected_events,
                alive=lambda: all(process.poll() is None for process in processes),
            )
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
    by_symbol: dict[str, list[bytes]] = {}
    for record in followed.records:  # (partition, offset) order: each symbol's own order
        by_symbol.setdefault((record.key or b"").decode(), []).append(record.value)
    return AgentsRun(
        workers,
        settings,
        env,
        workdir,
        publish_s,
        followed.done_at - worker_started,
        followed.done_at - followed.first_at,
        by_symbol == expected.events_by_symbol,
    )


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
        default="1",
        help="exchange workers started together (one consumer group: partitions split); "
        "several counts, comma-separated (1,2), run one after the other on fresh topics and "
        "print each rate's ratio to the first",
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
    counts = [int(count) for count in args.workers.split(",")]
    lines = bench_matching.generate_tape(args.commands, hot_share=args.hot_share)
    sink = _Sink()
    with tempfile.TemporaryDirectory() as scratch:
        rules_path = Path(scratch) / "rules.json"
        rules_path.write_text(json.dumps(bench_matching.rules_document()))
        with open(os.devnull, "w") as devnull:
            replay(lines, sink, devnull, load_rules(str(rules_path)))  # type: ignore[arg-type]
    expected_events = sink.lines - sink.trades
    runs = [run_agents(args, lines, sink, count) for count in counts]
    first = runs[0]
    null_rate, null_s = faust_null_agent(
        first.env, first.workdir, catalog(first.settings).order_commands.name, args.commands
    )
    produce_rate, consume_rate = asyncio.run(raw_kafka(first.settings, args.commands, 200))
    raw_rate = 1 / (1 / produce_rate + 1 / consume_rate)
    hot = "" if args.hot_share is None else f", {args.hot_share:.0%} of them on one symbol"
    print(
        f"tape: {args.commands} commands{hot}, {sink.trades} trades, {expected_events} order events"
    )
    for run in runs:
        rate = args.commands / run.end_to_end_s
        steady = args.commands / run.steady_s
        print(
            f"{run.workers} worker(s): order events equal to the replay's, symbol by symbol, "
            f"record for record: {run.identical}"
        )
        print(
            f"{run.workers} worker(s): publish of the tape (aiokafka, idempotent, acks=all): "
            f"{args.commands / run.publish_s:,.0f} commands/s"
        )
        print(
            f"exchange agents, exactly-once, {run.workers} worker(s), execution reports "
            f"{'on' if args.execution_reports else 'off'}, "
            f"{'from the publish (workers warm)' if args.warm else 'start-up included'}: "
            f"{rate:,.0f} commands/s ({run.end_to_end_s:.1f} s until the last order event was "
            f"committed)"
        )
        print(
            f"exchange agents, {run.workers} worker(s), from the first committed output to the "
            f"last: {steady:,.0f} commands/s (steady state, an upper bound)"
        )
        if run is not first:
            print(
                f"{run.workers} workers / {first.workers}: "
                f"{first.end_to_end_s / run.end_to_end_s:.2f}x "
                f"{'from the publish' if args.warm else 'start-up included'}, "
                f"{first.steady_s / run.steady_s:.2f}x steady"
            )
    print(
        f"raw Kafka, {args.commands} records of 200 B: produce {produce_rate:,.0f}/s, "
        f"consume {consume_rate:,.0f}/s, produce+consume {raw_rate:,.0f}/s"
    )
    print(
        f"a do-nothing Faust agent on the same {args.commands} commands, same settings: "
        f"{args.commands / null_s:,.0f} records/s start-up included, {null_rate:,.0f} from its "
        f"first batch (Faust's own ceiling: {args.commands / null_s / raw_rate:.3f} of raw)"
    )
    agent_rate = args.commands / first.end_to_end_s
    print(
        f"ratio agents ({first.workers} worker(s), start-up included) / raw produce+consume: "
        f"{agent_rate / raw_rate:.3f}"
    )
    print(
        f"ratio agents ({first.workers} worker(s), steady) / do-nothing agent (steady): "
        f"{args.commands / first.steady_s / null_rate:.3f}"
    )
    for run in runs:  # the workers' topics too
        unique = run.settings.topic_prefix.removeprefix("bench").rstrip("-")
        asyncio.run(delete_topics(run.settings, lambda name, u=unique: u in name))
    print(machine_line())
    flag = " --execution-reports" if args.execution_reports else ""
    flag += f" --workers {args.workers}" if args.workers != "1" else ""
    flag += f" --hot-share {args.hot_share}" if args.hot_share is not None else ""
    flag += " --warm" if args.warm else ""
    print(f"command: python bench/bench_exchange_agents.py --commands {args.commands}{flag}")
    return 0 if all(run.identical for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
