"""What ``brokerflow run`` is running, as a state file and as the table ``brokerflow ps`` prints.

The supervisor rewrites ``STACK_DIR/run/run.json`` (atomically) whenever something changes;
``brokerflow ps`` and ``brokerflow run --status`` read it from any shell and check each pid
against ``/proc`` (pid and start time, so a pid the kernel gave to another program is not taken
for ours). Records and rendering are pure; reading and writing the file are the two I/O helpers
at the bottom.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from brokerflow.runner.policy import format_duration

__all__ = [
    "RunRecord",
    "ServiceRecord",
    "ServiceState",
    "read_state",
    "render_status",
    "write_state",
]

#: starting: spawned, its health check not yet answered; running: up (and answering);
#: restarting: exited, waiting for its restart; failing: the same, after several quick exits
#: in a row; stopped: stopped by the supervisor.
ServiceState = Literal["starting", "running", "restarting", "failing", "stopped"]


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """One service as the supervisor last saw it (times are UNIX seconds)."""

    name: str
    state: ServiceState
    log: str
    url: str = ""
    metrics_port: int | None = None
    pid: int | None = None
    #: The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22).
    pid_ticks: int | None = None
    started_at: float | None = None
    restarts: int = 0
    last_exit: str = ""
    next_start_at: float | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """The supervisor itself and its services, in start order."""

    pid: int
    pid_ticks: int | None
    started_at: float
    stop_at: float | None = None
    stopped_at: float | None = None
    services: tuple[ServiceRecord, ...] = field(default_factory=tuple)

    def service(self, name: str) -> ServiceRecord:
        return next(record for record in self.services if record.name == name)

    def with_service(self, record: ServiceRecord) -> RunRecord:
        services = tuple(record if s.name == record.name else s for s in self.services)
        return replace(self, services=services)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        services = tuple(ServiceRecord(**item) for item in data.get("services", ()))
        return cls(**{**data, "services": services})


#: ``alive(pid, pid_ticks)``: whether that very process still runs.
AliveCheck = Callable[[int, int | None], bool]

_COLUMNS = ("service", "state", "pid", "uptime", "restarts", "url", "metrics", "log")


def render_status(run: RunRecord, now: float, alive: AliveCheck) -> str:
    """The ``brokerflow ps`` text: a header line about the supervisor, then one row a service.

    A pid is shown only while that process is alive; a service the file calls up whose process
    is gone (the supervisor was killed) shows as ``gone``.
    """
    supervisor_up = run.stopped_at is None and alive(run.pid, run.pid_ticks)
    if supervisor_up:
        until = (
            f"stops in {format_duration(run.stop_at - now)}"
            if run.stop_at is not None
            else "until Ctrl-C or SIGTERM"
        )
        header = (
            f"brokerflow run: pid {run.pid}, up {format_duration(now - run.started_at)}, {until}"
        )
    elif run.stopped_at is not None:
        header = (
            f"brokerflow run is not running (pid {run.pid} stopped "
            f"{format_duration(now - run.stopped_at)} ago)"
        )
    else:
        header = f"brokerflow run is not running (pid {run.pid} is gone: killed?)"
    rows = [_row(record, now, alive) for record in run.services]
    return "\n".join([header, *_table([_COLUMNS, *rows])])


def _row(record: ServiceRecord, now: float, alive: AliveCheck) -> tuple[str, ...]:
    up = record.pid is not None and alive(record.pid, record.pid_ticks)
    state = record.state
    if state in ("starting", "running") and not up:
        state_text = "gone"
    elif state in ("restarting", "failing") and record.next_start_at is not None:
        wait = max(0.0, record.next_start_at - now)
        state_text = f"{state} (in {format_duration(wait)}; {record.last_exit})"
    else:
        state_text = state
    uptime = (
        format_duration(now - record.started_at) if up and record.started_at is not None else "-"
    )
    return (
        record.name,
        state_text,
        str(record.pid) if up else "-",
        uptime,
        str(record.restarts),
        record.url or "-",
        str(record.metrics_port) if record.metrics_port else "-",
        record.log,
    )


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


# --- the file ----------------------------------------------------------------------------------
def write_state(path: Path, run: RunRecord) -> None:
    """Replace the state file atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(run.to_json(), indent=1) + "\n")
    os.replace(temporary, path)


def read_state(path: Path) -> RunRecord | None:
    """The last state written, or None when there is none (or it is unreadable)."""
    try:
        return RunRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
