"""What the notification service tells a user, and on which channels it may say it.

The seed's WebSocket push ``{type: "ORDER_UPDATE", orderId, status, filledQty, ...}`` becomes
``OrderUpdateNotification``, whose ``type`` is ``"OrderUpdate"`` (the seed's name in our casing;
``filledQty`` is ``filledQuantity``).
Delivery is at-least-once, so every notification has a ``notificationId`` a client uses to drop
repeats, and an order update carries the order event's ``sequence`` so a client that receives
updates out of order keeps the newest.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from brokerflow.schemas.base import (
    Message,
    NonNegativeDecimal,
    PositiveDecimal,
    Symbol,
    UtcDatetime,
    format_decimal,
    invalid_field,
)
from brokerflow.schemas.orders import OrderStatus, Side

__all__ = [
    "AlertCondition",
    "Notification",
    "NotificationChannel",
    "NotificationUndelivered",
    "OrderUpdateNotification",
    "PriceAlertTriggered",
]

Id = Annotated[str, Field(min_length=1, max_length=64)]
ReasonCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]


class NotificationChannel(StrEnum):
    IN_APP = "IN_APP"  # the WebSocket gateway, when the user is connected
    PUSH = "PUSH"  # FCM / APNs
    EMAIL = "EMAIL"
    SMS = "SMS"


class AlertCondition(StrEnum):
    PRICE_AT_OR_ABOVE = "PRICE_AT_OR_ABOVE"
    PRICE_AT_OR_BELOW = "PRICE_AT_OR_BELOW"


class _NotificationBase(Message):
    #: Unique per notification: the key a client or channel uses to drop repeats.
    notification_id: Id
    user_id: Id
    account_id: Id | None = None
    #: Where the user wants this kind of notice, in order of preference; the router may skip
    #: ``IN_APP`` when the user is offline.
    channels: tuple[NotificationChannel, ...] = Field(min_length=1)
    #: The text shown to the user, already templated.
    message: str = Field(min_length=1, max_length=500)
    event_time: UtcDatetime

    @field_validator("channels")
    @classmethod
    def _channels_are_distinct(
        cls, channels: tuple[NotificationChannel, ...]
    ) -> tuple[NotificationChannel, ...]:
        if len(set(channels)) != len(channels):
            raise ValueError("lists a channel twice")
        return channels


class OrderUpdateNotification(_NotificationBase):
    type: Literal["OrderUpdate"] = "OrderUpdate"
    order_id: Id
    symbol: Symbol
    side: Side
    status: OrderStatus
    #: The order event's per-symbol sequence: a client keeps the update with the highest.
    sequence: int = Field(ge=0)
    filled_quantity: NonNegativeDecimal
    leaves_quantity: NonNegativeDecimal
    #: The fill that caused this update, when one did.
    last_price: PositiveDecimal | None = None
    last_quantity: PositiveDecimal | None = None
    #: The machine-readable reason of a rejection or cancellation.
    reason: str | None = None
    #: The trade of the fill that caused this update (its ``tradeId``), when one did.
    execution_id: Id | None = None
    #: The order event this update reports (``OrderPartiallyFilled``...).
    event: str | None = Field(default=None, max_length=64)
    #: The account's position in ``symbol`` after this fill (the ledger's ``FillSettled``);
    #: null on an update that is not a fill, or when the ledger had not said in time.
    position_quantity: NonNegativeDecimal | None = None

    @model_validator(mode="after")
    def _last_fill_is_whole(self) -> OrderUpdateNotification:
        if (self.last_price is None) != (self.last_quantity is None):
            raise invalid_field("last_quantity", "last price and last quantity come together")
        return self


class PriceAlertTriggered(_NotificationBase):
    """A user's price alert fired: ``price`` crossed ``threshold`` in the alert's direction."""

    type: Literal["PriceAlertTriggered"] = "PriceAlertTriggered"
    alert_id: Id
    symbol: Symbol
    condition: AlertCondition
    threshold: PositiveDecimal
    #: The market price that triggered it; ``event_time`` is that tick's time.
    price: PositiveDecimal

    @model_validator(mode="after")
    def _price_meets_condition(self) -> PriceAlertTriggered:
        if self.condition is AlertCondition.PRICE_AT_OR_ABOVE:
            met = self.price >= self.threshold
        else:
            met = self.price <= self.threshold
        if not met:
            raise invalid_field(
                "price",
                f"{format_decimal(self.price)} does not meet {self.condition.value}"
                f" {format_decimal(self.threshold)}",
                format_decimal(self.price),
            )
        return self


Notification = Annotated[OrderUpdateNotification | PriceAlertTriggered, Field(discriminator="type")]


class NotificationUndelivered(Message):
    """A notification the push channel refused, waiting for its next try (seed 002's DLQ).

    The user had no open socket, so the push channel (FCM/APNs, here pluggable) was the only way
    to reach them, and it failed. The retry job tries again at ``retry_at``, backing off 1, 2,
    4, 8 s; ``attempts`` counts the tries made so far. ``payload`` is the WebSocket message
    with its delivery sequence, exactly what the phone would have been sent.
    """

    type: Literal["NotificationUndelivered"] = "NotificationUndelivered"
    notification_id: Id
    user_id: Id
    channel: NotificationChannel = NotificationChannel.PUSH
    attempts: int = Field(ge=1)
    #: The channel's answer to the last try (``UNAVAILABLE``, ``QUOTA_EXCEEDED``...).
    reason: ReasonCode
    detail: str = Field(min_length=1, max_length=1000)
    retry_at: UtcDatetime
    payload: str = Field(min_length=2)
    #: When the last try failed.
    event_time: UtcDatetime
