"""The exactly-once machinery every stateful agent of the app is built on.

The reasoning lives in :mod:`brokerflow.agents.match_orders` (the exchange, the first agent built
on it); this module is the reusable part, so the broker's accounts agent gets the same guarantees
from the same code:

* **One transaction per step.** Everything an input record causes (output records, table
  changes, the input's next offset) is produced by the transactional producer of the record's
  *source* partition, under :data:`step_lock`, which every commit also holds: a transaction never
  holds half a step. Faust names that producer ``{app id}-{topic group}-{partition}``; an agent's
  input topics are co-partitioned, so partition N of each shares one transaction.
* **Restore on every assignment** (:meth:`ExactlyOnceAgent.restore`): an agent's table partitions
  are replaced with their changelogs read ``read_committed`` to the broker's last stable offset,
  and its in-memory state is rebuilt from them.
* **The next offset decides** (:meth:`ExactlyOnceAgent.admit`): the tables record each input
  partition's next offset; a record below it is a duplicate, a record above it means records were
  not delivered, and they are read from the topic first. A timer catches up idle partitions.
* **Commits cover processed records only** (:func:`install_commit_guard`): the consumer's commit
  is replaced by one that commits, under the step lock, the next offsets every agent processed.

A subclass says what its state is (:meth:`~ExactlyOnceAgent.drop_state`,
:meth:`~ExactlyOnceAgent.load_partition`) and what a record does
(:meth:`~ExactlyOnceAgent.process`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2
from faust.exceptions import ProducerSendError
from faust.tables.recovery import Recovery
from faust.types import EventT, StreamT
from rocksdict import WriteBatch

from brokerflow.agents.checkpoints import (
    Checkpoint,
    LastRecord,
    checkpoints,
    last_record_of,
    read_checkpoint,
    visible_items,
)
from brokerflow.agents.delivery import install_direct_delivery
from brokerflow.app import app, settings
from brokerflow.errors import ConfigError, SchemaError, UnknownMessageError
from brokerflow.exchange.io import LogReader, PartitionSnapshot, PartitionTail
from brokerflow.exchange.state import next_offset_record
from brokerflow.schemas import DeadLetter
from brokerflow.topics import catalog

__all__ = [
    "NEXT_OFFSET_PREFIX",
    "ExactlyOnceAgent",
    "InputRecord",
    "Outbox",
    "Source",
    "TableWrites",
    "input_topics",
    "install_commit_guard",
    "next_offset_key",
    "next_offset_record",
    "outbox",
    "replace_store_partition",
    "send_in_transaction",
    "split_next_offsets",
    "step_lock",
    "transactional_id_for",
]

log = logging.getLogger(__name__)

#: Gives a table value's bytes when the batch ends (see :meth:`TableWrites.set`).
Encoder = Callable[[], bytes]

#: Table keys under this prefix hold the next offset of an input topic in the key's partition.
NEXT_OFFSET_PREFIX = b"#next-offset|"

#: Held while input records are processed, and by every commit.
step_lock = asyncio.Lock()


class Source(Protocol):
    """The input partition whose transaction a write belongs to (an :class:`InputRecord`, or a
    ``TopicPartition`` for writes a timer makes)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


