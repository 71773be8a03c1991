"""One settings object for every brokerflow process, read from the environment and ``.env``.

Every field is documented in ``.env.example`` with its default; a test keeps the two in step.
Defaults point at the local stack (``brokerflow stack up``) on loopback, so nothing needs
configuring to run offline.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


def _split_symbols(value: object) -> object:
    if isinstance(value, str):
        return [part.strip().upper() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # --- services ---------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKER"),
        description="Kafka bootstrap servers, comma-separated host:port (seed name: KAFKA_BROKER)",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (market cache)")
    mongo_url: str = Field(
        "mongodb://127.0.0.1:27017/", description="MongoDB URL (FerretDB or a real MongoDB)"
    )
    mongo_database: str = Field("brokerflow", description="MongoDB database name")

    # --- local stack ------------------------------------------------------------------------
    stack_dir: Path = Field(
        Path(".stack"), description="Where `brokerflow stack` downloads, builds and keeps data"
    )
    kafka_version: str = Field("3.9.2", description="Apache Kafka version fetched with Maven")
    ferretdb_version: str = Field("v1.24.2", description="FerretDB version built with Go")
    stack_use_external: bool = Field(
        True,
        description="Reuse Redis/MongoDB already answering at REDIS_URL/MONGO_URL instead of "
        "starting our own",
    )

    # --- topics (names from the seeds where they give one) ----------------------------------
    topic_prefix: str = Field("", description="Prefix added to every topic name (isolation)")
    market_trades_topic: str = Field("market.trades.raw", description="Binance trades")
    market_book_topic: str = Field("market.book_ticker.raw", description="Binance best bid/ask")
    market_quotes_topic: str = Field("assets-market-data-v1", description="Brapi quotes")
    order_events_topic: str = Field("order-events-v1", description="Order lifecycle events")
    topic_partitions: int = Field(6, ge=1, description="Default partitions for keyed topics")
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor for created topics (1 on the local stack)"
    )

    # --- market data ------------------------------------------------------------------------
    binance_ws_base: str = Field(
        "wss://stream.binance.us:9443", description="Binance WebSocket base URL"
    )
    binance_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "DOGEUSDT"],
        description="Binance symbols, comma-separated",
    )
    brapi_base_url: str = Field("https://brapi.dev", description="Brapi REST base URL")
    brapi_token: str = Field("", description="Brapi token (optional for PETR4, VALE3)")
    brapi_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["PETR4", "VALE3", "ITUB4", "BBDC4"],
        description="B3 tickers polled from Brapi, comma-separated",
    )
    ws_shard_size: int = Field(
        200, ge=1, le=1024, description="Streams per Binance WebSocket connection (max 1024)"
    )

    # --- market-data connectors -------------------------------------------------------------
    binance_max_connection_age_s: float = Field(
        85_800.0,
        gt=0,
        description="Reconnect a Binance WebSocket after this many seconds, before Binance cuts "
        "it at 24 h (default 23 h 50 min)",
    )
    binance_silence_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Reconnect a Binance WebSocket that delivered no frame for this many seconds",
    )
    vendor_backoff_initial_s: float = Field(
        1.0, gt=0, description="First retry/reconnect delay after a vendor failure, in seconds"
    )
    vendor_backoff_max_s: float = Field(
        60.0, gt=0, description="Longest retry/reconnect delay (the delay doubles up to this)"
    )
    brapi_monthly_request_budget: int = Field(
        15_000,
        ge=1,
        description="Brapi requests allowed per calendar month (free plan: 15000); polling is "
        "spread over the month's trading hours and stops when it is used up",
    )
    brapi_min_poll_interval_s: float = Field(
        60.0, gt=0, description="Never poll Brapi more often than this, whatever the budget allows"
    )
    brapi_tickers_per_request: int = Field(
        1,
        ge=1,
        description="Tickers per Brapi request (the free plan allows 1; paid plans more)",
    )
    brapi_max_attempts: int = Field(
        5, ge=1, description="Attempts per Brapi request when it is rate-limited (429) or 5xx"
    )
    brapi_timeout_s: float = Field(10.0, gt=0, description="Brapi HTTP timeout, in seconds")
    brapi_market_hours_only: bool = Field(
        True, description="Poll Brapi only during the B3 session below; wait outside it"
    )
    brapi_session_open: time = Field(
        time(10, 0), description="B3 regular session open, local time (Monday-Friday)"
    )
    brapi_session_close: time = Field(
        time(17, 0), description="B3 regular session close, local time (Monday-Friday)"
    )
    brapi_session_timezone: str = Field(
        "America/Sao_Paulo", description="IANA time zone of the session hours above"
    )
    tape_record_path: str = Field(
        "",
        description="Record every raw vendor frame to this JSONL tape (.gz to compress); "
        "empty: do not record",
    )
    tape_replay_path: str = Field(
        "",
        description="Tape the ingest flow replays when INGEST_SOURCE=tape; empty: the bundled "
        "sample tape",
    )
    tape_replay_speed: float = Field(
        1.0,
        ge=0,
        description="Tape replay speed: 1 = recorded pace, 10 = ten times faster, 0 = as fast "
        "as possible",
    )
    tape_loop: bool = Field(
        False,
        description="Replay the tape for ever: each pass starts over at its first line, its "
        "times moved one tape length on and its trade and book ids past the previous pass's, so "
        "no pass repeats a record (`brokerflow run` turns it on for its ingest)",
    )
    tape_shift_to_now: bool = Field(
        False,
        description="Move the tape's receive and event times (whole seconds) so that the first "
        "frame of each pass is now: bars look current and live windows close "
        "(`brokerflow run` turns it on for its ingest)",
    )

    # --- stats flow (flows/stats.py) --------------------------------------------------------
    stats_windows: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["1s", "1m"],
        description="Tumbling window lengths the stats flow computes, comma-separated "
        "(1s, 5s, 1m, 5m, 15m, 1h, 1d)",
    )
    stats_allowed_lateness_s: float = Field(
        2.0,
        ge=0,
        description="A tick more than this many seconds behind its stream's latest event time "
        "is late: it goes to market-late-ticks-v1 and never into a bar",
    )
    stats_idle_stream_timeout_s: float = Field(
        30.0,
        ge=0,
        description="Stop waiting for a symbol's trades or book tickers once that stream has "
        "sent nothing for this many wall-clock seconds (its bars wait that long at most)",
    )
    stats_exchange_trades: bool = Field(
        True,
        description="Window the exchange's own trades (trade-executions-v1) too, as venue "
        "BROKERFLOW: bars and the last price of the symbols traded here",
    )
    stats_stop_at_end: bool = Field(
        False,
        description="Stop the stats flow at the end of its input partitions and close every "
        "open window (tests, backfills); false: tail the topics forever",
    )
    stats_kafka_batch_size: int = Field(
        1000, ge=1, description="Records the stats flow reads per partition per poll"
    )
    stats_mongo_collection: str = Field(
        "bars", description="MongoDB collection of closed bars (one document per bar)"
    )
    stats_redis_prefix: str = Field(
        "", description="Prefix added to every Redis key the stats flow writes (isolation)"
    )
    stats_recent_bars: int = Field(
        300, ge=1, description="Bars kept per symbol and window in Redis' recent series"
    )
    stats_recovery_dir: str = Field(
        "",
        description="Bytewax recovery directory of `python -m brokerflow.flows.stats`; empty: "
        "STACK_DIR/recovery/stats",
    )
    stats_snapshot_interval_s: float = Field(
        1.0, gt=0, description="Seconds between the stats flow's recovery snapshots"
    )
    stats_workers: int = Field(
        1, ge=1, description="Bytewax workers of `python -m brokerflow.flows.stats`"
    )

    # --- exchange (Faust agents, issue 3) ----------------------------------------------------
    exchange_app_id: str = Field(
        "brokerflow-exchange",
        description="Faust app id of the exchange: consumer group, transactional ids and "
        "changelog topic names derive from it",
    )
    exchange_data_dir: str = Field(
        "",
        description="Where exchange workers keep RocksDB tables (empty: STACK_DIR/exchange); "
        "each worker takes its own slot-N subfolder, chosen with a file lock",
    )
    exchange_worker_slots: int = Field(
        16, ge=1, le=1000, description="How many exchange workers may run on one data dir"
    )
    exchange_web_port_base: int = Field(
        6066,
        ge=1,
        le=65000,
        description="Faust web port of the worker in slot 0; slot N listens on base + N",
    )
    exchange_rules_path: str = Field(
        "",
        description="JSON file of per-symbol rules (tickSize, lotSize, priceBandPct, "
        "selfTradePrevention), as `brokerflow match --rules` reads; empty: defaults",
    )
    exchange_commit_interval_s: float = Field(
        0.5,
        gt=0,
        description="How often the worker (exchange and accounts agent) commits its Kafka "
        "transaction: its outputs become visible to read_committed readers only then. Shorter "
        "is lower latency when the load is light, but more transactions: under the whole "
        "system's load 0.1 was slower than 0.5 (BENCHMARKS.md)",
    )
    exchange_batch_max: int = Field(
        500,
        ge=1,
        description="Most commands the matching agent takes from the stream at once; their table "
        "writes are coalesced (one record per key per batch)",
    )
    exchange_batch_within_s: float = Field(
        0.02,
        gt=0,
        description="How long the matching agent waits to fill a batch before it processes what "
        "it has (added latency when the command topic is quiet; larger batches share one flush: "
        "0.02 gave 25 % more commands/s than 0.005, BENCHMARKS.md)",
    )
    exchange_direct_delivery: bool = Field(
        True,
        description="The worker's consumer hands each fetched record to the agents' streams "
        "directly, not through two asyncio tasks per record (Faust's wait_first); that "
        "doubled what Faust can deliver (BENCHMARKS.md). false: Faust's own loop",
    )
    exchange_gil_switch_interval_s: float = Field(
        0.0005,
        gt=0,
        description="sys.setswitchinterval of an exchange worker: how soon its event loop gets "
        "the GIL back from Faust's consumer thread (Python's default is 0.005)",
    )
    exchange_session_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Consumer-group session timeout of exchange workers: how long partitions of "
        "a worker that died (kill -9) wait before another worker takes them",
    )
    exchange_restore_from_checkpoints: bool = Field(
        True,
        description="After a rebalance or a clean restart, an exchange worker restores a table "
        "partition from its local RocksDB checkpoint plus the changelog written since, not the "
        "whole changelog (false: always the whole changelog)",
    )
    exchange_checkpoint_max_age_s: float = Field(
        12 * 3600.0,
        gt=0,
        description="A local checkpoint older than this is not used: keep it under the "
        "changelogs' delete.retention.ms (24 h by default), after which compaction may have "
        "dropped tombstones written since the checkpoint",
    )
    exchange_rocksdb_block_cache_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024 * 1024,
        description="RocksDB block cache per table partition (Faust's default is 2 GiB)",
    )
    exchange_session_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["PETR4", "VALE3", "ITUB4", "BBDC4"],
        description="Symbols whose DAY orders expire at the session close below (B3 stocks); "
        "other symbols (24/7 crypto) have no close, comma-separated",
    )
    exchange_session_open: time = Field(
        time(10, 0),
        description="Exchange session open, local time (Monday-Friday): a close is published "
        "from the close until the next open, never after it",
    )
    exchange_session_close: time = Field(
        time(17, 0), description="Exchange session close, local time (Monday-Friday)"
    )
    exchange_session_timezone: str = Field(
        "America/Sao_Paulo", description="IANA time zone of the exchange session close"
    )
    exchange_session_timer_s: float = Field(
        30.0, gt=0, description="How often the session timer checks for a close to publish"
    )
    exchange_catch_up_interval_s: float = Field(
        2.0,
        gt=0,
        description="An exchange input partition with nothing delivered for this long is "
        "checked against the broker for records the worker's consumer dropped at a rebalance",
    )
    exchange_book_levels: int = Field(
        10,
        ge=0,
        le=100,
        description="Price levels per side the exchange publishes on exchange-book-v1 after "
        "every change of its top N (0: publish no book)",
    )
    exchange_book_snapshot_every: int = Field(
        100,
        ge=1,
        description="A BookSnapshot of a symbol after this many BookUpdates of it (and as its "
        "first message), so a consumer that missed one recovers",
    )
    exchange_reference_min_interval_s: float = Field(
        1.0,
        ge=0,
        description="Forward a symbol's market price as a reference price at most this often "
        "(by market event time), and only when it changed; a change that comes sooner is held "
        "and forwarded once it has waited this long",
    )

    # --- ingest flow (flows/ingest.py) ------------------------------------------------------
    ingest_source: Literal["tape", "binance", "brapi", "live"] = Field(
        "tape",
        description="What the ingest flow reads: tape (TAPE_REPLAY_PATH, or the bundled sample "
        "tape when that is empty), binance (WebSocket), brapi (REST polling), live (both)",
    )
    ingest_tape_partitions: int = Field(
        2,
        ge=1,
        le=64,
        description="Source partitions a tape is split into by symbol (the unit of parallelism "
        "across workers); keep it fixed while a recovery directory is in use",
    )
    ingest_batch_size: int = Field(
        1000, ge=1, description="Frames a source partition hands the ingest flow at once"
    )
    ingest_mongo_history: bool = Field(
        True,
        description="Store every normalized record's raw vendor frame in MongoDB (idempotent)",
    )
    ingest_mongo_collection: str = Field(
        "market_history",
        description="MongoDB collection of raw vendor history, one document per record",
    )
    ingest_recovery_dir: str = Field(
        "",
        description="Bytewax recovery directory of `python -m brokerflow.flows.ingest`; empty: "
        "STACK_DIR/recovery/ingest",
    )
    ingest_snapshot_interval_s: float = Field(
        1.0,
        gt=0,
        description="Seconds between the ingest flow's recovery snapshots (a crash replays at "
        "most this much output)",
    )
    ingest_workers: int = Field(
        1, ge=1, description="Bytewax workers of `python -m brokerflow.flows.ingest`"
    )
    ingest_kafka_outage_timeout_s: float = Field(
        300.0,
        ge=0,
        description="How long the ingest flow holds and retries records Kafka does not "
        "acknowledge (broker down) before it exits with an error; 0: wait for ever",
    )

    # --- broker: accounts agent, instruments, fees -------------------------------------------
    instruments_path: str = Field(
        "",
        description="JSON instrument catalog (currency, tick and lot size, session, settlement "
        "cycle, fees per symbol) read by the exchange and the broker; empty: the bundled one",
    )
    broker_market_buy_collar_pct: Decimal = Field(
        Decimal("5"),
        ge=0,
        description="A MARKET buy holds quantity x last price x (1 + this %) plus fees",
    )
    broker_b3_trading_fee_pct: Decimal = Field(
        Decimal("0.005"), ge=0, description="B3 trading fee, % of notional per side"
    )
    broker_b3_settlement_fee_pct: Decimal = Field(
        Decimal("0.025"), ge=0, description="B3 settlement fee, % of notional per side"
    )
    broker_crypto_fee_pct: Decimal = Field(
        Decimal("0.1"), ge=0, description="Crypto trading fee, % of notional per side"
    )
    broker_execution_reports: bool = Field(
        True,
        description="The exchange also sends each order event and trade of an order with an "
        "account to execution-reports-v1, keyed by account (the broker's settlement input)",
    )

    # --- broker: API ------------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Where the order API listens")
    api_port: int = Field(8000, ge=1, le=65535, description="Order API port")
    api_jwt_secret: str = Field(
        "",
        description="HS256 signing secret of access tokens; empty: a random one is made once and "
        "kept in STACK_DIR/api-jwt-secret (mode 0600). Never commit a real one",
    )
    api_token_ttl_s: int = Field(3600, ge=60, description="Access-token lifetime, in seconds")
    api_decision_wait_ms: int = Field(
        2000,
        ge=0,
        description="How long POST /orders waits for the accounts agent's decision before it "
        "answers 202 PENDING (the decision then follows as an event)",
    )
    api_idempotency_ttl_s: int = Field(
        86_400, ge=1, description="How long an idempotency key and its stored response live"
    )
    api_rate_limit: str = Field(
        "50/second",
        description="Requests per user (the `limits` library's notation, e.g. 50/second, "
        "1000/minute)",
    )
    api_redis_prefix: str = Field(
        "api:",
        description="Prefix of every Redis key the API writes (idempotency keys, rate-limit "
        "windows) and of the portfolio cache the projector writes through; the market cache "
        "it reads keeps STATS_REDIS_PREFIX",
    )
    api_cache_ttl_s: int = Field(
        3600,
        ge=1,
        description="How long an account's cached portfolio (Redis) lives without a write; "
        "a read after that goes to MongoDB and fills it again",
    )
    api_io_timeout_ms: int = Field(
        5000,
        ge=1,
        description="Longest the API waits on Kafka, MongoDB or Redis for one call before it "
        "answers 503 naming the service",
    )

    # --- broker: read-model projector (brokerflow.projections) -------------------------------
    projections_group_id: str = Field(
        "brokerflow-projections",
        description="Consumer group of the read-model projector (order, ledger and account "
        "events -> MongoDB orders, accounts, positions); a new group replays from the start",
    )
    projections_batch_max: int = Field(
        500,
        ge=1,
        description="Most records the projector folds and writes to MongoDB at once (one "
        "read and a few conditional updates per collection per batch)",
    )

    # --- broker: price alerts (brokerflow.alerts) and the reconciler (brokerflow.reconciler) --
    alerts_group_id: str = Field(
        "brokerflow-alerts",
        description="Consumer group of the price-alerts service (market trades, exchange trades "
        "and alert commands in; PriceAlertTriggered to notifications-v1)",
    )
    notify_group_id: str = Field(
        "brokerflow-notifications",
        description="Consumer group of the notifier (execution reports in, notifications-v1 "
        "out); its delivery stage uses this name with '-delivery' appended",
    )
    notify_backlog: int = Field(
        1000,
        ge=1,
        description="WebSocket messages kept per user in Redis for clients resuming with "
        "lastSequence; older ones get RESYNC_REQUIRED",
    )
    notify_retention_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        description="A user's delivery sequence and backlog expire this long after their last "
        "notification",
    )
    notify_position_wait_ms: int = Field(
        1000,
        ge=0,
        description="How long after the exchange wrote a fill the notifier may hold it for the "
        "accounts agent's FillSettled, which gives its positionQty; a fill already that old "
        "(or at 0) goes at once, with positionQty null if not settled yet",
    )
    notify_push: Literal["log", "fake", "none"] = Field(
        "log",
        description="The push channel (FCM/APNs stand-in) for users with no open WebSocket: "
        "'log' writes each push to the log, 'fake' is a device inbox in Redis that can be "
        "made to fail (see the README), 'none' pushes nothing",
    )
    notify_retry_backoff_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0],
        description="Waits before each retry of a refused push (seed 002: 1,2,4,8); after the "
        "last one the notification goes to dead-letters-v1",
    )
    dashboard_host: str = Field("127.0.0.1", description="Where the market dashboard listens")
    dashboard_port: int = Field(
        8050, ge=1, le=65535, description="Port of the market dashboard (brokerflow run prints it)"
    )
    participants_enabled: bool = Field(
        True,
        description="Run the simulated participants in brokerflow run: a market maker per symbol "
        "quoting around the real market's mid, and a taker sending marketable orders",
    )
    participants_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Symbols the participants trade, comma-separated; empty: every listed symbol "
        "with a market feed (BINANCE_SYMBOLS and BRAPI_SYMBOLS)",
    )
    participants_account: str = Field(
        "sim",
        pattern=r"^[A-Za-z0-9_]{1,20}$",
        description="Account id prefix of the participants' orders ({prefix}-mm, {prefix}-tk)",
    )
    participants_half_spread_bps: Decimal = Field(
        Decimal(5), gt=0, description="Distance of a maker's best bid and ask from the mid, bps"
    )
    participants_level_step_bps: Decimal = Field(
        Decimal(5), ge=0, description="Distance between a maker's price levels, bps"
    )
    participants_levels: int = Field(
        3, ge=1, le=50, description="Price levels a maker quotes a side"
    )
    participants_level_notional: Decimal = Field(
        Decimal(5000),
        gt=0,
        description="Size of each maker level, in the symbol's currency at the mid (rounded "
        "down to the lot)",
    )
    participants_max_inventory_notional: Decimal = Field(
        Decimal(50000),
        gt=0,
        description="A maker quotes no level that could take its position (long or short) past "
        "this, in the symbol's currency",
    )
    participants_requote_bps: Decimal = Field(
        Decimal(2), ge=0, description="Mid move after which a maker redraws its ladder, bps"
    )
    participants_refresh_s: float = Field(
        5.0, gt=0, description="How often makers re-place levels the exchange refused"
    )
    participants_taker_orders_per_min: float = Field(
        6.0,
        ge=0,
        description="Marketable orders the taker sends per minute on each symbol (0: no taker)",
    )
    participants_taker_notional: Decimal = Field(
        Decimal(2000), gt=0, description="A taker order is 1..PARTICIPANTS_TAKER_MAX_LOTS of this"
    )
    participants_taker_max_lots: int = Field(5, ge=1, description="See PARTICIPANTS_TAKER_NOTIONAL")
    participants_seed: int = Field(0, description="Seed of the taker's sides and sizes")
    reconciler_orders_interval_s: float = Field(
        30.0,
        gt=0,
        description="How often the reconciler looks for orders stuck PENDING or in a pending "
        "cancel and re-publishes their request",
    )
    reconciler_stuck_after_s: float = Field(
        60.0,
        ge=0,
        description="An order PENDING (or a cancel requested) longer than this is stuck: its "
        "RequestOrder (RequestCancel) is published again",
    )
    reconciler_balances_interval_s: float = Field(
        300.0,
        gt=0,
        description="How often the reconciler recomputes every account from ledger-events-v1 "
        "and compares the read models and the accounts agent's state with it",
    )
    reconciler_grace_s: float = Field(
        30.0,
        ge=0,
        description="An account or position the ledger created less than this long before a "
        "pass may not be projected yet: its missing document is not a discrepancy yet",
    )

    # --- producer tuning (seed 003) ---------------------------------------------------------
    kafka_linger_ms: int = Field(10, ge=0, description="Producer linger.ms")
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "lz4", description="Producer compression codec"
    )
    kafka_acks: Literal["0", "1", "all"] = Field("all", description="Producer acks")

    # --- operations -------------------------------------------------------------------------
    metrics_port: int = Field(
        9100,
        ge=0,
        le=65535,
        description="Prometheus metrics port of a flow (`brokerflow run` gives each service one)",
    )
    validate_on_start: bool = Field(
        True, description="Check config and reachability of services before starting"
    )
    validate_only: bool = Field(False, description="Validate, then exit without running")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")

    @field_validator(
        "binance_symbols",
        "brapi_symbols",
        "exchange_session_symbols",
        "participants_symbols",
        mode="before",
    )
    @classmethod
    def _symbols(cls, value: object) -> object:
        return _split_symbols(value)

    @field_validator("notify_retry_backoff_s", mode="before")
    @classmethod
    def _backoff(cls, value: object) -> object:
        if isinstance(value, str):
            value = [float(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("notify_retry_backoff_s")
    @classmethod
    def _backoff_is_positive(cls, value: list[float]) -> list[float]:
        if any(wait <= 0 for wait in value):
            raise ValueError("every wait must be a positive number of seconds, e.g. 1,2,4,8")
        return value

    @field_validator("stats_windows", mode="before")
    @classmethod
    def _windows(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("stats_windows")
    @classmethod
    def _known_windows(cls, value: list[str]) -> list[str]:
        from brokerflow.schemas.stats import BarWindow

        known = [w.value for w in BarWindow]
        for label in value:
            if label not in known:
                raise ValueError(f"{label!r} is not a window length; known: {', '.join(known)}")
        if not value:
            raise ValueError("at least one window length is needed")
        return value

    @field_validator("brapi_session_timezone", "exchange_session_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone (e.g. America/Sao_Paulo)"
            ) from None
        return value

    def topic(self, name: str) -> str:
        """The physical topic name for a catalog name (applies ``TOPIC_PREFIX``)."""
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def render_env_example() -> str:
    """The text of ``.env.example``: every setting, its meaning and its default.

    Generated from the class so the two cannot drift; ``tests/unit/test_settings.py`` compares.
    """
    lines = [
        "# brokerflow settings. Copy to .env and edit; every line shows the default.",
        "# Generated by `python -m brokerflow.settings`; do not edit by hand.",
        "",
    ]
    for name, field in Settings.model_fields.items():
        env_name = name.upper()
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list):
            default = ",".join(f"{item:g}" if isinstance(item, float) else item for item in default)
        elif isinstance(default, bool):
            default = str(default).lower()
        lines.append(f"# {field.description}")
        lines.append(f"{env_name}={default}")
        lines.append("")
    lines += [
        "# --- docker-compose.yml only ---",
        "# Grafana's admin password; compose refuses to start Grafana without one (no default).",
        "GRAFANA_ADMIN_PASSWORD=",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_env_example(), end="")
