"""Notifications: order events become each user's updates, delivered over WebSockets.

:mod:`.core` (pure mapping and the socket message), :mod:`.store` (Redis: per-user sequence,
backlog, pub/sub), :mod:`.service` (``python -m brokerflow.notifications``).
"""

from brokerflow.notifications.core import OrderOwner, order_update, socket_payload
from brokerflow.notifications.service import run_notifications
from brokerflow.notifications.store import Backlog, NotificationStore

__all__ = [
    "Backlog",
    "NotificationStore",
    "OrderOwner",
    "order_update",
    "run_notifications",
    "socket_payload",
]
