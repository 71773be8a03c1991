"""Order updates over the WebSocket, through the real worker, API, notifier and Redis.

Two users trade through the API; each socket gets exactly its own user's updates, in sequence,
each fill with its own last quantity and price; a reconnect with ``lastSequence`` resumes with
no gap and no repeat; a notifier stopped mid-session and started again delivers everything once;
a bad token is refused with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from pymongo.asynchronous.database import AsyncDatabase

from brokerflow.metrics import metric_value
from brokerflow.notifications import NotificationStore, run_notifications
from brokerflow.settings import Settings

from .api_harness import Api, User, funded_user, live_system, user_with_shares
from .test_broker_end_to_end import eventually

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(api: Api) -> AsyncIterator[str]:
    """The test's app (its lifespan already run by the harness) on a real loopback port."""
    port = _free_port()
    app = api.client._transport.app  # type: ignore[attr-defined]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually("uvicorn listening", started)
    try:
        yield f"ws://127.0.0.1:{port}/ws/v1/orders"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class Socket:
    """A client that keeps every message it received, in order."""

    def __init__(self, url: str, user: User, last: int = 0) -> None:
        self.url = f"{url}?token={user.token}&lastSequence={last}"
        self.got: list[dict[str, Any]] = []
        self._connection: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Socket:
        self._connection = await websockets.connect(self.url, proxy=None)
        self._reader = asyncio.create_task(self._read())
        await eventually("SUBSCRIBED", self._subscribed)
        return self

    async def _subscribed(self) -> bool:
        return any(m["type"] == "SUBSCRIBED" for m in self.got)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in self._connection:
                self.got.append(json.loads(text))

    async def __aexit__(self, *exc: object) -> None:
        await self._connection.close()
        assert self._reader is not None
        await asyncio.wait_for(self._reader, 10)

    def updates(self) -> list[dict[str, Any]]:
        return [m for m in self.got if m["type"] == "ORDER_UPDATE"]

    async def has(self, count: int) -> bool:
        return len(self.updates()) >= count


