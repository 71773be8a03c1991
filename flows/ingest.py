"""The ingest dataflow: vendor frames -> validated, normalized records -> Kafka and MongoDB.

Run it (recovery on, under ``STACK_DIR/recovery/ingest`` unless ``INGEST_RECOVERY_DIR`` says;
``VALIDATE_ON_START`` and ``VALIDATE_ONLY`` honoured; metrics on ``METRICS_PORT``)::

    python -m brokerflow.flows.ingest                     # INGEST_SOURCE=tape: the sample tape
    TAPE_LOOP=true TAPE_SHIFT_TO_NOW=true python -m brokerflow.flows.ingest  # for ever, as now
    INGEST_SOURCE=binance python -m brokerflow.flows.ingest
    VALIDATE_ONLY=true python -m brokerflow.flows.ingest  # print the checks, exit 0 or 1
    # or with Bytewax's own runner and flags (no validation, no metrics server):
    python -m bytewax.run brokerflow.flows.ingest:flow -w 2

Shape::

    frames (TapeSource: INGEST_TAPE_PARTITIONS symbol groups, resumable by line number,
            looping and moved to now with TAPE_LOOP / TAPE_SHIFT_TO_NOW;
            BinanceSource: symbols dealt out to workers; BrapiSource: worker 0)
      -> parse           connectors.parse_frame: records, dead letters (counted), control
      -> fresh_quotes    Brapi only: a quote no newer than its symbol's last one is dropped
      -> kafka_records   Trade -> market.trades.raw, BestBidAsk -> market.book_ticker.raw,
                         Quote -> assets-market-data-v1 (key: symbol);
                         DeadLetter -> dead-letters-v1 (key: source)
      -> kafka_out       librdkafka, murmur2 partitioner, LINGER/COMPRESSION/ACKS from settings
      -> history         one raw-history document per record -> mongo_out (MongoDB)

A bad frame becomes a dead letter and the flow goes on; only Kafka refusing records stops it.

Brapi answers every poll with each ticker's latest quote, changed or not (its data refreshes
every few minutes; polls are closer), so ``fresh_quotes`` keeps, per symbol, the last
``regularMarketTime`` published (recovery snapshots it) and drops a quote that is not newer: each
quote reaches Kafka and MongoDB once, never a stale one after a newer.

Delivery: at-least-once into Kafka, exactly one document per record in MongoDB. Sinks write
synchronously, so an epoch is snapshotted only after Kafka acknowledged its records; after a
crash Bytewax resumes every tape partition at its snapshotted line and re-sends what the crash
interrupted (identical bytes: a replayed frame keeps its recorded receive time), at most
``INGEST_SNAPSHOT_INTERVAL_S`` worth; a tape shifted to now re-sends them with their ids but
moved to the new "now" (one history document each, as before). Live sources cannot rewind a
WebSocket: after a crash they resume from "now".

Kafka going away mid-run: the flow waits for it. The Kafka sink holds the batch it is writing
and librdkafka's idempotent producer (``acks=all``) retries it until the broker answers again,
so when the broker returns everything the sources handed on is delivered once, in order: nothing
lost, no duplicate. Meanwhile the worker reads no source (a tape pauses, Brapi is not polled,
WebSocket frames wait in the socket) and logs every 5 s what it holds and where Kafka should be.
A record unacknowledged for ``INGEST_KAFKA_OUTAGE_TIMEOUT_S`` (300 s; 0 waits for ever) stops
the flow with :class:`KafkaDeliveryError` naming the bootstrap servers; ``main`` then exits with
status 3 (``EXIT_KAFKA_UNAVAILABLE``) and a restart resumes from the last snapshot as after a
crash. Why wait rather than exit at once: a broker restart is routine and short, and exiting
would lose the live frames in flight (recovery cannot rewind a vendor) and re-send up to a
snapshot's worth of a tape, while waiting loses and duplicates nothing; the bound keeps a broker
that never comes back from looking like a silent hang. Both paths are tested
(``tests/integration/test_ingest_kafka_outage.py``).

MongoDB layout: collection ``INGEST_MONGO_COLLECTION`` (``market_history``), one document per
normalized record::

    {"_id": "binance|trade|BTCUSDT|5120334417", "vendor": "binance", "stream": "trade",
     "symbol": "BTCUSDT", "vendorId": "5120334417", "eventTime": "2026-...Z",
     "receiveTime": "2026-...Z", "raw": "<the vendor's frame, untouched>"}

``_id`` is ``vendor|stream|symbol|vendorId`` (trade id, book update id) or, when the vendor has
no id (Brapi quotes), ``vendor|stream|symbol|eventTime``; inserts of an existing ``_id`` are
ignored, so replaying a tape never duplicates history. Index ``by_symbol_time`` serves reads.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from brokerflow import metrics
from brokerflow.connectors import Frame, ParseResult, parse_frame, read_tape, sample_tape_path
from brokerflow.errors import ConfigError
from brokerflow.schemas.base import format_utc
from brokerflow.schemas.market import BestBidAsk, Quote, Trade
from brokerflow.settings import Settings
from brokerflow.topics import catalog

from ._ingest_sinks import (
    KafkaDeliveryError,
    KafkaRecord,
    KafkaRecordSink,
    MongoHistorySink,
    producer_config,
)
from ._ingest_sources import BinanceSource, BrapiSource, TapeSource

__all__ = [
    "EXIT_KAFKA_UNAVAILABLE",
    "FLOW_NAME",
    "Check",
    "IngestReport",
    "IngestTally",
    "IngestTopics",
    "IngestValidationError",
    "KafkaDeliveryError",
    "Parsed",
    "build_flow",
    "drop_repeated_quotes",
    "flow",
    "history_documents",
    "history_id",
    "kafka_records",
    "main",
    "parse",
    "producer_config",
    "run_ingest",
    "tape_path",
    "validate_ingest",
]

log = logging.getLogger(__name__)

FLOW_NAME = "ingest"
#: ``python -m brokerflow.flows.ingest``'s exit status when Kafka stayed away too long.
EXIT_KAFKA_UNAVAILABLE = 3


# --- records between steps ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Parsed:
    """A frame and what parsing made of it (the raw text is kept for the history)."""

    frame: Frame
    result: ParseResult


@dataclass(frozen=True, slots=True)
class IngestTopics:
    """The physical topic of each output, from the catalog (prefix and overrides applied)."""

    trades: str
    book_ticker: str
    quotes: str
    dead_letters: str

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestTopics:
        topics = catalog(settings)
        return cls(
            trades=topics.market_trades.name,
            book_ticker=topics.market_book_ticker.name,
            quotes=topics.market_quotes.name,
            dead_letters=topics.dead_letters.name,
        )

    def for_record(self, record: Trade | BestBidAsk | Quote) -> str:
        if isinstance(record, Trade):
            return self.trades
        if isinstance(record, BestBidAsk):
            return self.book_ticker
        return self.quotes

    def all(self) -> tuple[str, str, str, str]:
        return (self.trades, self.book_ticker, self.quotes, self.dead_letters)


# --- pure steps ---------------------------------------------------------------------------------
def parse(frame: Frame) -> Parsed:
    """Validate and normalize one frame (never raises on bad input; counts dead letters)."""
    return Parsed(frame, parse_frame(*frame))


def drop_repeated_quotes(
    last_published: dict[str, datetime] | None, parsed: Parsed
) -> tuple[dict[str, datetime], Parsed]:
    """Drop each quote not newer than the last one kept for its symbol (Brapi repeats them).

    The state is each symbol's latest kept ``eventTime``; the stream is keyed by vendor, so one
    worker sees every Brapi body in poll order.
    """
    last = dict(last_published or {})
    kept: list[Trade | BestBidAsk | Quote] = []
    for record in parsed.result.records:
        if isinstance(record, Quote):
            previous = last.get(record.symbol)
            if previous is not None and record.event_time <= previous:
                log.debug("ingest: %s quote of %s already published", record.symbol, previous)
                continue
            last[record.symbol] = record.event_time
        kept.append(record)
    if len(kept) == len(parsed.result.records):
        return last, parsed
    result = dataclasses.replace(parsed.result, records=tuple(kept))
    return last, Parsed(parsed.frame, result)


def kafka_records(parsed: Parsed, topics: IngestTopics) -> list[KafkaRecord]:
    """Every record to its catalog topic keyed by symbol; dead letters keyed by source."""
    vendor = parsed.frame.vendor
    out = [
        KafkaRecord(
            topic=topics.for_record(record),
            key=record.symbol.encode(),
            value=record.to_json_bytes(),
            vendor=vendor,
            event_time=record.event_time,
        )
        for record in parsed.result.records
    ]
    out.extend(
        KafkaRecord(
            topic=topics.dead_letters,
            key=letter.source.encode(),
            value=letter.to_json_bytes(),
            vendor=vendor,
        )
        for letter in parsed.result.dead_letters
    )
    return out


_STREAMS = {Trade: "trade", BestBidAsk: "bookTicker", Quote: "quote"}


def _vendor_id(record: Trade | BestBidAsk | Quote) -> str | None:
    if isinstance(record, Trade):
        return record.trade_id
    if isinstance(record, BestBidAsk) and record.update_id is not None:
        return str(record.update_id)
    return None


def history_id(vendor: str, record: Trade | BestBidAsk | Quote) -> str:
    """``vendor|stream|symbol|vendorId``, or the event time when the vendor gives no id.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 4, 23, 13, 30, tzinfo=UTC)
    >>> history_id("binance", Trade(venue="BINANCE", symbol="BTCUSDT", trade_id="7", price="1",
    ...                             quantity="1", event_time=t, receive_time=t))
    'binance|trade|BTCUSDT|7'
    """
    identity = _vendor_id(record) or format_utc(record.event_time)
    return f"{vendor}|{_STREAMS[type(record)]}|{record.symbol}|{identity}"


def history_documents(parsed: Parsed) -> list[dict[str, Any]]:
    """One raw-history document per normalized record (see the module docstring)."""
    frame = parsed.frame
    receive_time = format_utc(frame.receive_time)
    return [
        {
            "_id": history_id(frame.vendor, record),
            "vendor": frame.vendor,
            "stream": _STREAMS[type(record)],
            "symbol": record.symbol,
            "vendorId": _vendor_id(record),
            "eventTime": format_utc(record.event_time),
            "receiveTime": receive_time,
            "raw": frame.raw,
        }
        for record in parsed.result.records
    ]


# --- counting what went where -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one run did: frames read, records per topic, dead letters per reason."""

    frames: int
    records_by_topic: dict[str, int]
    dead_letters_by_reason: dict[str, int]
    control_frames: int
    seconds: float

    @property
    def records(self) -> int:
        """Records sent to Kafka, dead letters included."""
        return sum(self.records_by_topic.values())


