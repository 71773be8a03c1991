"""The live sources through the real ingest flow into the real Kafka and MongoDB.

Local fake vendors (tests/unit/connectors/fakes.py) on loopback stand in for Brapi and Binance;
the flow runs in this process (``run_ingest`` in a thread) so its Prometheus counters can be
read exactly. Every expected record, key, price and counter is written by hand.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.flows.ingest import IngestTopics, run_ingest
from brokerflow.metrics import metric_value
from brokerflow.settings import Settings

from ..unit.connectors.fakes import Canned, FakeBinanceServer, FakeHttpServer, combined, send
from ..unit.connectors.fakes import trade_frame as binance_trade
from .ingest_namespace import isolated_ingest, murmur2_partition, read_all

pytestmark = pytest.mark.integration


async def _isolated(
    settings: Settings, prefix: str, mongo_db: AsyncDatabase, **extra: Any
) -> Settings:
    return await isolated_ingest(settings, prefix, mongo_db, validate_on_start=True, **extra)


def _assert_keyed_by_symbol(records: list[ConsumerRecord], partitions: int) -> None:
    for record in records:
        assert record.key.decode() == json.loads(record.value)["symbol"]
        assert record.partition == murmur2_partition(record.key, partitions)


class _Counters:
    """Prometheus samples before a run, to assert exact deltas after it."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [metric_value(name, **labels) for name, labels in samples]

    def deltas(self) -> list[float]:
        return [
            metric_value(name, **labels) - before
            for (name, labels), before in zip(self.samples, self.before, strict=True)
        ]


# --- Brapi --------------------------------------------------------------------------------------


def _brapi_body(*quotes: tuple[str, str | None, str], requested: str = "17:10:00") -> str:
    """A ``/api/quote`` body in Brapi's shape; prices are JSON numbers, as Brapi sends them."""
    results = ",".join(
        f'{{"symbol":"{symbol}","currency":"BRL","regularMarketPrice":{price or "null"},'
        f'"regularMarketTime":"{when}","regularMarketVolume":1000}}'
        for symbol, price, when in quotes
    )
    return f'{{"results":[{results}],"requestedAt":"2026-04-23T{requested}.000Z","took":12}}'


T1, T2, T3 = "2026-04-23T17:07:00.000Z", "2026-04-23T17:08:00.000Z", "2026-04-23T17:09:00.000Z"
FIRST = _brapi_body(("PETR4", "37.85", T1), ("VALE3", "61.2", T1))
SECOND = _brapi_body(("PETR4", "37.9", T2), ("VALE3", "61.15", T2))
# A later poll before Brapi refreshed: the same quotes again, published once only.
SECOND_AGAIN = _brapi_body(("PETR4", "37.9", T2), ("VALE3", "61.15", T2), requested="17:10:30")
# VALE3 without a price: dead-lettered; PETR4 of the same body still goes through.
THIRD = _brapi_body(("PETR4", "37.88", T3), ("VALE3", None, T3))


async def test_live_brapi_polls_through_429_and_503_into_kafka_and_mongodb_once_each(
    settings: Settings, unique: str, mongo_db: AsyncDatabase
) -> None:
    responses = [
        Canned(200, FIRST),
        Canned(429, '{"error":true,"message":"Too many requests"}', {"Retry-After": "1"}),
        Canned(200, SECOND),
        Canned(200, SECOND_AGAIN),
        Canned(503, '{"error":"Service Unavailable"}'),
        Canned(200, THIRD),
        # Never reached: the flow ends after four bodies (a fifth poll would show in the
        # request count below).
        Canned(200, FIRST),
    ]
    counters = _Counters(
        ("vendor_fetch_success_total", {"vendor": "brapi"}),
        ("vendor_fetch_failure_total", {"vendor": "brapi", "reason": "http_429"}),
        ("vendor_fetch_failure_total", {"vendor": "brapi", "reason": "http_503"}),
        ("dead_letters_total", {"source": "brapi", "reason": "INVALID_FIELD"}),
    )
    async with FakeHttpServer(responses) as server:
        isolated = await _isolated(
            settings,
            f"livebrapi{unique}.",
            mongo_db,
            ingest_source="brapi",
            brapi_base_url=server.base_url,
            brapi_symbols=["PETR4", "VALE3"],
            brapi_tickers_per_request=2,
            brapi_token="test-token",
            brapi_market_hours_only=False,
            brapi_monthly_request_budget=1_000_000_000,  # the interval is the minimum below
            brapi_min_poll_interval_s=0.5,
            brapi_max_attempts=3,
            vendor_backoff_initial_s=0.01,
            vendor_backoff_max_s=0.05,
        )
        topics = IngestTopics.from_settings(isolated)
        published = _Counters(
            ("kafka_publish_success_total", {"topic": topics.quotes}),
            ("kafka_publish_success_total", {"topic": topics.dead_letters}),
        )
        async with asyncio.timeout(120):
            report = await asyncio.to_thread(run_ingest, isolated, live_frame_limit=4)

    assert [(request.method, request.path) for request in server.requests] == [
        ("GET", "/api/quote/PETR4,VALE3")
    ] * 6
    assert {request.headers["authorization"] for request in server.requests} == {
        "Bearer test-token"
    }
    assert report.frames == 4
    assert counters.deltas() == [4, 1, 1, 1]
    assert published.deltas() == [5, 1]

    quotes = await read_all(isolated, topics.quotes)
    _assert_keyed_by_symbol(quotes, isolated.topic_partitions)
    values = [json.loads(record.value) for record in quotes]
    assert Counter((v["symbol"], v["lastPrice"], v["eventTime"]) for v in values) == Counter(
        {
            ("PETR4", "37.85", "2026-04-23T17:07:00.000000Z"): 1,
            ("VALE3", "61.2", "2026-04-23T17:07:00.000000Z"): 1,
            ("PETR4", "37.9", "2026-04-23T17:08:00.000000Z"): 1,
            ("VALE3", "61.15", "2026-04-23T17:08:00.000000Z"): 1,
            ("PETR4", "37.88", "2026-04-23T17:09:00.000000Z"): 1,
        }
    )
    by_symbol = {
        symbol: [v["lastPrice"] for v in values if v["symbol"] == symbol]
        for symbol in ("PETR4", "VALE3")
    }
    assert by_symbol == {"PETR4": ["37.85", "37.9", "37.88"], "VALE3": ["61.2", "61.15"]}

    (letter,) = await read_all(isolated, topics.dead_letters)
    dead = json.loads(letter.value)
    assert letter.key == b"brapi/quote"
    assert (dead["reason"], dead["fields"]) == ("INVALID_FIELD", ["results.1.regularMarketPrice"])
    assert dead["payload"] == THIRD

    history = mongo_db[isolated.ingest_mongo_collection]
    documents = await history.find({}, sort=[("_id", 1)]).to_list()
    assert [(d["_id"], d["raw"]) for d in documents] == [
        ("brapi|quote|PETR4|2026-04-23T17:07:00.000000Z", FIRST),
        ("brapi|quote|PETR4|2026-04-23T17:08:00.000000Z", SECOND),
        ("brapi|quote|PETR4|2026-04-23T17:09:00.000000Z", THIRD),
        ("brapi|quote|VALE3|2026-04-23T17:07:00.000000Z", FIRST),
        ("brapi|quote|VALE3|2026-04-23T17:08:00.000000Z", SECOND),
    ]


