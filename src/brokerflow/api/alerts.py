"""Price alerts: set, list, cancel. Each fires once (``PriceAlertTriggered`` on
notifications-v1, from the alerts service, :mod:`brokerflow.alerts`), then it is spent.

Setting one: the ACTIVE document goes to MongoDB ``alerts`` first (what the API reads and what
the service re-loads on every start), then ``AlertCreated`` to ``alert-commands-v1`` keyed by
symbol (how a running service learns of it). A failed publish removes the document again and
answers 503, so an alert the user was told failed never fires. Cancelling is the conditional
update ACTIVE -> CANCELLED, then ``AlertCancelled``; the service checks the document before it
fires, so a cancel wins even if its command is late or lost.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from brokerflow.alerts.core import ALERTS, AlertStatus, alert_document
from brokerflow.api.account import to_decimal
from brokerflow.api.context import ApiContext
from brokerflow.api.deps import Caller, Context
from brokerflow.api.errors import ApiError, error_responses, refusal
from brokerflow.api.models import AlertList, AlertRequest, AlertView
from brokerflow.api.security import Principal
from brokerflow.schemas.alerts import AlertCancelled, AlertCreated
from brokerflow.schemas.base import format_utc

__all__ = ["alert_view", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["alerts"])

_MAX_ID = 64
_MAX_LISTED = 1000


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def alert_view(document: Mapping[str, Any]) -> AlertView:
    """An ``alerts`` document as the API shows it."""
    return AlertView(
        alert_id=str(document.get("alertId") or document.get("_id")),
        symbol=str(document.get("symbol", "")),
        condition=document.get("condition"),
        threshold=to_decimal(document.get("threshold")),
        status=document.get("status") or AlertStatus.ACTIVE.value,
        created_at=_time(document.get("createdAt")),
        triggered_price=to_decimal(document.get("triggeredPrice"), None),
        triggered_at=_time(document.get("triggeredAt")),
        cancelled_at=_time(document.get("cancelledAt")),
    )


async def _owned(ctx: ApiContext, who: Principal, alert_id: str) -> Mapping[str, Any]:
    """The caller's alert; 404 for an unknown id and for another user's alert alike."""
    found = None
    if 0 < len(alert_id) <= _MAX_ID:
        found = await ctx.mongo_op(
            ctx.db[ALERTS].find_one({"_id": alert_id, "userId": who.user_id})
        )
    if found is None:
        raise ApiError(404, "UNKNOWN_ALERT", f"no alert {alert_id[:_MAX_ID]!r} of yours")
    return found


@router.post(
    "/alerts",
    status_code=201,
    response_model=AlertView,
    responses=error_responses(400, 401, 422, 429, 503),
    summary="Set a price alert (fires once)",
)
async def create_alert(body: AlertRequest, ctx: Context, who: Caller) -> AlertView:
    """Notified once (``PriceAlertTriggered``) by the first trade at or past the threshold
    after now, on the exchange (B3 symbols) or the symbol's venue."""
    if body.symbol not in ctx.rules.instruments:
        known = ", ".join(ctx.rules.instruments.symbols)
        raise refusal("UNKNOWN_SYMBOL", f"{body.symbol} is not traded here; symbols: {known}")
    ctx.kafka.require()
    command = AlertCreated(
        alert_id=str(uuid.uuid4()),
        user_id=who.user_id,
        account_id=who.account_id,
        symbol=body.symbol,
        condition=body.condition,
        threshold=body.threshold,
        event_time=datetime.now(UTC),
    )
    document = alert_document(command)
    alerts = ctx.db[ALERTS]
    await ctx.mongo_op(alerts.insert_one(document))
    try:
        await ctx.kafka.publish(ctx.topics.alert_commands.name, command.symbol, command)
    except BaseException:
        with contextlib.suppress(Exception):
            await ctx.mongo_op(alerts.delete_one({"_id": command.alert_id}))
        raise
    return alert_view(document)


@router.get(
    "/alerts",
    response_model=AlertList,
    responses=error_responses(401, 422, 429, 503),
    summary="Your price alerts",
)
async def list_alerts(
    ctx: Context,
    who: Caller,
    status: Annotated[AlertStatus | None, Query(description="Only alerts in this status")] = None,
) -> AlertList:
    query: dict[str, Any] = {"userId": who.user_id}
    if status is not None:
        query["status"] = status.value
    cursor = ctx.db[ALERTS].find(query).sort([("createdAt", -1), ("_id", 1)]).limit(_MAX_LISTED)
    documents = await ctx.mongo_op(cursor.to_list())
    return AlertList(alerts=[alert_view(document) for document in documents])


@router.get(
    "/alerts/{alertId}",
    response_model=AlertView,
    responses=error_responses(401, 404, 429, 503),
    summary="One of your price alerts",
)
async def get_alert(alertId: str, ctx: Context, who: Caller) -> AlertView:  # noqa: N803
    return alert_view(await _owned(ctx, who, alertId))


@router.delete(
    "/alerts/{alertId}",
    response_model=AlertView,
    responses=error_responses(401, 404, 409, 429, 503),
    summary="Cancel a price alert",
)
async def cancel_alert(alertId: str, ctx: Context, who: Caller) -> AlertView:  # noqa: N803
    """An ACTIVE alert becomes CANCELLED and never fires; cancelling again answers the same.
    One that fired already is a 409 ``ALERT_NOT_ACTIVE``."""
    document = await _owned(ctx, who, alertId)
    alerts = ctx.db[ALERTS]
    if document.get("status") == AlertStatus.ACTIVE.value:
        now = datetime.now(UTC)
        result = await ctx.mongo_op(
            alerts.update_one(
                {"_id": alertId, "status": AlertStatus.ACTIVE.value},
                {"$set": {"status": AlertStatus.CANCELLED.value, "cancelledAt": format_utc(now)}},
            )
        )
        if result.modified_count == 1:
            command = AlertCancelled(
                alert_id=alertId, user_id=who.user_id, symbol=document["symbol"], event_time=now
            )
            try:
                await ctx.kafka.publish(ctx.topics.alert_commands.name, command.symbol, command)
            except ApiError as exc:  # cancelled all the same: the service checks the document
                log.warning("AlertCancelled for %s not published: %s", alertId, exc.message)
        document = await _owned(ctx, who, alertId)
    if document.get("status") == AlertStatus.TRIGGERED.value:
        raise ApiError(
            409,
            "ALERT_NOT_ACTIVE",
            f"alert {alertId} fired already (at {document.get('triggeredPrice')}); it is spent",
        )
    return alert_view(document)
