"""Binance spot market data over WebSocket: trades and best bid/ask, normalized.

Two halves that never mix. :func:`parse_binance_frame` is pure: one frame's text in, a
:class:`ParseResult` out (``Trade`` / ``BestBidAsk`` records, or a ``DeadLetter``), shared by the
live stream and tape replay. :class:`BinanceStream` is the I/O: combined-stream connections,
sharding, reconnects, backoff, the silence watchdog; it yields raw :class:`Frame` values.

A combined stream (``/stream?streams=btcusdt@trade/btcusdt@bookTicker``) wraps every payload
with the stream's name. A ``trade`` frame from binance.com (the documented shape)::

    {"stream":"btcusdt@trade","data":{"e":"trade","E":1767360600123,"s":"BTCUSDT",
     "t":5120334417,"p":"94112.01000000","q":"0.00106000","T":1767360600122,"m":true,
     "M":true}}

Binance.US trades also carry the buyer's and seller's order ids, ``b`` and ``a``::

    {"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","b":88,
     "a":50,"T":1672515782136,"m":true,"M":true}

``m`` is "the buyer is the maker": ``true`` means the aggressor sold. A ``bookTicker`` frame
carries no event time, so the receive time stands in::

    {"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"94112.00000000",
     "B":"1.20420000","a":"94112.01000000","A":"0.31000000"}}

Before maintenance Binance announces ``{"e":"serverShutdown","E":1767360600000}``; the stream
reconnects at once. Connection rules honoured (Binance's WebSocket limits): at most 1024 streams
per connection (``WS_SHARD_SIZE``), pings answered (websockets replies to every ping by itself; we
send none of our own, as pings count against the 5-messages-a-second limit), a fresh connection
before the 24-hour cut (``BINANCE_MAX_CONNECTION_AGE_S``), at most 5 messages a second sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from brokerflow.errors import ConfigError, SchemaError
from brokerflow.metrics import VENDOR_FETCH_FAILURE, VENDOR_FETCH_SUCCESS, VENDOR_RECONNECTS
from brokerflow.schemas.market import BestBidAsk, Trade
from brokerflow.schemas.orders import Side
from brokerflow.settings import Settings, get_settings

from ._backoff import Backoff, RateLimiter, Sleep
from ._binance_fast import fast_parse
from ._frames import (
    MAX_EPOCH_MILLIS,
    ControlEvent,
    DeadLetterReason,
    Frame,
    FrameRejectedError,
    ParseResult,
    from_epoch_millis,
    utc_now,
)

__all__ = [
    "DEFAULT_CHANNELS",
    "VENDOR",
    "BinanceBookTickerWire",
    "BinanceStream",
    "BinanceTradeWire",
    "combined_stream_url",
    "is_server_shutdown",
    "parse_binance_frame",
    "parse_binance_frame_fully",
    "shard_streams",
    "stream_names",
]

log = logging.getLogger(__name__)

#: The ``vendor`` of every frame this module yields and parses.
VENDOR = "binance"
#: ``DeadLetter.source`` prefix: ``binance_ws/btcusdt@trade``.
SOURCE = "binance_ws"
VENUE = "BINANCE"
DEFAULT_CHANNELS: tuple[str, ...] = ("trade", "bookTicker")
#: Binance's hard limit of streams on one connection.
MAX_STREAMS_PER_CONNECTION = 1024
#: Binance's limit of messages a client may send on one connection per second.
MAX_MESSAGES_PER_SECOND = 5


# --- the wire schema ------------------------------------------------------------------------------
def _decimal_text(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            f'expected a decimal string such as "{value}", got a JSON number (Binance quotes '
            "prices and quantities)"
        )
    return value


#: Binance's prices and quantities: decimal strings, so no float ever rounds them.
DecimalText = Annotated[str, BeforeValidator(_decimal_text)]


class _Wire(BaseModel):
    # strict: a price must arrive as a string ("94112.01"), never a float, and an id as an int.
    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class BinanceTradeWire(_Wire):
    """A ``<symbol>@trade`` payload, both binance.com's shape and Binance.US's (``b``, ``a``)."""

    event: Literal["trade"] = Field(alias="e")
    event_millis: int = Field(alias="E", ge=0, le=MAX_EPOCH_MILLIS)
    symbol: str = Field(alias="s")
    trade_id: int = Field(alias="t", ge=0)
    price: DecimalText = Field(alias="p")
    quantity: DecimalText = Field(alias="q")
    trade_millis: int = Field(alias="T", ge=0, le=MAX_EPOCH_MILLIS)
    buyer_is_maker: bool = Field(alias="m")
    #: "Ignore" says Binance's documentation; kept so the wire shape is complete.
    best_match: bool | None = Field(None, alias="M")
    #: Binance.US only: the buyer's and the seller's order ids.
    buyer_order_id: int | None = Field(None, alias="b")
    seller_order_id: int | None = Field(None, alias="a")

    #: Where each ``Trade`` field comes from, to blame the vendor's field in a dead letter.
    WIRE_NAMES: ClassVar[dict[str, str]] = {
        "symbol": "s",
        "trade_id": "t",
        "price": "p",
        "quantity": "q",
        "event_time": "T",
        "receive_time": "receive_time",
    }

    def to_domain(self, receive_time: datetime) -> Trade:
        return Trade(
            venue=VENUE,
            symbol=self.symbol,
            trade_id=str(self.trade_id),
            price=self.price,
            quantity=self.quantity,
            aggressor_side=Side.SELL if self.buyer_is_maker else Side.BUY,
            event_time=from_epoch_millis(self.trade_millis),
            receive_time=receive_time,
        )


class BinanceBookTickerWire(_Wire):
    """A ``<symbol>@bookTicker`` payload. Spot frames have no ``e``/``E``; futures frames do."""

    update_id: int = Field(alias="u", ge=0)
    symbol: str = Field(alias="s")
    bid_price: DecimalText = Field(alias="b")
    bid_quantity: DecimalText = Field(alias="B")
    ask_price: DecimalText = Field(alias="a")
    ask_quantity: DecimalText = Field(alias="A")
    event: Literal["bookTicker"] | None = Field(None, alias="e")
    event_millis: int | None = Field(None, alias="E", ge=0, le=MAX_EPOCH_MILLIS)

    WIRE_NAMES: ClassVar[dict[str, str]] = {
        "symbol": "s",
        "bid_price": "b",
        "bid_quantity": "B",
        "ask_price": "a",
        "ask_quantity": "A",
        "update_id": "u",
        "receive_time": "receive_time",
    }

    def to_domain(self, receive_time: datetime) -> BestBidAsk:
        bid_price, bid_quantity = _book_side(self.bid_price, self.bid_quantity)
        ask_price, ask_quantity = _book_side(self.ask_price, self.ask_quantity)
        bid, ask = _finite(bid_price), _finite(ask_price)
        if bid is not None and ask is not None and bid > ask:
            raise FrameRejectedError(
                DeadLetterReason.CROSSED_QUOTE,
                f"crossed quote for {self.symbol}: bid {bid_price} is above ask {ask_price}",
                ("b", "a"),
            )
        event_time = (
            receive_time if self.event_millis is None else from_epoch_millis(self.event_millis)
        )
        return BestBidAsk(
            venue=VENUE,
            symbol=self.symbol,
            bid_price=bid_price,
            bid_quantity=bid_quantity,
            ask_price=ask_price,
            ask_quantity=ask_quantity,
            update_id=self.update_id,
            event_time=event_time,
            receive_time=receive_time,
        )


def _book_side(price: str, quantity: str) -> tuple[str | None, str | None]:
    # Binance reports an empty side as zero price and zero quantity; ours is "absent".
    if _finite(price) == 0 and _finite(quantity) == 0:
        return None, None
    return price, quantity


def _finite(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


# --- parsing (pure) -------------------------------------------------------------------------------
def parse_binance_frame(raw: str, receive_time: datetime) -> ParseResult:
    """Normalize one WebSocket text frame; whatever is wrong with it becomes a dead letter.

    >>> from datetime import UTC, datetime
    >>> frame = ('{"stream":"btcusdt@trade","data":{"e":"trade","E":1767360600123,"s":"BTCUSDT",'
    ...          '"t":5120334417,"p":"94112.01","q":"0.00106","T":1767360600122,"m":true}}')
    >>> result = parse_binance_frame(frame, datetime(2026, 1, 2, 13, 30, 0, 180000, tzinfo=UTC))
    >>> [(t.symbol, str(t.price), t.aggressor_side.value) for t in result.records]
    [('BTCUSDT', '94112.01', 'SELL')]
    >>> parse_binance_frame('{"stream":', result.records[0].receive_time).dead_letters[0].reason
    'NOT_JSON'
    """
    fast = fast_parse(raw, receive_time)
    return fast if fast is not None else parse_binance_frame_fully(raw, receive_time)


def parse_binance_frame_fully(raw: str, receive_time: datetime) -> ParseResult:
    """:func:`parse_binance_frame` without its fast path (which must agree with this)."""
    stream: str | None = None
    try:
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise FrameRejectedError(DeadLetterReason.NOT_JSON, f"not JSON: {exc}") from None
        stream, payload, prefix = _unwrap(message)
        return _parse_payload(stream, payload, prefix, receive_time)
    except FrameRejectedError as rejected:
        source = f"{SOURCE}/{stream}" if stream else SOURCE
        letter = rejected.to_dead_letter(source=source, raw=raw, receive_time=receive_time)
        return ParseResult(dead_letters=(letter,))


def _unwrap(message: Any) -> tuple[str | None, Any, str]:
    """Split a combined-stream wrapper; a bare payload (a ``/ws/`` connection) passes through."""
    if isinstance(message, dict) and "stream" in message and "data" in message:
        stream = message["stream"]
        if not isinstance(stream, str) or "@" not in stream:
            raise FrameRejectedError(
                DeadLetterReason.INVALID_FIELD,
                f"stream: expected '<symbol>@<channel>', got {stream!r}",
                ("stream",),
            )
        return stream, message["data"], "data."
    return None, message, ""


def _parse_payload(
    stream: str | None, payload: Any, prefix: str, receive_time: datetime
) -> ParseResult:
    if not isinstance(payload, dict):
        raise FrameRejectedError(
            DeadLetterReason.UNKNOWN_EVENT,
            f"expected a JSON object, got {type(payload).__name__}",
            (prefix.rstrip(".") or "<payload>",),
        )
    if "id" in payload and "error" in payload:
        error = payload["error"]
        code, text = (
            (error.get("code"), error.get("msg")) if isinstance(error, dict) else (None, error)
        )
        raise FrameRejectedError(
            DeadLetterReason.VENDOR_ERROR,
            f"Binance refused request {payload['id']!r}: error {code}: {text}",
            (f"{prefix}error",),
        )
    if "id" in payload and "result" in payload:
        return ParseResult(control=ControlEvent.SUBSCRIPTION_REPLY)
    event = payload.get("e")
    if event == ControlEvent.SERVER_SHUTDOWN.value:
        return ParseResult(control=ControlEvent.SERVER_SHUTDOWN)
    channel = stream.partition("@")[2] if stream else None
    wire: type[BinanceTradeWire] | type[BinanceBookTickerWire]
    if channel == "trade" or (channel is None and event == "trade"):
        wire, what = BinanceTradeWire, "Binance trade"
    elif channel == "bookTicker" or (channel is None and _looks_like_book_ticker(payload)):
        wire, what = BinanceBookTickerWire, "Binance bookTicker"
    else:
        culprit = "stream" if stream else f"{prefix}e"
        raise FrameRejectedError(
            DeadLetterReason.UNKNOWN_EVENT,
            f"unknown event {event!r} on stream {stream!r}: expected trade or bookTicker",
            (culprit,),
        )
    try:
        parsed = wire.model_validate(payload)
    except ValidationError as exc:
        error = SchemaError.from_validation(what, exc)
        raise FrameRejectedError.from_schema_error(
            error, what=what, wire_names={}, prefix=prefix
        ) from None
    if stream is not None and stream.partition("@")[0] != parsed.symbol.lower():
        raise FrameRejectedError(
            DeadLetterReason.INVALID_FIELD,
            f"stream {stream} carries symbol {parsed.symbol!r}",
            (f"{prefix}s",),
        )
    try:
        record = parsed.to_domain(receive_time)
    except FrameRejectedError as rejected:
        rejected.fields = tuple(f"{prefix}{name}" for name in rejected.fields)
        raise
    except ValidationError as exc:
        error = SchemaError.from_validation(what, exc)
        raise FrameRejectedError.from_schema_error(
            error, what=what, wire_names=wire.WIRE_NAMES, prefix=prefix
        ) from None
    return ParseResult(records=(record,))


def _looks_like_book_ticker(payload: dict[str, Any]) -> bool:
    return payload.get("e") == "bookTicker" or (
        "e" not in payload and {"u", "s", "b", "B", "a", "A"} <= payload.keys()
    )


def is_server_shutdown(raw: str) -> bool:
    """Whether a frame is Binance's ``serverShutdown`` notice (cheap for every other frame)."""
    if "serverShutdown" not in raw:
        return False
    return parse_binance_frame(raw, utc_now()).control is ControlEvent.SERVER_SHUTDOWN


