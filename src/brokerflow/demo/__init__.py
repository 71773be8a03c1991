"""The main job: bring the local stack up and show, end to end, what brokerflow has so far.

1. The stack and its health, and the topic catalog.
2. A smoke pipeline: one message of every family published to its catalog topic (under
   ``demo-smoke.``, never the user's own topics) in a Kafka
   transaction, tailed back with a ``read_committed`` consumer and printed as ``kcat`` would.
3. Market data: the bundled sample tape (Binance trades and book tickers, Brapi quotes, a few
   malformed frames) through the ingest flow into Kafka and MongoDB, then the stats flow into
   1 s / 1 min bars in MongoDB, Redis and ``market-bars-v1``; prints the latest 1-minute bars from
   Redis and tails the bars topic with ``kcat``.
4. The exchange: a generated order tape matched by a real ``faust -A brokerflow.app worker``
   (exactly-once, RocksDB tables), its trades checked against ``brokerflow match``'s replay
   (:mod:`brokerflow.demo.exchange`).

The market-data part runs in its own namespace (topic prefix ``demo.``, database
``brokerflow_demo``, Redis prefix ``demo:``) that it wipes first, so every run prints the same
bars and nothing of the user's own data is touched.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

from aiokafka import TopicPartition

from brokerflow.kafka_io import consumer, producer
from brokerflow.schemas.base import Message
from brokerflow.schemas.examples import EXAMPLES
from brokerflow.settings import Settings
from brokerflow.topics import TopicCatalog, TopicSpec, catalog, ensure_topics

__all__ = ["message_key", "route", "run_demo"]

_KEY_FIELDS = {
    "symbol": "symbol",
    "accountId": "account_id",
    "userId": "user_id",
    "source": "source",
}


def route(topics: TopicCatalog, message: Message) -> TopicSpec:
    """The catalog topic that carries this message's type."""
    kind = type(message).model_fields["type"].default
    for spec in topics:
        if kind in spec.value_types:
            return spec
    raise LookupError(f"no topic in the catalog carries {kind!r}")


def message_key(spec: TopicSpec, message: Message) -> str:
    return str(getattr(message, _KEY_FIELDS[spec.key]))


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


#: The smoke pipeline's own topics: its example orders must never reach the user's exchange.
SMOKE_TOPIC_PREFIX = "demo-smoke."


async def _smoke_pipeline(base: Settings) -> int:
    settings = base.model_copy(update={"topic_prefix": SMOKE_TOPIC_PREFIX})
    await ensure_topics(settings)
    topics = catalog(settings)
    routed = [(route(topics, message), message) for message in EXAMPLES]
    specs = {spec.name: spec for spec, _ in routed}
    partitions = [
        TopicPartition(spec.name, p) for spec in specs.values() for p in range(spec.partitions)
    ]
    async with consumer(settings) as reader:
        start = await reader.end_offsets(partitions)

    async with (
        producer(settings, transactional_id="brokerflow-demo") as writer,
        writer.transaction(),
    ):
        for spec, message in routed:
            await writer.send(
                spec.name, message.to_json_bytes(), key=message_key(spec, message).encode()
            )

    received = 0
    async with consumer(settings) as reader:
        reader.assign(partitions)
        for partition in partitions:
            reader.seek(partition, start[partition])
        lines: list[tuple[str, int, int, str, str]] = []
        # Read until every message is back, not up to the end offsets read now: the commit
        # markers are written after commit_transaction returns, so a read_committed end offset
        # taken at once can still stop short of them (seen on a freshly started broker).
        deadline = time.monotonic() + 20
        while len(lines) < len(routed) and time.monotonic() < deadline:
            for tp, records in (await reader.getmany(timeout_ms=500)).items():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    lines.append(
                        (tp.topic, tp.partition, record.offset, key, record.value.decode())
                    )
        for topic, partition, offset, key, value in sorted(lines):
            print(f"{topic}[{partition}]@{offset}  {key}  {value}")
        received = len(lines)
    return received


DEMO_TOPIC_PREFIX = "demo."
DEMO_REDIS_PREFIX = "demo:"


def demo_settings(settings: Settings) -> Settings:
    """The user's settings, moved into the demo's own namespace."""
    demo_dir = settings.stack_dir / "demo"
    return settings.model_copy(
        update={
            "topic_prefix": DEMO_TOPIC_PREFIX,
            "mongo_database": f"{settings.mongo_database}_demo",
            "stats_redis_prefix": DEMO_REDIS_PREFIX,
            "stats_stop_at_end": True,
            "ingest_source": "tape",
            "tape_replay_path": "",
            "tape_replay_speed": 0.0,
            "stats_recovery_dir": str(demo_dir / "recovery-stats"),
            "ingest_recovery_dir": str(demo_dir / "recovery-ingest"),
        }
    )


