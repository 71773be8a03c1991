"""The ``python -m brokerflow.<service>`` entry point every asyncio service shares.

Settings from the environment, logging, the Prometheus port, the service until Ctrl-C or
SIGTERM (which set its ``stop`` event, so it finishes its batch and commits), and exit status 2
with the error's own advice when the stack is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from brokerflow.errors import StackError
from brokerflow.metrics import serve_metrics
from brokerflow.settings import Settings, get_settings

__all__ = ["run_service"]

Service = Callable[[Settings, asyncio.Event], Awaitable[Any]]


async def _until_signalled(service: Service, settings: Settings) -> Any:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await service(settings, stop)


def run_service(name: str, service: Service) -> int:
    """Run ``service(settings, stop)``; return the process's exit status."""
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger(f"brokerflow.{name}")
    port = serve_metrics(settings.metrics_port)
    if port is not None:
        log.info("%s metrics on http://127.0.0.1:%d/metrics", name, port)
    try:
        result = asyncio.run(_until_signalled(service, settings))
    except StackError as exc:  # Kafka unreachable: the message says what to run
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    summary = getattr(result, "as_dict", None)
    log.info("%s stopped%s", name, f": {summary()}" if callable(summary) else "")
    return 0
