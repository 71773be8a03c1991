"""The stats dataflow's logic with Bytewax's in-memory source and sinks (no Kafka, no stores)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from brokerflow.flows._stats_decode import FactsDecoder
from brokerflow.flows.stats import (
    bar_document_id,
    build_flow,
    group_batch,
    producer_config,
    redis_keys,
)
from brokerflow.metrics import metric_value
from brokerflow.schemas import decode
from brokerflow.schemas.deadletter import DeadLetter
from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.orders import Side
from brokerflow.schemas.stats import BarClosed
from brokerflow.settings import Settings
from brokerflow.windows import compute_bars, facts_of, sort_bars

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


# --- the canonical decoder ----------------------------------------------------------------------
TRADE_WIRE = (
    b'{"type":"Trade","schemaVersion":1,"venue":"BINANCE","symbol":"BTCUSDT","tradeId":"42",'
    b'"price":"100.50","quantity":"0.25","aggressorSide":"SELL",'
    b'"eventTime":"2026-01-02T13:00:01.500000Z","receiveTime":"2026-01-02T13:00:01.600000Z"}'
)
QUOTE_WIRE = (
    b'{"type":"BestBidAsk","schemaVersion":1,"venue":"BINANCE","symbol":"ETHUSDT",'
    b'"bidPrice":"99.90","bidQuantity":"1","askPrice":"100.10","askQuantity":"2","updateId":7,'
    b'"eventTime":"2026-01-02T13:00:00.250000Z","receiveTime":"2026-01-02T13:00:00.250000Z"}'
)


def test_canonical_ticks_decode_straight_to_window_facts() -> None:
    decoder = FactsDecoder()
    # 2026-01-02T13:00:00Z is 1 767 358 800 s after the epoch.
    assert decoder.decode(TRADE_WIRE) == (
        "BTCUSDT",
        (
            True,
            1_767_358_801_500_000,
            "BINANCE",
            "BTCUSDT",
            Decimal("100.50"),
            Decimal("0.25"),
            Side.SELL,
            (1_767_358_801_500_000, 2, "42"),
        ),
    )
    assert decoder.decode(QUOTE_WIRE) == (
        "ETHUSDT",
        (False, 1_767_358_800_250_000, "BINANCE", "ETHUSDT", Decimal("0.20"), None, None, None),
    )
    # Our own encoder writes exactly that form.
    assert decoder.decode(Trade.model_validate_json(TRADE_WIRE).to_json_bytes()) is not None
    assert decoder.decode(BestBidAsk.model_validate_json(QUOTE_WIRE).to_json_bytes()) is not None


QUOTE_MAX_UPDATE_ID = QUOTE_WIRE.replace(b'"updateId":7', b'"updateId":9223372036854775807')


@pytest.mark.parametrize(
    ("raw", "pydantic_accepts"),
    [
        (TRADE_WIRE.replace(b'"venue":', b'"venue": '), True),  # a space: not canonical
        (TRADE_WIRE.replace(b'"BTCUSDT"', b'"btcusdt"'), True),  # upper-cased by the model
        (TRADE_WIRE.replace(b'"100.50"', b"100.50"), False),  # a JSON number
        (TRADE_WIRE.replace(b'"100.50"', b'"0.00"'), False),  # zero price
        (TRADE_WIRE.replace(b'"100.50"', b'"1e2"'), True),  # exponent: not canonical
        (TRADE_WIRE.replace(b"13:00:01.500000Z", b"13:00:01.500000+00:00"), True),
        (TRADE_WIRE.replace(b"2026-01-02T13:00:01.6", b"2026-02-30T13:00:01.6"), False),
        (TRADE_WIRE.replace(b'"42"', b'"4\\u0032"'), True),  # an escape
        (TRADE_WIRE.replace(b'"BTCUSDT"', b'"."'), False),  # not a symbol
        (QUOTE_WIRE.replace(b'"99.90"', b'"100.20"'), False),  # crossed
        (QUOTE_WIRE.replace(b'"askQuantity":"2"', b'"askQuantity":null'), False),  # half a side
        # 2**63: pydantic takes it, the fast paths leave it to pydantic (past a signed 64 bits)
        (QUOTE_WIRE.replace(b'"updateId":7', b'"updateId":9223372036854775808'), True),
        (QUOTE_MAX_UPDATE_ID, True),
        (QUOTE_WIRE.replace(b'"updateId":7', b'"updateId":07'), False),  # not JSON
        (QUOTE_WIRE + b" ", True),
        (TRADE_WIRE[:-1], False),
    ],
)
def test_anything_else_takes_the_model_path(raw: bytes, pydantic_accepts: bool) -> None:
    model = Trade if b'"Trade"' in raw else BestBidAsk
    try:
        model.model_validate_json(raw)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted is pydantic_accepts  # the case is what it says
    decoded = FactsDecoder().decode(raw)
    if raw is QUOTE_MAX_UPDATE_ID:
        assert decoded is not None  # canonical and valid: the fast path takes it
    else:
        assert decoded is None


_digits = st.text(alphabet="0123456789", min_size=1, max_size=4)
_field = st.one_of(
    st.builds(lambda a, b: f"{a}.{b}", _digits, _digits),
    _digits,
    st.sampled_from(["0", "0.0", "00.10", "1e3", "-1", "", ".5", "5.", " 1", "1" * 41]),
)


@settings(max_examples=300, deadline=None)
@given(
    price=_field,
    quantity=_field,
    bid=_field,
    ask=_field,
    symbol=st.sampled_from(["BTCUSDT", "btcusdt", "PETR4", "BRK.B", ".", "-", "A" * 33, "X Y"]),
    venue=st.sampled_from(["BINANCE", "B3", "binance", "", "BIN ANCE"]),
    side=st.sampled_from(['"BUY"', '"SELL"', "null", '"buy"']),
    moment=st.sampled_from(
        [
            "2026-01-02T13:00:00.000000Z",
            "2026-13-02T13:00:00.000000Z",
            "1970-01-01T00:00:00.000000Z",
        ]
    ),
)
def test_the_decoder_agrees_with_pydantic(
    price: str, quantity: str, bid: str, ask: str, symbol: str, venue: str, side: str, moment: str
) -> None:
    decoder = FactsDecoder()
    trade_raw = (
        f'{{"type":"Trade","schemaVersion":1,"venue":"{venue}","symbol":"{symbol}",'
        f'"tradeId":"9","price":"{price}","quantity":"{quantity}","aggressorSide":{side},'
        f'"eventTime":"{moment}","receiveTime":"2026-01-02T13:00:00.000000Z"}}'
    ).encode()
    quote_raw = (
        f'{{"type":"BestBidAsk","schemaVersion":1,"venue":"{venue}","symbol":"{symbol}",'
        f'"bidPrice":"{bid}","bidQuantity":"{quantity}","askPrice":"{ask}","askQuantity":"1",'
        f'"updateId":null,"eventTime":"{moment}","receiveTime":"{moment}"}}'
    ).encode()
    for raw, model in ((trade_raw, Trade), (quote_raw, BestBidAsk)):
        try:
            expected = facts_of(model.model_validate_json(raw))
        except ValueError:
            expected = None
        decoded = decoder.decode(raw)
        if decoded is not None:  # never accepts what pydantic refuses, never another value
            assert expected is not None
            assert decoded == (expected[3], expected)
            assert [type(value) for value in decoded[1]] == [type(value) for value in expected]


def test_a_batch_is_grouped_by_symbol_in_arrival_order() -> None:
    ticks = [TICKS[0], TICKS[2], TICKS[1], TICKS[3]]  # BTC trade, ETH trade, BTC book, BTC trade
    records = [record(t, i) for i, t in enumerate(ticks)]
    bad = KafkaSourceMessage(key=b"X", value=b"{", topic="t.market.trades.raw", offset=9)
    spaced = KafkaSourceMessage(
        key=b"K",
        value=TICKS[5].to_json_bytes().replace(b'","', b'", "'),
        topic="t.market.trades.raw",
    )
    out = group_batch([*records, bad, spaced], lambda: NOW)
    letters = [item for item in out if isinstance(item, DeadLetter)]
    assert [(lt.reason, lt.offset, lt.event_time) for lt in letters] == [("SCHEMA_INVALID", 9, NOW)]
    groups = dict(item for item in out if isinstance(item, tuple))
    assert list(groups) == ["BTCUSDT", "ETHUSDT"]
    btc = groups["BTCUSDT"]
    # The spaced record is not canonical: decoded by the model path, in its place.
    assert btc.ticks == [facts_of(t) for t in (TICKS[0], TICKS[1], TICKS[3], TICKS[5])]
    assert btc.raws[:3] == [t.to_json_bytes() for t in (TICKS[0], TICKS[1], TICKS[3])]
    assert btc.keys == [b"BTCUSDT", b"BTCUSDT", b"BTCUSDT", b"K"]
    assert groups["ETHUSDT"].ticks == [facts_of(TICKS[2])]


def test_the_windows_step_closes_a_quiet_symbol_when_notified() -> None:
    from brokerflow.flows.stats import WindowsLogic, windows_config

    clock = [NOW]
    config = windows_config(SETTINGS.model_copy(update={"stats_idle_stream_timeout_s": 30.0}))
    logic = WindowsLogic(config, None, lambda: clock[0])
    assert logic.notify_at() is None  # nothing open, nothing to wait for
    (item,) = group_batch([record(TICKS[0], 0), record(TICKS[1], 1)], lambda: NOW)
    bars, _ = logic.on_item(item[1])  # BTCUSDT trade at 0.2 s, book at 0.3 s
    assert list(bars) == []
    assert logic.notify_at() is not None
    clock[0] = NOW + timedelta(seconds=31)  # silent for 31 s: the clock is taken to be 31.3 s
    closed, _ = logic.on_notify()
    assert [(b.window.value, b.window_start, b.trade_count) for b in closed] == [("1s", T0, 1)]
