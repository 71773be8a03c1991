"""The stats dataflow: Kafka ticks -> 1 s / 1 min bars -> MongoDB, Redis and ``market-bars-v1``.

Run it (recovery on, under ``STACK_DIR/recovery/stats`` unless ``STATS_RECOVERY_DIR`` says)::

    python -m brokerflow.flows.stats
    # or with Bytewax's own runner and flags:
    python -m bytewax.recovery .stack/recovery/stats 1
    python -m bytewax.run brokerflow.flows.stats:flow -w 2 -r .stack/recovery/stats -s 1 -b 0

Steps: :class:`TickSource` on ``market.trades.raw`` and ``market.book_ticker.raw``
(``read_committed``; source partition ``n`` reads partition ``n`` of both topics with one
consumer) decodes each poll and groups its ticks by symbol: a record in our own canonical wire
form goes straight to the windows' facts (:class:`brokerflow.flows._stats_decode.FactsDecoder`),
anything else through :func:`decode_record` (fast decode, then pydantic; refused ->
``dead-letters-v1`` as a ``DeadLetter`` with its reason; the flow never crashes on input) ->
``stateful`` keyed by symbol, one :class:`TickBatch` per symbol and poll, driving one
:class:`brokerflow.windows.SymbolWindows` (``add_facts``: integer event times, one close per
batch) -> closed bars to Kafka (``market-bars-v1``), MongoDB and Redis, written at the same time
(:class:`BarStoresSink`); late ticks, unchanged, to ``market-late-ticks-v1`` (counted in
``window_late_events_dropped_total{flow="stats"}`` and ``window_lateness_seconds``).

Why whole batches: a Bytewax step per tick, a ``KafkaSourceMessage`` and a pydantic model per
tick cost more than the window maths; BENCHMARKS.md ("Stats flow") has the figures.

Live, a symbol that goes quiet still gets its last bars: the windows step asks Bytewax to call
back (``notify_at``) when every stream of the symbol has been silent for more than
``STATS_IDLE_STREAM_TIMEOUT_S``; its open windows then close as if its event clock had kept
pace with the wall clock (:meth:`brokerflow.windows.SymbolWindows.close_idle`).

Metrics: ``python -m brokerflow.flows.stats`` serves them on ``METRICS_PORT`` (0: off).

Delivery: MongoDB and Redis writes are idempotent, so the replay after a crash (Bytewax resumes
from the last snapshot and re-emits that epoch's output) changes nothing: the same run with or
without a ``kill -9`` leaves the same documents and keys, except for ``computedTime`` (the wall
clock at which a bar was first closed; the first write wins). ``market-bars-v1`` is at least
once: a replayed bar is published again, identical but for ``computedTime``; readers keep one per
(symbol, window, venue, windowStart, revision).

Recovery state: the source's snapshot is ``{topic: next offset}`` per partition number; the
windows step is ``symbol_windows`` (a recovery directory written by the earlier
``datetime``-based versions, whose states were under other step names, is not read: the flow
then starts from offset 0 and rewrites the same bars, harmless since every write is idempotent).

MongoDB layout: collection ``STATS_MONGO_COLLECTION`` (``bars``), one document per bar, the
``BarClosed`` wire fields (decimals and times as strings) with ``_id`` =
``"{symbol}|{window}|{venue}|{windowStart}"`` and a unique index on (symbol, window, venue,
windowStart). A bar is inserted; one already there (a replay) is upserted with ``$set`` for
the bar and ``$setOnInsert`` for ``computedTime``, in commands of at most 50 (see
:data:`MONGO_BULK_CHUNK`). The index is created only when missing.

Redis layout (every key behind ``STATS_REDIS_PREFIX``):

- ``bars:latest:{symbol}:{window}``: hash of the newest bar's wire fields (null -> ``""``); only
  replaced by a bar with a later ``windowStart``.
- ``bars:recent:{symbol}:{window}``: sorted set of bar JSON scored by ``windowStart`` in epoch
  milliseconds, trimmed to the newest ``STATS_RECENT_BARS``; one member per window (first write
  wins).
- ``market:last_price``: hash symbol -> close of the newest bar with trades of the shortest
  window (the exchange's price bands read it); ``market:last_price_time``: hash symbol -> that
  bar's ``windowEnd``. Never moved back by an older bar.

One venue per symbol in Redis, the symbol's market: the exchange's own bars (venue
``BROKERFLOW``) are cached only for symbols whose venue has no trade feed here (the B3 stocks);
a crypto pair's cache stays Binance's, and its exchange bars are in MongoDB and on the topic.

Partitioning: every record we produce is keyed by symbol (dead letters by source) through
librdkafka with ``partitioner=murmur2_random``, the Java client's and aiokafka's murmur2 hash, so
a symbol lands on the same partition whichever client produced it (librdkafka's default,
``consistent_random``, is CRC32 and would not).

Why every sink waits for its writes: Bytewax sinks are synchronous (``write_batch`` runs on the
worker thread and must have written when it returns, or a snapshot could get ahead of the
stores). Redis uses the blocking client; MongoDB PyMongo's async client on a loop thread of the
sink's own (the blocking client's monitor threads delayed every exit by up to 0.5 s); the bars'
Kafka producer is flushed (acknowledged) per batch.
"""

from __future__ import annotations

