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

Reference prices come from the command topic itself: ``SetReferencePrice`` commands, which this
agent makes from the market-data topics it also consumes (``market.trades.raw``,
``assets-market-data-v1``; :mod:`~brokerflow.agents.forward_reference_prices` has the rules and
the reasons), not from the Redis market cache: a price read from Redis at processing time depends
on when the command happened to be processed, so a replay could band differently; a price in the
command log is ordered with the orders and replays identically. Market records get the same
exactly-once treatment as commands below (next offsets, gap fills, their state restored from the
``reference_forwarding`` changelog). Session closes arrive the same way (``CloseSession`` from
:mod:`~brokerflow.agents.close_sessions`); a repeated close of a session date already closed is
ignored.

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
  command after any rebalance the agent reads its tables' changelogs of its partitions itself, with
  ``read_committed`` to the last stable offset asked of the broker after the partition's producer
  was (re)initialised (which completes or aborts the previous owner's transaction), replaces
  those RocksDB partitions with what it read, and rebuilds the books from it: Kafka Streams'
  exactly-once rule, applied at every assignment because Faust's rebalances are eager.
* **The next offset decides, not the consumer.** A command below the partition's next offset was
  processed in a committed transaction: it is skipped (faust issue 517's duplicates after a
  ``kill -9``). A command above it means commands were not delivered: Faust's stream drops
  records fetched under an older consumer generation or while its flow control is paused, and
  its consumer can start past the committed offset after a rebalance. The agent reads the missing
  commands from the topic itself (:meth:`~brokerflow.exchange.io.LogReader.read_range`, on one
  consumer of its own kept open) and processes them first, in order. Dropped records that no
  later record follows are found by a timer: a partition idle for
  ``EXCHANGE_CATCH_UP_INTERVAL_S`` is compared with its last stable offset on the broker. (Seeking
  Faust's consumer back does not work: its fetch loop overwrites the read offset with the batch
  it is still delivering, and the re-fetched records are dropped.)
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

import logging
import sys
import time
from collections.abc import Collection
from contextlib import AsyncExitStack
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition
from faust.types import StreamT

from brokerflow.agents.exactly_once import (
    InputRecord,
    TableWrites,
    replace_store_partition,
    send_in_transaction,
    step_lock,
)
from brokerflow.agents.forward_reference_prices import QUOTES, TRADES, ReferencePrices
from brokerflow.app import app, settings
from brokerflow.errors import ConfigError, SchemaError, UnknownMessageError
from brokerflow.exchange.io import LogReader
from brokerflow.exchange.state import (
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
from brokerflow.tables.exchange import (
    engine_state_by_symbol,
    orders_by_key,
    reference_forwarding,
)
from brokerflow.topics import catalog

__all__ = [
    "books",
    "exchange_inputs",
    "install_commit_guard",
    "match_orders",
    "references",
    "release_held_reference_prices",
]

log = logging.getLogger(__name__)

topics = catalog(settings)
_COMMANDS_TOPIC = topics.order_commands.name
_EVENTS_TOPIC = topics.order_events.name
_TRADES_TOPIC = topics.trade_executions.name
_DEAD_LETTERS_TOPIC = topics.dead_letters.name
_COMMANDS = frozenset(
    ("PlaceOrder", "CancelOrder", "AmendOrder", "CloseSession", "SetReferencePrice")
)
_TABLES = (orders_by_key, engine_state_by_symbol, reference_forwarding)

#: The agent's inputs: commands, and the market data whose prices become reference prices. All
#: co-partitioned (one partition count, keyed by symbol). ``acks=False``: Faust must not commit
#: their offsets from acks (see the docstring).
exchange_inputs = app.topic(
    _COMMANDS_TOPIC,
    topics.market_trades.name,
    topics.market_quotes.name,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=topics.order_commands.partitions,
    acks=False,
)
_INPUT_TOPICS = (_COMMANDS_TOPIC, topics.market_trades.name, topics.market_quotes.name)

references = ReferencePrices(
    {topics.market_trades.name: TRADES, topics.market_quotes.name: QUOTES},
    _COMMANDS_TOPIC,
    reference_forwarding,
    timedelta(seconds=settings.exchange_reference_min_interval_s),
)


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
        self.dead_letters = 0
        self.duplicates_skipped = 0
        self.gaps_filled = 0
        self._reader: LogReader | None = None
        self._reader_exit = AsyncExitStack()

    async def reader(self) -> LogReader:
        """The agent's own ``read_committed`` consumer, opened on first use."""
        if self._reader is None:
            self._reader = await self._reader_exit.enter_async_context(LogReader.open(settings))
        return self._reader

    async def close_reader(self) -> None:
        self._reader = None
        await self._reader_exit.aclose()

    async def rebuild(self) -> None:
        """Drop every book; restore the partitions the consumer holds now (see the docstring)."""
        self.engines, self.closed_sessions = {}, {}
        references.clear()
        self.partitions = frozenset()
        self.next_offsets, self.uncommitted = {}, {}
        await self.restore(owned_partitions())
        self.stale = False

    async def restore(self, partitions: set[int]) -> None:
        """Replace these partitions' RocksDB stores with their committed changelogs and add their
        books and forwarding state; those of other partitions stay as they are."""
        check_copartitioned()
        ordered = sorted(partitions)
        changelogs = {table: table.changelog_topic.get_topic_name() for table in _TABLES}
        started = time.monotonic()
        reader = await self.reader()
        snapshots = await reader.latest_values(
            [(changelogs[table], p) for table in _TABLES for p in ordered]
        )
        next_offsets: dict[tuple[str, int], int | None] = {}
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
            market = references.restore_partition(
                partition,
                snapshots[(changelogs[reference_forwarding], partition)].values.items(),
                time.monotonic(),
            )
            next_offsets[(_COMMANDS_TOPIC, partition)] = next_offset(states)
            for topic in _INPUT_TOPICS[1:]:
                next_offsets[(topic, partition)] = market.get(topic)
        # A partition that never committed a record starts at its first record (the consumer
        # resets to earliest): without this, records Faust drops at start-up would be lost.
        for topic in _INPUT_TOPICS:
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
            "books restored from the changelogs in %.2f s: partitions %s, %d records, "
            "%d symbols, %d resting orders, %d reference prices held, next offsets %s",
            time.monotonic() - started,
            ordered,
            records,
            symbols,
            resting,
            len(references.held_since),
            {f"{t}[{p}]": offset for (t, p), offset in sorted(next_offsets.items())},
        )

    def engine(self, symbol: str) -> MatchingEngine:
        engine = self.engines.get(symbol)
        if engine is None:
            engine = self.engines[symbol] = MatchingEngine(symbol, self.exchange.rules_for(symbol))
            self.closed_sessions[symbol] = None
        return engine

    async def admit(self, record: InputRecord) -> list[InputRecord]:
        """The records to process now, in order: none (a duplicate), this one, or the records
        Faust did not deliver followed by this one (see the docstring)."""
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
            # Transaction markers (a forwarded reference price commits one into the command
            # topic) and aborted records take offsets too: no record was lost.
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

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if self.uncommitted.get((tp.topic, tp.partition)) == offset:
                del self.uncommitted[(tp.topic, tp.partition)]


books = _Books()


def owned_partitions() -> set[int]:
    """The input partitions the consumer holds now (the same numbers for every input topic)."""
    return {tp.partition for tp in app.consumer.assignment() if tp.topic in _INPUT_TOPICS}


def check_copartitioned() -> None:
    """Partition N of every input topic must share one transaction (see
    :mod:`brokerflow.agents.exactly_once`); Faust groups topics by partition count."""
    groups = {topic: app.assignor.group_for_topic(topic) for topic in _INPUT_TOPICS}
    if len(set(groups.values())) > 1:
        raise ConfigError(
            f"the exchange's input topics are not co-partitioned (topic groups {groups}): "
            "give them the same partition count (TOPIC_PARTITIONS) and recreate them with "
            "`brokerflow topics create`"
        )


def install_commit_guard() -> None:
    """Replace the consumer's commit with the one described in the docstring (idempotent)."""
    consumer = app.consumer
    if getattr(consumer, "_brokerflow_guarded", False):
        return

    async def commit_processed_records(
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

    consumer.force_commit = commit_processed_records  # type: ignore[method-assign]
    consumer._brokerflow_guarded = True  # type: ignore[attr-defined]


@app.on_partitions_assigned.connect
async def _on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
    books.stale = True
    books.assigned = True
    install_commit_guard()


@app.on_partitions_revoked.connect
async def _on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
    books.stale = True
    books.assigned = False


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


async def step(delivered: list[InputRecord], now: float) -> None:
    """Process input records in order and write the tables once (under the step lock)."""
    writes = TableWrites()
    for record_in in delivered:
        for record in await books.admit(record_in):
            if record.topic == _COMMANDS_TOPIC:
                await process_command(record, writes)
            else:
                await references.forward(record, writes, now)
            books.processed(record.topic, record.partition, record.offset)
    await writes.flush()


@app.timer(interval=settings.exchange_catch_up_interval_s)
async def catch_up_undelivered() -> None:
    """Process what Faust dropped and nothing later will bring (:meth:`_Books.undelivered`).

    Rebuilds first when no batch has yet since an assignment: Faust may deliver nothing at all
    (its consumer group's offsets can be past what the exchange state says comes next)."""
    if books.stale and (not books.assigned or app.rebalancing):
        return  # a rebalance is under way; the next assignment or batch rebuilds
    async with step_lock:
        if books.stale:
            if not books.assigned or app.rebalancing:
                return
            await books.rebuild()
        now = time.monotonic()
        records = await books.undelivered(now)
        if records:
            await step(records, now)


@app.timer(interval=max(settings.exchange_reference_min_interval_s / 2, 0.05))
async def release_held_reference_prices() -> None:
    """Forward market prices the interval held back once they have waited for it."""
    if books.stale or not references.held_since:
        return
    async with step_lock:
        if books.stale:
            return
        now = time.monotonic()
        writes = TableWrites()
        for key in list(references.due(now)):
            partition = await references.release(key, writes, now)
            books.wrote_without_input(key[0], partition)
        await writes.flush()


@app.agent(exchange_inputs, concurrency=1)
async def match_orders(stream: StreamT) -> None:
    install_commit_guard()
    quiet_kafka_client_debug()
    shorten_gil_switch_interval()
    try:
        async for batch in stream.take_events(
            settings.exchange_batch_max, within=settings.exchange_batch_within_s
        ):
            await _take(batch)
    finally:
        await books.close_reader()


async def _take(batch: list[Any]) -> None:
    """One batch of delivered events: restore first where needed, then :func:`step`."""
    async with step_lock:
        if books.stale:
            await books.rebuild()
        else:
            # A rebuild can run between a revocation and the assignment that follows it;
            # partitions assigned after it are restored before their first record.
            unseen = {event.message.partition for event in batch} - books.partitions
            assigned = unseen & owned_partitions() if unseen else set()
            if assigned:
                await books.restore(assigned)
        now = time.monotonic()
        delivered = [InputRecord.of(event) for event in batch]
        for record in delivered:
            books.last_delivered[(record.topic, record.partition)] = now
        await step(delivered, now)
