"""Local stand-ins for the vendors and the clock: a WebSocket server, an HTTP server, fake time.

Everything listens on 127.0.0.1 on a free port picked by the OS; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from brokerflow.connectors import Frame

# --- time -----------------------------------------------------------------------------------------


class RecordingSleep:
    """Stands in for ``asyncio.sleep``: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._called = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self._called.set()
        await asyncio.sleep(0)

    async def wait_for_calls(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.delays) < count:
                self._called.clear()
                await self._called.wait()


class FakeClock:
    """A wall clock (``now``) and a monotonic clock that only ``sleep`` moves forward."""

    def __init__(self, start: datetime) -> None:
        self.start = self.current = start
        self.delays: list[float] = []

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        # Seconds since the start: small numbers, so float steps stay exact enough to compare.
        return (self.current - self.start).total_seconds()

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.current += timedelta(seconds=seconds)
        await asyncio.sleep(0)


class SteppingClock:
    """A receive clock that moves ``step`` forward on every reading: deterministic receive times."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.next = start
        self.step = step

    def __call__(self) -> datetime:
        current, self.next = self.next, self.next + self.step
        return current


async def take(frames: AsyncIterator[Frame], count: int, within: float = 5.0) -> list[Frame]:
    """The next ``count`` frames, failing the test instead of hanging."""
    taken: list[Frame] = []
    async with asyncio.timeout(within):
        while len(taken) < count:
            taken.append(await anext(frames))
    return taken


# --- a Binance-like WebSocket server ------------------------------------------------------------

Script = Callable[[ServerConnection, "ConnectionLog"], Awaitable[None]]


@dataclass
class ConnectionLog:
    """What the server saw on one connection."""

    path: str
    received: list[dict[str, Any]] = field(default_factory=list)
    pongs: int = 0

    @property
    def streams(self) -> list[str]:
        query = parse_qs(urlsplit(self.path).query)
        return query["streams"][0].split("/") if "streams" in query else []


class FakeBinanceServer:
    """A websockets server; connection ``n`` runs ``scripts[n]`` (the last one repeats).

    A script receives the connection and its log, and decides what to send and when to stop:
    returning closes the connection cleanly, :func:`drop` cuts it without a close frame.
    Whatever the client sends is recorded (and answered by ``answer_requests`` scripts).
    """

    def __init__(self, scripts: Sequence[Script]) -> None:
        self.scripts = list(scripts)
        self.connections: list[ConnectionLog] = []
        self._server: Server | None = None
        self._connected = asyncio.Event()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, ping_interval=None, close_timeout=1
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        # A client whose event loop died (a flow's thread that ended) never answers the close
        # handshake: close every connection and bound the wait, or the test hangs forever.
        self._server.close(close_connections=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._server.wait_closed()

    async def wait_for_connections(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.connections) < count:
                self._connected.clear()
                await self._connected.wait()

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        log = ConnectionLog(path=connection.request.path)
        script = self.scripts[min(len(self.connections), len(self.scripts) - 1)]
        self.connections.append(log)
        self._connected.set()
        reader = asyncio.create_task(self._record(connection, log))
        try:
            await script(connection, log)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    @staticmethod
    async def _record(connection: ServerConnection, log: ConnectionLog) -> None:
        try:
            async for message in connection:
                request = json.loads(message)
                log.received.append(request)
                reply = {"result": None if "params" in request else [], "id": request["id"]}
                await connection.send(json.dumps(reply))
        except ConnectionClosed:
            pass


def combined(stream: str, data: dict[str, Any]) -> str:
    return json.dumps({"stream": stream, "data": data}, separators=(",", ":"))


def trade_frame(trade_id: int, symbol: str = "BTCUSDT", price: str = "94112.01000000") -> str:
    return combined(
        f"{symbol.lower()}@trade",
        {
            "e": "trade",
            "E": 1776951000123 + trade_id,
            "s": symbol,
            "t": trade_id,
            "p": price,
            "q": "0.00106000",
            "T": 1776951000122 + trade_id,
            "m": True,
            "M": True,
        },
    )


def send(*frames: str | bytes, then: str = "hold", pause: float = 0.0) -> Script:
    """A script: send ``frames`` (``pause`` s apart), then ``hold`` the connection open until the
    client closes it, ``close`` it cleanly, or ``drop`` it without a close frame."""

    async def script(connection: ServerConnection, log: ConnectionLog) -> None:
        for frame in frames:
            await connection.send(frame)
            if pause:
                await asyncio.sleep(pause)
        if then == "hold":
            await connection.wait_closed()
        elif then == "drop":
            connection.transport.abort()
        else:
            assert then == "close", then

    return script


def ping_then(*frames: str) -> Script:
    """Ping the client and wait for its pong before sending ``frames``."""

    async def script(connection: ServerConnection, log: ConnectionLog) -> None:
        pong = await connection.ping(b"are you there")
        await asyncio.wait_for(pong, timeout=2)
        log.pongs += 1
        await send(*frames)(connection, log)

    return script


def stream_forever(interval: float) -> Script:
    """Send a trade every ``interval`` seconds until the client leaves."""

    async def script(connection: ServerConnection, log: ConnectionLog) -> None:
        trade_id = 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                trade_id += 1
                await connection.send(trade_frame(trade_id))
                await asyncio.sleep(interval)

    return script


# --- a Brapi-like HTTP server -------------------------------------------------------------------


@dataclass(frozen=True)
class Canned:
    """One HTTP response the fake server will give."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    #: Header names lower-cased.
    headers: dict[str, str]


class FakeHttpServer:
    """A minimal HTTP/1.1 server: answers each request with the next canned response (the last
    repeats), one request per connection, and records what it was asked."""

    def __init__(self, responses: Sequence[Canned]) -> None:
        self.responses = list(responses)
        self.requests: list[RecordedRequest] = []
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").strip()
            if not request_line:
                return
            method, path, _ = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            canned = self.responses[min(len(self.requests), len(self.responses) - 1)]
            self.requests.append(RecordedRequest(method, path, headers))
            body = canned.body.encode("utf-8")
            head = [
                f"HTTP/1.1 {canned.status} {HTTPStatus(canned.status).phrase}",
                "Content-Type: application/json; charset=utf-8",
                f"Content-Length: {len(body)}",
                "Connection: close",
                *(f"{name}: {value}" for name, value in canned.headers.items()),
            ]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
