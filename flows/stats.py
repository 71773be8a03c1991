"""The stats dataflow: Kafka ticks -> 1 s / 1 min bars -> MongoDB, Redis and ``market-bars-v1``.

Run it (recovery on, under ``STACK_DIR/recovery/stats`` unless ``STATS_RECOVERY_DIR`` says)::

    python -m brokerflow.flows.stats
    # or with Bytewax's own runner and flags:
    python -m bytewax.recovery .stack/recovery/stats 1
    python -m bytewax.run brokerflow.flows.stats:flow -w 2 -r .stack/recovery/stats -s 1 -b 0

Steps: ``KafkaSource`` on ``market.trades.raw`` and ``market.book_ticker.raw`` (``read_committed``)
-> decode with :func:`brokerflow.schemas.decode` (anything refused -> ``dead-letters-v1`` as a
``DeadLetter`` with its reason; the flow never crashes on input) -> key by symbol -> ``stateful``
driving one :class:`brokerflow.windows.SymbolWindows` per symbol -> closed bars to MongoDB,
Redis and ``market-bars-v1``; late ticks, unchanged, to ``market-late-ticks-v1`` (counted in
``window_late_events_dropped_total{flow="stats"}``).

Why ``stateful`` and the pure core rather than ``EventClock`` + ``TumblingWindower``: one state
per symbol serves both window lengths and both input topics; the lateness rule needs a clock per
input stream (trades and book tickers are two topics whose consumption skews, so a single
per-key watermark would make "late" depend on poll timing, and restarts or ``-w 2`` would give
different bars); and the same code is unit-tested without Bytewax.

Delivery: MongoDB and Redis writes are idempotent, so the replay after a crash (Bytewax resumes
from the last snapshot and re-emits that epoch's output) changes nothing: the same run with or
without a ``kill -9`` leaves the same documents and keys, except for ``computedTime`` (the wall
clock at which a bar was first closed; the first write wins). ``market-bars-v1`` is at least
once: a replayed bar is published again, identical but for ``computedTime``; readers keep one per
(symbol, window, venue, windowStart, revision).

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

Partitioning: every record we produce is keyed by symbol (dead letters by source) through
librdkafka with ``partitioner=murmur2_random``, the Java client's and aiokafka's murmur2 hash, so
a symbol lands on the same partition whichever client produced it (librdkafka's default,
``consistent_random``, is CRC32 and would not).

Why the synchronous PyMongo and Redis clients: Bytewax sinks are synchronous (``write_batch``
runs on the worker thread and must have written when it returns, or a snapshot could get ahead
of the stores); a blocking client gives exactly that with no event loop per batch.
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
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition
from pydantic import ValidationError

from brokerflow.errors import SchemaError
from brokerflow.flows._kafka import READ_COMMITTED
from brokerflow.flows._kafka import producer_config as shared_producer_config
from brokerflow.metrics import DEAD_LETTERS, WINDOW_LATE_EVENTS_DROPPED, WINDOW_LATENESS
from brokerflow.schemas import decode
from brokerflow.schemas.deadletter import DeadLetter
from brokerflow.schemas.fastpath import fast_decode
from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.stats import BarClosed, BarWindow
from brokerflow.settings import Settings
from brokerflow.topics import catalog
from brokerflow.windows import LateTick, SymbolWindows, Tick, WindowsConfig

__all__ = [
    "FLOW_NAME",
    "LateOut",
    "MongoBarSink",
    "RedisBarSink",
    "TickIn",
    "bar_document_id",
    "build_flow",
    "consumer_config",
    "decode_batch",
    "decode_record",
    "flow",
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
    late: LateTick
    key: bytes | None
    raw: bytes


# --- configuration ------------------------------------------------------------------------------
def windows_config(settings: Settings) -> WindowsConfig:
    return WindowsConfig(
        windows=tuple(BarWindow(label) for label in settings.stats_windows),
        allowed_lateness=timedelta(seconds=settings.stats_allowed_lateness_s),
        idle_stream_timeout=timedelta(seconds=settings.stats_idle_stream_timeout_s),
    )


def consumer_config() -> dict[str, str]:
    """librdkafka consumer properties added to Bytewax's (it assigns partitions, no group)."""
    return dict(READ_COMMITTED)


