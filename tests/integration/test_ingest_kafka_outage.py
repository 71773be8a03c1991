"""Kafka going away under a running ingest flow, on a throwaway broker of our own.

The chosen behaviour (flows/ingest.py's docstring): the flow waits for the broker and, when it
returns, every record arrives exactly once; a broker that stays away longer than
``INGEST_KAFKA_OUTAGE_TIMEOUT_S`` stops the flow with exit status 3 and an error naming the
bootstrap servers, and a restart from the recovery snapshot delivers what was missing.
Expected records come from parsing the tape slice, record by record; no timing is asserted.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.connectors import parse_frame, read_tape, sample_tape_path
from brokerflow.flows.ingest import EXIT_KAFKA_UNAVAILABLE, IngestTopics, run_ingest
from brokerflow.kafka_io import consumer
from brokerflow.settings import Settings
from brokerflow.stack.kafka import KafkaService

from ..unit.connectors.fakes import FakeBinanceServer, stream_forever
from .ingest_namespace import isolated_ingest, partitions_of, read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Tape lines replayed: about 2 recorded minutes of both vendors.
SLICE_LINES = 3_000


async def _isolated(
    settings: Settings, broker: KafkaService, unique: str, mongo_db: AsyncDatabase
) -> Settings:
    return await isolated_ingest(
        settings, f"outage{unique}.", mongo_db, kafka_bootstrap_servers=broker.bootstrap
    )


def _write_slice(path: Path) -> None:
    with gzip.open(sample_tape_path(), "rt", encoding="utf-8") as tape:
        head = [next(tape) for _ in range(SLICE_LINES)]
    path.write_text("".join(head), encoding="utf-8")


def _expected(tape: Path, topics: IngestTopics) -> tuple[Counter[str], int]:
    """Records per topic, and history documents, that one clean run of the slice gives."""
    per_topic: Counter[str] = Counter()
    history = 0
    for frame in read_tape(tape):
        result = parse_frame(*frame)
        history += len(result.records)
        for record in result.records:
            per_topic[topics.for_record(record)] += 1
        per_topic[topics.dead_letters] += len(result.dead_letters)
    return per_topic, history


def _env(isolated: Settings, tape: Path, recovery: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": isolated.kafka_bootstrap_servers,
        "TOPIC_PREFIX": isolated.topic_prefix,
        "MONGO_URL": isolated.mongo_url,
        "MONGO_DATABASE": isolated.mongo_database,
        "INGEST_SOURCE": "tape",
        "TAPE_REPLAY_PATH": str(tape),
        "INGEST_RECOVERY_DIR": str(recovery),
        "INGEST_SNAPSHOT_INTERVAL_S": "0.2",
        "INGEST_BATCH_SIZE": "50",
        "METRICS_PORT": "0",
        "VALIDATE_ON_START": "true",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "brokerflow.flows.ingest"], env=env, stdout=out, stderr=out
        )


async def _committed_count(settings: Settings, topic: str) -> int:
    async with consumer(settings) as reader:  # read_committed: the last stable offsets
        return sum((await reader.end_offsets(partitions_of(settings, topic))).values())


async def _wait_for(condition: object, what: str, within: float = 120.0) -> None:
    """Poll ``condition`` (an async or plain callable) until it is true, or fail naming it."""
    try:
        async with asyncio.timeout(within):
            while True:
                result = condition()  # type: ignore[operator]
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def _wait_for_exit(process: subprocess.Popen[bytes], within: float = 180.0) -> int:
    return await asyncio.to_thread(process.wait, within)


async def test_the_flow_waits_out_a_broker_restart_and_delivers_every_record_once(
    settings: Settings,
    throwaway_broker: KafkaService,
    unique: str,
    mongo_db: AsyncDatabase,
    tmp_path: Path,
) -> None:
    isolated = await _isolated(settings, throwaway_broker, unique, mongo_db)
    topics = IngestTopics.from_settings(isolated)
    tape = tmp_path / "slice.jsonl"
    _write_slice(tape)
    expected, expected_history = _expected(tape, topics)
    log = tmp_path / "ingest.log"
    # Paced (the slice's ~2 recorded minutes in ~20 s) so the broker stops mid-tape; a timeout
    # of 0 waits for the broker for ever.
    env = _env(
        isolated,
        tape,
        tmp_path / "recovery",
        TAPE_REPLAY_SPEED="6",
        INGEST_KAFKA_OUTAGE_TIMEOUT_S="0",
    )
    process = _start(env, log)
    try:
        await _wait_for(
            lambda: _committed_count(isolated, topics.book_ticker),
            "the first book tickers in Kafka",
        )
        assert process.poll() is None, log.read_text()

        assert throwaway_broker.stop()
        held = f"Kafka at {throwaway_broker.bootstrap} has not acknowledged"
        await _wait_for(lambda: held in log.read_text(), "the flow to say it holds records")
        assert process.poll() is None, log.read_text()  # waiting, not exiting

        throwaway_broker.start()
        await asyncio.to_thread(throwaway_broker.wait_ready, 120)
        returncode = await _wait_for_exit(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    output = log.read_text()
    assert returncode == 0, output
    assert "brokerflow stack up" in output  # the warning said what to do
    for topic in topics.all():
        records = await read_all(isolated, topic)
        copies = Counter((record.key, record.value) for record in records)
        assert len(copies) == expected[topic], topic  # nothing lost
        assert len(records) == expected[topic], topic  # nothing twice
        for record in records:
            value = json.loads(record.value)
            key = value["source"] if topic == topics.dead_letters else value["symbol"]
            assert record.key.decode() == key
    history = mongo_db[isolated.ingest_mongo_collection]
    assert await history.count_documents({}) == expected_history


async def test_a_broker_that_stays_away_stops_the_flow_and_a_restart_delivers_the_rest(
    settings: Settings,
    throwaway_broker: KafkaService,
    unique: str,
    mongo_db: AsyncDatabase,
    tmp_path: Path,
) -> None:
    isolated = await _isolated(settings, throwaway_broker, unique, mongo_db)
    topics = IngestTopics.from_settings(isolated)
    tape = tmp_path / "slice.jsonl"
    _write_slice(tape)
    expected, expected_history = _expected(tape, topics)
    recovery = tmp_path / "recovery"
    log = tmp_path / "ingest.log"
    env = _env(isolated, tape, recovery, TAPE_REPLAY_SPEED="6", INGEST_KAFKA_OUTAGE_TIMEOUT_S="3")
    process = _start(env, log)
    try:
        await _wait_for(
            lambda: _committed_count(isolated, topics.book_ticker),
            "the first book tickers in Kafka",
        )
        assert process.poll() is None, log.read_text()
        assert throwaway_broker.stop()
        returncode = await _wait_for_exit(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    output = log.read_text()
    assert returncode == EXIT_KAFKA_UNAVAILABLE, output
    stopped = [line for line in output.splitlines() if line.startswith("ingest stopped: ")]
    assert len(stopped) == 1, output
    bootstrap = re.escape(throwaway_broker.bootstrap)
    said = re.search(rf"Kafka at {bootstrap} did not acknowledge (\d+) record", stopped[0])
    assert said is not None, stopped[0]
    assert int(said.group(1)) > 0, stopped[0]
    assert "INGEST_KAFKA_OUTAGE_TIMEOUT_S=3 s" in stopped[0]
    assert "brokerflow stack up" in stopped[0]
    assert "resumes from its last snapshot" in stopped[0]

    throwaway_broker.start()
    await asyncio.to_thread(throwaway_broker.wait_ready, 120)
    restart_log = tmp_path / "restart.log"
    restarted = _start({**env, "TAPE_REPLAY_SPEED": "0"}, restart_log)
    try:
        assert await _wait_for_exit(restarted) == 0, restart_log.read_text()
    finally:
        if restarted.poll() is None:
            restarted.kill()
            restarted.wait()

    for topic in topics.all():
        records = await read_all(isolated, topic)
        copies = Counter((record.key, record.value) for record in records)
        # At least once: every distinct record is there, a duplicate is a whole copy.
        assert len(copies) == expected[topic], topic
        assert len(records) >= expected[topic], topic
    history = mongo_db[isolated.ingest_mongo_collection]
    assert await history.count_documents({}) == expected_history


async def test_a_live_feed_held_through_a_broker_restart_reaches_kafka_once_in_order(
    settings: Settings,
    throwaway_broker: KafkaService,
    unique: str,
    mongo_db: AsyncDatabase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Binance trades 1..N from a local fake: none lost, none twice, per-symbol order kept."""
    isolated = await _isolated(settings, throwaway_broker, unique, mongo_db)
    topics = IngestTopics.from_settings(isolated)
    trades = 1_500  # ~15 s at the fake's pace: the broker stops well before the end
    async with FakeBinanceServer([stream_forever(0.01)]) as server:
        live = isolated.model_copy(
            update={
                "ingest_source": "binance",
                "binance_ws_base": server.base_url,
                "binance_symbols": ["BTCUSDT"],
                "ingest_kafka_outage_timeout_s": 0.0,
                "ingest_mongo_history": False,
                "metrics_port": 0,
                # Shorter than the outage: the watchdog must not mistake a held feed for silence.
                "binance_silence_timeout_s": 2.0,
            }
        )
        run = asyncio.create_task(
            asyncio.to_thread(run_ingest, live, validate=False, live_frame_limit=trades)
        )
        try:

            async def some_trades_in_kafka() -> bool:
                return await _committed_count(isolated, topics.trades) >= 200

            await _wait_for(some_trades_in_kafka, "the first trades in Kafka")
            assert not run.done()
            await asyncio.to_thread(throwaway_broker.stop)
            gone = f"Kafka at {throwaway_broker.bootstrap} does not answer"
            await _wait_for(lambda: gone in caplog.text, "the flow to notice the broker is gone")
            await asyncio.to_thread(throwaway_broker.start)
            await asyncio.to_thread(throwaway_broker.wait_ready, 120)
            async with asyncio.timeout(240):
                report = await run
        finally:
            if not run.done():  # the flow ends with its frame limit; never leave it behind
                await asyncio.wait_for(asyncio.shield(run), 240)

    assert report.frames == trades
    assert len(server.connections) == 1  # held, not dropped: one WebSocket all along
    records = await read_all(isolated, topics.trades)
    assert [json.loads(record.value)["tradeId"] for record in records] == [
        str(trade_id) for trade_id in range(1, trades + 1)
    ]
