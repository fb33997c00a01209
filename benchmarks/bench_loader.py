#!/usr/bin/env python
"""Time the training item path (``BaseDataset.__getitem__``) on one core at real frame sizes.

    python benchmarks/bench_loader.py [--sizes 1000x1000 2048x2048 640x480] [--masks palette colour]
        [--configs nIOU DistM] [--frames 12] [--items 24] [--rounds 7] [--workers 0 2]
        [--no-old] [--no-stages] [--work DIR] [--json FILE]

Fabricated data (``benchmarks/loader_fixtures.py``): per size, ``--frames`` JPEG frames (quality 90)
with a Graphonomy mask each, an 8-bit palette PNG as the parsing tool writes it ('palette') or a
24-bit colour PNG ('colour'), and a SPIN-format npz over them; the DSR targets on (METHOD 'dsr'),
SPIN's augmentation. Configs: 'nIOU' is the release training config (``DSR.DSR_MC_LOSS_TYPE
nIOU``, configs/dsr_train.cfg: no distance map), 'DistM' adds the distance transform.

Per (size, masks, config): ``--rounds`` rounds, each timing ``--items`` items of the previous
path (``tests/_reference_loader.py``, whole-frame float conversion) and of the current one, in
alternating order, the same frames and augmentation draws for both; torch and OpenCV on one
thread. Printed: the median over rounds of ms per item in process CPU time (a core's work; other
processes' load inflates it far less than the wall time, also shown), items/s per core
(1000 / CPU ms), the median per-round ratio old / new (CPU, and wall), and the cores that 1,000
items/s need (= CPU ms per item). ``--stages``: the mean per-stage split of one
pass in CPU (thread) time (read, decode, crop/warp, image normalise, labels, mask read, mask crop,
mask targets, tensors). ``--workers N``: items/s of a ``train_dataloader`` (batch 32) with N workers, steady
state (after the first batch). Results in docs/benchmarks.md and docs/loader.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
sys.path.insert(0, os.path.join(REPO, "tests"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from loader_fixtures import loader_cfg, make_loader_dataset, time_items  # noqa: E402

STAGES = ("read", "decode", "crop", "normalise", "labels", "mask read", "mask crop", "mask targets", "tensors")


JPEG_REGION = "auto"  # DATASET.JPEG_REGION_DECODE of the current path (--jpeg-region)


def _cfg(root: str, loss: str):
    cfg = loader_cfg(root, loss)
    cfg.DATASET.JPEG_REGION_DECODE = JPEG_REGION
    cfg.DATASET.NUM_WORKERS = 0
    return cfg


def dataset_dir(work: str, size, masks: str, frames: int) -> str:
    """Fabricate (once) and return the folder of one (size, mask format)."""
    h, w = size
    root = os.path.join(work, f"{w}x{h}_{masks}_{frames}")
    if not os.path.isfile(os.path.join(root, "train.npz")):
        make_loader_dataset(root, os.path.join(root, "train.npz"), (h, w), frames, masks, seed=0)
    return root


def _datasets(root: str, loss: str, seed: int):
    from _reference_loader import ReferenceDataset

    from dsr.data import BaseDataset

    cfg = _cfg(root, loss)
    old = ReferenceDataset(cfg, "h36m", is_train=True, rng=np.random.default_rng(seed))
    new = BaseDataset(cfg, "h36m", is_train=True, rng=np.random.default_rng(seed))
    return old, new


def _path_worker(conn, root: str, loss: str, which: str, jpeg_region: str, tune_old: bool) -> None:
    """One path ('old' or 'new') in a process of its own, set up as a DataLoader worker of its code
    (the new one: ``worker_init_fn`` with the config's DATASET.WORKER_KEEP_FREED_MB; the old one:
    one OpenCV thread, glibc's default malloc unless ``tune_old``). Commands: ("items", idx, seed)
    -> (wall, CPU) ms per item; ("stages", passes) -> mean CPU ms per stage; None ends it."""
    global JPEG_REGION
    JPEG_REGION = jpeg_region
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from loguru import logger

    from dsr.data.loader import keep_freed_memory, worker_init_fn

    logger.remove()
    keep_mb = int(_cfg(root, loss).DATASET.WORKER_KEEP_FREED_MB)
    if which == "new":
        worker_init_fn(0, keep_freed_mb=keep_mb)
    elif tune_old:
        keep_freed_memory(keep_mb)
    old, new = _datasets(root, loss, 0)
    ds = old if which == "old" else new
    time_items(ds, range(min(len(ds), 4)), 0)  # warm-up (file cache, allocations)
    conn.send(len(ds))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        if msg[0] == "items":
            conn.send(time_items(ds, msg[1], msg[2]))
        else:
            conn.send(_stages(ds, _stages_old if which == "old" else _stages_new, msg[1]))


class PathProcesses:
    """The old and the new path each in a process of its own (as in a DataLoader worker): in one
    process, each path's large allocations change the other's (glibc's adaptive mmap threshold)."""

    def __init__(self, root: str, loss: str, with_old: bool = True, tune_old: bool = False):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.names = ("old", "new") if with_old else ("new",)
        self.procs, self.conns = {}, {}
        for name in self.names:
            a, b = ctx.Pipe()
            self.procs[name] = ctx.Process(target=_path_worker, args=(b, root, loss, name, JPEG_REGION, tune_old),
                                           daemon=True)
            self.procs[name].start()
            self.conns[name] = a
        self.n = min(self.conns[name].recv() for name in self.names)

    def ask(self, name: str, msg):
        self.conns[name].send(msg)
        return self.conns[name].recv()

    def close(self):
        for name in self.names:
            self.conns[name].send(None)
            self.procs[name].join(30)


def bench_items(root: str, loss: str, items: int, rounds: int, with_old: bool = True, tune_old: bool = False) -> dict:
    """Interleaved old/new rounds (each path in its own process) -> medians (ms per item, wall and
    CPU) and the median ratio."""
    pp = PathProcesses(root, loss, with_old, tune_old)
    res = {"old_ms": [], "old_cpu_ms": [], "new_ms": [], "new_cpu_ms": []}
    try:
        for r in range(rounds):
            idx = [(r * items + k) % pp.n for k in range(items)]
            for name in (pp.names if r % 2 == 0 else pp.names[::-1]):
                wall, cpu = pp.ask(name, ("items", idx, 1000 + r))  # the same augmentation draws
                res[f"{name}_ms"].append(wall)
                res[f"{name}_cpu_ms"].append(cpu)
    finally:
        pp.close()
    out = {k: float(np.median(v)) for k, v in res.items() if v}
    if with_old:
        out["ratio"] = float(np.median(np.array(res["old_ms"]) / np.array(res["new_ms"])))
        out["cpu_ratio"] = float(np.median(np.array(res["old_cpu_ms"]) / np.array(res["new_cpu_ms"])))
    return out


# ----------------------------------------------------------------------------- per-stage split
def _stages_new(ds, i, p, t):
    """One pass of the current item path, step by step (the calls of BaseDataset.__getitem__)."""
    from dsr.data import graphonomy as G
    from dsr.data.base_dataset import _augment_normalize
    from dsr.data.frame_io import read_mask, truncated_jpeg
    from dsr.data.image_utils import (
        crop_region_cv2,
        crop_transform,
        j2d_processing,
        j3d_processing,
        pose_processing,
        warp_source_box,
    )
    from dsr.data.jpeg_region import get_region_decoder

    flip, pn, rot, sc = p
    path = os.path.join(ds.root, ds.imgname[i])
    s = sc * ds.scale[i]
    t("read")
    with open(path, "rb") as f:
        data = f.read()
    truncated_jpeg(data)
    t("read")
    dec = get_region_decoder(ds.jpeg_region_decode)
    header = dec.header(data) if dec is not None else None
    if header is None:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        shape, x0, y0 = bgr.shape, 0, 0
    else:  # the region decode that the crop's fill makes, done here to time it apart
        shape = (header[0], header[1], 3)
        trans, size = crop_transform(ds.center[i], s, ds.img_res, rot)
        box = warp_source_box(trans, size, shape[:2]) or (0, 0, 1, 1)
        bgr, x0, y0 = dec.decode(data, header, *box)
    t("decode")

    def fill(dst, a0, b0, a1, b1):
        dst[...] = bgr[b0 - y0:b1 - y0, a0 - x0:a1 - x0]

    img = crop_region_cv2(shape, fill, ds.center[i], s, ds.img_res, rot=rot, buf=ds._scratch)
    t("crop")
    img = _augment_normalize(img, flip, pn)
    t("normalise")
    kp = j2d_processing(ds.keypoints[i], ds.center[i], s, rot, flip, ds.img_res)
    j3d_processing(ds.pose_3d[i], rot, flip)
    pose_processing(ds.pose[i], rot, flip)
    t("labels")
    mask = read_mask(G.mask_path(ds.root, ds.imgname[i]))
    t("mask read")
    box = ds._label_box(kp)
    crop = ds._mask_crop(mask, ds.center[i], s, rot, flip, box)
    t("mask crop")
    ds._targets_from_crop(crop, flip, box)
    t("mask targets")
    torch.from_numpy(img)
    t("tensors")


def _stages_old(ds, i, p, t):
    """One pass of the previous item path (tests/_reference_loader.py), step by step."""
    from _reference_loader import _decode_colour_mask_ref, _dsr_mc_target_ref, _normalize_img, reference_crop_cv2

    from dsr.data import graphonomy as G
    from dsr.data.frame_io import truncated_jpeg
    from dsr.data.image_utils import flip_img, j2d_processing, j3d_processing, pose_processing

    flip, pn, rot, sc = p
    path = os.path.join(ds.root, ds.imgname[i])
    s = sc * ds.scale[i]
    res = ds.img_res
    t("read")
    with open(path, "rb") as f:
        data = f.read()
    truncated_jpeg(data)
    t("read")
    img_u8 = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    t("decode")
    img = reference_crop_cv2(img_u8.astype(np.float32), ds.center[i], s, res, rot=rot)
    t("crop")
    if flip:
        img = flip_img(img)
    img = _normalize_img(np.clip(img * pn.astype(np.float32)[None, None, :], 0.0, 255.0) / 255.0)
    t("normalise")
    kp = j2d_processing(ds.keypoints[i], ds.center[i], s, rot, flip, res)
    j3d_processing(ds.pose_3d[i], rot, flip)
    pose_processing(ds.pose[i], rot, flip)
    t("labels")
    bgr = cv2.imread(G.mask_path(ds.root, ds.imgname[i]), cv2.IMREAD_COLOR)
    t("mask read")
    crop = reference_crop_cv2(bgr.astype(np.float32), ds.center[i], s, res, rot=rot)[:, :, ::-1]
    if flip:
        crop = flip_img(crop)
    crop = ((crop / 255.0) * 255).astype(np.uint8)
    t("mask crop")
    labels, known = _decode_colour_mask_ref(crop)
    x0, y0, x1, y1 = G.keypoint_box(kp, res)
    inside = np.zeros((res, res), dtype=bool)
    inside[y0:y1, x0:x1] = True
    labels = np.where(inside, labels, 0)
    known = known | ~inside
    mc, _ = _dsr_mc_target_ref(labels, ds.mc_min_px)
    G.dsr_c_class_weights(G.merge_dsr_c_labels(labels), counted=known, min_px=ds.c_min_px)
    if ds.with_dist_mat:
        G.mc_distance_transform(mc)
    t("mask targets")
    torch.from_numpy(img)
    t("tensors")


def _stages(ds, fn, passes: int) -> dict:
    """Mean CPU ms per stage of ``fn`` (one path) over ``passes`` items (after 2 warm-up ones)."""
    from dsr.data.image_utils import sample_augmentation

    rng = np.random.default_rng(5)  # the same draws in both paths' processes
    acc = dict.fromkeys(STAGES, 0.0)
    for k in range(passes + 2):
        p = sample_augmentation(rng, 0.4, 30.0, 0.25)
        last = [time.thread_time()]

        def tick(stage, last=last, warm=k < 2):
            now = time.thread_time()
            if not warm:
                acc[stage] += (now - last[0]) * 1e3
            last[0] = now

        fn(ds, k % len(ds), p, tick)
    return {s: v / passes for s, v in acc.items()}


def bench_stages(root: str, loss: str, passes: int, tune_old: bool = False) -> dict:
    """Mean CPU ms per stage of the old and new paths, each in its own process."""
    pp = PathProcesses(root, loss, True, tune_old)
    try:
        return {name: pp.ask(name, ("stages", passes)) for name in pp.names}
    finally:
        pp.close()


# ----------------------------------------------------------------------------- DataLoader
def bench_loader(root: str, loss: str, workers: int, batches: int = 6, batch_size: int = 32) -> float:
    """Items/s of the training DataLoader (current path) with ``workers`` workers, steady state."""
    from dsr.data import BaseDataset, train_dataloader

    cfg = _cfg(root, loss)
    cfg.DATASET.NUM_WORKERS = workers
    cfg.DATASET.PERSISTENT_WORKERS = False
    ds = BaseDataset(cfg, "h36m", is_train=True)
    ds_len = len(ds)
    reps = -(-(batches + 1) * batch_size // ds_len)
    big = torch.utils.data.ConcatDataset([ds] * reps)
    loader = train_dataloader(cfg, big, batch_size=batch_size)
    it = iter(loader)
    next(it)  # start-up and the first batch excluded
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        b = next(it)
        n += len(b["img"])
    dt = time.perf_counter() - t0
    del it, loader
    return n / dt


def table_row(r: dict) -> str:
    """One markdown row; per core = 1000 / CPU ms (the process's CPU time: a core's work, which
    other processes' load inflates far less than the wall time); cores per 1,000 items/s = CPU ms."""
    new = f"{r['new_cpu_ms']:.1f} ({r['new_ms']:.1f})"
    if "old_ms" not in r:
        return (f"| {r['size']} | {r['masks']} | {r['config']} | - | {new} | - | {1e3 / r['new_cpu_ms']:.0f} | - | "
                f"- / {r['new_cpu_ms']:.1f} |")
    return (f"| {r['size']} | {r['masks']} | {r['config']} | {r['old_cpu_ms']:.1f} ({r['old_ms']:.1f}) | {new} | "
            f"{1e3 / r['old_cpu_ms']:.0f} | {1e3 / r['new_cpu_ms']:.0f} | {r['cpu_ratio']:.2f}x ({r['ratio']:.2f}x) | "
            f"{r['old_cpu_ms']:.1f} / {r['new_cpu_ms']:.1f} |")


def _fmt_size(s) -> str:
    return f"{s[1]}x{s[0]}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["1000x1000", "2048x2048", "640x480"], help="WxH frames")
    p.add_argument("--masks", nargs="+", default=["palette", "colour"], choices=["palette", "colour"])
    p.add_argument("--configs", nargs="+", default=["nIOU", "DistM"], choices=["nIOU", "DistM"])
    p.add_argument("--frames", type=int, default=12, help="fabricated frames per size")
    p.add_argument("--items", type=int, default=24, help="items per timed round")
    p.add_argument("--rounds", type=int, default=7, help="interleaved old/new rounds (median)")
    p.add_argument("--workers", type=int, nargs="*", default=[], help="DataLoader worker counts to time")
    p.add_argument("--no-old", action="store_true", help="time the current path only")
    p.add_argument("--no-stages", action="store_true", help="skip the per-stage split")
    p.add_argument("--stage-passes", type=int, default=24)
    p.add_argument("--work", default=None, help="folder of the fabricated data (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--tune-old", action="store_true",
                   help="give the old path's process the new workers' malloc setting too (the code's own gain)")
    p.add_argument("--jpeg-region", default="auto",
                   help="DATASET.JPEG_REGION_DECODE of the current path: auto | off | path of libturbojpeg >= 3")
    args = p.parse_args(argv)
    global JPEG_REGION
    JPEG_REGION = args.jpeg_region
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    sizes = []
    for s in args.sizes:
        try:
            w, h = (int(v) for v in s.lower().split("x"))
        except ValueError:
            print(f"error: --sizes: '{s}' is not WxH", file=sys.stderr)
            return 2
        sizes.append((h, w))
    from loguru import logger

    logger.remove()
    work = args.work or tempfile.mkdtemp(prefix="bench_loader_")
    os.makedirs(work, exist_ok=True)
    print(f"# bench_loader {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs, torch/OpenCV 1 thread")
    from dsr.data.jpeg_region import get_region_decoder

    dec = get_region_decoder(JPEG_REGION)
    print(f"# current path's JPEG decode: {'region, ' + dec.path if dec else 'whole frame (OpenCV)'}")
    results = []
    print("| frames | masks | config | old ms/item CPU (wall) | new ms/item CPU (wall) | old items/s/core "
          "| new items/s/core | ratio CPU (wall) | cores per 1,000 items/s, old / new |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        for masks in args.masks:
            root = dataset_dir(work, size, masks, args.frames)
            for loss in args.configs:
                r = bench_items(root, loss, args.items, args.rounds, with_old=not args.no_old, tune_old=args.tune_old)
                r.update(size=_fmt_size(size), masks=masks, config=loss)
                results.append(r)
                print(table_row(r), flush=True)
    if not args.no_stages:
        print("\nPer-stage split (mean CPU ms per item (thread time); one pass each, interleaved; the new "
              "path's 'mask read' only checks the PNG's chunks: it inflates the rows in 'mask crop'):")
        for size in sizes:
            for masks in args.masks:
                root = dataset_dir(work, size, masks, args.frames)
                st = bench_stages(root, args.configs[0], args.stage_passes, args.tune_old)
                print(f"\n{_fmt_size(size)}, {masks} masks, {args.configs[0]}:\n")
                print("| stage | " + " | ".join(STAGES) + " | sum |")
                print("|---|" + "---|" * (len(STAGES) + 1))
                for name in ("old", "new"):
                    vals = [st[name][s] for s in STAGES]
                    print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {sum(vals):.1f} |", flush=True)
                results.append({"size": _fmt_size(size), "masks": masks, "stages": st})
    for nw in args.workers:
        root = dataset_dir(work, sizes[0], args.masks[0], args.frames)
        ips = bench_loader(root, args.configs[0], nw)
        print(f"\nDataLoader, {_fmt_size(sizes[0])} {args.masks[0]} {args.configs[0]}, {nw} workers, batch 32: "
              f"{ips:.0f} items/s", flush=True)
        results.append({"workers": nw, "items_per_s": ips})
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        from dsr.reporting import write_json_atomic

        write_json_atomic(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
