#!/usr/bin/env python
"""A/B of the training item path of two source trees: CPU ms per ``BaseDataset.__getitem__``.

    git worktree add /tmp/before <commit>      # (or: git archive <commit> | tar -x -C /tmp/before)
    python benchmarks/loader_ab.py --a /tmp/before --b . [--size 1000x1000] [--masks palette]
        [--config nIOU] [--rounds 21] [--items 16] [--work DIR] [--jpeg-region off]

Each tree's dataset runs in a spawned process of its own, set up as a DataLoader worker of that
tree (its ``worker_init_fn`` with its config's ``WORKER_KEEP_FREED_MB``, torch and OpenCV on one
thread), on the same fabricated frames (``benchmarks/loader_fixtures.py`` of this tree) and the
same augmentation draws; the two processes take turns, round by round (the order alternating), so
both see the same machine. Printed: the median CPU ms per item of each and the median per-round
ratio A / B (the speed-up of B over A). ``--jpeg-region`` is given to trees that have the key.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _worker(conn, tree: str, root: str, loss: str, jpeg_region: str) -> None:
    tree = os.path.abspath(tree)
    sys.path[:0] = [tree, HERE]  # the tree's dsr package; this tree's fixtures
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from loguru import logger

    logger.remove()
    from loader_fixtures import loader_cfg, time_items

    from dsr.data import BaseDataset
    from dsr.data.loader import worker_init_fn

    cfg = loader_cfg(root, loss)
    cfg.DATASET.NUM_WORKERS = 0
    if "JPEG_REGION_DECODE" in cfg.DATASET:
        cfg.DATASET.JPEG_REGION_DECODE = jpeg_region
    keep = cfg.DATASET.get("WORKER_KEEP_FREED_MB", None)
    if keep is None:
        worker_init_fn(0)
    else:
        worker_init_fn(0, keep_freed_mb=int(keep))
    ds = BaseDataset(cfg, "h36m", is_train=True, rng=np.random.default_rng(0))
    time_items(ds, range(min(4, len(ds))), 0)  # warm-up: file cache, tables, allocations
    conn.send((len(ds), os.path.dirname(sys.modules["dsr"].__file__)))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(time_items(ds, *msg)[1])  # CPU ms per item


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="tree A (e.g. the code before a change)")
    p.add_argument("--b", required=True, help="tree B (e.g. this one)")
    p.add_argument("--size", default="1000x1000", help="WxH frames")
    p.add_argument("--masks", default="palette", choices=["palette", "colour"])
    p.add_argument("--config", default="nIOU", choices=["nIOU", "DistM"])
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--items", type=int, default=16)
    p.add_argument("--work", default=None, help="folder of the fabricated data (default: a temporary one)")
    p.add_argument("--jpeg-region", default="off", help="DATASET.JPEG_REGION_DECODE for trees that have it")
    args = p.parse_args(argv)
    for t in (args.a, args.b):
        if not os.path.isdir(os.path.join(t, "dsr")):
            print(f"error: {t} has no dsr package", file=sys.stderr)
            return 2
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"error: --size: '{args.size}' is not WxH", file=sys.stderr)
        return 2
    sys.path.insert(0, HERE)
    from loader_fixtures import make_loader_dataset

    work = args.work or tempfile.mkdtemp(prefix="loader_ab_")
    root = os.path.join(work, f"{w}x{h}_{args.masks}_{args.frames}")
    if not os.path.isfile(os.path.join(root, "train.npz")):
        make_loader_dataset(root, os.path.join(root, "train.npz"), (h, w), args.frames, args.masks, seed=0)

    ctx = mp.get_context("spawn")
    procs, conns = {}, {}
    for name, tree in (("A", args.a), ("B", args.b)):
        here, there = ctx.Pipe()
        procs[name] = ctx.Process(target=_worker, args=(there, tree, root, args.config, args.jpeg_region), daemon=True)
        procs[name].start()
        conns[name] = here
    n = 1 << 30
    for name in ("A", "B"):
        length, pkg = conns[name].recv()
        n = min(n, length)
        print(f"# {name}: {pkg}")
    ms = {"A": [], "B": []}
    try:
        for r in range(args.rounds):
            idx = [(r * args.items + k) % n for k in range(args.items)]
            for name in (("A", "B") if r % 2 == 0 else ("B", "A")):
                conns[name].send((idx, 100 + r))
                ms[name].append(conns[name].recv())
    finally:
        for name in conns:
            conns[name].send(None)
            procs[name].join(30)
    a, b = np.array(ms["A"]), np.array(ms["B"])
    print(f"{args.size} {args.masks} {args.config}, {args.rounds} rounds of {args.items} items: "
          f"A {np.median(a):.2f} ms, B {np.median(b):.2f} ms CPU per item; A / B {np.median(a / b):.3f}x "
          f"(median per round)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
