#!/usr/bin/env python
"""The DSR ablation in miniature on the synthetic data (issue: evidence).

As DSR fine-tunes an HMR regressor pretrained with 3D supervision (reference §7), every variant
starts from one 3D-supervised checkpoint (``<out-dir>/pretrain-3d``: ``--pretrain-epochs`` epochs
with 3D joints and SMPL parameters, DSR off, seed 0; ``--pretrain-epochs 0`` starts from scratch),
then trains with 2D-only supervision (``DATASET.IGNORE_3D: True``: no SMPL parameters and no 3D joints
for the training items; 2D keypoints only, plus the Graphonomy-style masks for the DSR terms) the
variants below, each over several seeds with the same budget, evaluates every run on
``synthetic-test`` (3DPW protocol) and writes ``docs/ablation.md`` with mean ± std of MPJPE /
PA-MPJPE / PVE:

  2d-only            keypoints only (DSR weights 0)
  2d+dsr             + DSR-MC + DSR-C (the release weights, 0.1 each)
  2d+dsr-mc          + DSR-MC alone
  2d+dsr-c           + DSR-C alone
  2d+dsr, fix flip   + both, DSR.FLIP_SWAP_LR_MASKS True
  2d+dsr, image IoU  + both, DSR.MC_IOU_MODE 'image'
  2d+dsr, nearest masks  + both, DSR.MASK_WARP_NEAREST True

Every run is ``train.py --cfg <base cfg> --opts ...`` in its own run directory (so each can be
inspected, resumed or re-run alone); a finished run is not re-run (delete its folder to redo it).
The table goes between the marker comments of ``--doc`` (the prose around them is kept).

    python scripts/ablation.py [--cfg configs/quickstart_train.cfg] [--seeds 0 1 2] [--epochs 2]
        [--pretrain-epochs 10] [--start-dsr -1] [--variants 2d-only 2d+dsr ...] [--out-dir logs/ablation] [--doc docs/ablation.md]
        [--opts KEY VALUE ...]   (extra overrides for every run, e.g. TRAINER.ACCELERATOR gpu)
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BOTH = ["DSR.DSR_MC_LOSS_WEIGHT", "0.1", "DSR.DSR_C_LOSS_WEIGHT", "0.1"]  # the release weights
VARIANTS = {
    "2d-only": ["DSR.DSR_MC_LOSS_WEIGHT", "0.0", "DSR.DSR_C_LOSS_WEIGHT", "0.0"],
    "2d+dsr": BOTH,
    "2d+dsr-mc": ["DSR.DSR_MC_LOSS_WEIGHT", "0.1", "DSR.DSR_C_LOSS_WEIGHT", "0.0"],
    "2d+dsr-c": ["DSR.DSR_MC_LOSS_WEIGHT", "0.0", "DSR.DSR_C_LOSS_WEIGHT", "0.1"],
    "2d+dsr, fix flip": [*BOTH, "DSR.FLIP_SWAP_LR_MASKS", "True"],
    "2d+dsr, image IoU": [*BOTH, "DSR.MC_IOU_MODE", "image"],
    "2d+dsr, nearest masks": [*BOTH, "DSR.MASK_WARP_NEAREST", "True"],
}
METRICS = ("mpjpe", "pa_mpjpe", "pve")


def run_dir_name(variant: str, seed: int) -> str:
    return variant.replace("+", "_").replace(", ", "__").replace(" ", "-") + f"_seed{seed}"


def final_metrics(run_dir: str) -> dict | None:
    """The test entry of a finished run's val_accuracy_results.json, or None."""
    path = os.path.join(run_dir, "val_accuracy_results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        entries = [e[1] for e in json.load(f) if e[1].get("stage") == "test"]
    return entries[-1] if entries else None


def run_seconds(run_dir: str) -> float:
    """Wall time of a finished run: from its config_to_run.yaml (written at start) to its test result."""
    return (os.path.getmtime(os.path.join(run_dir, "val_accuracy_results.json"))
            - os.path.getmtime(os.path.join(run_dir, "config_to_run.yaml")))


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    """{variant: [metrics per seed]} -> rows with mean and (population) std per metric."""
    rows = []
    for variant, runs in results.items():
        row = {"variant": variant, "n": len(runs)}
        for m in METRICS:
            vals = np.array([r[m] for r in runs], dtype=np.float64)
            row[m] = (float(vals.mean()), float(vals.std()) if len(vals) > 1 else 0.0)
        rows.append(row)
    return rows


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| variant | seeds | MPJPE (mm) | PA-MPJPE (mm) | PVE (mm) |", "|---|---|---|---|---|"]
    for r in rows:
        cells = " | ".join(f"{r[m][0]:.1f} ± {r[m][1]:.1f}" if r["n"] > 1 else f"{r[m][0]:.1f}" for m in METRICS)
        lines.append(f"| {r['variant']} | {r['n']} | {cells} |")
    return "\n".join(lines) + "\n"


COMMON = ["PL_LOGGING", "False", "TRAINING.LOG_FREQ_TB_IMAGES", "0", "TESTING.LOG_FREQ_TB_IMAGES", "0",
          "TRAINING.SAVE_IMAGES", "False", "TESTING.SAVE_IMAGES", "False", "TRAINING.CHECK_VAL_EVERY_N_EPOCH", "1000"]


def train_run(cfg: str, run_dir: str, opts: list[str], label: str) -> dict:
    """``train.py --cfg cfg --opts ...`` in run_dir (skipped when it has a test result) -> its metrics."""
    metrics = final_metrics(run_dir)
    if metrics is not None:
        return metrics
    os.makedirs(run_dir, exist_ok=True)
    env = dict(os.environ, DSR_RUN_DIR=run_dir)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    print(f"[ablation] {label} -> {run_dir}", flush=True)
    with open(os.path.join(run_dir, "stdout.log"), "w") as log:
        rc = subprocess.call([sys.executable, os.path.join(REPO, "train.py"), "--cfg", cfg, "--opts", *opts],
                             cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"[ablation] {label}: run failed (exit {rc}); see {run_dir}/stdout.log")
    metrics = final_metrics(run_dir)
    if metrics is None:
        raise SystemExit(f"[ablation] {label}: no test result in {run_dir}")
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", default=os.path.join(REPO, "configs", "quickstart_train.cfg"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=2, help="2D-only epochs of every variant")
    p.add_argument("--pretrain-epochs", type=int, default=10,
                   help="epochs of the 3D-supervised start (seed 0, DSR off); 0: every variant from scratch")
    p.add_argument("--start-dsr", type=int, default=-1, help="DSR.START_DSR for the DSR variants")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out-dir", default=os.path.join(REPO, "logs", "ablation"))
    p.add_argument("--doc", default=os.path.join(REPO, "docs", "ablation.md"))
    p.add_argument("--opts", nargs="+", default=[])
    a = p.parse_args(argv)

    t0 = time.time()
    start_rows, start_opts, pre_s = [], [], 0.0
    if a.pretrain_epochs > 0:
        run_dir = os.path.join(a.out_dir, "pretrain-3d")
        m = train_run(a.cfg, run_dir, ["SEED_VALUE", "0", "TRAINING.MAX_EPOCHS", str(a.pretrain_epochs),
                                       *VARIANTS["2d-only"], *COMMON, *a.opts], "3D-supervised start")
        start_rows = summarise({f"start: 3D-supervised, {a.pretrain_epochs} epochs (seed 0)": [m]})
        start_opts = ["TRAINING.PRETRAINED", os.path.join(run_dir, "checkpoints", "last.ckpt")]
        pre_s = run_seconds(run_dir)
    results: dict[str, list[dict]] = {}
    run_s = 0.0
    for variant in a.variants:
        for seed in a.seeds:
            opts = ["DATASET.IGNORE_3D", "True", "SEED_VALUE", str(seed), "TRAINING.MAX_EPOCHS", str(a.epochs),
                    "DSR.START_DSR", str(a.start_dsr), *COMMON, *start_opts, *VARIANTS[variant], *a.opts]
            run_dir = os.path.join(a.out_dir, run_dir_name(variant, seed))
            results.setdefault(variant, []).append(train_run(a.cfg, run_dir, opts, f"{variant}, seed {seed}"))
            run_s += run_seconds(run_dir)
    start = (f"from the 3D-supervised start (`{os.path.relpath(a.out_dir, REPO)}/pretrain-3d`: {a.pretrain_epochs} epochs with "
             f"3D joints and SMPL parameters, DSR off), " if a.pretrain_epochs > 0 else "from scratch, ")
    header = (f"## Table\n\n`python scripts/ablation.py {shlex.join(argv if argv is not None else sys.argv[1:])}` — base "
              f"config `{os.path.relpath(a.cfg, REPO)}`, {start}{a.epochs} epochs of 2D-only training per run, "
              f"seeds {a.seeds}, mean ± std over seeds, `synthetic-test` "
              f"({next(iter(results.values()))[0]['num_samples']} samples, 3DPW protocol). "
              f"Wall time of the runs: {pre_s:.0f} s for the start, {run_s:.0f} s for the "
              f"{sum(map(len, results.values()))} 2D-only runs (this call: {time.time() - t0:.0f} s; finished "
              "runs are reused).")
    table = markdown(start_rows + summarise(results), header)
    text = write_doc(a.doc, table)
    print(text)
    return 0


BEGIN, END = "<!-- ablation.py: table begin -->", "<!-- ablation.py: table end -->"


def write_doc(path: str, table: str) -> str:
    """Put the table between the markers of an existing doc (the prose around it stays), or write a
    new doc with only the table."""
    block = f"{BEGIN}\n{table}{END}\n"
    text = None
    if os.path.isfile(path):
        with open(path) as f:
            old = f.read()
        if BEGIN in old and END in old:
            text = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END) + 1:]
    if text is None:
        text = "# DSR ablation in miniature (synthetic data, 2D-only supervision)\n\n" + block
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
