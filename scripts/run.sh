#!/usr/bin/env bash
# The main job: installs what is missing, then `brokerflow run`: the local stack and every service
# (exchange and accounts worker, ingest of the bundled tape looping at now, live stats, the API on
# 127.0.0.1:8000, the projector, notifications, price alerts, the reconciler) until Ctrl-C. Arguments go to
# `brokerflow run` (--for 2m, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/brokerflow run "$@"