import json
import logging
import pickle
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, Source, StatefulSourcePartition
from bytewax.operators import StatefulLogic
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    Sink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from pydantic import ValidationError

from brokerflow.errors import SchemaError
from brokerflow.flows._kafka import READ_COMMITTED
from brokerflow.flows._kafka import producer_config as shared_producer_config
from brokerflow.flows._stats_decode import FactsDecoder
from brokerflow.instruments import load_instruments
from brokerflow.matching.marketdata import EXCHANGE_VENUE, market_trade
from brokerflow.metrics import (
    DEAD_LETTERS,
    WINDOW_LATE_EVENTS_DROPPED,
    WINDOW_LATENESS,
    serve_metrics,
)
from brokerflow.schemas import decode
from brokerflow.schemas.deadletter import DeadLetter
from brokerflow.schemas.fastpath import fast_decode
from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.stats import BarClosed, BarWindow
from brokerflow.schemas.trades import TradeExecuted
from brokerflow.settings import Settings
from brokerflow.topics import catalog
from brokerflow.windows import (
    LateReason,
    SymbolWindows,
    Tick,
    TickFacts,
    WindowsConfig,
    facts_of,
)

__all__ = [
    "FLOW_NAME",
    "BarStoresSink",
    "KafkaBarSink",
    "LateOut",
    "MongoBarSink",
    "RedisBarSink",
    "TickBatch",
    "TickIn",
    "TickSource",
    "bar_document_id",
    "build_flow",
    "clear_outputs",
    "consumer_config",
    "decode_batch",
    "decode_record",
    "flow",
    "group_batch",
    "main",
    "producer_config",
    "windows_config",
]

log = logging.getLogger(__name__)

FLOW_NAME = "stats"


# --- records between steps ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TickIn:
    """A decoded tick with its original bytes (a late tick is forwarded unchanged)."""

    tick: Tick
    key: bytes | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class LateOut:
    """A late tick on its way to the late topic: its original key and bytes, and by how much."""

    symbol: str
    reason: LateReason
    lateness: timedelta
    key: bytes | None
    raw: bytes


class TickBatch:
    """One symbol's ticks (as window facts) from one poll, in arrival order, with keys and bytes.

    The unit the windows step receives: one Bytewax item (and one wall-clock read, one frontier
    pass, one close) per symbol and poll instead of per tick. Parallel lists, not a record per
    tick: building one object per tick costs more than the windows' own work on it.
    """

    __slots__ = ("keys", "raws", "ticks")

    def __init__(self) -> None:
        self.ticks: list[TickFacts] = []
        self.keys: list[bytes | None] = []
        self.raws: list[bytes] = []

    def __len__(self) -> int:
        return len(self.ticks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TickBatch):
            return NotImplemented
        return (self.ticks, self.keys, self.raws) == (other.ticks, other.keys, other.raws)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TickBatch({len(self.ticks)} ticks)"


#: What the decode step emits: ``(symbol, ticks of that symbol)`` or a dead letter.
BatchItem = tuple[str, TickBatch] | DeadLetter


# --- configuration ------------------------------------------------------------------------------
def windows_config(settings: Settings) -> WindowsConfig:
    return WindowsConfig(
        windows=tuple(BarWindow(label) for label in settings.stats_windows),
        allowed_lateness=timedelta(seconds=settings.stats_allowed_lateness_s),
        idle_stream_timeout=timedelta(seconds=settings.stats_idle_stream_timeout_s),
    )


def consumer_config(settings: Settings | None = None) -> dict[str, str]:
    """librdkafka consumer properties added to ours (partitions are assigned, no group).

    Read committed only; ``auto.offset.reset=earliest``: the source starts at offset 0 rather
    than at the logical ``BEGINNING``, which librdkafka resolves with a delayed offset query
    (0.5 s before the first fetch), and a start (or resumed) offset the retention has already
    deleted then restarts at the oldest record instead of jumping to the end. When the flow stops
    at the end of its input (``STATS_STOP_AT_END``), fetches wait at most 10 ms for data, so
    the end of a partition is seen at once rather than after librdkafka's 500 ms default.
    """
    config = {**READ_COMMITTED, "auto.offset.reset": "earliest"}
    if settings is not None and settings.stats_stop_at_end:
        config["fetch.wait.max.ms"] = "10"
    return config


def producer_config(settings: Settings) -> dict[str, str]:
    """The shared producer properties, without lingering: Bytewax flushes after every batch."""
    return shared_producer_config(settings, linger_ms=0)


# --- decode -------------------------------------------------------------------------------------
_US = timedelta(microseconds=1)


def _now() -> datetime:
    return datetime.now(UTC)


