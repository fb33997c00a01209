#!/usr/bin/env bash
# The main job on the embedded default (free body model + synthetic data): set up, train, evaluate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "quickstart: the end-to-end job on the embedded default is not delivered yet (it lands with the training issue)." >&2
exit 1
