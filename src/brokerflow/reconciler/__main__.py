"""``python -m brokerflow.reconciler``: the reconciler, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import sys

from brokerflow.reconciler.service import run_reconciler
from brokerflow.service_main import run_service

if __name__ == "__main__":
    sys.exit(run_service("reconciler", run_reconciler))