async def place(api: Api, user: User, side: str, quantity: str) -> str:
    answer = await api.client.post(
        "/api/v1/orders",
        json={
            "symbol": "PETR4",
            "side": side,
            "type": "LIMIT",
            "quantity": quantity,
            "price": "38.00",
        },
        headers=user.auth,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "ACCEPTED"
    return str(answer.json()["orderId"])


def story(updates: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (u["orderId"], u["status"], u["lastQty"], u["lastPrice"], u["filledQty"], u["leavesQty"])
        for u in updates
    ]


async def test_each_user_gets_their_own_updates_in_order_and_resumes_without_gap(
    settings: Settings, unique: str, mongo_db: AsyncDatabase, tmp_path: Path
) -> None:
    stop_notifier = asyncio.Event()
    try:
        async with (
            live_system(
                settings,
                unique,
                mongo_db,
                tmp_path,
                "ntf",
                projector=False,
                notify_group_id=f"ntf-{unique}",
            ) as system,
            serving(system.api) as url,
        ):
            api = system.api
            notifier = asyncio.create_task(run_notifications(api.settings, stop_notifier))
            ana = await funded_user(api, "ana", amount="20000.00")
            bruno = await user_with_shares(api, "bruno")

            async with Socket(url, ana) as ana_socket, Socket(url, bruno) as bruno_socket:
                buy = await place(api, ana, "BUY", "300")
                await eventually("Ana's order accepted", lambda: ana_socket.has(1))
            # Ana is offline for the fills; Bruno watches his.
            async with Socket(url, bruno, last=0) as bruno_again:
                sell_1 = await place(api, bruno, "SELL", "100")
                sell_2 = await place(api, bruno, "SELL", "200")
                await eventually("Bruno's fills", lambda: bruno_again.has(4))
            store = NotificationStore(
                _redis(api.settings), api.settings.api_redis_prefix, 1000, 3600
            )
            try:
                await eventually(
                    "Ana's fills stored",
                    lambda: _stored(store, ana.user_id, 3),
                )
            finally:
                await store.redis.aclose()

            # What Ana saw live: her acceptance only, nothing of Bruno's.
            assert story(ana_socket.updates()) == [(buy, "OPEN", None, None, "0", "300")]
            assert [u["sequence"] for u in ana_socket.updates()] == [1]
            # Back with the last sequence she saw: the two fills, once each, then live.
            async with Socket(url, ana, last=1) as resumed:
                await eventually("Ana's missed fills", lambda: resumed.has(2))
                await asyncio.sleep(0.5)  # a repeat would arrive now
            assert story(resumed.updates()) == [
                (buy, "PARTIALLY_FILLED", "100", "38.00", "100", "200"),
                (buy, "FILLED", "200", "38.00", "300", "0"),
            ]
            assert [u["sequence"] for u in resumed.updates()] == [2, 3]
            # Each fill with the position it left (the ledger's FillSettled of that trade).
            assert [u["positionQty"] for u in resumed.updates()] == ["100", "300"]
            assert ana_socket.updates()[0]["positionQty"] is None  # not a fill
            assert all(u["executionId"].startswith("PETR4-T") for u in resumed.updates())
            assert resumed.got[0] == {
                "type": "SUBSCRIBED",
                "userId": ana.user_id,
                "lastSequence": 3,
            }

            # Bruno's sockets: only his two orders, each accepted then filled.
            bruno_story = story(bruno_again.updates())
            assert {row[0] for row in bruno_story} == {sell_1, sell_2}
            assert [u["sequence"] for u in bruno_again.updates()] == [1, 2, 3, 4]
            assert [row for row in bruno_story if row[1] == "FILLED"] == [
                (sell_1, "FILLED", "100", "38.00", "100", "0"),
                (sell_2, "FILLED", "200", "38.00", "200", "0"),
            ]
            assert bruno_socket.updates() == []
            fills = [u for u in bruno_again.updates() if u["status"] == "FILLED"]
            assert [u["positionQty"] for u in fills] == ["200", "0"]  # of 300 moved in

            # The notifier stopped and started again re-reads what it had not committed: the
            # repeats are dropped, a socket sees each sequence once.
            stop_notifier.set()
            await asyncio.wait_for(notifier, 30)
            repeats = metric_value("notifications_delivered_total", outcome="repeat")
            async with Socket(url, ana, last=3) as live:
                stop_notifier = asyncio.Event()
                notifier = asyncio.create_task(run_notifications(api.settings, stop_notifier))
                cancel = await place(api, ana, "BUY", "100")
                gone = await api.client.delete(f"/api/v1/orders/{cancel}", headers=ana.auth)
                assert gone.status_code == 202, gone.text
                await eventually("Ana's new order and its cancel", lambda: live.has(2))
                await asyncio.sleep(0.5)
            assert story(live.updates()) == [
                (cancel, "OPEN", None, None, "0", "100"),
                (cancel, "CANCELLED", None, None, "0", "0"),
            ]
            assert [u["sequence"] for u in live.updates()] == [4, 5]
            assert metric_value("notifications_delivered_total", outcome="repeat") >= repeats

            # A bad token: refused with 1008.
            refusal = await _closed_by_server(f"{url}?token=not-a-token")
            assert refusal[0] == 1008
            assert refusal[1]["code"] == "UNAUTHORIZED"
            stop_notifier.set()
            await asyncio.wait_for(notifier, 30)
    finally:
        stop_notifier.set()


def _redis(settings: Settings) -> Any:
    from redis.asyncio import Redis

    return Redis.from_url(settings.redis_url)


async def _stored(store: NotificationStore, user_id: str, count: int) -> bool:
    return (await store.after(user_id, 0)).last_sequence >= count


async def _closed_by_server(url: str) -> tuple[int, dict[str, Any]]:
    """The close code the server ended the connection with, and its last message."""
    last: dict[str, Any] = {}
    async with websockets.connect(url, proxy=None) as connection:
        try:
            while True:
                last = json.loads(await asyncio.wait_for(connection.recv(), 5))
        except websockets.ConnectionClosed as closed:
            code = -1 if closed.rcvd is None else closed.rcvd.code  # -1: not the server's close
            return code, last
