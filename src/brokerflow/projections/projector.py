"""The read-model projector: order, ledger and account events in, MongoDB read models out.

One consumer group (``PROJECTIONS_GROUP_ID``, ``brokerflow-projections``) reads
``order-events-v1``, ``ledger-events-v1`` and ``account-events-v1`` ``read_committed``, in batches
of up to ``PROJECTIONS_BATCH_MAX`` records. Each batch goes::

    decode (bad records -> dead-letters-v1)
    -> read the documents it touches (one query per collection)
    -> fold the events in memory (brokerflow.projections.folds; ledger entries strictly in
       per-account sequence, an early one held back until the missing one arrives)
    -> conditional writes (brokerflow.projections.store): fill fees, orders, positions, accounts
    -> commit the offsets: past the batch, but never past a held ledger entry

At-least-once delivery, exactly-once effect: a crash anywhere re-reads from the last commit, and
every write of a record already applied is filtered out by the sequence it carries. Accounts are
written last, because their ``sequence`` is what marks a ledger entry as applied.

Fees: the exchange's fill event (order-events-v1) and the accounts agent's ``FillSettled`` (ledger,
with the fees) come on different topics, in either order. A fill pushed before its fees are known
gets ``fees: null``; ``FillSettled`` then sets them. One that settles first leaves its fees in
``projection_fill_fees``, where the fill event finds them. Both sides check again after writing,
so two projector processes splitting the partitions cannot each miss the other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from brokerflow.errors import SchemaError, StackError
from brokerflow.kafka_io import KafkaUnavailableError, consumer, producer, publish
from brokerflow.metrics import PROJECTOR_BATCH_SECONDS, PROJECTOR_EVENTS, PROJECTOR_GAPS_HELD
from brokerflow.projections.cache import OpenOrdersCache, PortfolioCache
from brokerflow.projections.folds import (
    ACCOUNTS,
    ACTIVITIES,
    FILL_FEES,
    LEDGER_EVENTS,
    ORDER_EVENTS,
    ORDER_HISTORY,
    ORDERS,
    POSITIONS,
    Document,
    GapBuffer,
    activity_document,
    attach_fees,
    fill_key,
    fold_account,
    fold_order,
    fold_position,
    fold_refusal,
    order_event_is_duplicate,
    position_id,
)
from brokerflow.projections.history import history_entries
from brokerflow.projections.store import (
    ReadModelStore,
    Update,
    fee_stash_update,
    fee_update,
    order_updates,
    sequenced_upsert,
)
from brokerflow.schemas import decode
from brokerflow.schemas.accounts import RequestRefused
from brokerflow.schemas.base import Message, format_decimal
from brokerflow.schemas.deadletter import DeadLetter
from brokerflow.schemas.ledger import CustodyTransferredIn, FillSettled
from brokerflow.schemas.orders import OrderFilled, OrderPartiallyFilled
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

__all__ = ["Projector", "ProjectorStats", "run_projector"]

log = logging.getLogger(__name__)

#: Rounds of re-reading and re-folding an order another writer changed under us.
_MAX_CONFLICT_ROUNDS = 5
_RETRY_MAX_S = 10.0
_LOG_EVERY_S = 1.0
#: projector_events_total{outcome} <- the ProjectorStats counter it follows.
_OUTCOMES = (
    ("applied", "applied"),
    ("duplicate", "duplicates"),
    ("ignored", "ignored"),
    ("dead_letter", "dead_letters"),
)


@dataclass
class ProjectorStats:
    """Counters since start (the log line shows them; tests read them)."""

    records: int = 0
    batches: int = 0
    #: Events that changed a read model.
    applied: int = 0
    #: Events already applied (a replay, a restart after a crash): skipped.
    duplicates: int = 0
    #: Events with nothing to project: other participants' orders, lost cancels, acceptances.
    ignored: int = 0
    #: Ledger entries held back behind a gap now, and ever.
    gaps_held: int = 0
    held_total: int = 0
    dead_letters: int = 0
    #: Order updates re-folded because another writer changed the document first.
    conflicts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Input:
    event: Message
    partition: TopicPartition
    offset: int


@dataclass
class _Orders:
    """The order documents of one batch: as read, as folded, and what folds them."""

    initial: dict[str, Document]
    current: dict[str, Document]
    inputs: dict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.projector.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        return None


class Projector:
    """Folds batches of records into the read models; :func:`run_projector` drives it."""

    def __init__(
        self,
        settings: Settings,
        store: ReadModelStore,
        stats: ProjectorStats | None = None,
        cache: PortfolioCache | None = None,
        open_orders: OpenOrdersCache | None = None,
    ) -> None:
        self.store = store
        #: Written through after MongoDB, before the offsets are committed (see .cache).
        self.cache = cache
        self.open_orders = open_orders
        self.stats = stats if stats is not None else ProjectorStats()
        topics = catalog(settings)
        self.input_topics = [
            topics.order_events.name,
            topics.ledger_events.name,
            topics.account_events.name,
        ]
        self.dead_letters_topic = topics.dead_letters.name
        self.gaps: GapBuffer[str, _Input] = GapBuffer(lambda item: item.event.sequence)  # type: ignore[attr-defined]
        self.listener = _Revocations(self)

    # --- one batch ---------------------------------------------------------------------------

    async def apply(
        self, records: list[ConsumerRecord]
    ) -> tuple[list[DeadLetter], dict[TopicPartition, int]]:
        """Project ``records``; return the dead letters to publish and the offsets to commit.

        On an exception nothing is committed, and the held entries and the counters are as
        before, so the same records can be applied again."""
        inputs, letters = self._decode(records)
        held, counted = self.gaps.snapshot(), self.stats.as_dict()
        started = time.perf_counter()
        try:
            await self._project(inputs)
        except BaseException:
            self.gaps.restore(held)
            for name, value in counted.items():
                setattr(self.stats, name, value)
            raise
        self.stats.records += len(records)
        self.stats.batches += 1
        self.stats.dead_letters += len(letters)
        self.stats.gaps_held = len(self.gaps)
        PROJECTOR_BATCH_SECONDS.observe(time.perf_counter() - started)
        now = self.stats.as_dict()
        for outcome, name in _OUTCOMES:
            PROJECTOR_EVENTS.labels(outcome).inc(now[name] - counted[name])
        PROJECTOR_GAPS_HELD.set(self.stats.gaps_held)
        return letters, self._commit_offsets(records)

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Partitions went to another reader: it re-reads their held entries itself."""
        dropped = self.gaps.discard(lambda item: item.partition in partitions)
        self.stats.gaps_held = len(self.gaps)
        if dropped:
            log.info("projector: %d held ledger entries left with their partitions", dropped)

    def _decode(self, records: list[ConsumerRecord]) -> tuple[list[_Input], list[DeadLetter]]:
        inputs: list[_Input] = []
        letters: list[DeadLetter] = []
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            try:
                if record.value is None:
                    raise SchemaError("message", {"<payload>": "empty record (a tombstone)"})
                event = decode(record.value)
            except SchemaError as error:
                letters.append(
                    DeadLetter.from_error(
                        error,
                        source=record.topic,
                        payload=record.value or b"",
                        event_time=datetime.now(UTC),
                        key=record.key,
                        partition=record.partition,
                        offset=record.offset,
                    )
                )
                log.warning(
                    "projector: %s[%d]@%d dead-lettered: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    error,
                )
                continue
            inputs.append(_Input(event, tp, record.offset))
        return inputs, letters

    def _commit_offsets(self, records: list[ConsumerRecord]) -> dict[TopicPartition, int]:
        """Past each partition's last record, but not past a held ledger entry of it."""
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        for _, item in self.gaps.held():
            if item.partition in offsets:
                offsets[item.partition] = min(offsets[item.partition], item.offset)
        return offsets

    async def _project(self, inputs: list[_Input]) -> None:
        stats = self.stats
        order_inputs: dict[str, list[Message]] = defaultdict(list)
        ledger: dict[str, list[_Input]] = defaultdict(list)
        for item in inputs:
            event = item.event
            if isinstance(event, ORDER_EVENTS):
                order_inputs[event.order_id].append(event)  # type: ignore[attr-defined]
            elif isinstance(event, LEDGER_EVENTS):
                ledger[event.account_id].append(item)  # type: ignore[attr-defined]
            elif isinstance(event, RequestRefused) and event.command == "RequestOrder":
                order_inputs[event.order_id or event.request_id].append(event)
            else:
                stats.ignored += 1

        # Ledger entries in sequence: what applies now, per account.
        accounts = await self.store.find(ACCOUNTS, ledger)
        ready: dict[str, list[Message]] = {}
        for account_id, items in ledger.items():
            document = accounts.get(account_id)
            expected = 0 if document is None else int(document["sequence"]) + 1
            out = self.gaps.feed(account_id, expected, items)
            stats.duplicates += len(out.duplicates)
            stats.held_total += len(out.held)
            ready[account_id] = [item.event for item in out.ready]
            still_held = self.gaps.held_for(account_id)
            if out.held and still_held:
                log.warning(
                    "projector: ledger of account %s is missing entry %d; %d later entries held "
                    "until it arrives",
                    account_id,
                    expected + len(out.ready),
                    still_held,
                )
        settled = [e for events in ready.values() for e in events if isinstance(e, FillSettled)]
        for event in settled:
            order_inputs[event.order_id].append(event)

        # Read everything the batch touches.
        orders = await self.store.find(ORDERS, order_inputs)
        # Every position the batch names, applied already or not: the cache is written
        # through with them even when a replay finds nothing new to apply.
        position_ids = {
            position_id(item.event.account_id, item.event.symbol)  # type: ignore[attr-defined]
            for items in ledger.values()
            for item in items
            if isinstance(item.event, FillSettled | CustodyTransferredIn)
        }
        positions = await self.store.find(POSITIONS, position_ids) if position_ids else {}
        fees = await self._known_fees(orders, order_inputs, settled)

        # Fold.
        batch = _Orders(initial=orders, current={}, inputs=order_inputs)
        for order_id, events in order_inputs.items():
            document = orders.get(order_id)
            if document is None:
                stats.ignored += sum(1 for e in events if not isinstance(e, FillSettled))
                continue
            batch.current[order_id] = self._fold_order(document, events, fees, count=True)
        new_accounts: dict[str, Document] = {}
        new_positions: dict[str, Document] = {}
        for account_id, events in ready.items():
            document = accounts.get(account_id)
            for event in events:
                folded = fold_account(document, event)  # type: ignore[arg-type]
                if folded is None:
                    log.warning("projector: ledger entry %s has no account to apply to", event)
                    stats.ignored += 1
                    continue
                document = folded
                stats.applied += 1
                if isinstance(event, FillSettled | CustodyTransferredIn):
                    key = position_id(event.account_id, event.symbol)
                    moved = fold_position(new_positions.get(key, positions.get(key)), event)
                    if moved is not None:
                        new_positions[key] = moved
            if document is not None:
                new_accounts[account_id] = document

        # Write: fees first, orders, positions, then accounts (whose sequence marks entries as
        # applied).
        stashed = [
            e
            for e in settled
            if e.order_id in batch.current and not _has_fill(batch.current[e.order_id], e.trade_id)
        ]
        if stashed:
            await self.store.update(
                FILL_FEES,
                [
                    fee_stash_update(
                        fill_key(e.order_id, e.trade_id),
                        e.order_id,
                        e.trade_id,
                        format_decimal(e.fees),
                    )
                    for e in stashed
                ],
            )
        # The history first: its entries are folded from the documents as read, so they must be
        # written before the documents move on (a replay then finds them and adds nothing).
        history = [
            entry
            for order_id, events in order_inputs.items()
            if order_id in orders
            for entry in history_entries(orders[order_id], events)
        ]
        if history:
            await self.store.insert_new(ORDER_HISTORY, history)
        await self._write_orders(batch, fees)
        await self._attach_late_fees(batch, stashed, fees)
        if self.open_orders is not None and batch.current:
            await self.open_orders.write_through(batch.current.values())
        if new_positions:
            await self.store.update(
                POSITIONS, [sequenced_upsert(doc) for doc in new_positions.values()]
            )
        applied = [activity_document(e) for events in ready.values() for e in events]
        if applied:  # before the accounts, whose sequence says these entries are applied
            await self.store.insert_new(ACTIVITIES, applied)
        if new_accounts:
            await self.store.update(
                ACCOUNTS, [sequenced_upsert(doc) for doc in new_accounts.values()]
            )
        if self.cache is not None and ledger:
            await self.cache.write_through(
                {
                    account_id: new_accounts.get(account_id, accounts.get(account_id))
                    for account_id in ledger
                },
                {**positions, **new_positions}.values(),
            )

    # --- orders ------------------------------------------------------------------------------

    async def _known_fees(
        self,
        orders: Mapping[str, Document],
        inputs: Mapping[str, list[Message]],
        settled: list[FillSettled],
    ) -> dict[str, Decimal]:
        """Fees of the batch's fills, from this batch's settlements and earlier stashed ones."""
        fees = {fill_key(e.order_id, e.trade_id): e.fees for e in settled}
        wanted = [
            fill_key(order_id, e.trade_id)
            for order_id, events in inputs.items()
            if order_id in orders
            for e in events
            if isinstance(e, OrderPartiallyFilled | OrderFilled)
        ]
        missing = [key for key in wanted if key not in fees]
        if missing:
            for key, stash in (await self.store.find(FILL_FEES, missing)).items():
                fees[key] = Decimal(str(stash["fees"]))
        return fees

    def _fold_order(
        self,
        document: Document,
        inputs: list[Message],
        fees: Mapping[str, Decimal],
        *,
        count: bool,
    ) -> Document:
        stats = self.stats
        for event in inputs:
            if isinstance(event, FillSettled):
                new = attach_fees(document, event)
            elif isinstance(event, RequestRefused):
                new = fold_refusal(document, event)
            else:
                if count and order_event_is_duplicate(document, event):  # type: ignore[arg-type]
                    stats.duplicates += 1
                    continue
                trade_id = getattr(event, "trade_id", None)
                known = None if trade_id is None else fees.get(fill_key(document["_id"], trade_id))
                new = fold_order(document, event, known)  # type: ignore[arg-type]
            if count and not isinstance(event, FillSettled):
                if new is None:
                    stats.ignored += 1
                else:
                    stats.applied += 1
            if new is not None:
                document = new
        return document

    async def _write_orders(self, batch: _Orders, fees: Mapping[str, Decimal]) -> None:
        """Conditional updates; an order another writer changed meanwhile is read again and
        folded again from what it is now."""
        initial, current = batch.initial, batch.current
        pending = [order_id for order_id in current if current[order_id] != initial[order_id]]
        for _ in range(_MAX_CONFLICT_ROUNDS):
            states: list[Update] = []
            fee_updates: list[Update] = []
            for order_id in pending:
                state, fee_ops = order_updates(initial[order_id], current[order_id])
                if state is not None:
                    states.append(state)
                fee_updates.extend(fee_ops)
            if fee_updates:
                await self.store.update(ORDERS, fee_updates)
            if not states:
                return
            result = await self.store.update(ORDERS, states)
            if result.matched == len(states):
                return
            guarded = [s["q"]["_id"] for s in states]
            now = await self.store.find(ORDERS, guarded)
            pending = []
            for order_id in guarded:
                stored = now.get(order_id)
                if stored is None or _reached(stored, current[order_id]):
                    continue
                self.stats.conflicts += 1
                initial[order_id] = stored
                current[order_id] = self._fold_order(
                    stored, batch.inputs[order_id], fees, count=False
                )
                if current[order_id] != stored:
                    pending.append(order_id)
            if not pending:
                return
        log.error(
            "projector: orders %s kept changing under concurrent writers; their events will be "
            "applied again when the projector restarts",
            ", ".join(pending),
        )
        raise _ContendedError(pending)

    async def _attach_late_fees(
        self, batch: _Orders, stashed: list[FillSettled], fees: Mapping[str, Decimal]
    ) -> None:
        """Fills just pushed without fees whose settlement was stashed meanwhile, and stashed
        settlements whose fill was pushed meanwhile (another projector process)."""
        unknown = [
            fill_key(order_id, fill["executionId"])
            for order_id, document in batch.current.items()
            for fill in _new_fills(batch.initial[order_id], document)
            if fill.get("fees") is None
        ]
        found = {
            key: str(doc["fees"])
            for key, doc in (await self.store.find(FILL_FEES, unknown) if unknown else {}).items()
        }
        for event in stashed:
            found[fill_key(event.order_id, event.trade_id)] = format_decimal(event.fees)
        if not found:
            return
        order_ids = {key.rsplit("|", 1)[0] for key in found}
        updates: list[Update] = []
        for order_id, document in (await self.store.find(ORDERS, order_ids)).items():
            for index, fill in enumerate(document.get("fills") or []):
                value = found.get(fill_key(order_id, fill.get("executionId", "")))
                if value is not None and fill.get("fees") is None:
                    updates.append(fee_update(order_id, index, fill["executionId"], value))
        if updates:
            await self.store.update(ORDERS, updates)


