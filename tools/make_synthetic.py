#!/usr/bin/env python
"""Generate the synthetic dataset (the embedded default) from the free body model.

    python tools/make_synthetic.py --out dsr_data/dataset_folders/synthetic \
        --npz-dir dsr_data/dataset_extras --n-train 2000 --n-test 500 --seed 0 [--workers 2] [--preview grid.png]
        [--focal-range 0.9 1.5] [--domain a|b] [--train-name synthetic_train.npz] [--test-name synthetic_test.npz]

Writes OUT/images/{train,test}/*.jpg, OUT/grph_sequences/images/{train,test}/*.png (exact
Graphonomy palette) and NPZ_DIR/synthetic_{train,test}.npz (SPIN format; see
dsr/data/synthetic.py). --preview writes a grid of the first train samples: image with the 24
GT keypoints, and the colour mask. --domain b renders the second domain (other poses, clothing,
backgrounds; dsr/data/synthetic.py), by default into synthetic_b_{train,test}.npz.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def preview_grid(out_dir: str, npz_path: str, path: str, n: int = 8, cell: int = 256) -> None:
    """Save a grid: per sample, the image with its 24 GT keypoints (green) and the colour mask."""
    d = np.load(npz_path)
    rows = []
    for i in range(min(n, len(d["imgname"]))):
        name = str(d["imgname"][i])
        img = cv2.imread(os.path.join(out_dir, name))
        mask = cv2.imread(os.path.join(out_dir, "grph_sequences", os.path.splitext(name)[0] + ".png"))
        for x, y, c in d["part"][i]:
            cv2.circle(img, (int(round(x)), int(round(y))), 2, (0, 255, 0), -1)
        c, s = d["center"][i], d["scale"][i] * 200
        cv2.rectangle(img, (int(c[0] - s / 2), int(c[1] - s / 2)), (int(c[0] + s / 2), int(c[1] + s / 2)), (0, 0, 255), 1)
        pair = [cv2.resize(a, (cell, cell), interpolation=cv2.INTER_NEAREST) for a in (img, mask)]
        rows.append(np.concatenate(pair, axis=1))
    half = (len(rows) + 1) // 2
    left, right = rows[:half], rows[half:]
    while len(right) < len(left):
        right.append(np.zeros_like(left[0]))
    grid = np.concatenate([np.concatenate(left, 0), np.concatenate(right, 0)], 1)
    cv2.imwrite(path, grid)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="dataset root (images and grph_sequences/)")
    p.add_argument("--npz-dir", default=None, help="folder of the npz files (default: --out)")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--body-dir", default=None, help="free body assets (default dsr/assets/free_body)")
    p.add_argument("--workers", type=int, default=2, help="rendering processes (1 torch thread each)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the main process (--workers 1)")
    p.add_argument("--focal-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="focal length range in units of the image's longer side (default 0.9 1.5; 8 10 is "
                        "close to the crop camera of HMR, nearly orthographic)")
    p.add_argument("--domain", default="a", choices=("a", "b"),
                   help="a: the embedded default; b: the second domain (other poses, clothing, backgrounds)")
    p.add_argument("--train-name", default=None, help="training npz name (default synthetic[_b]_train.npz)")
    p.add_argument("--test-name", default=None, help="test npz name (default synthetic[_b]_test.npz)")
    p.add_argument("--preview", default=None, help="write a PNG grid of a few train samples")
    a = p.parse_args(argv)
    tag = "" if a.domain == "a" else f"_{a.domain}"
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(1)
    from dsr.data.synthetic import DEFAULT_BODY_DIR, SynthSettings, make_synthetic

    t = time.time()
    kw = {"domain": a.domain}
    if a.focal_range:
        kw["focal_range"] = tuple(a.focal_range)
    paths = make_synthetic(a.out, a.npz_dir, a.n_train, a.n_test, a.seed, a.body_dir or DEFAULT_BODY_DIR,
                           workers=a.workers, settings=SynthSettings(**kw),
                           train_name=a.train_name or f"synthetic{tag}_train.npz",
                           test_name=a.test_name or f"synthetic{tag}_test.npz")
    dt = time.time() - t
    print(f"make_synthetic: {a.n_train} train + {a.n_test} test samples in {dt:.1f} s -> {a.out}, "
          + ", ".join(f"{k}: {v}" for k, v in paths.items()))
    if a.preview and "train" in paths:
        preview_grid(a.out, paths["train"], a.preview)
        print(f"preview: {a.preview}")


if __name__ == "__main__":
    main()
