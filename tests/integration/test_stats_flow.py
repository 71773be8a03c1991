"""The stats flow on the real stack: Kafka in, MongoDB + Redis + Kafka out, crash and -w 2.

Each test publishes the same tape to its own topic prefix, runs ``python -m bytewax.run
brokerflow.flows.stats:flow`` as a subprocess with recovery on, and reads back the stores.

The tape (hand-computable): from a whole minute T0, for 150 s, a trade every 250 ms per symbol
with prices cycling 100, 101, 102, 103 (BTCUSDT; ETHUSDT adds 1900) and quantities 1, 2, 3, 4,
even trades BUY and odd SELL; a best bid/ask every 500 ms with spreads alternating 0.20 and 0.30,
and two more seconds of book tickers after the last trade. Every full 1 s window therefore holds
open 100, high 103, low 100, close 103, volume 10, VWAP (100 + 202 + 306 + 412) / 10 = 102,
buy 1 + 3 = 4, sell 2 + 4 = 6, two quotes with mean spread 0.25 and max 0.30.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from bytewax.recovery import init_db_dir
from pymongo import MongoClient

from brokerflow.flows.stats import clear_outputs
from brokerflow.kafka_io import consumer, producer, publish
from brokerflow.schemas.examples import example_of
from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.orders import Side
from brokerflow.schemas.trades import TradeExecuted
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 2, 13, 0, tzinfo=UTC)
SYMBOLS = {"BTCUSDT": Decimal(0), "ETHUSDT": Decimal(1900)}
SECONDS = 150


def trades(symbol: str) -> list[Trade]:
    base = SYMBOLS[symbol]
    out = []
    for i in range(SECONDS * 4):
        when = T0 + timedelta(milliseconds=250 * i)
        out.append(
            Trade(
                venue="BINANCE",
                symbol=symbol,
                trade_id=str(1000 + i),
                price=base + 100 + i % 4,
                quantity=Decimal(i % 4 + 1),
                aggressor_side="BUY" if i % 2 == 0 else "SELL",
                event_time=when,
                receive_time=when,
            )
        )
    return out


def quotes(symbol: str) -> list[BestBidAsk]:
    base = SYMBOLS[symbol]
    out = []
    for j in range((SECONDS + 2) * 2):
        when = T0 + timedelta(milliseconds=500 * j)
        bid = base + Decimal("99.90")
        out.append(
            BestBidAsk(
                venue="BINANCE",
                symbol=symbol,
                bid_price=bid,
                bid_quantity="1",
                ask_price=bid + (Decimal("0.20") if j % 2 == 0 else Decimal("0.30")),
                ask_quantity="2",
                update_id=j,
                event_time=when,
                receive_time=when,
            )
        )
    return out


def late_ticks() -> tuple[Trade, BestBidAsk]:
    """Ticks far behind their streams: they must reach the late topic and change no bar."""
    when = T0 + timedelta(seconds=10)
    return (
        Trade(
            venue="BINANCE",
            symbol="BTCUSDT",
            trade_id="999999",
            price="1",
            quantity="1000",
            aggressor_side="SELL",
            event_time=when,
            receive_time=when,
        ),
        BestBidAsk(
            venue="BINANCE",
            symbol="BTCUSDT",
            bid_price="1",
            bid_quantity="1",
            ask_price="500",
            ask_quantity="1",
            event_time=when,
            receive_time=when,
        ),
    )


def run_settings(settings: Settings, tag: str) -> Settings:
    return settings.model_copy(
        update={
            "topic_prefix": f"it-{tag}.",
            "mongo_database": f"test_{tag}",
            "stats_redis_prefix": f"test:{tag}:",
        }
    )


async def publish_tape(settings: Settings, *, part: int | None = None) -> None:
    """Publish the tape; ``part`` 0 or 1 publishes only the first or second half of each stream."""
    topics = catalog(settings)
    streams: list[tuple[str, list[Any]]] = []
    for symbol in SYMBOLS:
        streams.append((topics.market_trades.name, trades(symbol)))
        streams.append((topics.market_book_ticker.name, quotes(symbol)))
    async with producer(settings) as client:
        for topic, ticks in streams:
            half = len(ticks) // 2
            chosen = ticks if part is None else (ticks[:half] if part == 0 else ticks[half:])
            await publish(client, topic, [(t.symbol, t) for t in chosen])
        if part in (None, 1):
            late_trade, late_quote = late_ticks()
            await publish(client, topics.market_trades.name, [("BTCUSDT", late_trade)])
            await publish(client, topics.market_book_ticker.name, [("BTCUSDT", late_quote)])
            await client.send_and_wait(topics.market_trades.name, b"{oops", key=b"BTCUSDT")


async def prepare(settings: Settings) -> None:
    topics = catalog(settings)
    await ensure_topics(
        settings,
        [
            topics.market_trades,
            topics.market_book_ticker,
            topics.market_bars,
            topics.market_late_ticks,
            topics.dead_letters,
        ],
    )


def flow_env(settings: Settings, *, stop_at_end: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        MONGO_URL=settings.mongo_url,
        REDIS_URL=settings.redis_url,
        TOPIC_PREFIX=settings.topic_prefix,
        MONGO_DATABASE=settings.mongo_database,
        STATS_REDIS_PREFIX=settings.stats_redis_prefix,
        STATS_STOP_AT_END="true" if stop_at_end else "false",
        STATS_RECENT_BARS="100",
    )
    return env


def flow_command(recovery: Path, workers: int = 1) -> list[str]:
    command = [sys.executable, "-m", "bytewax.run", "brokerflow.flows.stats:flow"]
    return [*command, "-w", str(workers), "-r", str(recovery), "-s", "1", "-b", "0"]


def new_recovery_dir(tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    init_db_dir(directory, 1)
    return directory


def run_to_end(settings: Settings, recovery: Path, workers: int = 1) -> None:
    done = subprocess.run(
        flow_command(recovery, workers),
        env=flow_env(settings, stop_at_end=True),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def kill_9_after_bars(settings: Settings, recovery: Path, min_bars: int) -> None:
    """Run the flow tailing its topics (it never ends by itself); ``kill -9`` it mid-flow."""
    process = subprocess.Popen(
        flow_command(recovery),
        env=flow_env(settings, stop_at_end=False),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(mongo_bars(settings)) < min_bars and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(mongo_bars(settings)) >= min_bars, "the flow wrote no bars before the kill"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def mongo_bars(settings: Settings, *, with_computed_time: bool = False) -> list[dict[str, Any]]:
    client: Any = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
    try:
        docs = list(client[settings.mongo_database][settings.stats_mongo_collection].find())
    finally:
        client.close()
    if not with_computed_time:
        for doc in docs:
            doc.pop("computedTime", None)
    return sorted(docs, key=lambda d: d["_id"])


def redis_contents(settings: Settings, *, with_computed_time: bool = False) -> dict[str, Any]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)

    def clean(bar: dict[str, Any]) -> dict[str, Any]:
        return bar if with_computed_time else {k: v for k, v in bar.items() if k != "computedTime"}

    contents: dict[str, Any] = {}
    try:
        for key in sorted(client.scan_iter(match=f"{settings.stats_redis_prefix}*", count=1000)):
            short = key.removeprefix(settings.stats_redis_prefix)
            kind = client.type(key)
            if kind == "zset":
                contents[short] = [
                    (clean(json.loads(member)), score)
                    for member, score in client.zrange(key, 0, -1, withscores=True)
                ]
            elif short.startswith("bars:latest:"):
                contents[short] = clean(client.hgetall(key))
            else:
                contents[short] = client.hgetall(key)
    finally:
        client.close()
    return contents


@pytest.fixture
def isolated(settings: Settings, unique: str) -> Iterator[Any]:
    made: list[Settings] = []

    def make(tag: str) -> Settings:
        s = run_settings(settings, f"{unique}{tag}")
        made.append(s)
        return s

    yield make
    for s in made:
        clear_outputs(s)


async def topic_values(settings: Settings, topic: str, expected: int) -> list[bytes]:
    values: list[bytes] = []
    async with consumer(settings, topic) as client:
        deadline = time.monotonic() + 15
        while len(values) < expected and time.monotonic() < deadline:
            batch = await client.getmany(timeout_ms=500)
            values += [record.value for records in batch.values() for record in records]
    return values


async def test_bars_reach_mongodb_redis_and_the_bars_topic(isolated: Any, tmp_path: Path) -> None:
    settings = isolated("a")
    await prepare(settings)
    await publish_tape(settings)
    run_to_end(settings, new_recovery_dir(tmp_path, "recovery"))

    docs = {d["_id"]: d for d in mongo_bars(settings, with_computed_time=True)}
    # 152 one-second bars (150 with trades, 2 book-only) and 3 one-minute bars per symbol.
    assert len(docs) == 2 * (152 + 3)
    second = docs["BTCUSDT|1s|BINANCE|2026-01-02T13:00:07.000000Z"]
    assert {k: second[k] for k in ("open", "high", "low", "close", "volume", "vwap")} == {
        "open": "100",
        "high": "103",
        "low": "100",
        "close": "103",
        "volume": "10",
        "vwap": "102.00000000",
    }
    assert (second["tradeCount"], second["buyVolume"], second["sellVolume"]) == (4, "4", "6")
    assert (second["bboCount"], second["spreadMean"], second["spreadMax"]) == (
        2,
        "0.25000000",
        "0.30",
    )
    # The late trade (1000 @ 1) and the late quote (spread 499) at 13:00:10 changed nothing.
    assert docs["BTCUSDT|1s|BINANCE|2026-01-02T13:00:10.000000Z"]["low"] == "100"
    minute = docs["BTCUSDT|1m|BINANCE|2026-01-02T13:00:00.000000Z"]
    assert {k: minute[k] for k in ("tradeCount", "volume", "vwap", "buyVolume", "sellVolume")} == {
        "tradeCount": 240,
        "volume": "600",
        "vwap": "102.00000000",
        "buyVolume": "240",
        "sellVolume": "360",
    }
    assert (minute["bboCount"], minute["spreadMean"], minute["spreadMax"]) == (
        120,
        "0.25000000",
        "0.30",
    )
    last_minute = docs["BTCUSDT|1m|BINANCE|2026-01-02T13:02:00.000000Z"]
    assert (last_minute["tradeCount"], last_minute["volume"], last_minute["bboCount"]) == (
        120,
        "300",
        64,
    )
    book_only = docs["BTCUSDT|1s|BINANCE|2026-01-02T13:02:31.000000Z"]
    assert (book_only["tradeCount"], book_only["open"], book_only["volume"]) == (0, None, "0")
    eth = docs["ETHUSDT|1s|BINANCE|2026-01-02T13:00:07.000000Z"]
    assert (eth["open"], eth["vwap"]) == ("2000", "2002.00000000")

    cache = redis_contents(settings)
    assert cache["market:last_price"] == {"BTCUSDT": "103", "ETHUSDT": "2003"}
    assert cache["market:last_price_time"]["BTCUSDT"] == "2026-01-02T13:02:30.000000Z"
    latest = cache["bars:latest:BTCUSDT:1s"]
    assert (latest["windowStart"], latest["tradeCount"], latest["open"]) == (
        "2026-01-02T13:02:31.000000Z",
        "0",
        "",
    )
    recent = cache["bars:recent:BTCUSDT:1s"]
    assert len(recent) == 100  # STATS_RECENT_BARS: the newest 100 of 152
    assert recent[-1][0]["windowStart"] == "2026-01-02T13:02:31.000000Z"
    assert [bar["windowStart"] for bar, _ in cache["bars:recent:BTCUSDT:1m"]] == [
        "2026-01-02T13:00:00.000000Z",
        "2026-01-02T13:01:00.000000Z",
        "2026-01-02T13:02:00.000000Z",
    ]

    topics = catalog(settings)
    late = await topic_values(settings, topics.market_late_ticks.name, 2)
    assert sorted(late) == sorted(t.to_json_bytes() for t in late_ticks())
    letters = await topic_values(settings, topics.dead_letters.name, 1)
    assert [json.loads(v)["reason"] for v in letters] == ["SCHEMA_INVALID"]
    bars_on_topic = await topic_values(settings, topics.market_bars.name, len(docs))
    assert len(bars_on_topic) == len(docs)

    # A full replay from offset 0 (fresh recovery) changes nothing, not even computedTime.
    before = (
        mongo_bars(settings, with_computed_time=True),
        redis_contents(settings, with_computed_time=True),
    )
    run_to_end(settings, new_recovery_dir(tmp_path, "replay"))
    after = (
        mongo_bars(settings, with_computed_time=True),
        redis_contents(settings, with_computed_time=True),
    )
    assert after == before


async def test_kill_9_and_restart_leaves_the_same_contents(isolated: Any, tmp_path: Path) -> None:
    reference, crashed = isolated("r"), isolated("c")
    for s in (reference, crashed):
        await prepare(s)
    await publish_tape(reference)
    await publish_tape(crashed, part=0)

    recovery = new_recovery_dir(tmp_path, "recovery")
    kill_9_after_bars(crashed, recovery, min_bars=20)
    written_before_crash = len(mongo_bars(crashed))
    assert written_before_crash < 2 * (152 + 3)

    await publish_tape(crashed, part=1)
    run_to_end(crashed, recovery)
    run_to_end(reference, new_recovery_dir(tmp_path, "reference"))

    assert mongo_bars(crashed) == mongo_bars(reference)
    assert redis_contents(crashed) == redis_contents(reference)


async def test_two_workers_give_the_same_output_as_one(isolated: Any, tmp_path: Path) -> None:
    one, two = isolated("w1"), isolated("w2")
    for s in (one, two):
        await prepare(s)
        await publish_tape(s)
    run_to_end(one, new_recovery_dir(tmp_path, "one"), workers=1)
    run_to_end(two, new_recovery_dir(tmp_path, "two"), workers=2)
    assert len(mongo_bars(two)) == 2 * (152 + 3)
    assert mongo_bars(two) == mongo_bars(one)
    assert redis_contents(two) == redis_contents(one)


# --- live: the main entry point, tailing its topics ---------------------------------------------
def quiet_tape() -> tuple[list[Trade], list[BestBidAsk]]:
    """Four trades and two quotes in the last two seconds of a minute, then silence.

    1 s [58, 59): 100 x 1, 101 x 2 (vwap 302 / 3 = 100.66666667) and a quote with spread 0.20;
    1 s [59, 60): 102 x 3, 103 x 4 (vwap 718 / 7 = 102.57142857) and a quote with spread 0.30;
    1 min [00, 60): all of them, vwap 1020 / 10 = 102. Nothing ever comes later, so without the
    idle close none of them would close: the frontier stays at 59.25 - 2 = 57.25 s.
    """
    trades_ = [
        Trade(
            venue="BINANCE",
            symbol="BTCUSDT",
            trade_id=str(i),
            price=Decimal(100 + i),
            quantity=Decimal(i + 1),
            aggressor_side="BUY",
            event_time=T0 + timedelta(seconds=58 + i / 2),
            receive_time=T0 + timedelta(seconds=58 + i / 2),
        )
        for i in range(4)
    ]
    quotes_ = [
        BestBidAsk(
            venue="BINANCE",
            symbol="BTCUSDT",
            bid_price=bid,
            bid_quantity="1",
            ask_price=ask,
            ask_quantity="1",
            event_time=T0 + timedelta(seconds=seconds),
            receive_time=T0 + timedelta(seconds=seconds),
        )
        for seconds, bid, ask in ((58.25, "99.90", "100.10"), (59.25, "101.85", "102.15"))
    ]
    return trades_, quotes_


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def live_stats_process(
    settings: Settings, tmp_path: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m brokerflow.flows.stats`` tailing the topics (its own recovery directory)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "brokerflow.flows.stats"],
        env={
            **flow_env(settings, stop_at_end=False),
            "STATS_RECOVERY_DIR": str(tmp_path / "recovery"),
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def publish_quiet_tape(settings: Settings, *, late_and_bad: bool = False) -> None:
    topics = catalog(settings)
    trades_, quotes_ = quiet_tape()
    async with producer(settings) as client:
        await publish(client, topics.market_trades.name, [(t.symbol, t) for t in trades_])
        await publish(client, topics.market_book_ticker.name, [(q.symbol, q) for q in quotes_])
        if late_and_bad:
            # 9.5 s behind the trade clock (59.5 s), the most advanced clock: late by 9.5 s.
            behind = T0 + timedelta(seconds=50)
            late = trades_[0].model_copy(update={"trade_id": "99", "event_time": behind})
            await publish(client, topics.market_trades.name, [(late.symbol, late)])
            await client.send_and_wait(topics.market_trades.name, b"{oops", key=b"BTCUSDT")


async def test_live_windows_of_a_quiet_symbol_close_on_a_timer(
    isolated: Any, tmp_path: Path
) -> None:
    settings = isolated("q")
    await prepare(settings)
    await publish_quiet_tape(settings)
    with live_stats_process(settings, tmp_path, STATS_IDLE_STREAM_TIMEOUT_S="1", METRICS_PORT="0"):
        wait_until(lambda: len(mongo_bars(settings)) >= 3)
    docs = {d["_id"]: d for d in mongo_bars(settings)}
    figures = {
        key: (d["tradeCount"], d["volume"], d["vwap"], d["bboCount"], d["spreadMax"])
        for key, d in docs.items()
    }
    assert figures == {
        "BTCUSDT|1s|BINANCE|2026-01-02T13:00:58.000000Z": (2, "3", "100.66666667", 1, "0.20"),
        "BTCUSDT|1s|BINANCE|2026-01-02T13:00:59.000000Z": (2, "7", "102.57142857", 1, "0.30"),
        "BTCUSDT|1m|BINANCE|2026-01-02T13:00:00.000000Z": (4, "10", "102.00000000", 2, "0.30"),
    }
    cache = redis_contents(settings)
    assert cache["market:last_price"] == {"BTCUSDT": "103"}


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def scrape(port: int) -> dict[str, float]:
    """The exposed samples, ``name{labels}`` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_the_stats_process_serves_its_metrics(isolated: Any, tmp_path: Path) -> None:
    settings = isolated("m")
    await prepare(settings)
    await publish_quiet_tape(settings, late_and_bad=True)
    port = free_port()
    late_total = 'window_late_events_dropped_total{flow="stats"}'
    samples: dict[str, float] = {}
    with live_stats_process(settings, tmp_path, METRICS_PORT=str(port)):

        def scraped_all() -> bool:
            try:
                samples.update(scrape(port))
            except OSError:  # not listening yet
                return False
            return samples.get(late_total) == 1 and any(k.startswith("dead_") for k in samples)

        wait_until(scraped_all)
    assert samples[late_total] == 1
    # One late trade, 9.5 s behind: in the (5, 10] bucket of the lateness histogram.
    assert samples['window_lateness_seconds_count{flow="stats"}'] == 1
    assert samples['window_lateness_seconds_sum{flow="stats"}'] == 9.5
    assert samples['window_lateness_seconds_bucket{flow="stats",le="5.0"}'] == 0
    assert samples['window_lateness_seconds_bucket{flow="stats",le="10.0"}'] == 1
    assert samples['dead_letters_total{reason="SCHEMA_INVALID",source="stats"}'] == 1


