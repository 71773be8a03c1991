"""The local stack: Kafka (KRaft), Redis and a MongoDB wire server on loopback, without Docker.

``brokerflow stack up`` provisions into ``STACK_DIR`` (git-ignored), reuses what an earlier run
downloaded or built and whatever is already running, starts the rest, health-checks each service
with a real request and creates the topic catalog. ``down`` stops exactly the processes ``up``
started (recorded in pid files), never a service it found already running.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from brokerflow.errors import StackError
from brokerflow.settings import Settings
from brokerflow.stack._proc import ManagedProcess, tail
from brokerflow.stack.kafka import KafkaService, kafka_health
from brokerflow.stack.mongo import FerretDBService, mongo_health
from brokerflow.stack.redis import RedisService, redis_health

__all__ = ["ServiceState", "Stack"]

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str
    log_path: Path
    process: ManagedProcess

    def provisioned(self) -> bool: ...
    def provision(self) -> None: ...
    def running_pid(self) -> int | None: ...
    def answers(self) -> bool: ...
    def start(self) -> None: ...
    def wait_ready(self, timeout_s: float = ...) -> None: ...
    def stop(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    state: Literal["started", "running", "external", "stopped", "unhealthy"]
    endpoint: str
    pid: int | None = None
    detail: str = ""
    seconds: float = 0.0


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.stack_dir.resolve()
        self.kafka = KafkaService(
            self.dir, settings.kafka_version, settings.kafka_bootstrap_servers
        )
        self.redis = RedisService(self.dir, settings.redis_url)
        self.mongo = FerretDBService(self.dir, settings.mongo_url, settings.ferretdb_version)
        self._health: dict[str, Callable[[], float]] = {
            "kafka": lambda: asyncio.run(kafka_health(settings.kafka_bootstrap_servers)),
            "redis": lambda: redis_health(settings.redis_url),
            "mongo": lambda: mongo_health(settings.mongo_url),
        }
        self._endpoints = {
            "kafka": settings.kafka_bootstrap_servers,
            "redis": settings.redis_url,
            "mongo": settings.mongo_url,
        }

    @property
    def services(self) -> list[Service]:
        return [self.kafka, self.redis, self.mongo]

    def up(self, report: Callable[[ServiceState], None] = lambda _: None) -> list[ServiceState]:
        """Bring every service to healthy; idempotent and quick when all are already up."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / ".gitignore").write_text("*\n")
        # Start every service before waiting on any: Kafka's JVM warms up while the others start.
        plan: list[tuple[Service, str]] = []
        for service in self.services:
            plan.append((service, self._bring_up(service)))
        states = []
        for service, how in plan:
            started = time.perf_counter()
            if how == "started":
                service.wait_ready()
            try:
                self._health[service.name]()
            except StackError as exc:
                raise StackError(f"{service.name} is not healthy: {exc}") from exc
            state = ServiceState(
                service.name,
                how,  # type: ignore[arg-type]
                self._endpoints[service.name],
                pid=service.running_pid(),
                seconds=time.perf_counter() - started,
            )
            report(state)
            states.append(state)
        from brokerflow.topics import ensure_topics

        created = asyncio.run(ensure_topics(self.settings))
        if created:
            log.info("created topics: %s", ", ".join(created))
        return states

    def _bring_up(self, service: Service) -> str:
        if service.running_pid() is not None:
            if service.answers():
                return "running"
            # Ours, but wedged or still dying: restart it rather than report it unhealthy.
            log.warning(
                "%s (pid %s) does not answer; restarting it", service.name, service.running_pid()
            )
            service.stop()
            service.start()
            return "started"
        if service.answers():
            if service is self.kafka or self.settings.stack_use_external:
                return "external"
            raise StackError(
                f"something else answers at {self._endpoints[service.name]}; stop it, or set "
                "STACK_USE_EXTERNAL=true to use it, or point the URL at another port"
            )
        service.provision()
        service.start()
        return "started"

    def down(self) -> list[str]:
        """Stop what ``up`` started, in reverse order; return the names stopped."""
        stopped = []
        for service in reversed(self.services):
            if service.stop():
                stopped.append(service.name)
        return stopped

    def status(self) -> list[ServiceState]:
        states = []
        for service in self.services:
            pid = service.running_pid()
            endpoint = self._endpoints[service.name]
            try:
                seconds = self._health[service.name]()
            except StackError as exc:
                state = "unhealthy" if pid is not None else "stopped"
                states.append(ServiceState(service.name, state, endpoint, pid, str(exc)))
                continue
            state = "running" if pid is not None else "external"
            states.append(ServiceState(service.name, state, endpoint, pid, seconds=seconds))
        return states

    def log_paths(self) -> dict[str, Path]:
        return {service.name: service.log_path for service in self.services}

    def logs(self, name: str | None = None, lines: int = 40) -> str:
        paths = self.log_paths()
        if name is not None and name not in paths:
            raise StackError(f"no service {name!r}; choose one of {', '.join(paths)}")
        chosen = [name] if name else list(paths)
        return "\n".join(f"==> {paths[n]} <==\n{tail(paths[n], lines)}" for n in chosen)

    @staticmethod
    def kcat() -> str | None:
        return shutil.which("kcat") or shutil.which("kafkacat")
