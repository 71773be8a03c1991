"""The pure half of price alerts: which alerts a trade's price meets, and what to tell the user.

No I/O, no clock. An alert ``PRICE_AT_OR_ABOVE 38.50`` is met by any trade at 38.50 or more
printed at or after the alert was set (a trade from before, read late or replayed, never fires
it); ``PRICE_AT_OR_BELOW`` likewise downwards. The service (:mod:`brokerflow.alerts.service`)
keeps the active alerts in an :class:`AlertBook`, asks it about each trade, and spends each alert
it fires.

The MongoDB ``alerts`` document (written by the API, read by the API and the service)::

    _id = alertId, alertId, userId, accountId, symbol, condition, threshold (decimal string),
    status ACTIVE | TRIGGERED | CANCELLED, createdAt, cancelledAt, triggeredPrice, triggeredAt
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from brokerflow.schemas.alerts import AlertCreated
from brokerflow.schemas.base import Message, format_decimal, format_utc
from brokerflow.schemas.market import Trade
from brokerflow.schemas.notifications import (
    AlertCondition,
    NotificationChannel,
    PriceAlertTriggered,
)
from brokerflow.schemas.trades import TradeExecuted

__all__ = [
    "ALERTS",
    "Alert",
    "AlertBook",
    "AlertStatus",
    "Print",
    "alert_document",
    "alert_from_command",
    "alert_from_document",
    "notification_for",
    "print_of",
]

#: The MongoDB collection of alerts.
ALERTS = "alerts"
#: Where a triggered alert is said, in order of preference (the delivery side picks).
CHANNELS = (NotificationChannel.IN_APP, NotificationChannel.PUSH)

_WORDS = {
    AlertCondition.PRICE_AT_OR_ABOVE: "at or above",
    AlertCondition.PRICE_AT_OR_BELOW: "at or below",
}


class AlertStatus(StrEnum):
    ACTIVE = "ACTIVE"
    TRIGGERED = "TRIGGERED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    user_id: str
    account_id: str | None
    symbol: str
    condition: AlertCondition
    threshold: Decimal
    created_at: datetime

    def met_by(self, price: Decimal, at: datetime) -> bool:
        if at < self.created_at:
            return False
        if self.condition is AlertCondition.PRICE_AT_OR_ABOVE:
            return price >= self.threshold
        return price <= self.threshold


@dataclass(frozen=True, slots=True)
class Print:
    """One price on a tape: a venue's trade or our exchange's."""

    symbol: str
    price: Decimal
    at: datetime


def print_of(message: Message) -> Print | None:
    """The price a market message carries; None for anything that is not a trade."""
    if isinstance(message, Trade | TradeExecuted):
        return Print(message.symbol, message.price, message.event_time)
    return None


def alert_from_command(command: AlertCreated) -> Alert:
    return Alert(
        alert_id=command.alert_id,
        user_id=command.user_id,
        account_id=command.account_id,
        symbol=command.symbol,
        condition=command.condition,
        threshold=command.threshold,
        created_at=command.event_time,
    )


def alert_document(command: AlertCreated) -> dict[str, Any]:
    """The ACTIVE document the API inserts before it publishes the command."""
    return {
        "_id": command.alert_id,
        "alertId": command.alert_id,
        "userId": command.user_id,
        "accountId": command.account_id,
        "symbol": command.symbol,
        "condition": command.condition.value,
        "threshold": format_decimal(command.threshold),
        "status": AlertStatus.ACTIVE.value,
        "createdAt": format_utc(command.event_time),
        "cancelledAt": None,
        "triggeredPrice": None,
        "triggeredAt": None,
    }


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def alert_from_document(document: Mapping[str, Any]) -> Alert | None:
    """The alert a stored document describes; None when it is unreadable."""
    try:
        return Alert(
            alert_id=str(document["_id"]),
            user_id=str(document["userId"]),
            account_id=document.get("accountId"),
            symbol=str(document["symbol"]),
            condition=AlertCondition(document["condition"]),
            threshold=Decimal(str(document["threshold"])),
            created_at=_time(document["createdAt"]),
        )
    except (KeyError, ValueError, InvalidOperation, TypeError):
        return None


def notification_for(alert: Alert, seen: Print) -> PriceAlertTriggered:
    """The notification of a fired alert. Its id is the alert's: however often it is sent (a
    crash between sending and marking the alert spent, two service instances), the delivery
    side keeps one."""
    return PriceAlertTriggered(
        notification_id=alert.alert_id,
        user_id=alert.user_id,
        account_id=alert.account_id,
        channels=CHANNELS,
        message=(
            f"{alert.symbol} traded at {format_decimal(seen.price)} (your alert: "
            f"{_WORDS[alert.condition]} {format_decimal(alert.threshold)})"
        ),
        alert_id=alert.alert_id,
        symbol=alert.symbol,
        condition=alert.condition,
        threshold=alert.threshold,
        price=seen.price,
        event_time=seen.at,
    )


class AlertBook:
    """The active alerts, by symbol. A trade asks :meth:`met_by`; the caller removes what it
    fired (so a failure to fire leaves the alert to fire on a retry)."""

    def __init__(self, alerts: Iterable[Alert] = ()) -> None:
        self._by_symbol: dict[str, dict[str, Alert]] = {}
        self._symbol_of: dict[str, str] = {}
        for alert in alerts:
            self.add(alert)

    def add(self, alert: Alert) -> None:
        self.remove(alert.alert_id)
        self._by_symbol.setdefault(alert.symbol, {})[alert.alert_id] = alert
        self._symbol_of[alert.alert_id] = alert.symbol

    def remove(self, alert_id: str) -> Alert | None:
        symbol = self._symbol_of.pop(alert_id, None)
        if symbol is None:
            return None
        alerts = self._by_symbol[symbol]
        alert = alerts.pop(alert_id)
        if not alerts:
            del self._by_symbol[symbol]
        return alert

    def met_by(self, seen: Print) -> list[Alert]:
        """The alerts this print fires, oldest first."""
        alerts = self._by_symbol.get(seen.symbol, {}).values()
        met = [alert for alert in alerts if alert.met_by(seen.price, seen.at)]
        return sorted(met, key=lambda alert: (alert.created_at, alert.alert_id))

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._symbol_of

    def __len__(self) -> int:
        return len(self._symbol_of)
