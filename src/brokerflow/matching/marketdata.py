"""The exchange's own market data: top-of-book and top-N depth as snapshots plus increments.

Pure: fed the book's :class:`~brokerflow.matching.book.Depth` after each command that touched a
symbol, :class:`DepthFeed` says what a subscriber needs to keep an identical copy of the top
``levels`` of each side, in the conventions of Binance's diff-depth stream and Coinbase's
level2 channel:

* an **update** lists the levels whose aggregate quantity changed, with the new quantity; a
  quantity of ``0`` removes the level. A level pushed out of the top N by a better one is sent
  with ``0`` too, and one that moves into it with its quantity, so applying updates to a copy
  of the top N keeps exactly the top N (no level outside it lingers).
* every message of a symbol carries ``sequence`` (one more than the previous message's of that
  symbol, snapshots included) so a subscriber that sees a jump knows it missed something and
  waits for the next **snapshot** (every ``snapshot_every`` updates, and the first message of a
  symbol), which replaces its copy.
* ``top`` is the best bid and ask after the message, and ``top_changed`` says an update moved
  them (price or size): the L1 feed.

Levels are ``(price, quantity, orders)``; prices and quantities are the book's decimals.

:func:`market_trade` is the exchange's trade print in the normalized market type, venue
``BROKERFLOW``, so the stats flow windows it next to Binance's.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter
from typing import Any, NamedTuple

from brokerflow.matching.book import Depth, PriceLevel, TopOfBook
from brokerflow.schemas.market import Trade
from brokerflow.schemas.trades import TradeExecuted

_ZERO = Decimal(0)
_PRICE = attrgetter("price")

__all__ = [
    "EXCHANGE_VENUE",
    "BookMessage",
    "DepthFeed",
    "LevelChange",
    "apply_changes",
    "book_json",
    "book_wire",
    "diff_levels",
    "market_trade",
]

_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]

#: The venue code of this project's exchange on the normalized market types.
EXCHANGE_VENUE = "BROKERFLOW"


def market_trade(executed: TradeExecuted) -> Trade:
    """The exchange's trade as a print on its tape: received when it was made."""
    return Trade(
        venue=EXCHANGE_VENUE,
        symbol=executed.symbol,
        trade_id=executed.trade_id,
        price=executed.price,
        quantity=executed.quantity,
        aggressor_side=executed.aggressor_side,
        event_time=executed.event_time,
        receive_time=executed.event_time,
    )


class LevelChange(NamedTuple):
    """A level's new aggregate: ``quantity == 0`` means the level is gone (from the top N).

    A named tuple, not a frozen dataclass: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, and the feed makes one per changed level per command."""

    is_bid: bool
    price: Decimal
    quantity: Decimal
    orders: int


@dataclass(frozen=True, slots=True)
class BookMessage:
    """One message of a symbol's book feed: a snapshot (``changes`` empty) or an update."""

    symbol: str
    sequence: int
    snapshot: bool
    #: The best bid and ask after this message.
    top: TopOfBook
    #: The whole top N on a snapshot, else None.
    depth: Depth | None
    changes: tuple[LevelChange, ...] = ()
    #: On an update: the best bid or ask moved (price or size), the L1 feed's trigger.
    top_changed: bool = False


def diff_levels(
    before: tuple[PriceLevel, ...], after: tuple[PriceLevel, ...], *, is_bid: bool
) -> list[LevelChange]:
    """What turns one side's top-N view into the next: changed and new levels with their
    quantity, levels that left the view with 0; best price first."""
    if before == after:  # levels from the engine's cache compare by identity first
        return []
    old = {level.price: level for level in before}
    changes = [
        LevelChange(is_bid, level.price, level.quantity, level.orders)
        for level in after
        if old.pop(level.price, None) != level
    ]
    if old:  # what is left of the old view has gone from it
        changes += [LevelChange(is_bid, price, _ZERO, 0) for price in old]
        changes.sort(key=_PRICE, reverse=is_bid)  # prices are distinct: best first
    return changes


