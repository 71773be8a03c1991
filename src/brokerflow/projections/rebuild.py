"""``brokerflow projections rebuild``: the read models again from offset 0, swapped in live.

The event log is the truth and the read models a fold of it, so they can always be thrown away and
made again, while the API and the projector keep running:

1. **Snapshot** the end offsets of the event topics (H), then of ``account-commands-v1`` (E),
   in that order: an order placed after E has every event at or after H.
2. **Orders**: read ``account-commands-v1`` up to E into fresh collections named
   ``rebuild_<stamp>_<name>``. ``OpenAccount`` says whose an account is, ``RequestOrder`` makes the
   PENDING order the API would have written (:func:`~brokerflow.projections.folds.
   new_order_document`).
3. **Events**: a :class:`~brokerflow.projections.projector.Projector` of its own, on the fresh
   collections, folds ``order-events-v1``, ``ledger-events-v1`` and ``account-events-v1`` from 0 to
   their ends at that moment.
4. **Swap**: each live collection is renamed to ``<name>_before_<stamp>`` and its rebuilt twin to
   ``<name>`` (two renames: readers may find a collection empty for the instant between them).
   The portfolio cache is emptied: it may hold what the old read models said at a sequence the
   rebuilt ones also reach.
5. **Catch up**: what arrived meanwhile is applied to the live collections, with the same
   sequence guards that let two projectors share them: requests after E, orders the API wrote
   that never reached Kafka (copied from the old collection), and every event from H on.

The running projector writes into the rebuilt collections from the swap on (it addresses them by
name). An entry it applied to the old ones just before the swap is at an offset below the end step
5 reads to, so the rebuild applies it to the new ones too; one it holds back as early because the
rebuilt account was one entry behind is applied with the next entry of that account.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from brokerflow.errors import BrokerflowError, SchemaError
from brokerflow.kafka_io import consumer
from brokerflow.projections.folds import (
    ORDERS,
    PROJECTION_COLLECTIONS,
    Document,
    new_order_document,
)
from brokerflow.projections.projector import Projector, ProjectorStats
from brokerflow.projections.store import ReadModelStore
from brokerflow.schemas import decode
from brokerflow.schemas.accounts import OpenAccount, RequestOrder
from brokerflow.settings import Settings
from brokerflow.topics import catalog

__all__ = ["RebuildReport", "rebuild_read_models"]

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]

_BATCH = 2000
_DUPLICATE_KEY = 11000
#: Give up on reaching an end offset after this long without progress (a stuck transaction).
_STALL_S = 30.0


class RebuildError(BrokerflowError):
    """The rebuild could not finish; the live read models are untouched unless it says so."""


@dataclass
class RebuildReport:
    """What a rebuild did and how long each step took (seconds)."""

    stamp: str
    commands: int = 0
    orders_created: int = 0
    events: int = 0
    caught_up_events: int = 0
    orders_copied: int = 0
    swapped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    cache_keys_dropped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    stats: ProjectorStats = field(default_factory=ProjectorStats)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    def lines(self) -> list[str]:
        s = self.seconds
        rate = self.events / s["events"] if s.get("events") else 0.0
        return [
            f"orders:   {self.orders_created} PENDING orders from {self.commands} account "
            f"commands in {s.get('orders', 0):.2f} s",
            f"events:   {self.events} events folded in {s.get('events', 0):.2f} s "
            f"({rate:,.0f} events/s; {self.stats.applied} applied, "
            f"{self.stats.ignored} with nothing to project)",
            f"swap:     {', '.join(self.swapped) or '-'} in {s.get('swap', 0):.2f} s; "
            f"{self.cache_keys_dropped} cached portfolios dropped",
            f"catch-up: {self.caught_up_events} events, {self.orders_copied} orders copied from "
            f"the old collection, in {s.get('catch_up', 0):.2f} s",
            f"total:    {self.total_s:.2f} s",
            "kept:     "
            + (", ".join(self.kept) or "-")
            + ("  (drop them when satisfied)" if self.kept else ""),
        ]


async def _partitions(reader: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    found: list[TopicPartition] = []
    for topic in topics:
        partitions = reader.partitions_for_topic(topic)
        if partitions is None:
            await reader._client.force_metadata_update()
            partitions = reader.partitions_for_topic(topic) or set()
        found.extend(TopicPartition(topic, p) for p in sorted(partitions))
    return found


async def _ends(settings: Settings, topics: Sequence[str]) -> Offsets:
    async with consumer(settings) as reader:
        partitions = await _partitions(reader, topics)
        if not partitions:
            return {}
        ends = await reader.end_offsets(partitions)
        return {tp: int(offset) for tp, offset in ends.items()}


async def _read(
    settings: Settings, start: Mapping[TopicPartition, int], end: Mapping[TopicPartition, int]
) -> AsyncIterator[list[ConsumerRecord]]:
    """Batches of the committed records from ``start`` (0 where absent) up to ``end``."""
    wanted = [tp for tp, offset in end.items() if offset > start.get(tp, 0)]
    if not wanted:
        return
    async with consumer(settings) as reader:
        reader.assign(wanted)
        for tp in wanted:
            reader.seek(tp, start.get(tp, 0))
        last_progress = time.monotonic()
        while True:
            positions = {tp: await reader.position(tp) for tp in wanted}
            open_ = [tp for tp in wanted if positions[tp] < end[tp]]
            if not open_:
                return
            fetched = await reader.getmany(*open_, timeout_ms=500, max_records=_BATCH)
            records = [r for tp, batch in fetched.items() for r in batch if r.offset < end[tp]]
            if records:
                last_progress = time.monotonic()
                yield records
            elif time.monotonic() - last_progress > _STALL_S:
                stuck = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in open_)
                raise RebuildError(
                    f"no progress towards the end of {stuck} for {_STALL_S:.0f} s (an open "
                    "transaction?); nothing was swapped"
                )


async def _insert_missing(store: ReadModelStore, documents: list[Document]) -> int:
    """Insert the orders that are not there yet (the API, or an earlier pass, wrote the others);
    return how many were new.

    Plain inserts, unordered, duplicates ignored: an upsert with ``$setOnInsert`` loses the
    empty ``fills`` array on FerretDB 1.24."""
    inserted = 0
    for first in range(0, len(documents), _BATCH):
        chunk = documents[first : first + _BATCH]
        answer = await store.db.command(
            {"insert": store.prefix + ORDERS, "documents": chunk, "ordered": False}
        )
        inserted += int(answer.get("n", 0))
        for error in answer.get("writeErrors") or []:
            if error.get("code") != _DUPLICATE_KEY:
                raise RebuildError(f"MongoDB refused an order insert: {error.get('errmsg')}")
    return inserted


async def _orders_from_commands(
    settings: Settings,
    store: ReadModelStore,
    start: Offsets,
    end: Offsets,
    owners: dict[str, str],
    report: RebuildReport,
) -> None:
    async for records in _read(settings, start, end):
        documents: list[Document] = []
        for record in records:
            report.commands += 1
            try:
                command = decode(record.value or b"")
            except SchemaError:
                continue  # the accounts agent dead-lettered it when it came
            if isinstance(command, OpenAccount):
                owners[command.account_id] = command.user_id
            elif isinstance(command, RequestOrder):
                user_id = owners.get(command.account_id)
                if user_id is None:  # the agent refuses a request of an unopened account
                    continue
                documents.append(new_order_document(command, user_id))
        if documents:
            report.orders_created += await _insert_missing(store, documents)


async def _fold_events(
    settings: Settings,
    projector: Projector,
    start: Offsets,
    end: Offsets,
    count: Callable[[int], None],
) -> None:
    async for records in _read(settings, start, end):
        await projector.apply(records)  # dead letters were published when the records came
        count(len(records))


async def _drop_cached_portfolios(settings: Settings) -> int:
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
    dropped = 0
    try:
        async for key in redis.scan_iter(match=f"{settings.api_redis_prefix}portfolio:*"):
            dropped += int(await redis.delete(key))
    finally:
        await redis.aclose()
    return dropped


async def _copy_missing_orders(
    db: AsyncDatabase[dict[str, Any]], old: str, store: ReadModelStore
) -> int:
    """Orders the API wrote that no request on Kafka accounts for (a publish that failed)."""
    if old not in await db.list_collection_names():
        return 0
    copied = 0
    batch: list[Document] = []
    async for document in db[old].find({"lastSequence": -1}):
        batch.append(document)
        if len(batch) >= _BATCH:
            copied += await _insert_missing(store, batch)
            batch = []
    if batch:
        copied += await _insert_missing(store, batch)
    return copied


async def rebuild_read_models(
    settings: Settings, *, progress: Callable[[str], None] = print
) -> RebuildReport:
    """Rebuild every read model from offset 0 and swap it in; see the module docstring."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    report = RebuildReport(stamp=stamp)
    prefix = f"rebuild_{stamp}_"
    topics = catalog(settings)
    event_topics = [topics.order_events.name, topics.ledger_events.name, topics.account_events.name]
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    try:
        db = mongo[settings.mongo_database]
        fresh = ReadModelStore(db, prefix=prefix)
        await fresh.ensure_indexes()

        started = time.monotonic()
        events_end = await _ends(settings, event_topics)
        commands_end = await _ends(settings, [topics.account_commands.name])
        owners: dict[str, str] = {}
        progress(f"rebuilding the read models of {settings.mongo_database} into {prefix}*")
        await _orders_from_commands(settings, fresh, {}, commands_end, owners, report)
        report.seconds["orders"] = time.monotonic() - started

        started = time.monotonic()
        projector = Projector(settings, fresh, report.stats)

        def counted(n: int) -> None:
            report.events += n

        await _fold_events(settings, projector, {}, await _ends(settings, event_topics), counted)
        report.seconds["events"] = time.monotonic() - started

        started = time.monotonic()
        existing = set(await db.list_collection_names())
        for name in PROJECTION_COLLECTIONS:  # empty ones too: the old contents must go
            if prefix + name not in existing:
                await db.create_collection(prefix + name)
        for name in PROJECTION_COLLECTIONS:
            if name in existing:
                await db[name].rename(f"{name}_before_{stamp}")
                report.kept.append(f"{name}_before_{stamp}")
            await db[prefix + name].rename(name)
            report.swapped.append(name)
        report.cache_keys_dropped = await _drop_cached_portfolios(settings)
        report.seconds["swap"] = time.monotonic() - started

        started = time.monotonic()
        live_store = ReadModelStore(db)
        await _orders_from_commands(
            settings,
            live_store,
            commands_end,
            await _ends(settings, [topics.account_commands.name]),
            owners,
            report,
        )
        report.orders_copied = await _copy_missing_orders(
            db, f"{ORDERS}_before_{stamp}", live_store
        )
        catch_up = Projector(settings, live_store, ProjectorStats())

        def caught(n: int) -> None:
            report.caught_up_events += n

        await _fold_events(
            settings, catch_up, events_end, await _ends(settings, event_topics), caught
        )
        report.seconds["catch_up"] = time.monotonic() - started
        return report
    finally:
        await mongo.close()
