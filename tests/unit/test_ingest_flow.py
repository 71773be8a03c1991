"""The ingest dataflow on a small hand-written tape, with in-memory sinks (no services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bytewax.inputs import StatefulSourcePartition
from bytewax.testing import TestingSink, TestingSource, run_main

from brokerflow.connectors import Frame
from brokerflow.connectors.tape import encode_tape_line
from brokerflow.flows import ingest
from brokerflow.flows._ingest_sinks import KafkaRecord, producer_config
from brokerflow.flows._ingest_sources import TapeSource, routing_key, tape_partition_of
from brokerflow.flows.ingest import IngestTally, build_flow, history_id
from brokerflow.metrics import metric_value
from brokerflow.settings import Settings

T0 = datetime(2026, 4, 23, 13, 30, tzinfo=UTC)


def _trade(trade_id: int, symbol: str = "BTCUSDT", quantity: str = "0.00106000") -> str:
    data = {
        "e": "trade",
        "E": 1776951000123 + trade_id,
        "s": symbol,
        "t": trade_id,
        "p": "94112.01000000",
        "q": quantity,
        "T": 1776951000122 + trade_id,
        "m": True,
        "M": True,
    }
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data})


def _book(
    update_id: int, symbol: str = "ETHUSDT", bid: str = "3000.10", ask: str = "3000.20"
) -> str:
    data = {"u": update_id, "s": symbol, "b": bid, "B": "1.5", "a": ask, "A": "2.5"}
    return json.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": data})


BRAPI_BODY = json.dumps(
    {
        "results": [
            {
                "symbol": "PETR4",
                "currency": "BRL",
                "regularMarketPrice": 37.85,
                "regularMarketTime": "2026-04-23T13:29:00.000Z",
            }
        ]
    }
)

#: (vendor, raw) in tape order; receive times are T0 + 1 s per line.
SMALL_TAPE = [
    ("binance", _trade(1)),
    ("binance", "{not json"),
    ("binance", _book(500)),
    ("binance", _trade(2, quantity="-1")),
    ("binance", _book(501, bid="3001", ask="3000")),
    ("brapi", BRAPI_BODY),
    ("binance", json.dumps({"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade"}})),
    ("binance", _trade(3, symbol="SOLUSDT")),
    ("binance", _trade(4)),
]


def _frames() -> list[Frame]:
    return [
        Frame(vendor, raw, T0 + timedelta(seconds=index))
        for index, (vendor, raw) in enumerate(SMALL_TAPE)
    ]


@pytest.fixture
def small_tape(tmp_path: Path) -> Path:
    path = tmp_path / "small.jsonl"
    path.write_text("".join(encode_tape_line(frame) for frame in _frames()), encoding="utf-8")
    return path


def _settings(tape: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "ingest_source": "tape",
        "tape_replay_path": str(tape),
        "tape_replay_speed": 0.0,
        "topic_prefix": "t.",
        "ingest_tape_partitions": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _run(settings: Settings) -> tuple[list[KafkaRecord], list[dict], IngestTally]:
    records: list[KafkaRecord] = []
    documents: list[dict] = []
    tally = IngestTally()
    flow = build_flow(
        settings, kafka_sink=TestingSink(records), history_sink=TestingSink(documents), tally=tally
    )
    run_main(flow)
    return records, documents, tally


def test_each_record_goes_to_its_topic_keyed_by_symbol_and_bad_frames_become_dead_letters(
    small_tape: Path,
) -> None:
    records, _, _ = _run(_settings(small_tape))

    routed = [(record.topic, record.key.decode()) for record in records]
    # Brapi bodies take their own path (fresh_quotes), so only each vendor's order is kept.
    assert [entry for entry in routed if not entry[1].startswith("PETR4")] == [
        ("t.market.trades.raw", "BTCUSDT"),
        ("t.dead-letters-v1", "binance_ws"),
        ("t.market.book_ticker.raw", "ETHUSDT"),
        ("t.dead-letters-v1", "binance_ws/btcusdt@trade"),
        ("t.dead-letters-v1", "binance_ws/ethusdt@bookTicker"),
        ("t.dead-letters-v1", "binance_ws/btcusdt@aggTrade"),
        ("t.market.trades.raw", "SOLUSDT"),  # the flow kept going after the bad frames
        ("t.market.trades.raw", "BTCUSDT"),
    ]
    assert [entry for entry in routed if entry[1] == "PETR4"] == [
        ("t.assets-market-data-v1", "PETR4")
    ]
    values = [json.loads(record.value) for record in records]
    assert [v["tradeId"] for v in values if v["type"] == "Trade"] == ["1", "3", "4"]
    assert values[2]["type"] == "BestBidAsk"
    assert values[2]["bidPrice"] == "3000.10"
    assert [v["lastPrice"] for v in values if v["type"] == "Quote"] == ["37.85"]
    letters = [v for v in values if v["type"] == "DeadLetter"]
    assert [(v["reason"], v["fields"]) for v in letters] == [
        ("NOT_JSON", []),
        ("INVALID_FIELD", ["data.q"]),
        ("CROSSED_QUOTE", ["data.b", "data.a"]),
        ("UNKNOWN_EVENT", ["stream"]),
    ]
    assert letters[0]["payload"] == "{not json"
    assert all(
        record.key.decode() == value["source"]
        for record, value in zip(
            [r for r in records if r.topic == "t.dead-letters-v1"], letters, strict=True
        )
    )


def test_the_tally_reports_frames_records_per_topic_and_dead_letters_per_reason(
    small_tape: Path,
) -> None:
    _, _, tally = _run(_settings(small_tape))

    report = tally.report(seconds=1.0)
    assert report.frames == 9
    assert report.records_by_topic == {
        "t.market.trades.raw": 3,
        "t.market.book_ticker.raw": 1,
        "t.assets-market-data-v1": 1,
        "t.dead-letters-v1": 4,
    }
    assert report.records == 9
    assert report.dead_letters_by_reason == {
        "NOT_JSON": 1,
        "INVALID_FIELD": 1,
        "CROSSED_QUOTE": 1,
        "UNKNOWN_EVENT": 1,
    }


def test_dead_letters_are_counted_by_source_and_reason(small_tape: Path) -> None:
    labels = [
        ("binance_ws", "NOT_JSON"),
        ("binance_ws", "INVALID_FIELD"),
        ("binance_ws", "CROSSED_QUOTE"),
        ("binance_ws", "UNKNOWN_EVENT"),
        ("brapi", "INVALID_FIELD"),
    ]
    before = {
        label: metric_value("dead_letters_total", source=label[0], reason=label[1])
        for label in labels
    }

    _run(_settings(small_tape))

    after = {
        label: metric_value("dead_letters_total", source=label[0], reason=label[1]) - before[label]
        for label in labels
    }
    assert after == {
        ("binance_ws", "NOT_JSON"): 1,
        ("binance_ws", "INVALID_FIELD"): 1,
        ("binance_ws", "CROSSED_QUOTE"): 1,
        ("binance_ws", "UNKNOWN_EVENT"): 1,
        ("brapi", "INVALID_FIELD"): 0,
    }


def test_history_keeps_the_raw_frame_of_every_record_under_a_stable_id(small_tape: Path) -> None:
    _, documents, _ = _run(_settings(small_tape))

    assert sorted(document["_id"] for document in documents) == [
        "binance|bookTicker|ETHUSDT|500",
        "binance|trade|BTCUSDT|1",
        "binance|trade|BTCUSDT|4",
        "binance|trade|SOLUSDT|3",
        "brapi|quote|PETR4|2026-04-23T13:29:00.000000Z",
    ]
    first = documents[0]
    assert first == {
        "_id": "binance|trade|BTCUSDT|1",
        "vendor": "binance",
        "stream": "trade",
        "symbol": "BTCUSDT",
        "vendorId": "1",
        "eventTime": "2026-04-23T13:30:00.123000Z",
        "receiveTime": "2026-04-23T13:30:00.000000Z",
        "raw": SMALL_TAPE[0][1],
    }
    (quote,) = [document for document in documents if document["vendor"] == "brapi"]
    assert quote["raw"] == BRAPI_BODY
    assert quote["vendorId"] is None


def _quote_body(*quotes: tuple[str, str, str]) -> str:
    return json.dumps(
        {
            "results": [
                {"symbol": symbol, "regularMarketPrice": float(price), "regularMarketTime": when}
                for symbol, price, when in quotes
            ]
        }
    )


def test_a_repeated_or_stale_brapi_quote_is_published_once(tmp_path: Path) -> None:
    t1, t2 = "2026-04-23T13:29:00.000Z", "2026-04-23T13:34:00.000Z"
    polls = [
        _quote_body(("PETR4", "37.85", t1), ("VALE3", "61.2", t1)),
        _quote_body(("PETR4", "37.85", t1), ("VALE3", "61.3", t2)),  # PETR4 unchanged
        _quote_body(("PETR4", "37.9", t2), ("VALE3", "61.2", t1)),  # VALE3 older: stale
        _quote_body(("PETR4", "37.9", t2), ("VALE3", "61.3", t2)),  # nothing new
    ]
    frames = [Frame("brapi", body, T0 + timedelta(minutes=n)) for n, body in enumerate(polls)]
    records: list[KafkaRecord] = []
    documents: list[dict] = []
    tally = IngestTally()
    flow = build_flow(
        _settings(tmp_path / "unused.jsonl"),
        source=TestingSource(frames),
        kafka_sink=TestingSink(records),
        history_sink=TestingSink(documents),
        tally=tally,
    )
    run_main(flow)

    values = [json.loads(record.value) for record in records]
    assert [(v["symbol"], v["lastPrice"]) for v in values] == [
        ("PETR4", "37.85"),
        ("VALE3", "61.2"),
        ("VALE3", "61.3"),
        ("PETR4", "37.9"),
    ]
    assert [document["raw"] for document in documents] == [polls[0], polls[0], polls[1], polls[2]]
    assert tally.report(0.0).frames == 4


def test_drop_repeated_quotes_passes_other_records_and_keeps_the_latest_time() -> None:
    body = _quote_body(("PETR4", "37.85", "2026-04-23T13:29:00.000Z"))
    parsed = ingest.parse(Frame("brapi", body, T0))
    state, kept = ingest.drop_repeated_quotes(None, parsed)
    assert kept is parsed
    assert state == {"PETR4": datetime(2026, 4, 23, 13, 29, tzinfo=UTC)}

    again, dropped = ingest.drop_repeated_quotes(state, parsed)
    assert again == state
    assert (dropped.result.records, dropped.frame) == ((), parsed.frame)

    trade = ingest.parse(Frame("binance", _trade(1), T0))
    assert ingest.drop_repeated_quotes(state, trade) == (state, trade)


def test_two_workers_and_partitions_keep_each_symbols_order(small_tape: Path) -> None:
    from bytewax.testing import cluster_main

    records: list[KafkaRecord] = []
    flow = build_flow(
        _settings(small_tape, ingest_tape_partitions=3),
        kafka_sink=TestingSink(records),
        history_sink=TestingSink([]),
    )
    cluster_main(flow, addresses=[], proc_id=0, worker_count_per_proc=2)

    trades = [json.loads(r.value) for r in records if r.topic == "t.market.trades.raw"]
    btc = [trade["tradeId"] for trade in trades if trade["symbol"] == "BTCUSDT"]
    assert btc == ["1", "4"]
    assert len(records) == 9


def test_an_in_memory_source_of_frames_runs_through_the_same_steps(tmp_path: Path) -> None:
    records: list[KafkaRecord] = []
    flow = build_flow(
        _settings(tmp_path / "unused.jsonl"),
        source=TestingSource(_frames()[:3]),
        kafka_sink=TestingSink(records),
        history_sink=TestingSink([]),
    )
    run_main(flow)

    assert [record.key for record in records] == [b"BTCUSDT", b"binance_ws", b"ETHUSDT"]


# --- the tape source ----------------------------------------------------------------------------
def _drain(part: StatefulSourcePartition[Frame, int]) -> list[Frame]:
    frames: list[Frame] = []
    try:
        while True:
            frames.extend(part.next_batch())
    except StopIteration:
        part.close()
        return frames


def test_routing_keys_come_from_the_stream_name_even_escaped_in_a_tape_line() -> None:
    line = encode_tape_line(Frame("binance", _trade(1, symbol="ETHUSDT"), T0))

    assert routing_key(line) == "ethusdt"
    assert routing_key("{not json") == ""
    brapi_line = encode_tape_line(Frame("brapi", BRAPI_BODY, T0))
    assert tape_partition_of(brapi_line, 4) == tape_partition_of('"vendor":"brapi"', 4)


def test_a_tape_partition_resumes_after_its_snapshot_without_repeating(small_tape: Path) -> None:
    source = TapeSource(small_tape, partitions=1, batch_size=4)
    first = source.build_part("tape", "tape-0-of-1", None)
    batch = first.next_batch()
    resume_at = first.snapshot()
    first.close()

    second = source.build_part("tape", "tape-0-of-1", resume_at)
    rest = _drain(second)

    assert resume_at == 4
    assert [frame.raw for frame in batch + rest] == [raw for _, raw in SMALL_TAPE]


def test_partitions_split_a_tape_by_symbol_and_cover_every_line_once(small_tape: Path) -> None:
    source = TapeSource(small_tape, partitions=3)
    seen: list[str] = []
    for name in source.list_parts():
        seen.extend(frame.raw for frame in _drain(source.build_part("tape", name, None)))

    assert sorted(seen) == sorted(raw for _, raw in SMALL_TAPE)
    partitions = {tape_partition_of(raw, 3) for raw in (_trade(1), _book(1), _trade(1, "SOLUSDT"))}
    assert len(partitions) > 1  # BTCUSDT, ETHUSDT, SOLUSDT do not all share one partition


def test_a_paced_replay_hands_frames_on_when_they_are_due(small_tape: Path) -> None:
    from brokerflow.flows._ingest_sources import _TapePartition

    clock = [100.0]
    part = _TapePartition(small_tape, 0, 1, 0, 2.0, 100, True, clock=lambda: clock[0])

    assert [f.raw for f in part.next_batch()] == [SMALL_TAPE[0][1]]  # 1 s apart at speed 2
    assert part.next_awake() is not None
    clock[0] += 0.5
    assert [f.raw for f in part.next_batch()] == [SMALL_TAPE[1][1]]
    clock[0] += 10
    assert len(part.next_batch()) == len(SMALL_TAPE) - 2
    part.close()


# --- configuration ------------------------------------------------------------------------------
def test_the_producer_uses_murmur2_and_the_seeds_tuning() -> None:
    config = producer_config(
        Settings(kafka_linger_ms=25, kafka_compression="zstd", kafka_acks="all")
    )

    assert config["partitioner"] == "murmur2_random"
    assert (config["linger.ms"], config["compression.type"], config["acks"]) == (
        "25",
        "zstd",
        "all",
    )
    assert config["enable.idempotence"] == "true"
    seed = producer_config(Settings(kafka_linger_ms=10, kafka_compression="lz4", kafka_acks="1"))
    assert (seed["linger.ms"], seed["compression.type"], seed["acks"]) == ("10", "lz4", "1")
    assert "enable.idempotence" not in seed  # librdkafka refuses idempotence without acks=all


def test_history_ids_fall_back_to_the_event_time_when_the_vendor_has_no_id() -> None:
    from brokerflow.schemas.market import BestBidAsk

    book = BestBidAsk(
        venue="BINANCE",
        symbol="ETHUSDT",
        bid_price="1",
        bid_quantity="1",
        ask_price="2",
        ask_quantity="1",
        update_id=None,
        event_time=T0,
        receive_time=T0,
    )
    assert history_id("binance", book) == "binance|bookTicker|ETHUSDT|2026-04-23T13:30:00.000000Z"


def test_validate_only_prints_what_failed_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VALIDATE_ONLY", "true")
    monkeypatch.setenv("TAPE_REPLAY_PATH", str(tmp_path / "missing.jsonl"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("INGEST_MONGO_HISTORY", "false")

    assert ingest.main([]) == 1

    printed = capsys.readouterr().out.splitlines()
    assert (
        printed[0]
        == f"FAIL config: TAPE_REPLAY_PATH={str(tmp_path / 'missing.jsonl')!r} is not a file"
    )
    assert printed[1].startswith("FAIL kafka: no answer from Kafka at 127.0.0.1:9")
    assert printed[2] == "ok   mongodb: not used (INGEST_MONGO_HISTORY=false)"


def test_run_ingest_refuses_to_start_naming_the_failed_check(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "missing.jsonl", ingest_mongo_history=False)
    settings = settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:9"})

    with pytest.raises(ingest.IngestValidationError, match="config: TAPE_REPLAY_PATH=") as caught:
        ingest.run_ingest(settings, validate=True)
    assert [check.name for check in caught.value.failed] == ["config", "kafka"]


# --- Kafka away (port 9 on loopback: nothing listens) -------------------------------------------
def test_the_producer_waits_for_kafka_as_long_as_the_outage_timeout() -> None:
    assert producer_config(Settings())["message.timeout.ms"] == "300000"
    assert producer_config(Settings(ingest_kafka_outage_timeout_s=2.5))["message.timeout.ms"] == (
        "2500"
    )
    assert producer_config(Settings(ingest_kafka_outage_timeout_s=0))["message.timeout.ms"] == "0"


def test_records_kafka_never_acknowledges_raise_an_error_naming_the_brokers(
    small_tape: Path,
) -> None:
    settings = _settings(small_tape, ingest_mongo_history=False).model_copy(
        update={"kafka_bootstrap_servers": "127.0.0.1:9", "ingest_kafka_outage_timeout_s": 0.5}
    )
    before = metric_value("kafka_publish_failure_total", topic="t.market.trades.raw")

    with pytest.raises(ingest.KafkaDeliveryError) as caught:
        ingest.run_ingest(settings, validate=False)

    said = str(caught.value)
    assert said.startswith("Kafka at 127.0.0.1:9 did not acknowledge 9 record(s) (")
    assert "within INGEST_KAFKA_OUTAGE_TIMEOUT_S=0.5 s" in said
    assert "`brokerflow stack up`" in said
    assert "KAFKA_BOOTSTRAP_SERVERS" in said
    # The first batch is the whole small tape: 3 trades among its 9 records.
    assert metric_value("kafka_publish_failure_total", topic="t.market.trades.raw") - before == 3


def test_main_exits_3_with_one_line_saying_what_to_do_when_kafka_stays_away(
    small_tape: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {
        "TAPE_REPLAY_PATH": str(small_tape),
        "TAPE_REPLAY_SPEED": "0",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "INGEST_KAFKA_OUTAGE_TIMEOUT_S": "0.5",
        "INGEST_MONGO_HISTORY": "false",
        "INGEST_RECOVERY_DIR": str(tmp_path / "recovery"),
        "VALIDATE_ON_START": "false",
        "METRICS_PORT": "0",
    }.items():
        monkeypatch.setenv(name, value)

    assert ingest.main([]) == ingest.EXIT_KAFKA_UNAVAILABLE == 3

    stopped = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("ingest stopped")
    ]
    assert len(stopped) == 1
    assert stopped[0].startswith("ingest stopped: Kafka at 127.0.0.1:9 did not acknowledge ")
    assert stopped[0].endswith(
        "resumes from its last snapshot and re-sends what was not acknowledged"
    )
