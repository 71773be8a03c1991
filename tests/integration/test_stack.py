"""`brokerflow stack up` is idempotent, health-checked, and creates the topic catalog."""

from __future__ import annotations

import json
import subprocess

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from brokerflow.stack import Stack
from brokerflow.topics import RETAIN_FOREVER, catalog


def test_second_up_starts_nothing_and_reports_healthy(stack: Stack) -> None:
    states = stack.up()
    assert {state.name for state in states} == {"kafka", "redis", "mongo"}
    assert all(state.state in ("running", "external") for state in states)
    assert all(state.state in ("running", "external") for state in stack.status())


def test_kcat_lists_every_catalog_topic_with_its_partitions(stack: Stack) -> None:
    kcat = stack.kcat()
    assert kcat is not None, "kcat is part of the stack (apt-get install -y kcat)"
    listing = subprocess.run(
        [kcat, "-b", stack.settings.kafka_bootstrap_servers, "-L", "-J"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    topics = {
        topic["topic"]: len(topic["partitions"]) for topic in json.loads(listing.stdout)["topics"]
    }
    for spec in catalog(stack.settings):
        assert topics.get(spec.name) == spec.partitions, spec.name


async def test_topics_carry_the_catalog_retention(stack: Stack) -> None:
    topics = catalog(stack.settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.order_events.name)]
        )
    finally:
        await admin.close()
    configs = {entry[0]: entry[1] for entry in described[0].resources[0][4]}
    assert configs["retention.ms"] == str(RETAIN_FOREVER)
    assert configs["cleanup.policy"] == "delete"
