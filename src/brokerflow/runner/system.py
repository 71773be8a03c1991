"""``brokerflow run`` and ``brokerflow ps``: the stack, the catalog, every service, one command."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from pathlib import Path

from brokerflow.runner.policy import select_services
from brokerflow.runner.services import SERVICE_NAMES, ServiceSpec, system_services
from brokerflow.runner.status import RunRecord, read_state, render_status
from brokerflow.runner.supervisor import Supervisor, process_alive
from brokerflow.settings import Settings

__all__ = ["run_dir", "run_system", "show_status", "started_table"]


def run_dir(settings: Settings) -> Path:
    """Where the supervisor keeps its state file and lock: ``STACK_DIR/run``."""
    return settings.stack_dir.resolve() / "run"


def run_system(
    settings: Settings,
    *,
    only: Collection[str] = (),
    without: Collection[str] = (),
    duration_s: float | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Bring the stack up (as ``brokerflow stack up``), create the catalog, then supervise every
    selected service until Ctrl-C, SIGTERM or ``duration_s``. The stack keeps running after."""
    from brokerflow.stack import ServiceState, Stack

    names = select_services(SERVICE_NAMES, only, without)
    if not settings.participants_enabled:
        names = [name for name in names if name != "participants"]
    stack = Stack(settings)
    specs = system_services(settings, tuple(names))
    supervisor = Supervisor(specs, run_dir=stack.dir / "run", log_dir=stack.dir / "logs", out=out)
    supervisor.claim()  # a second `brokerflow run` on this folder stops here, having done nothing

    out(f"brokerflow run: the stack (folder {stack.dir})")

    def show(state: ServiceState) -> None:
        pid = f" pid {state.pid}" if state.pid else ""
        out(f"  {state.name:<6} {state.state:<9} {state.endpoint}{pid}")

    try:
        stack.up(report=show)  # also creates the topic catalog
    except BaseException:
        supervisor.release()
        raise

    targets = write_prometheus_targets(stack.dir / "run" / "prometheus-targets.json", specs)

    def started(run: RunRecord) -> None:
        out(started_table(settings, specs, run, kcat=stack.kcat()))
        out(f"Prometheus targets: {targets} (prometheus --config.file=config/prometheus/local.yml)")

    status = supervisor.run(duration_s, on_started=started)
    out("the stack keeps running (`brokerflow stack status`; `brokerflow stack down` stops it)")
    return status


def write_prometheus_targets(path: Path, specs: list[ServiceSpec]) -> Path:
    """Every service's metrics endpoint in Prometheus' file service-discovery format, so
    ``config/prometheus/local.yml`` scrapes ports chosen at run time."""
    groups = [
        {"targets": [f"127.0.0.1:{spec.metrics_port}"], "labels": {"service": spec.name}}
        for spec in specs
        if spec.metrics_port is not None
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(groups, indent=2) + "\n")
    return path


def started_table(
    settings: Settings, specs: list[ServiceSpec], run: RunRecord, *, kcat: str | None
) -> str:
    """What runs where: services with pid, URL, metrics port and log; topics; a kcat line."""
    from brokerflow.topics import catalog

    rows = [("service", "pid", "url", "metrics", "log")]
    about = {spec.name: spec.about for spec in specs}
    for record in run.services:
        rows.append(
            (
                record.name,
                str(record.pid or "-"),
                record.url or "-",
                str(record.metrics_port or "-"),
                record.log,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["services:"]
    for row in rows:
        text = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append(f"  {text.rstrip()}")
        if row[0] in about and about[row[0]]:
            lines.append(f"  {'':<{widths[0]}}  {about[row[0]]}")
    topics = catalog(settings)
    lines.append("topics: " + ", ".join(spec.name for spec in topics))
    if "api" in about:
        api = f"http://{settings.api_host}:{settings.api_port}"
        lines.append(f"API: {api}  (docs {api}/docs, OpenAPI {api}/openapi.json)")
    line = (
        f"kcat -b {settings.kafka_bootstrap_servers} -C -t {topics.order_events.name} -o end "
        "-f '%k  %s\\n'"
    )
    lines.append(f"tail order events: {line}")
    if kcat is None:
        lines.append("  (kcat is not installed: apt-get install -y kcat)")
    lines.append(
        f"`brokerflow ps` shows what runs; Ctrl-C or `kill -TERM {run.pid}` stops the services "
        "(the stack keeps running)"
    )
    return "\n".join(lines)


def show_status(settings: Settings, out: Callable[[str], None] = print) -> int:
    """``brokerflow ps``: 0 while a supervisor runs here, 1 when none does."""
    path = run_dir(settings) / "run.json"
    run = read_state(path)
    if run is None:
        out(f"brokerflow run has not run here (no {path}); start it with `brokerflow run`")
        return 1
    out(render_status(run, time.time(), process_alive))
    return 0 if run.stopped_at is None and process_alive(run.pid, run.pid_ticks) else 1
