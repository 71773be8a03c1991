#!/usr/bin/env bash
# The main job: installs what is missing, brings the local stack up and runs the demo on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/brokerflow demo "$@"
