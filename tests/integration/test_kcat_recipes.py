"""The README's kcat recipes, run as written against the stack on a topic of this test's own.

The block under ``<!-- kcat-recipes -->`` is read from the README; each command runs with the
test's topic name and instant in place of the README's, and its output is checked against the
records published here (keys, partitions, offsets, timestamps and values).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from brokerflow.kafka_io import producer
from brokerflow.settings import Settings
from brokerflow.topics import catalog, ensure_topics

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
T0 = 1782383400000  # the README's instant, 2026-06-25T10:30:00Z, in ms


def recipes() -> list[str]:
    text = README.read_text()
    block = text.split("<!-- kcat-recipes -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.startswith("kcat ")]


def test_every_kcat_recipe_prints_what_the_topic_holds(settings: Settings, unique: str) -> None:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is needed: apt-get install kcat (scripts/bootstrap.sh installs it)")
    isolated = settings.model_copy(update={"topic_prefix": f"kcat-{unique}-"})
    spec = catalog(isolated).order_events
    asyncio.run(ensure_topics(isolated, [spec]))
    # Ten records, PETR4 and VALE3 alternating, one second apart from 10:29:55 on.
    published = [
        (("PETR4", "VALE3")[n % 2], T0 + (n - 5) * 1000, f'{{"n":{n}}}') for n in range(10)
    ]

    async def publish() -> dict[int, tuple[int, int]]:
        where: dict[int, tuple[int, int]] = {}
        async with producer(isolated) as writer:
            for n, (key, ms, value) in enumerate(published):
                sent = await writer.send_and_wait(
                    spec.name, value.encode(), key=key.encode(), timestamp_ms=ms
                )
                where[n] = (sent.partition, sent.offset)
        return where

    where = asyncio.run(publish())
    env = {
        **os.environ,
        "TOPIC_PREFIX": isolated.topic_prefix,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }

    def run(recipe: str) -> list[str]:
        command = recipe.replace("order-events-v1", spec.name).replace(
            "127.0.0.1:9092", isolated.kafka_bootstrap_servers
        )
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        return [line for line in done.stdout.splitlines() if line]

    tail, since, one_symbol, last_two = recipes()
    assert sorted(run(tail)) == sorted(
        f"{key} {where[n][0]} {where[n][1]} {ms} {value}"
        for n, (key, ms, value) in enumerate(published)
    )
    assert sorted(run(since)) == sorted(
        f"{ms} {key} {value}" for key, ms, value in published if ms >= T0
    )
    petr4 = [(n, value) for n, (key, _, value) in enumerate(published) if key == "PETR4"]
    assert run(one_symbol) == [f"PETR4 {value}" for _, value in petr4]
    partition = where[petr4[0][0]][0]
    in_partition = sorted(
        (where[n][1], key, value)
        for n, (key, _, value) in enumerate(published)
        if where[n][0] == partition
    )
    assert run(last_two) == [f"{o} {k} {v}" for o, k, v in in_partition[-2:]]
    assert f"-o s@{T0} " in since  # the README's instant is the one published around
