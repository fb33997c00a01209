#!/usr/bin/env bash
# One prepared check of the CUDA path, measuring it; everything it reports goes to OUT.
#
#   bash scripts/gpu_check.sh [--quick] [--device cuda|cpu]
#
# Run from anywhere (it works in the repository root). It
#   0. installs gpu_bundle/ when present (scripts/gpu_bundle.sh made it; checksums verified; no
#      network: the packages the Python lacks are unpacked into a folder put on PYTHONPATH), prints
#      nvidia-smi and the versions, and builds the embedded default data (prepare_data.sh);
#   1. runs `pytest -m cuda --runslow` (every CUDA test) and the CPU-vs-device agreement check of
#      both render backends and of pytorch3d against the exact window backend (gpu_check.py agree);
#   2. the render benchmark for both backends at B = 32, 64, 128 and the original's structure of
#      nine 3-channel renders at B = 32 (bench_render.py --sweep);
#   3. the training-step split (bench.py): ResNet-50, 224 px, batch 128, fp32;
#   4. a real train.py run on the embedded default at 224 px (ResNet-50, batch 128, 200 steps, DSR
#      from the start, 16-mixed) and its evaluation on synthetic-test, images/s of both;
#      then 3b. the training-step split in 16-mixed, and of HRNet-W32 (fp32) (the steps run in
#      this order: what the issue must show first, so that a short budget cuts the extras);
#   5. the whole training step fed by the DataLoader on 1000 x 1000 frames vs from memory, with
#      2, half the cores and all but one core as workers (bench_feed.py: the cores a GPU needs).
# After every step OUT/summary.md (every figure, each step's status), OUT/results.json and
# OUT/logs.tar.gz (raw logs) are rewritten, so a run cut short still reports what it did. Each step
# runs under `timeout` within a global budget (480 s; --quick: 180 s; --device cpu: 900 s;
# GPU_CHECK_BUDGET_S), and a
# failed or timed-out step is recorded and the next one runs.
#
# --quick      smaller sizes (fewer samples, batches and steps) for a 3-minute run
# --device cpu the same steps at toy sizes on the CPU (renders at 32-48 px, training at 128 px,
#              batch 2, a few steps; the train.py run in fp32): proves the script and every code path
#              it drives, measures nothing
# Environment: OUT (default logs/gpu_check/<stamp>), PYTHON (default .venv/bin/python if present,
# else python3), GPU_CHECK_WORK (scratch folder: data runs, checkpoints; default a new /tmp folder),
# GPU_CHECK_BUDGET_S. The synthetic data go to ./dsr_data as prepare_data.sh puts them (an
# existing set is reused).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUICK=0
DEVICE=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --device) DEVICE="${2:-}"; shift ;;
    --device=*) DEVICE="${1#*=}" ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (expected --quick, --device cuda|cpu)" >&2; exit 2 ;;
  esac
  shift
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_check: --device must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;; esac
MODE=full; [ "$QUICK" = 1 ] && MODE=quick
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
OUT="${OUT:-logs/gpu_check/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK="${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/dsr_gpu_check.XXXXXX")}"
mkdir -p "$WORK/logs" && WORK=$(cd "$WORK" && pwd)
: > "$WORK/steps.tsv"
if [ -n "${GPU_CHECK_BUDGET_S:-}" ]; then BUDGET=$GPU_CHECK_BUDGET_S
elif [ "$DEVICE" = cpu ]; then BUDGET=900
elif [ "$QUICK" = 1 ]; then BUDGET=180
else BUDGET=480; fi
RESERVE=8  # seconds kept for the last summary
T0=$(date +%s)
NPROC=$(nproc 2>/dev/null || echo 2)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# ----------------------------------------------------------------------------- sizes
# RES: crop of training / bench.py, RRES: render benchmark; NW: train.py DataLoader workers, BNW:
# bench.py's (fewer: its data row needs workers x 2 + 5 batches of the training set)
if [ "$DEVICE" = cuda ]; then
  ACC=gpu; RES=224; RRES=224; THREADS=$(( NPROC < 8 ? NPROC : 8 )); NW=$(( NPROC - 2 < 8 ? NPROC - 2 : 8 ))
  [ "$NW" -lt 1 ] && NW=1
  BNW=$(( NW < 4 ? NW : 4 )); DW=$(( NPROC < 16 ? NPROC : 16 ))
  AGREE="--batch 2 --img-res 112 --cross-batch 8 --cross-res 224"
  if [ "$QUICK" = 1 ]; then
    N_TRAIN=512; N_TEST=128; RB=32,128; RSEP=32; RSEPB=pytorch3d; RREPS=1
    BB=128; BSTEPS=1; TB=64; TSTEPS=40; TPREC=16-mixed
  else
    N_TRAIN=2000; N_TEST=500; RB=32,64,128; RSEP=32; RSEPB=pytorch3d,window; RREPS=2
    BB=128; BSTEPS=3; TB=128; TSTEPS=200; TPREC=16-mixed
  fi
  CAPS=(env=60 data=150 tests=150 agree=90 render=180 bench_fp32=120 bench_amp=120 train=240 bench_hrnet=120 feed=180)
  FEED=(--batch-size 64 --precision 16-mixed --workers 2 $(( NPROC / 2 > 2 ? NPROC / 2 : 3 )) $(( NPROC - 1 > 1 ? NPROC - 1 : 1 )))
  if [ "$QUICK" = 1 ]; then FEED+=(--steps 6 --frames 24); else FEED+=(--steps 15 --frames 48); fi
else
  # toy sizes: every step once, quickly (PyTorch3D's CPU rasterizer is the naive one)
  # (128 px: smaller crops miss the DSR-MC masks' minimum pixel counts; the renders alone at 32-48 px)
  ACC=cpu; RES=128; RRES=32; THREADS=2; NW=1; BNW=1; DW=1
  AGREE="--batch 1 --img-res 32 --cross-batch 1 --cross-res 48 --threads 2"
  N_TRAIN=16; N_TEST=12; RB=1; RSEP=1; RSEPB=window; RREPS=1
  # the train.py run in fp32: CPU autocast (bf16) is slow without bf16 hardware; bench_amp covers it
  BB=2; BSTEPS=1; TB=2; TSTEPS=4; TPREC=32
  CAPS=(env=60 data=150 tests=240 agree=120 render=180 bench_fp32=150 bench_amp=150 train=240 bench_hrnet=150 feed=150)
  FEED=(--backbone resnet18 --img-res 128 --batch-size 2 --precision 32 --steps 2 --workers 0 1 --frames 4 --size 320x240)
fi
cap_of() { local kv; for kv in "${CAPS[@]}"; do [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }; done; echo 60; }

# ----------------------------------------------------------------------------- step runner
summarize() {
  "$PY" scripts/gpu_check.py summary --work "$WORK" --out "$OUT" --device "$DEVICE" --mode "$MODE" \
    --budget "$BUDGET" > "$WORK/logs/summary.log" 2>&1 \
    || { echo "[gpu_check] writing the summary failed:"; tail -n 20 "$WORK/logs/summary.log"; }
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "logs/$1.log" >> "$WORK/steps.tsv"; }
step() {  # step NAME CMD... : run CMD under the step's time limit, log to logs/NAME.log, record it
  local name=$1; shift
  local cap; cap=$(cap_of "$name")
  local left=$(( BUDGET - ($(date +%s) - T0) - RESERVE ))
  local log="$WORK/logs/$name.log"
  if [ "$left" -lt 10 ]; then
    echo "[gpu_check] $name: skipped (global budget of ${BUDGET} s spent)"
    echo "skipped: the global budget of ${BUDGET} s was spent" > "$log"
    record "$name" "skipped (budget)" 0
    summarize
    return 0
  fi
  local lim=$(( cap < left ? cap : left ))
  echo "[gpu_check] $(date +%H:%M:%S) $name (limit ${lim} s): $*"
  local t0; t0=$(date +%s)
  timeout -k 10 "$lim" "$@" > "$log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local status
  case $rc in
    0) status=ok ;;
    124|137) status="timeout (${lim} s)" ;;
    *) status="failed (exit $rc)" ;;
  esac
  echo "[gpu_check] $name: $status in ${dt} s"
  [ "$rc" = 0 ] || tail -n 15 "$log" | sed 's/^/    /'
  record "$name" "$status" "$dt"
  summarize
  return 0
}

