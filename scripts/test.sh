#!/usr/bin/env bash
# Set up the environment if needed, then run the test suite (CPU only, no network, no licensed files).
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
