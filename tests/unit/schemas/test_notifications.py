"""Notifications to users: order updates and price alerts."""

from __future__ import annotations

from typing import Any

import pytest

from brokerflow.schemas import (
    Message,
    NotificationChannel,
    OrderStatus,
    OrderUpdateNotification,
    PriceAlertTriggered,
    decode,
)
from brokerflow.schemas.examples import ORDER_UPDATE_NOTIFICATION, PRICE_ALERT_TRIGGERED

from .support import DROP, changed, rejection, wire


def test_order_update_notification_wire_form() -> None:
    assert wire(ORDER_UPDATE_NOTIFICATION) == {
        "schemaVersion": 1,
        "type": "OrderUpdate",
        "notificationId": "ntf-0001",
        "userId": "usr-42",
        "accountId": "acc-42",
        "channels": ["IN_APP", "PUSH"],
        "message": "Your order to BUY 100 PETR4 is partially filled: 40 at 38.10",
        "orderId": "ord-0001",
        "symbol": "PETR4",
        "side": "BUY",
        "status": "PARTIALLY_FILLED",
        "sequence": 3,
        "filledQuantity": "40",
        "leavesQuantity": "60",
        "lastPrice": "38.10",
        "lastQuantity": "40",
        "reason": None,
        "executionId": "PETR4-T3",
        "event": "OrderPartiallyFilled",
        "positionQuantity": "140",
        "eventTime": "2026-01-02T13:30:02.000000Z",
    }


def test_price_alert_triggered_wire_form() -> None:
    assert wire(PRICE_ALERT_TRIGGERED) == {
        "schemaVersion": 1,
        "type": "PriceAlertTriggered",
        "notificationId": "ntf-0002",
        "userId": "usr-42",
        "accountId": None,
        "channels": ["PUSH"],
        "message": "PETR4 reached 38.52 (alert: at or above 38.50)",
        "alertId": "alr-0001",
        "symbol": "PETR4",
        "condition": "PRICE_AT_OR_ABOVE",
        "threshold": "38.50",
        "price": "38.52",
        "eventTime": "2026-01-02T16:45:10.000000Z",
    }


def test_rejection_update_without_a_fill_is_valid() -> None:
    decoded = decode(
        changed(
            ORDER_UPDATE_NOTIFICATION,
            status="REJECTED",
            filledQuantity="0",
            leavesQuantity="0",
            lastPrice=None,
            lastQuantity=DROP,
            reason="INSUFFICIENT_FUNDS",
            channels=["EMAIL"],
        )
    )
    assert isinstance(decoded, OrderUpdateNotification)
    assert decoded.status is OrderStatus.REJECTED
    assert decoded.channels == (NotificationChannel.EMAIL,)
    assert decoded.reason == "INSUFFICIENT_FUNDS"


def test_alert_at_or_below_fires_at_the_threshold() -> None:
    decoded = decode(changed(PRICE_ALERT_TRIGGERED, condition="PRICE_AT_OR_BELOW", price="38.50"))
    assert isinstance(decoded, PriceAlertTriggered)


@pytest.mark.parametrize(
    ("example", "changes", "field", "says"),
    [
        (ORDER_UPDATE_NOTIFICATION, {"channels": []}, "channels", "at least 1 item"),
        (ORDER_UPDATE_NOTIFICATION, {"channels": ["PUSH", "PUSH"]}, "channels", "twice"),
        (ORDER_UPDATE_NOTIFICATION, {"channels": ["PUSH", "PIGEON"]}, "channels.1", "IN_APP"),
        (ORDER_UPDATE_NOTIFICATION, {"channels": "PUSH"}, "channels", "tuple"),
        (ORDER_UPDATE_NOTIFICATION, {"lastPrice": None}, "lastQuantity", "come together"),
        (ORDER_UPDATE_NOTIFICATION, {"status": "DONE"}, "status", "PENDING"),
        (ORDER_UPDATE_NOTIFICATION, {"filledQuantity": 40.0}, "filledQuantity", "float"),
        (ORDER_UPDATE_NOTIFICATION, {"leavesQuantity": "-60"}, "leavesQuantity", "negative"),
        (ORDER_UPDATE_NOTIFICATION, {"message": ""}, "message", "at least 1 character"),
        (ORDER_UPDATE_NOTIFICATION, {"userId": DROP}, "userId", "Field required"),
        (
            PRICE_ALERT_TRIGGERED,
            {"price": "38.49"},
            "price",
            "38.49 does not meet PRICE_AT_OR_ABOVE 38.50",
        ),
        (
            PRICE_ALERT_TRIGGERED,
            {"condition": "PRICE_AT_OR_BELOW"},
            "price",
            "38.52 does not meet PRICE_AT_OR_BELOW 38.50",
        ),
        (PRICE_ALERT_TRIGGERED, {"threshold": "0"}, "threshold", "greater than zero"),
        (PRICE_ALERT_TRIGGERED, {"price": 38.52}, "price", "float"),
        (PRICE_ALERT_TRIGGERED, {"condition": "CROSSES"}, "condition", "PRICE_AT_OR_ABOVE"),
    ],
)
def test_invalid_notification_names_the_field(
    example: Message, changes: dict[str, Any], field: str, says: str
) -> None:
    error = rejection(changed(example, **changes))
    assert error.fields == [field]
    assert says in error.problems[field]
