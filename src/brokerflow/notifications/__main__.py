"""``python -m brokerflow.notifications``: notifier, delivery and retries, until SIGTERM."""

from __future__ import annotations

import sys

from brokerflow.notifications.service import run_notifications
from brokerflow.service_main import run_service

if __name__ == "__main__":
    sys.exit(run_service("notifications", run_notifications))
