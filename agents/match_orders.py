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
books are dropped; before the next command the agent restores the tables' partitions from their
changelogs and rebuilds the books from them (below).

Reference prices come from the command topic itself: ``SetReferencePrice`` commands, which this
agent makes from the market-data topics it also consumes (``market.trades.raw``,
``assets-market-data-v1``; :mod:`~brokerflow.agents.forward_reference_prices` has the rules and
the reasons), not from the Redis market cache: a price read from Redis at processing time depends
on when the command happened to be processed, so a replay could band differently; a price in the
command log is ordered with the orders and replays identically. Market records get the same
exactly-once treatment as commands below (next offsets, gap fills, their state restored from the
``reference_forwarding`` changelog). Session closes arrive the same way (``CloseSession`` from
:mod:`~brokerflow.agents.close_sessions`); a repeated close of a session date already closed is
ignored.

Exactly once: what faust-streaming does not do for us
------------------------------------------------------
The agent does not trust Faust's consumer bookkeeping, its table recovery or its commit timing
with correctness; each was seen to break exactly-once in the kill and rebalance tests. Instead:

* **Outputs, state and the input offset in one transaction.** Every output (events, trades, dead
  letters) and every table change is sent with the transactional producer of the *source*
  partition (``Topic.send`` would pick the destination's: faust issue 177), and the state record
  written per command carries the offset of the next command in that partition. A transaction
  therefore always says exactly which commands it covers.
* **Restore from the changelog on every assignment.** Faust restores tables from a high-water mark
  cached by its consumer (it can trail the real end, so a restored book misses its last changes)
  and leaves RocksDB holding writes of transactions that were later aborted. Before the first
  command after any rebalance the agent reads its tables' changelogs of its partitions itself, with
  ``read_committed`` to the last stable offset asked of the broker after the partition's producer
  was (re)initialised (which completes or aborts the previous owner's transaction), replaces
  those RocksDB partitions with what it read, and rebuilds the books from it: Kafka Streams'
  exactly-once rule, applied at every assignment because Faust's rebalances are eager.
* **The next offset decides, not the consumer.** A command below the partition's next offset was
  processed in a committed transaction: it is skipped (faust issue 517's duplicates after a
  ``kill -9``). A command above it means commands were not delivered: Faust's stream drops
  records fetched under an older consumer generation or while its flow control is paused, and
  its consumer can start past the committed offset after a rebalance. The agent reads the missing
  commands from the topic itself (:meth:`~brokerflow.exchange.io.LogReader.read_range`, on one
  consumer of its own kept open) and processes them first, in order. Dropped records that no
  later record follows are found by a timer: a partition idle for
  ``EXCHANGE_CATCH_UP_INTERVAL_S`` is compared with its last stable offset on the broker. (Seeking
  Faust's consumer back does not work: its fetch loop overwrites the read offset with the batch
  it is still delivering, and the re-fetched records are dropped.)
* **Commits cover processed commands only.** The command topic is declared ``acks=False`` so that
  Faust never computes its offsets from acks (its gap and hole logic committed offsets past
  commands that were never processed, or stalled a partition forever); the commit replaces
  ``Consumer.force_commit`` and commits, under the same lock as processing, the next offset of
  every partition with processed commands plus whatever Faust would commit for other topics. A
  transaction thus never holds half a command's output.
* ``concurrency=1``: with more, offsets can be committed past in-flight messages (issue 606).
* One data dir per worker (flock), a bounded block cache: see :mod:`brokerflow.app`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from datetime import date, timedelta
from functools import partial
from typing import Any

from faust.types import StreamT

from brokerflow.agents.exactly_once import (
    ExactlyOnceAgent,
    InputRecord,
    TableWrites,
    input_topics,
    send_in_transaction,
    step_lock,
)
from brokerflow.agents.forward_reference_prices import QUOTES, TRADES, ReferencePrices
from brokerflow.app import app, settings
from brokerflow.errors import SchemaError, UnknownMessageError
from brokerflow.exchange.io import PartitionSnapshot
from brokerflow.exchange.rules import exchange_rules
from brokerflow.exchange.state import (
    NEXT_OFFSET_KEY,
    SymbolRecord,
    encode_order_record,
    engine_command,
    next_offset,
    next_offset_record,
    order_key,
    rebuild_engines,
)
from brokerflow.matching import Exchange, MatchingEngine, SymbolRules, event_account_id
from brokerflow.matching.events import TRADE_EXECUTED
from brokerflow.matching.marketdata import DepthFeed, book_json
from brokerflow.matching.wire import to_json
from brokerflow.metrics import EXCHANGE_EVENTS
from brokerflow.schemas import decode
from brokerflow.schemas.base import format_utc
from brokerflow.schemas.commands_fastpath import fast_command_fields
from brokerflow.tables.exchange import (
    engine_state_by_symbol,
    orders_by_key,
    reference_forwarding,
)
from brokerflow.topics import catalog

__all__ = [
    "books",
    "exchange_inputs",
    "match_orders",
    "references",
    "release_held_reference_prices",
]

log = logging.getLogger(__name__)

topics = catalog(settings)
_COMMANDS_TOPIC = topics.order_commands.name
_EVENTS_TOPIC = topics.order_events.name
_TRADES_TOPIC = topics.trade_executions.name
_BOOK_TOPIC = topics.exchange_book.name
_BOOK_LEVELS = settings.exchange_book_levels
#: Order events of orders with an account, re-keyed by account: the broker's settlement input.
_REPORTS_TOPIC = topics.execution_reports.name if settings.broker_execution_reports else None
#: The simulated participants trade as exchange members, not as the broker's customers: their
#: orders' events would only be read and skipped by every broker service.
_MEMBERS = f"{settings.participants_account}-"
_COMMANDS = frozenset(
    ("PlaceOrder", "CancelOrder", "AmendOrder", "CloseSession", "SetReferencePrice")
)
#: Each event type's Prometheus counter (``labels()`` looks the child up on every call).
_EVENT_COUNTERS: dict[str, Any] = {}
_encode = encode_order_record
_TABLES = (orders_by_key, engine_state_by_symbol, reference_forwarding)

#: The agent's inputs: commands, and the market data whose prices become reference prices. All
#: co-partitioned (one partition count, keyed by symbol). ``acks=False``: Faust must not commit
#: their offsets from acks (see the docstring).
_INPUT_TOPICS = (_COMMANDS_TOPIC, topics.market_trades.name, topics.market_quotes.name)
exchange_inputs = input_topics(*_INPUT_TOPICS, partitions=topics.order_commands.partitions)

references = ReferencePrices(
    {topics.market_trades.name: TRADES, topics.market_quotes.name: QUOTES},
    _COMMANDS_TOPIC,
    reference_forwarding,
    timedelta(seconds=settings.exchange_reference_min_interval_s),
)


class _Books(ExactlyOnceAgent):
    """The in-memory engines of the partitions this worker owns (the exactly-once bookkeeping
    is :class:`~brokerflow.agents.exactly_once.ExactlyOnceAgent`'s)."""

    def __init__(self) -> None:
        super().__init__("exchange", "books", _INPUT_TOPICS, _TABLES)
        self.rules: dict[str, SymbolRules] = exchange_rules(settings)
        self.exchange = Exchange(self.rules)
        self.engines: dict[str, MatchingEngine] = {}
        self.closed_sessions: dict[str, date | None] = {}
        #: symbol -> the book's depth key (book units) when its feed last looked at it.
        self.depth_keys: dict[str, Any] = {}
        self.execution_reports = 0
        #: The exchange's market data (``exchange-book-v1``); None when it publishes none.
        self.book = (
            DepthFeed(_BOOK_LEVELS, settings.exchange_book_snapshot_every) if _BOOK_LEVELS else None
        )

    def drop_state(self) -> None:
        self.engines, self.closed_sessions, self.depth_keys = {}, {}, {}
        if self.book is not None:
            self.book.forget()
        references.clear()

    def load_partition(
        self, partition: int, snapshots: Mapping[Any, PartitionSnapshot], now: float
    ) -> dict[str, int | None]:
        states = snapshots[engine_state_by_symbol].values.items()
        orders = snapshots[orders_by_key].values.items()
        for symbol, (engine, closed) in rebuild_engines(
            states, orders, self.exchange.rules_for
        ).items():
            self.engines[symbol] = engine
            self.closed_sessions[symbol] = closed
            self.depth_keys.pop(symbol, None)  # compare with the restored feed's view next
        if self.book is not None:
            # The view last published is the restored book's: one goes out after every change.
            for key, value in states:
                if key.startswith(b"#"):
                    continue
                record = SymbolRecord.from_bytes(value)
                symbol = key.decode()
                self.book.restore(
                    symbol,
                    self.engines[symbol].depth(_BOOK_LEVELS),
                    record.book_sequence,
                    record.book_since_snapshot,
                )
        market = references.restore_partition(
            partition, snapshots[reference_forwarding].values.items(), now
        )
        loaded: dict[str, int | None] = {_COMMANDS_TOPIC: next_offset(states)}
        for topic in _INPUT_TOPICS[1:]:
            loaded[topic] = market.get(topic)
        return loaded

    def restore_summary(self) -> str:
        resting = sum(sum(1 for _ in engine.resting_orders()) for engine in self.engines.values())
        return (
            f"{len(self.engines)} symbols, {resting} resting orders, "
            f"{len(references.held_since)} reference prices held"
        )

    async def process(self, record: InputRecord, writes: TableWrites, now: float) -> None:
        if record.topic == _COMMANDS_TOPIC:
            await process_command(record, writes)
        else:
            await references.forward(record, writes, now)

    def book_messages(self, symbol: str, engine: MatchingEngine) -> list[Any]:
        """The book feed's messages after a command: none when the top levels are unchanged
        (compared in book units, which is cheap; the decimal depth only when they changed)."""
        if self.book is None:
            return []
        key = engine.depth_key(_BOOK_LEVELS)
        if self.depth_keys.get(symbol) == key:
            return []
        self.depth_keys[symbol] = key
        return self.book.update(symbol, engine.depth_of_key(key))

    def engine(self, symbol: str) -> MatchingEngine:
        engine = self.engines.get(symbol)
        if engine is None:
            engine = self.engines[symbol] = MatchingEngine(symbol, self.exchange.rules_for(symbol))
            self.closed_sessions[symbol] = None
        return engine


books = _Books()


async def process_command(record: InputRecord, writes: TableWrites) -> None:
    """One record of the command topic: decode, match, persist, produce (in one transaction)."""
    raw: bytes = record.value
    fields = fast_command_fields(raw)
    if fields is None:
        try:
            message = decode(raw)
            if message.type not in _COMMANDS:
                raise UnknownMessageError(
                    message.type, {"type": f"{message.type} is not an exchange command"}
                )
        except SchemaError as exc:
            await books.dead_letter(record, exc)
            write_next_offset(record, writes)
            return
        fields = message.__dict__
    if not apply_command(record, fields, writes):
        write_next_offset(record, writes)


def write_next_offset(record: InputRecord, writes: TableWrites) -> None:
    """For a command that wrote no symbol record: the partition's next offset still moves."""
    writes.set(
        record, engine_state_by_symbol, NEXT_OFFSET_KEY, next_offset_record(record.offset + 1)
    )


def apply_command(record: InputRecord, fields: Mapping[str, Any], writes: TableWrites) -> bool:
    """Match one command (a message's field values); False when it was ignored (nothing
    written)."""
    symbol: str = fields["symbol"]
    engine = books.engine(symbol)
    closes_session: date | None = None
    if fields["type"] == "CloseSession" and fields["session_date"] is not None:
        last = books.closed_sessions.get(symbol)
        if last is not None and fields["session_date"] <= last:
            log.info("%s: session %s already closed; close ignored", symbol, fields["session_date"])
            return False
        closes_session = fields["session_date"]
    events = engine.process(engine_command(fields, engine.rules))
    if closes_session is not None:
        books.closed_sessions[symbol] = closes_session
    for order_id, order in engine.changes:
        # Encoded when the batch ends: a later command of the batch that changes the order
        # again sets this key again, so the order's state then is its state at its last set.
        writes.set(record, orders_by_key, order_key(symbol, order_id), partial(_encode, order))
    for order_id in engine.forgotten:  # a session close ended these ids' uniqueness
        writes.delete(record, orders_by_key, order_key(symbol, order_id))
    book_messages = books.book_messages(symbol, engine)
    book_sequence, book_since_snapshot = (0, 0) if books.book is None else books.book.state(symbol)
    state = SymbolRecord(
        engine.state(),
        books.closed_sessions.get(symbol),
        next_offset=record.offset + 1,
        book_sequence=book_sequence,
        book_since_snapshot=book_since_snapshot,
    )
    writes.set(record, engine_state_by_symbol, symbol.encode(), state.to_bytes)
    key = symbol.encode()
    if book_messages:
        when = format_utc(fields["event_time"])
        for book_message in book_messages:
            send_in_transaction(record, _BOOK_TOPIC, key, book_json(book_message, when))
    for engine_event in events:
        counter = _EVENT_COUNTERS.get(engine_event[0])
        if counter is None:
            counter = _EVENT_COUNTERS[engine_event[0]] = EXCHANGE_EVENTS.labels(
                type=engine_event[0]
            )
        counter.inc()
        payload = to_json(engine_event).encode()
        if engine_event[0] == TRADE_EXECUTED:
            send_in_transaction(record, _TRADES_TOPIC, key, payload)
            continue
        send_in_transaction(record, _EVENTS_TOPIC, key, payload)
        account = event_account_id(engine_event) if _REPORTS_TOPIC else None
        if account is not None and not account.startswith(_MEMBERS):
            books.execution_reports += 1
            send_in_transaction(record, _REPORTS_TOPIC, account.encode(), payload)
    return True


def quiet_kafka_client_debug() -> None:
    """aiokafka logs a debug line per record sent; creating those records cost 9 % of the
    agent's time in a profile even though no handler printed them."""
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))


def shorten_gil_switch_interval() -> None:
    """Faust runs its Kafka consumer in a second thread. Every socket write of this (the event
    loop's) thread gives the GIL up, and getting it back waited for the consumer thread's
    switch interval (5 ms by default): a profile showed 0.55 ms per send call."""
    sys.setswitchinterval(settings.exchange_gil_switch_interval_s)


@app.timer(interval=settings.exchange_catch_up_interval_s)
async def catch_up_undelivered() -> None:
    """Process what Faust dropped and nothing later will bring."""
    await books.catch_up()


@app.timer(interval=max(settings.exchange_reference_min_interval_s / 2, 0.05))
async def release_held_reference_prices() -> None:
    """Forward market prices the interval held back once they have waited for it."""
    if books.stale or not references.held_since:
        return
    async with step_lock:
        if books.stale:
            return
        now = time.monotonic()
        writes = TableWrites()
        for key in list(references.due(now)):
            partition = await references.release(key, writes, now)
            books.wrote_without_input(key[0], partition)
        await writes.flush()


@app.agent(exchange_inputs, concurrency=1)
async def match_orders(stream: StreamT) -> None:
    quiet_kafka_client_debug()
    shorten_gil_switch_interval()
    await books.consume(stream)
