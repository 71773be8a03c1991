"""Pure helpers of the exchange agents: table keys and records, commands, books rebuilt.

The matching agent (:mod:`brokerflow.agents.match_orders`) keeps every book in two RocksDB tables
and never re-serializes a whole book: after each command it writes one record per order the
command touched (the engine's :attr:`~brokerflow.matching.MatchingEngine.changes`) and one small
record per symbol. Everything here is pure (no Faust, no Kafka), so it is unit-tested directly:

* ``orders_by_key``: ``b"PETR4|o1"`` -> the resting order's record (ticks and lots), or the
  closed marker ``{"closed":true}`` for an order id that is seen and no longer rests (the
  duplicate-check memory: a PlaceOrder with that id again answers ``OrderDuplicateIgnored``).
* ``engine_state_by_symbol``: ``b"PETR4"`` -> :class:`SymbolRecord`, the engine's counters and
  reference price, the last session date closed (repeated closes are ignored) and the offset of
  the next command to process in the symbol's partition; plus, per partition, the
  :data:`NEXT_OFFSET_KEY` record, written only by a command that touched no symbol (a dead
  letter, an ignored close). The next offset lives in the same transaction as the output, so a
  restored partition knows exactly which command comes next (:func:`next_offset`).

:func:`rebuild_engines` turns the two tables' items back into engines equal to the ones that
wrote them (:meth:`~brokerflow.matching.MatchingEngine.restore`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from brokerflow.matching import (
    Cancel,
    CloseSession,
    Command,
    EngineState,
    MatchingEngine,
    RestingOrder,
    SetReferencePrice,
    SymbolRules,
    amend_command,
    format_event_time,
    place_command,
)
from brokerflow.schemas.base import Message

__all__ = [
    "CLOSED_MARKER",
    "NEXT_OFFSET_KEY",
    "SymbolRecord",
    "decode_order_record",
    "encode_order_record",
    "engine_command",
    "next_offset",
    "next_offset_record",
    "order_key",
    "rebuild_engines",
    "split_order_key",
]

#: Stored for an order id that was seen and is no longer resting (filled, cancelled, rejected...).
CLOSED_MARKER: Final = b'{"closed":true}'
#: ``engine_state_by_symbol`` key of a partition's next command offset, when no symbol record
#: carries it. Symbols never start with ``#``.
NEXT_OFFSET_KEY: Final = b"#next-offset"
#: Separates symbol and order id in a table key; a symbol never contains it (letters, digits,
#: '.', '-'), so the first one splits the key even when the order id holds more.
_KEY_SEPARATOR: Final = "|"


def order_key(symbol: str, order_id: str) -> bytes:
    """``orders_by_key`` key: symbol first, so one symbol's orders sort together."""
    return f"{symbol}{_KEY_SEPARATOR}{order_id}".encode()


def split_order_key(key: bytes) -> tuple[str, str]:
    """``(symbol, order_id)`` of an :func:`order_key`."""
    symbol, separator, order_id = key.decode().partition(_KEY_SEPARATOR)
    if not separator or not symbol or not order_id:
        raise ValueError(f"{key!r} is not a symbol|orderId table key")
    return symbol, order_id


def encode_order_record(order: RestingOrder | None) -> bytes:
    """A resting order's record, or :data:`CLOSED_MARKER` for ``None`` (the id is closed)."""
    if order is None:
        return CLOSED_MARKER
    return json.dumps(order.to_record(), separators=(",", ":")).encode()


def decode_order_record(value: bytes) -> RestingOrder | None:
    """The resting order an :func:`encode_order_record` value holds, ``None`` when closed."""
    record = json.loads(value)
    if record.get("closed") is True:
        return None
    return RestingOrder.from_record(record)


@dataclass(frozen=True, slots=True)
class SymbolRecord:
    """``engine_state_by_symbol`` value: the engine's state and the last session closed."""

    engine: EngineState
    last_closed_session: date | None = None
    #: Offset of the next command in the symbol's partition, once this record is written.
    next_offset: int | None = None
    #: The book feed's last sequence and updates since its last snapshot (exchange-book-v1).
    book_sequence: int = 0
    book_since_snapshot: int = 0

    def to_bytes(self) -> bytes:
        record: dict[str, Any] = {"engine": self.engine.to_record()}
        record["lastClosedSession"] = (
            None if self.last_closed_session is None else self.last_closed_session.isoformat()
        )
        record["nextOffset"] = self.next_offset
        if self.book_sequence:
            record["book"] = [self.book_sequence, self.book_since_snapshot]
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> SymbolRecord:
        record = json.loads(value)
        closed = record.get("lastClosedSession")
        book_sequence, book_since_snapshot = record.get("book") or (0, 0)
        return cls(
            engine=EngineState.from_record(record["engine"]),
            last_closed_session=None if closed is None else date.fromisoformat(closed),
            next_offset=record.get("nextOffset"),
            book_sequence=book_sequence,
            book_since_snapshot=book_since_snapshot,
        )