def decode_record(
    msg: KafkaSourceMessage[bytes | None, bytes | None],
    received_at: datetime | None = None,
    expected: Mapping[str, type[Trade] | type[BestBidAsk]] | None = None,
) -> TickIn | DeadLetter:
    """A Kafka record as a tick, or the dead letter that says why it is not one.

    A plainly valid ``Trade``/``BestBidAsk`` takes :func:`brokerflow.schemas.fastpath.fast_decode`
    (same model, no pydantic); anything else is validated by pydantic. ``expected`` maps a topic
    to the class it carries: such a record is parsed straight into it (pydantic's JSON parser,
    twice as fast); anything that fails goes through the generic
    :func:`brokerflow.schemas.decode` for the precise refusal.
    """
    raw = msg.value if msg.value is not None else b""
    # The common case: a plainly valid Trade/BestBidAsk, built exactly as pydantic would (on
    # whichever topic: the generic path below would build the same model).
    tick = fast_decode(raw)
    if tick is not None:
        return TickIn(tick, msg.key, raw)
    cls = expected.get(msg.topic or "") if expected else None
    if cls is not None:
        try:
            return TickIn(cls.model_validate_json(raw), msg.key, raw)
        except ValidationError:
            pass
    common: dict[str, Any] = {
        "source": msg.topic or "unknown",
        "payload": raw,
        "key": msg.key,
        "partition": msg.partition,
        "offset": msg.offset,
        "event_time": received_at or _now(),
    }
    try:
        message = decode(raw)
    except SchemaError as error:
        return DeadLetter.from_error(error, **common)
    if isinstance(message, TradeExecuted):  # the exchange's own print, venue BROKERFLOW
        message = market_trade(message)
    if not isinstance(message, Trade | BestBidAsk):
        return DeadLetter.from_payload(
            reason="UNEXPECTED_TYPE",
            detail=f"the stats flow reads Trade and BestBidAsk, not {message.type}",
            fields=("type",),
            **common,
        )
    return TickIn(message, msg.key, raw)


def decode_batch(
    batch: Iterable[KafkaSourceMessage[bytes | None, bytes | None]],
    received_at: datetime,
    expected: Mapping[str, type[Trade] | type[BestBidAsk]] | None = None,
) -> list[tuple[str, TickIn] | DeadLetter]:
    """:func:`decode_record` over a batch: ticks as ``(symbol, tick)``, dead letters as they are.

    ``received_at`` (the dead letters' ``eventTime``) is read once per batch.
    """
    out: list[tuple[str, TickIn] | DeadLetter] = []
    append = out.append
    for msg in batch:
        raw = msg.value
        tick = fast_decode(raw) if raw is not None else None
        if tick is not None:
            append((tick.symbol, TickIn(tick, msg.key, raw)))  # type: ignore[arg-type]
            continue
        item = decode_record(msg, received_at, expected)
        append((item.tick.symbol, item) if isinstance(item, TickIn) else item)
    return out


def _model_path(
    msg: KafkaSourceMessage[bytes | None, bytes | None],
    received: datetime,
    expected: Mapping[str, type[Trade] | type[BestBidAsk]] | None,
) -> TickFacts | DeadLetter:
    """A record the canonical decoder did not take: the model's facts, or the dead letter."""
    item = decode_record(msg, received, expected)
    return facts_of(item.tick) if isinstance(item, TickIn) else item


class TickGrouper:
    """Records decoded into window facts grouped by symbol (arrival order kept), and dead letters.

    Canonical records take :class:`FactsDecoder`; the rest :func:`decode_record`, for which
    ``received_at`` is called once (the dead letter's ``eventTime``) and ``message`` builds the
    source message only then. One grouping for :func:`group_batch` and the Kafka source's poll.
    """

    __slots__ = ("_decode", "_expected", "_groups", "_out", "_received", "_received_at")

    def __init__(
        self,
        received_at: Callable[[], datetime],
        expected: Mapping[str, type[Trade] | type[BestBidAsk]] | None,
        decoder: FactsDecoder,
    ) -> None:
        self._decode = decoder.decode
        self._received_at, self._expected = received_at, expected
        self._received: datetime | None = None
        self._out: list[BatchItem] = []
        self._groups: dict[str, TickBatch] = {}

    def add(
        self,
        key: bytes | None,
        raw: bytes | None,
        message: Callable[[], KafkaSourceMessage[bytes | None, bytes | None]],
    ) -> None:
        decoded = self._decode(raw) if raw is not None else None
        if decoded is None:
            if self._received is None:
                self._received = self._received_at()
            facts = _model_path(message(), self._received, self._expected)
            if isinstance(facts, DeadLetter):
                self._out.append(facts)
                return
            symbol = facts[3]
        else:
            symbol, facts = decoded
        group = self._groups.get(symbol)
        if group is None:
            group = self._groups[symbol] = TickBatch()
        group.ticks.append(facts)
        group.keys.append(key)
        group.raws.append(raw)  # type: ignore[arg-type]

    def items(self, head: Iterable[BatchItem] = ()) -> list[BatchItem]:
        """``head`` (e.g. consumer errors), the dead letters, then one group per symbol."""
        return [*head, *self._out, *self._groups.items()]


def group_batch(
    batch: Iterable[KafkaSourceMessage[bytes | None, bytes | None]],
    received_at: Callable[[], datetime],
    expected: Mapping[str, type[Trade] | type[BestBidAsk]] | None = None,
    decoder: FactsDecoder | None = None,
) -> list[BatchItem]:
    """Decode a batch into window facts grouped by symbol (arrival order kept), and dead letters
    (see :class:`TickGrouper`)."""
    grouper = TickGrouper(received_at, expected, decoder or FactsDecoder())
    for msg in batch:
        grouper.add(msg.key, msg.value, lambda msg=msg: msg)
    return grouper.items()


def _source_message(msg: Any) -> KafkaSourceMessage[bytes | None, bytes | None]:
    """A confluent-kafka record as Bytewax's message type (only for a record the fast decoder
    refused: the model path and its dead letter need it)."""
    return KafkaSourceMessage(
        key=msg.key(),
        value=msg.value(),
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
    )