# --- connection management (I/O) -----------------------------------------------------------------
def stream_names(symbols: Iterable[str], channels: Iterable[str] = DEFAULT_CHANNELS) -> list[str]:
    """``["btcusdt@trade", "btcusdt@bookTicker", ...]``: Binance wants lower-case symbols.

    >>> stream_names(["BTCUSDT", "ETHUSDT"])
    ['btcusdt@trade', 'btcusdt@bookTicker', 'ethusdt@trade', 'ethusdt@bookTicker']
    """
    channel_list = list(channels)
    names = [
        f"{symbol.strip().lower()}@{channel}" for symbol in symbols for channel in channel_list
    ]
    return list(dict.fromkeys(names))


def shard_streams(streams: Sequence[str], shard_size: int) -> list[list[str]]:
    """Cut the stream list into connections of at most ``shard_size`` streams, in order.

    >>> shard_streams(["a@trade", "a@bookTicker", "b@trade", "b@bookTicker", "c@trade"], 2)
    [['a@trade', 'a@bookTicker'], ['b@trade', 'b@bookTicker'], ['c@trade']]
    """
    if not 1 <= shard_size <= MAX_STREAMS_PER_CONNECTION:
        raise ConfigError(
            f"WS_SHARD_SIZE={shard_size}: Binance allows 1 to {MAX_STREAMS_PER_CONNECTION} "
            "streams per connection"
        )
    return [
        list(streams[start : start + shard_size]) for start in range(0, len(streams), shard_size)
    ]


