"""Child processes of ``brokerflow run``: started, watched, restarted, stopped, never orphaned.

This is the I/O half; every decision (when to restart, when a child counts as failing) comes
from :mod:`brokerflow.runner.policy`, and what ``brokerflow ps`` shows from
:mod:`brokerflow.runner.status`.

No orphans, however the supervisor ends:

* each child leads its own session and process group, so a stop signals the whole group (and a
  Ctrl-C in the terminal reaches only the supervisor, which then stops the children in order);
* a stop sends SIGTERM to every child in reverse start order, waits up to the grace period,
  then SIGKILLs what is left, and finally SIGKILLs any straggler left in a child's group;
* each child asks the kernel, between fork and exec, for SIGTERM when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), so a supervisor killed with ``kill -9`` takes its children
  with it; the child checks its parent is still the supervisor right after, to close the race
  of a parent that died during the fork.

Only the supervisor's main thread starts children: the death signal is tied to the thread that
forked, not to the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from brokerflow.errors import BrokerflowError
from brokerflow.runner.policy import RestartPolicy, format_duration
from brokerflow.runner.services import ServiceSpec, healthy
from brokerflow.runner.status import (
    RunRecord,
    ServiceRecord,
    ServiceState,
    read_state,
    write_state,
)
from brokerflow.stack._proc import _proc_state

__all__ = ["RunnerError", "Supervisor", "describe_exit", "log_since", "process_alive"]

_PR_SET_PDEATHSIG = 1
#: Resolved in the parent: the child, between fork and exec, should only call it.
_PRCTL = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunnerError(BrokerflowError):
    """``brokerflow run`` cannot start (another one runs on this stack folder)."""


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, given its start time, is still that process."""
    state = _proc_state(pid)
    if state is None or state[0] in ("Z", "X"):
        return False
    return start_ticks is None or state[1] == start_ticks