@dataclass(frozen=True, slots=True)
class InputRecord:
    """An input record, delivered by Faust or read by the agent to fill a gap."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @classmethod
    def of(cls, event: EventT) -> InputRecord:
        message = event.message
        return cls(message.topic, message.partition, message.offset, message.key, message.value)


class TableWrites:
    """A batch's table writes, last value per key: written once, when the batch ends.

    The changelog is compacted and the restore keeps the latest value per key, so writing only a
    batch's final values gives the same tables with fewer records; the whole batch is processed
    and flushed under the step lock, so a commit never splits it. :meth:`flush` also produces
    the step's output records (:data:`outbox`).
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int, bytes], tuple[Any, Source, bytes | Encoder | None]] = {}

    def set(self, source: Source, table: Any, key: bytes, value: bytes | Encoder) -> None:
        """``value``: the bytes, or a function that gives them, called once when the batch
        ends (a key set by every record of a batch is then encoded once)."""
        self.pending[(table.name, source.partition, key)] = (table, source, value)

    def delete(self, source: Source, table: Any, key: bytes) -> None:
        """Remove ``key``: a delete in the store, a tombstone in the changelog (compaction then
        drops the key for good)."""
        self.pending[(table.name, source.partition, key)] = (table, source, None)

    async def flush(self) -> None:
        batches: dict[tuple[str, int], tuple[Any, WriteBatch]] = {}
        for (name, partition, key), (table, source, value_or_encoder) in self.pending.items():
            store = table.data
            entry = batches.get((name, partition))
            if entry is None:
                entry = batches[(name, partition)] = (store, WriteBatch(raw_mode=True))
                checkpoints.on_write(
                    store, table.changelog_topic.get_topic_name(), partition, entry[1]
                )
            value: bytes | None
            if value_or_encoder is None:
                value = None
                entry[1].delete(key)
                store._key_index.pop(key, None)
            else:
                value = value_or_encoder if type(value_or_encoder) is bytes else value_or_encoder()
                entry[1].put(key, value)
                store._key_index[key] = partition
            outbox.add(source, table.changelog_topic.get_topic_name(), key, value, partition)
        for (_, partition), (store, batch) in batches.items():
            store._db_for_partition(partition).write(batch)
        self.pending.clear()
        await outbox.flush()


class Outbox:
    """Output records of the steps under way, produced in bulk when the step ends.

    Sending record by record through Faust's producer cost about 40 us each (a coroutine, a
    metadata wait, a partitioner call and a future per record) and an exchange command causes
    3 to 6 records. Here a step's records are appended to one ``BatchBuilder`` per transactional
    producer and topic partition, in order, and handed to the producer as whole batches
    (aiokafka's ``send_batch``, which adds the partition to the transaction as ``send`` does).
    Records are queued only under the step lock and flushed before it is released, and the
    commit guard flushes whatever is left before committing: a transaction holds all of a step's
    records or none of them.
    """

    def __init__(self) -> None:
        #: transactional id -> (topic, partition or None, key, value), in send order; a value
        #: of None is a tombstone.
        self.records: dict[str, list[tuple[str, int | None, bytes | None, bytes | None]]] = {}
        #: topic -> its partition count (output topics do not change partitions under a worker).
        self.partition_counts: dict[str, int] = {}
        #: (topic, key) -> partition, as the default partitioner (murmur2) picks it.
        self.partition_of_key: dict[tuple[str, bytes], int] = {}

    def add(
        self,
        source: Source,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
    ) -> None:
        tid = transactional_id_for(source)
        queued = self.records.get(tid)
        if queued is None:
            queued = self.records[tid] = []
        queued.append((topic, partition, key, value))

    async def flush(self) -> None:
        """Produce every queued record in its transaction (call under the step lock)."""
        if not self.records:
            return
        queued, self.records = self.records, {}
        producers = app.producer._transaction_producers  # Faust: transactional id -> producer
        for tid, records in queued.items():
            producer = producers.get(tid)
            if producer is None:
                raise ProducerSendError(
                    f"no transactional producer {tid!r}: the partition was revoked while its "
                    "records were queued"
                )
            builders: dict[tuple[str, int], Any] = {}
            full: list[tuple[str, int, Any]] = []
            partition_of_key = self.partition_of_key
            #: (topic, partition) -> the (key, value) appended last: a checkpoint's identity.
            last: dict[tuple[str, int], tuple[bytes | None, bytes | None]] = {}
            for topic, partition, key, value in records:
                if partition is None:
                    partition = partition_of_key.get((topic, key))  # type: ignore[arg-type]
                    if partition is None:
                        partition = await self.partition_for(producer, topic, key)
                builder = builders.get((topic, partition))
                if builder is None:
                    builder = builders[(topic, partition)] = producer.create_batch()
                if builder.append(key=key, value=value, timestamp=None) is None:
                    full.append((topic, partition, builder))
                    builder = builders[(topic, partition)] = producer.create_batch()
                    builder.append(key=key, value=value, timestamp=None)
                last[(topic, partition)] = (key, value)
            # A full builder goes out before the rest of its partition's records: order kept.
            full.extend((topic, part, builder) for (topic, part), builder in builders.items())
            async with app.producer._trn_locks[tid]:  # Faust holds it around its own sends
                for topic, partition, builder in full:
                    sent = await producer.send_batch(builder, topic, partition=partition)
                    checkpoints.on_send(
                        topic, partition, sent, builder.record_count(), last[(topic, partition)]
                    )

    async def partition_for(self, producer: Any, topic: str, key: bytes | None) -> int:
        """The partition aiokafka's default partitioner gives ``key`` (murmur2 of the key), for
        a key not in :attr:`partition_of_key` yet."""
        if key is None:
            raise ValueError(f"a record for {topic} needs a key or a partition")
        count = self.partition_counts.get(topic)
        if count is None:
            count = self.partition_counts[topic] = len(await producer.partitions_for(topic))
        if len(self.partition_of_key) >= 65536:
            self.partition_of_key.clear()
        partition = self.partition_of_key[(topic, key)] = (murmur2(key) & 0x7FFFFFFF) % count
        return partition