def apply_changes(depth: Depth, changes: tuple[LevelChange, ...], levels: int) -> Depth:
    """A subscriber's side of the protocol: the top-N copy after an update."""
    sides = []
    for is_bid, current in ((True, depth.bids), (False, depth.asks)):
        book = {level.price: level for level in current}
        for change in changes:
            if change.is_bid != is_bid:
                continue
            if change.quantity == 0:
                book.pop(change.price, None)
            else:
                book[change.price] = PriceLevel(change.price, change.quantity, change.orders)
        ordered = sorted(book.values(), key=lambda level: -level.price if is_bid else level.price)
        sides.append(tuple(ordered[:levels]))
    return Depth(sides[0], sides[1])


@dataclass(slots=True)
class _SymbolFeed:
    depth: Depth = field(default_factory=lambda: Depth((), ()))
    sequence: int = 0
    since_snapshot: int = 0


def _top(depth: Depth) -> TopOfBook:
    return TopOfBook(depth.bids[0] if depth.bids else None, depth.asks[0] if depth.asks else None)


class DepthFeed:
    """Per symbol: the last top-N view sent and the sequence; turns each new view into the
    messages to publish. Its state is small (N levels a side and two counters per symbol) and is
    what a restart must restore to continue the same sequence."""

    def __init__(self, levels: int = 10, snapshot_every: int = 100) -> None:
        if levels < 1 or snapshot_every < 1:
            raise ValueError("levels and snapshot_every must be at least 1")
        self.levels = levels
        self.snapshot_every = snapshot_every
        self._feeds: dict[str, _SymbolFeed] = {}

    def state(self, symbol: str) -> tuple[int, int]:
        """(sequence, updates since the last snapshot): what a restart restores."""
        feed = self._feeds.get(symbol)
        return (0, 0) if feed is None else (feed.sequence, feed.since_snapshot)

    def restore(self, symbol: str, depth: Depth, sequence: int, since_snapshot: int) -> None:
        """Continue ``symbol``'s feed after a restart: ``depth`` is the restored book's view,
        which is the view last sent, since one is sent after every change."""
        if sequence == 0:
            self._feeds.pop(symbol, None)  # never sent: the next message is the first snapshot
            return
        view = Depth(depth.bids[: self.levels], depth.asks[: self.levels])
        self._feeds[symbol] = _SymbolFeed(view, sequence, since_snapshot)

    def forget(self) -> None:
        """Drop every symbol (the partitions were reassigned; :meth:`restore` follows)."""
        self._feeds.clear()

    def sequence(self, symbol: str) -> int:
        """The last sequence sent for ``symbol`` (0 before the first message)."""
        feed = self._feeds.get(symbol)
        return 0 if feed is None else feed.sequence

    def update(self, symbol: str, depth: Depth) -> list[BookMessage]:
        """The messages a new view of ``symbol``'s book (at least ``levels`` deep) calls for:
        none when its top N did not change, else an update, and a snapshot when one is due."""
        view = Depth(depth.bids[: self.levels], depth.asks[: self.levels])
        feed = self._feeds.get(symbol)
        if feed is None:
            feed = self._feeds[symbol] = _SymbolFeed()
            feed.depth = view
            return [self._snapshot(symbol, feed)]
        changes = diff_levels(feed.depth.bids, view.bids, is_bid=True)
        changes += diff_levels(feed.depth.asks, view.asks, is_bid=False)
        if not changes:
            return []
        before = _top(feed.depth)
        after = _top(view)
        feed.depth = view
        feed.sequence += 1
        feed.since_snapshot += 1
        messages = [
            BookMessage(
                symbol,
                feed.sequence,
                snapshot=False,
                top=after,
                depth=None,
                changes=tuple(changes),
                top_changed=after != before,
            )
        ]
        if feed.since_snapshot >= self.snapshot_every:
            messages.append(self._snapshot(symbol, feed))
        return messages

    def snapshot(self, symbol: str) -> BookMessage:
        """A snapshot now (a new subscriber asked, or a session began)."""
        feed = self._feeds.setdefault(symbol, _SymbolFeed())
        return self._snapshot(symbol, feed)

    def _snapshot(self, symbol: str, feed: _SymbolFeed) -> BookMessage:
        feed.sequence += 1
        feed.since_snapshot = 0
        return BookMessage(symbol, feed.sequence, True, _top(feed.depth), feed.depth)