class _ContendedError(Exception):
    """Orders that kept changing under another writer: the batch is retried."""


def _new_fills(initial: Document, final: Document) -> list[Document]:
    return (final.get("fills") or [])[len(initial.get("fills") or []) :]


def _has_fill(document: Document, trade_id: str) -> bool:
    return any(f.get("executionId") == trade_id for f in document.get("fills") or [])


def _reached(stored: Document, target: Document) -> bool:
    """Whether the stored order is at (or past) the folded one."""
    stored_sequence = int(stored.get("lastSequence", -1))
    target_sequence = int(target.get("lastSequence", -1))
    if stored_sequence != target_sequence:
        return stored_sequence > target_sequence
    ids = {f.get("executionId") for f in stored.get("fills") or []}
    return stored.get("status") == target.get("status") and all(
        f.get("executionId") in ids for f in target.get("fills") or []
    )


# --- the service -------------------------------------------------------------------------------


async def _apply_until_written(
    projector: Projector, records: list[ConsumerRecord], settings: Settings, stop: asyncio.Event
) -> tuple[list[DeadLetter], dict[TopicPartition, int]] | None:
    """Apply a batch, waiting out a MongoDB outage; None if stopped before it was written."""
    delay = 1.0
    while True:
        try:
            return await projector.apply(records)
        except (PyMongoError, OSError, _ContendedError) as exc:
            log.warning(
                "projector: could not write the read models to MongoDB at %s (%s); retrying in "
                "%.0f s (start the local stack with `brokerflow stack up`, or set MONGO_URL)",
                settings.mongo_url,
                exc,
                delay,
            )
        except RedisError as exc:
            log.warning(
                "projector: could not write the portfolio cache to Redis at %s (%s); retrying "
                "in %.0f s (start the local stack with `brokerflow stack up`, or set REDIS_URL)",
                settings.redis_url,
                exc,
                delay,
            )
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return None
        except TimeoutError:
            delay = min(delay * 2, _RETRY_MAX_S)


