#!/usr/bin/env python
"""The DSR ablation in miniature on the synthetic data (issue: evidence).

Trains with 2D-only supervision (``DATASET.IGNORE_3D: True``: no SMPL parameters and no 3D joints
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

Every run is ``train.py --cfg <base cfg> --opts ...`` in its own run directory (so each can be
inspected, resumed or re-run alone); a finished run is not re-run (delete its folder to redo it).

    python scripts/ablation.py [--cfg configs/quickstart_train.cfg] [--seeds 0 1 2] [--epochs 6]
        [--variants 2d-only 2d+dsr ...] [--out-dir logs/ablation] [--doc docs/ablation.md]
        [--opts KEY VALUE ...]   (extra overrides for every run, e.g. TRAINER.ACCELERATOR gpu)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VARIANTS = {
    "2d-only": ["DSR.DSR_MC_LOSS_WEIGHT", "0.0", "DSR.DSR_C_LOSS_WEIGHT", "0.0"],
    "2d+dsr": ["DSR.DSR_MC_LOSS_WEIGHT", "0.1", "DSR.DSR_C_LOSS_WEIGHT", "0.1"],
    "2d+dsr-mc": ["DSR.DSR_MC_LOSS_WEIGHT", "0.1", "DSR.DSR_C_LOSS_WEIGHT", "0.0"],
    "2d+dsr-c": ["DSR.DSR_MC_LOSS_WEIGHT", "0.0", "DSR.DSR_C_LOSS_WEIGHT", "0.1"],
    "2d+dsr, fix flip": ["DSR.DSR_MC_LOSS_WEIGHT", "0.1", "DSR.DSR_C_LOSS_WEIGHT", "0.1",
                         "DSR.FLIP_SWAP_LR_MASKS", "True"],
    "2d+dsr, image IoU": ["DSR.DSR_MC_LOSS_WEIGHT", "0.1", "DSR.DSR_C_LOSS_WEIGHT", "0.1",
                          "DSR.MC_IOU_MODE", "image"],
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
        cells = " | ".join(f"{r[m][0]:.1f} ± {r[m][1]:.1f}" for m in METRICS)
        lines.append(f"| {r['variant']} | {r['n']} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", default=os.path.join(REPO, "configs", "quickstart_train.cfg"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--start-dsr", type=int, default=-1, help="DSR.START_DSR for the DSR variants")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out-dir", default=os.path.join(REPO, "logs", "ablation"))
    p.add_argument("--doc", default=os.path.join(REPO, "docs", "ablation.md"))
    p.add_argument("--opts", nargs="+", default=[])
    a = p.parse_args(argv)

    results: dict[str, list[dict]] = {}
    t0 = time.time()
    for variant in a.variants:
        for seed in a.seeds:
            run_dir = os.path.join(a.out_dir, run_dir_name(variant, seed))
            metrics = final_metrics(run_dir)
            if metrics is None:
                opts = ["DATASET.IGNORE_3D", "True", "SEED_VALUE", str(seed), "TRAINING.MAX_EPOCHS", str(a.epochs),
                        "DSR.START_DSR", str(a.start_dsr), "PL_LOGGING", "False", "TRAINING.LOG_FREQ_TB_IMAGES", "0",
                        "TESTING.LOG_FREQ_TB_IMAGES", "0", "TRAINING.SAVE_IMAGES", "False",
                        "TESTING.SAVE_IMAGES", "False", "TRAINING.CHECK_VAL_EVERY_N_EPOCH", "1000",
                        *VARIANTS[variant], *a.opts]
                os.makedirs(run_dir, exist_ok=True)
                env = dict(os.environ, DSR_RUN_DIR=run_dir)
                env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                print(f"[ablation] {variant}, seed {seed} -> {run_dir}", flush=True)
                with open(os.path.join(run_dir, "stdout.log"), "w") as log:
                    rc = subprocess.call([sys.executable, os.path.join(REPO, "train.py"), "--cfg", a.cfg, "--opts",
                                          *opts], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
                if rc != 0:
                    print(f"[ablation] run failed (exit {rc}); see {run_dir}/stdout.log", file=sys.stderr)
                    return rc
                metrics = final_metrics(run_dir)
                if metrics is None:
                    print(f"[ablation] no test result in {run_dir}", file=sys.stderr)
                    return 1
            results.setdefault(variant, []).append(metrics)
    header = (f"# DSR ablation in miniature (synthetic data, 2D-only supervision)\n\n"
              f"`python scripts/ablation.py {' '.join(argv if argv is not None else sys.argv[1:])}` — base config "
              f"`{os.path.relpath(a.cfg, REPO)}`, {a.epochs} epochs, seeds {a.seeds}, mean ± std over seeds, "
              f"`synthetic-test` ({next(iter(results.values()))[0]['num_samples']} samples, 3DPW protocol). "
              f"Total time {time.time() - t0:.0f} s.")
    text = markdown(summarise(results), header)
    os.makedirs(os.path.dirname(os.path.abspath(a.doc)), exist_ok=True)
    with open(a.doc, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
