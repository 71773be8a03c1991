"""Where an exchange worker keeps its RocksDB tables, and whether it may trust them.

Two faust-streaming pitfalls live here:

* Two workers on one RocksDB directory fail with ``LOCK`` errors. Each worker claims a slot
  (``slot-N``) with an exclusive ``flock`` on ``slot-N.lock``, held for the life of the process;
  the kernel drops the lock when the process dies, even by ``kill -9``. The slot also picks the
  worker's web port.
* Faust writes RocksDB as it processes, before the Kafka transaction commits. After an unclean
  stop the store may hold state of an aborted transaction, which the changelog (read committed)
  does not. As Kafka Streams does, a clean shutdown leaves a marker (``slot-N.clean``); a worker
  that starts without one wipes the slot, and Faust rebuilds the tables from the changelog.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Slot", "claim_slot", "mark_clean_shutdown", "prepare_slot_dir"]


@dataclass(frozen=True, slots=True)
class Slot:
    number: int
    #: The worker's data dir (Faust ``datadir``).
    path: Path
    #: Exists only between a clean shutdown and the next start.
    clean_marker: Path
    #: Holds the flock; keep it open for the life of the process.
    lock_fd: int


def claim_slot(base: Path, slots: int) -> Slot:
    """The first free slot under ``base``; raises ``RuntimeError`` when all are taken."""
    base.mkdir(parents=True, exist_ok=True)
    for number in range(slots):
        lock_path = base / f"slot-{number}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.set_inheritable(fd, False)
        return Slot(number, base / f"slot-{number}", base / f"slot-{number}.clean", fd)
    raise RuntimeError(
        f"all {slots} exchange worker slots under {base} are in use; stop a worker or raise "
        "EXCHANGE_WORKER_SLOTS"
    )


def prepare_slot_dir(slot: Slot) -> bool:
    """Wipe the slot's store unless the last worker there shut down cleanly; True if wiped.

    The marker is removed either way: from now on only a clean shutdown puts it back.
    """
    wiped = False
    if slot.path.exists() and not slot.clean_marker.exists():
        shutil.rmtree(slot.path)
        wiped = True
    slot.clean_marker.unlink(missing_ok=True)
    slot.path.mkdir(parents=True, exist_ok=True)
    return wiped


def mark_clean_shutdown(slot: Slot) -> None:
    """Call after the tables are closed and the last transaction committed."""
    slot.clean_marker.write_text("clean shutdown\n")
