"""Local checkpoints: a restart or a rebalance reads only the changelog written since.

A table partition's RocksDB store is written when a step ends, before its transaction commits, so
in general it cannot be trusted: the transaction may still abort. Right after a commit it can be:
it then holds exactly the committed changelog up to the offset after the last record written.
That moment is recorded as a checkpoint key in the partition's own store (beside Faust's offset
key), and the first write after it deletes the key in the same RocksDB ``WriteBatch`` as the
write. So the key is there only while the store still equals the committed changelog up to its
offset, whatever happens next (a clean stop, a rebalance, a ``kill -9``).

A restore then reads the changelog from the checkpoint's offset (the tail) instead of from the
start, and applies it to the store: replaying the tail in order over any state that already
includes the changelog before the tail gives the same latest value per key as the whole replay.
A checkpoint is not used when the changelog no longer holds its offset, or no longer holds the
record the store saw last at the offset before it (a digest of its key and value: a topic
deleted and created again under the same name, even grown past the offset, is a different log),
or when it is older than ``EXCHANGE_CHECKPOINT_MAX_AGE_S``: after the topic's
``delete.retention.ms`` compaction may have dropped a tombstone written after it.

Kafka Streams does the same with its ``.checkpoint`` file, written on a clean close and at
commits; the key inside the store makes the "no write since" rule atomic without a file sync.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rocksdict import WriteBatch

__all__ = [
    "CHECKPOINT_KEY",
    "FAUST_OFFSET_KEY",
    "Checkpoint",
    "Checkpoints",
    "checkpoints",
    "last_record_of",
    "read_checkpoint",
    "record_digest",
    "visible_items",
]

#: The checkpoint's key in each table partition's store; never in the changelog.
CHECKPOINT_KEY = b"__brokerflow\0checkpoint__"
#: Faust's own key in the same store: the changelog offset its recovery continues after.
FAUST_OFFSET_KEY = b"__faust\0offset__"
_LOCAL_KEYS = frozenset((CHECKPOINT_KEY, FAUST_OFFSET_KEY))


def record_digest(key: bytes | None, value: bytes | None) -> str:
    """What identifies a changelog record: its key and value (``None``: a tombstone)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (key, value):
        if part is None:
            digest.update(b"\xff")
        else:
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


#: (offset, :func:`record_digest`) of a changelog's last record below a checkpoint.
LastRecord = tuple[int, str]


