"""``python -m brokerflow.participants``: the simulated market makers and taker, until SIGTERM."""

from __future__ import annotations

import sys

from brokerflow.participants.service import run_participants
from brokerflow.service_main import run_service

if __name__ == "__main__":
    sys.exit(run_service("participants", run_participants))
