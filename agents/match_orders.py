"""``match_orders``: the exchange. Commands in, order events and trades out, exactly once.

Consumes ``order-commands-v1`` (keyed by symbol, so one partition owns a symbol's book), runs each
command through the pure matching core (:class:`~brokerflow.matching.MatchingEngine`, the same
code path as ``brokerflow match``) and produces the events, keyed by symbol, to
``order-events-v1`` and ``trade-executions-v1``. A payload that does not decode goes to
``dead-letters-v1`` as a ``DeadLetter`` with the reason; it is counted and logged and the stream
goes on.

State
-----
Books live in memory for speed and in two RocksDB tables (:mod:`brokerflow.tables.exchange`) for
recovery, written per order the command touched (``engine.changes``) plus one small record per
symbol: never a whole book per event. After any partition assignment or revocation the in-memory
books are dropped; before the next command the agent restores the tables' partitions from their
changelogs and rebuilds the books from them (below).

Reference prices come from the command topic itself (``SetReferencePrice`` commands forwarded by
:mod:`~brokerflow.agents.forward_reference_prices` from the market-data trades topic), not from
the Redis market cache: a price read from Redis at processing time depends on when the command
happened to be processed, so a replay could band differently; a price in the command log is
ordered with the orders and replays identically. Session closes arrive the same way
(``CloseSession`` from :mod:`~brokerflow.agents.close_sessions`); a repeated close of a session
date already closed is ignored.

Exactly once: what faust-streaming does not do for us
------------------------------------------------------
The agent does not trust Faust's consumer bookkeeping, its table recovery or its commit timing
with correctness; each was seen to break exactly-once in the kill and rebalance tests. Instead:

* **Outputs, state and the input offset in one transaction.** Every output (events, trades, dead
  letters) and every table change is sent with the transactional producer of the *source*
  partition (``Topic.send`` would pick the destination's: faust issue 177), and the state record
  written per command carries the offset of the next command in that partition. A transaction
  therefore always says exactly which commands it covers.
* **Restore from the changelog on every assignment.** Faust restores tables from a high-water mark
  cached by its consumer (it can trail the real end, so a restored book misses its last changes)
  and leaves RocksDB holding writes of transactions that were later aborted. Before the first
  command after any rebalance the agent reads both changelogs of its partitions itself, with
  ``read_committed`` to the last stable offset asked of the broker after the partition's producer
  was (re)initialised (which completes or aborts the previous owner's transaction), replaces
  those RocksDB partitions with what it read, and rebuilds the books from it: Kafka Streams'
  exactly-once rule, applied at every assignment because Faust's rebalances are eager.
* **The next offset decides, not the consumer.** A command below the partition's next offset was
  processed in a committed transaction: it is skipped (faust issue 517's duplicates after a
  ``kill -9``). A command above it means commands were not delivered: Faust's stream drops
  records fetched under an older consumer generation or while its flow control is paused, and
  its consumer can start past the committed offset after a rebalance. The agent reads the missing
  commands from the topic itself (:func:`~brokerflow.exchange_io.read_range`) and processes them
  first, in order. (Seeking Faust's consumer back does not work: its fetch loop overwrites the
  read offset with the batch it is still delivering, and the re-fetched records are dropped.)
* **Commits cover processed commands only.** The command topic is declared ``acks=False`` so that
  Faust never computes its offsets from acks (its gap and hole logic committed offsets past
  commands that were never processed, or stalled a partition forever); the commit replaces
  ``Consumer.force_commit`` and commits, under the same lock as processing, the next offset of
  every partition with processed commands plus whatever Faust would commit for other topics. A
  transaction thus never holds half a command's output.
* ``concurrency=1``: with more, offsets can be committed past in-flight messages (issue 606).
* One data dir per worker (flock), a bounded block cache: see :mod:`brokerflow.app`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from aiokafka import TopicPartition
from faust.types import EventT, StreamT
from rocksdict import WriteBatch

from brokerflow.app import app, settings
from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.exchange_io import (
    PartitionSnapshot,
    first_offsets,
    read_latest_values,
    read_range,
)
from brokerflow.exchange_state import (
    NEXT_OFFSET_KEY,
    SymbolRecord,
    encode_order_record,
    engine_command,
    next_offset,
    next_offset_record,
    order_key,
    rebuild_engines,
)
from brokerflow.matching import Exchange, MatchingEngine, SymbolRules
from brokerflow.matching.events import TRADE_EXECUTED
from brokerflow.matching.replay import load_rules
from brokerflow.matching.wire import to_json
from brokerflow.schemas import CloseSession, DeadLetter, Message, decode
from brokerflow.tables.exchange import engine_state_by_symbol, orders_by_key
from brokerflow.topics import catalog

__all__ = ["books", "commands_topic", "install_commit_guard", "match_orders", "step_lock"]

log = logging.getLogger(__name__)

topics = catalog(settings)
#: ``acks=False``: Faust must not commit this topic's offsets from acks (see the docstring).
commands_topic = app.topic(
    topics.order_commands.name,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=topics.order_commands.partitions,
    acks=False,
)
_COMMANDS_TOPIC = topics.order_commands.name
_EVENTS_TOPIC = topics.order_events.name
_TRADES_TOPIC = topics.trade_executions.name
_DEAD_LETTERS_TOPIC = topics.dead_letters.name
_COMMANDS = frozenset(
    ("PlaceOrder", "CancelOrder", "AmendOrder", "CloseSession", "SetReferencePrice")
)
_TABLES = (orders_by_key, engine_state_by_symbol)

#: Held while one input record is processed, and by every commit: see the docstring.
step_lock = asyncio.Lock()


@dataclass(frozen=True, slots=True)
class InputRecord:
    """A command-topic record, delivered by Faust or read by the agent to fill a gap."""

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
    and flushed under the step lock, so a commit never splits it.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int, bytes], tuple[Any, InputRecord, bytes]] = {}

    def set(self, record: InputRecord, table: Any, key: bytes, value: bytes) -> None:
        self.pending[(table.name, record.partition, key)] = (table, record, value)

    async def flush(self) -> None:
        for (_, _, key), (table, record, value) in self.pending.items():
            await write_table(record, table, key, value)
        self.pending.clear()


class _Books:
    """The in-memory engines of the partitions this worker owns, and where each partition is."""

    def __init__(self) -> None:
        self.rules: dict[str, SymbolRules] = (
            load_rules(settings.exchange_rules_path) if settings.exchange_rules_path else {}
        )
        self.exchange = Exchange(self.rules)
        self.engines: dict[str, MatchingEngine] = {}
        self.closed_sessions: dict[str, date | None] = {}
        self.stale = True
        self.partitions: frozenset[int] = frozenset()
        #: partition -> offset of the next command to process.
        self.next_offsets: dict[int, int | None] = {}
        #: partition -> next offset, for partitions with commands processed since the last commit.
        self.uncommitted: dict[int, int] = {}
        self.dead_letters = 0
        self.duplicates_skipped = 0
        self.gaps_filled = 0

    async def rebuild(self) -> None:
        """Drop every book; restore the partitions the consumer holds now (see the docstring)."""
        self.engines, self.closed_sessions = {}, {}
        self.partitions = frozenset()
        self.next_offsets, self.uncommitted = {}, {}
        await self.restore(owned_command_partitions())
        self.stale = False

    async def restore(self, partitions: set[int]) -> None:
        """Replace these partitions' RocksDB stores with their committed changelogs and add their
        books; the books of other partitions stay as they are."""
        ordered = sorted(partitions)
        changelogs = {table: table.changelog_topic.get_topic_name() for table in _TABLES}
        started = time.monotonic()
        snapshots = await read_latest_values(
            settings, [(changelogs[table], p) for table in _TABLES for p in ordered]
        )
        next_offsets: dict[int, int | None] = {}
        symbols = resting = 0
        for partition in ordered:
            for table in _TABLES:
                replace_store_partition(
                    table, changelogs[table], partition, snapshots[(changelogs[table], partition)]
                )
            states = snapshots[(changelogs[engine_state_by_symbol], partition)].values.items()
            orders = snapshots[(changelogs[orders_by_key], partition)].values.items()
            for symbol, (engine, closed) in rebuild_engines(
                states, orders, self.exchange.rules_for
            ).items():
                self.engines[symbol] = engine
                self.closed_sessions[symbol] = closed
                symbols += 1
                resting += sum(1 for _ in engine.resting_orders())
            next_offsets[partition] = next_offset(states)
        # A partition that never committed a command starts at its first record (the consumer
        # resets to earliest): without this, records Faust drops at start-up would be lost.
        never = [partition for partition, offset in next_offsets.items() if offset is None]
        next_offsets.update(await first_offsets(settings, _COMMANDS_TOPIC, never))
        self.next_offsets.update(next_offsets)
        self.partitions = self.partitions | frozenset(ordered)
        for partition in ordered:
            self.uncommitted.pop(partition, None)
        records = sum(len(snapshot.values) for snapshot in snapshots.values())
        log.info(
            "books restored from the changelogs in %.2f s: partitions %s, %d records, "
            "%d symbols, %d resting orders, next offsets %s",
            time.monotonic() - started,
            ordered,
            records,
            symbols,
            resting,
            next_offsets,
        )

    def engine(self, symbol: str) -> MatchingEngine:
        engine = self.engines.get(symbol)
        if engine is None:
            engine = self.engines[symbol] = MatchingEngine(symbol, self.exchange.rules_for(symbol))
            self.closed_sessions[symbol] = None
        return engine

    async def admit(self, record: InputRecord) -> list[InputRecord]:
        """The records to process now, in order: none (a duplicate), this one, or the commands
        Faust did not deliver followed by this one (see the docstring)."""
        partition, offset = record.partition, record.offset
        if partition not in self.partitions:
            return []  # queued before a rebalance took the partition away
        expected = self.next_offsets.get(partition)
        if expected is None or offset == expected:
            return [record]
        if offset < expected:
            self.duplicates_skipped += 1
            log.debug("%s[%d]@%d already processed", record.topic, partition, offset)
            return []
        missing = await read_range(settings, record.topic, partition, expected, offset)
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

    def processed(self, partition: int, offset: int) -> None:
        self.next_offsets[partition] = offset + 1
        self.uncommitted[partition] = offset + 1

    def offsets_to_commit(self, topics: Collection[Any] | None) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        for partition, offset in self.uncommitted.items():
            tp = TopicPartition(_COMMANDS_TOPIC, partition)  # aiokafka checks the type
            if topics is None or tp in topics or _COMMANDS_TOPIC in topics:
                offsets[tp] = offset
        return offsets

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if self.uncommitted.get(tp.partition) == offset:
                del self.uncommitted[tp.partition]


books = _Books()


def owned_command_partitions() -> set[int]:
    """The command-topic partitions the consumer holds now."""
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == _COMMANDS_TOPIC}


def replace_store_partition(
    table: Any, changelog: str, partition: int, snapshot: PartitionSnapshot
) -> None:
    """Make one RocksDB partition of ``table`` hold exactly its committed changelog."""
    store = table.data
    db = store._db_for_partition(partition)
    batch = WriteBatch(raw_mode=True)
    for key in db.keys():  # noqa: SIM118 - iterating an Rdict in raw mode raises
        batch.delete(key)
    for key, value in snapshot.values.items():
        batch.put(key, value)
    db.write(batch)
    store._key_index.clear()
    if snapshot.end_offset > 0:
        # Faust's own recovery then has nothing left to read for this partition.
        store.set_persisted_offset(TopicPartition(changelog, partition), snapshot.end_offset - 1)


def install_commit_guard() -> None:
    """Replace the consumer's commit with the one described in the docstring (idempotent)."""
    consumer = app.consumer
    if getattr(consumer, "_brokerflow_guarded", False):
        return

    async def commit_processed_commands(
        topics: Collection[Any] | None = None, start_new_transaction: bool = True
    ) -> bool:
        async with step_lock:
            offsets = consumer._filter_committable_offsets(
                consumer._filter_tps_with_pending_acks(topics)
            )
            ours = books.offsets_to_commit(topics)
            offsets.update(ours)
            if not offsets:
                return False
            await consumer._handle_attached(offsets)
            did_commit: bool = await consumer._commit_offsets(
                offsets, start_new_transaction=start_new_transaction
            )
            if did_commit:
                books.committed(ours)
            return did_commit

    consumer.force_commit = commit_processed_commands  # type: ignore[method-assign]
    consumer._brokerflow_guarded = True  # type: ignore[attr-defined]