def _level(price: Decimal, quantity: Decimal, orders: int) -> dict[str, Any]:
    return {"price": format(price, "f"), "quantity": format(quantity, "f"), "orders": orders}


def _side(levels: tuple[PriceLevel, ...]) -> list[dict[str, Any]]:
    return [_level(*level) for level in levels]


def book_wire(message: BookMessage, event_time: str, venue: str = "BROKERFLOW") -> dict[str, Any]:
    """The ``BookSnapshot`` / ``BookUpdate`` wire form (:mod:`brokerflow.schemas.book`), built
    without pydantic on the agent's path; a test checks every output against the schemas."""
    head: dict[str, Any] = {
        "type": "BookSnapshot" if message.snapshot else "BookUpdate",
        "schemaVersion": 1,
        "venue": venue,
        "symbol": message.symbol,
        "sequence": message.sequence,
    }
    if message.snapshot:
        assert message.depth is not None
        return {
            **head,
            "bids": _side(message.depth.bids),
            "asks": _side(message.depth.asks),
            "eventTime": event_time,
        }
    top = message.top
    return {
        **head,
        "bids": [_level(c.price, c.quantity, c.orders) for c in message.changes if c.is_bid],
        "asks": [_level(c.price, c.quantity, c.orders) for c in message.changes if not c.is_bid],
        "bestBid": None if top.bid is None else _level(*top.bid),
        "bestAsk": None if top.ask is None else _level(*top.ask),
        "topChanged": message.top_changed,
        "eventTime": event_time,
    }


def _level_json(price: Decimal, quantity: Decimal, orders: int) -> str:
    return f'{{"price":"{price:f}","quantity":"{quantity:f}","orders":{orders}}}'


def _optional_level_json(level: PriceLevel | None) -> str:
    return "null" if level is None else _level_json(*level)


def book_json(message: BookMessage, event_time: str, venue: str = "BROKERFLOW") -> bytes:
    """``json.dumps`` of :func:`book_wire` (compact), formatted by hand: the agent sends one
    per book change (a test checks the bytes are the same)."""
    when = _quote(event_time)
    if message.snapshot:
        assert message.depth is not None
        bids = ",".join([_level_json(*level) for level in message.depth.bids])
        asks = ",".join([_level_json(*level) for level in message.depth.asks])
        return (
            f'{{"type":"BookSnapshot","schemaVersion":1,"venue":{_quote(venue)},'
            f'"symbol":{_quote(message.symbol)},"sequence":{message.sequence},'
            f'"bids":[{bids}],"asks":[{asks}],"eventTime":{when}}}'
        ).encode()
    changes = message.changes
    bids = ",".join([_level_json(c.price, c.quantity, c.orders) for c in changes if c.is_bid])
    asks = ",".join([_level_json(c.price, c.quantity, c.orders) for c in changes if not c.is_bid])
    top = message.top
    return (
        f'{{"type":"BookUpdate","schemaVersion":1,"venue":{_quote(venue)},'
        f'"symbol":{_quote(message.symbol)},"sequence":{message.sequence},'
        f'"bids":[{bids}],"asks":[{asks}],"bestBid":{_optional_level_json(top.bid)},'
        f'"bestAsk":{_optional_level_json(top.ask)},'
        f'"topChanged":{"true" if message.top_changed else "false"},"eventTime":{when}}}'
    ).encode()
