"""Pure: an order event of a user's order becomes the notification that tells them.

Which events notify (the order's state machine, as the exchange reports it on
``execution-reports-v1``): accepted, partially filled, filled, cancelled, expired, rejected,
amended, and a cancel or amend that lost its race (the exchange's ``OrderRejected`` whose
``detail`` names the ``CancelOrder``/``AmendOrder``: the order itself stays as it was).

``notificationId`` is ``"{orderId}:{sequence}"`` (the exchange's per-symbol sequence), so a
replayed event gives the same id and delivery drops the repeat. :func:`socket_payload` is what
the WebSocket sends (seed 002's ``ORDER_UPDATE`` shape); its ``sequence`` is the user's
delivery sequence, filled in by the store when the notification is delivered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from brokerflow.schemas.base import Message, format_decimal, format_utc
from brokerflow.schemas.notifications import (
    NotificationChannel,
    OrderUpdateNotification,
    PriceAlertTriggered,
)
from brokerflow.schemas.orders import (
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderStatus,
    Side,
)

__all__ = [
    "NOTIFYING_EVENTS",
    "SEQUENCE_PLACEHOLDER",
    "OrderOwner",
    "fill_key",
    "next_retry_wait",
    "order_update",
    "socket_payload",
]

NOTIFYING_EVENTS = (
    OrderAccepted,
    OrderPartiallyFilled,
    OrderFilled,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    OrderAmended,
)

#: Written where the user's delivery sequence goes; the store's script replaces it.
SEQUENCE_PLACEHOLDER = '"sequence":-1'

_LOST_RACE = {"CancelOrder": "CANCEL_REJECTED", "AmendOrder": "AMEND_REJECTED"}


@dataclass(frozen=True, slots=True)
class OrderOwner:
    """Who placed an order, from the API's order document."""

    user_id: str
    account_id: str
    side: Side


def fill_key(event: Message) -> tuple[str, str] | None:
    """``(orderId, tradeId)`` of an order event or ledger entry that reports one fill."""
    data = event.__dict__
    order_id, trade_id = data.get("order_id"), data.get("trade_id")
    if order_id is None or trade_id is None:
        return None
    return str(order_id), str(trade_id)


def _standing_status(filled: Decimal, leaves: Decimal) -> OrderStatus:
    """The order's status from its quantities, for an event that did not change it."""
    if leaves > 0:
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN
    return OrderStatus.FILLED if filled > 0 else OrderStatus.CANCELLED


def order_update(
    event: Message, owner: OrderOwner, position: Decimal | None = None
) -> OrderUpdateNotification | None:
    """The notification for one order event, or ``None`` for an event users are not told.

    ``position`` is the account's position after the fill this event reports, when known.
    """
    if not isinstance(event, NOTIFYING_EVENTS):
        return None
    data = event.__dict__
    status: OrderStatus = data["status"]
    reason: str | None = data.get("reason")
    symbol, order_id = data["symbol"], data["order_id"]
    filled, leaves = data["filled_quantity"], data["leaves_quantity"]
    last_price, last_quantity = data.get("last_price"), data.get("last_quantity")
    side = owner.side.value
    if isinstance(event, OrderRejected):
        command = event.detail.split(":", 1)[0]
        if command in _LOST_RACE:
            status = _standing_status(filled, leaves)
            reason = f"{_LOST_RACE[command]}: {event.reason}"
            text = f"Your {command[:-5].lower()} of {side} {symbol} was refused: {event.reason}"
        else:
            text = f"Your {side} order for {symbol} was rejected: {event.reason}"
    elif last_quantity is not None:
        text = (
            f"{side} {format_decimal(last_quantity)} {symbol} at {format_decimal(last_price)}: "
            f"{format_decimal(filled)} filled, {format_decimal(leaves)} open"
        )
    else:
        text = f"Your {side} order for {symbol} is {status.value.replace('_', ' ').lower()}"
    return OrderUpdateNotification(
        notification_id=f"{order_id}:{data['sequence']}",
        user_id=owner.user_id,
        account_id=owner.account_id,
        channels=(NotificationChannel.IN_APP, NotificationChannel.PUSH),
        message=text[:500],
        event_time=data["event_time"],
        order_id=order_id,
        symbol=symbol,
        side=owner.side,
        status=status,
        sequence=data["sequence"],
        filled_quantity=filled,
        leaves_quantity=leaves,
        last_price=last_price,
        last_quantity=last_quantity,
        reason=reason,
        execution_id=data.get("trade_id"),
        event=event.type,
        position_quantity=position if last_quantity is not None else None,
    )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def socket_payload(notification: OrderUpdateNotification | PriceAlertTriggered) -> str:
    """The WebSocket message, JSON, with :data:`SEQUENCE_PLACEHOLDER` for the sequence."""
    body: dict[str, Any]
    if isinstance(notification, OrderUpdateNotification):
        body = {
            "type": "ORDER_UPDATE",
            "sequence": -1,
            "notificationId": notification.notification_id,
            "orderId": notification.order_id,
            "symbol": notification.symbol,
            "side": notification.side.value,
            "status": notification.status.value,
            "filledQty": _text(notification.filled_quantity),
            "leavesQty": _text(notification.leaves_quantity),
            "lastPrice": _text(notification.last_price),
            "lastQty": _text(notification.last_quantity),
            "executionId": notification.execution_id,
            "positionQty": _text(notification.position_quantity),
            "reason": notification.reason,
            "event": notification.event,
            "orderSequence": notification.sequence,
            "message": notification.message,
            "eventTime": format_utc(notification.event_time),
        }
    else:
        body = {
            "type": "PRICE_ALERT",
            "sequence": -1,
            "notificationId": notification.notification_id,
            "alertId": notification.alert_id,
            "symbol": notification.symbol,
            "condition": notification.condition.value,
            "threshold": _text(notification.threshold),
            "price": _text(notification.price),
            "message": notification.message,
            "eventTime": format_utc(notification.event_time),
        }
    text = json.dumps(body, separators=(",", ":"))
    assert text.count(SEQUENCE_PLACEHOLDER) == 1
    return text


def next_retry_wait(attempts: int, backoff: Sequence[float]) -> float | None:
    """Seconds until the next push after ``attempts`` refused tries (the first try is the
    delivery's own), or ``None``: the retries are used up and the notification is given up."""
    if attempts < 1:
        raise ValueError("a notification is retried only after a refused try")
    return backoff[attempts - 1] if attempts <= len(backoff) else None