async def test_the_exchanges_own_trades_become_brokerflow_bars_and_the_last_price(
    isolated: Any, tmp_path: Path
) -> None:
    """Three PETR4 trades of the matching engine in one second, one in the next: venue BROKERFLOW
    bars beside Binance's, and PETR4's last price in the market cache (what the portfolio's
    ``currentPrice`` reads)."""
    settings = isolated("x")
    await prepare(settings)
    topics = catalog(settings)
    await ensure_topics(settings, [topics.trade_executions])
    t = datetime(2026, 6, 25, 13, 30, 0, 200_000, tzinfo=UTC)
    prints = [(t, "38.00", "100", "BUY"), (t + timedelta(milliseconds=300), "38.50", "200", "BUY")]
    prints += [(t + timedelta(milliseconds=600), "37.90", "50", "SELL")]
    prints += [(t + timedelta(seconds=1), "38.10", "10", "SELL")]
    trades = [
        example_of(TradeExecuted).model_copy(
            update={
                "trade_id": f"PETR4-T{n}",
                "symbol": "PETR4",
                "sequence": n,
                "price": Decimal(price),
                "quantity": Decimal(quantity),
                "aggressor_side": Side(side),
                "event_time": when,
            }
        )
        for n, (when, price, quantity, side) in enumerate(prints, start=1)
    ]
    # A crypto pair traded here too: its bars are kept, but its cache stays Binance's.
    btc = trades[0].model_copy(
        update={"trade_id": "BTCUSDT-T1", "symbol": "BTCUSDT", "price": Decimal("94000")}
    )
    async with producer(settings) as client:
        await publish(client, topics.trade_executions.name, [("PETR4", x) for x in trades])
        await publish(client, topics.trade_executions.name, [("BTCUSDT", btc)])
    run_to_end(settings, new_recovery_dir(tmp_path, "recovery"))

    docs = {d["_id"]: d for d in mongo_bars(settings)}
    first = docs["PETR4|1s|BROKERFLOW|2026-06-25T13:30:00.000000Z"]
    fields = ("open", "high", "low", "close", "volume", "vwap", "buyVolume", "sellVolume")
    # vwap = (38.00*100 + 38.50*200 + 37.90*50) / 350 = 13395 / 350
    assert {k: first[k] for k in fields} == {
        "open": "38.00",
        "high": "38.50",
        "low": "37.90",
        "close": "37.90",
        "volume": "350",
        "vwap": "38.27142857",
        "buyVolume": "300",
        "sellVolume": "50",
    }
    assert docs["PETR4|1s|BROKERFLOW|2026-06-25T13:30:01.000000Z"]["close"] == "38.10"
    minute = docs["PETR4|1m|BROKERFLOW|2026-06-25T13:30:00.000000Z"]
    assert (minute["tradeCount"], minute["volume"]) == (4, "360")
    assert docs["BTCUSDT|1s|BROKERFLOW|2026-06-25T13:30:00.000000Z"]["close"] == "94000"
    cache = redis_contents(settings)
    assert cache["market:last_price"] == {"PETR4": "38.10"}
    assert "bars:latest:PETR4:1s" in cache
    assert not [key for key in cache if "BTCUSDT" in key]
