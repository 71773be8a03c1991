"""The supervisor's decisions, without processes: restart backoff, durations, ports, selection.

Everything here is pure (the one exception, :func:`allocate_ports`, takes its port test as an
argument), so the rules are unit-tested with hand-computed numbers and the process side
(:mod:`brokerflow.runner.supervisor`) only carries them out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from brokerflow.errors import ConfigError

__all__ = [
    "ExitDecision",
    "RestartPolicy",
    "allocate_block",
    "allocate_ports",
    "format_duration",
    "parse_duration",
    "parse_names",
    "select_services",
]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a child that died is started again.

    The delay doubles from ``initial_s`` up to ``max_s`` with each exit in a row that came
    within ``stable_after_s`` of the child's start; a child that ran longer starts over at
    ``initial_s``. After ``failing_after`` such quick exits in a row the child is reported as
    failing (it is still restarted: a service that cannot start yet, an API whose module does
    not import, may be fixed while the rest runs).
    """

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0
    stable_after_s: float = 30.0
    failing_after: int = 3

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th quick exit in a row (1, 2, ...)."""
        if failures < 1:
            raise ValueError(f"failures counts from 1, got {failures}")
        return min(self.max_s, self.initial_s * self.factor ** (failures - 1))

    def after_exit(self, failures_before: int, uptime_s: float) -> ExitDecision:
        """What to do about a child that exited after ``uptime_s``, with ``failures_before``
        quick exits in a row before this one."""
        failures = 1 if uptime_s >= self.stable_after_s else failures_before + 1
        return ExitDecision(failures, self.delay(failures), failures >= self.failing_after)


@dataclass(frozen=True, slots=True)
class ExitDecision:
    #: Quick exits in a row, this one included (1 after a child that had been stable).
    failures: int
    #: Seconds until the restart.
    delay_s: float
    #: Whether to report the child as failing rather than merely restarting.
    failing: bool


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION_HINT = "write it as 60s, 90 (seconds), 2m, 1h or 1m30s"


def parse_duration(text: str) -> float:
    """Seconds in ``60s``, ``90``, ``2m``, ``1h``, ``1m30s`` or ``1.5m``; positive.

    >>> parse_duration("1m30s"), parse_duration("90"), parse_duration("2m")
    (90.0, 90.0, 120.0)
    """
    cleaned = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        seconds = float(cleaned)
    else:
        position, seconds, units = 0, 0.0, ""
        for part in _DURATION_PART.finditer(cleaned):
            unit = part.group(2)
            if part.start() != position or (units and "hms".index(unit) <= "hms".index(units[-1])):
                raise ConfigError(f"{text!r} is not a duration: {_DURATION_HINT}")
            seconds += float(part.group(1)) * _UNIT_SECONDS[unit]
            position, units = part.end(), units + unit
        if not units or position != len(cleaned):
            raise ConfigError(f"{text!r} is not a duration: {_DURATION_HINT}")
    if seconds <= 0:
        raise ConfigError(f"{text!r} is not a positive duration: {_DURATION_HINT}")
    return seconds


def format_duration(seconds: float) -> str:
    """``42s``, ``5m02s``, ``3h07m``: an uptime at a glance (one word, for tables).

    >>> format_duration(42.9), format_duration(302), format_duration(11_220)
    ('42s', '5m02s', '3h07m')
    """
    whole = int(max(seconds, 0))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def parse_names(text: str | None) -> list[str]:
    """``"api, exchange"`` -> ``["api", "exchange"]`` (empty or None: none)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def select_services(
    names: Sequence[str], only: Collection[str] = (), without: Collection[str] = ()
) -> list[str]:
    """The services to run, in their start order: ``only`` these (all when empty), minus
    ``without``. An unknown name is an error naming the known ones."""
    for name in [*only, *without]:
        if name not in names:
            raise ConfigError(f"no service {name!r}; the services are {', '.join(names)}")
    chosen = [name for name in names if (not only or name in only) and name not in without]
    if not chosen:
        raise ConfigError("--only and --without leave no service to run")
    return chosen


def allocate_ports(
    start: int, count: int, is_free: Callable[[int], bool], taken: Iterable[int] = ()
) -> list[int]:
    """``count`` ports from ``start`` up that ``is_free`` accepts, skipping ``taken``.

    >>> allocate_ports(9100, 3, lambda port: port != 9101)
    [9100, 9102, 9103]
    """
    avoid = set(taken)
    ports: list[int] = []
    port = start
    while len(ports) < count:
        if port > 65535:
            raise ConfigError(f"no {count} free ports from {start} up on loopback")
        if port not in avoid and is_free(port):
            ports.append(port)
        port += 1
    return ports


def allocate_block(
    start: int, size: int, is_free: Callable[[int], bool], taken: Iterable[int] = ()
) -> int:
    """The first port from ``start`` up that begins ``size`` consecutive acceptable ports
    (an exchange worker listens on its base port plus its slot number).

    >>> allocate_block(6066, 2, lambda port: port != 6067)
    6068
    """
    avoid = set(taken)
    base = start
    while base + size - 1 <= 65535:
        bad = next((p for p in range(base, base + size) if p in avoid or not is_free(p)), None)
        if bad is None:
            return base
        base = bad + 1
    raise ConfigError(f"no {size} consecutive free ports from {start} up on loopback")
