#!/usr/bin/env bash
# Installs what brokerflow needs on a fresh Debian machine: system packages, then a virtualenv
# with the pinned Python dependencies. Idempotent: a second run takes seconds.
# `brokerflow stack up` then uses Maven to fetch Kafka's jars and Go to build FerretDB.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v kcat >/dev/null || need_apt+=(kcat)
# Only to check that docker-compose.yml parses; no Docker engine is needed or used.
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
# The dashboard's browser test drives Debian's Chromium (scripts/test.sh asks for it).
if [ "${BROKERFLOW_BROWSER:-0}" = 1 ]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: please install ${need_apt[*]} (Debian: sudo apt-get install -y ${need_apt[*]})" >&2
    exit 1
  fi
fi

# Debian's Go is too old for FerretDB 1.24 (it needs Go 1.24+): install Go from go.dev.
command -v go >/dev/null || { echo "bootstrap: Go 1.24+ is required to build FerretDB; see https://go.dev/doc/install" >&2; exit 1; }

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.brokerflow-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "bootstrap: pip install -e .[test] (pinned by constraints.txt)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
  touch "$stamp"
fi
