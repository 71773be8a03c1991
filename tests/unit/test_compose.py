"""docker-compose.yml parses, holds the stack the issue names, and hard-codes no secret."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    pytest.fail("neither docker-compose nor the docker compose plugin is installed (bootstrap.sh)")


def _config(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"} | extra_env
    return subprocess.run(
        [*_compose(), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=60,
    )


def test_compose_file_parses_with_the_expected_services() -> None:
    result = _config({"GRAFANA_ADMIN_PASSWORD": "from-dot-env"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for service in (
        "kafka:",
        "mongo:",
        "redis:",
        "prometheus:",
        "grafana:",
        "topics:",
        "exchange:",
        "ingest:",
        "stats:",
    ):
        assert f"\n  {service}" in text
    assert "image: mongo:7" in text
    assert "KAFKA_PROCESS_ROLES: broker,controller" in text


def test_grafana_password_must_come_from_the_environment() -> None:
    result = _config({})
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_the_init_service_runs_a_command_the_cli_accepts() -> None:
    from brokerflow.cli import build_parser

    result = _config({"GRAFANA_ADMIN_PASSWORD": "x"})
    assert result.returncode == 0, result.stderr
    assert "command:\n    - topics\n    - --create\n" in result.stdout
    assert build_parser().parse_args(["topics", "--create"]).create is True


def test_service_entrypoints_name_modules_that_exist() -> None:
    import importlib.util

    result = _config({"GRAFANA_ADMIN_PASSWORD": "x"})
    assert result.returncode == 0, result.stderr
    for module in ("brokerflow.flows.ingest", "brokerflow.flows.stats", "brokerflow.app"):
        assert f"- {module}\n" in result.stdout
        assert importlib.util.find_spec(module) is not None, module
