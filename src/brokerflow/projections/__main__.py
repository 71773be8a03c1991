"""``python -m brokerflow.projections``: run the read-model projector until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from brokerflow.errors import StackError
from brokerflow.metrics import serve_metrics
from brokerflow.projections.projector import ProjectorStats, run_projector
from brokerflow.settings import Settings, get_settings

log = logging.getLogger("brokerflow.projections")


async def _serve(settings: Settings) -> ProjectorStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await run_projector(settings, stop)


def main() -> int:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    port = serve_metrics(settings.metrics_port)
    if port is not None:
        log.info("projector metrics on http://127.0.0.1:%d/metrics", port)
    try:
        stats = asyncio.run(_serve(settings))
    except StackError as exc:  # Kafka unreachable: the message says what to run
        print(f"projector: {exc}", file=sys.stderr)
        return 2
    log.info("projector stopped: %s", stats.as_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