#: The step's output records; see :class:`Outbox`.
outbox = Outbox()


def input_topics(*names: str, partitions: int) -> Any:
    """An agent's co-partitioned input topics, raw bytes. ``acks=False``: Faust must never
    commit their offsets from acks; the agent's bookkeeping does (:func:`install_commit_guard`)."""
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        acks=False,
    )


def next_offset_key(topic: str) -> bytes:
    """The table key of ``topic``'s next offset in the partition the record is written to."""
    return NEXT_OFFSET_PREFIX + topic.encode()


def split_next_offsets(
    items: Iterable[tuple[bytes, bytes]],
) -> tuple[dict[str, int], list[tuple[bytes, bytes]]]:
    """A table partition's next offsets by topic, and the rest of its items."""
    offsets: dict[str, int] = {}
    rest: list[tuple[bytes, bytes]] = []
    for key, value in items:
        if key.startswith(NEXT_OFFSET_PREFIX):
            offsets[key[len(NEXT_OFFSET_PREFIX) :].decode()] = json.loads(value)["nextOffset"]
        else:
            rest.append((key, value))
    return offsets, rest


_TRANSACTIONAL_IDS: dict[tuple[str, int], str] = {}


def transactional_id_for(source: Source) -> str:
    """The transactional producer whose transaction commits this source's offset (Faust's
    naming: ``{app id}-{topic group}-{partition}``; a topic's group is fixed once the agents'
    topics are known)."""
    key = (source.topic, source.partition)
    tid = _TRANSACTIONAL_IDS.get(key)
    if tid is None:
        group = app.assignor.group_for_topic(source.topic)
        tid = _TRANSACTIONAL_IDS[key] = f"{app.conf.id}-{group}-{source.partition}"
    return tid


def send_in_transaction(source: Source, topic: str, key: bytes | None, value: bytes) -> None:
    """Queue a record in the source partition's transaction (not ``Topic.send``, which picks
    the destination partition's producer: faust issue 177); produced when the step ends."""
    outbox.add(source, topic, key, value)


def replace_store_partition(table: Any, partition: int, snapshot: PartitionSnapshot) -> None:
    """Make one RocksDB partition of ``table`` hold exactly its committed changelog (the
    restore then checkpoints it: :meth:`Checkpoints.mark`)."""
    store = table.data
    db = store._db_for_partition(partition)
    batch = WriteBatch(raw_mode=True)
    for key in db.keys():  # noqa: SIM118 - iterating an Rdict in raw mode raises
        batch.delete(key)
    for key, value in snapshot.values.items():
        batch.put(key, value)
    db.write(batch)
    store._key_index.clear()


def apply_changelog_tail(table: Any, partition: int, tail: PartitionTail) -> PartitionSnapshot:
    """Bring a checkpointed RocksDB partition of ``table`` up to its committed changelog; what
    it then holds."""
    store = table.data
    db = store._db_for_partition(partition)
    batch = WriteBatch(raw_mode=True)
    for key, value in tail.changes.items():
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    db.write(batch)
    store._key_index.clear()
    return PartitionSnapshot(dict(visible_items(db)), tail.end_offset)


