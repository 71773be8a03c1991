"""Price alerts: a user's ``PRICE_AT_OR_ABOVE`` / ``PRICE_AT_OR_BELOW`` alert fires once.

:mod:`.core` is pure (which alerts a price meets, the notification); :mod:`.service` is the
consumer (``python -m brokerflow.alerts``). The API side is :mod:`brokerflow.api.alerts`.
"""

from brokerflow.alerts.core import Alert, AlertBook, AlertStatus, notification_for
from brokerflow.alerts.service import AlertsService, AlertStats, run_alerts

__all__ = [
    "Alert",
    "AlertBook",
    "AlertStats",
    "AlertStatus",
    "AlertsService",
    "notification_for",
    "run_alerts",
]
