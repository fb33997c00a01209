"""Fabricated training data of real frame sizes for ``benchmarks/bench_loader.py``,
``benchmarks/loader_ab.py`` and ``tests/test_loader_equivalence.py``, and the items' timing loop of
both benchmarks.

``make_loader_dataset(root, npz_path, size, n, mask_format, seed, ...)`` writes ``n`` frames of
``size`` = (H, W) as JPEG (quality 90) under ``root/images/``, one Graphonomy mask per frame under
``root/grph_sequences/images/`` and a SPIN-format npz (imgname, center, scale, part, openpose, S,
pose, shape, has_smpl, gender) at ``npz_path``.

* Frames: a smooth random background (low-frequency noise, bicubic-upsampled) with a little pixel
  noise, so the JPEG is the size of a photograph's (not of pure noise, not of a flat fill), and a
  textured "person" blob.
* Masks: the person as CIHP labels (face, hair, upper clothes, arms, legs, shoes as ellipses and
  boxes), ``mask_format`` 'palette' = an 8-bit palette PNG exactly as ``dsr.parsing.masks.
  write_mask_png`` (the parsing tool) writes it, 'colour' = a 24-bit colour PNG (the original
  Graphonomy output) written by OpenCV. ``missing_every`` k > 0 leaves out every k-th mask.
* Boxes: person centre anywhere in the frame (``outside`` share of them so that the box crosses the
  frame edge), box side (200 * scale) 40 - 80 % of the frame's short side; 49 keypoints
  (openpose 25 with conf 0 + 24 ground-truth with conf 1) inside the box.

``loader_cfg(root, loss, nearest, swap)`` is the DSR training config that reads such a folder as
the 'h36m' training set (``train.npz``), the mask loss type and the two mask fixes as given.

``time_items(ds, idx, seed)`` times ``ds[i]`` over ``idx`` with the augmentation stream reseeded
(the same draws for every path timed): (wall, CPU) ms per item.
"""
from __future__ import annotations

import os
import time

import cv2
import numpy as np

__all__ = ["make_loader_dataset", "fabricate_frame", "loader_cfg", "time_items"]

# CIHP labels used for the fabricated person
HAIR, FACE, UPPER, PANTS, L_ARM, R_ARM, L_LEG, R_LEG, L_SHOE, R_SHOE = 2, 13, 5, 9, 14, 15, 16, 17, 18, 19