def producer_config(settings: Settings) -> dict[str, str]:
    """The shared producer properties, without lingering: Bytewax flushes after every batch."""
    return shared_producer_config(settings, linger_ms=0)


# --- decode -------------------------------------------------------------------------------------
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


def _kafka_error_letter(error: Any) -> DeadLetter:
    msg = error.msg
    return DeadLetter.from_payload(
        source=msg.topic or "unknown",
        reason="KAFKA_ERROR",
        detail=str(error.err),
        payload=msg.value or b"",
        key=msg.key,
        partition=msg.partition if msg.partition is not None and msg.partition >= 0 else None,
        offset=msg.offset if msg.offset is not None and msg.offset >= 0 else None,
        event_time=_now(),
    )


# --- the stateful step --------------------------------------------------------------------------
class WindowsLogic(StatefulLogic[TickIn, BarClosed | LateOut, bytes]):
    """Drives one symbol's :class:`SymbolWindows`; the snapshot is its pickle (immutable bytes)."""

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

    def on_item(self, value: TickIn) -> tuple[Iterable[BarClosed | LateOut], bool]:
        bars, late = self.windows.add(value.tick, self._now())
        out: list[BarClosed | LateOut] = list(bars)
        if late is not None:
            out.append(LateOut(late, value.key, value.raw))
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[BarClosed | LateOut], bool]:
        # Keep the state: its closed frontier makes a later tick for a flushed window late.
        return self.windows.flush(self._now()), StatefulLogic.RETAIN

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


