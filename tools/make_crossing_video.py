#!/usr/bin/env python
"""Render the two-person crossing video with known SMPL parameters (dsr/inference/crossing_video.py).

    python tools/make_crossing_video.py --out_dir O [--seconds 10] [--fps 25] [--size 640 480] [--seed 0]

Writes O/crossing.mp4, O/crossing_boxes.json (the true boxes, the demo's --boxes format) and
O/crossing_truth.npz (pose, betas, cam_t, boxes per frame and person; focal_length, fps, img_size).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out_dir", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stem", default="crossing")
    a = p.parse_args(argv)
    if a.seconds <= 0 or a.fps <= 0 or min(a.size) < 32:
        p.error("--seconds and --fps must be > 0 and --size at least 32 x 32")
    from dsr.inference.crossing_video import make_crossing_video

    tr = make_crossing_video(a.out_dir, a.seconds, a.fps, tuple(a.size), a.seed, a.stem)
    print(f"{os.path.join(a.out_dir, a.stem)}.mp4: {tr['pose'].shape[0]} frames at {a.fps:g} fps, "
          f"{a.size[0]}x{a.size[1]}, 2 people; boxes {a.stem}_boxes.json, truth {a.stem}_truth.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
