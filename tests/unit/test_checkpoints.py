"""Local checkpoints on a real RocksDB store: present exactly while the store equals the
committed changelog up to their offset."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rocksdict import Options, Rdict, WriteBatch

from brokerflow.agents.checkpoints import (
    CHECKPOINT_KEY,
    FAUST_OFFSET_KEY,
    Checkpoint,
    Checkpoints,
    read_checkpoint,
    record_digest,
    visible_items,
)

CHANGELOG = "app-orders-changelog"
LAST = record_digest(b"k", b"v")


class RawStore:
    """The part of Faust's RocksDB store the checkpoints use: a raw-mode db per partition."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dbs: dict[int, Rdict] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(
                str(self.path / f"p{partition}"), options=Options(raw_mode=True)
            )
        return self.dbs[partition]


@pytest.fixture
def rocks(tmp_path: Path) -> Iterator[RawStore]:
    opened = RawStore(tmp_path)
    yield opened
    for db in opened.dbs.values():
        db.close()


def step_write(
    checkpoints: Checkpoints, store: RawStore, partition: int, items: dict[bytes, bytes]
) -> None:
    batch = WriteBatch(raw_mode=True)
    checkpoints.on_write(store, CHANGELOG, partition, batch)
    for key, value in items.items():
        batch.put(key, value)
    store._db_for_partition(partition).write(batch)


def acked(base_offset: int) -> Future[Any]:
    """A producer batch's future once the broker acknowledged it at ``base_offset``."""
    future: Future[Any] = Future()
    future.set_result(SimpleNamespace(offset=base_offset))
    return future


def test_the_first_write_after_a_checkpoint_removes_it_in_the_same_batch(rocks: RawStore) -> None:
    checkpoints = Checkpoints()
    checkpoints.mark(rocks, CHANGELOG, 0, 42, (41, LAST), now=1000.0)
    db = rocks._db_for_partition(0)
    assert read_checkpoint(db) == Checkpoint(CHANGELOG, 42, 1000.0, (41, LAST))
    assert db.get(FAUST_OFFSET_KEY) == b"41"  # Faust's recovery continues at 42 too

    step_write(checkpoints, rocks, 0, {b"k": b"v"})
    assert read_checkpoint(db) is None
    assert dict(visible_items(db)) == {b"k": b"v"}


def test_a_store_this_process_never_checkpointed_loses_any_old_checkpoint_on_write(
    rocks: RawStore,
) -> None:
    Checkpoints().mark(
        rocks, CHANGELOG, 0, 7, (6, LAST), now=1000.0
    )  # an earlier process's checkpoint
    fresh = Checkpoints()
    step_write(fresh, rocks, 0, {b"k": b"v"})
    assert read_checkpoint(rocks._db_for_partition(0)) is None


def test_a_commit_checkpoints_only_settled_partitions_at_the_end_of_their_records(
    rocks: RawStore,
) -> None:
    checkpoints = Checkpoints()
    for partition in (0, 1):
        checkpoints.mark(rocks, CHANGELOG, partition, 0, None, now=1000.0)
        step_write(checkpoints, rocks, partition, {b"k": b"v"})
    # Partition 0's batch of 3 records landed at offsets 10..12; partition 1's is not acked yet.
    checkpoints.on_send(CHANGELOG, 0, acked(10), 3, (b"k", b"v"))
    pending: Future[Any] = Future()
    checkpoints.on_send(CHANGELOG, 1, pending, 2, (b"k", b"v"))

    checkpoints.write({(CHANGELOG, 0), (CHANGELOG, 1)})
    checkpoint = read_checkpoint(rocks._db_for_partition(0))
    assert checkpoint is not None
    assert checkpoint.end_offset == 13
    assert checkpoint.last_record == (12, record_digest(b"k", b"v"))
    # Faust's recovery is told the commit marker (offset 13) was read: it never waits for it.
    assert rocks._db_for_partition(0).get(FAUST_OFFSET_KEY) == b"13"
    assert read_checkpoint(rocks._db_for_partition(1)) is None

    # A partition with uncommitted records is not settled: no checkpoint even once acked.
    pending.set_result(SimpleNamespace(offset=20))
    checkpoints.write({(CHANGELOG, 0)})
    assert read_checkpoint(rocks._db_for_partition(1)) is None
    checkpoints.write({(CHANGELOG, 1)})
    checkpoint = read_checkpoint(rocks._db_for_partition(1))
    assert checkpoint is not None
    assert checkpoint.end_offset == 22