echo "[gpu_check] device $DEVICE, $MODE, budget ${BUDGET} s; python: $PY; results: $OUT; scratch: $WORK"

# ----------------------------------------------------------------------------- 0. environment
if [ -f gpu_bundle/MANIFEST.tsv ]; then
  step bundle "$PY" scripts/gpu_bundle.py install gpu_bundle "$WORK/site" --json "$WORK/bundle.json"
  export PYTHONPATH="$ROOT:$WORK/site${PYTHONPATH#"$ROOT"}" GPU_CHECK_SITE="$WORK/site"
else
  echo "[gpu_check] no gpu_bundle/: using the packages of $PY as they are"
fi
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi 2>&1 | tee "$WORK/logs/nvidia-smi.log"
else
  echo "nvidia-smi: not found" | tee "$WORK/logs/nvidia-smi.log"
fi
REQ=""; [ "$DEVICE" = cuda ] && REQ=--require-cuda
step env "$PY" scripts/gpu_check.py env --json "$WORK/env.json" $REQ
sed 's/^/    /' "$WORK/logs/env.log"
if [ "$DEVICE" = cuda ] && ! grep -q '"cuda_available": true' "$WORK/env.json" 2>/dev/null; then
  echo "[gpu_check] no CUDA device visible to torch (see $OUT/summary.md); stopping. Use --device cpu without a GPU." >&2
  summarize
  exit 3