def last_record_of(record: tuple[int, bytes | None, bytes | None] | None) -> LastRecord | None:
    """The :data:`LastRecord` of an (offset, key, value) record read from a changelog."""
    return None if record is None else (record[0], record_digest(record[1], record[2]))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The store holds exactly the committed records of ``changelog`` below ``end_offset``, the
    last of them ``last_record`` (``None``: there were none)."""

    changelog: str
    end_offset: int
    #: Unix time the checkpoint was written.
    written_at: float
    last_record: LastRecord | None

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "changelog": self.changelog,
                "endOffset": self.end_offset,
                "at": self.written_at,
                "lastRecord": None if self.last_record is None else list(self.last_record),
            }
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Checkpoint | None:
        """``None`` for anything this version did not write (then the restore reads it all)."""
        try:
            fields = json.loads(raw)
            last = fields["lastRecord"]
            return cls(
                str(fields["changelog"]),
                int(fields["endOffset"]),
                float(fields["at"]),
                None if last is None else (int(last[0]), str(last[1])),
            )
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    def unusable_because(
        self, changelog: str, log_start: int, stable_end: int, now: float, max_age_s: float
    ) -> str | None:
        """Why the restore must read the whole changelog instead, or ``None``: usable."""
        if self.changelog != changelog:
            return f"it is of {self.changelog}"
        if not log_start <= self.end_offset <= stable_end:
            return (
                f"offset {self.end_offset} is outside the changelog's {log_start}..{stable_end} "
                "(the topic was recreated or truncated)"
            )
        if now - self.written_at > max_age_s:
            return (
                f"it is {now - self.written_at:.0f} s old, over EXCHANGE_CHECKPOINT_MAX_AGE_S "
                "(compaction may have dropped tombstones since)"
            )
        return None

    def last_record_differs(self, found: tuple[bytes | None, bytes | None] | None) -> str | None:
        """Why the record the changelog holds at ``last_record``'s offset (``found``: its key
        and value, ``None``: no record there) makes the checkpoint unusable, or ``None``."""
        if self.last_record is None:
            # It saw no record: its tail is the whole changelog, unless it ended past records
            # it cannot vouch for (only markers or aborted ones: reading it all is cheap).
            return None if self.end_offset == 0 else "it saw no record to check the log by"
        offset, digest = self.last_record
        if found is None:
            return f"the changelog has no record at offset {offset} (compacted, or recreated)"
        if record_digest(*found) != digest:
            return f"the record at offset {offset} is not the one it saw (the topic was recreated)"
        return None


def read_checkpoint(db: Any) -> Checkpoint | None:
    raw = db.get(CHECKPOINT_KEY)
    return None if raw is None else Checkpoint.from_bytes(raw)


def visible_items(db: Any) -> Iterator[tuple[bytes, bytes]]:
    """A partition store's table items: without the checkpoint and Faust's offset key."""
    for key, value in db.items():
        if key not in _LOCAL_KEYS:
            yield key, value


class Checkpoints:
    """Which table partitions were written since their checkpoint, and where their changelog
    records end.

    Fed by the write path (:meth:`on_write`, :meth:`on_send`), by the commit guard
    (:meth:`write`) and by the restore (:meth:`mark`), all under the step lock.
    """

    def __init__(self) -> None:
        #: (changelog, partition) -> (store, the latest batch's future, its record count, the
        #: digest of its last record) for partitions written since their checkpoint (or since
        #: this process began tracking them).
        self.dirty: dict[tuple[str, int], tuple[Any, asyncio.Future[Any] | None, int, str]] = {}

    def on_write(self, store: Any, changelog: str, partition: int, batch: WriteBatch) -> None:
        """A step writes this partition's store: the first write after a checkpoint deletes it
        in the same batch (also when this process never saw one: deleting is cheap, a stale
        checkpoint is not)."""
        tp = (changelog, partition)
        if tp not in self.dirty:
            batch.delete(CHECKPOINT_KEY)
        # The end is where this write's changelog records land, once sent (if they never are,
        # the store holds what no changelog does: no checkpoint until a restore).
        self.dirty[tp] = (store, None, 0, "")

    def on_send(
        self,
        changelog: str,
        partition: int,
        future: asyncio.Future[Any],
        count: int,
        last: tuple[bytes | None, bytes | None],
    ) -> None:
        """A batch of ``count`` changelog records went to the producer (in partition order),
        ``last`` (key, value) the last of them."""
        entry = self.dirty.get((changelog, partition))
        if entry is not None:
            self.dirty[(changelog, partition)] = (entry[0], future, count, record_digest(*last))

    def write(self, committed: set[tuple[str, int]] | None = None) -> None:
        """After a commit: checkpoint the written stores whose transactions hold no uncommitted
        record now (``committed``: those (changelog, partition); ``None``: all) and whose
        changelog records were all acknowledged."""
        now = time.time()
        for tp, (store, future, count, digest) in list(self.dirty.items()):
            if committed is not None and tp not in committed:
                continue
            if future is None or not future.done():
                continue
            if future.cancelled() or future.exception() is not None:
                continue  # the transaction cannot have committed it; a rebuild follows
            end = future.result().offset + count
            # The commit marker follows the last record: Faust's recovery, which waits for an
            # offset it is told to read, must not wait for the marker (it never arrives as a
            # record). The restore itself still reads from the record after the last one.
            self.mark(store, tp[0], tp[1], end, (end - 1, digest), now, faust_read_through=end)

    def mark(
        self,
        store: Any,
        changelog: str,
        partition: int,
        end_offset: int,
        last_record: LastRecord | None,
        now: float,
        *,
        faust_read_through: int | None = None,
    ) -> None:
        """Record that the partition's store holds the committed changelog below
        ``end_offset``, the last of it ``last_record``; Faust's own recovery continues after
        ``faust_read_through`` (default: the offset before ``end_offset``)."""
        batch = WriteBatch(raw_mode=True)
        checkpoint = Checkpoint(changelog, end_offset, now, last_record)
        batch.put(CHECKPOINT_KEY, checkpoint.to_bytes())
        read_through = end_offset - 1 if faust_read_through is None else faust_read_through
        if read_through >= 0:
            batch.put(FAUST_OFFSET_KEY, str(read_through).encode())
        store._db_for_partition(partition).write(batch)
        self.dirty.pop((changelog, partition), None)

    def forget(self, revoked: set[tuple[str, int]]) -> None:
        """Stop tracking revoked changelog partitions (their stores keep their checkpoints)."""
        for tp in revoked:
            self.dirty.pop(tp, None)


#: The process's checkpoint bookkeeping (one app, one set of tables).
checkpoints = Checkpoints()