def combined_stream_url(base_url: str, streams: Sequence[str]) -> str:
    """``wss://stream.binance.us:9443/stream?streams=btcusdt@trade/btcusdt@bookTicker``."""
    return f"{base_url.rstrip('/')}/stream?streams={'/'.join(streams)}"


@dataclass(eq=False)
class _Shard:
    """One connection's worth of streams, and the connection while it is open."""

    index: int
    streams: list[str]
    limiter: RateLimiter
    connection: ClientConnection | None = None
    #: Frames received on the current connection: one proves it healthy and resets the backoff.
    received: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return str(self.index)


#: How long a silence timeout waits for a frame already on its way before reconnecting.
_SILENCE_GRACE_S = 1.0
#: Reasons a connection is replaced on purpose: reconnect at once, without backoff.
_PLANNED_RECONNECTS = frozenset({"server_shutdown", "max_age"})


class BinanceStream:
    """Raw frames from every configured Binance stream, across as many connections as needed.

    Live use (needs the network, so not a doctest)::

        async with contextlib.aclosing(BinanceStream().frames()) as frames:
            async for frame in frames:
                result = parse_frame(*frame)  # records, dead letters or a control event

    Each shard runs its own reconnect loop. A failed or dropped connection, or one silent for
    ``BINANCE_SILENCE_TIMEOUT_S``, reconnects after a jittered exponential backoff (reset once a
    frame arrives); a ``serverShutdown`` or reaching ``BINANCE_MAX_CONNECTION_AGE_S`` reconnects at
    once. Frames from all shards merge into one bounded queue: a slow consumer slows the reads
    instead of growing memory. Close the iterator (``contextlib.aclosing``) to stop every shard.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        symbols: Sequence[str] | None = None,
        channels: Sequence[str] = DEFAULT_CHANNELS,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = random.random,
        now: Callable[[], datetime] = utc_now,
        limiter_clock: Callable[[], float] = time.monotonic,
        queue_size: int = 10_000,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
    ) -> None:
        settings = settings or get_settings()
        self.base_url = settings.binance_ws_base.rstrip("/")
        self.channels = tuple(channels)
        streams = stream_names(settings.binance_symbols if symbols is None else symbols, channels)
        if not streams:
            raise ConfigError("no Binance streams to subscribe to: set BINANCE_SYMBOLS")
        self.shard_size = settings.ws_shard_size
        self.max_connection_age = settings.binance_max_connection_age_s
        self.silence_timeout = settings.binance_silence_timeout_s
        self.backoff = Backoff(settings.vendor_backoff_initial_s, settings.vendor_backoff_max_s)
        self._sleep = sleep
        self._random = random
        self._now = now
        self._limiter_clock = limiter_clock
        self._queue_size = queue_size
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._shards = [
            self._new_shard(index, chunk)
            for index, chunk in enumerate(shard_streams(streams, self.shard_size))
        ]
        self._queue: asyncio.Queue[Frame | BaseException] | None = None
        self._next_request_id = 0

    # --- what it connects to ---
    @property
    def shards(self) -> list[list[str]]:
        """The streams of each connection (a copy)."""
        return [list(shard.streams) for shard in self._shards]

    def urls(self) -> list[str]:
        return [combined_stream_url(self.base_url, shard.streams) for shard in self._shards]

    # --- the frames ---
    async def frames(self) -> AsyncIterator[Frame]:
        """Every frame from every shard, in arrival order, until the iterator is closed."""
        if self._queue is not None:
            raise RuntimeError("BinanceStream.frames() is already running")
        queue: asyncio.Queue[Frame | BaseException] = asyncio.Queue(maxsize=self._queue_size)
        self._queue = queue
        try:
            for shard in self._shards:
                self._start(shard)
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            tasks = [shard.task for shard in self._shards if shard.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for shard in self._shards:
                shard.task = None
            self._queue = None

    # --- live subscription changes (each message rate-limited per connection) ---
    async def subscribe(self, streams: Iterable[str]) -> None:
        """Add streams to the emptiest connections with room, opening a new one when all are full.

        An open connection gets a SUBSCRIBE at once; the stream lists also rebuild the URL on
        every reconnect, so a stream added while a connection is down is not lost.
        """
        owned = {stream for shard in self._shards for stream in shard.streams}
        added: dict[_Shard, list[str]] = {}
        for stream in dict.fromkeys(streams):
            if stream in owned:
                continue
            owned.add(stream)
            roomy = [shard for shard in self._shards if len(shard.streams) < self.shard_size]
            if roomy:
                shard = min(roomy, key=lambda candidate: len(candidate.streams))
            else:
                shard = self._new_shard(len(self._shards), [])
                self._shards.append(shard)
            shard.streams.append(stream)
            added.setdefault(shard, []).append(stream)
        for shard, new_streams in added.items():
            if shard.task is None and self._queue is not None:
                self._start(shard)
            else:
                await self._send(shard, "SUBSCRIBE", new_streams)

    async def unsubscribe(self, streams: Iterable[str]) -> None:
        """Drop streams from whichever connections carry them."""
        dropped = set(streams)
        for shard in self._shards:
            removed = [stream for stream in shard.streams if stream in dropped]
            if removed:
                shard.streams[:] = [stream for stream in shard.streams if stream not in dropped]
                await self._send(shard, "UNSUBSCRIBE", removed)

    async def list_subscriptions(self) -> None:
        """Ask every open connection for its streams; replies arrive as frames
        (``ParseResult.control`` is ``SUBSCRIPTION_REPLY``)."""
        for shard in self._shards:
            await self._send(shard, "LIST_SUBSCRIPTIONS", None)

    async def _send(self, shard: _Shard, method: str, params: list[str] | None) -> bool:
        connection = shard.connection
        if connection is None:
            return False
        await shard.limiter.acquire()
        self._next_request_id += 1
        message: dict[str, Any] = {"method": method, "id": self._next_request_id}
        if params is not None:
            message["params"] = params
        try:
            await connection.send(json.dumps(message))
        except ConnectionClosed:
            return False  # the reconnect's URL carries the change
        return True

    # --- one shard's reconnect loop ---
    def _new_shard(self, index: int, streams: list[str]) -> _Shard:
        limiter = RateLimiter(
            MAX_MESSAGES_PER_SECOND, 1.0, clock=self._limiter_clock, sleep=self._sleep
        )
        return _Shard(index=index, streams=streams, limiter=limiter)

    def _start(self, shard: _Shard) -> None:
        assert self._queue is not None
        shard.task = asyncio.create_task(
            self._run_shard(shard, self._queue), name=f"binance-shard-{shard.index}"
        )

    async def _run_shard(self, shard: _Shard, queue: asyncio.Queue[Frame | BaseException]) -> None:
        try:
            failures = 0
            while True:
                if not shard.streams:
                    await self._sleep(self.silence_timeout)  # emptied by unsubscribe; idle
                    continue
                reason = await self._connect_once(shard, queue)
                if shard.received:
                    failures = 0
                VENDOR_RECONNECTS.labels(vendor=VENDOR, shard=shard.label, reason=reason).inc()
                if reason in _PLANNED_RECONNECTS:
                    log.info("binance shard %s: reconnecting now (%s)", shard.label, reason)
                    continue
                VENDOR_FETCH_FAILURE.labels(vendor=VENDOR, reason=reason).inc()
                delay = self.backoff.delay(failures, self._random)
                failures += 1
                log.warning(
                    "binance shard %s: %s; reconnecting in %.2f s (attempt %d)",
                    shard.label,
                    reason,
                    delay,
                    failures,
                )
                await self._sleep(delay)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug or a config error: surface it to the consumer
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(exc)
            raise

    async def _connect_once(
        self,
        shard: _Shard,
        queue: asyncio.Queue[Frame | BaseException],
    ) -> str:
        """Open one connection and pump it until it ends; returns the reconnect reason."""
        url = combined_stream_url(self.base_url, shard.streams)
        try:
            connection = await connect(
                url,
                ping_interval=None,
                open_timeout=self._open_timeout,
                close_timeout=self._close_timeout,
            )
        except InvalidURI as exc:
            raise ConfigError(
                f"BINANCE_WS_BASE={self.base_url!r} is not a WebSocket URL: {exc}"
            ) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            log.warning("binance shard %s: could not connect to %s: %s", shard.label, url, exc)
            return "connect_failed"
        shard.connection, shard.received = connection, 0
        try:
            return await self._pump(shard, connection, queue)
        except ConnectionClosed as exc:
            log.warning("binance shard %s: connection closed: %s", shard.label, exc)
            return "connection_closed"
        finally:
            shard.connection = None
            await connection.close()

    async def _buffered(self, connection: ClientConnection) -> str | bytes | None:
        """A frame already waiting when the silence timer fired, or ``None``.

        The timer runs on wall time, but this event loop runs only while the flow polls its
        source: a flow held up (Kafka away) leaves frames waiting in the socket and the timer
        expired on our pause, not the vendor's silence. ``recv`` is cancellation-safe.
        """
        try:
            async with asyncio.timeout(min(_SILENCE_GRACE_S, self.silence_timeout)):
                return await connection.recv()
        except TimeoutError:
            return None

    async def _pump(
        self,
        shard: _Shard,
        connection: ClientConnection,
        queue: asyncio.Queue[Frame | BaseException],
    ) -> str:
        """Move frames to the queue until the connection should be replaced; returns why."""
        loop = asyncio.get_running_loop()
        retire_at = loop.time() + self.max_connection_age
        while True:
            remaining_age = retire_at - loop.time()
            if remaining_age <= 0:
                return "max_age"
            age_first = remaining_age <= self.silence_timeout
            try:
                async with asyncio.timeout(min(remaining_age, self.silence_timeout)):
                    message = await connection.recv()
            except TimeoutError:
                if age_first:
                    return "max_age"
                buffered = await self._buffered(connection)
                if buffered is None:
                    return "silence"
                message = buffered
            receive_time = self._now()
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            VENDOR_FETCH_SUCCESS.labels(vendor=VENDOR).inc()
            shard.received += 1
            await queue.put(Frame(VENDOR, text, receive_time))
            if is_server_shutdown(text):
                return "server_shutdown"
