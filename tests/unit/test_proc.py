"""Pid files let `stack down` stop exactly what `stack up` started, and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from brokerflow.errors import MissingPrerequisiteError
from brokerflow.stack._proc import ManagedProcess, require_tool

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_start_records_and_stop_terminates(tmp_path: Path) -> None:
    process = ManagedProcess("sleeper", tmp_path / "run", tmp_path / "sleeper.log")
    pid = process.start(SLEEPER, cwd=tmp_path)

    assert process.pid() == pid
    assert process.stop(timeout_s=5) is True
    assert process.pid() is None
    assert not process.pid_path.exists()
    assert process.stop() is False  # nothing left to stop


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    stranger = subprocess.Popen(SLEEPER)
    try:
        process = ManagedProcess("stranger", tmp_path, tmp_path / "x.log")
        # A stale pid file whose pid now belongs to another program (different start time).
        process.pid_path.write_text(json.dumps({"pid": stranger.pid, "start_ticks": 1}))
        assert process.pid() is None
        assert process.stop() is False
        assert stranger.poll() is None, "stop() must never signal a process we did not start"
    finally:
        stranger.kill()
        stranger.wait()


def test_exited_early_is_seen(tmp_path: Path) -> None:
    process = ManagedProcess("quitter", tmp_path, tmp_path / "quitter.log")
    process.start([sys.executable, "-c", "print('bye')"], cwd=tmp_path)
    for _ in range(50):
        if process.exited_early():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    assert process.exited_early()
    assert "bye" in (tmp_path / "quitter.log").read_text()


def test_missing_tool_says_how_to_install_it() -> None:
    with pytest.raises(MissingPrerequisiteError) as raised:
        require_tool("definitely-not-a-tool-xyz", "apt-get install -y xyz")
    assert "definitely-not-a-tool-xyz" in str(raised.value)
    assert "apt-get install -y xyz" in str(raised.value)
