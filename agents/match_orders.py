"""``match_orders``: the exchange. Commands in, order events and trades out, exactly once.

Consumes ``order-commands-v1`` (keyed by symbol, so one partition owns a symbol's book), runs each
command through the pure matching core (:class:`~brokerflow.matching.MatchingEngine`, the same
code path as ``brokerflow match``) and produces the events, keyed by symbol, to
``order-events-v1`` and ``trade-executions-v1``. A payload that does not decode goes to
``dead-letters-v1`` as a ``DeadLetter`` with the reason; it is counted and logged and the stream
goes on.

State
-----
Books live in memory for speed and in two RocksDB tables (:mod:`brokerflow.tables.exchange`) for
recovery, written per order the command touched (``engine.changes``) plus one small record per
symbol: never a whole book per event. After any partition assignment or revocation the in-memory
books are dropped and rebuilt from the tables before the next command (Faust has restored the
tables of the assigned partitions from their changelogs by then).

Reference prices come from the command topic itself (``SetReferencePrice`` commands forwarded by
:mod:`~brokerflow.agents.forward_reference_prices` from the market-data trades topic), not from
the Redis market cache: a price read from Redis at processing time depends on when the command
happened to be processed, so a replay could band differently; a price in the command log is
ordered with the orders and replays identically. Session closes arrive the same way
(``CloseSession`` from :mod:`~brokerflow.agents.close_sessions`); a repeated close of a session
date already closed is ignored.

Exactly once: what faust-streaming does not do for us
------------------------------------------------------
* ``Topic.send`` inside an agent computes the transactional id from the *destination* topic's
  partition and topic group (``TransactionManager.send``): for an output topic that is not a
  source of this app it finds no group, and ``send_soon`` goes through the buffer. Outputs here
  are sent with the transactional producer of the *source* partition explicitly
  (``app.producer.send(..., transactional_id=...)``), the one whose transaction carries that
  partition's offsets.
* Faust commits on a timer task (and on rebalance) concurrently with the agent. A commit landing
  while a command is half processed puts some of its output in a transaction whose offsets do not
  include it; after a ``kill -9`` the command is processed again and that output appears twice in
  a ``read_committed`` read. This is the duplicate of faust issue 517. Here each command is
  processed, its table changelog records flushed into the transaction and its offset acked under
  one lock, and every commit (``Consumer.force_commit``, which both computes the offsets and
  commits the transaction) takes the same lock, so a transaction always holds exactly the output
  of the offsets it commits.
* Table writes (``table[key] = value``) queue their changelog record in Faust's producer buffer
  (``send_soon``), which the exactly-once commit does not wait for: a record can land in the
  transaction after the one that commits its offset, and be lost with it on a ``kill -9`` (seen
  in the kill test: the restarted worker rebuilt a book missing a change and printed 4 trades
  fewer). The agent writes the store and sends the changelog record itself, in the
  transaction (:func:`write_table`).
* ``concurrency=1``: with more, offsets can be committed past in-flight messages (issue 606).
* RocksDB is written before the transaction commits: a worker that did not shut down cleanly
  wipes its store at start and Faust rebuilds it from the changelog (read committed); see
  :mod:`brokerflow.exchange_datadir`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from faust.types import EventT, StreamT

from brokerflow.app import app, settings
from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.exchange_state import (
    SymbolRecord,
    encode_order_record,
    engine_command,
    order_key,
    rebuild_engines,
)
from brokerflow.matching import Exchange, MatchingEngine, SymbolRules
from brokerflow.matching.events import TRADE_EXECUTED
from brokerflow.matching.replay import load_rules
from brokerflow.matching.wire import to_json
from brokerflow.schemas import CloseSession, DeadLetter, Message, decode
from brokerflow.tables.exchange import engine_state_by_symbol, orders_by_key
from brokerflow.topics import catalog

__all__ = ["commands_topic", "install_commit_guard", "match_orders", "step_lock"]

log = logging.getLogger(__name__)

topics = catalog(settings)
commands_topic = app.topic(
    topics.order_commands.name,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=topics.order_commands.partitions,
)
_EVENTS_TOPIC = topics.order_events.name
_TRADES_TOPIC = topics.trade_executions.name
_DEAD_LETTERS_TOPIC = topics.dead_letters.name
_COMMANDS = frozenset(
    ("PlaceOrder", "CancelOrder", "AmendOrder", "CloseSession", "SetReferencePrice")
)

#: Held while one input record is processed and acked, and by every commit: see the docstring.
step_lock = asyncio.Lock()


def install_commit_guard() -> None:
    """Make the consumer's commits wait for the agent to be between two records (idempotent)."""
    consumer = app.consumer
    if getattr(consumer, "_brokerflow_guarded", False):
        return
    unguarded: Callable[..., Awaitable[bool]] = consumer.force_commit

    async def force_commit_between_records(*args: Any, **kwargs: Any) -> bool:
        async with step_lock:
            return await unguarded(*args, **kwargs)

    consumer.force_commit = force_commit_between_records  # type: ignore[method-assign]
    consumer._brokerflow_guarded = True  # type: ignore[attr-defined]


def transactional_id_for(event: EventT) -> str:
    """The transactional producer whose transaction commits this record's offset (Faust's
    naming: ``{app id}-{topic group}-{partition}``)."""
    tp = event.message.tp
    return f"{app.conf.id}-{app.assignor.group_for_topic(tp.topic)}-{tp.partition}"