def describe_exit(code: int) -> str:
    """``exit status 3`` or ``killed by SIGKILL``, from a ``Popen.returncode``."""
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before the line above: follow it now
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def log_since(path: Path, offset: int, lines: int) -> list[str]:
    """The last ``lines`` lines a child wrote to its log since ``offset`` (its start)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def _stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%SZ")


@dataclass
class _Child:
    spec: ServiceSpec
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    pid_ticks: int | None = None
    #: Where this start's output begins in the log.
    log_offset: int = 0
    state: ServiceState = "stopped"
    started_monotonic: float = 0.0
    started_at: float | None = None
    restarts: int = 0
    failures: int = 0
    last_exit: str = ""
    next_start: float | None = None
    next_start_at: float | None = None
    last_check: float = field(default=float("-inf"))

    def record(self) -> ServiceRecord:
        pid = self.process.pid if self.process is not None else None
        return ServiceRecord(
            name=self.spec.name,
            state=self.state,
            log=str(self.log_path),
            url=self.spec.url,
            metrics_port=self.spec.metrics_port,
            pid=pid,
            pid_ticks=self.pid_ticks if pid is not None else None,
            started_at=self.started_at if pid is not None else None,
            restarts=self.restarts,
            last_exit=self.last_exit,
            next_start_at=self.next_start_at,
        )


class Supervisor:
    """Runs ``specs`` as child processes until a signal, or ``duration_s``, says stop.

    Logs go to ``log_dir/run-<service>.log`` (appended, one header line per start); the state
    file is ``run_dir/run.json`` and ``run_dir/run.lock`` keeps a second supervisor off the
    same folder. ``out`` receives the supervisor's own log lines.
    """

    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        *,
        run_dir: Path,
        log_dir: Path,
        cwd: Path | None = None,
        policy: RestartPolicy | None = None,
        grace_s: float = 20.0,
        poll_s: float = 0.2,
        tail_lines: int = 12,
        out: Callable[[str], None] = print,
    ) -> None:
        self.run_dir = run_dir
        self.state_path = run_dir / "run.json"
        self.lock_path = run_dir / "run.lock"
        self.cwd = cwd
        self.policy = policy or RestartPolicy()
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.tail_lines = tail_lines
        self.out = out
        self.children = [_Child(spec, log_dir / f"run-{spec.name}.log") for spec in specs]
        self._lock_fd: int | None = None
        self._signals: list[str] = []
        self._started_at = time.time()
        self._stop_at: float | None = None

    # --- the lock --------------------------------------------------------------------------
    def claim(self) -> None:
        """Take the folder's lock, or fail naming the supervisor that holds it."""
        if self._lock_fd is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_state(self.state_path)
            who = f" (pid {holder.pid})" if holder is not None else ""
            raise RunnerError(
                f"brokerflow run is already running on {self.run_dir.parent}{who}; "
                "`brokerflow ps` shows it, stop it with Ctrl-C in its terminal or kill -TERM"
            ) from None
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- running ---------------------------------------------------------------------------
    def run(
        self,
        duration_s: float | None = None,
        on_started: Callable[[RunRecord], None] | None = None,
    ) -> int:
        """Start every child, watch them, stop them all; 0 after a requested stop."""
        self.claim()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        deadline = None if duration_s is None else time.monotonic() + duration_s
        self._stop_at = None if duration_s is None else time.time() + duration_s
        try:
            reason = "the supervisor failed"
            try:
                for child in self.children:
                    self._start(child)
                self._save()
                if on_started is not None:
                    on_started(self.record())
                reason = self._watch_until_stopped(deadline, duration_s)
            finally:  # whatever went wrong here, the children go too
                self._stop_all(reason)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.release()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self._signals.append(signal.Signals(signum).name)

    def _watch_until_stopped(self, deadline: float | None, duration_s: float | None) -> str:
        last_save = time.monotonic()
        while not self._signals:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return f"--for {format_duration(duration_s or 0)} is up"
            changed = False
            for child in self.children:
                changed = self._watch(child, now) or changed
            if changed or now - last_save >= 1.0:
                self._save()
                last_save = now
            time.sleep(self.poll_s)
        return self._signals[0]

    def _watch(self, child: _Child, now: float) -> bool:
        """Notice an exit, a first healthy answer or a due restart; True if anything changed."""
        process = child.process
        if process is None:
            if child.next_start is not None and now >= child.next_start:
                child.restarts += 1
                self._start(child)
                return True
            return False
        code = process.poll()
        if code is not None:
            self._exited(child, describe_exit(code), now)
            return True
        if child.state == "starting" and now - child.last_check >= 1.0:
            child.last_check = now
            if healthy(child.spec.health, timeout_s=0.25):
                child.state = "running"
                took = format_duration(now - child.started_monotonic)
                self.out(f"{_stamp()} {child.spec.name} is up ({took} after its start)")
                return True
        return False

    def _start(self, child: _Child) -> None:
        spec = child.spec
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        child.next_start = child.next_start_at = None
        child.started_monotonic = time.monotonic()
        with child.log_path.open("ab") as log:
            log.write(
                f"\n=== {datetime.now(UTC).isoformat(timespec='seconds')} brokerflow run starts "
                f"{spec.name}: {shlex.join(spec.argv)}\n".encode()
            )
            log.flush()
            child.log_offset = log.tell()
            try:
                child.process = subprocess.Popen(
                    spec.argv,
                    cwd=self.cwd,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **spec.env},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(os.getpid()),
                )
            except OSError as exc:
                log.write(f"could not start {spec.name}: {exc}\n".encode())
                child.process = None
                self._exited(child, f"could not start ({exc})", child.started_monotonic)
                return
        child.started_at = time.time()
        state = _proc_state(child.process.pid)
        child.pid_ticks = state[1] if state else None
        child.state = "starting" if spec.health is not None else "running"
        child.last_check = float("-inf")

    def _exited(self, child: _Child, how: str, now: float) -> None:
        process, child.process = child.process, None
        if process is not None:
            # Whatever the child left in its group (a grandchild) goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        uptime = now - child.started_monotonic
        decision = self.policy.after_exit(child.failures, uptime)
        child.failures = decision.failures
        child.last_exit = how
        child.next_start = now + decision.delay_s
        child.next_start_at = time.time() + decision.delay_s
        child.state = "failing" if decision.failing else "restarting"
        name, wait = child.spec.name, format_duration(decision.delay_s)
        if decision.failing and decision.failures > self.policy.failing_after:
            # Reported (with its log) when it began failing; now one line per attempt.
            self.out(f"{_stamp()} {name} failed again ({how}); next try in {wait}")
            return
        if decision.failing:
            line = (
                f"{_stamp()} {name} keeps failing: {how} after {format_duration(uptime)}, "
                f"{decision.failures} exits in a row within "
                f"{format_duration(self.policy.stable_after_s)} of starting; next try in {wait} "
                f"(then at most every {format_duration(self.policy.max_s)}); the others run on"
            )
        else:
            line = (
                f"{_stamp()} {name} exited ({how}) after {format_duration(uptime)}; "
                f"restarting it in {wait}"
            )
        lines = log_since(child.log_path, child.log_offset, self.tail_lines)
        self.out(
            "\n".join(
                [line, f"    last lines of {child.log_path}:", *(f"    | {x}" for x in lines)]
            )
        )

    # --- stopping --------------------------------------------------------------------------
    def _stop_all(self, reason: str) -> None:
        running = [child for child in reversed(self.children) if child.process is not None]
        names = ", ".join(child.spec.name for child in running) or "nothing was running"
        self.out(f"{_stamp()} stopping ({reason}): {names}")
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        # A second Ctrl-C (or SIGTERM) means: do not wait out the grace period.
        while (
            time.monotonic() < deadline
            and len(self._signals) < 2
            and any(child.process.poll() is None for child in running if child.process)
        ):
            time.sleep(0.05)
        for child in running:
            assert child.process is not None
            if child.process.poll() is None:
                self.out(f"{_stamp()} {child.spec.name} did not stop in time: SIGKILL")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        for child in self.children:
            if child.process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)  # stragglers in its group
                child.last_exit = describe_exit(child.process.wait())
                child.process = None
            child.state = "stopped"
            child.next_start = child.next_start_at = None
        self._save(stopped=True)
        self.out(f"{_stamp()} stopped: {names}")

    # --- the state file --------------------------------------------------------------------
    def record(self, *, stopped: bool = False) -> RunRecord:
        own = _proc_state(os.getpid())
        return RunRecord(
            pid=os.getpid(),
            pid_ticks=own[1] if own else None,
            started_at=self._started_at,
            stop_at=self._stop_at,
            stopped_at=time.time() if stopped else None,
            services=tuple(child.record() for child in self.children),
        )

    def _save(self, *, stopped: bool = False) -> None:
        write_state(self.state_path, self.record(stopped=stopped))
