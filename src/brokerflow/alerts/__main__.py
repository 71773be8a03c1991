"""``python -m brokerflow.alerts``: run the price-alerts service until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from brokerflow.alerts.service import AlertStats, run_alerts
from brokerflow.errors import StackError
from brokerflow.metrics import serve_metrics
from brokerflow.settings import Settings, get_settings

log = logging.getLogger("brokerflow.alerts")


async def _serve(settings: Settings) -> AlertStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await run_alerts(settings, stop)


def main() -> int:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve_metrics(settings.metrics_port)
    try:
        stats = asyncio.run(_serve(settings))
    except StackError as exc:  # Kafka unreachable: the message says what to run
        print(f"alerts: {exc}", file=sys.stderr)
        return 2
    log.info("alerts service stopped: %s", stats.as_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
