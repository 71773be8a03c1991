"""Redis from Debian's ``redis-server``, or the one already answering at ``REDIS_URL``."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

from brokerflow.errors import StackError
from brokerflow.stack._proc import ManagedProcess, require_tool, tail

__all__ = ["RedisService", "redis_health"]


class RedisService:
    name = "redis"

    def __init__(self, stack_dir: Path, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.home = stack_dir / "redis"
        self.log_path = stack_dir / "logs" / "redis.log"
        self.process = ManagedProcess("redis", stack_dir / "run", self.log_path)

    def provisioned(self) -> bool:
        return True

    def provision(self) -> None:
        require_tool("redis-server", "apt-get install -y redis-server")

    def running_pid(self) -> int | None:
        return self.process.pid()

    def answers(self) -> bool:
        try:
            redis_health(self.url, timeout_s=0.5)
            return True
        except StackError:
            return False

    def start(self) -> None:
        binary = require_tool("redis-server", "apt-get install -y redis-server")
        self.home.mkdir(parents=True, exist_ok=True)
        self.process.start(
            [
                binary,
                "--bind", self.host,
                "--port", str(self.port),
                "--dir", str(self.home),
                "--daemonize", "no",
                "--save", "60 1000",
                "--appendonly", "no",
                "--protected-mode", "yes",
                "--logfile", "",
            ],
            cwd=self.home,
        )  # fmt: skip

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.exited_early():
                raise StackError(
                    f"redis-server exited at start; {self.log_path}:\n{tail(self.log_path)}"
                )
            if self.answers():
                return
            time.sleep(0.1)
        raise StackError(f"Redis did not answer PING within {timeout_s:.0f} s at {self.url}")

    def stop(self) -> bool:
        return self.process.stop()


def redis_health(url: str, timeout_s: float = 2.0) -> float:
    """PING; returns the round trip in seconds."""
    import redis

    started = time.perf_counter()
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        if client.ping() is not True:
            raise StackError(f"Redis at {url} did not answer PONG")
    except redis.RedisError as exc:
        raise StackError(f"Redis at {url} failed its health check: {exc}") from exc
    finally:
        client.close()
    return time.perf_counter() - started
