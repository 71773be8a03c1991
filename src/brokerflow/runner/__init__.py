"""`brokerflow run`: the whole system as supervised child processes.

Reading guide: :mod:`~brokerflow.runner.services` (what runs: the service list, as data),
:mod:`~brokerflow.runner.policy` (pure decisions: restart backoff, ``--for`` durations, ports,
``--only``/``--without``), :mod:`~brokerflow.runner.supervisor` (the processes: start, watch,
restart, stop, no orphans), :mod:`~brokerflow.runner.status` (the state file and the
``brokerflow ps`` table) and :mod:`~brokerflow.runner.system` (the command: stack, catalog,
services, the start-up printout).
"""

from brokerflow.runner.policy import RestartPolicy, parse_duration, parse_names
from brokerflow.runner.services import SERVICE_NAMES, HttpCheck, PortCheck, ServiceSpec
from brokerflow.runner.supervisor import RunnerError, Supervisor
from brokerflow.runner.system import run_system, show_status

__all__ = [
    "SERVICE_NAMES",
    "HttpCheck",
    "PortCheck",
    "RestartPolicy",
    "RunnerError",
    "ServiceSpec",
    "Supervisor",
    "parse_duration",
    "parse_names",
    "run_system",
    "show_status",
]
