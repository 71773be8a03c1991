"""The real `brokerflow run` on the real stack, in a namespace of its own, for 40 seconds.

The exchange worker, the ingest flow (the sample tape, looping, moved to now) and the stats flow
come up; trades reach the namespace's market.trades.raw with times of this run, and the stats
flow closes live bars; when `--for` is up everything is gone. The API and the projector are left
out (`--without api,projector`): other tests cover them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from brokerflow.flows.stats import clear_outputs
from brokerflow.kafka_io import consumer
from brokerflow.runner.status import RunRecord, read_state
from brokerflow.settings import Settings
from brokerflow.topics import catalog

BROKERFLOW = str(Path(sys.executable).with_name("brokerflow"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def namespace(settings: Settings, unique: str, tmp_path: Path) -> Iterator[tuple[Settings, dict]]:
    """Settings and a child environment of their own: topics, app id, database, Redis keys,
    stack folder (state file, logs, recovery, RocksDB); its outputs are cleared after."""
    isolated = settings.model_copy(
        update={
            "stack_dir": tmp_path / "stack",
            "topic_prefix": f"run-{unique}-",
            "exchange_app_id": f"exchange-run-{unique}",
            "mongo_database": f"test_{unique}",
            "stats_redis_prefix": f"run-{unique}:",
        }
    )
    env = {
        **os.environ,
        "STACK_DIR": str(isolated.stack_dir),
        "TOPIC_PREFIX": isolated.topic_prefix,
        "EXCHANGE_APP_ID": isolated.exchange_app_id,
        "MONGO_DATABASE": isolated.mongo_database,
        "STATS_REDIS_PREFIX": isolated.stats_redis_prefix,
        "API_REDIS_PREFIX": f"{isolated.stats_redis_prefix}api:",  # cleared with the stats keys
        "PARTICIPANTS_TAKER_ORDERS_PER_MIN": "60",
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url,
        "MONGO_URL": settings.mongo_url,
        "API_PORT": str(_free_port()),
        "DASHBOARD_PORT": str(_free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    yield isolated, env
    clear_outputs(isolated)


async def _records(settings: Settings, topic: str) -> list[dict[str, Any]]:
    spec = catalog(settings).by_name(topic)
    partitions = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
    async with consumer(settings) as reader:
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        records: list[dict[str, Any]] = []
        async with asyncio.timeout(60):
            while [tp for tp in partitions if await reader.position(tp) < ends[tp]]:
                for batch in (await reader.getmany(timeout_ms=500)).values():
                    records.extend(json.loads(record.value) for record in batch)
        return records


def _gone(pid: int) -> bool:
    for probe in (os.kill, os.killpg):
        try:
            probe(pid, 0)
            return False
        except ProcessLookupError:
            continue
    return True


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_run_brings_the_system_up_feeds_it_now_and_leaves_nothing_behind(
    namespace: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = namespace
    output = tmp_path / "run.out"
    started = datetime.now(UTC)
    with output.open("wb") as out:
        process = subprocess.Popen(
            [
                BROKERFLOW,
                "run",
                "--for",
                "40s",
                "--without",
                "api,projector,notifications,alerts,reconciler",
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        state_path = settings.stack_dir / "run" / "run.json"

        def services() -> dict[str, Any]:
            state = read_state(state_path)
            return {} if state is None else {s.name: s for s in state.services}

        # Up: each process runs and answers its health check (Faust's web port, the flows'
        # metrics endpoints), all at the same time, before --for is up.
        up: RunRecord | None = None
        while process.poll() is None and up is None:
            seen = services()
            if seen and all(s.state == "running" for s in seen.values()):
                up = read_state(state_path)
            time.sleep(0.2)
        text = output.read_text(errors="replace")
        assert up is not None, f"not every service came up; brokerflow run said:\n{text}"
        assert [s.name for s in up.services] == [
            "exchange",
            "ingest",
            "stats",
            "participants",
            "dashboard",
        ]
        pids = {s.name: s.pid for s in up.services}
        for pid in pids.values():
            assert pid is not None
            os.kill(pid, 0)
        for name in ("exchange", "ingest", "stats", "participants", "dashboard"):
            assert f"{name} is up" in text
        dashboard = f"http://127.0.0.1:{env['DASHBOARD_PORT']}"
        assert dashboard in text  # printed for the user to open
        with urllib.request.urlopen(f"{dashboard}/api/state", timeout=5) as answer:
            shown_symbols = json.loads(answer.read())["symbols"]
        assert "BTCUSDT" in shown_symbols
        assert f"-t {settings.topic_prefix}order-events-v1 -o end" in text  # the kcat line
        shown = subprocess.run(
            [BROKERFLOW, "ps"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert shown.returncode == 0, shown.stdout + shown.stderr
        rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[2:]}
        assert {name: rows[name][1:3] for name in rows} == {
            name: ["running", str(pid)] for name, pid in pids.items()
        }

        assert process.wait(120) == 0, output.read_text(errors="replace")
        stopped = datetime.now(UTC)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)

    text = output.read_text(errors="replace")
    assert "stopping (--for 40s is up): dashboard, participants, stats, ingest, exchange" in text
    assert "the stack keeps running" in text
    assert all(_gone(pid) for pid in pids.values() if pid is not None)
    assert subprocess.run([BROKERFLOW, "ps"], cwd=tmp_path, env=env, check=False).returncode == 1

    # Trades of this run, at this run's time (the tape is from April 2026, moved to now), and
    # bars the stats flow closed live from them.
    trades = asyncio.run(_records(settings, "market_trades"))
    assert trades
    slack = timedelta(seconds=5)
    times = sorted(_moment(trade["eventTime"]) for trade in trades)
    assert started - slack <= times[0] <= times[-1] <= stopped + slack
    bars = asyncio.run(_records(settings, "market_bars"))
    assert any(_moment(bar["windowStart"]) >= started - slack for bar in bars)
    assert {bar["window"] for bar in bars} >= {"1s"}

    # The simulated participants traded on the exchange: the taker's market orders met the
    # makers' quotes around the tape's prices, and those trades became BROKERFLOW bars.
    printed = asyncio.run(_records(settings, "trade_executions"))
    assert any(t["takerOrderId"].startswith("sim-tk-") for t in printed), printed[:3]
    assert any(t["makerOrderId"].startswith("sim-mm-") for t in printed)
    assert any(bar["venue"] == "BROKERFLOW" for bar in bars)
