#!/usr/bin/env python
"""Time ``python -m dsr.data.preprocess`` per 1,000 rows on fabricated raw trees of realistic form.

    python benchmarks/bench_preprocess.py [--work DIR] [--pw3d-seqs 6] [--pw3d-frames 1000] [--coco 30000] [--eft 5000]

Fabricated (random values, the real files' keys and array sizes):
  3DPW   --pw3d-seqs sequence pickles of --pw3d-frames frames and 2 people, with the download's
         other per-sequence arrays (60 Hz poses / translations, clothed template, joint positions),
         10 % of the camera poses invalid; the same tree as test and as train (S / part through the
         free body model).
  COCO   a person_keypoints_train2014.json of --coco annotations (segmentation polygons included,
         about 60 % passing SPIN's 12-joint filter) and an EFT fits json of --eft records.
Each command runs in this process (imports excluded), wall-clock time, the best of --repeats.
"""
import argparse
import json
import os
import pickle
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from dsr.data.preprocess.__main__ import main as cli  # noqa: E402

FREE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dsr", "assets", "free_body")


def make_pw3d(root: str, seqs: int, frames: int, rng) -> None:
    for split in ("test", "train"):
        folder = os.path.join(root, "sequenceFiles", split)
        os.makedirs(folder, exist_ok=True)
        for s in range(seqs):
            P, N = 2, frames
            cams = np.tile(np.eye(4), (N, 1, 1))
            cams[:, :3, 3] = rng.normal(0, 1, (N, 3)) + [0, 0, 5]
            p2d = np.stack([np.stack([rng.uniform(0, 1080, (N, 18)), rng.uniform(0, 1920, (N, 18)),
                                      rng.uniform(0, 1, (N, 18))], axis=1) for _ in range(P)])
            data = {
                "sequence": f"seq_{s:02d}", "genders": ["m", "f"],
                "poses": [rng.normal(0, 0.3, (N, 72)) for _ in range(P)],
                "betas": [rng.normal(0, 1, 10) for _ in range(P)],
                "trans": [rng.normal(0, 1, (N, 3)) for _ in range(P)],
                "poses2d": list(p2d), "cam_poses": cams,
                "campose_valid": [(rng.uniform(size=N) > 0.1).astype(np.int64) for _ in range(P)],
                "cam_intrinsics": np.array([[1961.0, 0, 540], [0, 1969.0, 960], [0, 0, 1]]),
                "img_frame_ids": np.arange(N),
                "poses_60Hz": [rng.normal(0, 0.3, (2 * N, 72)) for _ in range(P)],
                "trans_60Hz": [rng.normal(0, 1, (2 * N, 3)) for _ in range(P)],
                "jointPositions": [rng.normal(0, 1, (N, 72)) for _ in range(P)],
                "betas_clothed": [rng.normal(0, 1, 10) for _ in range(P)],
                "v_template_clothed": [rng.normal(0, 1, (6890, 3)) for _ in range(P)],
            }
            with open(os.path.join(folder, f"seq_{s:02d}.pkl"), "wb") as f:
                pickle.dump(data, f, protocol=2)


