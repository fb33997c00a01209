#!/usr/bin/env python
"""How much do 3DPW evaluation crops move when the box comes from other keypoints?

The original evaluates 3DPW on ``3dpw_test_with_mmpose.npz`` (boxes from PARE's mmpose
whole-body keypoints, per the issue; the file is not public and its recipe is not in PARE's code);
``python -m dsr.data.preprocess 3dpw`` builds boxes from 3DPW's own ``poses2d`` (18
OpenPose-COCO points). Neither detector can be run here, so this study measures the crop
difference on the embedded default's people (``synthetic_test.npz`` + the free body model), where
every point is known:

- ``poses2d`` box: the 18 OpenPose-COCO points (nose, neck, shoulders, elbows, wrists, hips,
  knees, ankles, eyes, ears);
- ``whole-body`` box: COCO-WholeBody's extent as far as the body model has the points: the 17
  COCO body points, the 6 foot points (big toes, small toes, heels), the hands (wrists and the
  10 finger tips) and the chin (the H36M jaw joint);
- both with SPIN's rule (min / max, scale factor 1.2), as square crops of side 200 x scale.

Per person the camera (focal, translation) is recovered by least squares from the npz's 49
projected joints (the reprojection error is printed). Detector error is then simulated on top,
independently for each box: Gaussian noise of sigma x (the person's longer side) on every point
and a dropout probability per point (a missed point does not make the box). Reported: crop IoU
between the two boxes, centre shift / crop side, scale ratio (whole-body / poses2d), over
``--repeats`` noise draws of every person; and, as the noise floor, the IoU of two independent
draws of the same ``poses2d`` box (``same-set IoU``). For scale: the training augmentation draws scale
factors in [0.75, 1.25]; two concentric crops 1.0 vs 1.1 have IoU 0.83, 1.0 vs 1.25 IoU 0.64.

    python studies/pw3d_crop_study.py [--npz dsr_data/dataset_extras/synthetic_test.npz]
        [--images dsr_data/dataset_folders/synthetic] [--repeats 20] [--seed 0]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dsr.constants import JOINT_MAP  # noqa: E402

# indices into the body model's 54 extended joints (24 SMPL, 21 vertex joints, 9 extra)
POSES2D = [JOINT_MAP[n] for n in ("OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist", "OP LShoulder",
                                  "OP LElbow", "OP LWrist", "OP RHip", "OP RKnee", "OP RAnkle", "OP LHip", "OP LKnee",
                                  "OP LAnkle", "OP REye", "OP LEye", "OP REar", "OP LEar")]
COCO17 = [JOINT_MAP[n] for n in ("OP Nose", "OP LEye", "OP REye", "OP LEar", "OP REar", "OP LShoulder", "OP RShoulder",
                                 "OP LElbow", "OP RElbow", "OP LWrist", "OP RWrist", "OP LHip", "OP RHip", "OP LKnee",
                                 "OP RKnee", "OP LAnkle", "OP RAnkle")]
FEET = [JOINT_MAP[n] for n in ("OP LBigToe", "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel")]
FINGER_TIPS = list(range(35, 45))  # smplx vertex joints lthumb .. rpinky
WHOLE_BODY = COCO17 + FEET + FINGER_TIPS + [JOINT_MAP["Jaw (H36M)"]]
SETTINGS = ((0.0, 0.0), (0.02, 0.05), (0.04, 0.1), (0.06, 0.2))  # (noise sigma / person size, dropout)


def camera_points(npz: str, images: str):
    """Every person's 54 extended joints projected into its image: (N, 54, 2), and the fit error."""
    from dsr.data.synthetic import load_body_models

    d = np.load(npz)
    models, _ = load_body_models()
    n = len(d["imgname"])
    out = np.zeros((n, 54, 2))
    err = np.zeros(n)
    kp49 = np.concatenate([d["openpose"], d["part"]], axis=1)[:, :, :2].astype(np.float64)
    for g in ("male", "female"):
        rows = np.flatnonzero(d["gender"] == g[0])
        pose = torch.tensor(d["pose"][rows], dtype=torch.float32)
        with torch.no_grad():
            res = models[g](pose[:, :3], pose[:, 3:], torch.tensor(d["shape"][rows], dtype=torch.float32), pose2rot=True)
        ext, j49 = res.extended_joints.double().numpy(), res.joints.double().numpy()
        for k, r in enumerate(rows):
            H, W = cv2.imread(os.path.join(images, str(d["imgname"][r]))).shape[:2]
            c = np.array([W / 2 - 0.5, H / 2 - 0.5])
            # (u - c)(Z + tz) = f X + f t  ->  linear in (tz, f, f tx, f ty)
            X, uv = j49[k], kp49[r] - c
            A = np.zeros((98, 4))
            b = np.zeros(98)
            for a in range(2):
                A[a::2, 0] = uv[:, a]
                A[a::2, 1] = -X[:, a]
                A[a::2, 2 + a] = -1
                b[a::2] = -uv[:, a] * X[:, 2]
            tz, f, ftx, fty = np.linalg.lstsq(A, b, rcond=None)[0]
            t = np.array([ftx / f, fty / f, tz])

            def project(P):
                Q = P + t
                return f * Q[:, :2] / Q[:, 2:] + c

            err[r] = np.abs(project(X) - kp49[r]).max()
            out[r] = project(ext[k])
    return out, err


