"""The services ``brokerflow run`` starts, as data: one :class:`ServiceSpec` each, in start order.

Adding a service (a dashboard, simulated participants) is one more entry in
:func:`system_services`: its command line, the settings it gets on top of the user's
environment, where it answers (shown to the user) and how to tell it is up. Each is also a
command of its own that runs without the supervisor (``faust -A brokerflow.app worker``,
``python -m brokerflow.flows.ingest``, ``uvicorn brokerflow.api:app``...).
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from brokerflow.runner.policy import allocate_block, allocate_ports
from brokerflow.settings import Settings

__all__ = [
    "SERVICE_NAMES",
    "HttpCheck",
    "PortCheck",
    "ServiceSpec",
    "healthy",
    "port_is_free",
    "system_services",
]


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """Up when a GET of ``url`` gets any HTTP answer below 500."""

    url: str


@dataclass(frozen=True, slots=True)
class PortCheck:
    """Up when one of ``ports`` on ``host`` accepts a TCP connection."""

    host: str
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One supervised child process."""

    name: str
    argv: tuple[str, ...]
    #: Added to (and overriding) the supervisor's own environment.
    env: Mapping[str, str] = field(default_factory=dict)
    #: Shown to the user: where the service answers.
    url: str = ""
    metrics_port: int | None = None
    #: None: up as long as the process runs.
    health: HttpCheck | PortCheck | None = None
    #: One line on what it is, for the start-up table.
    about: str = ""


#: Start order; ``brokerflow run`` stops them in reverse.
SERVICE_NAMES = (
    "exchange",
    "ingest",
    "stats",
    "api",
    "projector",
    "notifications",
    "alerts",
    "reconciler",
    "participants",
    "dashboard",
)


