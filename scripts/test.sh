#!/usr/bin/env bash
# Set up .venv (see setup_venv.sh) and run the test suite: 2 CPU cores, no GPU, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q "$@"