async def send_in_transaction(
    event: EventT, topic: str, key: bytes | None, value: bytes
) -> Awaitable[Any]:
    """Produce inside the source partition's transaction (not ``Topic.send``: see above)."""
    return await app.producer.send(
        topic, key, value, None, None, None, transactional_id=transactional_id_for(event)
    )


async def write_table(event: EventT, table: Any, key: bytes, value: bytes) -> None:
    """Set a table key: the local RocksDB store, and its changelog record in the transaction.

    Not ``table[key] = value``: that queues the changelog record in Faust's producer buffer,
    whose ``flush()`` returns once the record left the queue, possibly before it reached the
    transactional producer, so a commit can slip in between and the record lands in the next
    transaction (lost with it after a ``kill -9``, while the offset is committed).
    """
    table.data[key] = value
    await app.producer.send(
        table.changelog_topic.get_topic_name(),
        key,
        value,
        event.message.partition,
        None,
        None,
        transactional_id=transactional_id_for(event),
    )


class _Books:
    """The in-memory engines of the partitions this worker owns, rebuilt after a rebalance."""

    def __init__(self) -> None:
        self.rules: dict[str, SymbolRules] = (
            load_rules(settings.exchange_rules_path) if settings.exchange_rules_path else {}
        )
        self.exchange = Exchange(self.rules)
        self.engines: dict[str, MatchingEngine] = {}
        self.closed_sessions: dict[str, date | None] = {}
        self.stale = True
        self.dead_letters = 0

    def rebuild(self) -> None:
        restored = rebuild_engines(
            engine_state_by_symbol.items(), orders_by_key.items(), self.exchange.rules_for
        )
        self.engines = {symbol: engine for symbol, (engine, _) in restored.items()}
        self.closed_sessions = {symbol: closed for symbol, (_, closed) in restored.items()}
        self.stale = False
        resting = sum(1 for engine in self.engines.values() for _ in engine.resting_orders())
        log.info(
            "books rebuilt from tables: %d symbols, %d resting orders", len(self.engines), resting
        )

    def engine(self, symbol: str) -> MatchingEngine:
        if self.stale:
            self.rebuild()
        engine = self.engines.get(symbol)
        if engine is None:
            engine = self.engines[symbol] = MatchingEngine(symbol, self.exchange.rules_for(symbol))
            self.closed_sessions[symbol] = None
        return engine


books = _Books()


@app.on_partitions_assigned.connect
async def _on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
    books.stale = True
    install_commit_guard()


@app.on_partitions_revoked.connect
async def _on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
    books.stale = True


async def process_command(event: EventT) -> None:
    """One record of the command topic: decode, match, persist, produce (in one transaction)."""
    raw: bytes = event.message.value
    try:
        message = decode(raw)
        if message.type not in _COMMANDS:
            raise UnknownMessageError(
                message.type, {"type": f"{message.type} is not an exchange command"}
            )
    except SchemaError as exc:
        await dead_letter(event, exc)
        return
    await apply_command(event, message)


async def apply_command(event: EventT, message: Message) -> None:
    symbol: str = message.__dict__["symbol"]
    engine = books.engine(symbol)
    closes_session: date | None = None
    if isinstance(message, CloseSession) and message.session_date is not None:
        last = books.closed_sessions.get(symbol)
        if last is not None and message.session_date <= last:
            log.info("%s: session %s already closed; close ignored", symbol, message.session_date)
            return
        closes_session = message.session_date
    events = engine.process(engine_command(message, engine.rules))
    if closes_session is not None:
        books.closed_sessions[symbol] = closes_session
    for order_id, order in engine.changes:
        await write_table(
            event, orders_by_key, order_key(symbol, order_id), encode_order_record(order)
        )
    state = SymbolRecord(engine.state(), books.closed_sessions.get(symbol))
    await write_table(event, engine_state_by_symbol, symbol.encode(), state.to_bytes())
    key = symbol.encode()
    for engine_event in events:
        topic = _TRADES_TOPIC if engine_event[0] == TRADE_EXECUTED else _EVENTS_TOPIC
        await send_in_transaction(event, topic, key, to_json(engine_event).encode())


async def dead_letter(event: EventT, exc: SchemaError) -> None:
    books.dead_letters += 1
    message = event.message
    reason = "UNKNOWN_MESSAGE" if isinstance(exc, UnknownMessageError) else "SCHEMA_INVALID"
    if "<payload>" in exc.problems:
        reason = "NOT_JSON"
    letter = DeadLetter.from_payload(
        source=message.topic,
        reason=reason,
        detail=str(exc),
        fields=tuple(field for field in exc.fields if field != "<payload>"),
        payload=message.value or b"",
        key=message.key,
        partition=message.partition,
        offset=message.offset,
        event_time=datetime.now(UTC),
    )
    log.warning(
        "dead letter #%d from %s[%d]@%d: %s",
        books.dead_letters,
        message.topic,
        message.partition,
        message.offset,
        exc,
    )
    await send_in_transaction(
        event, _DEAD_LETTERS_TOPIC, message.topic.encode(), letter.to_json_bytes()
    )


@app.agent(commands_topic, concurrency=1)
async def match_orders(stream: StreamT) -> None:
    install_commit_guard()
    async for event in stream.events():
        async with step_lock:
            await process_command(event)
            event.ack()