#: Loopback only: an HTTP(S)_PROXY in the environment must not see our health checks.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on ``host:port`` now (a bind test)."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def healthy(check: HttpCheck | PortCheck | None, timeout_s: float = 0.5) -> bool | None:
    """The check's verdict now; None when the service has no check."""
    if check is None:
        return None
    if isinstance(check, PortCheck):
        for port in check.ports:
            try:
                with socket.create_connection((check.host, port), timeout=timeout_s):
                    return True
            except OSError:
                continue
        return False
    try:
        with _NO_PROXY.open(check.url, timeout=timeout_s) as answer:
            return int(answer.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def _tape_env(settings: Settings) -> dict[str, str]:
    """A tape loops for ever, moved to now; at recorded speed unless TAPE_REPLAY_SPEED asks for
    another pace (0, as fast as possible, would fill the disk: recorded speed then)."""
    speed = settings.tape_replay_speed or 1.0
    return {"TAPE_LOOP": "true", "TAPE_SHIFT_TO_NOW": "true", "TAPE_REPLAY_SPEED": f"{speed:g}"}


def _tape_about(settings: Settings) -> str:
    if settings.ingest_source != "tape":
        return f"live feeds ({settings.ingest_source})"
    tape = settings.tape_replay_path or "the sample tape"
    speed = float(_tape_env(settings)["TAPE_REPLAY_SPEED"])
    pace = "recorded speed" if speed == 1 else f"{speed:g}x recorded speed"
    return f"{tape} at {pace}, looping, shifted to now"


def system_services(
    settings: Settings, names: tuple[str, ...] = SERVICE_NAMES
) -> list[ServiceSpec]:
    """The whole system, each service with its own metrics port (from ``METRICS_PORT`` up, the
    first free ones) and the exchange worker with a free block of Faust web ports."""
    python = sys.executable
    host = "127.0.0.1"
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    dashboard_url = f"http://{settings.dashboard_host}:{settings.dashboard_port}"
    # Ports for every service, selected or not, so a service keeps its port whatever is left out.
    ports = allocate_ports(
        settings.metrics_port or 9100,
        len(SERVICE_NAMES),
        port_is_free,
        taken=[settings.api_port, settings.dashboard_port],
    )
    metrics = dict(zip(SERVICE_NAMES, ports, strict=True))
    slots = settings.exchange_worker_slots
    web = allocate_block(
        settings.exchange_web_port_base,
        slots,
        port_is_free,
        taken=[settings.api_port, *metrics.values()],
    )

    def metrics_env(name: str) -> dict[str, str]:
        return {"METRICS_PORT": str(metrics[name])}

    def metrics_check(name: str) -> HttpCheck:
        return HttpCheck(f"http://{host}:{metrics[name]}/metrics")

    every = {
        "exchange": ServiceSpec(
            "exchange",
            (python, "-m", "faust", "-A", "brokerflow.app", "worker", "-l", "info"),
            env={**metrics_env("exchange"), "EXCHANGE_WEB_PORT_BASE": str(web)},
            url=f"http://{host}:{web}",
            health=PortCheck(host, tuple(range(web, web + slots))),
            about="Faust worker: matching, reference prices, session closes, accounts",
        ),
        "ingest": ServiceSpec(
            "ingest",
            (python, "-m", "brokerflow.flows.ingest"),
            env={**metrics_env("ingest"), **_tape_env(settings)},
            url=f"http://{host}:{metrics['ingest']}/metrics",
            health=metrics_check("ingest"),
            about=f"market data: {_tape_about(settings)}",
        ),
        "stats": ServiceSpec(
            "stats",
            (python, "-m", "brokerflow.flows.stats"),
            env={**metrics_env("stats"), "STATS_STOP_AT_END": "false"},
            url=f"http://{host}:{metrics['stats']}/metrics",
            health=metrics_check("stats"),
            about="1 s / 1 min bars to MongoDB, Redis and market-bars-v1 (live windows)",
        ),
        "api": ServiceSpec(
            "api",
            (
                python,
                "-m",
                "uvicorn",
                "brokerflow.api:app",
                "--host",
                settings.api_host,
                "--port",
                str(settings.api_port),
            ),
            env=metrics_env("api"),
            url=api_url,
            health=HttpCheck(f"{api_url}/openapi.json"),
            about=f"order API, docs at {api_url}/docs",
        ),
        "projector": ServiceSpec(
            "projector",
            (python, "-m", "brokerflow.projections"),
            env=metrics_env("projector"),
            url=f"http://{host}:{metrics['projector']}/metrics",
            health=metrics_check("projector"),
            about="read models in MongoDB (orders, accounts, positions) and the portfolio cache",
        ),
        "notifications": ServiceSpec(
            "notifications",
            (python, "-m", "brokerflow.notifications"),
            env=metrics_env("notifications"),
            url=f"http://{host}:{metrics['notifications']}/metrics",
            health=metrics_check("notifications"),
            about="order events -> notifications-v1 -> each user's Redis channel "
            "(WebSocket /ws/v1/orders on the API)",
        ),
        "alerts": ServiceSpec(
            "alerts",
            (python, "-m", "brokerflow.alerts"),
            env=metrics_env("alerts"),
            url=f"http://{host}:{metrics['alerts']}/metrics",
            health=metrics_check("alerts"),
            about="price alerts: trades in, PriceAlertTriggered (once each) to notifications-v1",
        ),
        "reconciler": ServiceSpec(
            "reconciler",
            (python, "-m", "brokerflow.reconciler"),
            env=metrics_env("reconciler"),
            url=f"http://{host}:{metrics['reconciler']}/metrics",
            health=metrics_check("reconciler"),
            about="re-sends stuck orders' requests; checks accounts against the ledger",
        ),
        "participants": ServiceSpec(
            "participants",
            (python, "-m", "brokerflow.participants"),
            env=metrics_env("participants"),
            url=f"http://{host}:{metrics['participants']}/metrics",
            health=metrics_check("participants"),
            about="simulated members: a market maker per symbol around the real mid, a taker",
        ),
        "dashboard": ServiceSpec(
            "dashboard",
            (python, "-m", "brokerflow.dashboard"),
            env=metrics_env("dashboard"),
            url=dashboard_url,
            health=HttpCheck(f"{dashboard_url}/api/state"),
            about="live market dashboard: tiles, candles, the exchange's depth, pipeline health",
        ),
    }
    return [replace(every[name], metrics_port=metrics[name]) for name in names]