@dataclass
class IngestTally:
    """Thread-safe counters the flow's ``inspect`` steps feed (workers are threads)."""

    frames: int = 0
    control_frames: int = 0
    records_by_topic: Counter[str] = field(default_factory=Counter)
    dead_letters_by_reason: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_frame(self, parsed: Parsed) -> None:
        with self._lock:
            self.frames += 1
            self.control_frames += parsed.result.control is not None
            for letter in parsed.result.dead_letters:
                self.dead_letters_by_reason[letter.reason] += 1

    def count_record(self, record: KafkaRecord) -> None:
        with self._lock:
            self.records_by_topic[record.topic] += 1

    def report(self, seconds: float) -> IngestReport:
        with self._lock:
            return IngestReport(
                frames=self.frames,
                records_by_topic=dict(self.records_by_topic),
                dead_letters_by_reason=dict(self.dead_letters_by_reason),
                control_frames=self.control_frames,
                seconds=seconds,
            )


# --- the dataflow -------------------------------------------------------------------------------
def tape_path(settings: Settings) -> Path:
    """``TAPE_REPLAY_PATH``, or the bundled sample tape when it is empty."""
    return Path(settings.tape_replay_path) if settings.tape_replay_path else sample_tape_path()


def _sources(
    settings: Settings, stop_at_end: bool, live_frame_limit: int | None
) -> list[tuple[str, Source[Frame]]]:
    kind = settings.ingest_source
    if kind == "tape":
        tape = TapeSource(
            tape_path(settings),
            partitions=settings.ingest_tape_partitions,
            speed=settings.tape_replay_speed,
            batch_size=settings.ingest_batch_size,
            stop_at_end=stop_at_end,
            loop=settings.tape_loop,
            shift_to_now=settings.tape_shift_to_now,
        )
        return [("tape_frames", tape)]
    sources: list[tuple[str, Source[Frame]]] = []
    if kind in ("binance", "live"):
        sources.append(("binance_frames", BinanceSource(settings, frame_limit=live_frame_limit)))
    if kind in ("brapi", "live"):
        sources.append(("brapi_frames", BrapiSource(settings, frame_limit=live_frame_limit)))
    return sources


