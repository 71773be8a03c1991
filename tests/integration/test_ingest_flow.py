"""The ingest flow on the real stack: the sample tape into Kafka and MongoDB, partitions, crashes.

Expected counts for the bundled sample tape are written by hand (they are the tape's contents,
also pinned in tests/unit/connectors/test_sample_tape.py), never taken from the flow.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from confluent_kafka import Producer
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow import metrics
from brokerflow.connectors import parse_frame, read_tape, sample_tape_path
from brokerflow.flows.ingest import IngestTopics, producer_config, run_ingest, validate_ingest
from brokerflow.kafka_io import consumer
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

from .ingest_namespace import isolated_ingest, murmur2_partition, partitions_of, read_all

pytestmark = pytest.mark.integration

TRADES, BOOK, QUOTES, DEAD = 15_215, 31_812, 118, 8
DEAD_REASONS = {
    "NOT_JSON": 2,
    "INVALID_FIELD": 3,
    "CROSSED_QUOTE": 1,
    "UNKNOWN_EVENT": 1,
    "VENDOR_ERROR": 1,
}
SYMBOLS_BY_TOPIC = {
    "trades": {"BTCUSDT", "ETHUSDT", "SOLUSDT"},
    "book_ticker": {"BTCUSDT", "ETHUSDT", "SOLUSDT"},
    "quotes": {"PETR4", "VALE3", "ITUB4", "BBDC4"},
}


async def _prepared(settings: Settings, unique: str, mongo_db: AsyncDatabase) -> Settings:
    return await isolated_ingest(
        settings, f"ingest{unique}.", mongo_db, tape_replay_speed=0.0, ingest_source="tape"
    )


def _symbol_of(value: bytes) -> str:
    import json

    return json.loads(value)["symbol"]


async def test_the_sample_tape_lands_in_kafka_keyed_by_symbol_on_murmur2_partitions(
    settings: Settings, unique: str, mongo_db: AsyncDatabase
) -> None:
    isolated = await _prepared(settings, unique, mongo_db)
    topics = IngestTopics.from_settings(isolated)
    published_before = {
        topic: metrics.metric_value("kafka_publish_success_total", topic=topic)
        for topic in topics.all()
    }

    report = await asyncio.to_thread(run_ingest, isolated, workers=2)

    assert report.frames == 47_154
    assert report.records_by_topic == {
        topics.trades: TRADES,
        topics.book_ticker: BOOK,
        topics.quotes: QUOTES,
        topics.dead_letters: DEAD,
    }
    assert report.dead_letters_by_reason == DEAD_REASONS
    published = {
        topic: metrics.metric_value("kafka_publish_success_total", topic=topic)
        - published_before[topic]
        for topic in topics.all()
    }
    assert published == {
        topics.trades: TRADES,
        topics.book_ticker: BOOK,
        topics.quotes: QUOTES,
        topics.dead_letters: DEAD,
    }

    partitions = isolated.topic_partitions
    for name, topic, expected in (
        ("trades", topics.trades, TRADES),
        ("book_ticker", topics.book_ticker, BOOK),
        ("quotes", topics.quotes, QUOTES),
    ):
        records = await read_all(isolated, topic)
        assert len(records) == expected, name
        assert {record.key.decode() for record in records} == SYMBOLS_BY_TOPIC[name]
        for record in records:
            assert record.key.decode() == _symbol_of(record.value)
            assert record.partition == murmur2_partition(record.key, partitions), record.key

    letters = await read_all(isolated, topics.dead_letters)
    import json

    assert Counter(json.loads(letter.value)["reason"] for letter in letters) == DEAD_REASONS
    assert {letter.key.decode() for letter in letters} == {
        "binance_ws",
        "binance_ws/ethusdt@trade",
        "binance_ws/btcusdt@bookTicker",
        "binance_ws/solusdt@trade",
        "binance_ws/btcusdt@aggTrade",
        "brapi/quote",
    }
    for letter in letters:
        assert letter.key.decode() == json.loads(letter.value)["source"]


async def test_running_the_same_tape_twice_keeps_one_history_document_per_record(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, tmp_path: Path
) -> None:
    tape = tmp_path / "slice.jsonl"
    _write_slice(tape, 8_000)  # ~5 recorded minutes: Binance and a few Brapi polls
    frames = list(read_tape(tape))
    records = [record for frame in frames for record in parse_frame(*frame).records]
    isolated = (await _prepared(settings, unique, mongo_db)).model_copy(
        update={"tape_replay_path": str(tape)}
    )
    history = mongo_db[isolated.ingest_mongo_collection]

    await asyncio.to_thread(run_ingest, isolated)
    first = await history.count_documents({})
    await asyncio.to_thread(run_ingest, isolated)

    assert first == len(records)
    assert await history.count_documents({}) == len(records)
    quotes = [record for record in records if record.type == "Quote"]
    assert 0 < len(quotes) == await history.count_documents({"vendor": "brapi"})
    trade = await history.find_one({"_id": {"$regex": "^binance\\|trade\\|BTCUSDT\\|"}})
    assert trade is not None
    assert set(trade) == {
        "_id",
        "vendor",
        "stream",
        "symbol",
        "vendorId",
        "eventTime",
        "receiveTime",
        "raw",
    }
    assert trade["_id"] == f"binance|trade|BTCUSDT|{trade['vendorId']}"
    assert f'"t":{trade["vendorId"]},' in trade["raw"]
    assert trade["receiveTime"].endswith("Z")
    quote = await history.find_one({"vendor": "brapi", "symbol": "PETR4"})
    assert quote is not None
    assert quote["_id"] == f"brapi|quote|PETR4|{quote['eventTime']}"
    assert quote["vendorId"] is None


async def test_librdkafka_with_murmur2_random_places_keys_where_aiokafka_does(
    settings: Settings, unique: str
) -> None:
    spec = catalog(settings.model_copy(update={"topic_prefix": f"ingestkeys{unique}."}))
    topic = spec.market_trades
    await ensure_topics(settings, [topic])
    keys = [f"SYM{index}".encode() for index in range(60)] + [b"BTCUSDT", b"PETR4", b"VALE3"]

    def librdkafka_partitions(config: dict[str, str]) -> dict[bytes, int]:
        placed: dict[bytes, int] = {}
        producer = Producer(config)
        for key in keys:
            producer.produce(
                topic.name,
                value=b"x",
                key=key,
                on_delivery=lambda err, msg: placed.__setitem__(msg.key(), msg.partition()),
            )
        producer.flush(30)
        return placed

    ours = await asyncio.to_thread(librdkafka_partitions, producer_config(settings))
    librdkafka_default = await asyncio.to_thread(
        librdkafka_partitions, {"bootstrap.servers": settings.kafka_bootstrap_servers}
    )
    aiokafka_placed: dict[bytes, int] = {}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key in keys:
            metadata = await (await producer.send(topic.name, b"x", key=key))
            aiokafka_placed[key] = metadata.partition
    finally:
        await producer.stop()

    assert ours == aiokafka_placed
    assert ours == {key: murmur2_partition(key, topic.partitions) for key in keys}
    # The finding: librdkafka's default (consistent_random, CRC32) disagrees for many keys.
    assert sum(librdkafka_default[key] != aiokafka_placed[key] for key in keys) > len(keys) // 2


def test_validation_names_what_is_missing(settings: Settings, unique: str) -> None:
    isolated = settings.model_copy(
        update={"topic_prefix": f"ingestmissing{unique}.", "mongo_url": "mongodb://127.0.0.1:9/"}
    )

    checks = {check.name: check for check in validate_ingest(isolated, timeout_s=1.0)}

    assert checks["config"].ok
    assert not checks["kafka"].ok
    assert f"ingestmissing{unique}.market.trades.raw" in checks["kafka"].detail
    assert not checks["mongodb"].ok
    assert "mongodb://127.0.0.1:9/" in checks["mongodb"].detail


# --- crash and recovery -------------------------------------------------------------------------
def _write_slice(path: Path, lines: int) -> None:
    with gzip.open(sample_tape_path(), "rt", encoding="utf-8") as tape:
        head = [next(tape) for _ in range(lines)]
    path.write_text("".join(head), encoding="utf-8")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ingest_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "brokerflow.flows.ingest"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def _count(settings: Settings, topic: str) -> int:
    async with consumer(settings, isolation_level="read_uncommitted") as reader:
        partitions = partitions_of(settings, topic)
        ends = await reader.end_offsets(partitions)
        return sum(ends.values())


def _identities(records: Sequence[ConsumerRecord]) -> Counter[tuple[bytes, bytes]]:
    return Counter((record.key, record.value) for record in records)


@pytest.mark.slow
async def test_kill_9_mid_flow_then_restart_loses_nothing(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, tmp_path: Path
) -> None:
    """At-least-once: every record arrives, duplicates are whole copies, and the restart resumes
    from a snapshot (fewer duplicates than records written before the kill)."""
    isolated = await _prepared(settings, unique, mongo_db)
    topics = IngestTopics.from_settings(isolated)
    tape = tmp_path / "slice.jsonl"
    _write_slice(tape, 6_000)
    expected: Counter[str] = Counter()
    expected_history = 0
    for frame in read_tape(tape):
        result = parse_frame(*frame)
        expected_history += len(result.records)
        for record in result.records:
            expected[topics.for_record(record)] += 1
        expected[topics.dead_letters] += len(result.dead_letters)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": isolated.kafka_bootstrap_servers,
        "TOPIC_PREFIX": isolated.topic_prefix,
        "MONGO_URL": isolated.mongo_url,
        "MONGO_DATABASE": isolated.mongo_database,
        "INGEST_SOURCE": "tape",
        "TAPE_REPLAY_PATH": str(tape),
        "TAPE_REPLAY_SPEED": "30",  # the slice's ~230 recorded seconds in ~8 s
        "INGEST_RECOVERY_DIR": str(tmp_path / "recovery"),
        "INGEST_SNAPSHOT_INTERVAL_S": "0.2",
        "METRICS_PORT": "0",
        "VALIDATE_ON_START": "true",
    }

    metrics_port = _free_port()
    first = _ingest_process({**env, "METRICS_PORT": str(metrics_port)})
    try:
        async with asyncio.timeout(60):
            while await _count(isolated, topics.book_ticker) < expected[topics.book_ticker] * 0.4:
                assert first.poll() is None, first.stdout and first.stdout.read()
                await asyncio.sleep(0.1)
        async with httpx.AsyncClient() as http:
            exposed = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        published = f'kafka_publish_success_total{{topic="{topics.book_ticker}"}}'
        assert published in exposed  # the flow's own counters, served on METRICS_PORT
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    written_before_kill = sum([await _count(isolated, topic) for topic in topics.all()])
    assert written_before_kill < sum(expected.values())

    second = _ingest_process({**env, "TAPE_REPLAY_SPEED": "0"})
    output, _ = await asyncio.to_thread(second.communicate, None, 120)
    assert second.returncode == 0, output.decode()

    duplicates = 0
    for topic in topics.all():
        records = await read_all(isolated, topic)
        copies = _identities(records)
        assert len(copies) == expected[topic], topic  # every distinct record is there
        assert len(records) >= expected[topic]
        duplicates += len(records) - expected[topic]
    print(f"kill -9 after {written_before_kill} records; {duplicates} duplicates after restart")
    assert duplicates < written_before_kill  # resumed from a snapshot, not from line 0
    history = mongo_db[isolated.ingest_mongo_collection]
    assert await history.count_documents({}) == expected_history


async def test_bytewax_run_finds_the_module_level_flow(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, tmp_path: Path
) -> None:
    isolated = await _prepared(settings, unique, mongo_db)
    topics = IngestTopics.from_settings(isolated)
    tape = tmp_path / "slice.jsonl"
    _write_slice(tape, 500)
    expected: Counter[str] = Counter()
    for frame in read_tape(tape):
        for record in parse_frame(*frame).records:
            expected[topics.for_record(record)] += 1
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": isolated.kafka_bootstrap_servers,
        "TOPIC_PREFIX": isolated.topic_prefix,
        "TAPE_REPLAY_PATH": str(tape),
        "TAPE_REPLAY_SPEED": "0",
        "INGEST_MONGO_HISTORY": "false",
    }

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bytewax.run", "brokerflow.flows.ingest:flow", "-w", "2"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr.decode()
    for topic in (topics.trades, topics.book_ticker):
        assert len(await read_all(isolated, topic)) == expected[topic] > 0


async def test_the_kafka_sink_counts_acks_and_the_latency_of_live_records(
    settings: Settings, unique: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from brokerflow.flows._ingest_sinks import KafkaRecord, KafkaRecordSink

    isolated = settings.model_copy(update={"topic_prefix": f"ingestsink{unique}."})
    topic = catalog(isolated).market_trades
    await ensure_topics(isolated, [topic])
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    before = {
        "acked": metrics.metric_value("kafka_publish_success_total", topic=topic.name),
        "count": metrics.metric_value("vendor_to_kafka_latency_seconds_count", vendor="binance"),
        "sum": metrics.metric_value("vendor_to_kafka_latency_seconds_sum", vendor="binance"),
    }
    records = [
        KafkaRecord(topic.name, b"BTCUSDT", b"{}", "binance", an_hour_ago),
        KafkaRecord(topic.name, b"ETHUSDT", b"{}", "binance", an_hour_ago),
    ]

    def write() -> None:
        partition = KafkaRecordSink(isolated, observe_latency=True).build("kafka_out", 0, 1)
        partition.write_batch(records)
        partition.close()

    await asyncio.to_thread(write)

    acked = metrics.metric_value("kafka_publish_success_total", topic=topic.name)
    assert acked - before["acked"] == 2
    observed = metrics.metric_value("vendor_to_kafka_latency_seconds_count", vendor="binance")
    assert observed - before["count"] == 2
    total = metrics.metric_value("vendor_to_kafka_latency_seconds_sum", vendor="binance")
    assert total - before["sum"] >= 2 * 3600  # each record's event time was an hour ago
