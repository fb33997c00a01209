#!/usr/bin/env python
"""DSR entry point for training and evaluation (reference §1.2).

    python train.py --cfg configs/dsr_train.cfg [--cfg_id N]     # train (then test)
    python train.py --cfg configs/dsr_eval.cfg                   # evaluate (RUN_TEST: True)
    python train.py --cfg FILE --print-config                    # show the resolved config

A config file may hold grid-search lists; ``--cfg_id`` picks one combination.

Before a run directory is created, the files the config reads are checked as
``tools/check_data.py`` checks them (a small sample of images and masks): a missing or malformed
file prints each problem with where to get the file and exits 2 (``--skip-checks`` skips this).
The project's own errors for user files (body model, dataset, checkpoint, backbone weights) that
still come up during the run print one line and exit 2; any other exception is a bug and keeps
its traceback.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train or evaluate DSR / SPIN (HMR) models.")
    p.add_argument("--cfg", required=True, help="YAML config file (lists = grid-search axes)")
    p.add_argument("--cfg_id", type=int, default=0, help="which grid-search combination to run")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--skip-checks", action="store_true",
                   help="do not check the config's files before the run (tools/check_data.py does it alone)")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                   help="override config keys, e.g. --opts DATASET.BATCH_SIZE 16 TRAINING.PRETRAINED ckpt.pt")
    return p.parse_args(argv)


TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools")


def _check_rows(cfg_yaml: str, samples: int) -> list:
    """tools/check_data.py's report rows of a config (run in a fresh process, see files_ok)."""
    sys.path.insert(0, TOOLS)
    import check_data
    from dsr.config import config_from_yaml_text

    return check_data.run(config_from_yaml_text(cfg_yaml, "the resolved config"), samples=samples).rows


def files_ok(cfg, cfg_path: str, samples: int = 2) -> bool:
    """tools/check_data.py's checks on ``cfg``; False (after printing each problem with where to get
    the file) when one fails. The checks run in a spawned process: the images and masks they decode
    with OpenCV must leave no thread-pool state in this process, whose forked DataLoader workers
    would otherwise hang in their first OpenCV call."""
    import multiprocessing

    sys.path.insert(0, TOOLS)
    import check_data

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        rows = pool.apply(_check_rows, (cfg.dump(), samples))
    rep = check_data.Report()
    rep.rows = rows
    if rep.problems:
        check_data.print_problems(rep, cfg_path)
        return False
    return True


def user_errors() -> tuple:
    """The project's exceptions for a user's file (not bugs): one line and exit status 2."""
    from dsr.body.smpl_io import BodyModelError
    from dsr.data.base_dataset import DatasetError
    from dsr.models.backbone import BackboneWeightsError
    from dsr.models.checkpoint import CheckpointError

    return BodyModelError, DatasetError, BackboneWeightsError, CheckpointError


def main(argv=None) -> int:
    args = parse_args(argv)
    from dsr.config import ConfigError, load_config, make_run_dir, merge_opts

    try:
        cfg = merge_opts(load_config(args.cfg, args.cfg_id), args.opts)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfg.dump(), end="")
        return 0

    # a process other than the first: a DDP child started by Lightning, or rank > 0 of torchrun / srun
    is_child = any(int(os.environ.get(k, "0") or 0) > 0 for k in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))
    external = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1
    if external and not os.environ.get("DSR_RUN_DIR"):
        print("error: a launch of several processes (torchrun / srun) needs DSR_RUN_DIR=<run directory> in the "
              "environment, so that every process writes to the same run directory (docs/gpu.md)", file=sys.stderr)
        return 2
    if not (args.skip_checks or is_child) and not files_ok(cfg, args.cfg):
        return 2

    from loguru import logger

    # DDP children started by Lightning re-run this script: they reuse the parent's run directory.
    # (DSR_RUN_DIR set by the user names the run directory too, e.g. in scripts/quickstart.sh, and
    # must be set for torchrun / srun launches, whose processes start independently.)
    given = os.environ.get("DSR_RUN_DIR")
    logdir = given or make_run_dir(cfg, args.cfg)
    os.makedirs(logdir, exist_ok=True)
    os.environ["DSR_RUN_DIR"] = logdir
    cfg.defrost()
    cfg.EXP_ID = os.path.basename(logdir)
    cfg.LOG_DIR = logdir
    cfg.freeze()
    # the raw file next to the experiment, the resolved one inside the run directory (§1.2)
    if not is_child:
        if not given:
            shutil.copy(args.cfg, os.path.join(os.path.dirname(logdir), "config.yaml"))
        with open(os.path.join(logdir, "config_to_run.yaml"), "w") as f:
            f.write(cfg.dump())
        logger.add(os.path.join(logdir, "train.log"), level="INFO")
    logger.info(f"run directory: {logdir}")
    if cfg.SEED_VALUE >= 0:
        from pytorch_lightning import seed_everything

        seed_everything(cfg.SEED_VALUE, workers=True)
        logger.info(f"seed: {cfg.SEED_VALUE}")

    from dsr.runner import run

    try:
        return run(cfg)
    except user_errors() as e:
        logger.error(f"{type(e).__name__}: {e}")  # one line (stderr and train.log), no traceback
        return 2


if __name__ == "__main__":
    sys.exit(main())
