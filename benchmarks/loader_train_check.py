#!/usr/bin/env python
"""Short deterministic training run whose per-step losses show whether a change altered training.

    python benchmarks/loader_train_check.py --tree DIR --out losses.json [--steps 20] [--cfg FILE] [--opts K V ...]
    python benchmarks/loader_train_check.py --compare a.json b.json

``--tree`` is the repository whose ``dsr`` package runs (e.g. this one, and a copy of the tree
before a change: ``git archive <commit> | tar -x -C /tmp/old``); its ``dsr_data`` must hold the
embedded default's data (``bash prepare_data.sh``). The run: ``--cfg`` (default
configs/quickstart_train.cfg) with SEED_VALUE 0, DATASET.NUM_WORKERS 0, DSR.START_DSR -1 (the
DSR-MC / DSR-C terms, so the mask targets, from the first step), TRAINING.MAX_STEPS ``--steps``,
no logger, torch on one thread, the process id that seeds the augmentation streams fixed (they
differ between processes otherwise); the loss of every step goes to ``--out``. ``--compare`` prints the
largest difference between two such files and exits 1 unless they are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def run(tree: str, out: str, steps: int, cfg_file: str, opts=()) -> int:
    tree = os.path.abspath(tree)
    sys.path.insert(0, tree)
    os.chdir(tree)
    import torch

    torch.set_num_threads(1)
    import pytorch_lightning as pl

    import dsr
    from dsr.config import load_config, merge_opts
    from dsr.lightning_module import DSRModule
    from dsr.runner import build_trainer

    cfg = load_config(cfg_file)
    logdir = tempfile.mkdtemp(prefix="train_check_")
    cfg = merge_opts(cfg, ["SEED_VALUE", "0", "DATASET.NUM_WORKERS", "0", "DSR.START_DSR", "-1",
                     "TRAINING.MAX_STEPS", str(steps), "PL_LOGGING", "False", "LOG_DIR", logdir,
                     "TRAINING.LOG_FREQ_TB_IMAGES", "0", "TESTING.LOG_FREQ_TB_IMAGES", "0",
                     "TRAINING.CHECK_VAL_EVERY_N_EPOCH", "1000", *opts])
    # the augmentation streams are seeded from (torch seed, process id) (dsr/data/rng.py): the same
    # process id in both runs, so that two processes draw the same augmentations
    import types

    import dsr.data.rng as rng_mod

    rng_mod.os = types.SimpleNamespace(getpid=lambda: 1)
    pl.seed_everything(0, workers=True)
    losses = []

    class Grab(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            losses.append(float(loss.detach()))

    module = DSRModule(cfg)
    trainer = build_trainer(cfg, logdir=logdir, extra_callbacks=[Grab()])
    trainer.fit(module)
    with open(out, "w") as f:
        json.dump({"tree": tree, "dsr": os.path.dirname(dsr.__file__), "steps": steps, "losses": losses}, f, indent=1)
    print(f"{len(losses)} steps from {os.path.dirname(dsr.__file__)}: first {losses[0]:.6f}, last {losses[-1]:.6f}")
    return 0


def compare(a: str, b: str) -> int:
    la, lb = (json.load(open(p))["losses"] for p in (a, b))
    if len(la) != len(lb):
        print(f"different step counts: {len(la)} vs {len(lb)}")
        return 1
    worst = max(abs(x - y) for x, y in zip(la, lb))
    same = la == lb
    print(f"{len(la)} steps, max |loss difference| {worst:.3g}: {'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--out")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", default="configs/quickstart_train.cfg")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"))
    p.add_argument("--opts", nargs="*", default=[], help="more config KEY VALUE pairs (e.g. DATASET.JPEG_REGION_DECODE off)")
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if not args.out:
        print("error: --out is required (or --compare A B)", file=sys.stderr)
        return 2
    return run(args.tree, os.path.abspath(args.out), args.steps, args.cfg, args.opts)


if __name__ == "__main__":
    sys.exit(main())
