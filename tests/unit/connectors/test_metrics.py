"""The metrics registry: the seed's names exist, values are readable, the server serves them."""

from __future__ import annotations

import httpx

from brokerflow.metrics import (
    KAFKA_PUBLISH_SUCCESS,
    VENDOR_TO_KAFKA_LATENCY,
    WINDOW_LATENESS,
    metric_value,
    start_metrics_server,
)


def test_values_are_readable_by_name_and_labels() -> None:
    before = metric_value("kafka_publish_success_total", topic="market.trades.raw")
    KAFKA_PUBLISH_SUCCESS.labels(topic="market.trades.raw").inc(3)
    VENDOR_TO_KAFKA_LATENCY.labels(vendor="binance").observe(0.042)
    WINDOW_LATENESS.labels(flow="bars").observe(0.0)

    assert metric_value("kafka_publish_success_total", topic="market.trades.raw") == before + 3
    assert metric_value("vendor_to_kafka_latency_seconds_count", vendor="binance") >= 1
    assert metric_value("never_heard_of_it_total") == 0.0


def test_the_metrics_server_exposes_every_family() -> None:
    server, thread = start_metrics_server(0, "127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    for family in [
        "vendor_fetch_success_total",
        "vendor_fetch_failure_total",
        "vendor_reconnects_total",
        "dead_letters_total",
        "kafka_publish_success_total",
        "kafka_publish_failure_total",
        "vendor_to_kafka_latency_seconds",
        "window_lateness_seconds",
        "window_late_events_dropped_total",
        "process_cpu_seconds_total",
    ]:
        assert f"# TYPE {family.removesuffix('_total')}" in text, family