def boxes(points: np.ndarray, keep: np.ndarray):
    """(N, K, 2) points, (N, K) bool -> SPIN boxes: centre (N, 2), side = 200 x scale (N,)."""
    lo = np.where(keep[..., None], points, np.inf).min(1)
    hi = np.where(keep[..., None], points, -np.inf).max(1)
    return (lo + hi) / 2, 1.2 * (hi - lo).max(1)


def square_iou(c1, s1, c2, s2):
    lo = np.maximum(c1 - s1[:, None] / 2, c2 - s2[:, None] / 2)
    hi = np.minimum(c1 + s1[:, None] / 2, c2 + s2[:, None] / 2)
    inter = np.clip(hi - lo, 0, None).prod(1)
    return inter / (s1 ** 2 + s2 ** 2 - inter)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", default="dsr_data/dataset_extras/synthetic_test.npz")
    p.add_argument("--images", default="dsr_data/dataset_folders/synthetic")
    p.add_argument("--repeats", type=int, default=20, help="noise draws per person")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    pts, err = camera_points(a.npz, a.images)
    n = len(pts)
    print(f"{n} people of {a.npz}; camera fit: max reprojection error {err.max():.4f} px")
    size = (pts[:, POSES2D].max(1) - pts[:, POSES2D].min(1)).max(1)
    rng = np.random.default_rng(a.seed)
    print(f"{'noise sigma':>11} {'dropout':>7} | {'IoU mean':>8} {'median':>6} {'p5':>6} {'<0.8':>6} | "
          f"{'shift/side':>10} | {'scale ratio median':>18} {'p5-p95':>13} | {'same-set IoU':>12}")
    for sigma, drop in SETTINGS:
        reps = 1 if sigma == 0 and drop == 0 else a.repeats
        ious, shifts, ratios, floor = [], [], [], []
        for _ in range(reps):
            cs = []
            for ids in (POSES2D, WHOLE_BODY, POSES2D):
                P = pts[:, ids] + rng.normal(0, 1, (n, len(ids), 2)) * sigma * size[:, None, None]
                keep = rng.uniform(size=(n, len(ids))) >= drop
                keep[np.arange(n), rng.integers(0, len(ids), n)] = True  # a detector returns at least one point
                cs.append(boxes(P, keep))
            (c1, s1), (c2, s2), (c3, s3) = cs
            ious.append(square_iou(c1, s1, c2, s2))
            floor.append(square_iou(c1, s1, c3, s3))
            shifts.append(np.linalg.norm(c2 - c1, axis=1) / s1)
            ratios.append(s2 / s1)
        iou, shift, ratio = (np.concatenate(x) for x in (ious, shifts, ratios))
        print(f"{sigma:>11.2f} {drop:>7.2f} | {iou.mean():>8.3f} {np.median(iou):>6.3f} {np.percentile(iou, 5):>6.3f} "
              f"{(iou < 0.8).mean():>6.1%} | {shift.mean():>10.3f} | {np.median(ratio):>18.3f} "
              f"{np.percentile(ratio, 5):>6.3f}-{np.percentile(ratio, 95):.3f} | {np.concatenate(floor).mean():>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
