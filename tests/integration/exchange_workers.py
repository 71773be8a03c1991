"""Real exchange workers for the integration tests: each test its own topics, app and data dir.

Shared by the exchange test modules (imported relatively; pytest runs in importlib mode).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brokerflow.exchange.io import TopicRecord, commands_from_tape, read_topic
from brokerflow.exchange.state import engine_command, rebuild_engines
from brokerflow.matching import Exchange, MatchingEngine
from brokerflow.matching.marketdata import DepthFeed, book_wire
from brokerflow.matching.replay import load_rules, replay
from brokerflow.schemas.base import format_utc
from brokerflow.settings import Settings
from brokerflow.stack import Stack
from brokerflow.tapes import orders as tapegen
from brokerflow.topics import ensure_topics

FAUST = str(Path(sys.executable).with_name("faust"))


@dataclass
class IsolatedExchange:
    """One test's isolated exchange: settings, worker environment, rules file."""

    settings: Settings
    env: dict[str, str]
    workdir: Path
    rules_path: Path

    def start_worker(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [FAUST, "-A", "brokerflow.app", "worker", "-l", "info"],
            env={**self.env, **env},
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")


#: Web ports a test's workers may take: slot N serves on the base + N.
EXCHANGE_SLOTS = 4


def free_port_base(span: int) -> int:
    """A port with ``span`` free ports from it, below the kernel's ephemeral range (a port
    derived from the test's id once collided with a client connection's)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - span)
        sockets = []
        try:
            for port in range(base, base + span):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free range of ports for the exchange workers' web servers")


def kafka_settings() -> Settings:
    """Kafka only (the exchange needs nothing else): reuse a running broker, else bring the stack
    up, so a sick MongoDB wire server does not hold these tests up."""
    settings = Settings()
    stack = Stack(settings)
    kafka = next(service for service in stack.services if service.name == "kafka")
    if not kafka.answers():
        stack.up()
    return settings


def isolated_exchange(
    settings: Settings, unique: str, workdir: Path, prefix: str, **env: str
) -> IsolatedExchange:
    """Unique topics (created), app id, data dir and web port; the tape generator's rules; the
    session timer off unless ``env`` sets ``EXCHANGE_SESSION_SYMBOLS``."""
    isolated = settings.model_copy(update={"topic_prefix": f"{prefix}{unique}-"})
    rules_path = workdir / "rules.json"
    rules_path.write_text(json.dumps(tapegen.rules_document()))
    worker_env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": isolated.topic_prefix,
        "EXCHANGE_APP_ID": f"exchange-{prefix}{unique}",
        "EXCHANGE_DATA_DIR": str(workdir / "data"),
        "EXCHANGE_RULES_PATH": str(rules_path),
        "EXCHANGE_SESSION_SYMBOLS": "",
        "EXCHANGE_WEB_PORT_BASE": str(free_port_base(EXCHANGE_SLOTS)),
        "EXCHANGE_COMMIT_INTERVAL_S": "0.2",
        **env,
    }
    asyncio.run(ensure_topics(isolated))
    return IsolatedExchange(isolated, worker_env, workdir, rules_path)


def stop(process: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """SIGTERM (a clean Faust shutdown) and the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout_s)


def by_symbol(records: Sequence[TopicRecord]) -> dict[str, list[dict[str, Any]]]:
    """Records' JSON grouped by their key (the symbol), in topic order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        assert record.key is not None
        grouped[record.key.decode()].append(record.json())
    return dict(grouped)


def replayed_by_symbol(
    lines: Sequence[str | dict[str, Any]], rules_path: Path
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """(trades, other events) per symbol, as ``brokerflow match`` prints them for the tape
    (which must have no bad line)."""
    out, err = io.StringIO(), io.StringIO()
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    replay(text, out, err, load_rules(str(rules_path)))
    assert err.getvalue() == ""
    trades: dict[str, list[dict[str, Any]]] = defaultdict(list)
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in out.getvalue().splitlines():
        event = json.loads(line)
        (trades if event["type"] == "TradeExecuted" else events)[event["symbol"]].append(event)
    return dict(trades), dict(events)


def replayed_book_by_symbol(
    lines: Sequence[str | dict[str, Any]], rules_path: Path, levels: int = 10, every: int = 100
) -> dict[str, list[dict[str, Any]]]:
    """What the agent must publish on ``exchange-book-v1`` for the tape, per symbol: the same
    wire commands through the pure core and a :class:`DepthFeed` after each one."""
    exchange = Exchange(load_rules(str(rules_path)))
    feed = DepthFeed(levels, every)
    book: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for command in commands_from_tape(lines):
        symbol = command.__dict__["symbol"]
        engine = exchange.engine(symbol)
        engine.process(engine_command(command, engine.rules))
        when = format_utc(command.__dict__["event_time"])
        for message in feed.update(symbol, engine.depth(levels)):
            book[symbol].append(book_wire(message, when))
    return dict(book)


def changelog_engines(exchange: IsolatedExchange) -> dict[str, MatchingEngine]:
    """The engines a worker would rebuild from the tables' committed changelogs."""
    app_id = exchange.env["EXCHANGE_APP_ID"]

    async def latest(table: str) -> list[tuple[bytes, bytes]]:
        records = await read_topic(exchange.settings, f"{app_id}-{table}-changelog", timeout_s=10)
        values: dict[bytes, bytes | None] = {}
        for record in records:
            assert record.key is not None
            values[record.key] = record.value
        return [(key, value) for key, value in values.items() if value is not None]

    async def both() -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        return await latest("engine_state_by_symbol"), await latest("orders_by_key")

    states, orders = asyncio.run(both())
    rules = load_rules(str(exchange.rules_path))
    engines = rebuild_engines(states, orders, Exchange(rules).rules_for)
    return {symbol: engine for symbol, (engine, _) in engines.items()}
