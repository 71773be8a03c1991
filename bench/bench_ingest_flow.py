"""Benchmark of the ingest flow: the sample tape at full speed through Bytewax into Kafka.

Run ``python bench/bench_ingest_flow.py`` with the local stack up (``brokerflow stack up``).
Each run gets its own topic prefix (created, then deleted at the end). It prints:

* ticks/s through ``run_ingest`` (tape -> parse -> Kafka, acknowledged) with 1 and 2 workers,
  MongoDB history off, then 1 worker with history on;
* the rate of a plain aiokafka producer sending the same records (already encoded, same keys,
  same linger/compression/acks) in the same run, and the ratio;
* the machine and the command.

A tick is one frame of the tape (47 154 frames, 47 153 records incl. dead letters). Times
include Bytewax start-up and the final flush; interpreter start-up is not included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import uuid
from pathlib import Path

from brokerflow.connectors import read_tape, sample_tape_path
from brokerflow.flows.ingest import IngestTopics, Parsed, kafka_records, parse, run_ingest
from brokerflow.kafka_io import producer
from brokerflow.settings import Settings
from brokerflow.topics import catalog, delete_topics, ensure_topics

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model


async def _prepare(settings: Settings) -> None:
    topics = catalog(settings)
    await ensure_topics(
        settings,
        [
            topics.market_trades,
            topics.market_book_ticker,
            topics.market_quotes,
            topics.dead_letters,
        ],
    )


async def _aiokafka_rate(settings: Settings, parsed: list[Parsed]) -> tuple[int, float]:
    topics = IngestTopics.from_settings(settings)
    records = [record for item in parsed for record in kafka_records(item, topics)]
    async with producer(settings, timeout_s=60) as client:
        started = time.perf_counter()
        futures = [
            await client.send(record.topic, record.value, key=record.key) for record in records
        ]
        await asyncio.gather(*futures)
        return len(records), time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration (best)")
    args = parser.parse_args(argv)

    base = Settings(
        ingest_source="tape", tape_replay_path="", tape_replay_speed=0.0, metrics_port=0
    )
    frames = list(read_tape(sample_tape_path()))
    results: list[tuple[str, float, int]] = []
    prefixes: list[Settings] = []

    def flow_run(label: str, workers: int, history: bool) -> None:
        best = 0.0
        for _ in range(args.repeat):
            settings = base.model_copy(
                update={
                    "topic_prefix": f"bench{uuid.uuid4().hex[:8]}.",
                    "ingest_mongo_history": history,
                    "mongo_database": f"bench_{uuid.uuid4().hex[:8]}",
                }
            )
            prefixes.append(settings)
            asyncio.run(_prepare(settings))
            report = run_ingest(settings, workers=workers, validate=False)
            best = max(best, report.frames / report.seconds)
            if history:
                from pymongo import MongoClient

                client: MongoClient = MongoClient(settings.mongo_url)
                client.drop_database(settings.mongo_database)
                client.close()
        results.append((label, best, workers))
        print(f"{label:<46} {best:>10,.0f} ticks/s", flush=True)

    print(
        f"sample tape: {len(frames)} frames; Kafka {base.kafka_bootstrap_servers}, "
        f"linger.ms={base.kafka_linger_ms} compression={base.kafka_compression} "
        f"acks={base.kafka_acks}; best of {args.repeat}"
    )
    flow_run("ingest flow, 1 worker, Kafka only", 1, False)
    flow_run("ingest flow, 2 workers, Kafka only", 2, False)
    flow_run("ingest flow, 1 worker, Kafka + MongoDB history", 1, True)

    parsed = [parse(frame) for frame in frames]
    best_plain = 0.0
    for _ in range(args.repeat):
        settings = base.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}."})
        prefixes.append(settings)
        asyncio.run(_prepare(settings))
        count, seconds = asyncio.run(_aiokafka_rate(settings, parsed))
        best_plain = max(best_plain, count / seconds)
    print(f"{'plain aiokafka producer, same records':<46} {best_plain:>10,.0f} records/s")
    for label, rate, _ in results:
        print(f"ratio {label} / aiokafka: {rate / best_plain:.2f}")

    for settings in prefixes:
        asyncio.run(
            delete_topics(settings, lambda name, p=settings.topic_prefix: name.startswith(p))
        )
    uname = platform.uname()
    print(
        f"machine: {uname.system} {uname.release} {uname.machine}, CPU {cpu_model()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")


if __name__ == "__main__":
    main()