# --- the Kafka source ---------------------------------------------------------------------------
class _TickPartition(StatefulSourcePartition[BatchItem, dict[str, int]]):
    """Partition ``n`` of every input topic, read by one consumer, decoded and grouped per poll.

    Why not Bytewax's ``KafkaSource``: it builds a ``KafkaSourceMessage`` per record and runs a
    Python step per record to split errors, which cost as much as decoding the tick. Here a poll
    of up to ``batch_size`` records becomes one item per symbol. The same partition number of
    both topics holds the same symbols (both keyed by symbol, murmur2), so one consumer serves
    both; correctness does not depend on it (the windows step is keyed by symbol).

    The snapshot is ``{topic: next offset}``; a resumed partition starts there.
    """

    def __init__(
        self,
        config: dict[str, Any],
        assignments: list[tuple[str, int]],
        resume_state: dict[str, int] | None,
        batch_size: int,
        tail: bool,
        clock: Callable[[], datetime],
        expected: Mapping[str, type[Trade] | type[BestBidAsk]],
    ) -> None:
        from confluent_kafka import Consumer, TopicPartition

        # Offset 0, not OFFSET_BEGINNING: see consumer_config (auto.offset.reset=earliest).
        self._offsets: dict[str, int] = {
            topic: (resume_state or {}).get(topic, 0) for topic, _ in assignments
        }
        self._consumer = Consumer(config)
        self._consumer.assign(
            [TopicPartition(topic, index, self._offsets[topic]) for topic, index in assignments]
        )
        self._batch_size, self._tail = batch_size, tail
        self._clock, self._expected = clock, expected
        self._at_end: set[str] = set()
        self._topics = len(assignments)
        self._awake: datetime | None = None
        self._decoder = FactsDecoder()

    def next_batch(self) -> list[BatchItem]:
        from confluent_kafka import KafkaError, TopicPartition

        if not self._tail and len(self._at_end) == self._topics:
            raise StopIteration
        messages = self._consumer.consume(self._batch_size, 0.001)
        # Nothing there: let Bytewax sleep a little instead of spinning on the poll.
        self._awake = None if messages else _now() + _IDLE_POLL
        errors: list[BatchItem] = []
        grouper = TickGrouper(self._clock, self._expected, self._decoder)
        offsets, at_end = self._offsets, self._at_end
        last: dict[str, Any] = {}  # per topic, its last record here: the next offset after it
        for msg in messages:
            topic = msg.topic()
            if at_end and topic in at_end:
                continue  # read to its end already (stop-at-end mode): stop there
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if not self._tail:
                        at_end.add(topic)
                        self._consumer.pause([TopicPartition(topic, msg.partition())])
                    continue
                errors.append(_consumer_error_letter(msg, error))
                continue
            last[topic] = msg
            grouper.add(msg.key(), msg.value(), lambda msg=msg: _source_message(msg))
        for topic, msg in last.items():
            offsets[topic] = msg.offset() + 1
        return grouper.items(errors)

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> dict[str, int]:
        return dict(self._offsets)

    def close(self) -> None:
        self._consumer.close()


#: How long the source waits before polling again after an empty poll.
_IDLE_POLL = timedelta(milliseconds=5)


def _consumer_error_letter(msg: Any, error: Any) -> DeadLetter:
    partition, offset = msg.partition(), msg.offset()
    return DeadLetter.from_payload(
        source=msg.topic() or "unknown",
        reason="KAFKA_ERROR",
        detail=str(error),
        payload=msg.value() or b"",
        key=msg.key(),
        partition=partition if partition is not None and partition >= 0 else None,
        offset=offset if offset is not None and offset >= 0 else None,
        event_time=_now(),
    )


class TickSource(FixedPartitionedSource[BatchItem, dict[str, int]]):
    """The input topics as :class:`TickBatch` items per symbol (see :class:`_TickPartition`).

    Partitions are named by Kafka partition number: ``"3"`` reads partition 3 of every input
    topic that has one. Offsets are kept in Bytewax snapshots (no consumer group).
    """

    def __init__(
        self,
        brokers: str,
        topics: list[str],
        *,
        tail: bool,
        batch_size: int,
        add_config: Mapping[str, str],
        clock: Callable[[], datetime],
        expected: Mapping[str, type[Trade] | type[BestBidAsk]],
        optional: Iterable[str] = (),
    ) -> None:
        self.brokers, self.topics, self.tail, self.batch_size = brokers, topics, tail, batch_size
        self.add_config, self.clock, self.expected = dict(add_config), clock, expected
        #: Topics read when they exist (the exchange's trades: no exchange, no trades).
        self.optional = set(optional)
        self._found: dict[str, list[int]] | None = None

    def _partitions(self) -> dict[str, list[int]]:
        """Partition numbers per topic: one metadata request per process, not one per part."""
        if self._found is None:
            from confluent_kafka.admin import AdminClient

            client = AdminClient({"bootstrap.servers": self.brokers})
            found: dict[str, list[int]] = {}
            for topic in self.topics:
                metadata = client.list_topics(topic, timeout=10).topics[topic]
                if metadata.error is not None and topic in self.optional:
                    log.warning("stats: %s does not exist; not reading it", topic)
                    continue
                if metadata.error is not None:
                    raise RuntimeError(f"cannot list the partitions of {topic!r}: {metadata.error}")
                found[topic] = sorted(metadata.partitions)
            self._found = found
        return self._found

    def list_parts(self) -> list[str]:
        numbers = {index for indexes in self._partitions().values() for index in indexes}
        return [str(index) for index in sorted(numbers)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: dict[str, int] | None
    ) -> _TickPartition:
        index = int(for_part)
        assignments = [
            (topic, index) for topic, indexes in self._partitions().items() if index in indexes
        ]
        config = {
            "bootstrap.servers": self.brokers,
            "group.id": "brokerflow-stats-unused",  # offsets live in the snapshots
            "enable.auto.commit": "false",
            "enable.partition.eof": str(not self.tail).lower(),
            **self.add_config,
        }
        return _TickPartition(
            config,
            assignments,
            resume_state,
            self.batch_size,
            self.tail,
            self.clock,
            self.expected,
        )


