#!/usr/bin/env python
"""Images/s of a whole DSR training step fed by the training DataLoader on real-size frames, against
the same step fed from memory: how many loader cores a GPU needs (issue 25).

    python benchmarks/bench_feed.py --device cuda --workers 4 8 15        # on a GPU machine
    python benchmarks/bench_feed.py --device cpu --backbone resnet18 --img-res 128 --batch-size 2 \\
        --steps 2 --workers 0 1 --frames 4 --size 320x240                  # proves the script, measures nothing

Frames: ``--frames`` fabricated ``--size`` JPEGs (quality 90) with palette masks
(``benchmarks/loader_fixtures.py``), read as the 'h36m' training set through ``DATASET.NUM_IMAGES``
(a random subset with replacement, long enough for every timed batch). The step: the quickstart
config with ``--backbone`` at ``--img-res`` (focal length 5000 at 224 px), the DSR terms from the
first step, ``--precision``, Adam (``bench_measure.train_step``: forward, ground-truth mesh, every
loss, backward, optimizer step).

1. from memory: one batch kept on the device, ``--steps`` steps after 3 warm-up ones;
2. for each ``--workers`` W: the DataLoader alone (items/s, W workers, persistent, pinned memory on
   CUDA) and the step fed by it (each batch copied to the device, then the step), ``--steps`` steps
   after the workers' prefetched batches and 2 more.
Prints a markdown table (``--out`` also writes it) and ``--json``. The CPU ms per item of the loader
(``benchmarks/bench_loader.py``) times the from-memory rate gives the cores a GPU needs; this
measures it directly.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)


def build_cfg(args, root: str, workers: int, n_images: int):
    from dsr.config import load_config, merge_opts

    cfg = merge_opts(load_config(os.path.join(REPO, "configs", "quickstart_train.cfg")), [
        "DSR.BACKBONE", args.backbone, "DATASET.IMG_RES", str(args.img_res),
        "DATASET.FOCAL_LENGTH", str(5000.0 * args.img_res / 224), "DATASET.BATCH_SIZE", str(args.batch_size),
        "TRAINER.PRECISION", args.precision, "DSR.START_DSR", "-1",
        "DATASET.TRAIN_DS", "h36m", "PATHS.DATASET_NPZ_PATH", root, "PATHS.DATASET_FOLDERS.h36m", root,
        "PATHS.TRAIN_FILES.h36m", "train.npz", "DATASET.NUM_IMAGES", str(n_images),
        "DATASET.NUM_WORKERS", str(workers), "DATASET.PERSISTENT_WORKERS", str(workers > 0),
        "DATASET.PIN_MEMORY", "True", "DATASET.JPEG_REGION_DECODE", args.jpeg_region,
    ])
    cfg.defrost()
    cfg.TRAINING.PRETRAINED = None  # random weights: the speed does not depend on them
    cfg.freeze()
    return cfg


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def from_memory(module, opt, batch, amp, scaler, steps: int, device) -> float:
    """Images/s of ``steps`` steps on one batch kept on the device (after 3 warm-up steps)."""
    from bench_measure import train_step

    for _ in range(3):
        train_step(module, opt, dict(batch), amp, scaler)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(module, opt, dict(batch), amp, scaler)
    _sync(device)
    return steps * len(batch["img"]) / (time.perf_counter() - t0)


def _skip(loader) -> int:
    return loader.num_workers * (loader.prefetch_factor or 0) + 2


def loader_alone(loader, steps: int) -> float:
    """Items/s of the DataLoader alone at steady state (its prefetched batches not timed)."""
    it = iter(loader)
    for _ in range(_skip(loader)):
        next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        n += len(next(it)["img"])
    dt = time.perf_counter() - t0
    del it
    return n / dt


def fed_by_loader(module, opt, loader, amp, scaler, steps: int, device) -> float:
    """Images/s of ``steps`` steps, each on the next batch of the loader copied to the device."""
    from bench_measure import train_step
    from bench_timing import to_device

    it = iter(loader)
    for _ in range(_skip(loader)):
        train_step(module, opt, to_device(next(it), device), amp, scaler)
    _sync(device)
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        batch = to_device(next(it), device)
        train_step(module, opt, batch, amp, scaler)
        n += len(batch["img"])
    _sync(device)
    dt = time.perf_counter() - t0
    del it
    return n / dt


def run(args) -> dict:
    import cv2
    import torch
    from loguru import logger

    from bench_measure import amp_setup
    from bench_timing import to_device
    from loader_fixtures import make_loader_dataset

    from dsr.data.loader import build_train_dataset, train_dataloader
    from dsr.lightning_module import DSRModule

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    # OpenCV on one thread in this process too: a DataLoader worker forked while OpenCV's thread
    # pool is up (the frames are fabricated here) can hang in its first OpenCV call
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    w, h = (int(v) for v in args.size.lower().split("x"))
    root = os.path.join(args.work or tempfile.mkdtemp(prefix="bench_feed_"), f"{w}x{h}_{args.frames}")
    if not os.path.isfile(os.path.join(root, "train.npz")):
        t0 = time.perf_counter()
        make_loader_dataset(root, os.path.join(root, "train.npz"), (h, w), args.frames, "palette", seed=0)
        print(f"[bench_feed] fabricated {args.frames} frames of {w}x{h} in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)
    most = max(args.workers) if args.workers else 0
    n_images = (args.steps + most * 2 + 4) * args.batch_size
    notes = []
    cfg = build_cfg(args, root, 0, n_images)
    amp, scaler = amp_setup(str(cfg.TRAINER.PRECISION), device, notes)
    module = DSRModule(cfg).to(device)
    module.model.train()
    opt = torch.optim.Adam(module.model.parameters(), lr=cfg.OPTIMIZER.LR, weight_decay=cfg.OPTIMIZER.WD)
    first = next(iter(train_dataloader(cfg, build_train_dataset(cfg))))
    memory = from_memory(module, opt, to_device(first, device), amp, scaler, args.steps, device)
    print(f"[bench_feed] from memory: {memory:.1f} images/s", file=sys.stderr, flush=True)
    rows = []
    for nw in args.workers:
        cfg_w = build_cfg(args, root, nw, n_images)
        alone = loader_alone(train_dataloader(cfg_w, build_train_dataset(cfg_w)), args.steps)
        fed = fed_by_loader(module, opt, train_dataloader(cfg_w, build_train_dataset(cfg_w)), amp, scaler,
                            args.steps, device)
        rows.append(dict(workers=nw, loader_items_per_s=alone, fed_images_per_s=fed, fed_over_memory=fed / memory))
        print(f"[bench_feed] {nw} workers: loader alone {alone:.1f} items/s, step fed by it {fed:.1f} images/s "
              f"({100 * fed / memory:.0f} % of from memory)", file=sys.stderr, flush=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return dict(device=str(device), gpu=gpu, cpu_count=os.cpu_count(), backbone=args.backbone, img_res=args.img_res,
                batch_size=args.batch_size, precision=str(cfg.TRAINER.PRECISION), steps=args.steps, size=f"{w}x{h}",
                frames=args.frames, jpeg_region=args.jpeg_region, from_memory_images_per_s=memory, rows=rows,
                notes=notes)


def markdown(r: dict) -> str:
    lines = [f"Whole DSR training step ({r['backbone']}, {r['img_res']} px, batch {r['batch_size']}, {r['precision']}) "
             f"on `{r['device']}`" + (f" ({r['gpu']})" if r["gpu"] else "") + f", {r['cpu_count']} CPUs; "
             f"{r['size']} frames with palette masks, JPEG decode `{r['jpeg_region']}`, {r['steps']} timed steps.", "",
             f"From memory: **{r['from_memory_images_per_s']:.1f} images/s**.", "",
             "| loader workers | loader alone, items/s | step fed by the loader, images/s | % of from memory |",
             "|---:|---:|---:|---:|"]
    for row in r["rows"]:
        lines.append(f"| {row['workers']} | {row['loader_items_per_s']:.1f} | {row['fed_images_per_s']:.1f} | "
                     f"{100 * row['fed_over_memory']:.0f} % |")
    lines += [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--img-res", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="16-mixed")
    p.add_argument("--steps", type=int, default=20, help="timed steps (and loader batches) per row")
    p.add_argument("--workers", type=int, nargs="+", default=[max(1, (os.cpu_count() or 2) - 1)])
    p.add_argument("--frames", type=int, default=64, help="fabricated frames (each is read many times)")
    p.add_argument("--size", default="1000x1000", help="WxH of the frames")
    p.add_argument("--jpeg-region", default="auto", help="DATASET.JPEG_REGION_DECODE: auto | off | a path")
    p.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="torch threads of the step")
    p.add_argument("--work", default=None, help="folder of the fabricated frames (reused)")
    p.add_argument("--json", default=None)
    p.add_argument("--out", default=None, help="also write the markdown table here")
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda but no CUDA device is visible (use --device cpu)", file=sys.stderr)
            return 2
    if any(w < 0 for w in args.workers) or args.steps < 1 or args.batch_size < 1 or args.frames < 1:
        print("error: --workers >= 0, --steps, --batch-size and --frames >= 1", file=sys.stderr)
        return 2
    r = run(args)
    text = markdown(r)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        from dsr.reporting import write_json_atomic

        write_json_atomic(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