_faust_build_offsets = Recovery._build_offsets


async def _build_offsets_at_the_end(
    self: Recovery, consumer: Any, tps: set[Any], destination: Any, title: str
) -> None:
    """Faust's recovery start offsets, moved to the end for the agents' own tables.

    Faust's recovery of those tables is redundant: the agent restores its partitions itself
    before their first record (:meth:`ExactlyOnceAgent.restore`). And it stalls: it reads a
    changelog partition until it has seen a record at the offset before the end, which under
    exactly-once is a transaction marker and never arrives as a record, then gives up after two
    5 s timeouts (a worker joining a group waited 12.8 s). Faust builds these offsets right
    after the round's end offsets (``active_highwaters``); starting there leaves nothing to read.
    """
    await _faust_build_offsets(self, consumer, tps, destination, title)
    if title != "active":
        return
    ours = {table.changelog_topic.get_topic_name() for agent in _AGENTS for table in agent.tables}
    for tp in tps:
        highwater = self.active_highwaters.get(tp)
        if tp.topic in ours and highwater is not None and highwater > destination[tp]:
            destination[tp] = highwater


Recovery._build_offsets = _build_offsets_at_the_end  # type: ignore[method-assign]


#: Every agent built on :class:`ExactlyOnceAgent`, in creation order (the commit guard asks each).
_AGENTS: list[ExactlyOnceAgent] = []