# --- the stateful step --------------------------------------------------------------------------
class WindowsLogic(StatefulLogic[TickBatch, BarClosed | LateOut, bytes]):
    """Drives one symbol's :class:`SymbolWindows`; the snapshot is its pickle (immutable bytes).

    An item is a :class:`TickBatch`: one wall-clock read and one close per batch.
    """

    def __init__(
        self,
        config: WindowsConfig,
        resume_state: bytes | None,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self._now = now
        if resume_state is None:
            self.windows = SymbolWindows(config)
        else:
            self.windows = pickle.loads(resume_state)  # our own snapshot, never foreign bytes
            self.windows.config = config
            self.windows.resumed(now())

    def on_item(self, value: TickBatch) -> tuple[Iterable[BarClosed | LateOut], bool]:
        ticks = value.ticks
        bars, late = self.windows.add_facts(ticks, self._now())
        if not late:
            return bars, StatefulLogic.RETAIN
        out: list[BarClosed | LateOut] = list(bars)
        keys, raws = value.keys, value.raws
        out += [
            LateOut(ticks[index][3], reason, _US * behind, keys[index], raws[index])
            for index, reason, behind in late
        ]
        return out, StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[BarClosed | LateOut], bool]:
        # Live and quiet: close what the symbol's silence closes (SymbolWindows.close_idle).
        return self.windows.close_idle(self._now()), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[BarClosed | LateOut], bool]:
        # Keep the state: its closed frontier makes a later tick for a flushed window late.
        return self.windows.flush(self._now()), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        """The idle-close deadline, on Bytewax's clock (the injected one may differ in tests)."""
        deadline = self.windows.idle_deadline()
        if deadline is None:
            return None
        if self._now is _now:
            return deadline
        return _now() + (deadline - self._now())

    def snapshot(self) -> bytes:
        return pickle.dumps(self.windows, protocol=pickle.HIGHEST_PROTOCOL)


# --- sinks --------------------------------------------------------------------------------------
#: Upserts per ``update`` command. FerretDB 1.24 (SQLite) deadlocks the whole server on one
#: command of 100 or more updates that match existing documents (a replay's case); 50 is safe.
MONGO_BULK_CHUNK = 50
_DUPLICATE_KEY = 11000

#: The fields that identify a bar (the unique index), in index order.
BAR_KEY_FIELDS = ("symbol", "window", "venue", "windowStart")
BAR_INDEX_NAME = "bar_identity"


def bar_document_id(bar: BarClosed) -> str:
    wire = bar.to_wire()
    return f"{bar.symbol}|{bar.window.value}|{bar.venue}|{wire['windowStart']}"


