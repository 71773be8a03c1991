"""The transaction plumbing the exchange agent is built on (design: :mod:`.match_orders`).

Everything an input record causes (output records, table changes, the input's next offset) is
produced by the transactional producer of the record's *source* partition, under
:data:`step_lock`, which every commit also holds: a transaction never holds half a step. Faust
names that producer ``{app id}-{topic group}-{partition}``; the command topic and the market-data
topics are co-partitioned, so partition N of each shares one transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from faust.types import EventT
from rocksdict import WriteBatch

from brokerflow.app import app
from brokerflow.exchange.io import PartitionSnapshot

__all__ = [
    "InputRecord",
    "Source",
    "TableWrites",
    "replace_store_partition",
    "send_in_transaction",
    "step_lock",
    "transactional_id_for",
    "write_table",
]

#: Held while input records are processed, and by every commit.
step_lock = asyncio.Lock()


class Source(Protocol):
    """The input partition whose transaction a write belongs to (an :class:`InputRecord`, or a
    ``TopicPartition`` for writes a timer makes)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


@dataclass(frozen=True, slots=True)
class InputRecord:
    """An input record, delivered by Faust or read by the agent to fill a gap."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @classmethod
    def of(cls, event: EventT) -> InputRecord:
        message = event.message
        return cls(message.topic, message.partition, message.offset, message.key, message.value)


class TableWrites:
    """A batch's table writes, last value per key: written once, when the batch ends.

    The changelog is compacted and the restore keeps the latest value per key, so writing only a
    batch's final values gives the same tables with fewer records; the whole batch is processed
    and flushed under the step lock, so a commit never splits it.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int, bytes], tuple[Any, Source, bytes]] = {}

    def set(self, source: Source, table: Any, key: bytes, value: bytes) -> None:
        self.pending[(table.name, source.partition, key)] = (table, source, value)

    async def flush(self) -> None:
        for (_, _, key), (table, source, value) in self.pending.items():
            await write_table(source, table, key, value)
        self.pending.clear()


def transactional_id_for(source: Source) -> str:
    """The transactional producer whose transaction commits this source's offset (Faust's
    naming: ``{app id}-{topic group}-{partition}``)."""
    return f"{app.conf.id}-{app.assignor.group_for_topic(source.topic)}-{source.partition}"


async def send_in_transaction(source: Source, topic: str, key: bytes | None, value: bytes) -> None:
    """Produce inside the source partition's transaction (not ``Topic.send``, which picks the
    destination partition's producer: faust issue 177)."""
    await app.producer.send(
        topic, key, value, None, None, None, transactional_id=transactional_id_for(source)
    )


async def write_table(source: Source, table: Any, key: bytes, value: bytes) -> None:
    """Set a table key: the local RocksDB store, and its changelog record in the transaction.

    Not ``table[key] = value``: that queues the changelog record in Faust's producer buffer,
    whose ``flush()`` returns once the record left the queue, possibly before it reached the
    transactional producer, so a commit can slip in between and the record lands in the next
    transaction (lost with it after a ``kill -9``, while the offset is committed).
    """
    store = table.data
    store._db_for_partition(source.partition).put(key, value)
    store._key_index[key] = source.partition
    await app.producer.send(
        table.changelog_topic.get_topic_name(),
        key,
        value,
        source.partition,
        None,
        None,
        transactional_id=transactional_id_for(source),
    )


def replace_store_partition(
    table: Any, changelog: str, partition: int, snapshot: PartitionSnapshot
) -> None:
    """Make one RocksDB partition of ``table`` hold exactly its committed changelog."""
    store = table.data
    db = store._db_for_partition(partition)
    batch = WriteBatch(raw_mode=True)
    for key in db.keys():  # noqa: SIM118 - iterating an Rdict in raw mode raises
        batch.delete(key)
    for key, value in snapshot.values.items():
        batch.put(key, value)
    db.write(batch)
    store._key_index.clear()
    if snapshot.end_offset > 0:
        # Faust's own recovery then has nothing left to read for this partition.
        store.set_persisted_offset(TopicPartition(changelog, partition), snapshot.end_offset - 1)
