"""The live Binance source through the ingest flow, against a local fake WebSocket server.

The server sends two trades and a garbage frame, then drops the connection; the source
reconnects and the next connection sends a third trade. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json

from bytewax.testing import TestingSink, run_main

from brokerflow.flows._ingest_sinks import KafkaRecord
from brokerflow.flows.ingest import IngestTally, build_flow
from brokerflow.metrics import metric_value
from brokerflow.settings import Settings

from .connectors.fakes import FakeBinanceServer, send, trade_frame


async def test_live_binance_frames_flow_to_kafka_records_across_a_disconnect() -> None:
    before = {
        "fetched": metric_value("vendor_fetch_success_total", vendor="binance"),
        "dropped": metric_value(
            "vendor_reconnects_total", vendor="binance", shard="0", reason="connection_closed"
        ),
        "not_json": metric_value("dead_letters_total", source="binance_ws", reason="NOT_JSON"),
    }
    first = send(trade_frame(1), trade_frame(2), "garbage{", then="drop")
    second = send(trade_frame(3))
    async with FakeBinanceServer([first, second]) as server:
        settings = Settings(
            ingest_source="binance",
            binance_ws_base=server.base_url,
            binance_symbols=["BTCUSDT"],
            vendor_backoff_initial_s=0.01,
            vendor_backoff_max_s=0.05,
            topic_prefix="live.",
        )
        records: list[KafkaRecord] = []
        documents: list[dict] = []
        tally = IngestTally()
        flow = build_flow(
            settings,
            kafka_sink=TestingSink(records),
            history_sink=TestingSink(documents),
            tally=tally,
            live_frame_limit=4,
        )
        async with asyncio.timeout(30):
            await asyncio.to_thread(run_main, flow)

    assert [(record.topic, record.key) for record in records] == [
        ("live.market.trades.raw", b"BTCUSDT"),
        ("live.market.trades.raw", b"BTCUSDT"),
        ("live.dead-letters-v1", b"binance_ws"),
        ("live.market.trades.raw", b"BTCUSDT"),
    ]
    values = [json.loads(record.value) for record in records]
    assert [value.get("tradeId") for value in values] == ["1", "2", None, "3"]
    assert values[2]["reason"] == "NOT_JSON"
    assert values[2]["payload"] == "garbage{"
    assert [document["_id"] for document in documents] == [
        "binance|trade|BTCUSDT|1",
        "binance|trade|BTCUSDT|2",
        "binance|trade|BTCUSDT|3",
    ]
    assert records[0].event_time is not None  # live records carry what the latency needs
    assert len(server.connections) == 2
    assert server.connections[0].streams == ["btcusdt@trade", "btcusdt@bookTicker"]
    assert tally.report(0.0).frames == 4
    assert metric_value("vendor_fetch_success_total", vendor="binance") - before["fetched"] == 4
    dropped = metric_value(
        "vendor_reconnects_total", vendor="binance", shard="0", reason="connection_closed"
    )
    assert dropped - before["dropped"] == 1
    not_json = metric_value("dead_letters_total", source="binance_ws", reason="NOT_JSON")
    assert not_json - before["not_json"] == 1
