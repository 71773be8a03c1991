"""Prometheus and Grafana files: they parse, scrape every service, and name metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from brokerflow.metrics import REGISTRY
from brokerflow.runner.services import SERVICE_NAMES, ServiceSpec
from brokerflow.runner.system import write_prometheus_targets

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
_PROMQL_WORDS = {"sum", "max", "min", "avg", "rate", "histogram_quantile", "by", "le"}


def exposed_names() -> set[str]:
    """Every series name brokerflow's registry can expose."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    without_groupings = re.sub(r"by \([^)]*\)", "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_groupings)
    return {t for t in re.findall(r"[a-z_][a-z0-9_]*", without_ranges) if t not in _PROMQL_WORDS}


def test_prometheus_scrapes_every_service_of_brokerflow_run() -> None:
    config = yaml.safe_load((CONFIG / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {f"brokerflow-{name}" for name in SERVICE_NAMES}
    for name in SERVICE_NAMES:
        assert jobs[f"brokerflow-{name}"]["static_configs"] == [{"targets": [f"{name}:9100"]}]


def test_the_local_config_reads_the_targets_brokerflow_run_writes(tmp_path: Path) -> None:
    config = yaml.safe_load((CONFIG / "prometheus" / "local.yml").read_text())
    (job,) = config["scrape_configs"]
    (discovery,) = job["file_sd_configs"]
    assert discovery["files"] == [".stack/run/prometheus-targets.json"]  # STACK_DIR's default
    specs = [
        ServiceSpec("api", ("x",), metrics_port=9103),
        ServiceSpec("stats", ("x",), metrics_port=9102),
        ServiceSpec("nothing", ("x",)),
    ]
    written = json.loads(write_prometheus_targets(tmp_path / "t.json", specs).read_text())
    assert written == [
        {"targets": ["127.0.0.1:9103"], "labels": {"service": "api"}},
        {"targets": ["127.0.0.1:9102"], "labels": {"service": "stats"}},
    ]


def test_grafana_is_provisioned_with_the_datasource_its_panels_use() -> None:
    sources = yaml.safe_load(
        (CONFIG / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = sources["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    providers = yaml.safe_load(
        (CONFIG / "grafana" / "provisioning" / "dashboards" / "brokerflow.yml").read_text()
    )
    (provider,) = providers["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./config/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    dashboard: dict[str, Any] = json.loads(
        (CONFIG / "grafana" / "dashboards" / "brokerflow.json").read_text()
    )
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])


def test_every_metric_the_dashboards_plot_is_one_brokerflow_exports() -> None:
    dashboard = json.loads((CONFIG / "grafana" / "dashboards" / "brokerflow.json").read_text())
    exposed = exposed_names()
    plotted: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            plotted |= metric_names(target["expr"])
    assert plotted, "no metric found in the dashboard"
    assert plotted - exposed == set()
    # The must-haves: throughput, lag, exchange orders and trades, latency histograms.
    assert {
        "kafka_publish_success_total",
        "consumer_group_lag",
        "exchange_events_total",
        "http_request_duration_seconds_bucket",
    } <= plotted


def test_the_metric_name_check_catches_a_typo() -> None:
    assert metric_names("sum by (topic) (rate(kafka_publsh_success_total[1m]))") == {
        "kafka_publsh_success_total"
    }
    assert "kafka_publsh_success_total" not in exposed_names()