class ExactlyOnceAgent:
    """An agent's input bookkeeping, restore and batch loop (see the module docstring).

    ``input_topics`` must be co-partitioned (one partition count, one key); ``tables`` are the
    agent's Faust tables, co-partitioned with them and written only through :class:`TableWrites`.
    """

    def __init__(
        self, name: str, restores: str, input_topics: tuple[str, ...], tables: tuple[Any, ...]
    ) -> None:
        self.name = name
        #: What a restore rebuilds, for its log line ("books restored from the changelogs...").
        self.restores = restores
        self.input_topics = input_topics
        self.tables = tables
        self.stale = True
        #: An assignment came after the last revocation (Faust had set up its producers).
        self.assigned = False
        self.partitions: frozenset[int] = frozenset()
        #: (topic, partition) -> offset of the next input record to process.
        self.next_offsets: dict[tuple[str, int], int] = {}
        #: (topic, partition) -> next offset, where records were processed since the last commit.
        self.uncommitted: dict[tuple[str, int], int] = {}
        #: (topic, partition) -> monotonic time Faust last delivered one of its records.
        self.last_delivered: dict[tuple[str, int], float] = {}
        #: (topic, partition) -> last stable offset a catch-up already read up to.
        self.caught_up_to: dict[tuple[str, int], int] = {}
        self.duplicates_skipped = 0
        self.gaps_filled = 0
        self.dead_letters = 0
        self.dead_letters_topic = catalog(settings).dead_letters.name
        self._reader: LogReader | None = None
        self._reader_exit = AsyncExitStack()
        _AGENTS.append(self)

    # --- what a subclass provides ---------------------------------------------------------

    def drop_state(self) -> None:
        """Forget every partition's in-memory state (a rebuild follows)."""
        raise NotImplementedError

    def load_partition(
        self, partition: int, snapshots: Mapping[Any, PartitionSnapshot], now: float
    ) -> dict[str, int | None]:
        """Rebuild one partition's in-memory state from its tables' committed values
        (``snapshots[table]``); return the next offset of each input topic the tables record
        (``None``: nothing of that topic was ever processed)."""
        raise NotImplementedError

    def restore_summary(self) -> str:
        """What the state holds after a restore, for the log line."""
        return ""

    async def process(self, record: InputRecord, writes: TableWrites, now: float) -> None:
        """One input record, in order; outputs through :func:`send_in_transaction`."""
        raise NotImplementedError

    async def dead_letter(
        self, record: InputRecord, exc: SchemaError, reason: str | None = None
    ) -> None:
        """Send an input that cannot be processed to ``dead-letters-v1`` with the reason, in
        the record's transaction; count and log it. The stream goes on."""
        self.dead_letters += 1
        if reason is None:
            reason = "UNKNOWN_MESSAGE" if isinstance(exc, UnknownMessageError) else "SCHEMA_INVALID"
            if "<payload>" in exc.problems:
                reason = "NOT_JSON"
        letter = DeadLetter.from_payload(
            source=record.topic,
            reason=reason,
            detail=str(exc),
            fields=tuple(field for field in exc.fields if field != "<payload>"),
            payload=record.value or b"",
            key=record.key,
            partition=record.partition,
            offset=record.offset,
            event_time=datetime.now(UTC),
        )
        log.warning(
            "dead letter #%d from %s[%d]@%d: %s",
            self.dead_letters,
            record.topic,
            record.partition,
            record.offset,
            exc,
        )
        send_in_transaction(
            record, self.dead_letters_topic, record.topic.encode(), letter.to_json_bytes()
        )

    # --- the loop ---------------------------------------------------------------------------

    async def consume(self, stream: StreamT) -> None:
        """The agent's body: batches of delivered events through :meth:`take`."""
        install_commit_guard()
        try:
            async for batch in stream.take_events(
                settings.exchange_batch_max, within=settings.exchange_batch_within_s
            ):
                await self.take(batch)
        finally:
            await self.close_reader()

    async def take(self, batch: list[Any]) -> None:
        """One batch of delivered events: restore first where needed, then :meth:`step`."""
        async with step_lock:
            if self.stale:
                if not self.assigned or app.rebalancing:
                    # Delivered while a rebalance is under way: the consumer may still report
                    # partitions whose producers are gone. Dropping the batch loses nothing: the
                    # next offsets bring these records back (admit, catch_up) once assigned.
                    return
                await self.rebuild()
            else:
                # A rebuild can run between a revocation and the assignment that follows it;
                # partitions assigned after it are restored before their first record.
                unseen = {event.message.partition for event in batch} - self.partitions
                assigned = unseen & self.owned_partitions() if unseen else set()
                if assigned:
                    await self.restore(assigned)
            now = time.monotonic()
            delivered = [InputRecord.of(event) for event in batch]
            for record in delivered:
                self.last_delivered[(record.topic, record.partition)] = now
            await self.step(delivered, now)

    async def step(self, delivered: list[InputRecord], now: float) -> None:
        """Process input records in order and write the tables once (under the step lock)."""
        writes = TableWrites()
        for record_in in delivered:
            for record in await self.admit(record_in):
                await self.process(record, writes, now)
                self.processed(record.topic, record.partition, record.offset)
        await writes.flush()

    async def catch_up(self) -> None:
        """Process what Faust dropped and nothing later will bring (:meth:`undelivered`).

        Rebuilds first when no batch has come since an assignment: Faust may deliver nothing
        at all (its consumer group's offsets can be past what the state says comes next)."""
        if self.stale and (not self.assigned or app.rebalancing):
            return  # a rebalance is under way; the next assignment or batch rebuilds
        async with step_lock:
            if self.stale:
                if not self.assigned or app.rebalancing:
                    return
                await self.rebuild()
            now = time.monotonic()
            records = await self.undelivered(now)
            if records:
                await self.step(records, now)

    # --- partitions and restore -------------------------------------------------------------

    async def reader(self) -> LogReader:
        """The agent's own ``read_committed`` consumer, opened on first use."""
        if self._reader is None:
            self._reader = await self._reader_exit.enter_async_context(LogReader.open(settings))
        return self._reader

    async def close_reader(self) -> None:
        self._reader = None
        await self._reader_exit.aclose()

    def owned_partitions(self) -> set[int]:
        """The input partitions the consumer holds now (the same numbers for every input)."""
        return {tp.partition for tp in app.consumer.assignment() if tp.topic in self.input_topics}

    def check_copartitioned(self) -> None:
        """Partition N of every input topic must share one transaction; Faust groups topics by
        partition count."""
        groups = {topic: app.assignor.group_for_topic(topic) for topic in self.input_topics}
        if len(set(groups.values())) > 1:
            raise ConfigError(
                f"the {self.name} agent's input topics are not co-partitioned (topic groups "
                f"{groups}): give them the same partition count (TOPIC_PARTITIONS) and recreate "
                "them with `brokerflow topics --create`"
            )

    def mark_stale(self, assigned: bool) -> None:
        self.stale = True
        self.assigned = assigned

    async def rebuild(self) -> None:
        """Drop every partition's state; restore the partitions the consumer holds now."""
        self.drop_state()
        self.partitions = frozenset()
        self.next_offsets, self.uncommitted = {}, {}
        await self.restore(self.owned_partitions())
        self.stale = False

    async def restore(self, partitions: set[int]) -> None:
        """Make these partitions' RocksDB stores hold their committed changelogs (from a local
        checkpoint plus the changelog's tail where one is usable, else the whole changelog) and
        load their state; those of other partitions stay as they are."""
        self.check_copartitioned()
        ordered = sorted(partitions)
        changelogs = {table: table.changelog_topic.get_topic_name() for table in self.tables}
        started = time.monotonic()
        reader = await self.reader()
        wanted = [(table, changelogs[table], p) for table in self.tables for p in ordered]
        tails_from = await self.usable_checkpoints(reader, wanted)
        snapshots = await reader.latest_values(
            [(changelog, p) for _, changelog, p in wanted if (changelog, p) not in tails_from]
        )
        read = sum(len(snapshot.values) for snapshot in snapshots.values())
        tails = await reader.changes_since({tp: start for tp, (start, _) in tails_from.items()})
        checkpointed_at = time.time()
        for table, changelog, p in wanted:
            tail = tails.get((changelog, p))
            if tail is None:
                replace_store_partition(table, p, snapshots[(changelog, p)])
                last_record = last_record_of(snapshots[(changelog, p)].last)
            else:
                read += len(tail.changes)
                snapshots[(changelog, p)] = apply_changelog_tail(table, p, tail)
                # An empty tail leaves the store's last record the checkpoint's.
                last_record = last_record_of(tail.last) or tails_from[(changelog, p)][1]
            checkpoints.mark(
                table.data,
                changelog,
                p,
                snapshots[(changelog, p)].end_offset,
                last_record,
                checkpointed_at,
            )
        next_offsets: dict[tuple[str, int], int | None] = {}
        for partition in ordered:
            by_table = {table: snapshots[(changelogs[table], partition)] for table in self.tables}
            loaded = self.load_partition(partition, by_table, time.monotonic())
            for topic in self.input_topics:
                next_offsets[(topic, partition)] = loaded.get(topic)
        # A partition that never committed a record starts at its first record (the consumer
        # resets to earliest): without this, records Faust drops at start-up would be lost.
        for topic in self.input_topics:
            never = [p for (t, p), offset in next_offsets.items() if t == topic and offset is None]
            for partition, offset in (await reader.first_offsets(topic, never)).items():
                next_offsets[(topic, partition)] = offset
        self.next_offsets.update(
            {tp: offset for tp, offset in next_offsets.items() if offset is not None}
        )
        self.partitions = self.partitions | frozenset(ordered)
        restored_at = time.monotonic()
        for tp in next_offsets:
            self.uncommitted.pop(tp, None)
            self.caught_up_to.pop(tp, None)
            # Idle is counted from now: a backlog Faust is about to deliver is not read twice.
            self.last_delivered[tp] = restored_at
        records = sum(len(snapshot.values) for snapshot in snapshots.values())
        log.info(
            "%s restored in %.2f s: partitions %s, %d records (%d table partitions of %d from "
            "local checkpoints; %d records read from the changelogs), %s; next offsets %s",
            self.restores,
            time.monotonic() - started,
            ordered,
            records,
            len(tails),
            len(wanted),
            read,
            self.restore_summary(),
            {f"{t}[{p}]": offset for (t, p), offset in sorted(next_offsets.items())},
        )

    async def usable_checkpoints(
        self, reader: LogReader, wanted: list[tuple[Any, str, int]]
    ) -> dict[tuple[str, int], tuple[int, LastRecord | None]]:
        """(changelog, partition) -> (the offset its tail starts at, the checkpoint's last
        record), for the table partitions whose local checkpoint can be trusted
        (:mod:`brokerflow.agents.checkpoints`)."""
        if not settings.exchange_restore_from_checkpoints:
            return {}
        found: dict[tuple[str, int], Checkpoint] = {}
        for table, changelog, p in wanted:
            checkpoint = read_checkpoint(table.data._db_for_partition(p))
            if checkpoint is not None:
                found[(changelog, p)] = checkpoint
        if not found:
            return {}
        bounds = await reader.offset_bounds(found)
        now = time.time()
        refused: dict[tuple[str, int], str] = {}
        for tp, checkpoint in found.items():
            start, end = bounds[tp]
            why = checkpoint.unusable_because(
                tp[0], start, end, now, settings.exchange_checkpoint_max_age_s
            )
            if why is not None:
                refused[tp] = why
        # The same log, not one deleted and created again under its name: the record the
        # store saw last is still there.
        lasts = {
            tp: checkpoint.last_record[0]
            for tp, checkpoint in found.items()
            if tp not in refused and checkpoint.last_record is not None
        }
        records = await reader.records_at(lasts)
        usable: dict[tuple[str, int], tuple[int, LastRecord | None]] = {}
        for tp, checkpoint in found.items():
            why = refused.get(tp) or checkpoint.last_record_differs(records.get(tp))
            if why is None:
                usable[tp] = (checkpoint.end_offset, checkpoint.last_record)
            else:
                log.warning("%s[%d]: its local checkpoint is not used: %s", tp[0], tp[1], why)
        return usable

    # --- input offsets ----------------------------------------------------------------------

    async def admit(self, record: InputRecord) -> list[InputRecord]:
        """The records to process now, in order: none (a duplicate), this one, or the records
        Faust did not deliver followed by this one."""
        partition, offset = record.partition, record.offset
        if partition not in self.partitions:
            return []  # queued before a rebalance took the partition away
        expected = self.next_offsets.get((record.topic, partition))
        if expected is None or offset == expected:
            return [record]
        if offset < expected:
            self.duplicates_skipped += 1
            log.debug("%s[%d]@%d already processed", record.topic, partition, offset)
            return []
        reader = await self.reader()
        missing = await reader.read_range(record.topic, partition, expected, offset)
        if not missing:
            # Transaction markers and aborted records take offsets too: no record was lost.
            log.debug(
                "%s[%d]: offsets %d..%d hold no records",
                record.topic,
                partition,
                expected,
                offset - 1,
            )
            return [record]
        self.gaps_filled += 1
        log.warning(
            "%s[%d]: offsets %d..%d were not delivered before %d; read %d records from the "
            "topic (gap #%d)",
            record.topic,
            partition,
            expected,
            offset - 1,
            offset,
            len(missing),
            self.gaps_filled,
        )
        return [
            InputRecord(record.topic, partition, found.offset, found.key, found.value)
            for found in missing
        ] + [record]

    async def undelivered(self, now: float) -> list[InputRecord]:
        """Records of idle partitions that Faust will not deliver.

        A record Faust dropped at a rebalance is read back by :meth:`admit` when a later record
        of its partition arrives; this finds the ones no later record follows (the end of a
        tape, a quiet symbol). A partition counts as idle when nothing of it was delivered for
        ``EXCHANGE_CATCH_UP_INTERVAL_S``; anything it reads that Faust delivers after all is a
        duplicate, which :meth:`admit` skips.
        """
        idle_after = settings.exchange_catch_up_interval_s
        idle = [
            tp
            for tp in self.next_offsets
            if tp[1] in self.partitions and now - self.last_delivered.get(tp, 0.0) >= idle_after
        ]
        if not idle:
            return []
        reader = await self.reader()
        found: list[InputRecord] = []
        for (topic, partition), end in (await reader.stable_ends(idle)).items():
            start = self.next_offsets[(topic, partition)]
            if end <= max(start, self.caught_up_to.get((topic, partition), 0)):
                continue
            self.caught_up_to[(topic, partition)] = end
            records = await reader.read_range(topic, partition, start, end)
            if records:
                log.warning(
                    "%s[%d]: offsets %d..%d were not delivered; read %d records from the topic",
                    topic,
                    partition,
                    start,
                    end - 1,
                    len(records),
                )
            found.extend(InputRecord(topic, partition, r.offset, r.key, r.value) for r in records)
        return found

    def processed(self, topic: str, partition: int, offset: int) -> None:
        self.next_offsets[(topic, partition)] = offset + 1
        self.uncommitted[(topic, partition)] = offset + 1

    def wrote_without_input(self, topic: str, partition: int) -> None:
        """A timer wrote into this partition's transaction: the next commit must include it
        (with the offset already processed) or the transaction would stay open."""
        offset = self.next_offsets.get((topic, partition))
        if offset is not None:
            self.uncommitted[(topic, partition)] = offset

    def offsets_to_commit(self, topics: Collection[Any] | None) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        for (topic, partition), offset in self.uncommitted.items():
            tp = TopicPartition(topic, partition)  # aiokafka checks the type
            if topics is None or tp in topics or topic in topics:
                offsets[tp] = offset
        return offsets

    def settled_changelog_partitions(self) -> set[tuple[str, int]]:
        """The (changelog, partition) of this agent's tables with no uncommitted write."""
        if self.stale:
            return set()
        busy = {partition for _, partition in self.uncommitted}
        return {
            (table.changelog_topic.get_topic_name(), partition)
            for table in self.tables
            for partition in self.partitions - busy
        }

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if self.uncommitted.get((tp.topic, tp.partition)) == offset:
                del self.uncommitted[(tp.topic, tp.partition)]


