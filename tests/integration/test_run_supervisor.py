"""The real supervisor on a tiny fake system (python one-liners): restarts, ps, stops, no orphan.

Needs no stack: the supervisor runs in its own process (as `brokerflow run` does), with a steady
HTTP server, a child that crashes once and a child that can never start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from brokerflow.runner.status import RunRecord, read_state
from brokerflow.runner.supervisor import process_alive

pytestmark = pytest.mark.integration

SUPERVISE = """
import json, sys
from pathlib import Path
from brokerflow.runner import HttpCheck, ServiceSpec, Supervisor

config = json.loads(Path(sys.argv[1]).read_text())
specs = [
    ServiceSpec(s["name"], tuple(s["argv"]), health=HttpCheck(s["health"]) if s["health"] else None)
    for s in config["services"]
]
folder = Path(config["dir"])
supervisor = Supervisor(specs, run_dir=folder / "run", log_dir=folder / "logs", grace_s=10)
sys.exit(supervisor.run(config["duration"]))
"""

FLAKY = (
    "import os, sys, time\n"
    "marker = sys.argv[1]\n"
    "first = not os.path.exists(marker)\n"
    "open(marker, 'a').close()\n"
    "print('flaky up, first run' if first else 'flaky up again', flush=True)\n"
    "time.sleep(1 if first else 3600)\n"
    "print('flaky crashes', flush=True)\n"
    "sys.exit(3)\n"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class FakeRun:
    folder: Path
    process: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def state(self) -> RunRecord | None:
        return read_state(self.folder / "run" / "run.json")

    def ps(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "brokerflow.cli", "ps"],
            cwd=self.folder,
            env={**os.environ, "STACK_DIR": str(self.folder)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _wait_for(what: str, check: Callable[[], object], run: FakeRun, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen; supervisor output:\n{run.text()}")


@pytest.fixture
def start_fake(tmp_path: Path) -> Iterator[Callable[..., FakeRun]]:
    runs: list[FakeRun] = []

    def start(duration: float | None = None, *, broken: bool = False) -> FakeRun:
        port = _free_port()
        services = [
            {
                "name": "steady",
                "argv": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                "health": f"http://127.0.0.1:{port}/",
            },
            {
                "name": "flaky",
                "argv": [sys.executable, "-c", FLAKY, str(tmp_path / "flaky-ran-once")],
                "health": None,
            },
        ]
        if broken:  # like an API whose module does not import yet
            argv = [sys.executable, "-c", "import brokerflow.no_such_module"]
            services.append({"name": "broken", "argv": argv, "health": None})
        config = tmp_path / "fake.json"
        config.write_text(
            json.dumps({"dir": str(tmp_path), "duration": duration, "services": services})
        )
        script = tmp_path / "supervise.py"
        script.write_text(SUPERVISE)
        output = tmp_path / "supervisor.out"
        with output.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, str(script), str(config)],
                cwd=tmp_path,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        run = FakeRun(tmp_path, process, output)
        runs.append(run)
        return run

    yield start
    for run in runs:  # a failed test must not leave a supervisor (or its children) behind
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
            run.process.wait(30)


def _pids(run: FakeRun) -> dict[str, int]:
    state = run.state()
    assert state is not None
    return {s.name: s.pid for s in state.services if s.pid is not None}


def _gone(pid: int) -> bool:
    """No process, and no process left in its group (each child leads its own)."""
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        pass
    try:
        os.killpg(pid, 0)
        return False
    except ProcessLookupError:
        return True


def test_a_crashed_child_is_restarted_ps_shows_both_and_sigterm_leaves_nothing(
    start_fake: Callable[..., FakeRun],
) -> None:
    run = start_fake(broken=True)

    def both_up_after_one_restart() -> bool:
        state = run.state()
        if state is None:
            return False
        by_name = {s.name: s for s in state.services}
        return (
            by_name["flaky"].restarts == 1
            and by_name["flaky"].state == "running"
            and by_name["steady"].state == "running"
            and by_name["broken"].state == "failing"
        )

    _wait_for("flaky's restart, steady's health, broken's failing", both_up_after_one_restart, run)
    text = run.text()
    assert "steady is up" in text
    assert "flaky exited (exit status 3) after 1s; restarting it in 1s" in text
    assert "    | flaky crashes" in text  # the tail of its log
    assert "broken keeps failing: exit status 1" in text
    assert "ModuleNotFoundError: No module named 'brokerflow.no_such_module'" in text
    assert run.process.poll() is None  # the others run on

    pids = _pids(run)
    shown = run.ps()
    assert shown.returncode == 0, shown.stdout + shown.stderr
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[2:]}
    assert rows["steady"][1:3] == ["running", str(pids["steady"])]
    assert rows["flaky"][1:3] == ["running", str(pids["flaky"])]
    assert rows["flaky"][4] == "1"  # restarts
    assert rows["broken"][1] == "failing"
    for pid in (pids["steady"], pids["flaky"]):
        os.kill(pid, 0)  # alive: raises if not

    run.process.send_signal(signal.SIGTERM)
    assert run.process.wait(60) == 0
    assert "stopping (SIGTERM): flaky, steady" in run.text()
    assert all(_gone(pid) for pid in pids.values())
    after = run.ps()
    assert after.returncode == 1
    assert "brokerflow run is not running (pid" in after.stdout


def test_for_stops_by_itself_and_takes_its_children(start_fake: Callable[..., FakeRun]) -> None:
    run = start_fake(duration=4)
    _wait_for("the state file", lambda: len(_pids(run)) == 2 if run.state() else False, run)
    pids = _pids(run)

    assert run.process.wait(60) == 0
    assert "stopping (--for 4s is up)" in run.text()
    assert all(_gone(pid) for pid in pids.values())
    state = run.state()
    assert state is not None
    assert state.stopped_at is not None
    assert {s.state for s in state.services} == {"stopped"}


def test_children_follow_a_supervisor_killed_with_sigkill(
    start_fake: Callable[..., FakeRun],
) -> None:
    run = start_fake()
    _wait_for("steady's health", lambda: "steady is up" in run.text(), run)
    pids = _pids(run)
    assert len(pids) == 2

    run.process.kill()
    run.process.wait(30)

    # Their parent died: the kernel sent each SIGTERM (PR_SET_PDEATHSIG). Reaped by init or not,
    # none may still run.
    _wait_for(
        "the orphans' exit",
        lambda: not any(process_alive(pid) for pid in pids.values()),
        run,
        timeout_s=30,
    )
    shown = run.ps()
    assert shown.returncode == 1
    assert "is gone: killed?" in shown.stdout
