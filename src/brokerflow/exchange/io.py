"""Put commands on the exchange's command topic and read what it wrote, committed only.

Used by the demo, the integration tests and the benchmark::

    await publish_commands(settings, open("tape.jsonl"))      # `brokerflow match` tape lines
    records = await read_topic(settings, settings.topic("trade-executions-v1"), min_count=10)

:func:`command_from_tape_line` is the pure half: a ``brokerflow match`` tape line (``op`` new,
cancel, amend, close, reference) becomes the wire command (``PlaceOrder``...). A line without
``eventTime`` gets the replay's synthetic ``1970-01-01T00:00:00Z``, so the agents and the replay
print the same event times. A ``close`` without a symbol closes every symbol seen so far, in order
of first use, as the replay does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from brokerflow.errors import SchemaError
from brokerflow.kafka_io import consumer, producer, publish
from brokerflow.schemas import (
    AmendOrder,
    CancelOrder,
    CloseSession,
    Message,
    PlaceOrder,
    SetReferencePrice,
)
from brokerflow.settings import Settings
from brokerflow.topics import catalog

__all__ = [
    "EPOCH",
    "Followed",
    "LogReader",
    "PartitionSnapshot",
    "PartitionTail",
    "RawRecord",
    "TopicRecord",
    "command_from_tape_line",
    "commands_from_tape",
    "follow_topic",
    "publish_commands",
    "read_topic",
]

M = TypeVar("M", bound=Message)
#: The replay's event time for a line without one.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PUBLISH_CHUNK = 5_000


def _decimal(raw: Any) -> Any:
    # JSON integers and strings are exact; floats go through unchanged so the schema refuses them.
    return Decimal(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw


def _build(cls: type[M], **fields: Any) -> M:
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise SchemaError.from_validation(cls.__name__, exc) from None


def command_from_tape_line(data: dict[str, Any]) -> Message:
    """The wire command for one parsed tape line (``close`` needs a symbol here).

    Raises :class:`SchemaError` (naming the field) for what the wire schema refuses.
    """
    op = data.get("op")
    event_time = data.get("eventTime") or EPOCH
    common = {"symbol": data.get("symbol"), "event_time": event_time}
    if op == "new":
        return _build(
            PlaceOrder,
            order_id=data.get("orderId"),
            account_id=data.get("accountId"),
            side=data.get("side"),
            order_type=data.get("type") or data.get("orderType"),
            time_in_force=data.get("timeInForce") or "GTC",
            quantity=_decimal(data.get("quantity")),
            price=_decimal(data.get("price")),
            **common,
        )
    if op == "cancel":
        return _build(
            CancelOrder, order_id=data.get("orderId"), account_id=data.get("accountId"), **common
        )
    if op == "amend":
        return _build(
            AmendOrder,
            order_id=data.get("orderId"),
            account_id=data.get("accountId"),
            quantity=_decimal(data.get("quantity")),
            price=_decimal(data.get("price")),
            **common,
        )
    if op == "close":
        return _build(CloseSession, **common)
    if op == "reference":
        return _build(SetReferencePrice, price=_decimal(data.get("price")), **common)
    raise ValueError(f"op: {op!r} is not one of new, cancel, amend, close, reference")


def commands_from_tape(lines: Iterable[str | dict[str, Any] | Message]) -> list[Message]:
    """Tape lines (text or parsed) or ready messages, as wire commands; blank lines skipped."""
    commands: list[Message] = []
    symbols: dict[str, None] = {}
    for item in lines:
        if isinstance(item, Message):
            commands.append(item)
            symbols.setdefault(item.__dict__["symbol"], None)
            continue
        if isinstance(item, str):
            if not item.strip():
                continue
            item = json.loads(item)
        if item.get("op") == "close" and item.get("symbol") is None:
            commands.extend(
                command_from_tape_line({**item, "symbol": symbol}) for symbol in symbols
            )
            continue
        command = command_from_tape_line(item)
        symbols.setdefault(command.__dict__["symbol"], None)
        commands.append(command)
    return commands


async def publish_commands(
    settings: Settings,
    lines_or_commands: Iterable[str | dict[str, Any] | Message],
    *,
    timeout_s: float = 30.0,
) -> int:
    """Publish tape lines or commands to the command topic, keyed by symbol, in order.

    Idempotent producer, acks from every replica: per-symbol order is the book's order.
    """
    commands = commands_from_tape(lines_or_commands)
    topic = catalog(settings).order_commands.name
    async with producer(settings, enable_idempotence=True, acks="all") as client:
        for start in range(0, len(commands), _PUBLISH_CHUNK):
            chunk = commands[start : start + _PUBLISH_CHUNK]
            await publish(
                client,
                topic,
                ((command.__dict__["symbol"], command) for command in chunk),
                timeout_s=timeout_s,
            )
    return len(commands)


@dataclass(frozen=True, slots=True)
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.value)


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    min_count: int = 0,
    timeout_s: float = 30.0,
    settle_s: float = 0.0,
) -> list[TopicRecord]:
    """Every committed record of ``topic``, by partition then offset (read_committed).

    Reads up to the last stable offset; when ``min_count`` is given, keeps reading until that
    many records arrived (or ``timeout_s`` passes), then for ``settle_s`` more so that a surplus
    (a duplicate) would show.
    """
    records: list[TopicRecord] = []
    deadline = time.monotonic() + timeout_s
    async with consumer(settings, enable_auto_commit=False) as client:
        partitions = client.partitions_for_topic(topic)
        while partitions is None and time.monotonic() < deadline:
            await client._client.force_metadata_update()  # the topic may be new
            partitions = client.partitions_for_topic(topic)
        if partitions is None:
            raise LookupError(f"topic {topic} does not exist")
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        client.assign(assignment)
        await client.seek_to_beginning(*assignment)
        settled_at: float | None = None
        while True:
            batch = await client.getmany(*assignment, timeout_ms=200)
            for tp, messages in batch.items():
                records.extend(
                    TopicRecord(tp.partition, m.offset, m.key, m.value) for m in messages
                )
            now = time.monotonic()
            if len(records) >= min_count:
                ends = await client.end_offsets(assignment)
                positions = {tp: await client.position(tp) for tp in assignment}
                caught_up = all(positions[tp] >= ends[tp] for tp in assignment)
                if caught_up:
                    settled_at = settled_at or now
                    if now - settled_at >= settle_s:
                        break
                else:
                    settled_at = None
            if now > deadline:
                break
            await asyncio.sleep(0)
    records.sort(key=lambda record: (record.partition, record.offset))
    return records


@dataclass(frozen=True, slots=True)
class Followed:
    """What :func:`follow_topic` saw: the records, by partition then offset, and when (monotonic
    time) the first and the last of them became visible."""

    records: list[TopicRecord]
    first_at: float
    done_at: float


async def follow_topic(
    settings: Settings,
    topic: str,
    count: int,
    *,
    alive: Callable[[], bool] = lambda: True,
    timeout_s: float = 300.0,
) -> Followed:
    """Read ``topic`` from the beginning with one ``read_committed`` consumer until ``count``
    records are visible: how the demo and the benchmark wait for a worker's output. Raises
    ``RuntimeError`` as soon as ``alive()`` turns false (the producer of the records died), and
    ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    records: list[TopicRecord] = []
    first_at: float | None = None
    async with consumer(settings, enable_auto_commit=False) as client:
        assignment = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        client.assign(assignment)
        await client.seek_to_beginning(*assignment)
        while len(records) < count:
            if not alive():
                raise RuntimeError(f"{len(records)} of {count} records on {topic}: the writer died")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(records)} of {count} records on {topic} in {timeout_s} s")
            batch = await client.getmany(*assignment, timeout_ms=500, max_records=10_000)
            for tp, messages in batch.items():
                records.extend(
                    TopicRecord(tp.partition, m.offset, m.key, m.value) for m in messages
                )
            if records and first_at is None:
                first_at = time.monotonic()
    done_at = time.monotonic()
    records.sort(key=lambda record: (record.partition, record.offset))
    return Followed(records, done_at if first_at is None else first_at, done_at)