async def run_projector(
    settings: Settings, stop_event: asyncio.Event, *, stats: ProjectorStats | None = None
) -> ProjectorStats:
    """Project until ``stop_event`` is set; return the counters.

    Creates the input topics and the indexes when missing. Cancelling the task is a crash as
    far as the read models go: nothing uncommitted is lost, the next run re-reads it."""
    topics = catalog(settings)
    try:
        await ensure_topics(
            settings,
            [topics.order_events, topics.ledger_events, topics.account_events, topics.dead_letters],
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnavailableError(settings.kafka_bootstrap_servers, exc) from exc
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
    cache = PortfolioCache(redis, settings.api_redis_prefix, settings.api_cache_ttl_s)
    open_orders = OpenOrdersCache(redis, settings.api_redis_prefix, settings.api_cache_ttl_s)
    try:
        store = ReadModelStore(mongo[settings.mongo_database])
        try:
            await store.ensure_indexes()
        except PyMongoError as exc:
            raise StackError(
                f"MongoDB at {settings.mongo_url} did not answer ({str(exc)[:120]}); start the "
                "local stack with `brokerflow stack up`, or set MONGO_URL to a reachable server"
            ) from exc
        projector = Projector(settings, store, stats, cache, open_orders)
        async with (
            consumer(settings, group_id=settings.projections_group_id) as reader,
            producer(settings, enable_idempotence=True, acks="all") as letters_out,
        ):
            reader.subscribe(projector.input_topics, listener=projector.listener)
            log.info(
                "projector: %s -> MongoDB %s (group %s)",
                ", ".join(projector.input_topics),
                settings.mongo_database,
                settings.projections_group_id,
            )
            await _consume(projector, reader, letters_out, settings, stop_event)
        return projector.stats
    finally:
        await mongo.close()
        await redis.aclose()


async def _consume(
    projector: Projector,
    reader: Any,
    letters_out: Any,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    stats = projector.stats
    last_log = time.monotonic()
    logged = stats.as_dict()
    while not stop.is_set():
        fetched = await reader.getmany(timeout_ms=500, max_records=settings.projections_batch_max)
        records = [record for batch in fetched.values() for record in batch]
        if records:
            outcome = await _apply_until_written(projector, records, settings, stop)
            if outcome is None:
                return
            letters, offsets = outcome
            if letters:
                await publish(
                    letters_out,
                    projector.dead_letters_topic,
                    [(letter.source, letter) for letter in letters],
                )
            try:
                await reader.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions: their new reader re-reads from the last
                # commit, and what this batch wrote is filtered out as already applied.
                log.warning("projector: offsets not committed (%s); they will be re-read", exc)
        now = time.monotonic()
        if now - last_log >= _LOG_EVERY_S and stats.as_dict() != logged:
            logged, last_log = stats.as_dict(), now
            log.info(
                "projector: %d records, %d applied, %d duplicates skipped, %d ignored, "
                "%d held for gaps, %d dead letters",
                stats.records,
                stats.applied,
                stats.duplicates,
                stats.ignored,
                stats.gaps_held,
                stats.dead_letters,
            )
