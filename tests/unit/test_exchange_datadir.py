"""Data-dir slots (one RocksDB dir per worker) and the clean-shutdown rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brokerflow.exchange.datadir import claim_slot, mark_clean_shutdown, prepare_slot_dir


def test_each_claim_gets_the_next_free_slot_and_a_released_slot_is_reused(tmp_path: Path) -> None:
    first = claim_slot(tmp_path, 3)
    second = claim_slot(tmp_path, 3)
    assert (first.number, second.number) == (0, 1)
    assert first.path == tmp_path / "slot-0"
    os.close(first.lock_fd)
    assert claim_slot(tmp_path, 3).number == 0


def test_all_slots_taken_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    claim_slot(tmp_path, 1)
    with pytest.raises(RuntimeError, match="EXCHANGE_WORKER_SLOTS"):
        claim_slot(tmp_path, 1)


def test_a_slot_held_by_another_process_is_skipped_until_it_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from brokerflow.exchange.datadir import claim_slot;"
            f"claim_slot(Path({str(tmp_path)!r}), 2); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        slot = claim_slot(tmp_path, 2)
        assert slot.number == 1
        os.close(slot.lock_fd)
    finally:
        holder.kill()  # like kill -9: the kernel releases the flock
        holder.wait()
    assert claim_slot(tmp_path, 2).number == 0


def test_store_is_kept_after_a_clean_shutdown_and_wiped_after_a_crash(tmp_path: Path) -> None:
    slot = claim_slot(tmp_path, 1)
    assert prepare_slot_dir(slot) is False  # fresh
    (slot.path / "table.sst").write_text("state")
    mark_clean_shutdown(slot)
    assert prepare_slot_dir(slot) is False
    assert (slot.path / "table.sst").exists()
    assert not slot.clean_marker.exists()  # running: only a clean stop puts it back
    assert prepare_slot_dir(slot) is True  # started again without a clean stop
    assert slot.path.exists()
    assert not (slot.path / "table.sst").exists()
