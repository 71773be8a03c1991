#!/usr/bin/env bash
# The test command: installs what is missing, then runs lint and every test. The integration
# tests' session fixture brings the local stack up itself (and reuses one that is running).
set -euo pipefail
cd "$(dirname "$0")/.."
BROKERFLOW_BROWSER=1 bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest exits 5 when nothing was collected: that is a broken selection, not a pass.
if [ "$status" = 5 ]; then echo "test.sh: pytest collected no tests" >&2; exit 1; fi
exit "$status"
