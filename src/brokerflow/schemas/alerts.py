"""Price-alert commands: the API tells the alerts service what to watch, on ``alert-commands-v1``.

Keyed by symbol, like the market trades they are compared with, so one partition of the alerts
service sees an alert's definition and its symbol's prices (a co-partitioned stream
transformation). MongoDB ``alerts`` is the durable record the API reads and the service's gate:
an alert fires only while its document is ``ACTIVE`` (see :mod:`brokerflow.alerts`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from brokerflow.schemas.base import Message, PositiveDecimal, Symbol, UtcDatetime
from brokerflow.schemas.notifications import AlertCondition

__all__ = ["AlertCancelled", "AlertCommand", "AlertCreated"]

Id = Annotated[str, Field(min_length=1, max_length=64)]


class AlertCreated(Message):
    """A user set an alert: notify them once when ``symbol`` trades at or past ``threshold``.

    ``event_time`` is when the API accepted it: trades before it never fire it."""

    type: Literal["AlertCreated"] = "AlertCreated"
    alert_id: Id
    user_id: Id
    account_id: Id | None = None
    symbol: Symbol
    condition: AlertCondition
    threshold: PositiveDecimal
    event_time: UtcDatetime


class AlertCancelled(Message):
    """The user cancelled the alert before it fired."""

    type: Literal["AlertCancelled"] = "AlertCancelled"
    alert_id: Id
    user_id: Id
    symbol: Symbol
    event_time: UtcDatetime


AlertCommand = Annotated[AlertCreated | AlertCancelled, Field(discriminator="type")]