#: A record as (offset, key, value).
RawRecord = tuple[int, bytes | None, bytes | None]


@dataclass(frozen=True, slots=True)
class PartitionSnapshot:
    """A compacted partition's latest value per key, and the end offset it was read to."""

    values: dict[bytes, bytes]
    end_offset: int
    #: The last record read (``None``: none).
    last: RawRecord | None = None


@dataclass(frozen=True, slots=True)
class PartitionTail:
    """A partition's latest change per key from an offset on (``None``: deleted)."""

    changes: dict[bytes, bytes | None]
    end_offset: int
    #: The last record read (``None``: none).
    last: RawRecord | None = None


class LogReader:
    """One ``read_committed`` consumer, kept open, for the exchange agent's own reads of its
    input topics and changelogs (restores, gap fills, catch-ups): a consumer per read cost a
    connection and a metadata round trip each time. Not for concurrent use: the agent calls it
    under its step lock.
    """

    def __init__(self, client: AIOKafkaConsumer) -> None:
        self._client = client

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[LogReader]:
        # A short fetch wait: offset requests queue behind an in-flight fetch, which otherwise
        # long-polls an idle partition for 500 ms.
        async with consumer(settings, enable_auto_commit=False, fetch_max_wait_ms=10) as client:
            yield cls(client)

    async def latest_values(
        self, partitions: Iterable[tuple[str, int]], *, timeout_s: float = 300.0
    ) -> dict[tuple[str, int], PartitionSnapshot]:
        """The latest committed value of every key in each ``(topic, partition)``, deletes
        applied.

        What a table partition holds after its changelog is replayed from the start to the last
        stable offset, asked of the broker when this call starts (not a high-water mark cached
        by a consumer): records of an open or aborted transaction are never returned.
        """
        read = await self._read_from(dict.fromkeys(partitions), False, timeout_s)
        return {tp: PartitionSnapshot(*found) for tp, found in read.items()}

    async def changes_since(
        self, starts: Mapping[tuple[str, int], int], *, timeout_s: float = 300.0
    ) -> dict[tuple[str, int], PartitionTail]:
        """The latest committed change of every key written in each ``(topic, partition)`` from
        its start offset to the last stable offset (asked of the broker now); ``None`` values
        are deletes."""
        read = await self._read_from(starts, True, timeout_s)
        return {tp: PartitionTail(*found) for tp, found in read.items()}

    async def _read_from(
        self, starts: Mapping[tuple[str, int], int | None], keep_deletes: bool, timeout_s: float
    ) -> dict[tuple[str, int], tuple[dict[bytes, Any], int, RawRecord | None]]:
        """(latest value per key, end offset, last record) of each ``(topic, partition)``, read
        from its start offset (``None``: its beginning) to its last stable offset."""
        wanted = {TopicPartition(topic, p): start for (topic, p), start in starts.items()}
        if not wanted:
            return {}
        latest: dict[tuple[str, int], dict[bytes, Any]] = {
            (tp.topic, tp.partition): {} for tp in wanted
        }
        client = self._client
        last: dict[tuple[str, int], RawRecord] = {}
        client.assign(list(wanted))
        try:
            for tp, start in wanted.items():
                if start is None:
                    await client.seek_to_beginning(tp)
                else:
                    client.seek(tp, start)
            ends = await client.end_offsets(list(wanted))
            await self._read_to(
                ends,
                latest,
                time.monotonic() + timeout_s,
                timeout_s,
                keep_deletes=keep_deletes,
                last=last,
            )
        finally:
            client.pause(*wanted)  # an idle fetcher between reads
        return {
            (tp.topic, tp.partition): (
                latest[(tp.topic, tp.partition)],
                ends[tp],
                last.get((tp.topic, tp.partition)),
            )
            for tp in wanted
        }

    async def records_at(
        self, offsets: Mapping[tuple[str, int], int], *, timeout_s: float = 60.0
    ) -> dict[tuple[str, int], tuple[bytes | None, bytes | None] | None]:
        """The committed record (key, value) at one offset of each ``(topic, partition)``;
        ``None`` where there is none (compacted away, a transaction marker, aborted)."""
        wanted = {TopicPartition(topic, p): offset for (topic, p), offset in offsets.items()}
        found: dict[tuple[str, int], tuple[bytes | None, bytes | None] | None] = {
            key: None for key in offsets
        }
        if not wanted:
            return found
        client = self._client
        deadline = time.monotonic() + timeout_s
        client.assign(list(wanted))
        try:
            for tp, offset in wanted.items():
                client.seek(tp, offset)
            pending = set(wanted)
            while pending:
                for tp in list(pending):
                    if await client.position(tp) > wanted[tp]:
                        pending.discard(tp)
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"could not read {len(pending)} records within {timeout_s:.0f} s; "
                        "is the broker up (brokerflow stack status)?"
                    )
                batch = await client.getmany(*pending, timeout_ms=50)
                for tp, messages in batch.items():
                    for message in messages:
                        if message.offset == wanted[tp]:
                            found[(tp.topic, tp.partition)] = (message.key, message.value)
                    if messages:
                        pending.discard(tp)  # past the offset now, or at it
        finally:
            client.pause(*wanted)
        return found

    async def _read_to(
        self,
        ends: dict[TopicPartition, int],
        latest: Mapping[tuple[str, int], dict[bytes, Any]],
        deadline: float,
        timeout_s: float,
        *,
        keep_deletes: bool,
        last: dict[tuple[str, int], RawRecord],
    ) -> None:
        client = self._client
        pending = set(ends)
        while pending:
            for tp in list(pending):
                if await client.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if not pending:
                break
            if time.monotonic() > deadline:
                behind = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending))
                raise TimeoutError(
                    f"could not read {behind} to its end within {timeout_s:.0f} s; "
                    "is the broker up (brokerflow stack status)?"
                )
            # Short polls: a transaction marker at the end moves the position but returns no
            # record, and a long poll would wait out its timeout for nothing.
            batch = await client.getmany(*pending, timeout_ms=50)
            for tp, messages in batch.items():
                values = latest[(tp.topic, tp.partition)]
                for message in messages:
                    if message.value is None and not keep_deletes:
                        values.pop(message.key, None)
                    else:
                        values[message.key] = message.value
                if messages:
                    final = messages[-1]
                    last[(tp.topic, tp.partition)] = (final.offset, final.key, final.value)

    async def read_range(
        self, topic: str, partition: int, start: int, stop: int, *, timeout_s: float = 60.0
    ) -> list[TopicRecord]:
        """The committed records of one partition with ``start <= offset < stop``, in order.

        Offsets missing from the result are not records (transaction markers, aborted records).
        ``stop`` must not be past the last stable offset, or this waits for it.
        """
        client = self._client
        tp = TopicPartition(topic, partition)
        records: list[TopicRecord] = []
        deadline = time.monotonic() + timeout_s
        client.assign([tp])
        try:
            client.seek(tp, start)
            while await client.position(tp) < stop:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"could not read {topic}[{partition}] offsets {start}..{stop - 1} within "
                        f"{timeout_s:.0f} s; is the broker up (brokerflow stack status)?"
                    )
                batch = await client.getmany(tp, timeout_ms=50)  # short: as in _read_to
                records.extend(
                    TopicRecord(partition, m.offset, m.key, m.value)
                    for m in batch.get(tp, ())
                    if m.offset < stop
                )
        finally:
            client.pause(tp)
        return records

    async def first_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The offset of the first record still in each partition (the log start offset)."""
        wanted = [TopicPartition(topic, partition) for partition in partitions]
        if not wanted:
            return {}
        starts = await self._client.beginning_offsets(wanted)
        return {tp.partition: offset for tp, offset in starts.items()}

    async def offset_bounds(
        self, partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[int, int]]:
        """The log start offset and the last stable offset of each ``(topic, partition)``, in
        one request each for all of them."""
        wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
        if not wanted:
            return {}
        client = self._client
        client.assign(wanted)  # their metadata, fetched once for both requests
        try:
            starts = await client.beginning_offsets(wanted)
            ends = await client.end_offsets(wanted)
        finally:
            client.pause(*wanted)
        return {(tp.topic, tp.partition): (starts[tp], ends[tp]) for tp in wanted}

    async def stable_ends(
        self, partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """The last stable offset of each ``(topic, partition)``: where committed reads end."""
        wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
        if not wanted:
            return {}
        ends = await self._client.end_offsets(wanted)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
