#!/usr/bin/env python
"""Speed of the photo/video demo, whole pipeline, by stage (read, detect, track, regress, render, write).

    python benchmarks/bench_demo.py [--video V.mp4 --boxes B.json] [--seconds 4] [--det-every 1 5]
                                    [--detectors] [--threads 2] [--backbone resnet50]

The release regressor (ResNet-50 HMR at 224 px, random weights: speed does not depend on them) on
the free body, the default detector (torchvision fasterrcnn_mobilenet_v3_large_fpn, random
weights: its cost is the same, proposals and NMS sizes are fixed) run on every frame or every N-th
(--det-every); because a random detector finds nobody, the boxes it is timed for are replaced by
the video's true boxes (B.json). Without --video, renders the 640x480 crossing video
(tools/make_crossing_video.py) of --seconds seconds first. --detectors also times each detector
alone on one 640x480 frame (the choice of the default). Prints markdown tables and the load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_regressor(backbone: str, img_res: int, focal: float):
    from dsr.models import HMR

    free = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dsr", "assets", "free_body")
    return HMR(backbone=backbone, backbone_weights="", smpl_model_dir=os.path.join(free, "smpl"),
               mean_params=os.path.join(free, "smpl_mean_params.npz"),
               extra_regressor=os.path.join(free, "J_regressor_extra.npy"), focal_length=focal, img_res=img_res).eval()


class TimedDetector:
    """Runs a random-weight detector (for its time) and returns the true boxes of those frames."""

    def __init__(self, net, boxes):
        self.net, self.boxes, self.next = net, boxes, 0

    def __call__(self, frames):
        import numpy as np

        self.net(frames)
        out = []
        for _ in frames:
            out.append(np.array([b + [1.0] if len(b) == 4 else b for b in self.boxes[self.next]], np.float64))
            self.next += self.det_every
        return out


def random_detector(name: str, size=None):
    import torch
    import torchvision.models.detection as det

    from dsr.inference.detector import DETECTORS, PersonDetector

    path = os.path.join(tempfile.mkdtemp(), f"{name}.pth")
    torch.manual_seed(0)
    torch.save(getattr(det, DETECTORS[name][0])(weights=None, weights_backbone=None).state_dict(), path)
    d = PersonDetector(name, path, threshold=0.5, size=size)
    os.remove(path)
    return d


def main(argv=None) -> int:
    import numpy as np
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video")
    p.add_argument("--boxes")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--det-every", dest="det_every", type=int, nargs="+", default=[1, 5])
    p.add_argument("--detectors", action="store_true")
    p.add_argument("--det-size", dest="det_size", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from dsr.inference.run import STAGES, process_video

    work = tempfile.mkdtemp(prefix="bench_demo_")
    if not a.video:
        from dsr.inference.crossing_video import make_crossing_video

        make_crossing_video(work, a.seconds, 25.0, (640, 480), seed=0, progress=False)
        a.video, a.boxes = os.path.join(work, "crossing.mp4"), os.path.join(work, "crossing_boxes.json")
    with open(a.boxes) as f:
        boxes = json.load(f)
    print(f"load before: {os.getloadavg()}; threads {a.threads}; device {a.device}; torch {torch.__version__}")
    if a.detectors:
        from dsr.inference.detector import DETECTORS

        frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        print("\n| detector (random weights, one 640x480 frame) | s / frame (median of 3) |\n|---|---|")
        for name, size in [(n, None) for n in DETECTORS] + [("fasterrcnn_mobilenet_v3", 480)]:
            d = random_detector(name, size)
            d([frame])
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                d([frame])
                ts.append(time.perf_counter() - t0)
            print(f"| {name}{'' if size is None else f' (--det-size {size})'} | {sorted(ts)[1]:.2f} |")
    model = build_regressor(a.backbone, 224, 5000.0).to(a.device)
    det = random_detector("fasterrcnn_mobilenet_v3", a.det_size)
    rows = []
    for n in a.det_every:
        timed = TimedDetector(det, boxes)
        timed.det_every = n
        t0 = time.perf_counter()
        s = process_video(model, a.video, os.path.join(work, f"out{n}"), detector=timed, det_every=n, batch_size=8,
                          device=a.device, progress=False)
        wall = time.perf_counter() - t0
        rows.append((n, s, wall))
    print(f"\nload after: {os.getloadavg()}")
    print(f"\n{a.backbone} regressor + fasterrcnn_mobilenet_v3 detector (det-size {a.det_size or 800}), "
          f"{rows[0][1].frames} frames 640x480, {a.threads} threads\n")
    print("| det every | frames/s | " + " | ".join(f"{st} s/frame" for st in STAGES) + " | people/frame |")
    print("|---|---|" + "---|" * len(STAGES) + "---|")
    for n, s, wall in rows:
        per = " | ".join(f"{s.seconds.get(st, 0.0) / s.frames:.3f}" for st in STAGES)
        print(f"| {n} | {s.frames / wall:.2f} | {per} | {s.people / s.frames:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
