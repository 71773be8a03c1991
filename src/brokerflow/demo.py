"""The main job: bring the local stack up and show, end to end, what brokerflow has so far.

Today: the stack and its health, the topic catalog, and a smoke pipeline that publishes one
message of every family to its catalog topic in a Kafka transaction, then tails those topics with a
``read_committed`` consumer and prints what came back, as ``kcat`` would.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from brokerflow.kafka_io import consumer, producer
from brokerflow.schemas.base import Message
from brokerflow.schemas.examples import EXAMPLES
from brokerflow.settings import Settings
from brokerflow.topics import TopicCatalog, TopicSpec, catalog

__all__ = ["message_key", "route", "run_demo"]

_KEY_FIELDS = {
    "symbol": "symbol",
    "accountId": "account_id",
    "userId": "user_id",
    "source": "source",
}


def route(topics: TopicCatalog, message: Message) -> TopicSpec:
    """The catalog topic that carries this message's type."""
    kind = type(message).model_fields["type"].default
    for spec in topics:
        if kind in spec.value_types:
            return spec
    raise LookupError(f"no topic in the catalog carries {kind!r}")


def message_key(spec: TopicSpec, message: Message) -> str:
    return str(getattr(message, _KEY_FIELDS[spec.key]))


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


async def _smoke_pipeline(settings: Settings) -> int:
    topics = catalog(settings)
    routed = [(route(topics, message), message) for message in EXAMPLES]
    specs = {spec.name: spec for spec, _ in routed}
    partitions = [
        TopicPartition(spec.name, p) for spec in specs.values() for p in range(spec.partitions)
    ]
    async with consumer(settings) as reader:
        start = await reader.end_offsets(partitions)

    async with (
        producer(settings, transactional_id="brokerflow-demo") as writer,
        writer.transaction(),
    ):
        for spec, message in routed:
            await writer.send(
                spec.name, message.to_json_bytes(), key=message_key(spec, message).encode()
            )

    received = 0
    async with consumer(settings) as reader:
        reader.assign(partitions)
        for partition in partitions:
            reader.seek(partition, start[partition])
        end = await reader.end_offsets(partitions)
        lines: list[tuple[str, int, int, str, str]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and [
            tp for tp in partitions if await reader.position(tp) < end[tp]
        ]:
            for tp, records in (await reader.getmany(timeout_ms=500)).items():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    lines.append(
                        (tp.topic, tp.partition, record.offset, key, record.value.decode())
                    )
        for topic, partition, offset, key, value in sorted(lines):
            print(f"{topic}[{partition}]@{offset}  {key}  {value}")
        received = len(lines)
    return received


def run_demo(settings: Settings, *, bring_up: bool = True) -> int:
    from brokerflow.stack import ServiceState, Stack

    stack = Stack(settings)
    if bring_up:
        _section("local stack (brokerflow stack up)")

        def show(state: ServiceState) -> None:
            print(f"  {state.name:<6} {state.state:<8} {state.endpoint}")

        stack.up(report=show)

    _section("topic catalog (brokerflow topics)")
    for spec in catalog(settings):
        print(f"  {spec.name:<24} {spec.partitions:>2} partitions, key={spec.key}")

    _section("smoke pipeline: one message per family, in a transaction, read back committed")
    received = asyncio.run(_smoke_pipeline(settings))
    print(f"  {received} of {len(EXAMPLES)} messages read back with isolation read_committed")

    _section("tail a topic yourself")
    print(
        f"  kcat -b {settings.kafka_bootstrap_servers} -C -t {catalog(settings).order_events.name}"
        " -o beginning -e -f '%k  %s\\n'"
    )
    return 0 if received == len(EXAMPLES) else 1