async def _reset_namespace(settings: Settings) -> None:
    """Delete the demo's topics, database, Redis keys and recovery folders, then recreate topics."""
    from brokerflow.flows.stats import clear_outputs
    from brokerflow.topics import reset_topics

    await reset_topics(settings, tuple(spec.name for spec in catalog(settings)))
    await asyncio.to_thread(clear_outputs, settings)
    shutil.rmtree(settings.stack_dir / "demo", ignore_errors=True)


def _latest_bars(settings: Settings, window: str) -> list[dict[str, str]]:
    import redis

    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        keys = sorted(client.scan_iter(match=f"{DEMO_REDIS_PREFIX}bars:latest:*:{window}"))
        return [client.hgetall(key) for key in keys]
    finally:
        client.close()


def _market_data(user_settings: Settings) -> bool:
    from bytewax.run import cli_main
    from pymongo import MongoClient

    from brokerflow.flows import stats
    from brokerflow.flows.ingest import run_ingest

    settings = demo_settings(user_settings)
    asyncio.run(_reset_namespace(settings))
    print(f"  namespace reset: topics {DEMO_TOPIC_PREFIX}*, database {settings.mongo_database}")

    report = run_ingest(settings, workers=1, stop_at_end=True)
    print(f"  ingest: {report.frames} frames from the sample tape in {report.seconds:.1f} s")
    for topic, count in sorted(report.records_by_topic.items()):
        print(f"    {count:>6} records -> {topic}")
    for reason, count in sorted(report.dead_letters_by_reason.items()):
        print(f"    {count:>6} dead letters ({reason}) -> {catalog(settings).dead_letters.name}")

    started = time.monotonic()
    cli_main(stats.build_flow(settings), workers_per_process=1)
    client: MongoClient = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
    try:
        bars = client[settings.mongo_database][settings.stats_mongo_collection]
        counts = {w: bars.count_documents({"window": w}) for w in settings.stats_windows}
    finally:
        client.close()
    took = time.monotonic() - started
    print(
        f"  stats: bars in MongoDB after {took:.1f} s: "
        + ", ".join(f"{count} x {window}" for window, count in counts.items())
    )

    latest = _latest_bars(settings, "1m")
    print("  latest 1-minute bars in Redis (demo:bars:latest:<symbol>:1m):")
    print(
        f"    {'symbol':<8} {'window start':<20} {'open':>12} {'high':>12} {'low':>12} "
        f"{'close':>12} {'volume':>14} {'vwap':>14} {'trades':>6} {'spread':>10}"
    )
    for bar in latest:
        print(
            f"    {bar['symbol']:<8} {bar['windowStart'][:19]:<20} {bar['open'] or '-':>12} "
            f"{bar['high'] or '-':>12} {bar['low'] or '-':>12} {bar['close'] or '-':>12} "
            f"{bar['volume']:>14} {bar['vwap'] or '-':>14} {bar['tradeCount']:>6} "
            f"{bar.get('spreadMean') or '-':>10}"
        )

    topic = catalog(settings).market_bars.name
    kcat = shutil.which("kcat")
    line = f"kcat -b {settings.kafka_bootstrap_servers} -C -t {topic} -o -1 -e -f '%k  %s\\n'"
    print(f"  tail the bars topic: {line}")
    if kcat:
        shown = subprocess.run(
            [
                kcat,
                "-b",
                settings.kafka_bootstrap_servers,
                "-C",
                "-t",
                topic,
                "-o",
                "-1",
                "-e",
                "-q",
                "-c",
                "3",
                "-f",
                "%k  %s\n",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        for output_line in shown.stdout.splitlines():
            print(f"    {output_line[:160]}")
    return bool(latest) and all(counts.values())


def run_demo(settings: Settings, *, bring_up: bool = True) -> int:
    from brokerflow.stack import ServiceState, Stack

    stack = Stack(settings)
    if bring_up:
        _section("local stack (brokerflow stack up)")

        def show(state: ServiceState) -> None:
            print(f"  {state.name:<6} {state.state:<8} {state.endpoint}")

        stack.up(report=show)

    _section("topic catalog (brokerflow topics)")
    for spec in catalog(settings):
        print(f"  {spec.name:<24} {spec.partitions:>2} partitions, key={spec.key}")

    _section("smoke pipeline: one message per family, in a transaction, read back committed")
    received = asyncio.run(_smoke_pipeline(settings))
    print(f"  {received} of {len(EXAMPLES)} messages read back with isolation read_committed")

    _section("market data: sample tape -> ingest -> Kafka -> stats -> MongoDB, Redis, bars topic")
    market_ok = _market_data(settings)

    _section("exchange: order tape -> Faust worker (exactly-once) -> trades and order events")
    from brokerflow.demo.exchange import print_exchange_demo

    exchange_ok = print_exchange_demo(settings)

    _section("tail a topic yourself")
    print(
        f"  kcat -b {settings.kafka_bootstrap_servers} -C -t {catalog(settings).order_events.name}"
        " -o beginning -e -f '%k  %s\\n'"
    )
    return 0 if received == len(EXAMPLES) and market_ok and exchange_ok else 1
