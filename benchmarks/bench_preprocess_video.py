#!/usr/bin/env python
"""Time ``python -m dsr.data.preprocess`` for Human3.6M and MPI-INF-3DHP on a fabricated raw tree
with the real frame sizes (H36M 1000x1002 mp4, MPI 2048x2048 avi, MPI test JPEGs 2048x2048 /
1920x1080), with and without frame extraction; prints seconds per 1,000 source video frames and
per 1,000 rows written.

    python benchmarks/bench_preprocess_video.py [--h36m-frames 250] [--mpi-frames 10] [--workers 1]
        [--dir /tmp/bench_preprocess]

H36M: S9 and S11, one action, 4 cameras, ``--h36m-frames`` pose frames per video (validation
split: protocols 1 and 2). MPI-INF-3DHP: the training split (S1-S8, 2 sequences, 8 cameras,
``--mpi-frames`` frames per video) and the test split (TS1-TS6, 50 frames each). The frames are
a smooth gradient with a moving block and noise (codecs: OpenCV's mp4v and MJPG). The
fabricated tree is built once per --dir and reused.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import cv2
import h5py
import numpy as np
import scipy.io
from cdflib import cdfwrite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from video_fixtures import matlab_v73, write_frames  # noqa: E402


def frame(k, w, h, rng):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (xx * 255 // w)
    img[..., 1] = (yy * 255 // h)
    img[..., 2] = 128
    x0 = (37 * k) % (w // 2)
    img[h // 4:h // 2, x0:x0 + w // 4] = (30, 200, 90)
    noise = rng.integers(0, 24, size=(h // 8, w // 8, 1), dtype=np.uint8)
    return cv2.add(img, cv2.resize(noise, (w, h), interpolation=cv2.INTER_NEAREST)[..., None].repeat(3, 2))


def write_video(path, n, w, h, fourcc):
    rng = np.random.default_rng(0)
    write_frames(path, (frame(k, w, h, rng) for k in range(n)), (w, h), fourcc)


def build_h36m(root, n):
    rng = np.random.default_rng(1)
    for subj in (9, 11):
        s = os.path.join(root, f"S{subj}")
        for cam in ("54138969", "55011271", "58860488", "60457274"):
            stem = f"Directions.{cam}"
            d3 = os.path.join(s, "MyPoseFeatures", "D3_Positions_mono")
            os.makedirs(d3, exist_ok=True)
            c = cdfwrite.CDF(os.path.join(d3, stem + ".cdf"))
            c.write_var({"Variable": "Pose", "Data_Type": cdfwrite.CDF.CDF_DOUBLE, "Num_Elements": 1,
                         "Rec_Vary": True, "Dim_Sizes": [n, 96]}, var_data=rng.normal(size=(1, n, 96)) * 500)
            c.close()
            mdir = os.path.join(s, "MySegmentsMat", "ground_truth_bb")
            os.makedirs(mdir, exist_ok=True)

            def masks(f):
                refs = f.create_group("#refs#")
                r = np.empty((n, 1), dtype=h5py.ref_dtype)
                for i in range(n):
                    m = np.zeros((1002, 1000), np.uint8)
                    m[200 + i % 50:800, 300:600 + i % 80] = 1
                    r[i, 0] = refs.create_dataset(f"m{i}", data=m.T, compression="gzip").ref
                f.create_dataset("Masks", data=r)
            matlab_v73(os.path.join(mdir, stem + ".mat"), masks)
            write_video(os.path.join(s, "Videos", stem + ".mp4"), n + 1, 1000, 1002, "mp4v")


def build_mpi(root, n, n_test=50):
    rng = np.random.default_rng(2)
    for u in range(1, 9):
        for sq in (1, 2):
            d = os.path.join(root, f"S{u}", f"Seq{sq}")
            os.makedirs(os.path.join(d, "imageSequence"), exist_ok=True)
            c2, c3 = np.empty((14, 1), object), np.empty((14, 1), object)
            for c in range(14):
                c2[c, 0] = rng.uniform(100, 1900, size=(n, 56))
                c3[c, 0] = rng.uniform(-900, 900, size=(n, 84))
            scipy.io.savemat(os.path.join(d, "annot.mat"), {"annot2": c2, "annot3": c3})
            for c in (0, 1, 2, 4, 5, 6, 7, 8):
                write_video(os.path.join(d, "imageSequence", f"video_{c}.avi"), n, 2048, 2048, "MJPG")
    for ts in range(1, 7):
        d = os.path.join(root, "mpi_inf_3dhp_test_set", f"TS{ts}")
        os.makedirs(os.path.join(d, "imageSequence"), exist_ok=True)
        w, h = (2048, 2048) if ts <= 4 else (1920, 1080)
        a2 = rng.uniform(100, 1000, size=(n_test, 1, 17, 2))

        def annot(f, a2=a2):
            f.create_dataset("annot2", data=a2)
            f.create_dataset("univ_annot3", data=rng.uniform(-900, 900, size=(n_test, 1, 17, 3)))
            f.create_dataset("valid_frame", data=np.ones((n_test, 1)))
        matlab_v73(os.path.join(d, "annot_data.mat"), annot)
        img = frame(ts, w, h, rng)
        for i in range(n_test):
            cv2.imwrite(os.path.join(d, "imageSequence", f"img_{i + 1:06d}.jpg"), img)


def timed(dataset, *argv):
    env = dict(os.environ, PYTHONPATH=REPO)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "dsr.data.preprocess", dataset, *argv], env=env,
                       capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"failed: {' '.join(argv)}\n{r.stderr[-3000:]}")
    return dt


def rows(path):
    return len(np.load(path)["imgname"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="/tmp/bench_preprocess")
    p.add_argument("--h36m-frames", type=int, default=250)
    p.add_argument("--mpi-frames", type=int, default=10)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
    h_raw, m_raw = os.path.join(a.dir, "h36m_raw"), os.path.join(a.dir, "mpi_raw")
    stamp = os.path.join(a.dir, f"built_{a.h36m_frames}_{a.mpi_frames}")
    if not os.path.exists(stamp):
        shutil.rmtree(a.dir, ignore_errors=True)
        t0 = time.perf_counter()
        build_h36m(h_raw, a.h36m_frames)
        build_mpi(m_raw, a.mpi_frames)
        open(stamp, "w").close()
        print(f"fabricated tree built in {time.perf_counter() - t0:.0f} s")
    out, img = os.path.join(a.dir, "out"), os.path.join(a.dir, "images")
    w = ("--workers", str(a.workers))
    t_start = min(timed("h36m", "--help") for _ in range(3))
    res = []
    # Human3.6M validation (protocols 1 + 2), then MPI-INF-3DHP training: from scratch, then again
    for ds, raw, split, src, npz, label in (
            ("h36m", h_raw, "valid", 8 * (a.h36m_frames + 1), "h36m_valid_protocol1.npz", "h36m valid"),
            ("mpi-inf-3dhp", m_raw, "train", 128 * a.mpi_frames, "mpi_inf_3dhp_train.npz", "mpi-inf-3dhp train")):
        shutil.rmtree(img, ignore_errors=True)
        base = ("--root", raw, "--out", out, "--split", split, "--images", img, *w)
        t_x = timed(ds, *base, "--extract-frames")
        n = rows(os.path.join(out, "dataset_extras", npz))
        t_r = timed(ds, *base)
        res += [(f"{label}, --extract-frames (from scratch)", t_x, src, n),
                (f"{label}, no extraction (records of the first run)", t_r, src, n)]
    t = timed("mpi-inf-3dhp", "--root", m_raw, "--out", out, "--split", "test", *w)
    res.append(("mpi-inf-3dhp test (JPEGs ship with the set)", t, 300,
                rows(os.path.join(out, "dataset_extras", "mpi_inf_3dhp_valid.npz"))))
    print(f"workers {a.workers}; load average at the end: {os.getloadavg()}; start-up (interpreter + "
          f"imports, best of 3) {t_start:.1f} s, subtracted in the per-1,000 columns")
    print("| run | wall s | source frames | rows | s / 1,000 source frames | s / 1,000 rows |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, t, s, n in res:
        t0 = max(t - t_start, 0.0)
        print(f"| {name} | {t:.1f} | {s} | {n} | {1000 * t0 / s:.2f} | {1000 * t0 / max(n, 1):.2f} |")


if __name__ == "__main__":
    main()
