#!/usr/bin/env python
"""Accuracy of the video demo on the crossing video (known SMPL parameters): PVE against the truth,
joint jitter and identity switches, without and with --smooth, through demo.py itself.

    python tools/make_crossing_video.py --out_dir V
    python studies/demo_accuracy.py --checkpoint CKPT --video_dir V --out_dir O [--min-cutoff 1 --beta 0.5]

Runs ``demo.py --video V/crossing.mp4 --boxes V/crossing_boxes.json --save_params`` into O/raw and
(with ``--smooth``) into O/smooth, checks the mp4s' frame count and fps against the input, and
scores each npz (dsr/inference/crossing_video.evaluate_rows): pelvis-aligned PVE (mm), jitter =
mean |acceleration| of the 24 pelvis-aligned SMPL joints (mm / frame^2; the truth's own beside it),
identity switches. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    import numpy as np

    import demo
    from dsr.data.synthetic import load_body_models
    from dsr.inference.crossing_video import evaluate_rows
    from dsr.inference.video import VideoReader

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--cfg", default=None)
    p.add_argument("--video_dir", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--stem", default="crossing")
    p.add_argument("--min-cutoff", dest="min_cutoff", type=float, default=None)
    p.add_argument("--beta", type=float, default=None)
    p.add_argument("--only", choices=["raw", "smooth"], default=None)
    a = p.parse_args(argv)
    video = os.path.join(a.video_dir, f"{a.stem}.mp4")
    truth = dict(np.load(os.path.join(a.video_dir, f"{a.stem}_truth.npz")))
    body = load_body_models()[0]["neutral"]
    src = VideoReader(video)
    n_in = sum(1 for _ in src)
    rows = []
    for name in ("raw", "smooth"):
        if a.only and name != a.only:
            continue
        out = os.path.join(a.out_dir, name)
        args = ["--checkpoint", a.checkpoint, "--video", video, "--boxes", os.path.join(a.video_dir, f"{a.stem}_boxes.json"),
                "--outfile_folder", out, "--save_params"] + (["--cfg", a.cfg] if a.cfg else [])
        if name == "smooth":
            args.append("--smooth")
            if a.min_cutoff is not None:
                args += ["--min-cutoff", str(a.min_cutoff)]
            if a.beta is not None:
                args += ["--beta", str(a.beta)]
        print("python demo.py " + " ".join(args), flush=True)
        if demo.main(args) != 0:
            return 1
        r = VideoReader(os.path.join(out, f"{a.stem}_result.mp4"))
        n_out = sum(1 for _ in r)
        res = evaluate_rows(dict(np.load(os.path.join(out, f"{a.stem}.npz"))), truth, body)
        rows.append((name, n_out, r.fps, res))
    print(f"\ninput: {n_in} frames at {src.fps:g} fps, {src.width}x{src.height}")
    print("| run | frames out | fps out | id switches | PVE (mm) | jitter (mm/frame²) | truth jitter |")
    print("|---|---|---|---|---|---|---|")
    for name, n_out, fps, r in rows:
        print(f"| {name} | {n_out} | {fps:g} | {r['id_switches']} | {r['pve_mm']:.1f} | {r['jitter_mm']:.2f} | "
              f"{r['truth_jitter_mm']:.2f} |")
    if len(rows) == 2:
        a0, a1 = rows[0][3], rows[1][3]
        print(f"\nsmoothing: jitter x{a1['jitter_mm'] / a0['jitter_mm']:.3f}, PVE {100 * (a1['pve_mm'] / a0['pve_mm'] - 1):+.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
