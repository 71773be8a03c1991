"""The dashboard's update latency: a bar's close to the page in a real browser.

Run ``python bench/bench_dashboard.py`` (``--bars 300 --interval 0.05 --pages 1``; the local
stack must be up, and Debian's ``chromium`` and ``chromedriver``). It serves the dashboard on a
loopback port in a namespace of its own, opens ``--pages`` headless Chromium pages on it, then
publishes ``--bars`` one-second BTCUSDT bars to ``market-bars-v1``, each stamped
``computedTime`` = the instant it is published (the instant the stats flow would have closed
it). Each page records, per bar, ``Date.now()`` when the server-sent event arrived minus that
stamp: Kafka, the dashboard's reader, its fan-out and the browser's event loop, all included.
Prints p50/p90/p99/max over every page's bars, how many arrived, the machine and the command;
deletes its topics after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("SE_OFFLINE", "true")

import uvicorn
from _common import machine_line, percentile

from brokerflow.dashboard import create_dashboard
from brokerflow.kafka_io import producer, publish
from brokerflow.schemas.examples import example_of
from brokerflow.schemas.stats import BarClosed, BarWindow
from brokerflow.settings import Settings
from brokerflow.topics import catalog, delete_topics, ensure_topics


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def browser() -> object:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    service = webdriver.ChromeService(
        executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"
    )
    return webdriver.Chrome(options=options, service=service)


async def send_bars(settings: Settings, count: int, interval: float) -> None:
    topic = catalog(settings).market_bars.name
    template = example_of(BarClosed).model_copy(
        update={"symbol": "BTCUSDT", "venue": "BINANCE", "window": BarWindow.SECOND_1}
    )
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    async with producer(settings, linger_ms=0) as writer:
        for n in range(count):
            window_start = start + timedelta(seconds=n)
            now = datetime.now(UTC)
            bar = template.model_copy(
                update={
                    "window_start": window_start,
                    "window_end": window_start + timedelta(seconds=1),
                    "event_time": window_start + timedelta(seconds=1),
                    "computed_time": now,
                    "open": Decimal(100),
                    "high": Decimal(110),
                    "low": Decimal(90),
                    "close": Decimal(100) + Decimal(n % 7),
                    "vwap": Decimal(100),
                }
            )
            # Validated as the dashboard's reader will (a bar it refuses would never arrive).
            bar = BarClosed.from_json_bytes(bar.to_json_bytes())
            await publish(writer, topic, [("BTCUSDT", bar)])
            await asyncio.sleep(interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--pages", type=int, default=1)
    args = parser.parse_args()

    unique = uuid.uuid4().hex[:8]
    settings = Settings().model_copy(
        update={"topic_prefix": f"bench-dash-{unique}-", "mongo_database": f"bench_dash_{unique}"}
    )
    asyncio.run(ensure_topics(settings))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_dashboard(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    pages = [browser() for _ in range(args.pages)]
    try:
        for page in pages:
            page.get(f"http://127.0.0.1:{port}/")  # type: ignore[attr-defined]
            while not page.execute_script("return document.body.dataset.ready === '1'"):  # type: ignore[attr-defined]
                time.sleep(0.05)
        time.sleep(1)  # the event streams open
        asyncio.run(send_bars(settings, args.bars, args.interval))
        time.sleep(2)
        latencies: list[float] = []
        for page in pages:
            latencies += page.execute_script("return window.dashboard.view.latencies")  # type: ignore[attr-defined]
    finally:
        for page in pages:
            page.quit()  # type: ignore[attr-defined]
        server.should_exit = True
        thread.join(10)
        asyncio.run(delete_topics(settings, lambda name: name.startswith(settings.topic_prefix)))

    print(
        f"bar close -> page ({args.pages} page(s), {args.bars} bars {args.interval * 1000:.0f} ms "
        f"apart): {len(latencies)} received of {args.bars * args.pages}; p50 "
        f"{statistics.median(latencies):.1f} ms, p90 {percentile(latencies, 0.9):.1f} ms, p99 "
        f"{percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
    )
    print(machine_line())
    print(f"command: python bench/bench_dashboard.py {' '.join(sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
