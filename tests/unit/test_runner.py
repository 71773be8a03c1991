"""The supervisor's pure parts: restart backoff, durations, selection, ports, the status table."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from brokerflow.errors import ConfigError
from brokerflow.runner import policy, services
from brokerflow.runner.policy import (
    RestartPolicy,
    allocate_block,
    allocate_ports,
    format_duration,
    parse_duration,
    parse_names,
    select_services,
)
from brokerflow.runner.services import SERVICE_NAMES, HttpCheck, PortCheck, system_services
from brokerflow.runner.status import (
    RunRecord,
    ServiceRecord,
    read_state,
    render_status,
    write_state,
)
from brokerflow.runner.supervisor import describe_exit
from brokerflow.settings import Settings


# --- restarts ------------------------------------------------------------------------------------
def test_the_backoff_doubles_from_one_second_up_to_thirty() -> None:
    rules = RestartPolicy()

    assert [rules.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_quick_exits_in_a_row_back_off_and_turn_into_failing() -> None:
    rules = RestartPolicy()
    failures, seen = 0, []
    for _ in range(7):
        decision = rules.after_exit(failures, uptime_s=2.0)
        failures = decision.failures
        seen.append((decision.failures, decision.delay_s, decision.failing))

    assert seen == [
        (1, 1, False),
        (2, 2, False),
        (3, 4, True),
        (4, 8, True),
        (5, 16, True),
        (6, 30, True),
        (7, 30, True),
    ]


def test_a_child_that_ran_long_enough_starts_over_at_one_second() -> None:
    rules = RestartPolicy()

    assert rules.after_exit(5, uptime_s=29.9).delay_s == 30
    after_a_stable_run = rules.after_exit(5, uptime_s=30.0)
    assert (after_a_stable_run.failures, after_a_stable_run.delay_s) == (1, 1)
    assert not after_a_stable_run.failing


def test_a_policy_of_its_own_follows_its_numbers() -> None:
    rules = RestartPolicy(initial_s=0.5, factor=3, max_s=10, stable_after_s=5, failing_after=2)

    assert [rules.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10, 10]
    assert rules.after_exit(1, uptime_s=4).failing
    with pytest.raises(ValueError, match="from 1"):
        rules.delay(0)


def test_exit_statuses_read_as_words() -> None:
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"


# --- durations, names, ports ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60),
        ("90", 90),
        ("2m", 120),
        ("1h", 3600),
        ("1m30s", 90),
        ("1h2m3s", 3723),
        ("1.5m", 90),
        (" 40S ", 40),
        ("0.5", 0.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "0", "0s", "-5s", "5x", "1m1h", "2m2m", "1 m", "m5"])
def test_what_is_not_a_duration_is_refused_with_the_forms_that_are(text: str) -> None:
    with pytest.raises(ConfigError, match=r"60s, 90 \(seconds\), 2m, 1h or 1m30s"):
        parse_duration(text)


def test_uptimes_read_at_a_glance() -> None:
    assert [format_duration(s) for s in (0, 59.99, 60, 302, 3599, 3600, 11_220, -3)] == [
        "0s",
        "59s",
        "1m00s",
        "5m02s",
        "59m59s",
        "1h00m",
        "3h07m",
        "0s",
    ]


def test_only_and_without_select_in_start_order() -> None:
    assert parse_names(" api, exchange ,") == ["api", "exchange"]
    assert parse_names(None) == []
    assert select_services(SERVICE_NAMES) == list(SERVICE_NAMES)
    assert select_services(SERVICE_NAMES, only=["api", "exchange"]) == ["exchange", "api"]
    assert select_services(SERVICE_NAMES, without=["ingest"]) == [
        "exchange",
        "stats",
        "api",
        "projector",
        "notifications",
        "alerts",
        "reconciler",
        "participants",
        "dashboard",
    ]
    assert select_services(SERVICE_NAMES, only=["api", "stats"], without=["api"]) == ["stats"]


def test_an_unknown_or_empty_selection_is_refused() -> None:
    with pytest.raises(ConfigError, match="no service 'web'; the services are exchange, ingest"):
        select_services(SERVICE_NAMES, without=["web"])
    with pytest.raises(ConfigError, match="no service to run"):
        select_services(SERVICE_NAMES, only=["api"], without=["api"])


def test_ports_skip_the_busy_and_the_taken() -> None:
    busy = {9101, 9104}

    assert allocate_ports(9100, 4, lambda p: p not in busy, taken=[9102]) == [
        9100,
        9103,
        9105,
        9106,
    ]
    # A block of 3 must not hold 6067 (busy) or 6070 (taken): 6071..6073.
    assert allocate_block(6066, 3, lambda p: p != 6067, taken=[6070]) == 6071
    with pytest.raises(ConfigError, match="no 2 free ports"):
        allocate_ports(65535, 2, lambda p: True)


def test_the_module_examples_run() -> None:
    outcome = doctest.testmod(policy)
    assert (outcome.failed, outcome.attempted > 0) == (0, True)


# --- the service list ----------------------------------------------------------------------------
def test_the_system_services_get_their_own_ports_and_run_settings(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        stack_dir=tmp_path,
        metrics_port=9100,
        api_port=18000,
        exchange_web_port_base=6066,
        exchange_worker_slots=2,
    )
    free = services.port_is_free

    specs = {spec.name: spec for spec in system_services(settings)}

    assert list(specs) == list(SERVICE_NAMES)
    ports = [spec.metrics_port for spec in specs.values()]
    assert len(set(ports)) == len(SERVICE_NAMES)
    assert all(port is not None and port >= 9100 and free(port) for port in ports)
    for spec in specs.values():
        assert spec.env["METRICS_PORT"] == str(spec.metrics_port)
    assert specs["ingest"].env["TAPE_LOOP"] == specs["ingest"].env["TAPE_SHIFT_TO_NOW"] == "true"
    assert specs["ingest"].env["TAPE_REPLAY_SPEED"] == "1"
    flat_out = settings.model_copy(update={"tape_replay_speed": 0})
    faster = settings.model_copy(update={"tape_replay_speed": 2.5})
    # Never a flood that never ends; another pace when asked for one.
    assert system_services(flat_out, ("ingest",))[0].env["TAPE_REPLAY_SPEED"] == "1"
    assert system_services(faster, ("ingest",))[0].env["TAPE_REPLAY_SPEED"] == "2.5"
    assert specs["stats"].env["STATS_STOP_AT_END"] == "false"
    assert specs["ingest"].health == HttpCheck(f"http://127.0.0.1:{ports[1]}/metrics")
    web = int(specs["exchange"].env["EXCHANGE_WEB_PORT_BASE"])
    assert specs["exchange"].health == PortCheck("127.0.0.1", (web, web + 1))
    assert specs["exchange"].argv[1:] == (
        "-m",
        "faust",
        "-A",
        "brokerflow.app",
        "worker",
        "-l",
        "info",
    )
    assert specs["api"].argv[-4:] == ("--host", "127.0.0.1", "--port", "18000")
    assert specs["api"].url == "http://127.0.0.1:18000"
    # Leaving services out keeps the others' ports.
    chosen = system_services(settings, ("stats", "api"))
    assert [(s.name, s.metrics_port) for s in chosen] == [
        ("stats", specs["stats"].metrics_port),
        ("api", specs["api"].metrics_port),
    ]


def test_health_checks_answer_no_for_a_closed_port_and_none_without_a_check() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        # Bound but not listening: nothing answers.
        assert services.healthy(PortCheck("127.0.0.1", (port,))) is False
        assert services.healthy(HttpCheck(f"http://127.0.0.1:{port}/metrics")) is False
        assert not services.port_is_free(port)
    assert services.healthy(None) is None


# --- the status table ----------------------------------------------------------------------------
NOW = 1_800_000_000.0


def _run(**overrides: object) -> RunRecord:
    base = RunRecord(
        pid=4000,
        pid_ticks=11,
        started_at=NOW - 302,
        stop_at=None,
        services=(
            ServiceRecord(
                "exchange",
                "running",
                "/s/logs/run-exchange.log",
                url="http://127.0.0.1:6066",
                metrics_port=9100,
                pid=4001,
                pid_ticks=12,
                started_at=NOW - 300,
            ),
            ServiceRecord(
                "api",
                "failing",
                "/s/logs/run-api.log",
                url="http://127.0.0.1:8000",
                metrics_port=9103,
                restarts=4,
                last_exit="exit status 1",
                next_start_at=NOW + 8,
            ),
            ServiceRecord(
                "stats",
                "running",
                "/s/logs/run-stats.log",
                metrics_port=9102,
                pid=4003,
                pid_ticks=14,
                started_at=NOW - 61,
                restarts=1,
            ),
        ),
    )
    return RunRecord(**{**base.to_json(), "services": base.services, **overrides})


def test_the_status_table_shows_pids_uptimes_restarts_and_waits() -> None:
    alive = {(4000, 11), (4001, 12), (4003, 14)}

    text = render_status(_run(), NOW, lambda pid, ticks: (pid, ticks) in alive)

    assert text.splitlines() == [
        "brokerflow run: pid 4000, up 5m02s, until Ctrl-C or SIGTERM",
        "service   state                           pid   uptime  restarts  url"
        "                    metrics  log",
        "exchange  running                         4001  5m00s   0         http://127.0.0.1:6066"
        "  9100     /s/logs/run-exchange.log",
        "api       failing (in 8s; exit status 1)  -     -       4         http://127.0.0.1:8000"
        "  9103     /s/logs/run-api.log",
        "stats     running                         4003  1m01s   1         -"
        "                      9102     /s/logs/run-stats.log",
    ]


def test_a_dead_pid_or_a_reused_one_is_not_shown_as_ours() -> None:
    # The stats pid now belongs to another program (other start time); the supervisor is gone.
    alive = {(4001, 12), (4003, 99)}

    text = render_status(_run(stop_at=NOW + 55), NOW, lambda pid, ticks: (pid, ticks) in alive)
    lines = text.splitlines()

    assert lines[0] == "brokerflow run is not running (pid 4000 is gone: killed?)"
    assert lines[4].split()[:5] == ["stats", "gone", "-", "-", "1"]
    assert lines[2].split()[:3] == ["exchange", "running", "4001"]


def test_a_deadline_and_a_clean_stop_read_in_the_header() -> None:
    everyone = {(4000, 11), (4001, 12), (4003, 14)}

    def alive(pid: int, ticks: int | None) -> bool:
        return (pid, ticks) in everyone

    running = render_status(_run(stop_at=NOW + 55), NOW, alive).splitlines()[0]
    stopped = render_status(_run(stopped_at=NOW - 125), NOW, alive).splitlines()[0]

    assert running == "brokerflow run: pid 4000, up 5m02s, stops in 55s"
    assert stopped == "brokerflow run is not running (pid 4000 stopped 2m05s ago)"


def test_the_state_file_round_trips_and_a_missing_one_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "run" / "run.json"

    assert read_state(path) is None
    write_state(path, _run())
    assert read_state(path) == _run()
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temporary file left
    path.write_text("{half a fi")
    assert read_state(path) is None
