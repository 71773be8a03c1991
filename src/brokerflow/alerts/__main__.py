"""``python -m brokerflow.alerts``: the price-alerts service, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import sys

from brokerflow.alerts.service import run_alerts
from brokerflow.service_main import run_service

if __name__ == "__main__":
    sys.exit(run_service("alerts", run_alerts))
