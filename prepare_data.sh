#!/usr/bin/env bash
# Prepare the data tree.
#
#   bash prepare_data.sh              the embedded default: build the free body model
#                                     (dsr/assets/free_body, if absent) and the synthetic dataset
#                                     (dsr_data/dataset_folders/synthetic + dsr_data/dataset_extras/
#                                     synthetic_{train,test}.npz), then check configs/quickstart_train.cfg
#   bash prepare_data.sh /path/to/dsr_data
#                                     a licensed data tree in the original layout (reference §9):
#                                     dataset_extras/*.npz, dataset_folders/{h36m,coco,mpi_inf_3dhp,3dpw}/,
#                                     smpl/, J_regressor_{extra,h36m}.npy, smpl_mean_params.npz,
#                                     semantic_prior.npy, checkpoints: every file is linked into
#                                     ./dsr_data/, every folder's entries into ./dsr_data/<folder>/
#                                     (existing entries there are kept), then the
#                                     release configs are checked with tools/check_data.py.
# Environment: N_TRAIN (2000), N_TEST (500), SEED (0), WORKERS (2: rendering processes),
# FORCE=1 regenerates the synthetic data,
# PYTHON (default .venv/bin/python if present, else python).
# Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
fi
N_TRAIN="${N_TRAIN:-2000}"
N_TEST="${N_TEST:-500}"
SEED="${SEED:-0}"
WORKERS="${WORKERS:-2}"

if [ $# -eq 0 ]; then
  if [ ! -f dsr/assets/free_body/smpl/SMPL_NEUTRAL.npz ] || [ ! -f dsr/assets/free_body/face_parts.npy ]; then
    echo "prepare_data: building the free body model (dsr/assets/free_body)"
    bash scripts/setup.sh --build
    "$PY" tools/build_free_body.py --out dsr/assets/free_body
  fi
  mkdir -p dsr_data/dataset_extras dsr_data/dataset_folders
  if [ "${FORCE:-0}" = "1" ] || [ ! -f dsr_data/dataset_extras/synthetic_train.npz ] \
     || [ ! -f dsr_data/dataset_extras/synthetic_test.npz ]; then
    echo "prepare_data: rendering the synthetic dataset ($N_TRAIN train + $N_TEST test, seed $SEED)"
    rm -rf dsr_data/dataset_folders/synthetic
    "$PY" tools/make_synthetic.py --out dsr_data/dataset_folders/synthetic \
      --npz-dir dsr_data/dataset_extras --n-train "$N_TRAIN" --n-test "$N_TEST" --seed "$SEED" --workers "$WORKERS"
  else
    echo "prepare_data: synthetic dataset already present (FORCE=1 regenerates it)"
  fi
  "$PY" tools/check_data.py --cfg configs/quickstart_train.cfg
  exit $?
fi

SRC="$1"
if [ ! -d "$SRC" ]; then
  echo "prepare_data: '$SRC' is not a folder (expected a data tree in the dsr_data layout)" >&2
  exit 2
fi
SRC="$(cd "$SRC" && pwd)"
if [ "$SRC" = "$(pwd)/dsr_data" ]; then
  echo "prepare_data: '$SRC' is ./dsr_data itself; nothing to link"
else
  # link SRC to DST unless DST already exists (a user's file is never replaced)
  link_or_keep() {
    if [ -e "$2" ] || [ -L "$2" ]; then
      echo "prepare_data: keeping existing $2"
    else
      ln -s "$1" "$2"
      echo "prepare_data: linked $2 -> $1"
    fi
  }
  mkdir -p dsr_data
  for entry in "$SRC"/*; do
    [ -e "$entry" ] || continue
    name="$(basename "$entry")"
    if [ -d "$entry" ] && [ ! -L "dsr_data/$name" ] && [ ! -f "dsr_data/$name" ]; then
      # folders are merged one level down (dataset_extras/ and dataset_folders/ may already hold
      # the synthetic set, which must not be written into the user's tree)
      mkdir -p "dsr_data/$name"
      for sub in "$entry"/*; do
        [ -e "$sub" ] || continue
        link_or_keep "$sub" "dsr_data/$name/$(basename "$sub")"
      done
    else
      link_or_keep "$entry" "dsr_data/$name"
    fi
  done
fi
status=0
for cfg in configs/dsr_eval.cfg configs/dsr_train.cfg; do
  echo "prepare_data: checking the files of $cfg"
  "$PY" tools/check_data.py --cfg "$cfg" || status=1
done
exit $status