def transactional_id_for(record: InputRecord) -> str:
    """The transactional producer whose transaction commits this record's offset (Faust's
    naming: ``{app id}-{topic group}-{partition}``)."""
    return f"{app.conf.id}-{app.assignor.group_for_topic(record.topic)}-{record.partition}"


async def send_in_transaction(
    record: InputRecord, topic: str, key: bytes | None, value: bytes
) -> None:
    """Produce inside the source partition's transaction (not ``Topic.send``: see above)."""
    await app.producer.send(
        topic, key, value, None, None, None, transactional_id=transactional_id_for(record)
    )


async def write_table(record: InputRecord, table: Any, key: bytes, value: bytes) -> None:
    """Set a table key: the local RocksDB store, and its changelog record in the transaction.

    Not ``table[key] = value``: that queues the changelog record in Faust's producer buffer,
    whose ``flush()`` returns once the record left the queue, possibly before it reached the
    transactional producer, so a commit can slip in between and the record lands in the next
    transaction (lost with it after a ``kill -9``, while the offset is committed).
    """
    store = table.data
    store._db_for_partition(record.partition).put(key, value)
    store._key_index[key] = record.partition
    await app.producer.send(
        table.changelog_topic.get_topic_name(),
        key,
        value,
        record.partition,
        None,
        None,
        transactional_id=transactional_id_for(record),
    )


