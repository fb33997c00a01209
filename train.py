#!/usr/bin/env python
"""DSR entry point for training and evaluation (reference §1.2).

    python train.py --cfg configs/dsr_train.cfg [--cfg_id N]     # train (then test)
    python train.py --cfg configs/dsr_eval.cfg                   # evaluate (RUN_TEST: True)
    python train.py --cfg FILE --print-config                    # show the resolved config

A config file may hold grid-search lists; ``--cfg_id`` picks one combination.
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
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                   help="override config keys, e.g. --opts DATASET.BATCH_SIZE 16 TRAINING.PRETRAINED ckpt.pt")
    return p.parse_args(argv)


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

    from loguru import logger

    # DDP children started by Lightning re-run this script: they reuse the parent's run directory.
    # (DSR_RUN_DIR set by the user names the run directory too, e.g. in scripts/quickstart.sh.)
    given = os.environ.get("DSR_RUN_DIR")
    logdir = given or make_run_dir(cfg, args.cfg)
    os.makedirs(logdir, exist_ok=True)
    os.environ["DSR_RUN_DIR"] = logdir
    is_child = int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0
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

    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
