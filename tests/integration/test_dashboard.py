"""The market dashboard in a real browser (Debian's Chromium, driven by Selenium).

Bars come from the real stats flow over a generated tape (test_stats_flow's), the exchange's
book and trades are published to their topics, and the page is served by the real app on a
loopback port. Checked: no console error, the sample tape's symbols as tiles, the chart's last
candles equal to the newest bars in MongoDB, a tile and the chart moving when a new bar arrives,
the depth ladder rebuilt from the book feed. A screenshot is saved (``BROKERFLOW_ARTIFACTS``, or
the test's temporary folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pymongo import MongoClient

from brokerflow.dashboard import create_dashboard
from brokerflow.flows.stats import clear_outputs
from brokerflow.kafka_io import producer, publish
from brokerflow.schemas.book import BookLevel, BookSnapshot
from brokerflow.schemas.examples import example_of
from brokerflow.schemas.stats import BarClosed
from brokerflow.schemas.trades import TradeExecuted
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

from .test_broker_end_to_end import eventually
from .test_stats_flow import new_recovery_dir, publish_tape, run_settings, run_to_end

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SAMPLE_TAPE_SYMBOLS = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "PETR4", "VALE3", "ITUB4", "BBDC4"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_dashboard(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,  # the page's event stream never ends by itself
        )
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually("the dashboard listening", started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail(
            "Chromium and its driver are needed: apt-get install chromium chromium-driver "
            "(scripts/test.sh installs them)"
        )
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look online
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1440,1100")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )
    try:
        yield driver
    finally:
        driver.quit()


def _mongo_bars(settings: Settings, symbol: str) -> list[dict[str, Any]]:
    client: Any = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
    try:
        found = client[settings.mongo_database][settings.stats_mongo_collection].find(
            {"symbol": symbol, "window": "1s", "venue": "BINANCE"}
        )
        return sorted(found, key=lambda d: d["windowStart"])
    finally:
        client.close()


def _time(document: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(document["windowStart"].replace("Z", "+00:00")).timestamp())


def _candle(document: dict[str, Any]) -> dict[str, Any]:
    return {k: float(document[k]) for k in ("open", "high", "low", "close")}


async def test_the_page_shows_tiles_candles_depth_and_moves_with_a_new_bar(
    settings: Settings, unique: str, tmp_path: Path, browser: Any
) -> None:
    isolated = run_settings(settings, f"{unique}dash")
    try:
        await ensure_topics(isolated)
        await publish_tape(isolated)
        await asyncio.to_thread(run_to_end, isolated, new_recovery_dir(tmp_path, "recovery"))
        bars = _mongo_bars(isolated, "BTCUSDT")
        priced = [b for b in bars if b["open"] is not None]
        topics = catalog(isolated)
        last = BarClosed.from_json_bytes(
            json.dumps({k: v for k, v in bars[-1].items() if k != "_id"})
        )
        book = example_of(BookSnapshot).model_copy(
            update={
                "symbol": "BTCUSDT",
                "sequence": 1,
                "bids": (BookLevel(price=Decimal("102.50"), quantity=Decimal("3"), orders=2),),
                "asks": (
                    BookLevel(price=Decimal("103.00"), quantity=Decimal("1.5"), orders=1),
                    BookLevel(price=Decimal("103.50"), quantity=Decimal("4"), orders=3),
                ),
            }
        )
        trade = example_of(TradeExecuted).model_copy(
            update={"symbol": "BTCUSDT", "price": Decimal("102.75"), "trade_id": "BTCUSDT-T1"}
        )
        async with producer(isolated) as writer:
            await publish(writer, topics.exchange_book.name, [("BTCUSDT", book)])
            await publish(writer, topics.trade_executions.name, [("BTCUSDT", trade)])

        async with serving(isolated) as url:
            await asyncio.to_thread(browser.get, url)

            async def ready() -> bool:
                script = "return document.body.dataset.ready === '1'"
                return bool(await asyncio.to_thread(browser.execute_script, script))

            await eventually("the page ready", ready)

            def run(script: str) -> Any:
                return asyncio.to_thread(browser.execute_script, script)

            symbols = await run(
                "return [...document.querySelectorAll('.tile')].map(e => e.dataset.symbol)"
            )
            assert set(symbols) >= SAMPLE_TAPE_SYMBOLS
            await run("return window.dashboard.select('BTCUSDT')")

            async def chart() -> list[dict[str, Any]]:
                return list(await run("return window.dashboard.candles()") or [])

            drawn = await eventually("BTCUSDT's candles", chart)
            # The chart holds MongoDB's bars with trades, second by second, and ends with the
            # newest of them, price for price.
            bodies = [c for c in drawn if "open" in c]
            assert [c["time"] for c in bodies] == [_time(b) for b in priced]
            assert {k: bodies[-1][k] for k in ("open", "high", "low", "close")} == _candle(
                priced[-1]
            )

            async def depth() -> list[str]:
                rows = await run(
                    "return [...document.querySelectorAll('#book tbody tr')].map(r => r.innerText)"
                )
                return list(rows) if rows and len(rows) == 3 else []

            ladder = await eventually("the depth ladder", depth)
            assert [row.split() for row in ladder] == [
                ["103.50", "4", "3"],
                ["103.00", "1.5", "1"],
                ["2", "3", "102.50"],
            ]
            tape = await run("return document.querySelector('#tape tbody').innerText")
            assert "102.75" in tape

            # A new bar on the topic: the tile and the chart move.
            new = last.model_copy(
                update={
                    "window_start": last.window_start + timedelta(seconds=1),
                    "window_end": last.window_end + timedelta(seconds=1),
                    "event_time": last.window_end + timedelta(seconds=1),
                    "trade_count": 1,
                    "open": Decimal("104.5"),
                    "high": Decimal("104.5"),
                    "low": Decimal("104.5"),
                    "close": Decimal("104.5"),
                    "volume": Decimal("2"),
                    "vwap": Decimal("104.5"),
                    "buy_volume": Decimal("2"),
                }
            )
            async with producer(isolated) as writer:
                await publish(writer, topics.market_bars.name, [("BTCUSDT", new)])

            async def tile_moved() -> bool:
                text = await run(
                    "return document.querySelector('.tile[data-symbol=BTCUSDT] .last').innerText"
                )
                return text == "104.50"

            await eventually("the BTCUSDT tile at 104.50", tile_moved)
            assert (await chart())[-1]["close"] == 104.5

            errors = [
                entry
                for entry in await asyncio.to_thread(browser.get_log, "browser")
                if entry["level"] == "SEVERE"
            ]
            assert errors == []
            shot = Path(os.environ.get("BROKERFLOW_ARTIFACTS") or tmp_path) / "dashboard.png"
            await asyncio.to_thread(shot.parent.mkdir, parents=True, exist_ok=True)
            assert await asyncio.to_thread(browser.save_screenshot, str(shot))
            print(f"screenshot: {shot}")
            await asyncio.to_thread(browser.get, "about:blank")  # closes the event stream
    finally:
        clear_outputs(isolated)