@app.on_partitions_assigned.connect
async def _on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
    books.stale = True
    install_commit_guard()


@app.on_partitions_revoked.connect
async def _on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
    books.stale = True


async def process_command(record: InputRecord, writes: TableWrites) -> None:
    """One record of the command topic: decode, match, persist, produce (in one transaction)."""
    raw: bytes = record.value
    try:
        message = decode(raw)
        if message.type not in _COMMANDS:
            raise UnknownMessageError(
                message.type, {"type": f"{message.type} is not an exchange command"}
            )
    except SchemaError as exc:
        await dead_letter(record, exc)
        write_next_offset(record, writes)
        return
    if not await apply_command(record, message, writes):
        write_next_offset(record, writes)


def write_next_offset(record: InputRecord, writes: TableWrites) -> None:
    """For a command that wrote no symbol record: the partition's next offset still moves."""
    writes.set(
        record, engine_state_by_symbol, NEXT_OFFSET_KEY, next_offset_record(record.offset + 1)
    )


async def apply_command(record: InputRecord, message: Message, writes: TableWrites) -> bool:
    """Match one command; False when it was ignored (nothing written)."""
    symbol: str = message.__dict__["symbol"]
    engine = books.engine(symbol)
    closes_session: date | None = None
    if isinstance(message, CloseSession) and message.session_date is not None:
        last = books.closed_sessions.get(symbol)
        if last is not None and message.session_date <= last:
            log.info("%s: session %s already closed; close ignored", symbol, message.session_date)
            return False
        closes_session = message.session_date
    events = engine.process(engine_command(message, engine.rules))
    if closes_session is not None:
        books.closed_sessions[symbol] = closes_session
    for order_id, order in engine.changes:
        writes.set(record, orders_by_key, order_key(symbol, order_id), encode_order_record(order))
    state = SymbolRecord(
        engine.state(), books.closed_sessions.get(symbol), next_offset=record.offset + 1
    )
    writes.set(record, engine_state_by_symbol, symbol.encode(), state.to_bytes())
    key = symbol.encode()
    for engine_event in events:
        topic = _TRADES_TOPIC if engine_event[0] == TRADE_EXECUTED else _EVENTS_TOPIC
        await send_in_transaction(record, topic, key, to_json(engine_event).encode())
    return True


