"""The stats dataflow's logic with Bytewax's in-memory source and sinks (no Kafka, no stores)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from brokerflow.flows.stats import bar_document_id, build_flow, producer_config, redis_keys
from brokerflow.metrics import metric_value
from brokerflow.schemas import decode
from brokerflow.schemas.deadletter import DeadLetter
from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.stats import BarClosed
from brokerflow.settings import Settings
from brokerflow.windows import compute_bars, sort_bars

T0 = datetime(2026, 1, 2, 13, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 2, 14, 0, tzinfo=UTC)
SETTINGS = Settings(_env_file=None, topic_prefix="t.", stats_allowed_lateness_s=2.0)


def trade(symbol: str, trade_id: int, seconds: float, price: str, qty: str) -> Trade:
    when = T0 + timedelta(seconds=seconds)
    return Trade(
        venue="BINANCE",
        symbol=symbol,
        trade_id=str(trade_id),
        price=price,
        quantity=qty,
        aggressor_side="BUY",
        event_time=when,
        receive_time=when,
    )


def book(symbol: str, seconds: float, bid: str, ask: str) -> BestBidAsk:
    when = T0 + timedelta(seconds=seconds)
    return BestBidAsk(
        venue="BINANCE",
        symbol=symbol,
        bid_price=bid,
        bid_quantity="1",
        ask_price=ask,
        ask_quantity="1",
        event_time=when,
        receive_time=when,
    )


def record(tick: Trade | BestBidAsk, offset: int) -> KafkaSourceMessage:
    topic = "t.market.trades.raw" if isinstance(tick, Trade) else "t.market.book_ticker.raw"
    return KafkaSourceMessage(
        key=tick.symbol.encode(), value=tick.to_json_bytes(), topic=topic, offset=offset
    )


TICKS: list[Trade | BestBidAsk] = [
    trade("BTCUSDT", 1, 0.2, "100", "1"),
    book("BTCUSDT", 0.3, "99", "101"),
    trade("ETHUSDT", 1, 0.4, "10", "3"),
    trade("BTCUSDT", 2, 1.5, "102", "2"),
    book("BTCUSDT", 6.0, "101", "103"),
    trade("BTCUSDT", 3, 6.0, "103", "1"),
    trade("BTCUSDT", 4, 0.9, "1", "100"),  # 5.1 s behind the trade clock: late
    trade("ETHUSDT", 2, 1.1, "11", "1"),
]
LATE = TICKS[6]


def run(source_items: list, settings: Settings = SETTINGS, **kwargs) -> tuple[list, list]:
    kafka_out: list[KafkaSinkMessage] = []
    bars_out: list[BarClosed] = []
    flow = build_flow(
        settings,
        source=TestingSource(source_items),
        kafka_sink=TestingSink(kafka_out),
        bar_sinks=[TestingSink(bars_out)],
        now=lambda: NOW,
    )
    run_main(flow, **kwargs)
    return kafka_out, bars_out


def expected_bars() -> list[BarClosed]:
    bars: list[BarClosed] = []
    for symbol in ("BTCUSDT", "ETHUSDT"):
        of_symbol, _ = compute_bars([t for t in TICKS if t.symbol == symbol], NOW)
        bars += of_symbol
    return sort_bars(bars)


def test_bars_go_to_the_bar_sinks_and_the_bars_topic_keyed_by_symbol() -> None:
    kafka_out, bars_out = run([record(t, i) for i, t in enumerate(TICKS)])
    assert sort_bars(bars_out) == expected_bars()
    on_topic = [m for m in kafka_out if m.topic == "t.market-bars-v1"]
    assert sorted((m.key, m.value) for m in on_topic) == sorted(
        (b.symbol.encode(), b.to_json_bytes()) for b in bars_out
    )
    # Hand-computed: BTCUSDT's minute holds trades 1-3 (6 @ 100/102/103, qty 1/2/1), not the
    # late one at 1 x 100: vwap (100 + 204 + 103) / 4 = 101.75.
    minute = next(b for b in bars_out if b.symbol == "BTCUSDT" and b.window.value == "1m")
    assert (minute.trade_count, str(minute.volume), str(minute.vwap)) == (3, "4", "101.75000000")
    assert (str(minute.low), str(minute.spread_mean)) == ("100", "2.00000000")


def test_late_ticks_go_unchanged_to_the_late_topic_and_are_counted() -> None:
    before = metric_value("window_late_events_dropped_total", flow="stats")
    kafka_out, bars_out = run([record(t, i) for i, t in enumerate(TICKS)])
    assert metric_value("window_late_events_dropped_total", flow="stats") - before == 1
    late = [m for m in kafka_out if m.topic == "t.market-late-ticks-v1"]
    assert [(m.key, m.value) for m in late] == [(b"BTCUSDT", LATE.to_json_bytes())]
    assert all(b.low is None or str(b.low) != "1" for b in bars_out)


def test_bad_payloads_become_dead_letters_and_the_flow_goes_on() -> None:
    bad = [
        KafkaSourceMessage(key=b"X", value=b"not json", topic="t.market.trades.raw", offset=7),
        KafkaSourceMessage(key=None, value=None, topic="t.market.trades.raw", offset=8),
        KafkaSourceMessage(
            key=b"X", value=b'{"type":"Nope","schemaVersion":1}', topic="t.market.trades.raw"
        ),
    ]
    examples_quote = decode(
        b'{"type":"Quote","schemaVersion":1,"venue":"BRAPI","symbol":"PETR4","currency":"BRL",'
        b'"lastPrice":"38.12","eventTime":"2026-01-02T13:00:00Z",'
        b'"receiveTime":"2026-01-02T13:00:00Z"}'
    )
    wrong_type = KafkaSourceMessage(
        key=b"PETR4", value=examples_quote.to_json_bytes(), topic="t.market.trades.raw"
    )
    items = [*bad, wrong_type, *(record(t, i) for i, t in enumerate(TICKS))]
    kafka_out, bars_out = run(items)
    letters = [
        DeadLetter.from_json_bytes(m.value) for m in kafka_out if m.topic == "t.dead-letters-v1"
    ]
    assert [(lt.reason, lt.source, lt.offset) for lt in letters] == [
        ("SCHEMA_INVALID", "t.market.trades.raw", 7),
        ("SCHEMA_INVALID", "t.market.trades.raw", 8),
        ("UNKNOWN_MESSAGE", "t.market.trades.raw", None),
        ("UNEXPECTED_TYPE", "t.market.trades.raw", None),
    ]
    assert letters[0].raw_payload() == b"not json"
    assert all(m.key == b"t.market.trades.raw" for m in kafka_out if m.topic.endswith("letters-v1"))
    assert sort_bars(bars_out) == expected_bars()


def test_a_resumed_run_gives_the_same_bars_as_an_uninterrupted_one(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(tmp_path)
    items = [record(t, i) for i, t in enumerate(TICKS)]
    # Abort after the fourth tick (an epoch per item), then resume from the snapshot; the
    # same ABORT object fires only once.
    tape = [*items[:4], TestingSource.ABORT(), *items[4:]]
    first_kafka, first_bars = run(tape, epoch_interval=timedelta(0), recovery_config=recovery)
    second_kafka, second_bars = run(tape, epoch_interval=timedelta(0), recovery_config=recovery)
    assert first_bars == []  # nothing had closed before the abort
    deduplicated = {bar_document_id(b): b for b in [*first_bars, *second_bars]}
    assert sort_bars(list(deduplicated.values())) == expected_bars()
    late = [m.value for m in [*first_kafka, *second_kafka] if m.topic.endswith("late-ticks-v1")]
    assert late == [LATE.to_json_bytes()]


def test_producer_hashes_keys_like_aiokafka_and_the_java_client() -> None:
    config = producer_config(SETTINGS)
    assert config["partitioner"] == "murmur2_random"
    assert config["enable.idempotence"] == "true"


def test_store_keys_name_symbol_window_and_start() -> None:
    bar = expected_bars()[0]
    assert bar_document_id(bar) == "BTCUSDT|1s|BINANCE|2026-01-02T13:00:00.000000Z"
    assert redis_keys("p:", bar) == (
        "p:bars:latest:BTCUSDT:1s",
        "p:bars:recent:BTCUSDT:1s",
        "p:market:last_price",
        "p:market:last_price_time",
    )
