"""SSP-3D (Sengupta et al., BMVC 2020) -> ``ssp3d_test.npz``.

Input: ``<root>/labels.npz`` (``fnames``, ``shapes`` (N, 10), ``poses`` (N, 72) camera frame,
``genders`` 'm' / 'f', ``cam_trans`` (N, 3), ``joints2D`` (N, 17, 3), ``bbox_centres`` (N, 2)
stored as **(row, col)**, ``bbox_whs`` (N,) square side), ``images/<fname>`` (512 x 512) and
``silhouettes/<fname>``. Object members of labels.npz go through dsr.safe_pickle's restricted
unpickler; images are not read, silhouettes are checked to exist.

Rows (311 people, the file's order):

- ``imgname``: ``images/<fname>``; ``silhouette``: ``silhouettes/<fname>``;
- ``center``: the box centre as (x, y) = (col, row) — the file stores (row, col);
  ``scale``: 1.2 x ``bbox_whs`` / 200 (the author's 1.2 box scale factor, SPIN's 200-px unit);
- ``pose`` (72,), ``shape`` (10,), ``gender`` 'm' | 'f'; ``trans_cam`` (3,): ``cam_trans``.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from dsr.data.preprocess.common import PreprocessError, Summary, progress, require_dir, require_file
from dsr.safe_pickle import UnsafePickleError, load_npz

SCALE_FACTOR = 1.2
OUT_NAME = "ssp3d_test.npz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """SSP-3D has no options of its own (--root, --out)."""


def load_labels(path: str) -> dict:
    """Read and check ``labels.npz``; returns its arrays (fnames / genders as str)."""
    require_file(path, "SSP-3D labels file")
    try:
        d = load_npz(path)
    except UnsafePickleError as e:
        raise PreprocessError(f"{e} (SSP-3D labels.npz)") from e
    need = {"fnames": (), "shapes": (10,), "poses": (72,), "genders": (), "cam_trans": (3,), "bbox_centres": (2,),
            "bbox_whs": ()}
    missing = [k for k in need if k not in d]
    if missing:
        raise PreprocessError(f"{path}: no {missing} (has {sorted(d)})")
    n = len(d["fnames"])
    out = {}
    for k, shape in need.items():
        a = np.asarray(d[k])
        if k == "bbox_whs" and a.shape == (n, 1):
            a = a[:, 0]
        if a.shape != (n,) + shape:
            raise PreprocessError(f"{path}: '{k}' has shape {a.shape}, expected {(n,) + shape}")
        out[k] = a
    out["fnames"] = np.array([str(x) for x in out["fnames"]])
    out["genders"] = np.array([str(x) for x in out["genders"]])
    bad = sorted(set(out["genders"].tolist()) - {"m", "f"})
    if bad:
        raise PreprocessError(f"{path}: 'genders' has {bad}, expected 'm' or 'f'")
    return out


def center_scale(bbox_centres: np.ndarray, bbox_whs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SSP-3D's (row, col) centres and square sides -> our (x, y) centres (N, 2) and scales (N,)."""
    rc = np.asarray(bbox_centres, dtype=np.float64)
    return rc[:, ::-1].copy(), SCALE_FACTOR * np.asarray(bbox_whs, dtype=np.float64) / 200.0


def run(args) -> list[Summary]:
    root = require_dir(args.root, "SSP-3D root (the folder with labels.npz, images/, silhouettes/)")
    labels = load_labels(os.path.join(root, "labels.npz"))
    summary = Summary(OUT_NAME)
    for fname in progress(labels["fnames"], desc="SSP-3D silhouettes", unit="img"):
        require_file(os.path.join(root, "silhouettes", fname), "SSP-3D silhouette")
    center, scale = center_scale(labels["bbox_centres"], labels["bbox_whs"])
    data = {
        "imgname": np.array([f"images/{f}" for f in labels["fnames"]]),
        "silhouette": np.array([f"silhouettes/{f}" for f in labels["fnames"]]),
        "center": center, "scale": scale,
        "pose": labels["poses"].astype(np.float64), "shape": labels["shapes"].astype(np.float64),
        "gender": labels["genders"], "trans_cam": labels["cam_trans"].astype(np.float64),
    }
    return [summary.save(os.path.join(args.out, "dataset_extras", OUT_NAME), data)]