def build_flow(
    settings: Settings,
    *,
    source: Source[Frame] | None = None,
    kafka_sink: Sink[KafkaRecord] | None = None,
    history_sink: Sink[dict[str, Any]] | None = None,
    tally: IngestTally | None = None,
    stop_at_end: bool = True,
    live_frame_limit: int | None = None,
) -> Dataflow:
    """The ingest dataflow for these settings.

    By default the source follows ``INGEST_SOURCE`` and the sinks are Kafka and (with
    ``INGEST_MONGO_HISTORY``) MongoDB; tests pass in-memory ones. ``live_frame_limit`` ends each
    live partition after that many frames.
    """
    topics = IngestTopics.from_settings(settings)
    flow = Dataflow(f"brokerflow_{FLOW_NAME}")
    sources = (
        [("frames", source)]
        if source is not None
        else _sources(settings, stop_at_end, live_frame_limit)
    )
    inputs = [op.input(name, flow, each) for name, each in sources]
    frames = inputs[0] if len(inputs) == 1 else op.merge("frames_merged", *inputs)

    parsed = op.map("parse", frames, parse)
    vendors = op.branch("is_brapi", parsed, lambda item: item.frame.vendor == "brapi")
    brapi = op.key_on("brapi_key", vendors.trues, lambda item: item.frame.vendor)
    fresh = op.key_rm("brapi_unkey", op.stateful_map("fresh_quotes", brapi, drop_repeated_quotes))
    parsed = op.merge("parsed_merged", vendors.falses, fresh)
    records = op.flat_map("kafka_records", parsed, lambda item: kafka_records(item, topics))
    if tally is not None:
        parsed = op.inspect("tally_frames", parsed, lambda _step, item: tally.count_frame(item))
        records = op.inspect("tally_records", records, lambda _step, item: tally.count_record(item))
    live = settings.ingest_source != "tape" and source is None
    op.output("kafka_out", records, kafka_sink or KafkaRecordSink(settings, observe_latency=live))

    if history_sink is None and settings.ingest_mongo_history:
        history_sink = MongoHistorySink(
            settings.mongo_url, settings.mongo_database, settings.ingest_mongo_collection
        )
    if history_sink is not None:
        documents = op.flat_map("history", parsed, history_documents)
        op.output("mongo_out", documents, history_sink)
    return flow


