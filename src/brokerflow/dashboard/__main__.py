"""``python -m brokerflow.dashboard``: the market dashboard on DASHBOARD_HOST:DASHBOARD_PORT."""

from __future__ import annotations

import logging
import sys

import uvicorn

from brokerflow.dashboard.service import create_dashboard
from brokerflow.metrics import serve_metrics
from brokerflow.settings import get_settings


def main() -> int:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve_metrics(settings.metrics_port)
    app = create_dashboard(settings)
    logging.getLogger("brokerflow.dashboard").info(
        "dashboard on http://%s:%d/", settings.dashboard_host, settings.dashboard_port
    )
    uvicorn.run(
        app,
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
