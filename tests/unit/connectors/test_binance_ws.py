"""BinanceStream against a local WebSocket server: sharding, pings, reconnects, backoff, limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from brokerflow.connectors import BinanceStream, ControlEvent, parse_frame
from brokerflow.connectors.binance_ws import combined_stream_url, shard_streams, stream_names
from brokerflow.errors import ConfigError
from brokerflow.metrics import metric_value
from brokerflow.settings import Settings

from .fakes import (
    FakeBinanceServer,
    FakeClock,
    RecordingSleep,
    combined,
    ping_then,
    send,
    stream_forever,
    take,
    trade_frame,
)

HALF = 0.5  # the injected "random": every backoff delay is 75 % of its ceiling
SHUTDOWN = '{"e":"serverShutdown","E":1776951000000}'
BOOK = combined(
    "btcusdt@bookTicker",
    {"u": 1, "s": "BTCUSDT", "b": "94112.00", "B": "1.2", "a": "94112.01", "A": "0.3"},
)


def settings(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "binance_ws_base": base_url,
        "binance_symbols": ["BTCUSDT"],
        "binance_silence_timeout_s": 5.0,
        "vendor_backoff_initial_s": 1.0,
        "vendor_backoff_max_s": 8.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def reconnects(reason: str, shard: str = "0") -> float:
    return metric_value("vendor_reconnects_total", vendor="binance", shard=shard, reason=reason)


# --- pure helpers -------------------------------------------------------------------------------


def test_streams_are_lower_case_symbol_at_channel() -> None:
    assert stream_names(["BTCUSDT", "ethusdt", "BTCUSDT"]) == [
        "btcusdt@trade",
        "btcusdt@bookTicker",
        "ethusdt@trade",
        "ethusdt@bookTicker",
    ]


def test_combined_stream_url_for_binance_us_and_binance_com() -> None:
    streams = ["btcusdt@trade", "btcusdt@bookTicker"]
    assert combined_stream_url("wss://stream.binance.us:9443", streams) == (
        "wss://stream.binance.us:9443/stream?streams=btcusdt@trade/btcusdt@bookTicker"
    )
    assert combined_stream_url("wss://stream.binance.com:9443/", streams[:1]) == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@trade"
    )


def test_shard_size_beyond_binance_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match="WS_SHARD_SIZE=1025"):
        shard_streams(["a@trade"], 1025)


# --- against the fake server --------------------------------------------------------------------


async def test_five_symbols_two_streams_shard_size_four_opens_three_connections() -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "DOGEUSDT"]
    async with FakeBinanceServer([send(trade_frame(1))]) as server:
        stream = BinanceStream(settings(server.base_url, binance_symbols=symbols, ws_shard_size=4))
        async with contextlib.aclosing(stream.frames()) as frames:
            await take(frames, 3)
            await server.wait_for_connections(3)

    expected = [
        ["btcusdt@trade", "btcusdt@bookTicker", "ethusdt@trade", "ethusdt@bookTicker"],
        ["solusdt@trade", "solusdt@bookTicker", "adausdt@trade", "adausdt@bookTicker"],
        ["dogeusdt@trade", "dogeusdt@bookTicker"],
    ]
    assert stream.shards == expected
    # The connections open concurrently: compare regardless of arrival order.
    assert sorted(connection.streams for connection in server.connections) == sorted(expected)
    assert all(connection.path.startswith("/stream?streams=") for connection in server.connections)


async def test_frames_are_yielded_and_garbage_is_dead_lettered_not_raised() -> None:
    async with FakeBinanceServer(
        [send(trade_frame(1), BOOK, "garbage{", trade_frame(2))]
    ) as server:
        stream = BinanceStream(settings(server.base_url))
        async with contextlib.aclosing(stream.frames()) as frames:
            got = await take(frames, 4)

    assert [frame.raw for frame in got] == [trade_frame(1), BOOK, "garbage{", trade_frame(2)]
    assert {frame.vendor for frame in got} == {"binance"}
    results = [parse_frame(*frame) for frame in got]
    assert [record.type for result in results for record in result.records] == [
        "Trade",
        "BestBidAsk",
        "Trade",
    ]
    assert [letter.reason for result in results for letter in result.dead_letters] == ["NOT_JSON"]


async def test_a_ping_from_the_server_gets_a_pong() -> None:
    async with FakeBinanceServer([ping_then(trade_frame(1))]) as server:
        stream = BinanceStream(settings(server.base_url))
        async with contextlib.aclosing(stream.frames()) as frames:
            await take(frames, 1)

    assert server.connections[0].pongs == 1


async def test_dropped_connections_reconnect_with_exact_jittered_backoff_reset_by_a_frame() -> None:
    scripts = [
        send(then="close"),  # no frame: failure 1
        send(then="drop"),  # no frame: failure 2
        send(then="close"),  # no frame: failure 3
        send(trade_frame(1), then="drop"),  # healthy, then dropped: the backoff starts over
        send(trade_frame(2)),
    ]
    sleep = RecordingSleep()
    closed_before = reconnects("connection_closed")
    async with FakeBinanceServer(scripts) as server:
        stream = BinanceStream(settings(server.base_url), sleep=sleep, random=lambda: HALF)
        async with contextlib.aclosing(stream.frames()) as frames:
            got = await take(frames, 2)

    assert [frame.raw for frame in got] == [trade_frame(1), trade_frame(2)]
    # ceilings 1, 2, 4 then 1 again; equal jitter with random() = 0.5 waits 3/4 of each
    assert sleep.delays == [0.75, 1.5, 3.0, 0.75]
    assert len(server.connections) == 5
    assert reconnects("connection_closed") - closed_before == 4


async def test_backoff_is_capped_at_the_maximum() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = RecordingSleep()
    failures_before = metric_value(
        "vendor_fetch_failure_total", vendor="binance", reason="connect_failed"
    )
    stream = BinanceStream(settings(f"ws://127.0.0.1:{port}"), sleep=sleep, random=lambda: 1.0)
    async with contextlib.aclosing(stream.frames()) as frames:
        consumer = asyncio.create_task(anext(frames))
        await sleep.wait_for_calls(6)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer

    assert sleep.delays[:6] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    failures = metric_value("vendor_fetch_failure_total", vendor="binance", reason="connect_failed")
    assert failures - failures_before >= 6


async def test_server_shutdown_reconnects_at_once_without_backoff() -> None:
    sleep = RecordingSleep()
    before = reconnects("server_shutdown")
    async with FakeBinanceServer([send(trade_frame(1), SHUTDOWN), send(trade_frame(2))]) as server:
        stream = BinanceStream(settings(server.base_url), sleep=sleep)
        async with contextlib.aclosing(stream.frames()) as frames:
            got = await take(frames, 3)

    assert [frame.raw for frame in got] == [trade_frame(1), SHUTDOWN, trade_frame(2)]
    assert parse_frame(*got[1]).control is ControlEvent.SERVER_SHUTDOWN
    assert sleep.delays == []
    assert len(server.connections) == 2
    assert reconnects("server_shutdown") - before == 1


async def test_silence_watchdog_replaces_a_quiet_connection() -> None:
    sleep = RecordingSleep()
    before = reconnects("silence")
    async with FakeBinanceServer([send(), send(trade_frame(1))]) as server:
        stream = BinanceStream(
            settings(server.base_url, binance_silence_timeout_s=0.2),
            sleep=sleep,
            random=lambda: HALF,
        )
        async with contextlib.aclosing(stream.frames()) as frames:
            got = await take(frames, 1)

    assert [frame.raw for frame in got] == [trade_frame(1)]
    assert sleep.delays == [0.75]  # silence is a failure: backed off
    assert reconnects("silence") - before == 1


async def test_a_frame_waiting_after_our_event_loop_paused_is_not_silence() -> None:
    """The ingest flow runs the stream's loop only while it polls the source: held up (Kafka
    away), the silence timer expires on our pause while frames wait in the socket."""
    release, sent, ready = threading.Event(), threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    async def script(connection: Any, log: Any) -> None:
        await connection.send(trade_frame(1))
        assert await asyncio.to_thread(release.wait, 10)
        await connection.send(trade_frame(2))
        sent.set()
        await connection.wait_closed()

    def serve() -> None:  # on its own loop, so it keeps sending while ours is paused
        async def main() -> None:
            async with FakeBinanceServer([script]) as server:
                box.update(server=server, loop=asyncio.get_running_loop(), stop=asyncio.Event())
                ready.set()
                await box["stop"].wait()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    before = reconnects("silence")
    stream = BinanceStream(
        settings(box["server"].base_url, binance_silence_timeout_s=0.2),
        sleep=RecordingSleep(),
        random=lambda: HALF,
    )
    try:
        async with contextlib.aclosing(stream.frames()) as frames:
            got = await take(frames, 1)
            await asyncio.sleep(0.05)  # the pump now waits for a frame under its timer
            release.set()
            assert sent.wait(10)
            time.sleep(0.5)  # noqa: ASYNC251 - the point: our loop paused past the timer
            got += await take(frames, 1)
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)

    assert [frame.raw for frame in got] == [trade_frame(1), trade_frame(2)]
    assert len(box["server"].connections) == 1
    assert reconnects("silence") - before == 0


async def test_connection_is_replaced_at_its_maximum_age_without_backoff() -> None:
    sleep = RecordingSleep()
    before = reconnects("max_age")
    async with FakeBinanceServer([stream_forever(0.05), send(SHUTDOWN)]) as server:
        stream = BinanceStream(
            settings(server.base_url, binance_max_connection_age_s=0.3), sleep=sleep
        )
        async with contextlib.aclosing(stream.frames()) as frames:
            got: list[str] = []
            while SHUTDOWN not in got:
                got += [frame.raw for frame in await take(frames, 1)]

    assert len(got) - 1 >= 2  # ~0.3 s of trades every 0.05 s, then the second connection
    assert sleep.delays == []
    assert len(server.connections) == 2
    assert reconnects("max_age") - before == 1


async def test_outgoing_requests_are_limited_to_five_a_second() -> None:
    clock = FakeClock(start=datetime(2026, 4, 23, 13, 30, tzinfo=UTC))
    async with FakeBinanceServer([send(trade_frame(1))]) as server:
        stream = BinanceStream(
            settings(server.base_url), sleep=clock.sleep, limiter_clock=clock.monotonic
        )
        async with contextlib.aclosing(stream.frames()) as frames:
            await take(frames, 1)
            for _ in range(12):
                await stream.list_subscriptions()
            replies = await take(frames, 12)

    assert clock.delays == [1.0, 1.0]  # 5 at t=0, 5 at t=1, 2 at t=2
    assert [request["method"] for request in server.connections[0].received] == [
        "LIST_SUBSCRIPTIONS"
    ] * 12
    assert [request["id"] for request in server.connections[0].received] == list(range(1, 13))
    assert {parse_frame(*reply).control for reply in replies} == {ControlEvent.SUBSCRIPTION_REPLY}


async def test_subscribe_and_unsubscribe_on_a_live_connection() -> None:
    async with FakeBinanceServer([send(trade_frame(1))]) as server:
        stream = BinanceStream(settings(server.base_url, ws_shard_size=4))
        async with contextlib.aclosing(stream.frames()) as frames:
            await take(frames, 1)
            await stream.subscribe(["ethusdt@trade", "btcusdt@trade"])  # one is already there
            await stream.unsubscribe(["btcusdt@bookTicker"])
            await take(frames, 2)  # the two replies

    requests = [
        {key: value for key, value in request.items() if key != "id"}
        for request in server.connections[0].received
    ]
    assert requests == [
        {"method": "SUBSCRIBE", "params": ["ethusdt@trade"]},
        {"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"]},
    ]
    assert stream.shards == [["btcusdt@trade", "ethusdt@trade"]]


async def test_subscribing_beyond_a_full_shard_opens_another_connection() -> None:
    async with FakeBinanceServer([send(trade_frame(1)), send(trade_frame(2, "ETHUSDT"))]) as server:
        stream = BinanceStream(settings(server.base_url, ws_shard_size=2))
        async with contextlib.aclosing(stream.frames()) as frames:
            await take(frames, 1)
            await stream.subscribe(["ethusdt@trade"])
            (second,) = await take(frames, 1)

    assert json.loads(second.raw)["data"]["s"] == "ETHUSDT"
    assert [connection.streams for connection in server.connections] == [
        ["btcusdt@trade", "btcusdt@bookTicker"],
        ["ethusdt@trade"],
    ]


async def test_a_base_url_that_is_not_a_websocket_url_is_a_config_error() -> None:
    stream = BinanceStream(settings("https://stream.binance.us:9443"))
    async with contextlib.aclosing(stream.frames()) as frames:
        with pytest.raises(ConfigError, match="BINANCE_WS_BASE"):
            await take(frames, 1)


def test_no_symbols_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BINANCE_SYMBOLS"):
        BinanceStream(settings("ws://127.0.0.1:9", binance_symbols=[]))
