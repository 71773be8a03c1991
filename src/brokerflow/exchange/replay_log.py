"""``brokerflow replay``: reproduce the exchange's recorded outputs from its command log.

``brokerflow replay exchange`` selects a range of ``order-commands-v1`` (``--from``/``--to`` as
times, ``--from-offset``/``--to-offset`` as ``PARTITION:OFFSET`` lists, ``--symbol`` for one
key), rebuilds every book's state from the log before the range, runs the range through today's
matching code with today's rules (``--rules``, default ``EXCHANGE_RULES_PATH`` or the instrument
catalog, as the worker), and compares the events with the recorded ones on ``order-events-v1``
and ``trade-executions-v1``, record for record per symbol (:mod:`.replaycheck`). Identical:
exit 0. Different: the first divergent record, the command that caused it and both versions,
exit 1.

With ``--worker`` the range runs through the real exchange worker instead (``faust -A
brokerflow.app worker``), in a throwaway namespace of its own (prefixed topics, Faust app id
and consumer group, data folder, web port): the commands before and in the range are copied
there, each to its original partition with its key, bytes and timestamp, the worker matches
them all, and its outputs for the range are compared the same way. The namespace is deleted
after, unless ``--keep``. The pure run still tags each event with its command, which names the
input of a divergence.

``brokerflow replay book SYMBOL --at OFFSET|TIME`` prints the symbol's book as it stood after
the command at that offset of its partition (or the last command at or before that time),
rebuilt from the log.

Without ``--worker`` everything is read ``read_committed`` and computed in this process:
nothing is written.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from brokerflow.errors import ConfigError, SchemaError
from brokerflow.exchange.replaycheck import (
    CommandRecord,
    Divergence,
    ReplayResult,
    book_at,
    first_divergence,
    replay_range,
)
from brokerflow.exchange.rules import exchange_rules
from brokerflow.kafka_io import consumer
from brokerflow.schemas import decode
from brokerflow.settings import Settings
from brokerflow.topics import catalog

__all__ = [
    "ReplayReport",
    "Selection",
    "parse_offsets",
    "parse_time",
    "replay_book",
    "replay_exchange",
]


@dataclass(frozen=True, slots=True)
class _Raw:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Selection:
    """Which commands to replay: all bounds optional and combined (all must hold)."""

    from_offsets: dict[int, int] | None = None
    to_offsets: dict[int, int] | None = None  # inclusive
    from_time: datetime | None = None
    to_time: datetime | None = None  # inclusive
    symbol: str | None = None

    def contains(self, record: _Raw) -> bool:
        if self.from_offsets is not None and record.offset < self.from_offsets.get(
            record.partition, 0
        ):
            return False
        if self.to_offsets is not None and record.offset > self.to_offsets.get(
            record.partition, -1
        ):
            return False
        ms = record.timestamp_ms
        if self.from_time is not None and ms < int(self.from_time.timestamp() * 1000):
            return False
        return not (self.to_time is not None and ms > int(self.to_time.timestamp() * 1000))

    def before(self, record: _Raw) -> bool:
        """The record precedes the range: its state is the range's starting state."""
        if self.from_offsets is not None:
            return record.offset < self.from_offsets.get(record.partition, 0)
        if self.from_time is not None:
            return record.timestamp_ms < int(self.from_time.timestamp() * 1000)
        return False


def parse_offsets(text: str) -> dict[int, int]:
    """``"0:120,3:7"`` -> ``{0: 120, 3: 7}``."""
    found: dict[int, int] = {}
    for part in text.split(","):
        partition, sep, offset = part.strip().partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ConfigError(
                f"{text!r}: give PARTITION:OFFSET pairs separated by commas, e.g. 0:120,3:7"
            )
        found[int(partition)] = int(offset)
    return found


def parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{text!r} is not an ISO 8601 time (2026-06-25T10:30:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def _read(settings: Settings, topic: str, partitions: Sequence[int]) -> list[_Raw]:
    """Every committed record of these partitions, in offset order per partition."""
    parts = [TopicPartition(topic, p) for p in partitions]
    found: list[_Raw] = []
    async with consumer(settings) as reader:
        reader.assign(parts)
        await reader.seek_to_beginning(*parts)
        ends = await reader.end_offsets(parts)
        while [tp for tp in parts if await reader.position(tp) < ends[tp]]:
            fetched = await reader.getmany(*parts, timeout_ms=500, max_records=10_000)
            for tp, records in fetched.items():
                found += [
                    _Raw(tp.partition, r.offset, r.timestamp, r.key, r.value) for r in records
                ]
    found.sort(key=lambda r: (r.partition, r.offset))
    return found


def _command(raw: _Raw) -> CommandRecord:
    try:
        message = decode(raw.value)
    except SchemaError:
        message = None  # the worker dead-letters it and goes on
    return CommandRecord(raw.partition, raw.offset, message)


def _partitions(settings: Settings, symbol: str | None) -> list[int]:
    count = catalog(settings).order_commands.partitions
    every = list(range(count))
    if symbol is None:
        return every
    return [DefaultPartitioner()(symbol.encode(), every, every)]


@dataclass
class ReplayReport:
    commands_before: int
    commands: int
    skipped: int
    events: int
    symbols: list[str]
    divergence: Divergence | None
    seconds: float
    #: With --worker --keep: where the copy and the worker's outputs stay.
    namespace: str | None = None

    def lines(self) -> list[str]:
        head = (
            f"replayed {self.commands} commands ({self.skipped} undecodable, skipped as the worker "
            f"does) after rebuilding the books from the {self.commands_before} before them; "
            f"{self.events} events on {len(self.symbols)} symbols in {self.seconds:.2f} s "
            f"({self.commands / self.seconds if self.seconds else 0:,.0f} commands/s)"
        )
        kept = [f"kept: {self.namespace}"] if self.namespace else []
        if self.divergence is None:
            return [head, "identical: every event equals the recorded one", *kept]
        return [head, "DIFFERENT: first divergent record:", self.divergence.describe(), *kept]


@dataclass
class _Range:
    """The commands of a selection: the ones before it (its starting state) and its own."""

    symbol: str | None
    partitions: list[int]
    before: list[_Raw]
    chosen: list[_Raw]


async def _select(settings: Settings, selection: Selection) -> _Range:
    symbol = selection.symbol.upper() if selection.symbol else None
    partitions = _partitions(settings, symbol)
    log = await _read(settings, catalog(settings).order_commands.name, partitions)
    if symbol is not None:
        log = [r for r in log if r.key == symbol.encode()]
    before = [r for r in log if selection.before(r)]
    chosen = [r for r in log if not selection.before(r) and selection.contains(r)]
    if not chosen:
        raise ConfigError("the selection holds no command; check the offsets, times or symbol")
    return _Range(symbol, partitions, before, chosen)


async def _events(
    settings: Settings, partitions: list[int], symbol: str | None
) -> dict[str, list[dict[str, Any]]]:
    """The order events and trades of these partitions, per symbol (one sequence each)."""
    topics = catalog(settings)
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for topic in (topics.order_events.name, topics.trade_executions.name):
        for raw in await _read(settings, topic, partitions):
            event = json.loads(raw.value)
            if symbol is None or event.get("symbol") == symbol:
                found[str(event.get("symbol"))].append(event)
    return found


def _report(
    picked: _Range, result: ReplayResult, recorded: dict[str, list[dict[str, Any]]], started: float
) -> ReplayReport:
    if picked.symbol is not None:
        result.start_sequence = {
            s: v for s, v in result.start_sequence.items() if s == picked.symbol
        }
    return ReplayReport(
        commands_before=len(picked.before),
        commands=result.commands,
        skipped=result.skipped,
        events=sum(len(v) for v in result.events.values()),
        symbols=sorted(result.events),
        divergence=first_divergence(recorded, result),
        seconds=time.perf_counter() - started,
    )


async def replay_exchange(
    settings: Settings, selection: Selection, rules_path: str | None = None
) -> ReplayReport:
    started = time.perf_counter()
    picked = await _select(settings, selection)
    rules = exchange_rules(settings, rules_path)
    result = replay_range(
        [_command(r) for r in picked.before], [_command(r) for r in picked.chosen], rules
    )
    recorded = await _events(settings, picked.partitions, picked.symbol)
    return _report(picked, result, recorded, started)


async def _copy(settings: Settings, target: Settings, records: list[_Raw]) -> None:
    """The records into ``target``'s command topic, each to its own partition, as they were."""
    from brokerflow.kafka_io import producer
    from brokerflow.topics import ensure_topics

    await ensure_topics(target)
    topic = catalog(target).order_commands.name
    async with producer(target, enable_idempotence=True, acks="all", linger_ms=5) as writer:
        futures = [
            await writer.send(
                topic, r.value, key=r.key, partition=r.partition, timestamp_ms=r.timestamp_ms
            )
            for r in records
        ]
        for future in futures:
            await future


async def _worker_done(
    target: Settings, app_id: str, expected: dict[int, int], timeout_s: float
) -> None:
    """Until the worker's committed state says every copied command was processed.

    The group's committed offsets are no signal (the worker may leave its last record to be
    re-read and skipped as a duplicate); the next offset it stores per partition, in the same
    transaction as the command's outputs, is.
    """
    from brokerflow.exchange.state import next_offset

    changelog = f"{app_id}-engine_state_by_symbol-changelog"
    deadline = time.monotonic() + timeout_s
    while True:
        done: dict[int, int] = {}
        try:
            latest: dict[int, dict[bytes, bytes]] = defaultdict(dict)
            for raw in await _read(target, changelog, sorted(expected)):
                if raw.key is not None and raw.value is not None:
                    latest[raw.partition][raw.key] = raw.value
            for partition, items in latest.items():
                done[partition] = next_offset(items.items()) or 0
        except KafkaError:
            pass  # the changelog topic is created by the worker as it starts
        left = sum(max(0, end - done.get(p, 0)) for p, end in expected.items())
        if left == 0:
            return
        if time.monotonic() > deadline:
            raise ConfigError(
                f"the replay worker did not finish within {timeout_s:.0f} s ({left} commands "
                "left); see its log (--keep keeps it)"
            )
        await asyncio.sleep(1.0)


async def replay_exchange_worker(
    settings: Settings,
    selection: Selection,
    rules_path: str | None = None,
    *,
    keep: bool = False,
    timeout_s: float = 600.0,
) -> ReplayReport:
    """:func:`replay_exchange`, the range run by a real worker in a namespace of its own."""
    import os
    import shutil
    import signal
    import socket
    import sys
    import tempfile
    import uuid
    from pathlib import Path

    from brokerflow.topics import delete_topics

    started = time.perf_counter()
    picked = await _select(settings, selection)
    before_raw, chosen_raw = picked.before, picked.chosen
    unique = uuid.uuid4().hex[:8]
    app_id = f"replay-{unique}"
    workdir = Path(tempfile.mkdtemp(prefix=f"brokerflow-{app_id}-"))
    target = settings.model_copy(update={"topic_prefix": f"{app_id}-{settings.topic_prefix}"})
    # Only what the range needs: its commands and the ones before them, nothing after.
    await _copy(settings, target, before_raw + chosen_raw)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rules = exchange_rules(settings, rules_path)
    rules_file = workdir / "rules.json"
    rules_file.write_text(
        json.dumps({name: rule.to_wire() for name, rule in rules.items()}, indent=1)
    )
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": target.topic_prefix,
        "TOPIC_PARTITIONS": str(settings.topic_partitions),
        "EXCHANGE_APP_ID": app_id,
        "EXCHANGE_DATA_DIR": str(workdir / "data"),
        "EXCHANGE_WEB_PORT_BASE": str(port),
        "EXCHANGE_RULES_PATH": str(rules_file),
        "EXCHANGE_SESSION_SYMBOLS": "",  # closes come from the copied log, not a timer
        "METRICS_PORT": "0",
    }
    faust = str(Path(sys.executable).with_name("faust"))
    log_file = (workdir / "worker.log").open("wb")
    worker = await asyncio.create_subprocess_exec(
        faust,
        "-A",
        "brokerflow.app",
        "worker",
        "-l",
        "info",
        env=env,
        cwd=workdir,
        stdout=log_file,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        copied: dict[int, int] = defaultdict(int)
        for r in before_raw + chosen_raw:
            copied[r.partition] += 1
        await _worker_done(target, app_id, dict(copied), timeout_s)
        pure = replay_range(
            [_command(r) for r in before_raw], [_command(r) for r in chosen_raw], rules
        )
        replayed = await _events(target, picked.partitions, None)
        # The worker's events of the range, tagged with the pure run's commands by sequence.
        tags = {(s, int(e["sequence"])): pos for s, evs in pure.events.items() for e, pos in evs}
        result = ReplayResult()
        result.start_sequence = dict(pure.start_sequence)
        result.last_time = dict(pure.last_time)
        result.commands, result.skipped = pure.commands, pure.skipped
        for name, events in replayed.items():
            start = pure.start_sequence.get(name)
            if start is None:
                continue
            for event in sorted(events, key=lambda e: int(e["sequence"])):
                if int(event["sequence"]) > start:
                    position = tags.get((name, int(event["sequence"])), (-1, -1))
                    result.events[name].append((event, position))
        report = _report(
            picked, result, await _events(settings, picked.partitions, picked.symbol), started
        )
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(worker.wait(), 60)
            except TimeoutError:
                worker.kill()
                await worker.wait()
        log_file.close()
        if not keep:
            await delete_topics(settings, lambda name: name.startswith(app_id))
            shutil.rmtree(workdir, ignore_errors=True)
    if keep:
        report.namespace = f"{target.topic_prefix} (worker log {workdir}/worker.log)"
    return report


async def replay_book(
    settings: Settings,
    symbol: str,
    at: str,
    rules_path: str | None = None,
    levels: int = 10,
) -> dict[str, Any]:
    """The book after the command at offset ``at`` of the symbol's partition, or the last one
    at or before the time ``at``."""
    symbol = symbol.upper()
    (partition,) = _partitions(settings, symbol)
    log = await _read(settings, catalog(settings).order_commands.name, [partition])
    if at.isdigit():
        upto = [r for r in log if r.offset <= int(at)]
        where = f"offset {at} of partition {partition}"
    else:
        limit = int(parse_time(at).timestamp() * 1000)
        upto = [r for r in log if r.timestamp_ms <= limit]
        where = f"{at}"
    mine = [_command(r) for r in upto if r.key == symbol.encode()]
    book = book_at(mine, exchange_rules(settings, rules_path), symbol, levels)
    return {**book, "at": where, "partition": partition}