def write_checkpoints() -> None:
    """Checkpoint every table partition whose writes are all committed now."""
    settled: set[tuple[str, int]] = set()
    for agent in _AGENTS:
        settled |= agent.settled_changelog_partitions()
    checkpoints.write(settled)


def install_commit_guard() -> None:
    """Replace the consumer's commit with one that commits, under the step lock, the next
    offsets every agent processed plus whatever Faust would commit for other topics (idempotent).

    The agents' input topics are declared ``acks=False`` so that Faust never computes their
    offsets from acks (its gap and hole logic committed offsets past records that were never
    processed, or stalled a partition forever).
    """
    consumer = app.consumer
    if getattr(consumer, "_brokerflow_guarded", False):
        return

    async def commit_processed_records(
        topics: Collection[Any] | None = None, start_new_transaction: bool = True
    ) -> bool:
        async with step_lock:
            try:
                await outbox.flush()  # nothing queued may fall into the next transaction
                offsets = consumer._filter_committable_offsets(
                    consumer._filter_tps_with_pending_acks(topics)
                )
                ours: dict[TopicPartition, int] = {}
                for agent in _AGENTS:
                    ours.update(agent.offsets_to_commit(topics))
                offsets.update(ours)
                if not offsets:
                    write_checkpoints()
                    return False
                await consumer._handle_attached(offsets)
                did_commit: bool = await consumer._commit_offsets(
                    offsets, start_new_transaction=start_new_transaction
                )
                if did_commit:
                    for agent in _AGENTS:
                        agent.committed(ours)
                    write_checkpoints()
                return did_commit
            finally:
                if not start_new_transaction:
                    # Faust ends the transactions (revocation, shutdown): until the next
                    # assignment there is no transaction to send in, so no agent may process
                    # another record (one waiting for the lock would fail, crashing the worker).
                    for agent in _AGENTS:
                        agent.mark_stale(assigned=False)

    consumer.force_commit = commit_processed_records  # type: ignore[method-assign]
    consumer._brokerflow_guarded = True  # type: ignore[attr-defined]


if settings.exchange_direct_delivery:
    install_direct_delivery()


@app.on_partitions_assigned.connect
async def _on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
    _TRANSACTIONAL_IDS.clear()  # the assignment brings the topic groups anew
    for agent in _AGENTS:
        agent.mark_stale(assigned=True)
    install_commit_guard()


@app.on_partitions_revoked.connect
async def _on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
    for agent in _AGENTS:
        agent.mark_stale(assigned=False)
    checkpoints.forget({(tp.topic, tp.partition) for tp in revoked})
