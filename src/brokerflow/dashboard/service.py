"""The market dashboard: one page, one Kafka reader for every browser, pushed over SSE.

``python -m brokerflow.dashboard`` (in ``brokerflow run``) serves ``http://127.0.0.1:8050``:
the page and its scripts (lightweight-charts vendored under ``static/vendor``; nothing comes
from a CDN), ``GET /api/state`` (tiles, health), ``GET /api/bars`` (a symbol's bar history from
MongoDB, for the chart), ``GET /api/book`` (the exchange's depth and trade tape of a symbol),
and ``GET /api/stream``, server-sent events that push every change as it happens:

* ``bar`` and ``tile``: each bar on ``market-bars-v1`` (the stats flow's, Binance's and the
  exchange's), and the symbol's tile it changes;
* ``book`` and ``trade``: the exchange's ``exchange-book-v1`` (rebuilt from snapshots and
  updates, gaps detected by sequence) and ``trade-executions-v1``;
* ``health`` every 2 s: records/s into the market, bar and trade topics, consumer lag per group
  of this namespace, dead letters by reason.

One background reader folds the topics into a :class:`~.state.Board` and fans out to the
connected pages, so a hundred open pages cost one consumer, not a request per tile per second.
A page that cannot keep up (its queue full) is dropped; ``EventSource`` reconnects and reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pymongo import AsyncMongoClient

from brokerflow.dashboard.state import Board, bar_json
from brokerflow.errors import SchemaError
from brokerflow.kafka_io import consumer
from brokerflow.metrics import CONSUMER_LAG
from brokerflow.schemas import BarClosed, decode
from brokerflow.schemas.book import BookSnapshot, BookUpdate
from brokerflow.schemas.trades import TradeExecuted
from brokerflow.settings import Settings
from brokerflow.topics import catalog

__all__ = ["Hub", "create_dashboard"]

log = logging.getLogger(__name__)

_QUEUE = 2000
_BOOK_BACKLOG = 5000  # book messages re-read per partition at start, to find a snapshot
_TRADES_BACKLOG = 50
_HEALTH_EVERY_S = 2.0
_FLUSH_EVERY_S = 0.1


class Hub:
    """The board, and the queues of the pages listening."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.clients: set[asyncio.Queue[str]] = set()
        self.health: dict[str, Any] = {}
        self.dead_letters: Counter[str] = Counter()
        self._dirty_tiles: set[str] = set()
        self._dirty_books: set[str] = set()

    def listen(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(_QUEUE)
        self.clients.add(queue)
        return queue

    def leave(self, queue: asyncio.Queue[str]) -> None:
        self.clients.discard(queue)

    def send(self, event: str, data: Any) -> None:
        message = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        for queue in list(self.clients):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # too slow: dropped at its next read; EventSource
                self.clients.discard(queue)  # reconnects and the page reloads its state

    def on_record(self, topic_kind: str, value: bytes) -> None:
        if topic_kind == "dead_letters":
            try:
                self.dead_letters[json.loads(value).get("reason", "?")] += 1
            except (ValueError, AttributeError):
                self.dead_letters["UNREADABLE"] += 1
            return
        try:
            message = decode(value)
        except SchemaError:
            return  # the producer dead-letters bad records; the page shows the good ones
        if isinstance(message, BarClosed):
            if self.board.on_bar(message):
                self.send("bar", bar_json(message))
                self._dirty_tiles.add(message.symbol)
        elif isinstance(message, BookSnapshot | BookUpdate):
            if self.board.on_book(message):
                self._dirty_books.add(message.symbol)
        elif isinstance(message, TradeExecuted):
            self.send("trade", self.board.on_trade(message))

    def flush(self, now: datetime) -> None:
        """Send the tiles and books changed since the last flush (coalesced)."""
        for symbol in sorted(self._dirty_tiles):
            self.send("tile", self.board.tile(symbol, now))
        for symbol in sorted(self._dirty_books):
            self.send("book", self.board.book(symbol))
        self._dirty_tiles.clear()
        self._dirty_books.clear()


def _bar_of(document: dict[str, Any]) -> BarClosed:
    return BarClosed.from_json_bytes(json.dumps({k: v for k, v in document.items() if k != "_id"}))


async def _prefill(hub: Hub, settings: Settings, mongo: AsyncMongoClient[Any]) -> None:
    """The newest bar of each symbol, window and venue, from MongoDB."""
    bars = mongo[settings.mongo_database][settings.stats_mongo_collection]
    for symbol in list(hub.board.symbols):
        for window in ("1s", "1m"):
            cursor = bars.find({"symbol": symbol, "window": window}).sort("windowStart", -1)
            async for document in cursor.limit(4):
                with contextlib.suppress(SchemaError, ValueError):
                    hub.board.on_bar(_bar_of(document))


async def _read(hub: Hub, settings: Settings, stop: asyncio.Event) -> None:
    topics = catalog(settings)
    kinds = {
        topics.market_bars.name: "bars",
        topics.exchange_book.name: "book",
        topics.trade_executions.name: "trades",
        topics.dead_letters.name: "dead_letters",
    }
    specs = [topics.market_bars, topics.exchange_book, topics.trade_executions, topics.dead_letters]
    while not stop.is_set():
        try:
            async with consumer(settings) as reader:
                parts = [TopicPartition(s.name, i) for s in specs for i in range(s.partitions)]
                existing = await reader.topics()
                parts = [tp for tp in parts if tp.topic in existing]
                reader.assign(parts)
                ends = await reader.end_offsets(parts)
                starts = await reader.beginning_offsets(parts)
                for tp in parts:
                    back = {"book": _BOOK_BACKLOG, "trades": _TRADES_BACKLOG, "bars": 0}.get(
                        kinds[tp.topic]
                    )
                    target = starts[tp] if back is None else max(starts[tp], ends[tp] - back)
                    reader.seek(tp, target)
                flushed = time.monotonic()
                while not stop.is_set():
                    fetched = await reader.getmany(timeout_ms=50, max_records=2000)
                    for tp, records in fetched.items():
                        for record in records:
                            hub.on_record(kinds[tp.topic], record.value)
                    if time.monotonic() - flushed >= _FLUSH_EVERY_S:
                        hub.flush(datetime.now(UTC))
                        flushed = time.monotonic()
        except (KafkaError, OSError) as exc:
            log.warning("dashboard: Kafka reader failed (%s); again in 2 s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2)


async def _health(hub: Hub, settings: Settings, stop: asyncio.Event) -> None:
    """Rates into the topics, consumer lag per group of this namespace, dead letters."""
    topics = catalog(settings)
    watched = {
        "ingest": [topics.market_trades, topics.market_book_ticker, topics.market_quotes],
        "stats": [topics.market_bars],
        "exchange": [topics.trade_executions],
        "orders": [topics.order_commands],
    }
    before: dict[str, int] = {}
    at = time.monotonic()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    started = False
    try:
        async with consumer(settings) as reader:
            while not stop.is_set():
                try:
                    if not started:
                        await admin.start()
                        started = True
                    totals: dict[str, int] = {}
                    for name, specs in watched.items():
                        parts = [
                            TopicPartition(s.name, i) for s in specs for i in range(s.partitions)
                        ]
                        totals[name] = sum((await reader.end_offsets(parts)).values())
                    now = time.monotonic()
                    rates = {
                        name: round((totals[name] - before[name]) / (now - at), 1)
                        for name in totals
                        if name in before
                    }
                    before, at = totals, now
                    lag = await _lags(admin, reader, settings.topic_prefix)
                    for group, behind in lag.items():
                        CONSUMER_LAG.labels(group=group).set(behind)
                    hub.health = {
                        "rates": rates,
                        "lag": lag,
                        "deadLetters": dict(hub.dead_letters.most_common()),
                        "time": datetime.now(UTC).isoformat(),
                    }
                    hub.send("health", hub.health)
                except (KafkaError, OSError) as exc:
                    log.warning("dashboard: health not measured (%s)", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _HEALTH_EVERY_S)
    finally:
        if started:
            await admin.close()


async def _lags(admin: AIOKafkaAdminClient, reader: Any, prefix: str) -> dict[str, int]:
    """Records each consumer group of this namespace has yet to read."""
    lags: dict[str, int] = {}
    for group_id, _ in await admin.list_consumer_groups():
        committed = await admin.list_consumer_group_offsets(group_id)
        mine = {tp: meta for tp, meta in committed.items() if tp.topic.startswith(prefix)}
        if not mine or (prefix == "" and not group_id.startswith("brokerflow")):
            continue
        ends = await reader.end_offsets(list(mine))
        lags[group_id] = sum(max(0, ends[tp] - meta.offset) for tp, meta in mine.items())
    return dict(sorted(lags.items()))


def create_dashboard(settings: Settings, symbols: list[str] | None = None) -> FastAPI:
    """The dashboard app; its lifespan runs the Kafka reader and the health probe."""
    listed = symbols or list(dict.fromkeys([*settings.binance_symbols, *settings.brapi_symbols]))
    hub = Hub(Board(listed))
    static = resources.files("brokerflow.dashboard") / "static"
    mongo: AsyncMongoClient[Any] = AsyncMongoClient(
        settings.mongo_url, serverSelectionTimeoutMS=5000, tz_aware=True
    )
    bars = mongo[settings.mongo_database][settings.stats_mongo_collection]

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        try:
            await _prefill(hub, settings, mongo)
        except Exception as exc:  # MongoDB down: the page fills as bars arrive
            log.warning("dashboard: no bar history from MongoDB (%s)", exc)
        tasks = [
            asyncio.create_task(_read(hub, settings, stop)),
            asyncio.create_task(_health(hub, settings, stop)),
        ]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await mongo.close()

    app = FastAPI(title="brokerflow dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/api/state")
    async def state() -> JSONResponse:
        now = datetime.now(UTC)
        return JSONResponse(
            {
                "symbols": list(hub.board.symbols),
                "tiles": hub.board.tiles(now),
                "health": hub.health,
            }
        )

    @app.get("/api/bars")
    async def history(
        symbol: str = Query(min_length=1, max_length=32),
        window: str = Query("1s", pattern="^(1s|1m)$"),
        venue: str | None = Query(None, max_length=32),
        limit: int = Query(300, ge=1, le=2000),
    ) -> JSONResponse:
        query: dict[str, Any] = {"symbol": symbol.upper(), "window": window}
        if venue is None:
            newest = await bars.find_one(query, sort=[("windowStart", -1)])
            if newest is None:
                return JSONResponse({"symbol": symbol.upper(), "window": window, "bars": []})
            venue = str(newest["venue"])
        query["venue"] = venue.upper()
        cursor = bars.find(query).sort("windowStart", -1).limit(limit)
        found = [bar_json(_bar_of(document)) async for document in cursor]
        found.reverse()
        return JSONResponse(
            {"symbol": symbol.upper(), "window": window, "venue": venue, "bars": found}
        )

    @app.get("/api/book")
    async def book(symbol: str = Query(min_length=1, max_length=32)) -> JSONResponse:
        if symbol.upper() not in hub.board.symbols:
            raise HTTPException(404, f"{symbol} is not on the dashboard")
        return JSONResponse(hub.board.book(symbol.upper()))

    @app.get("/api/stream")
    async def stream() -> StreamingResponse:
        queue = hub.listen()

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), 15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if not message or queue not in hub.clients:
                        return
                    yield message
            finally:
                hub.leave(queue)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app