class _LoopThread:
    """An asyncio loop on a thread of its own, for PyMongo's async client in a sync sink.

    Why not the sync ``MongoClient``: its monitor threads sleep in 0.5 s steps and are joined
    at interpreter exit, which added up to half a second to every run of the flow; the async
    client's monitors are tasks, cancelled at once by ``close``.
    """

    def __init__(self, name: str) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Any) -> Any:
        """Run ``coroutine`` on the loop and wait for its result (or exception)."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _MongoBarPartition(StatelessSinkPartition[BarClosed]):
    def __init__(self, url: str, database: str, collection: str, *, ensure_index: bool) -> None:
        self._loop = _LoopThread("bar-mongo")
        self._client: Any = None
        self._loop.run(self._open(url, database, collection, ensure_index))

    async def _open(self, url: str, database: str, collection: str, ensure_index: bool) -> None:
        from pymongo import ASCENDING, AsyncMongoClient

        self._client = AsyncMongoClient(url, serverSelectionTimeoutMS=10_000)
        self._collection = self._client[database][collection]
        # Create only when missing: on FerretDB 1.24 (SQLite) createIndexes for an index that
        # already exists can deadlock the whole server.
        if ensure_index and BAR_INDEX_NAME not in await self._collection.index_information():
            await self._collection.create_index(
                [(name, ASCENDING) for name in BAR_KEY_FIELDS], unique=True, name=BAR_INDEX_NAME
            )

    def write_batch(self, items: list[BarClosed]) -> None:
        if items:
            self._loop.run(self._write({bar_document_id(bar): bar.to_wire() for bar in items}))

    async def _write(self, documents: dict[str, dict[str, Any]]) -> None:
        from pymongo import UpdateOne
        from pymongo.errors import BulkWriteError

        # A bar is normally written once: insert (fast on FerretDB, where an upsert is a query
        # plus a write); the ones already there (a replay) are upserted without computedTime,
        # so the first write's stays.
        existing: list[str] = []
        try:
            await self._collection.insert_many(
                [{"_id": key, **doc} for key, doc in documents.items()], ordered=False
            )
        except BulkWriteError as error:
            keys = list(documents)
            for failure in error.details.get("writeErrors", []):
                if failure.get("code") != _DUPLICATE_KEY:
                    raise
                existing.append(keys[failure["index"]])
        requests = []
        for key in existing:
            doc = dict(documents[key])
            computed = doc.pop("computedTime")
            requests.append(
                UpdateOne(
                    {"_id": key},
                    {"$set": doc, "$setOnInsert": {"computedTime": computed}},
                    upsert=True,
                )
            )
        for first in range(0, len(requests), MONGO_BULK_CHUNK):
            await self._collection.bulk_write(
                requests[first : first + MONGO_BULK_CHUNK], ordered=False
            )

    def close(self) -> None:
        if self._client is not None:
            self._loop.run(self._client.close())
        self._loop.stop()


class MongoBarSink(DynamicSink[BarClosed]):
    """Idempotent upserts of closed bars, one client per worker (see the module docstring).

    Worker 0 creates the unique index when it is missing.
    """

    def __init__(self, url: str, database: str, collection: str) -> None:
        self.url, self.database, self.collection = url, database, collection

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MongoBarPartition:
        return _MongoBarPartition(
            self.url, self.database, self.collection, ensure_index=worker_index == 0
        )


# KEYS: latest hash, recent zset, last price hash, last price time hash.
# ARGV: bar json, windowStart ms, recent max, symbol, close ('' if none), windowStart iso,
#       windowEnd iso, update last price ('1'/'0'), then field/value pairs of the latest hash.
_REDIS_WRITE_BAR = """
local score = tonumber(ARGV[2])
if redis.call('ZCOUNT', KEYS[2], score, score) == 0 then
  redis.call('ZADD', KEYS[2], score, ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[3]) + 1))
end
local current = redis.call('HGET', KEYS[1], 'windowStart')
if (not current) or current < ARGV[6] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 9))
end
if ARGV[8] == '1' and ARGV[5] ~= '' then
  local seen = redis.call('HGET', KEYS[4], ARGV[4])
  if (not seen) or seen < ARGV[7] then
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
    redis.call('HSET', KEYS[4], ARGV[4], ARGV[7])
  end
end
return 1
"""


def redis_keys(prefix: str, bar: BarClosed) -> tuple[str, str, str, str]:
    """The four keys one bar touches (see the module docstring)."""
    return (
        f"{prefix}bars:latest:{bar.symbol}:{bar.window.value}",
        f"{prefix}bars:recent:{bar.symbol}:{bar.window.value}",
        f"{prefix}market:last_price",
        f"{prefix}market:last_price_time",
    )


#: Venues whose trades reach the stats flow from their own feed: their symbols' Redis cache is
#: theirs, not the exchange's.
TRADE_FEED_VENUES = frozenset({"BINANCE"})


class _RedisBarPartition(StatelessSinkPartition[BarClosed]):
    def __init__(
        self,
        url: str,
        prefix: str,
        recent: int,
        price_window: BarWindow,
        elsewhere: frozenset[str] = frozenset(),
    ) -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(_REDIS_WRITE_BAR)
        self._prefix, self._recent, self._price_window = prefix, recent, price_window
        self._elsewhere = elsewhere

    def write_batch(self, items: list[BarClosed]) -> None:
        items = [
            bar
            for bar in items
            if not (bar.venue == EXCHANGE_VENUE and bar.symbol in self._elsewhere)
        ]
        if not items:
            return
        pipe = self._client.pipeline(transaction=False)
        for bar in items:
            wire = bar.to_wire()
            fields: list[str] = []
            for name, value in wire.items():
                fields += [name, "" if value is None else str(value)]
            start_ms = int(bar.window_start.timestamp() * 1000)
            self._script(
                keys=list(redis_keys(self._prefix, bar)),
                args=[
                    json.dumps(wire, separators=(",", ":")),
                    start_ms,
                    self._recent,
                    bar.symbol,
                    wire["close"] or "",
                    wire["windowStart"],
                    wire["windowEnd"],
                    "1" if bar.window is self._price_window else "0",
                    *fields,
                ],
                client=pipe,
            )
        pipe.execute()

    def close(self) -> None:
        self._client.close()


class RedisBarSink(DynamicSink[BarClosed]):
    """Idempotent writes of the market cache (see the module docstring for the keys)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        recent: int,
        price_window: BarWindow,
        elsewhere: Iterable[str] = (),
    ) -> None:
        self.url, self.prefix, self.recent, self.price_window = url, prefix, recent, price_window
        #: Symbols priced by a venue with its own trade feed: their exchange bars are not cached.
        self.elsewhere = frozenset(elsewhere)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisBarPartition:
        return _RedisBarPartition(
            self.url, self.prefix, self.recent, self.price_window, self.elsewhere
        )


