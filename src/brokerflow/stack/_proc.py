"""Detached service processes with pid files, so ``down`` stops exactly what ``up`` started."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from brokerflow.errors import MissingPrerequisiteError, StackError

__all__ = ["ManagedProcess", "port_open", "require_tool", "run_checked", "tail"]


def require_tool(tool: str, install_hint: str) -> str:
    """The tool's absolute path, or a MissingPrerequisiteError naming how to install it."""
    path = shutil.which(tool)
    if path is None:
        raise MissingPrerequisiteError(tool, install_hint)
    return path


def port_open(host: str, port: int, timeout_s: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def run_checked(
    args: list[str],
    *,
    what: str,
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a provisioning step, appending its output to ``log``; fail with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(args)}\n".encode())
        out.flush()
        result = subprocess.run(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode}); last lines of {log}:\n{tail(log, 25)}"
        )


@dataclass(frozen=True, slots=True)
class ManagedProcess:
    """A service process started by us; its pid file records the pid and the command line."""

    name: str
    run_dir: Path
    log_path: Path

    @property
    def pid_path(self) -> Path:
        return self.run_dir / f"{self.name}.pid.json"

    def recorded(self) -> dict[str, object] | None:
        try:
            return json.loads(self.pid_path.read_text())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        """The pid if the recorded process is alive and is still the one we started."""
        record = self.recorded()
        if not record:
            return None
        pid = int(record["pid"])  # type: ignore[call-overload]
        state = _proc_state(pid)
        if state is None or state[0] == "Z":
            return None
        if record.get("start_ticks") not in (None, state[1]):
            return None  # the pid was reused by another program
        return pid

    def start(self, argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(
                f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(argv)}\n".encode()
            )
            out.flush()
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI that started it
            )
        state = _proc_state(process.pid)
        record = {
            "pid": process.pid,
            "start_ticks": state[1] if state else None,
            "argv": argv,
            "started": time.time(),
        }
        self.pid_path.write_text(json.dumps(record))
        return process.pid

    def exited_early(self) -> bool:
        return self.recorded() is not None and self.pid() is None

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``; True if a process was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.pid() is not None:
            _reap(pid)
            time.sleep(0.1)
        if self.pid() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            time.sleep(0.2)
            _reap(pid)
        self.pid_path.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL at once: how chaos tests simulate a crash."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
        _reap(pid)
        return True


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc; the pair identifies a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _reap(pid: int) -> None:
    # Only reaps when we are the parent (tests that start and stop in one process).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
