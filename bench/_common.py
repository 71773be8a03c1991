"""What every benchmark shares: the machine line each figure names, percentiles, the worker.

Imported as ``_common`` (the benchmarks put their own folder on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from brokerflow.settings import Settings

__all__ = [
    "FAUST",
    "cpu_model",
    "exchange_env",
    "machine_line",
    "percentile",
    "start_worker",
]

#: The ``faust`` command of this interpreter's environment (``faust -A brokerflow.app worker``).
FAUST = str(Path(sys.executable).with_name("faust"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    """The line every benchmark prints about the machine it ran on."""
    return (
        f"machine: {platform.uname().system} {platform.uname().release} {platform.machine()}, "
        f"{cpu_model()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``: the sample at rank ``int(q * n)``, capped."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def exchange_env(settings: Settings, app_id: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of an exchange worker on ``settings``' topics, with its own app id and
    data dir under ``workdir``, no session timer; ``extra`` adds or overrides settings."""
    return {
        **os.environ,
        "TOPIC_PREFIX": settings.topic_prefix,
        "EXCHANGE_APP_ID": app_id,
        "EXCHANGE_DATA_DIR": str(workdir / "data"),
        "EXCHANGE_SESSION_SYMBOLS": "",
        "EXCHANGE_WEB_PORT_BASE": "26266",
        **extra,
    }


def start_worker(
    env: dict[str, str],
    workdir: Path,
    log_name: str,
    *,
    level: str = "warn",
    prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``faust -A brokerflow.app worker`` (after ``prefix``, e.g. a profiler) in ``workdir``,
    its output in ``workdir / log_name``."""
    log = open(workdir / log_name, "wb")  # noqa: SIM115 - the worker holds it until it exits
    return subprocess.Popen(
        [*prefix, FAUST, "-A", "brokerflow.app", "worker", "-l", level],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
