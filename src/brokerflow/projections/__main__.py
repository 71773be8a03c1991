"""``python -m brokerflow.projections``: the read-model projector, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import sys

from brokerflow.projections.projector import run_projector
from brokerflow.service_main import run_service

if __name__ == "__main__":
    sys.exit(run_service("projections", run_projector))
