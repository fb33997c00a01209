#!/usr/bin/env python
"""Time a human parser's full procedure (``dsr.parsing.parse_images``) on person crops.

    python benchmarks/bench_parsing.py --parser schp-lip [--sizes 256 384 512] [--scales 1] [--no-flip]
        [--batch-size 1] [--repeat 3] [--device cpu|cuda] [--threads N]

Random weights (seed 0) and random square RGB crops of each size; per size: the median wall
seconds per image over ``--repeat`` timed calls (after one warm-up call), images / s, the median
process CPU seconds per image (all threads; less sensitive to other processes' load than the wall
time), and on CUDA the peak memory. The figures in docs/benchmarks.md come from this script.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dsr.parsing import PARSERS, build_parser, parse_images  # noqa: E402


def bench(parser: str, sizes, scales, flip: bool, batch_size: int, repeat: int, device: str) -> list[dict]:
    """-> one dict per size: size, s_per_image (wall), cpu_s_per_image (process CPU time, all threads),
    images_per_s, peak_mib (CUDA only, else None)."""
    torch.manual_seed(0)
    model = build_parser(parser).to(device)
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        imgs = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(batch_size)]
        parse_images(model, parser, imgs, scales=scales, flip=flip)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times, cpu = [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            parse_images(model, parser, imgs, scales=scales, flip=flip)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) / batch_size)
            cpu.append((time.process_time() - c0) / batch_size)
        s = float(np.median(times))
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
        rows.append({"size": size, "s_per_image": s, "cpu_s_per_image": float(np.median(cpu)),
                     "images_per_s": 1.0 / s, "peak_mib": peak})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parser", required=True, choices=PARSERS)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512], help="square crop sides (pixels)")
    p.add_argument("--scales", type=float, nargs="+", default=None, help="default: the parser's own")
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = bench(a.parser, a.sizes, a.scales, not a.no_flip, a.batch_size, a.repeat, a.device)
    print(f"{a.parser}, scales {a.scales or 'default'}, flip {not a.no_flip}, batch {a.batch_size}, "
          f"device {a.device}, {torch.get_num_threads()} threads")
    print("crop (px) | s / image | images / s | CPU s / image" + (" | peak MiB" if a.device.startswith("cuda") else ""))
    for r in rows:
        peak = f" | {r['peak_mib']:.0f}" if r["peak_mib"] is not None else ""
        print(f"{r['size']} | {r['s_per_image']:.3f} | {r['images_per_s']:.3f} | {r['cpu_s_per_image']:.2f}{peak}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
