"""``brokerflow replay`` against what a real exchange worker recorded.

A generated tape goes through the real worker; then the replay, reading only the topics, finds
the run identical (whole log, and a range taken mid-stream, whose books are rebuilt from the
commands before it), and catches a changed tick size at the exact first order it affects,
computed here from the tape alone. ``replay book`` shows a book as it stood at an offset.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from brokerflow.exchange.io import commands_from_tape, publish_commands, read_topic
from brokerflow.exchange.replay_log import (
    Selection,
    replay_book,
    replay_exchange,
    replay_exchange_worker,
)
from brokerflow.settings import Settings
from brokerflow.tapes import orders as tapegen
from brokerflow.topics import catalog

from .exchange_workers import (
    IsolatedExchange,
    isolated_exchange,
    kafka_settings,
    replayed_book_by_symbol,
    replayed_by_symbol,
    stop,
)

pytestmark = pytest.mark.integration

BROKERFLOW = str(Path(sys.executable).with_name("brokerflow"))


@pytest.fixture(scope="module")
def settings() -> Settings:
    return kafka_settings()


def _positions(settings: Settings, lines: list[str]) -> list[tuple[int, int]]:
    """Where each tape command lands on order-commands-v1: (partition, offset)."""
    partitions = list(range(catalog(settings).order_commands.partitions))
    partitioner = DefaultPartitioner()
    next_offset = dict.fromkeys(partitions, 0)
    found = []
    for command in commands_from_tape(lines):
        partition = partitioner(command.__dict__["symbol"].encode(), partitions, partitions)
        found.append((partition, next_offset[partition]))
        next_offset[partition] += 1
    return found


def _recorded_run(
    settings: Settings, unique: str, tmp_path: Path, prefix: str, count: int, seed: int
) -> tuple[IsolatedExchange, list[str]]:
    """A generated tape through a real worker, to its last trade; the worker stopped after."""
    exchange = isolated_exchange(settings, unique, tmp_path, prefix)
    lines = tapegen.generate_tape(count, seed=seed)
    expected_trades, _ = replayed_by_symbol(lines, exchange.rules_path)
    trades = sum(len(v) for v in expected_trades.values())
    worker = exchange.start_worker("w1")
    try:
        asyncio.run(publish_commands(exchange.settings, lines))
        topic = catalog(exchange.settings).trade_executions.name
        asyncio.run(read_topic(exchange.settings, topic, min_count=trades))
    finally:
        stop(worker)
    return exchange, lines


def _petr4_tick_changed(rules: str, tmp_path: Path, lines: list[str]) -> tuple[str, int]:
    """A rules file with PETR4's tick at 0.05, and the index of the first tape command it
    affects: the first PETR4 command priced off that grid."""
    changed = json.loads(Path(rules).read_text())
    changed["PETR4"]["tickSize"] = "0.05"
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(changed))
    first = next(
        index
        for index, command in enumerate(commands_from_tape(lines))
        if command.__dict__["symbol"] == "PETR4"
        and command.__dict__.get("price") is not None
        and Decimal(command.__dict__["price"]) % Decimal("0.05") != 0
    )
    return str(path), first


def test_replay_finds_the_run_identical_and_a_changed_tick_size_at_its_first_order(
    settings: Settings, unique: str, tmp_path: Path
) -> None:
    exchange, lines = _recorded_run(settings, unique, tmp_path, "rp", 2000, 7)
    isolated = exchange.settings
    events = asyncio.run(read_topic(isolated, catalog(isolated).order_events.name))
    assert len(events) > 2000
    trades = len(asyncio.run(read_topic(isolated, catalog(isolated).trade_executions.name)))
    rules = str(exchange.rules_path)

    whole = asyncio.run(replay_exchange(isolated, Selection(), rules))
    assert whole.divergence is None, whole.lines()
    assert (whole.commands, whole.commands_before) == (2000, 0)
    assert whole.events == len(events) + trades

    # Mid-stream: the second half of every partition, its books rebuilt from the first.
    positions = _positions(isolated, lines)
    halves = {p: max(o for q, o in positions if q == p) // 2 for p, _ in positions}
    middle = asyncio.run(replay_exchange(isolated, Selection(from_offsets=halves), rules))
    assert middle.divergence is None, middle.lines()
    assert middle.commands_before == sum(halves.values())
    assert middle.commands == 2000 - middle.commands_before

    # Today's rules with PETR4's tick at 0.05: the first PETR4 order priced off that grid (found
    # here from the tape) is where the replay must part from the recording.
    changed_path, first = _petr4_tick_changed(rules, tmp_path, lines)
    commands = commands_from_tape(lines)
    caught = asyncio.run(replay_exchange(isolated, Selection(), changed_path))
    assert caught.divergence is not None
    assert caught.divergence.symbol == "PETR4"
    assert caught.divergence.command == positions[first]
    assert caught.divergence.replayed is not None
    assert caught.divergence.replayed["type"] == "OrderRejected"
    assert caught.divergence.replayed["reason"] == "TICK_SIZE"
    assert caught.divergence.recorded is not None
    assert caught.divergence.recorded["orderId"] == commands[first].__dict__["order_id"]

    # The command line says the same and exits 1; identical exits 0.
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": isolated.kafka_bootstrap_servers,
        "TOPIC_PREFIX": isolated.topic_prefix,
        "PATH": str(Path(sys.executable).parent),
    }
    same = subprocess.run(
        [BROKERFLOW, "replay", "exchange", "PETR4", "--rules", rules],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert same.returncode == 0, same.stdout + same.stderr
    assert "identical" in same.stdout
    differ = subprocess.run(
        [BROKERFLOW, "replay", "exchange", "--rules", changed_path],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert differ.returncode == 1, differ.stdout + differ.stderr
    partition, offset = positions[first]
    assert f"partition {partition} offset {offset}" in differ.stdout

    # The book at the offset of that command, as the pure replay of the tape leaves it.
    book = asyncio.run(replay_book(isolated, "PETR4", str(offset), rules, levels=10))
    upto = [
        line
        for line, (p, o) in zip(lines, positions, strict=True)
        if json.loads(line)["symbol"] == "PETR4" and p == partition and o <= offset
    ]
    expected = replayed_book_by_symbol(upto, exchange.rules_path, levels=10, every=1)["PETR4"]
    last = expected[-1]
    assert [[level["price"], level["quantity"]] for level in last["bids"]] == [
        row[:2] for row in book["bids"]
    ]
    assert [[level["price"], level["quantity"]] for level in last["asks"]] == [
        row[:2] for row in book["asks"]
    ]


def test_the_real_worker_in_a_throwaway_namespace_reproduces_a_mid_stream_range(
    settings: Settings, unique: str, tmp_path: Path
) -> None:
    exchange, lines = _recorded_run(settings, unique, tmp_path, "rw", 600, 3)
    isolated = exchange.settings
    rules = str(exchange.rules_path)
    positions = _positions(isolated, lines)
    thirds = {p: max(o for q, o in positions if q == p) // 3 for p, _ in positions}

    same = asyncio.run(
        replay_exchange_worker(isolated, Selection(from_offsets=thirds), rules, timeout_s=180)
    )
    assert same.divergence is None, same.lines()
    assert same.commands_before == sum(thirds.values())
    assert same.events > 0

    changed_path, first = _petr4_tick_changed(rules, tmp_path, lines)
    caught = asyncio.run(replay_exchange_worker(isolated, Selection(), changed_path, timeout_s=180))
    assert caught.divergence is not None
    assert caught.divergence.command == positions[first]
    assert caught.divergence.replayed is not None
    assert caught.divergence.replayed["reason"] == "TICK_SIZE"

    # Nothing of either namespace is left on the broker.
    async def leftovers() -> list[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=isolated.kafka_bootstrap_servers)
        await admin.start()
        try:
            return [t for t in await admin.list_topics() if t.startswith("replay-") and unique in t]
        finally:
            await admin.close()

    assert asyncio.run(leftovers()) == []
