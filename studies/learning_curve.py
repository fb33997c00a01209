#!/usr/bin/env python
"""Learning curve of a training config: PA-MPJPE / MPJPE / PVE on the evaluation set and on
training images vs optimizer steps.

One training run (``train.py``'s config, ``--opts`` overrides, ``TRAINING.MAX_STEPS`` = the last
probe step, epochs unbounded) with a probe at every ``--steps`` value: the model in eval mode
(BatchNorm running statistics, no dropout) is evaluated with the protocol of ``DATASET.VAL_DS`` on

* ``test``:  the evaluation set ``DATASET.VAL_DS`` (e.g. all 500 people of ``synthetic-test``);
* ``train``: the first ``--train-rows`` rows of the training npz (``DATASET.TRAIN_DS``, a single
  dataset), written in the evaluation form to ``<out-dir>/train_probe.npz`` (imgname, center,
  scale, pose, shape, gender, keypoints; no augmentation). Under-training shows as both curves
  staying high, over-fitting as ``train`` falling away from ``test``.

Row ``mean`` is the mean-parameter prediction (``TESTING.MEAN_PARAMS_BASELINE``) on both sets.
Each probe row also has the training wall time so far (probes excluded), the images seen and the
mean of every logged loss term over the steps since the previous probe.

Output in ``--out-dir``: ``curve.json`` (rows, written atomically after every probe), ``curve.md``
(the table), ``run/`` (the run directory: ``train.log``, ``config_to_run.yaml``,
``checkpoints/last.ckpt`` written at every probe). Resumable: run the same command again after a
kill and it continues from the last probe's checkpoint (the data order after a resume differs from
that of an uninterrupted run); probes already in ``curve.json`` are kept. Logging of images and
TensorBoard is off (``PL_LOGGING False``) so that the timings are those of the training alone.

    python studies/learning_curve.py --out-dir logs/curves/base --steps 100 200 400 800 \\
        [--cfg configs/quickstart_train.cfg] [--train-rows 500] [--opts KEY VALUE ...]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dsr.reporting import write_json_atomic, write_text_atomic  # noqa: E402

FIXED = ["PL_LOGGING", "False", "TRAINING.LOG_FREQ_TB_IMAGES", "0", "TESTING.LOG_FREQ_TB_IMAGES", "0",
         "TRAINING.SAVE_IMAGES", "False", "TESTING.SAVE_IMAGES", "False", "TRAINING.CHECK_VAL_EVERY_N_EPOCH", "100000",
         "TRAINING.MAX_EPOCHS", "100000", "RUN_TEST", "False", "TRAINING.RESUME", "None"]
PROBE_KEYS = ("imgname", "center", "scale", "pose", "shape", "gender", "part", "openpose", "has_smpl")


def write_train_probe(train_npz: str, rows: int, path: str) -> int:
    """The first ``rows`` rows of a training npz in the evaluation form (no ``S``) -> ``path``
    (written atomically); returns the number of rows. The evaluation protocol of synthetic-test /
    3dpw needs ``pose``, ``shape`` and ``gender``."""
    d = np.load(train_npz)
    missing = [k for k in ("imgname", "center", "scale", "pose", "shape", "gender") if k not in d.files]
    if missing:
        raise SystemExit(f"learning_curve: {train_npz} lacks {missing}: the training probe needs SMPL "
                         "parameters and genders (the synthetic-test protocol)")
    from dsr.data.preprocess.common import save_npz_atomic

    n = min(rows, len(d["imgname"]))
    save_npz_atomic(path, **{k: d[k][:n] for k in PROBE_KEYS if k in d.files})
    return n


def markdown(curve: dict) -> str:
    """The curve as a markdown table (one row per probe, the mean-parameter row first)."""
    lines = [f"`{curve['command']}`", "",
             "| step | epoch | train s | images | test PA-MPJPE | test MPJPE | test PVE | train PA-MPJPE | "
             "train MPJPE | train PVE | loss: kp2d / kp3d / pose / total | grad norm |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]

    def errors(r):
        return " | ".join(f"{r[s][m]:.1f}" for s in ("test", "train") for m in ("pa_mpjpe", "mpjpe", "pve"))

    if curve.get("mean"):
        lines.append(f"| mean | | | | {errors(curve['mean'])} | | |")
    for r in curve["rows"]:
        lo = r.get("loss", {})
        loss = " / ".join(f"{lo[k]:.4f}" if k in lo else "-" for k in
                          ("loss/loss_keypoints", "loss/loss_keypoints_3d", "loss/loss_regr_pose", "loss/total_loss"))
        gn = f"{lo['stats/grad_norm']:.3g}" if "stats/grad_norm" in lo else "-"
        lines.append(f"| {r['step']} | {r['epoch']} | {r['train_seconds']:.0f} | {r['images']} | {errors(r)} | "
                     f"{loss} | {gn} |")
    return "\n".join(lines) + "\n"


def make_probe(steps, loaders: dict, curve: dict, json_path: str, md_path: str):
    """The Lightning callback that evaluates ``loaders`` ({name: DataLoader}) at the given steps."""
    import pytorch_lightning as pl
    import torch
    from loguru import logger

    from dsr.runner import LastCheckpoint

    class CurveProbe(pl.Callback):
        def __init__(self):
            self.todo = sorted(set(int(s) for s in steps) - {r["step"] for r in curve["rows"]})
            self.sums: dict[str, float] = {}
            self.n = 0

        def on_train_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()
            self.base_seconds = curve["rows"][-1]["train_seconds"] if curve["rows"] else 0.0
            self.base_images = curve["rows"][-1]["images"] if curve["rows"] else 0
            self.base_step = trainer.global_step
            self.images = 0
            self.probe_seconds = 0.0
            if trainer.global_step in self.todo:  # killed after the checkpoint, before the json
                self.probe(trainer, pl_module)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.images += int(batch["img"].shape[0])
            for k, v in trainer.callback_metrics.items():
                if k.startswith("loss/") or k == "stats/grad_norm":
                    self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.n += 1
            if trainer.global_step in self.todo:
                self.probe(trainer, pl_module)

        def probe(self, trainer, pl_module):
            t = time.perf_counter()
            train_s = self.base_seconds + (t - self.t0) - self.probe_seconds
            row = {"step": int(trainer.global_step), "epoch": int(trainer.current_epoch),
                   "train_seconds": round(train_s, 1), "images": self.base_images + self.images,
                   "loss": {k: v / self.n for k, v in self.sums.items()} if self.n else {}}
            for name, loader in loaders.items():
                row[name] = pl_module.evaluate(loader)
            for cb in trainer.callbacks:  # the weights of this step, so that a kill resumes here
                if isinstance(cb, LastCheckpoint):
                    cb._last_step_saved = -1
                    cb.save(trainer)
            curve["rows"] = [r for r in curve["rows"] if r["step"] != row["step"]] + [row]
            curve["rows"].sort(key=lambda r: r["step"])
            write_json_atomic(json_path, curve)
            write_text_atomic(md_path, markdown(curve))
            self.todo.remove(row["step"])
            self.sums, self.n = {}, 0
            self.probe_seconds += time.perf_counter() - t
            logger.info(f"probe step {row['step']} ({train_s:.0f} s of training): test PA-MPJPE "
                        f"{row['test']['pa_mpjpe']:.1f} MPJPE {row['test']['mpjpe']:.1f}; train PA-MPJPE "
                        f"{row['train']['pa_mpjpe']:.1f} MPJPE {row['train']['mpjpe']:.1f}")
            torch.cuda.empty_cache() if torch.cuda.is_available() else None

    return CurveProbe()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", default=os.path.join(REPO, "configs", "quickstart_train.cfg"))
    p.add_argument("--out-dir", required=True)
    p.add_argument("--steps", type=int, nargs="+", required=True, help="optimizer steps at which to probe")
    p.add_argument("--train-rows", type=int, default=500, help="training rows of the train probe")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE")
    a = p.parse_args(argv)
    if min(a.steps) < 1:
        p.error("--steps must be >= 1")

    from dsr.config import ConfigError, load_config, merge_opts

    out = os.path.abspath(a.out_dir)
    run_dir = os.path.join(out, "run")
    os.makedirs(run_dir, exist_ok=True)
    try:
        cfg = merge_opts(load_config(a.cfg), [*a.opts, *FIXED, "TRAINING.MAX_STEPS", str(max(a.steps))])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.DATASET.TRAIN_DS == "all":
        p.error("the train probe needs a single training set (DATASET.TRAIN_DS), not 'all'")
    cfg.defrost()
    cfg.LOG_DIR = run_dir
    cfg.EXP_ID = "run"
    cfg.freeze()

    import torch
    from loguru import logger
    from pytorch_lightning import seed_everything

    from dsr.data.base_dataset import dataset_npz_path
    from dsr.data.loader import build_val_dataset, val_dataloader
    from dsr.lightning_module import DSRModule
    from dsr.runner import build_trainer

    logger.add(os.path.join(run_dir, "train.log"), level="INFO")
    with open(os.path.join(run_dir, "config_to_run.yaml"), "w") as f:
        f.write(cfg.dump())
    command = "python studies/learning_curve.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    json_path, md_path = os.path.join(out, "curve.json"), os.path.join(out, "curve.md")
    curve = {"command": command, "rows": []}
    if os.path.isfile(json_path):
        with open(json_path) as f:
            curve = json.load(f)
    probe_npz = os.path.join(out, "train_probe.npz")
    n = write_train_probe(dataset_npz_path(cfg, cfg.DATASET.TRAIN_DS, True), a.train_rows, probe_npz)
    cfg_train = cfg.clone()
    cfg_train.defrost()
    cfg_train.PATHS.TEST_FILES[cfg.DATASET.VAL_DS] = probe_npz
    cfg_train.PATHS.DATASET_FOLDERS[cfg.DATASET.VAL_DS] = cfg.PATHS.DATASET_FOLDERS[cfg.DATASET.TRAIN_DS]
    cfg_train.freeze()
    loaders = {"test": val_dataloader(cfg, build_val_dataset(cfg)),
               "train": val_dataloader(cfg_train, build_val_dataset(cfg_train))}
    logger.info(f"learning curve: probes at {sorted(a.steps)}; train probe = {n} rows of {cfg.DATASET.TRAIN_DS}")

    if "mean" not in curve:
        base = cfg.clone()
        base.defrost()
        base.TESTING.MEAN_PARAMS_BASELINE = True
        base.TRAINING.PRETRAINED = None
        base.freeze()
        mean_module = DSRModule(base)
        curve["mean"] = {k: mean_module.evaluate(v) for k, v in loaders.items()}
        write_json_atomic(json_path, curve)
        del mean_module

    last = os.path.join(run_dir, "checkpoints", "last.ckpt")
    resume = last if os.path.isfile(last) else None
    done = {r["step"] for r in curve["rows"]}
    if not set(a.steps) - done:
        logger.info("every probe step is done already")
    else:
        if cfg.SEED_VALUE >= 0:
            seed_everything(cfg.SEED_VALUE + (1000 if resume else 0), workers=True)
        module = DSRModule(cfg)
        trainer = build_trainer(cfg, extra_callbacks=[make_probe(a.steps, loaders, curve, json_path, md_path)])
        trainer.fit(module, ckpt_path=resume)
        del trainer, module
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    write_text_atomic(md_path, markdown(curve))
    print(markdown(curve))
    return 0


if __name__ == "__main__":
    sys.exit(main())