# --- validation ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


class IngestValidationError(ConfigError):
    """A start-up check failed; the message names each failed check and what to do."""

    def __init__(self, failed: Sequence[Check]) -> None:
        super().__init__(
            "ingest cannot start: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
        )
        self.failed = tuple(failed)


def _check_config(settings: Settings) -> Check:
    from brokerflow.connectors.binance_ws import shard_streams, stream_names

    kind = settings.ingest_source
    try:
        if kind == "tape":
            path = tape_path(settings)
            if not path.is_file():
                raise ConfigError(f"TAPE_REPLAY_PATH={str(path)!r} is not a file")
            if next(read_tape(path), None) is None:
                raise ConfigError(f"tape {path} has no frame")
            how = [f"speed {settings.tape_replay_speed}"]
            how += ["looping"] if settings.tape_loop else []
            how += ["shifted to now"] if settings.tape_shift_to_now else []
            return Check("config", True, f"source tape {path} ({', '.join(how)})")
        detail = [f"source {kind}"]
        if kind in ("binance", "live"):
            streams = stream_names(settings.binance_symbols)
            if not streams:
                raise ConfigError("BINANCE_SYMBOLS is empty")
            shards = shard_streams(streams, settings.ws_shard_size)
            detail.append(f"{len(streams)} Binance streams on {len(shards)} connection(s)")
        if kind in ("brapi", "live"):
            if not settings.brapi_symbols:
                raise ConfigError("BRAPI_SYMBOLS is empty")
            detail.append(f"{len(settings.brapi_symbols)} Brapi tickers")
        return Check("config", True, ", ".join(detail))
    except Exception as exc:  # every failure is reported, none crashes the check
        return Check("config", False, str(exc))


def _check_kafka(settings: Settings, timeout_s: float) -> Check:
    from confluent_kafka.admin import AdminClient

    bootstrap = settings.kafka_bootstrap_servers
    try:
        # log_level 0: the check reports the failure itself, without librdkafka's retry spam.
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": "0"})
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception as exc:
        return Check(
            "kafka",
            False,
            f"no answer from Kafka at {bootstrap} ({exc}); start it with `brokerflow stack up` "
            "or set KAFKA_BOOTSTRAP_SERVERS",
        )
    missing = [
        name for name in IngestTopics.from_settings(settings).all() if name not in metadata.topics
    ]
    if missing:
        return Check(
            "kafka",
            False,
            f"topics missing at {bootstrap}: {', '.join(missing)} (topic auto-creation is off; "
            "create them with `brokerflow topics --create`)",
        )
    return Check("kafka", True, f"{bootstrap} answers; the 4 ingest topics exist")