# --- Binance ------------------------------------------------------------------------------------


def _book_ticker(update_id: int, bid: str, ask: str) -> str:
    data = {"u": update_id, "s": "BTCUSDT", "b": bid, "B": "1.2", "a": ask, "A": "0.31"}
    return combined("btcusdt@bookTicker", data)


SHUTDOWN = '{"e":"serverShutdown","E":1776951000000}'


async def test_live_binance_trades_and_book_tickers_reach_kafka_across_a_server_shutdown(
    settings: Settings, unique: str, mongo_db: AsyncDatabase
) -> None:
    first = send(
        binance_trade(1),
        _book_ticker(100, "94112.00", "94112.01"),
        binance_trade(7, symbol="ETHUSDT", price="3301.50000000"),
        "garbage{",
        SHUTDOWN,  # the stream reconnects at once, without backoff
    )
    second = send(binance_trade(2), _book_ticker(101, "94111.99", "94112.02"))
    counters = _Counters(
        ("vendor_fetch_success_total", {"vendor": "binance"}),
        (
            "vendor_reconnects_total",
            {"vendor": "binance", "shard": "0", "reason": "server_shutdown"},
        ),
        ("vendor_fetch_failure_total", {"vendor": "binance", "reason": "server_shutdown"}),
        ("dead_letters_total", {"source": "binance_ws", "reason": "NOT_JSON"}),
    )
    async with FakeBinanceServer([first, second]) as server:
        isolated = await _isolated(
            settings,
            f"livebinance{unique}.",
            mongo_db,
            ingest_source="binance",
            binance_ws_base=server.base_url,
            binance_symbols=["BTCUSDT", "ETHUSDT"],
            vendor_backoff_initial_s=0.01,
            vendor_backoff_max_s=0.05,
        )
        topics = IngestTopics.from_settings(isolated)
        async with asyncio.timeout(120):
            report = await asyncio.to_thread(run_ingest, isolated, live_frame_limit=7)

    assert [connection.streams for connection in server.connections] == [
        ["btcusdt@trade", "btcusdt@bookTicker", "ethusdt@trade", "ethusdt@bookTicker"]
    ] * 2
    assert (report.frames, report.control_frames) == (7, 1)
    assert counters.deltas() == [7, 1, 0, 1]

    trades = await read_all(isolated, topics.trades)
    _assert_keyed_by_symbol(trades, isolated.topic_partitions)
    assert sorted(
        (v["symbol"], v["tradeId"], v["price"], v["aggressorSide"])
        for v in (json.loads(record.value) for record in trades)
    ) == [
        ("BTCUSDT", "1", "94112.01000000", "SELL"),
        ("BTCUSDT", "2", "94112.01000000", "SELL"),
        ("ETHUSDT", "7", "3301.50000000", "SELL"),
    ]
    tickers = await read_all(isolated, topics.book_ticker)
    _assert_keyed_by_symbol(tickers, isolated.topic_partitions)
    assert [
        (v["updateId"], v["bidPrice"], v["askPrice"])
        for v in (json.loads(record.value) for record in tickers)
    ] == [(100, "94112.00", "94112.01"), (101, "94111.99", "94112.02")]

    (letter,) = await read_all(isolated, topics.dead_letters)
    dead = json.loads(letter.value)
    assert letter.key == b"binance_ws"
    assert (dead["reason"], dead["payload"]) == ("NOT_JSON", "garbage{")

    history = mongo_db[isolated.ingest_mongo_collection]
    assert sorted(await history.distinct("_id")) == [
        "binance|bookTicker|BTCUSDT|100",
        "binance|bookTicker|BTCUSDT|101",
        "binance|trade|BTCUSDT|1",
        "binance|trade|BTCUSDT|2",
        "binance|trade|ETHUSDT|7",
    ]
