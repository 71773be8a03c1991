"""Restore time of an exchange worker after a clean stop, against the size of its changelogs.

Run ``python bench/bench_exchange_restore.py`` (``--commands 25000,100000``, ``--session N``; the
local stack must be up). For each size: the seeded tape of ``bench/bench_matching.py`` (8 symbols;
every symbol's session closes after each ``--session`` commands, so the tables stay small while
the changelogs grow; ``--session 0``: no close, a record per order) goes through one worker until
its last order event is committed; the worker stops cleanly (SIGTERM) and starts again twice on
the same data dir: once restoring from its local checkpoints plus the changelog tail (the
default), once with ``EXCHANGE_RESTORE_FROM_CHECKPOINTS=false`` (the whole changelog). Prints,
per size, the changelogs' offsets and records, and for both restarts the restore time the agent
logs, the records read from Kafka, and the time from the process start to the end of the
restore.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import TopicPartition

from brokerflow.exchange.io import follow_topic, publish_commands
from brokerflow.kafka_io import consumer
from brokerflow.matching.replay import load_rules, replay
from brokerflow.settings import Settings
from brokerflow.topics import catalog, delete_topics, ensure_topics

sys.path.insert(0, str(Path(__file__).parent))
import bench_matching
from _common import exchange_env, machine_line, start_worker

RESTORED = re.compile(
    r"books restored in ([\d.]+) s: partitions \[[\d, ]*\], (\d+) records \((\d+) table "
    r"partitions of (\d+) from local checkpoints; (\d+) records read"
)


class Worker:
    """One ``faust -A brokerflow.app worker`` with its log."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        self.log_path = workdir / f"{name}.log"
        self.started = time.monotonic()
        self.process = start_worker(env, workdir, f"{name}.log", level="info")

    def wait_for_restore(self, timeout_s: float = 600) -> tuple[float, float, int, int, int]:
        """(seconds the agent logged, seconds since the process started, records, table
        partitions from checkpoints, records read from Kafka) of its first restore."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = RESTORED.search(self.log_path.read_text(errors="replace"))
            if match:
                seconds, records, checkpointed, _, read = match.groups()
                since_start = time.monotonic() - self.started
                return float(seconds), since_start, int(records), int(checkpointed), int(read)
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited; see {self.log_path}")
            time.sleep(0.05)
        raise TimeoutError(f"no restore within {timeout_s:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        self.process.terminate()
        if self.process.wait(120) != 0:
            raise RuntimeError(f"the worker did not stop cleanly; see {self.log_path}")


async def changelog_offsets(settings: Settings, app_id: str) -> int:
    """The exchange tables' changelog offsets (records, tombstones and transaction markers)."""
    tables = ("engine_state_by_symbol", "orders_by_key", "reference_forwarding")
    partitions = [
        TopicPartition(f"{app_id}-{table}-changelog", partition)
        for table in tables
        for partition in range(settings.topic_partitions)
    ]
    async with consumer(settings, enable_auto_commit=False) as client:
        return sum((await client.end_offsets(partitions)).values())


def with_session_closes(lines: list[str], every: int) -> list[str]:
    """A close of every symbol's session after each ``every`` commands (at the time of the
    command before it): the orders that ended are forgotten, their records deleted."""
    if every <= 0:
        return lines
    closed: list[str] = []
    for number, line in enumerate(lines, 1):
        closed.append(line)
        if number % every == 0:
            closed.append(json.dumps({"op": "close", "eventTime": json.loads(line)["eventTime"]}))
    return closed


def measure(commands: int, session: int) -> dict[str, float]:
    base = Settings()
    unique = uuid.uuid4().hex[:8]
    settings = base.model_copy(update={"topic_prefix": f"bench{unique}-"})
    workdir = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    rules_path = workdir / "rules.json"
    rules_path.write_text(json.dumps(bench_matching.rules_document()))
    lines = with_session_closes(bench_matching.generate_tape(commands), session)

    class _Count:
        lines = trades = 0

        def write(self, text: str) -> None:
            for line in text.splitlines():
                self.lines += 1
                self.trades += '"type":"TradeExecuted"' in line

        def flush(self) -> None:
            pass

    counted = _Count()
    with open(os.devnull, "w") as devnull:
        replay(lines, counted, devnull, load_rules(str(rules_path)))  # type: ignore[arg-type]
    asyncio.run(ensure_topics(settings))
    asyncio.run(publish_commands(settings, lines))
    app_id = f"bench-restore-{unique}"
    env = exchange_env(
        settings,
        app_id,
        workdir,
        EXCHANGE_RULES_PATH=str(rules_path),
        BROKER_EXECUTION_REPORTS="false",
    )
    first = Worker(env, workdir, "first")
    try:
        asyncio.run(
            follow_topic(
                settings,
                catalog(settings).order_events.name,
                counted.lines - counted.trades,
                alive=lambda: first.process.poll() is None,
            )
        )
    finally:
        first.stop()
    figures: dict[str, float] = {"offsets": asyncio.run(changelog_offsets(settings, app_id))}
    for label, extra in (
        ("checkpoint", {}),
        ("full", {"EXCHANGE_RESTORE_FROM_CHECKPOINTS": "false"}),
    ):
        worker = Worker({**env, **extra}, workdir, label)
        try:
            logged, since_start, records, checkpointed, read = worker.wait_for_restore()
        finally:
            worker.stop()
        figures.update(
            {
                f"{label}_s": logged,
                f"{label}_since_start_s": since_start,
                f"{label}_read": read,
                f"{label}_checkpointed": checkpointed,
                "records": records,
            }
        )
    asyncio.run(delete_topics(settings, lambda name: unique in name))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--commands", default="25000,100000", help="tape sizes, comma-separated (commands)"
    )
    parser.add_argument(
        "--session",
        type=int,
        default=10_000,
        help="close every symbol's session after this many commands (0: never; then the "
        "tables keep a record per order)",
    )
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.commands.split(",")]
    print(
        "commands | changelog offsets | table records | restore from checkpoints: s (records "
        "read; s from process start) | whole changelog: s (records read; s from process start)"
    )
    for size in sizes:
        f = measure(size, args.session)
        print(
            f"{size:,} | {f['offsets']:,.0f} | {f['records']:,.0f} | "
            f"{f['checkpoint_s']:.2f} ({f['checkpoint_read']:,.0f}; "
            f"{f['checkpoint_since_start_s']:.1f}) | "
            f"{f['full_s']:.2f} ({f['full_read']:,.0f}; {f['full_since_start_s']:.1f})",
            flush=True,
        )
    print(machine_line())
    print(
        "command: python bench/bench_exchange_restore.py "
        f"--commands {args.commands} --session {args.session}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
