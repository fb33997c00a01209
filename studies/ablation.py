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

Protocol ``mixed`` (``--protocols mixed``; the paper's setting in miniature): 3D supervision on one
part of the people and only 2D keypoints + masks on another part that differs from it, as COCO
differs from Human3.6M. Part A = the synthetic training set (``DATASET.TRAIN_DS``, SMPL parameters
and 3D joints); part B = the second domain of the generator (``make_synthetic.py --domain b``:
other poses, clothing and backgrounds; made in ``--domain-b`` if absent, ``--n-b-train`` +
``--n-b-test`` people). ``<out-dir>/mixed-data/`` holds the training file of both parts
(``mixed_train.npz``: A's rows with ``has_smpl`` 1 and ``has_pose_3d`` 1, B's with both 0 and no
SMPL parameters) and links to both image trees. From the same 3D-supervised start, every run trains
on it for ``--mixed-epochs`` epochs, without DSR (``mixed``) and with DSR-MC + DSR-C (``mixed+dsr``)
over the seeds, and is tested on B's own test people (``synthetic_b_test.npz``, 3DPW protocol).

Every run is ``train.py --cfg <base cfg> --opts ...`` in its own run directory (so each can be
inspected, resumed or re-run alone); a finished run is not re-run (delete its folder to redo it).
Each table goes between its marker comments in ``--doc`` (the prose around them is kept).

    python studies/ablation.py [--cfg configs/quickstart_train.cfg] [--seeds 0 1 2] [--epochs 2]
        [--pretrain-epochs 18] [--start-dsr -1] [--variants 2d-only 2d+dsr ...] [--out-dir logs/ablation] [--doc docs/ablation.md]
        [--protocols 2d-only mixed] [--mixed-epochs 1] [--mixed-variants mixed mixed+dsr]
        [--domain-b dsr_data/dataset_folders/synthetic_b] [--n-b-train 2000] [--n-b-test 500]
        [--finetune-opts KEY VALUE ...]   (overrides of the runs from the start; default: constant LR 1e-4)
        [--opts KEY VALUE ...]   (extra overrides for every run, e.g. TRAINER.ACCELERATOR gpu)
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

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
# the runs from the start fine-tune at a constant LR, as the original does (the quickstart config's
# warm-up and cosine decay are for training from random weights)
FINETUNE = ["OPTIMIZER.LR", "1e-4", "OPTIMIZER.WARMUP_STEPS", "0", "OPTIMIZER.COSINE_STEPS", "0"]
MIXED_VARIANTS = {"mixed": VARIANTS["2d-only"], "mixed+dsr": BOTH}
METRICS = ("mpjpe", "pa_mpjpe", "pve")
MIXED_KEYS = ("imgname", "center", "scale", "part", "openpose", "S", "pose", "shape", "gender")


def build_mixed(a_root: str, a_npz: str, b_root: str, b_npz: str, out_dir: str) -> tuple[str, str]:
    """The training set of protocol 'mixed': ``out_dir/a`` and ``out_dir/b`` link to the two image
    roots (``out_dir/grph_sequences/{a,b}`` to their masks), ``out_dir/mixed_train.npz`` holds A's
    rows (3D-supervised: has_smpl 1, has_pose_3d 1) then B's (2D keypoints only: has_smpl 0,
    has_pose_3d 0, zero pose / shape / S), image names prefixed ``a/`` and ``b/``. Returns (root, npz)."""
    os.makedirs(os.path.join(out_dir, "grph_sequences"), exist_ok=True)
    for tag, root in (("a", a_root), ("b", b_root)):
        for link, target in ((os.path.join(out_dir, tag), root),
                             (os.path.join(out_dir, "grph_sequences", tag), os.path.join(root, "grph_sequences"))):
            target = os.path.abspath(target)
            if os.path.islink(link) and os.readlink(link) != target:
                os.remove(link)
            if not os.path.islink(link):
                os.symlink(target, link)
    a, b = np.load(a_npz), np.load(b_npz)
    for path, d in ((a_npz, a), (b_npz, b)):
        missing = [k for k in MIXED_KEYS if k not in d.files]
        if missing:
            raise SystemExit(f"[ablation] {path}: missing {missing} (a synthetic training npz is expected)")
    na, nb = len(a["imgname"]), len(b["imgname"])
    out = {"imgname": np.array([f"a/{x}" for x in a["imgname"]] + [f"b/{x}" for x in b["imgname"]])}
    for k in MIXED_KEYS[1:]:
        out[k] = np.concatenate([a[k], np.zeros_like(b[k]) if k in ("S", "pose", "shape") else b[k]])
    out["has_smpl"] = np.concatenate([np.ones(na, np.float32), np.zeros(nb, np.float32)])
    out["has_pose_3d"] = out["has_smpl"].copy()
    sys.path.insert(0, REPO)
    from dsr.data.preprocess.common import save_npz_atomic

    return out_dir, save_npz_atomic(os.path.join(out_dir, "mixed_train.npz"), **out)


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


def pretrain(a) -> tuple[list[dict], list[str], float]:
    """The 3D-supervised start (``<out-dir>/pretrain-3d``): (table rows, opts that load it, seconds)."""
    if a.pretrain_epochs <= 0:
        return [], [], 0.0
    run_dir = os.path.join(a.out_dir, "pretrain-3d")
    m = train_run(a.cfg, run_dir, ["SEED_VALUE", "0", "TRAINING.MAX_EPOCHS", str(a.pretrain_epochs),
                                   *VARIANTS["2d-only"], *COMMON, *a.opts], "3D-supervised start")
    rows = summarise({f"start: 3D-supervised, {a.pretrain_epochs} epochs (seed 0)": [m]})
    return rows, ["TRAINING.PRETRAINED", os.path.join(run_dir, "checkpoints", "last.ckpt")], run_seconds(run_dir)


def protocol_2d_only(a, start_rows, start_opts, pre_s, command) -> str:
    """Every variant from the start with 2D-only supervision (DATASET.IGNORE_3D) -> the table."""
    results: dict[str, list[dict]] = {}
    run_s = 0.0
    for variant in a.variants:
        for seed in a.seeds:
            opts = ["DATASET.IGNORE_3D", "True", "SEED_VALUE", str(seed), "TRAINING.MAX_EPOCHS", str(a.epochs),
                    "DSR.START_DSR", str(a.start_dsr), *COMMON, *start_opts, *VARIANTS[variant], *a.finetune_opts, *a.opts]
            run_dir = os.path.join(a.out_dir, run_dir_name(variant, seed))
            results.setdefault(variant, []).append(train_run(a.cfg, run_dir, opts, f"{variant}, seed {seed}"))
            run_s += run_seconds(run_dir)
    start = (f"from the 3D-supervised start (`{os.path.relpath(a.out_dir, REPO)}/pretrain-3d`: {a.pretrain_epochs} epochs with "
             f"3D joints and SMPL parameters, DSR off), " if a.pretrain_epochs > 0 else "from scratch, ")
    header = (f"## Table\n\n`{command}` — base "
              f"config `{os.path.relpath(a.cfg, REPO)}`, {start}{a.epochs} epochs of 2D-only training per run "
              f"(`{' '.join(a.finetune_opts)}`), "
              f"seeds {a.seeds}, mean ± std over seeds, `synthetic-test` "
              f"({next(iter(results.values()))[0]['num_samples']} samples, 3DPW protocol). "
              f"Wall time of the runs: {pre_s:.0f} s for the start, {run_s:.0f} s for the "
              f"{sum(map(len, results.values()))} 2D-only runs (finished runs are reused).")
    return markdown(start_rows + summarise(results), header)


def domain_b_data(a) -> tuple[str, str, str]:
    """Domain b's dataset in ``--domain-b`` (made with make_synthetic.py --domain b when absent):
    (root, train npz, test npz)."""
    root = os.path.abspath(a.domain_b)
    train, test = os.path.join(root, "synthetic_b_train.npz"), os.path.join(root, "synthetic_b_test.npz")
    if not (os.path.isfile(train) and os.path.isfile(test)):
        print(f"[ablation] rendering domain b ({a.n_b_train} train + {a.n_b_test} test people) -> {root}", flush=True)
        rc = subprocess.call([sys.executable, os.path.join(REPO, "tools", "make_synthetic.py"), "--out", root,
                              "--n-train", str(a.n_b_train), "--n-test", str(a.n_b_test), "--seed", "0",
                              "--domain", "b"], cwd=REPO)
        if rc != 0:
            raise SystemExit(f"[ablation] make_synthetic.py --domain b failed (exit {rc})")
    return root, train, test


def protocol_mixed(a, start_rows, start_opts, pre_s, command) -> str:
    """3D on part A + 2D-only on domain b, with and without DSR, tested on domain b -> the table."""
    sys.path.insert(0, REPO)
    from dsr.config import load_config, merge_opts
    from dsr.data.base_dataset import dataset_npz_path, dataset_root

    cfg = merge_opts(load_config(a.cfg), a.opts)
    ds = cfg.DATASET.TRAIN_DS
    if ds == "all":
        raise SystemExit("[ablation] protocol mixed needs a single training set (DATASET.TRAIN_DS), not 'all'")
    b_root, b_train, b_test = domain_b_data(a)
    root, npz = build_mixed(dataset_root(cfg, ds), dataset_npz_path(cfg, ds, True), b_root, b_train,
                            os.path.join(a.out_dir, "mixed-data"))
    val = cfg.DATASET.VAL_DS
    data_opts = [f"PATHS.DATASET_FOLDERS.{ds}", os.path.abspath(root), f"PATHS.TRAIN_FILES.{ds}", os.path.abspath(npz),
                 f"PATHS.DATASET_FOLDERS.{val}", b_root, f"PATHS.TEST_FILES.{val}", b_test]
    rows = []
    if start_opts:
        m = train_run(a.cfg, os.path.join(a.out_dir, "start-on-b"),
                      ["RUN_TEST", "True", *COMMON, *start_opts, *a.opts, *data_opts], "the start, tested on domain b")
        rows = summarise({start_rows[0]["variant"] + ", tested on domain b": [m]})
    results: dict[str, list[dict]] = {}
    run_s = 0.0
    for variant in a.mixed_variants:
        for seed in a.seeds:
            opts = ["SEED_VALUE", str(seed), "TRAINING.MAX_EPOCHS", str(a.mixed_epochs), "DSR.START_DSR", str(a.start_dsr),
                    *COMMON, *start_opts, *MIXED_VARIANTS[variant], *a.finetune_opts, *a.opts, *data_opts]
            run_dir = os.path.join(a.out_dir, run_dir_name(variant, seed))
            results.setdefault(variant, []).append(train_run(a.cfg, run_dir, opts, f"{variant}, seed {seed}"))
            run_s += run_seconds(run_dir)
    n_a, n_b = (len(np.load(p)["imgname"]) for p in (dataset_npz_path(cfg, ds, True), b_train))
    header = (f"## Table: 3D on part A, 2D-only on domain b\n\n`{command}` — base config "
              f"`{os.path.relpath(a.cfg, REPO)}`, from the start above; {a.mixed_epochs} epoch(s) per run "
              f"(`{' '.join(a.finetune_opts)}`) on "
              f"`{os.path.relpath(npz, REPO)}` ({n_a} people of part A with 3D supervision + {n_b} of domain b "
              f"with 2D keypoints and masks only), seeds {a.seeds}, mean ± std over seeds; tested on domain b's "
              f"test people (`{os.path.relpath(b_test, REPO)}`, {next(iter(results.values()))[0]['num_samples']} "
              f"samples, 3DPW protocol). Wall time of the runs: {pre_s:.0f} s for the start, {run_s:.0f} s for the "
              f"{sum(map(len, results.values()))} runs (finished runs are reused).")
    return markdown(rows + summarise(results), header)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", default=os.path.join(REPO, "configs", "quickstart_train.cfg"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=2, help="2D-only epochs of every variant")
    p.add_argument("--pretrain-epochs", type=int, default=18,
                   help="epochs of the 3D-supervised start (seed 0, DSR off); 0: every variant from scratch")
    p.add_argument("--start-dsr", type=int, default=-1, help="DSR.START_DSR for the DSR variants")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--protocols", nargs="+", default=["2d-only"], choices=("2d-only", "mixed"))
    p.add_argument("--mixed-epochs", type=int, default=1, help="epochs of every run of protocol mixed")
    p.add_argument("--mixed-variants", nargs="+", default=list(MIXED_VARIANTS), choices=list(MIXED_VARIANTS))
    p.add_argument("--domain-b", default=os.path.join(REPO, "dsr_data", "dataset_folders", "synthetic_b"),
                   help="domain b's dataset folder (images, masks, synthetic_b_{train,test}.npz); made if absent")
    p.add_argument("--n-b-train", type=int, default=2000)
    p.add_argument("--n-b-test", type=int, default=500)
    p.add_argument("--out-dir", default=os.path.join(REPO, "logs", "ablation"))
    p.add_argument("--doc", default=os.path.join(REPO, "docs", "ablation.md"))
    p.add_argument("--finetune-opts", nargs="+", default=FINETUNE, metavar="KEY VALUE",
                   help="overrides of every run from the start (not of the start itself); default: "
                        + " ".join(FINETUNE))
    p.add_argument("--opts", nargs="+", default=[])
    a = p.parse_args(argv)

    command = "python studies/ablation.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    start_rows, start_opts, pre_s = pretrain(a)
    text = ""
    if "2d-only" in a.protocols:
        text = write_doc(a.doc, protocol_2d_only(a, start_rows, start_opts, pre_s, command))
    if "mixed" in a.protocols:
        text = write_doc(a.doc, protocol_mixed(a, start_rows, start_opts, pre_s, command), MIXED_BEGIN, MIXED_END)
    print(text)
    return 0


BEGIN, END = "<!-- ablation.py: table begin -->", "<!-- ablation.py: table end -->"
MIXED_BEGIN, MIXED_END = "<!-- ablation.py: mixed table begin -->", "<!-- ablation.py: mixed table end -->"


def write_doc(path: str, table: str, begin: str = BEGIN, end: str = END) -> str:
    """Put the table between the markers ``begin`` / ``end`` of an existing doc (the prose around it
    stays); a doc without them gets the block appended; a new doc has only the block."""
    from dsr.reporting import replace_block, write_text_atomic

    old = open(path).read() if os.path.isfile(path) else ""
    text = replace_block(old, begin, end, table,
                         title="# DSR ablation in miniature (synthetic data, 2D-only supervision)\n")
    write_text_atomic(path, text)
    return text


if __name__ == "__main__":
    sys.exit(main())