def next_offset_record(offset: int) -> bytes:
    """The :data:`NEXT_OFFSET_KEY` value."""
    return json.dumps({"nextOffset": offset}, separators=(",", ":")).encode()


def next_offset(symbol_records: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The offset of the next command to process in one partition, from its state records.

    Every processed command writes it (in its symbol's record, or in the partition's
    :data:`NEXT_OFFSET_KEY` record), so the highest one is the command after the last one whose
    transaction committed; ``None`` when the partition never processed a command.
    """
    offsets = [
        json.loads(value).get("nextOffset")
        for key, value in symbol_records
        if key == NEXT_OFFSET_KEY or not key.startswith(b"#")
    ]
    known = [offset for offset in offsets if offset is not None]
    return max(known) if known else None


def rebuild_engines(
    symbol_records: Iterable[tuple[bytes, bytes]],
    order_records: Iterable[tuple[bytes, bytes]],
    rules_for: Callable[[str], SymbolRules],
) -> dict[str, tuple[MatchingEngine, date | None]]:
    """Engines (and last closed session) per symbol, from the two tables' ``(key, value)`` items.

    A symbol with orders but no state record cannot happen when both tables are written in one
    transaction; it would mean a damaged store, so it is refused loudly rather than guessed.
    """
    resting: dict[str, list[RestingOrder]] = defaultdict(list)
    closed: dict[str, list[str]] = defaultdict(list)
    for key, value in order_records:
        symbol, order_id = split_order_key(key)
        order = decode_order_record(value)
        if order is None:
            closed[symbol].append(order_id)
        else:
            resting[symbol].append(order)
    engines: dict[str, tuple[MatchingEngine, date | None]] = {}
    for key, value in symbol_records:
        if key.startswith(b"#"):
            continue
        symbol = key.decode()
        record = SymbolRecord.from_bytes(value)
        engine = MatchingEngine.restore(
            record.engine, resting.pop(symbol, ()), closed.pop(symbol, ()), rules_for(symbol)
        )
        engines[symbol] = (engine, record.last_closed_session)
    orphans = sorted(set(resting) | set(closed))
    if orphans:
        raise ValueError(
            f"orders stored for {', '.join(orphans)} without an engine state record; "
            "the local store is damaged: delete the worker's data dir to rebuild it"
        )
    return engines


def engine_command(message: Message | Mapping[str, Any], rules: SymbolRules) -> Command:
    """The book-unit command for a wire command, by the same conversions as ``brokerflow match``.

    ``message`` is the model or its field values (``model.__dict__``, or what
    :func:`~brokerflow.schemas.commands_fastpath.fast_command_fields` gives). ``CloseSession``
    and ``SetReferencePrice`` map to their core commands; the session-date dedup of closes is the
    agent's (it needs the stored last closed date).
    """
    data: Mapping[str, Any] = message.__dict__ if isinstance(message, Message) else message
    kind = data["type"]
    symbol = data["symbol"]
    if kind == "PlaceOrder":
        return place_command(
            rules,
            symbol,
            data["order_id"],
            data["account_id"],
            str(data["side"]),
            str(data["order_type"]),
            str(data["time_in_force"]),
            data["quantity"],
            data["price"],
            format_event_time(data["event_time"]),
        )
    if kind == "CancelOrder":
        return Cancel(symbol, data["order_id"], format_event_time(data["event_time"]))
    if kind == "AmendOrder":
        return amend_command(
            rules,
            symbol,
            data["order_id"],
            data["quantity"],
            data["price"],
            format_event_time(data["event_time"]),
            data["account_id"],
        )
    if kind == "CloseSession":
        return CloseSession(symbol, format_event_time(data["event_time"]))
    if kind == "SetReferencePrice":
        return SetReferencePrice(symbol, data["price"])
    raise TypeError(f"{kind} is not an order command")