fi
step data env N_TRAIN=$N_TRAIN N_TEST=$N_TEST WORKERS=$DW PYTHON="$PY" bash prepare_data.sh

# ----------------------------------------------------------------------------- 1. tests, agreement
step tests "$PY" -m pytest -m cuda --runslow -q -rfEs -p no:cacheprovider --junitxml="$WORK/logs/pytest.xml" tests
step agree "$PY" scripts/gpu_check.py agree --device "$DEVICE" $AGREE --json "$WORK/agree.json"

# ----------------------------------------------------------------------------- 2. render benchmark
step render "$PY" benchmarks/bench_render.py --device "$DEVICE" --sweep --img-res "$RRES" --batches "$RB" \
  --separate-batch "$RSEP" --separate-backends "$RSEPB" --reps "$RREPS" --threads "$THREADS" \
  --child-timeout "$(cap_of render)" --json "$WORK/render.json"

# ----------------------------------------------------------------------------- 3. training-step split
BENCH=("$PY" benchmarks/bench.py --cfg configs/quickstart_train.cfg --device "$DEVICE" --img-res "$RES"
       --batch-size "$BB" --steps "$BSTEPS" --threads "$THREADS"
       --opts DATASET.NUM_WORKERS "$BNW" DATASET.PIN_MEMORY True DSR.START_DSR -1)
step bench_fp32 "${BENCH[@]}" --backbone resnet50 --precision 32 --out "$WORK/bench_fp32.md" --json "$WORK/bench_fp32.json"

# ----------------------------------------------------------------------------- 4. train.py + evaluation
rm -rf "$WORK/train"
mkdir -p "$WORK/train"
step train env DSR_RUN_DIR="$WORK/train" "$PY" train.py --cfg configs/quickstart_train.cfg --opts \
  DSR.BACKBONE resnet50 DATASET.IMG_RES "$RES" DATASET.FOCAL_LENGTH "$("$PY" -c "print(5000.0 * $RES / 224)")" \
  DATASET.BATCH_SIZE "$TB" DATASET.NUM_WORKERS "$NW" DATASET.PIN_MEMORY True \
  TRAINER.ACCELERATOR "$ACC" TRAINER.PRECISION "$TPREC" TRAINING.MAX_STEPS "$TSTEPS" TRAINING.MAX_EPOCHS 100000 \
  DSR.START_DSR -1 PL_LOGGING False RUN_TEST False TRAINING.SAVE_IMAGES False TESTING.SAVE_IMAGES False \
  TRAINING.CHECK_VAL_EVERY_N_EPOCH 100000

# ----------------------------------------------------------------------------- 3b. 16-mixed, HRNet-W32
step bench_amp "${BENCH[@]}" --backbone resnet50 --precision 16-mixed --out "$WORK/bench_amp.md" --json "$WORK/bench_amp.json"
step bench_hrnet "${BENCH[@]}" --backbone hrnet_w32 --precision 32 --out "$WORK/bench_hrnet.md" --json "$WORK/bench_hrnet.json"

# ----------------------------------------------------------------------------- 5. loader vs memory
step feed "$PY" benchmarks/bench_feed.py --device "$DEVICE" --threads "$THREADS" --work "$WORK/feed_data" \
  "${FEED[@]}" --json "$WORK/feed.json" --out "$WORK/feed.md"

summarize
echo "[gpu_check] done in $(( $(date +%s) - T0 )) s: $OUT/summary.md"
cut -f1,2,3 "$WORK/steps.tsv" | sed 's/^/    /'
