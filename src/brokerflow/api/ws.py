"""``WebSocket /ws/v1/orders``: a user's order updates and price alerts, live, resumable.

Authenticate with ``?token=<access token>`` or, as the first message within 10 s,
``{"type": "AUTH", "token": "...", "lastSequence": 41}``; a bad or expired token closes the
socket with 1008. ``lastSequence`` (query or AUTH) is the last ``sequence`` the client saw.

What the server sends, in ``sequence`` order (a per-user counter, one per notification)::

    {"type": "SUBSCRIBED", "userId": "...", "lastSequence": 57}          first, always
    {"type": "ORDER_UPDATE", "sequence": 58, "orderId": "...", "status": "PARTIALLY_FILLED",
     "filledQty": "100", "leavesQty": "200", "lastPrice": "38.50", "lastQty": "100",
     "executionId": "PETR4-T12", "positionQty": null, "eventTime": "...", ...}
    {"type": "PRICE_ALERT", "sequence": 59, "alertId": "...", "price": "40.01", ...}
    {"type": "RESYNC_REQUIRED", "lastSequence": 9000, "message": "..."}  when updates after
        the client's sequence are no longer kept (NOTIFY_BACKLOG): read the orders from the API

The gateway subscribes to Redis ``user:{userId}`` before it reads the backlog after
``lastSequence``, and forwards only sequences above the last it sent: a reconnect, or a client
moving to another API process, gets every update once. A jump in the live sequence (pub/sub
dropped something) is filled from the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from redis.asyncio import Redis
from redis.exceptions import RedisError

from brokerflow.api.context import ApiContext
from brokerflow.api.security import Principal, TokenError
from brokerflow.metrics import WEBSOCKET_CONNECTIONS
from brokerflow.notifications.store import NotificationStore

__all__ = ["router"]

router = APIRouter()

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
_AUTH_WAIT_S = 10.0


class _RefusedError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _sequence(value: Any) -> int:
    try:
        sequence = int(value)
    except (TypeError, ValueError):
        raise _RefusedError("lastSequence must be a whole number >= 0") from None
    if sequence < 0:
        raise _RefusedError("lastSequence must be a whole number >= 0")
    return sequence


async def _authenticate(websocket: WebSocket, ctx: ApiContext) -> tuple[Principal, int]:
    token = websocket.query_params.get("token")
    last: Any = websocket.query_params.get("lastSequence", 0)
    if token is None:
        try:
            first = await asyncio.wait_for(websocket.receive_json(), _AUTH_WAIT_S)
        except (TimeoutError, ValueError, KeyError) as exc:
            raise _RefusedError(
                'send ?token=<access token>, or {"type": "AUTH", "token": ...} first'
            ) from exc
        if not isinstance(first, dict) or first.get("type") != "AUTH":
            raise _RefusedError('the first message must be {"type": "AUTH", "token": ...}')
        token = first.get("token")
        last = first.get("lastSequence", last)
    if not isinstance(token, str):
        raise _RefusedError("no token: get one from POST /api/v1/auth/token")
    try:
        principal = ctx.tokens.verify(token)
    except TokenError as exc:
        raise _RefusedError(f"{exc.reason} token: {exc.detail}") from None
    return principal, _sequence(last)


def _sequence_of(message: bytes) -> int:
    return int(json.loads(message)["sequence"])


@router.websocket("/ws/v1/orders")
async def order_updates(websocket: WebSocket) -> None:
    ctx: ApiContext | None = getattr(websocket.app.state, "ctx", None)
    await websocket.accept()
    if ctx is None:
        await websocket.close(TRY_AGAIN_LATER, "the API is starting; retry in a moment")
        return
    try:
        principal, last = await _authenticate(websocket, ctx)
    except _RefusedError as refused:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.send_json(
                {"type": "ERROR", "code": "UNAUTHORIZED", "message": refused.reason}
            )
            await websocket.close(POLICY_VIOLATION, refused.reason[:120])
        return
    except WebSocketDisconnect:
        return
    settings = ctx.settings
    store = NotificationStore(
        ctx.redis, settings.api_redis_prefix, settings.notify_backlog, settings.notify_retention_s
    )
    # Its own connection without a read timeout: pub/sub blocks until something is published.
    listener = Redis.from_url(settings.redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    WEBSOCKET_CONNECTIONS.inc()
    try:
        await pubsub.subscribe(store.channel(principal.user_id))
        await _serve(websocket, store, pubsub, principal.user_id, last)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away
    except (RedisError, OSError) as exc:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(TRY_AGAIN_LATER, f"Redis unavailable: {str(exc)[:80]}")
    finally:
        WEBSOCKET_CONNECTIONS.dec()
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()
        await listener.aclose()


async def _serve(
    websocket: WebSocket, store: NotificationStore, pubsub: Any, user_id: str, last: int
) -> None:
    backlog = await store.after(user_id, last)
    await websocket.send_json(
        {"type": "SUBSCRIBED", "userId": user_id, "lastSequence": backlog.last_sequence}
    )
    sent = last
    if backlog.trimmed:
        await websocket.send_json(
            {
                "type": "RESYNC_REQUIRED",
                "lastSequence": backlog.last_sequence,
                "message": f"updates after {last} are no longer kept (or the sequence restarted);"
                " read your orders from GET /api/v1/orders/{orderId} and go on from here",
            }
        )
        sent = backlog.last_sequence - len(backlog.messages)
    for message in backlog.messages:
        await websocket.send_text(message.decode())
        sent = _sequence_of(message)

    async def forward() -> None:
        nonlocal sent
        async for item in pubsub.listen():
            data: bytes = item["data"]
            sequence = _sequence_of(data)
            if sequence <= sent:
                continue  # sent from the backlog already
            if sequence > sent + 1:  # pub/sub lost some: the backlog has them
                for missed in (await store.after(user_id, sent)).messages:
                    if _sequence_of(missed) < sequence:
                        await websocket.send_text(missed.decode())
            await websocket.send_text(data.decode())
            sent = sequence

    async def until_closed() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    tasks = [asyncio.create_task(forward()), asyncio.create_task(until_closed())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