class _KafkaBarPartition(StatelessSinkPartition[BarClosed]):
    def __init__(self, brokers: str, topic: str, config: Mapping[str, str]) -> None:
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": brokers, **config})
        self._topic = topic

    def write_batch(self, items: list[BarClosed]) -> None:
        produce, topic, failed = self._producer.produce, self._topic, []

        def delivered(error: Any, _msg: Any) -> None:
            if error is not None:
                failed.append(error)

        for bar in items:
            produce(topic, bar.to_json_bytes(), bar.symbol.encode(), on_delivery=delivered)
        self._producer.flush()
        if failed:
            raise RuntimeError(f"{len(failed)} bars not delivered to {topic}: {failed[0]}")

    def close(self) -> None:
        self._producer.flush()


class KafkaBarSink(DynamicSink[BarClosed]):
    """Bars to ``market-bars-v1`` keyed by symbol, acknowledged before ``write_batch`` returns."""

    def __init__(self, brokers: str, topic: str, config: Mapping[str, str]) -> None:
        self.brokers, self.topic, self.config = brokers, topic, dict(config)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaBarPartition:
        return _KafkaBarPartition(self.brokers, self.topic, self.config)


class _BarStoresPartition(StatefulSinkPartition[BarClosed, None]):
    def __init__(self, sinks: list[DynamicSink[BarClosed]], step_id: str) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(len(sinks), thread_name_prefix="bar-store")
        # Built on the helper threads (imports, connections, the MongoDB index): the flow goes
        # on meanwhile; the first write waits for them. Index 0 of 1: MongoBarSink creates its
        # index there.
        self._building = [self._pool.submit(sink.build, step_id, 0, 1) for sink in sinks]
        self._parts: list[StatelessSinkPartition[BarClosed]] = []
        self._pending: list[Future[None]] = []

    def write_batch(self, items: list[BarClosed]) -> None:
        if not items:
            return
        self._wait()  # one batch in flight at most: the stores see batches in order
        self._pending = [self._pool.submit(part.write_batch, items) for part in self._parts]

    def _wait(self) -> None:
        if self._building:
            building, self._building = self._building, []
            self._parts = [future.result() for future in building]
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()  # a store's error is raised here, on the worker thread

    def snapshot(self) -> None:
        # Called at the end of every epoch, before Bytewax commits it: every bar of the epoch
        # is in every store first, so a restart never resumes past a bar not written.
        self._wait()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown()
            for part in self._parts:
                part.close()


