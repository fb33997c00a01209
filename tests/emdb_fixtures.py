"""Fabricated EMDB and SSP-3D raw trees (the downloads' real formats; the embedded free body model
stands in for SMPL). Used by tests/test_emdb.py, test_ssp3d.py, test_data_check.py and
studies/conformance_emdb_ssp3d.py (not a test module).

``body_cache()`` gives a ``body_of(gender)`` that builds each free body model once;
``evaluate(ds, root, npz_dir, logdir, batch_size)`` runs ``DATASET.VAL_DS ds`` end to end on CPU
(``build_trainer(cfg).test``) and returns the module and its ``evaluation_results_<ds>.pkl``."""
from __future__ import annotations

import os
import pickle

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREE = os.path.join(REPO, "dsr", "assets", "free_body")
SMPL_DIR = os.path.join(FREE, "smpl")


def rotation(rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def emdb_sequence(rng, name: str, gender: str, n: int, emdb1: bool, bad_frames=(), invalid_boxes=()) -> dict:
    """One ``*_data.pkl`` dict as dataset.md of eth-ait/emdb describes it."""
    good = np.ones(n, dtype=bool)
    good[list(bad_frames)] = False
    ext = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        ext[i, :3, :3] = rotation(rng)
        ext[i, :3, 3] = rng.normal(size=3) * 0.2 + np.array([0.0, 0.0, 4.0])
    boxes = np.stack([rng.uniform(5, 20, n), rng.uniform(5, 20, n), rng.uniform(40, 60, n), rng.uniform(40, 60, n)], 1)
    bad_box = sorted(set(bad_frames) | set(invalid_boxes))
    for i in invalid_boxes:
        boxes[i, 2] = boxes[i, 0]  # empty box
    return {
        "gender": gender, "name": name, "emdb1": emdb1, "emdb2": not emdb1, "n_frames": n,
        "good_frames_mask": good,
        "camera": {"intrinsics": np.array([[500.0, 0, 32], [0, 500.0, 32], [0, 0, 1]]), "extrinsics": ext,
                   "width": 64, "height": 64},
        "smpl": {"poses_root": rng.normal(size=(n, 3)), "poses_body": rng.normal(scale=0.3, size=(n, 69)),
                 "trans": rng.normal(size=(n, 3)), "betas": rng.normal(size=10)},
        "kp2d": rng.uniform(0, 64, size=(n, 24, 2)),
        "bboxes": {"bboxes": boxes, "invalid_idxs": np.array(bad_box, dtype=np.int64)},
    }


EMDB_LAYOUT = [  # subject, folder, gender, frames, emdb1, masked frames, good frames with an empty box
    ("P0", "09_outdoor_walk", "male", 7, True, (2,), ()),
    ("P0", "10_indoor_dance", "female", 5, False, (), ()),
    ("P3", "27_indoor_walk_off_mvs", "female", 6, True, (), (4,)),
]


def make_emdb_tree(root: str, seed: int = 0, images: bool = True) -> dict:
    """Write the tree under ``root``; returns {sequence name: pkl dict}."""
    rng = np.random.default_rng(seed)
    seqs = {}
    for subj, folder, gender, n, e1, bad, inv in EMDB_LAYOUT:
        d = emdb_sequence(rng, f"{subj}_{folder}", gender, n, e1, bad, inv)
        sdir = os.path.join(root, subj, folder)
        os.makedirs(os.path.join(sdir, "images"), exist_ok=True)
        with open(os.path.join(sdir, f"{subj}_{folder}_data.pkl"), "wb") as f:
            pickle.dump(d, f)
        if images:
            for i in range(n):
                cv2.imwrite(os.path.join(sdir, "images", f"{i:05d}.jpg"), rng.integers(0, 255, (64, 64, 3), np.uint8))
        seqs[d["name"]] = d
    return seqs


def make_ssp3d_tree(root: str, n: int = 3, seed: int = 0, size: int = 96) -> dict:
    """labels.npz + images/ + silhouettes/ (512 x 512 in the real set; ``size`` x ``size`` here). The
    silhouette of person i is a filled rectangle (size/4.8 x size/9.6 around the box centre); the box
    centre is stored (row, col) as in the real file."""
    rng = np.random.default_rng(seed)
    k = size / 96.0
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "silhouettes"))
    fnames = np.array([f"person_{i:04d}.png" for i in range(n)])
    centres_rc = np.stack([rng.uniform(40, 56, n), rng.uniform(30, 66, n)], 1) * k
    whs = rng.uniform(40, 60, n) * k
    hr, hc = int(round(10 * k)), int(round(5 * k))
    for i, f in enumerate(fnames):
        cv2.imwrite(os.path.join(root, "images", f), rng.integers(0, 255, (size, size, 3), np.uint8))
        sil = np.zeros((size, size), np.uint8)
        r, c = int(centres_rc[i, 0]), int(centres_rc[i, 1])
        sil[r - hr:r + hr, c - hc:c + hc] = 255
        cv2.imwrite(os.path.join(root, "silhouettes", f), sil)
    labels = {
        "fnames": fnames, "shapes": rng.normal(size=(n, 10)), "poses": rng.normal(scale=0.2, size=(n, 72)),
        "genders": np.array(["m", "f", "m"][:n] + ["f"] * max(0, n - 3)), "cam_trans": rng.normal(size=(n, 3)),
        "joints2D": rng.uniform(0, size, size=(n, 17, 3)), "bbox_centres": centres_rc, "bbox_whs": whs,
    }
    np.savez(os.path.join(root, "labels.npz"), **labels)
    return labels


def body_cache():
    """``body_of(gender)``: the free body model of that gender, built on first use and kept."""
    from dsr.body import build_body_model

    cache = {}

    def body_of(g):
        if g not in cache:
            cache[g] = build_body_model(SMPL_DIR, g)
        return cache[g]

    return body_of


def eval_cfg(ds: str, root: str, npz_dir: str, logdir: str):
    """The protocol tests' config (tests/protocol_cases.make_cfg) reading ``ds`` from a
    fabricated tree: ``root`` holds the images, ``npz_dir`` the converter's npz files."""
    from protocol_cases import make_cfg

    cfg = make_cfg(ds, True, logdir)
    cfg.PATHS.DATASET_NPZ_PATH = npz_dir
    cfg.PATHS.DATASET_FOLDERS[ds] = root
    return cfg


def evaluate(ds: str, root: str, npz_dir: str, logdir: str, batch_size: int):
    """Test ``ds`` end to end on CPU (no workers, no logger); returns (module, results dict of
    ``<logdir>/evaluation_results_<ds>.pkl``)."""
    from dsr.lightning_module import DSRModule
    from dsr.runner import build_trainer

    cfg = eval_cfg(ds, root, npz_dir, logdir)
    cfg.RUN_TEST = True
    cfg.PL_LOGGING = False
    cfg.DATASET.BATCH_SIZE = batch_size
    cfg.DATASET.NUM_WORKERS = 0
    cfg.DATASET.PIN_MEMORY = False
    cfg.TRAINER.ACCELERATOR = "cpu"
    cfg.TESTING.LOG_FREQ_TB_IMAGES = 0
    module = DSRModule(cfg)
    build_trainer(cfg).test(module)
    with open(os.path.join(logdir, f"evaluation_results_{ds}.pkl"), "rb") as f:
        return module, pickle.load(f)