async def dead_letter(record: InputRecord, exc: SchemaError) -> None:
    books.dead_letters += 1
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
        books.dead_letters,
        record.topic,
        record.partition,
        record.offset,
        exc,
    )
    await send_in_transaction(
        record, _DEAD_LETTERS_TOPIC, record.topic.encode(), letter.to_json_bytes()
    )


def quiet_kafka_client_debug() -> None:
    """aiokafka logs a debug line per record sent; creating those records cost 9 % of the
    agent's time in a profile even though no handler printed them."""
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))


def shorten_gil_switch_interval() -> None:
    """Faust runs its Kafka consumer in a second thread. Every socket write of this (the event
    loop's) thread gives the GIL up, and getting it back waited for the consumer thread's
    switch interval (5 ms by default): a profile showed 0.55 ms per send call."""
    sys.setswitchinterval(settings.exchange_gil_switch_interval_s)


@app.agent(commands_topic, concurrency=1)
async def match_orders(stream: StreamT) -> None:
    install_commit_guard()
    quiet_kafka_client_debug()
    shorten_gil_switch_interval()
    async for batch in stream.take_events(
        settings.exchange_batch_max, within=settings.exchange_batch_within_s
    ):
        async with step_lock:
            if books.stale:
                await books.rebuild()
            else:
                # A rebuild can run between a revocation and the assignment that follows it;
                # partitions assigned after it are restored before their first command.
                unseen = {event.message.partition for event in batch} - books.partitions
                assigned = unseen & owned_command_partitions() if unseen else set()
                if assigned:
                    await books.restore(assigned)
            writes = TableWrites()
            for event in batch:
                for record in await books.admit(InputRecord.of(event)):
                    await process_command(record, writes)
                    books.processed(record.partition, record.offset)
            await writes.flush()
