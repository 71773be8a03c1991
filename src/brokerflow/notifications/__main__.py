"""``python -m brokerflow.notifications``: the notifier and its delivery, until Ctrl-C/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from brokerflow.errors import StackError
from brokerflow.metrics import serve_metrics
from brokerflow.notifications.service import run_notifications
from brokerflow.settings import Settings, get_settings

log = logging.getLogger("brokerflow.notifications")


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_notifications(settings, stop)


def main() -> int:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve_metrics(settings.metrics_port)
    try:
        asyncio.run(_serve(settings))
    except StackError as exc:  # Kafka unreachable: the message says what to run
        print(f"notifications: {exc}", file=sys.stderr)
        return 2
    log.info("notification service stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