class _MongoBarPartition(StatelessSinkPartition[BarClosed]):
    def __init__(self, url: str, database: str, collection: str) -> None:
        from pymongo import MongoClient

        self._client: Any = MongoClient(url, serverSelectionTimeoutMS=10_000)
        self._collection = self._client[database][collection]

    def write_batch(self, items: list[BarClosed]) -> None:
        from pymongo import UpdateOne
        from pymongo.errors import BulkWriteError

        if not items:
            return
        documents = {bar_document_id(bar): bar.to_wire() for bar in items}
        # A bar is normally written once: insert (fast on FerretDB, where an upsert is a query
        # plus a write); the ones already there (a replay) are upserted without computedTime,
        # so the first write's stays.
        existing: list[str] = []
        try:
            self._collection.insert_many(
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
            self._collection.bulk_write(requests[first : first + MONGO_BULK_CHUNK], ordered=False)

    def close(self) -> None:
        self._client.close()


class MongoBarSink(DynamicSink[BarClosed]):
    """Idempotent upserts of closed bars, one client per worker (see the module docstring)."""

    def __init__(self, url: str, database: str, collection: str) -> None:
        self.url, self.database, self.collection = url, database, collection

    def ensure_indexes(self) -> None:
        from pymongo import ASCENDING, MongoClient

        client: Any = MongoClient(self.url, serverSelectionTimeoutMS=10_000)
        try:
            collection = client[self.database][self.collection]
            # Create only when missing: on FerretDB 1.24 (SQLite) createIndexes for an index that
            # already exists can deadlock the whole server.
            if BAR_INDEX_NAME not in collection.index_information():
                collection.create_index(
                    [(name, ASCENDING) for name in BAR_KEY_FIELDS],
                    unique=True,
                    name=BAR_INDEX_NAME,
                )
        finally:
            client.close()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MongoBarPartition:
        if worker_index == 0:
            self.ensure_indexes()
        return _MongoBarPartition(self.url, self.database, self.collection)


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


class _RedisBarPartition(StatelessSinkPartition[BarClosed]):
    def __init__(self, url: str, prefix: str, recent: int, price_window: BarWindow) -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(_REDIS_WRITE_BAR)
        self._prefix, self._recent, self._price_window = prefix, recent, price_window

    def write_batch(self, items: list[BarClosed]) -> None:
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

    def __init__(self, url: str, prefix: str, recent: int, price_window: BarWindow) -> None:
        self.url, self.prefix, self.recent, self.price_window = url, prefix, recent, price_window

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisBarPartition:
        return _RedisBarPartition(self.url, self.prefix, self.recent, self.price_window)


# --- the dataflow -------------------------------------------------------------------------------
def _count_late(out: LateOut) -> None:
    WINDOW_LATE_EVENTS_DROPPED.labels(flow=FLOW_NAME).inc()
    WINDOW_LATENESS.labels(flow=FLOW_NAME).observe(out.late.lateness.total_seconds())


def _count_dead(letter: DeadLetter) -> None:
    DEAD_LETTERS.labels(source=FLOW_NAME, reason=letter.reason).inc()


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

    if source is None:
        kafka_in = kop.input(
            "ticks_in",
            flow,
            brokers=settings.kafka_bootstrap_servers.split(","),
            topics=[topics.market_trades.name, topics.market_book_ticker.name],
            tail=not settings.stats_stop_at_end,
            add_config=consumer_config(),
            batch_size=settings.stats_kafka_batch_size,
        )
        records = kafka_in.oks
        kafka_errors = op.map("kafka_error_letters", kafka_in.errs, _kafka_error_letter)
    else:
        records = op.input("ticks_in", flow, source)
        kafka_errors = None

    expected = {topics.market_trades.name: Trade, topics.market_book_ticker.name: BestBidAsk}
    # One step decodes a whole batch and keys its ticks by symbol (a step per item costs more
    # than the fast decode itself); dead letters come out unkeyed.
    decoded = op.flat_map_batch(
        "decode", records, lambda batch: decode_batch(batch, clock(), expected)
    )
    split = op.branch("split_dead_letters", decoded, lambda item: type(item) is tuple)
    keyed: Any = split.trues
    dead: Any = split.falses
    if kafka_errors is not None:
        dead = op.merge("all_dead_letters", dead, kafka_errors)

    windowed = op.stateful("windows", keyed, lambda resume: WindowsLogic(config, resume, clock))
    outputs = op.key_rm("unkey", windowed)
    by_kind = op.branch("split_late", outputs, lambda item: isinstance(item, BarClosed))
    bars: Any = by_kind.trues
    late: Any = by_kind.falses

    late = op.inspect("count_late", late, lambda _step, item: _count_late(item))
    dead = op.inspect("count_dead", dead, lambda _step, item: _count_dead(item))

    bar_messages = op.map(
        "bar_messages",
        bars,
        lambda bar: KafkaSinkMessage(
            key=bar.symbol.encode(), value=bar.to_json_bytes(), topic=topics.market_bars.name
        ),
    )
    late_messages = op.map(
        "late_messages",
        late,
        lambda out: KafkaSinkMessage(
            key=out.key if out.key is not None else out.late.tick.symbol.encode(),
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
        bar_sinks = [
            MongoBarSink(
                settings.mongo_url, settings.mongo_database, settings.stats_mongo_collection
            ),
            RedisBarSink(
                settings.redis_url,
                settings.stats_redis_prefix,
                settings.stats_recent_bars,
                shortest,
            ),
        ]
    for index, sink in enumerate(bar_sinks):
        op.output(f"bars_out_{index}", bars, sink)
    return flow


def recovery_dir(settings: Settings) -> Path:
    return Path(settings.stats_recovery_dir or settings.stack_dir / "recovery" / FLOW_NAME)


def main(argv: list[str] | None = None) -> None:
    """Run the flow with recovery on (initialising the recovery directory on first use)."""
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    del argv
    settings = Settings()
    logging.basicConfig(level=settings.log_level)
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