def _check_mongo(settings: Settings, timeout_s: float) -> Check:
    if not settings.ingest_mongo_history:
        return Check("mongodb", True, "not used (INGEST_MONGO_HISTORY=false)")
    from pymongo import MongoClient

    millis = int(timeout_s * 1000)
    client: Any = MongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=millis,
        connectTimeoutMS=millis,
        socketTimeoutMS=millis,
    )
    try:
        client.admin.command("ping")
    except Exception as exc:
        return Check(
            "mongodb",
            False,
            f"no answer from MongoDB at {settings.mongo_url} ({type(exc).__name__}); start it "
            "with `brokerflow stack up`, set MONGO_URL, or INGEST_MONGO_HISTORY=false",
        )
    finally:
        client.close()
    return Check("mongodb", True, f"{settings.mongo_url} answers")


def validate_ingest(settings: Settings, *, timeout_s: float = 3.0) -> list[Check]:
    """Check the configuration, and that Kafka (with the topics) and MongoDB answer."""
    return [
        _check_config(settings),
        _check_kafka(settings, timeout_s),
        _check_mongo(settings, timeout_s),
    ]


# --- running it ---------------------------------------------------------------------------------
def recovery_dir(settings: Settings) -> Path:
    return Path(settings.ingest_recovery_dir or settings.stack_dir / "recovery" / FLOW_NAME)


def _recovery_config(directory: Path, partitions: int = 1) -> Any:
    from bytewax.recovery import RecoveryConfig, init_db_dir

    if not directory.exists() or not any(directory.iterdir()):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, partitions)
    return RecoveryConfig(directory, timedelta(0))


def run_ingest(
    settings: Settings,
    *,
    workers: int = 1,
    stop_at_end: bool = True,
    recovery: Path | None = None,
    serve_metrics: bool = False,
    validate: bool | None = None,
    live_frame_limit: int | None = None,
) -> IngestReport:
    """Run the ingest flow in this process (``workers`` threads) until its sources end.

    On a tape with ``stop_at_end`` that is the end of the tape; live sources run until
    interrupted (or ``live_frame_limit`` frames per partition). ``recovery`` turns Bytewax
    recovery on in that directory (created and initialised on first use). ``validate`` defaults
    to ``VALIDATE_ON_START`` and raises :class:`IngestValidationError` before anything runs.
    """
    from bytewax.run import cli_main

    if validate if validate is not None else settings.validate_on_start:
        failed = [check for check in validate_ingest(settings) if not check.ok]
        if failed:
            raise IngestValidationError(failed)
    if serve_metrics:
        metrics.serve_metrics(settings.metrics_port)
    tally = IngestTally()
    dataflow = build_flow(
        settings, tally=tally, stop_at_end=stop_at_end, live_frame_limit=live_frame_limit
    )
    started = time.monotonic()
    try:
        cli_main(
            dataflow,
            workers_per_process=workers,
            epoch_interval=timedelta(seconds=settings.ingest_snapshot_interval_s),
            recovery_config=None if recovery is None else _recovery_config(recovery),
        )
    except Exception as exc:
        # Bytewax wraps a sink's exception in its own runtime errors; surface ours unwrapped.
        delivery = _cause_of_type(exc, KafkaDeliveryError)
        if delivery is None:
            raise
        raise delivery from exc
    return tally.report(time.monotonic() - started)


def _cause_of_type(exc: BaseException, kind: type[KafkaDeliveryError]) -> KafkaDeliveryError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _print_checks(checks: Sequence[Check]) -> None:
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m brokerflow.flows.ingest``: validate, then run with recovery and metrics."""
    del argv
    settings = Settings()
    logging.basicConfig(level=settings.log_level)
    if settings.validate_only or settings.validate_on_start:
        checks = validate_ingest(settings)
        failed = [check for check in checks if not check.ok]
        if settings.validate_only:
            _print_checks(checks)
            return 1 if failed else 0
        if failed:
            print(IngestValidationError(failed), file=sys.stderr)
            return 1
    directory = recovery_dir(settings)
    log.info("ingest flow: recovery in %s, %d worker(s)", directory, settings.ingest_workers)
    try:
        report = run_ingest(
            settings,
            workers=settings.ingest_workers,
            recovery=directory,
            serve_metrics=True,
            validate=False,
        )
    except KafkaDeliveryError as exc:
        print(f"ingest stopped: {exc}", file=sys.stderr)
        return EXIT_KAFKA_UNAVAILABLE
    print(
        f"ingest: {report.frames} frames -> {report.records} records in {report.seconds:.1f} s; "
        f"per topic {report.records_by_topic}; dead letters {report.dead_letters_by_reason}"
    )
    return 0


#: What ``python -m bytewax.run brokerflow.flows.ingest:flow`` runs (configured from the env).
flow = build_flow(Settings())

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