def make_coco(root: str, n_annots: int, n_eft: int, rng) -> str:
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    n_img = n_annots // 3
    images = [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": 480, "width": 640}
              for i in range(n_img)]
    annots = []
    for a in range(n_annots):
        kp = np.stack([rng.integers(0, 640, 17), rng.integers(0, 480, 17), rng.choice([0, 1, 2], 17, p=[0.04, 0.3, 0.66])], 1)
        seg = rng.uniform(0, 480, 40).round(2).tolist()
        annots.append({"id": a + 1, "image_id": int(a % n_img), "category_id": 1, "iscrowd": 0, "area": 1000.0,
                       "num_keypoints": int((kp[:, 2] > 0).sum()), "keypoints": kp.reshape(-1).tolist(),
                       "bbox": rng.uniform(0, 300, 4).round(2).tolist(), "segmentation": [seg]})
    with open(os.path.join(root, "annotations", "person_keypoints_train2014.json"), "w") as f:
        json.dump({"images": images, "annotations": annots, "categories": [{"id": 1, "name": "person"}]}, f)
    from scipy.spatial.transform import Rotation

    recs = []
    for k in range(n_eft):
        a = annots[k * (n_annots // n_eft)]
        recs.append({"parm_pose": Rotation.random(24, random_state=k).as_matrix().astype(np.float32).tolist(),
                     "parm_shape": rng.normal(0, 1, 10).astype(np.float32).tolist(),
                     "parm_cam": [0.9, 0.0, 0.1], "bbox_scale": 1.3, "bbox_center": [300.0, 200.0],
                     "gt_keypoint_2d": rng.uniform(0, 500, (49, 3)).astype(np.float32).tolist(),
                     "joint_validity_openpose18": [1] * 18, "smpltype": "smpl", "annotId": a["id"],
                     "imageName": images[a["image_id"]]["file_name"]})
    path = os.path.join(root, "COCO2014-Part-ver01.json")
    with open(path, "w") as f:
        json.dump({"ver": 0.1, "data": recs, "meta": {}}, f)
    return path


def timed(argv, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        if cli(argv) != 0:
            raise SystemExit(f"failed: {' '.join(argv)}")
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="", help="folder for the fabricated trees (default: a temporary one)")
    p.add_argument("--pw3d-seqs", type=int, default=6)
    p.add_argument("--pw3d-frames", type=int, default=1000)
    p.add_argument("--coco", type=int, default=30000, help="COCO annotations")
    p.add_argument("--eft", type=int, default=5000, help="EFT records")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    work = a.work or tempfile.mkdtemp(prefix="bench_preprocess_")
    rng = np.random.default_rng(0)
    make_pw3d(os.path.join(work, "3dpw"), a.pw3d_seqs, a.pw3d_frames, rng)
    eft = make_coco(os.path.join(work, "coco"), a.coco, a.eft, rng)
    out = os.path.join(work, "out")
    body = ["--smpl-dir", os.path.join(FREE, "smpl"), "--extra-regressor", os.path.join(FREE, "J_regressor_extra.npy")]
    runs = [
        ("3dpw test", ["3dpw", "--root", os.path.join(work, "3dpw"), "--out", out], "3dpw_test.npz"),
        ("3dpw test, --workers 2", ["3dpw", "--root", os.path.join(work, "3dpw"), "--out", out, "--workers", "2"],
         "3dpw_test.npz"),
        ("3dpw train (S, part: free body model)", ["3dpw", "--root", os.path.join(work, "3dpw"), "--out", out,
                                                  "--split", "train"] + body, "3dpw_train.npz"),
        ("3dpw train, --workers 2", ["3dpw", "--root", os.path.join(work, "3dpw"), "--out", out, "--split", "train",
                                     "--workers", "2"] + body, "3dpw_train.npz"),
        ("coco (SPIN rows)", ["coco", "--root", os.path.join(work, "coco"), "--out", out], "coco_2014_train.npz"),
        ("coco + EFT", ["coco", "--root", os.path.join(work, "coco"), "--out", out, "--eft", eft],
         "coco_2014_train.npz"),
    ]
    lines = ["| command | rows written | input | time (s) | s per 1,000 rows |", "|---|---|---|---|---|"]
    for name, argv_, npz in runs:
        t = timed(argv_, a.repeats)
        n = len(np.load(os.path.join(out, "dataset_extras", npz))["imgname"])
        inp = (f"{a.pw3d_seqs} sequences x {a.pw3d_frames} frames x 2 people" if name.startswith("3dpw")
               else f"{a.coco} annotations" + (f", {a.eft} fits" if "EFT" in name else ""))
        lines.append(f"| {name} | {n} | {inp} | {t:.1f} | {1000 * t / n:.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