class BarStoresSink(FixedPartitionedSink[BarClosed, None]):
    """Kafka, MongoDB and Redis written at the same time, while the flow goes on computing.

    The stores are other processes: waiting for each write in turn was a fifth of the flow's
    time. Each batch goes to all of them on helper threads; the next batch (or the end of the
    epoch, or of the input) waits for it. Waiting in :meth:`_BarStoresPartition.snapshot` keeps
    the guarantee of a synchronous sink: Bytewax commits an epoch only after every bar of it is
    written. One partition (``"bars"``): every worker's bars go to one writer.
    """

    def __init__(self, sinks: list[DynamicSink[BarClosed]]) -> None:
        self.sinks = sinks

    def list_parts(self) -> list[str]:
        return ["bars"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _BarStoresPartition:
        return _BarStoresPartition(self.sinks, step_id)


# --- the dataflow -------------------------------------------------------------------------------
def _count_late(out: LateOut) -> None:
    WINDOW_LATE_EVENTS_DROPPED.labels(flow=FLOW_NAME).inc()
    WINDOW_LATENESS.labels(flow=FLOW_NAME).observe(out.lateness.total_seconds())


def _count_dead(letter: DeadLetter) -> None:
    DEAD_LETTERS.labels(source=FLOW_NAME, reason=letter.reason).inc()


def input_topics(settings: Settings) -> list[str]:
    """Binance's trades and book tickers, and the exchange's trades unless turned off."""
    topics = catalog(settings)
    names = [topics.market_trades.name, topics.market_book_ticker.name]
    if settings.stats_exchange_trades:
        names.append(topics.trade_executions.name)
    return names


def build_flow(
    settings: Settings,
    *,
    source: Source[Any] | None = None,
    kafka_sink: Sink[Any] | None = None,
    bar_sinks: Iterable[Sink[BarClosed]] | None = None,
    now: Callable[[], datetime] | None = None,
) -> Dataflow:
    """The stats dataflow for these settings.

    Tests pass an in-memory ``source`` (of :class:`KafkaSourceMessage`), ``kafka_sink`` (receives
    every :class:`KafkaSinkMessage`: bars, late ticks, dead letters) and ``bar_sinks``; by default
    they are Kafka, and MongoDB + Redis.
    """
    clock = now or _now
    topics = catalog(settings)
    config = windows_config(settings)
    flow = Dataflow(f"brokerflow_{FLOW_NAME}")

    expected = {topics.market_trades.name: Trade, topics.market_book_ticker.name: BestBidAsk}
    batches: Any
    if source is None:
        batches = op.input(
            "ticks_in",
            flow,
            TickSource(
                settings.kafka_bootstrap_servers,
                input_topics(settings),
                optional=[topics.trade_executions.name],
                tail=not settings.stats_stop_at_end,
                batch_size=settings.stats_kafka_batch_size,
                add_config=consumer_config(settings),
                clock=clock,
                expected=expected,
            ),
        )
    else:
        records = op.input("ticks_in", flow, source)
        # Decode a whole batch and group its ticks by symbol, as TickSource does.
        decoder = FactsDecoder()
        batches = op.flat_map_batch(
            "decode", records, lambda batch: group_batch(batch, clock, expected, decoder)
        )
    split = op.branch("split_dead_letters", batches, lambda item: type(item) is tuple)
    keyed: Any = split.trues
    dead: Any = split.falses

    # A new step name: snapshots of the datetime-based state of earlier versions are not read
    # (a fresh state replays from the source's offsets; every write is idempotent).
    windowed = op.stateful(
        "symbol_windows", keyed, lambda resume: WindowsLogic(config, resume, clock)
    )
    outputs = op.key_rm("unkey", windowed)
    by_kind = op.branch("split_late", outputs, lambda item: isinstance(item, BarClosed))
    bars: Any = by_kind.trues
    late: Any = by_kind.falses

    late = op.inspect("count_late", late, lambda _step, item: _count_late(item))
    dead = op.inspect("count_dead", dead, lambda _step, item: _count_dead(item))

    late_messages = op.map(
        "late_messages",
        late,
        lambda out: KafkaSinkMessage(
            key=out.key if out.key is not None else out.symbol.encode(),
            value=out.raw,
            topic=topics.market_late_ticks.name,
        ),
    )
    dead_messages = op.map(
        "dead_letter_messages",
        dead,
        lambda letter: KafkaSinkMessage(
            key=letter.source.encode(),
            value=letter.to_json_bytes(),
            topic=topics.dead_letters.name,
        ),
    )
    # By default bars reach Kafka with the other bar stores, at the same time
    # (BarStoresSink); a test's kafka_sink receives them with the rest.
    bars_with_stores = kafka_sink is None and bar_sinks is None
    if bars_with_stores:
        to_kafka = op.merge("to_kafka", late_messages, dead_messages)
    else:
        bar_messages = op.map(
            "bar_messages",
            bars,
            lambda bar: KafkaSinkMessage(
                key=bar.symbol.encode(), value=bar.to_json_bytes(), topic=topics.market_bars.name
            ),
        )
        to_kafka = op.merge("to_kafka", bar_messages, late_messages, dead_messages)
    if kafka_sink is None:
        kop.output(
            "kafka_out",
            to_kafka,
            brokers=settings.kafka_bootstrap_servers.split(","),
            topic=topics.market_bars.name,  # fallback only: every message names its topic
            add_config=producer_config(settings),
        )
    else:
        op.output("kafka_out", to_kafka, kafka_sink)

    if bar_sinks is None:
        shortest = min(config.windows, key=lambda w: w.duration)
        stores = BarStoresSink(
            [
                KafkaBarSink(
                    settings.kafka_bootstrap_servers,
                    topics.market_bars.name,
                    producer_config(settings),
                ),
                MongoBarSink(
                    settings.mongo_url, settings.mongo_database, settings.stats_mongo_collection
                ),
                RedisBarSink(
                    settings.redis_url,
                    settings.stats_redis_prefix,
                    settings.stats_recent_bars,
                    shortest,
                    [i.symbol for i in load_instruments(settings) if i.venue in TRADE_FEED_VENUES],
                ),
            ]
        )
        op.output("bar_stores", op.key_on("bar_stores_key", bars, lambda _bar: "bars"), stores)
    else:
        for index, sink in enumerate(bar_sinks):
            op.output(f"bars_out_{index}", bars, sink)
    return flow


def clear_outputs(settings: Settings) -> None:
    """Drop the flow's MongoDB database and its Redis keys (``STATS_REDIS_PREFIX``): for the
    throwaway namespaces of the demo, the benchmark and the tests, never the user's own."""
    import redis
    from pymongo import MongoClient

    client: MongoClient = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(settings.mongo_database)
    finally:
        client.close()
    store = redis.Redis.from_url(settings.redis_url)
    try:
        keys = list(store.scan_iter(match=f"{settings.stats_redis_prefix}*", count=1000))
        if keys:
            store.delete(*keys)
    finally:
        store.close()


def recovery_dir(settings: Settings) -> Path:
    return Path(settings.stats_recovery_dir or settings.stack_dir / "recovery" / FLOW_NAME)


def main(argv: list[str] | None = None) -> None:
    """Run the flow with recovery on (initialising the recovery directory on first use).

    Metrics (``window_late_events_dropped_total``, ``window_lateness_seconds``,
    ``dead_letters_total``...) are served on ``METRICS_PORT``.
    """
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    del argv
    settings = Settings()
    logging.basicConfig(level=settings.log_level)
    port = serve_metrics(settings.metrics_port)
    if port is not None:
        log.info("stats flow: metrics on port %d", port)
    directory = recovery_dir(settings)
    if not directory.exists() or not any(directory.iterdir()):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)
    log.info("stats flow: recovery in %s, %d worker(s)", directory, settings.stats_workers)
    cli_main(
        build_flow(settings),
        workers_per_process=settings.stats_workers,
        epoch_interval=timedelta(seconds=settings.stats_snapshot_interval_s),
        recovery_config=RecoveryConfig(directory, timedelta(0)),
    )


#: What ``python -m bytewax.run brokerflow.flows.stats:flow`` runs (configured from the env).
flow = build_flow(Settings())

if __name__ == "__main__":
    main(sys.argv[1:])