def fabricate_frame(h: int, w: int, rng: np.random.Generator, cx: float, cy: float, side: float):
    """(H, W, 3) uint8 RGB frame and (H, W) uint8 CIHP labels of one person centred at (cx, cy)."""
    low = rng.uniform(40, 215, size=(max(2, h // 64), max(2, w // 64), 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 6, size=(h, w, 3)).astype(np.float32)
    labels = np.zeros((h, w), np.uint8)
    s = side / 2.0

    def ell(lab, dx, dy, rx, ry):
        cv2.ellipse(labels, (int(cx + dx * s), int(cy + dy * s)), (max(1, int(rx * s)), max(1, int(ry * s))),
                    0, 0, 360, int(lab), -1)

    def box(lab, x0, y0, x1, y1):
        cv2.rectangle(labels, (int(cx + x0 * s), int(cy + y0 * s)), (int(cx + x1 * s), int(cy + y1 * s)),
                      int(lab), -1)

    box(PANTS, -0.22, 0.05, 0.22, 0.45)
    box(L_LEG, -0.2, 0.45, -0.04, 0.8)
    box(R_LEG, 0.04, 0.45, 0.2, 0.8)
    box(L_SHOE, -0.22, 0.8, -0.02, 0.9)
    box(R_SHOE, 0.02, 0.8, 0.22, 0.9)
    box(L_ARM, -0.45, -0.45, -0.3, 0.1)
    box(R_ARM, 0.3, -0.45, 0.45, 0.1)
    ell(UPPER, 0, -0.25, 0.3, 0.32)
    ell(HAIR, 0, -0.78, 0.14, 0.12)
    ell(FACE, 0, -0.68, 0.11, 0.12)
    person = labels > 0
    tex = rng.uniform(0, 255, size=(h, w, 3)).astype(np.float32)
    img[person] = 0.5 * img[person] + 0.5 * tex[person]
    return np.clip(img, 0, 255).astype(np.uint8), labels


def make_loader_dataset(root: str, npz_path: str, size=(1000, 1000), n: int = 8, mask_format: str = "palette",
                        seed: int = 0, outside: float = 0.25, missing_every: int = 0) -> dict:
    """Write the frames, masks and npz (see the module docstring); returns the npz's arrays."""
    from dsr.parsing.masks import write_mask_png
    from dsr.constants import GRAPHONOMY_PALETTE

    if mask_format not in ("palette", "colour"):
        raise ValueError(f"mask_format must be 'palette' or 'colour', got {mask_format!r}")
    h, w = size
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    names, centers, scales, parts = [], [], [], []
    for i in range(n):
        side = rng.uniform(0.4, 0.8) * min(h, w)
        if rng.uniform() < outside:  # box crosses an edge of the frame
            cx = rng.choice([rng.uniform(-0.1, 0.15), rng.uniform(0.85, 1.1)]) * w
            cy = rng.uniform(0.2, 0.8) * h
        else:
            cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        img, labels = fabricate_frame(h, w, rng, cx, cy, side)
        name = f"images/f{i:04d}.jpg"
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        with open(os.path.join(root, name), "wb") as f:
            f.write(buf.tobytes())
        if not (missing_every and i % missing_every == missing_every - 1):
            mpath = os.path.join(root, "grph_sequences", "images", f"f{i:04d}.png")
            if mask_format == "palette":
                write_mask_png(mpath, labels)
            else:
                os.makedirs(os.path.dirname(mpath), exist_ok=True)
                cv2.imwrite(mpath, GRAPHONOMY_PALETTE[labels].astype(np.uint8)[:, :, ::-1])
        kp = np.stack([cx + rng.uniform(-0.4, 0.4, 24) * side, cy + rng.uniform(-0.45, 0.45, 24) * side,
                       np.ones(24)], axis=1)
        names.append(name)
        centers.append([cx, cy])
        scales.append(side / 200.0)
        parts.append(kp)
    data = dict(imgname=np.array(names), center=np.array(centers), scale=np.array(scales),
                part=np.array(parts), openpose=np.zeros((n, 25, 3)),
                S=rng.normal(size=(n, 24, 4)), pose=rng.normal(scale=0.3, size=(n, 72)),
                shape=rng.normal(size=(n, 10)), has_smpl=(np.arange(n) % 3 != 2).astype(np.float64),
                gender=np.array(["m", "f"] * (n // 2) + ["m"] * (n % 2)))
    os.makedirs(os.path.dirname(os.path.abspath(npz_path)), exist_ok=True)
    np.savez(npz_path, **data)
    return data


def loader_cfg(root: str, loss: str = "DistM", nearest: bool = False, swap: bool = False):
    """Config of METHOD 'dsr' reading ``root/train.npz`` as the 'h36m' training set;
    ``DSR.DSR_MC_LOSS_TYPE`` = ``loss``, ``MASK_WARP_NEAREST`` = ``nearest``,
    ``FLIP_SWAP_LR_MASKS`` = ``swap`` (False, False: the original's behaviour)."""
    from dsr.config import get_cfg_defaults

    cfg = get_cfg_defaults()
    cfg.METHOD = "dsr"
    cfg.DSR.DSR_MC_LOSS_TYPE = loss
    cfg.DSR.MASK_WARP_NEAREST = nearest
    cfg.DSR.FLIP_SWAP_LR_MASKS = swap
    cfg.PATHS.DATASET_NPZ_PATH = root
    cfg.PATHS.DATASET_FOLDERS["h36m"] = root
    cfg.PATHS.TRAIN_FILES["h36m"] = "train.npz"
    return cfg


def time_items(ds, idx, seed: int):
    """(wall, CPU) ms per ``ds[i]`` over ``idx``, the dataset's augmentation reseeded with ``seed``."""
    ds._rng.fixed = np.random.default_rng(seed)  # the same augmentation draws for every path timed
    t0, c0 = time.perf_counter(), time.process_time()
    for i in idx:
        ds[i]
    n = len(idx)
    return (time.perf_counter() - t0) / n * 1e3, (time.process_time() - c0) / n * 1e3
