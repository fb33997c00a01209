#!/usr/bin/env bash
# Fill gpu_bundle/ (ignored by git) with the Python packages the lent GPU machine lacks, for
# CPython 3.12 on manylinux x86_64: pinned pure-Python wheels and PyTorch3D (easypytorch3d
# 0.7.9.post1, cp312) recompressed as .tar.xz, with MANIFEST.tsv (sha256 of every file).
# Idempotent: files that match the manifest are kept. Prints each file's size and the total with
# the tracked files (at most 60 MiB: the device tool carries 64 MiB). See scripts/gpu_bundle.py.
#   bash scripts/gpu_bundle.sh            (PYTHON=... picks the interpreter that runs pip)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" scripts/gpu_bundle.py build gpu_bundle