def test_a_failed_send_never_becomes_a_checkpoint(rocks: RawStore) -> None:
    checkpoints = Checkpoints()
    step_write(checkpoints, rocks, 0, {b"k": b"v"})
    failed: Future[Any] = Future()
    failed.set_exception(RuntimeError("fenced"))
    checkpoints.on_send(CHANGELOG, 0, failed, 1, (b"k", b"v"))
    checkpoints.write(None)
    assert read_checkpoint(rocks._db_for_partition(0)) is None


@pytest.mark.parametrize(
    ("checkpoint", "log_start", "stable_end", "now", "reason"),
    [
        (Checkpoint(CHANGELOG, 50, 1000.0, (49, LAST)), 0, 80, 1100.0, None),
        (
            Checkpoint(CHANGELOG, 80, 1000.0, (79, LAST)),
            0,
            80,
            1100.0,
            None,
        ),  # nothing written since
        (Checkpoint(CHANGELOG, 90, 1000.0, (89, LAST)), 0, 80, 1100.0, "recreated or truncated"),
        (Checkpoint(CHANGELOG, 50, 1000.0, (49, LAST)), 60, 80, 1100.0, "recreated or truncated"),
        (
            Checkpoint(CHANGELOG, 50, 1000.0, (49, LAST)),
            0,
            80,
            1000.0 + 3601,
            "over EXCHANGE_CHECKPOINT",
        ),
        (
            Checkpoint("other-changelog", 50, 1000.0, (49, LAST)),
            0,
            80,
            1100.0,
            "is of other-changelog",
        ),
    ],
)
def test_a_checkpoint_is_used_only_while_the_changelog_still_holds_its_tail(
    checkpoint: Checkpoint, log_start: int, stable_end: int, now: float, reason: str | None
) -> None:
    why = checkpoint.unusable_because(CHANGELOG, log_start, stable_end, now, max_age_s=3600)
    if reason is None:
        assert why is None
    else:
        assert why is not None
        assert reason in why


def test_a_checkpoint_this_version_cannot_read_is_ignored() -> None:
    assert Checkpoint.from_bytes(b"not json") is None
    assert Checkpoint.from_bytes(b'{"endOffset": 3}') is None
    checkpoint = Checkpoint(CHANGELOG, 3, 1.5, (2, LAST))
    assert Checkpoint.from_bytes(checkpoint.to_bytes()) == checkpoint
    assert CHECKPOINT_KEY != FAUST_OFFSET_KEY


def test_a_write_whose_records_were_never_sent_is_not_covered_by_an_earlier_ack(
    rocks: RawStore,
) -> None:
    checkpoints = Checkpoints()
    step_write(checkpoints, rocks, 0, {b"k": b"v1"})
    checkpoints.on_send(CHANGELOG, 0, acked(10), 1, (b"k", b"v1"))
    step_write(checkpoints, rocks, 0, {b"k": b"v2"})  # its send failed: nothing was queued
    checkpoints.write(None)
    assert read_checkpoint(rocks._db_for_partition(0)) is None


@pytest.mark.parametrize(
    ("last_record", "end_offset", "found", "reason"),
    [
        ((41, LAST), 42, (b"k", b"v"), None),
        ((41, LAST), 42, (b"k", b"other"), "not the one it saw"),
        ((41, LAST), 42, (b"k", None), "not the one it saw"),  # a tombstone there now
        ((41, LAST), 42, None, "no record at offset 41"),
        (None, 0, None, None),  # it saw nothing: the tail is the whole changelog
        (None, 5, None, "no record to check the log by"),
    ],
)
def test_a_checkpoint_is_used_only_on_the_log_it_was_written_on(
    last_record: tuple[int, str] | None,
    end_offset: int,
    found: tuple[bytes | None, bytes | None] | None,
    reason: str | None,
) -> None:
    """A changelog deleted and created again under the same name, even grown past the
    checkpoint's offset, holds other records there."""
    why = Checkpoint(CHANGELOG, end_offset, 1000.0, last_record).last_record_differs(found)
    if reason is None:
        assert why is None
    else:
        assert why is not None
        assert reason in why


def test_record_digests_tell_keys_values_and_tombstones_apart() -> None:
    digests = {
        record_digest(key, value)
        for key, value in [
            (b"k", b"v"),
            (b"k", None),
            (None, b"v"),
            (b"kv", b""),
            (b"k", b"v "),
            (b"", b"kv"),
        ]
    }
    assert len(digests) == 6
