"""A Faust app whose one agent does nothing: the ceiling Faust's delivery sets on any agent.

Run by ``bench/bench_exchange_agents.py`` on the same command topic the exchange read, with the
exchange's settings (exactly-once, the same commit interval and batch size) and the worker's
delivery loop (:mod:`brokerflow.agents.delivery`, unless ``EXCHANGE_DIRECT_DELIVERY=false``).
Prints one line, ``null agent: N records, R/s``, timed from the first batch, then exits.
"""

from __future__ import annotations

import os
import time
from typing import Any

import faust

from brokerflow.agents.delivery import install_direct_delivery
from brokerflow.settings import get_settings

settings = get_settings()
if settings.exchange_direct_delivery:
    install_direct_delivery()  # the exchange worker's delivery loop

app = faust.App(
    os.environ["NULL_APP_ID"],
    broker=f"kafka://{settings.kafka_bootstrap_servers}",
    store="memory://",
    processing_guarantee="exactly_once",
    broker_commit_interval=settings.exchange_commit_interval_s,
    broker_commit_every=None,
    consumer_auto_offset_reset="earliest",
    key_serializer="raw",
    value_serializer="raw",
    autodiscover=False,
    web_port=int(os.environ.get("NULL_WEB_PORT", "26199")),
    topic_partitions=settings.topic_partitions,
)
topic = app.topic(
    os.environ["NULL_TOPIC"],
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
expected = int(os.environ["NULL_RECORDS"])
seen = 0
first: float | None = None


@app.agent(topic)
async def count(stream: Any) -> None:
    global seen, first
    async for batch in stream.take_events(
        settings.exchange_batch_max, within=settings.exchange_batch_within_s
    ):
        if first is None:
            first = time.monotonic()
        seen += len(batch)
        if seen >= expected:
            rate = expected / max(time.monotonic() - first, 1e-9)
            print(f"null agent: {expected} records, {rate:.0f}/s", flush=True)
            os._exit(0)
