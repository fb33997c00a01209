"""EMDB (Kaufmann et al., ICCV 2023) -> ``emdb1_test.npz`` (``--subset 2``: ``emdb2_test.npz``).

Input: ``<root>/P<k>/<NN_name>/P<k>_<NN_name>_data.pkl`` and ``images/%05d.jpg`` beside it (the
EMDB download, dataset.md of eth-ait/emdb). The pkls are read through dsr.safe_pickle's restricted
unpickler (numpy arrays and plain containers only); images are not read.

Rows: every frame of every sequence with ``emdb1`` (``emdb2``) true whose ``good_frames_mask`` is
set, sequences in sorted folder order, frames in order (the 17 EMDB-1 sequences):

- ``imgname``: ``P<k>/<NN_name>/images/%05d.jpg``; ``sequence``: the sequence's ``name``;
  ``frame``: the frame index;
- ``center`` / ``scale``: from ``bboxes['bboxes']`` (x1, y1, x2, y2) by SPIN's rule (box middle;
  1.2 x longer side / 200); a good frame listed in ``bboxes['invalid_idxs']`` or with an empty box
  is skipped and counted (the closing table; none is expected);
- ``pose`` (72,): ``poses_root`` rotated into the camera (R_w2c · R_root, ``camera['extrinsics']``
  world -> camera) + ``poses_body``; ``shape`` (10,): ``betas``; ``gender``: 'm' | 'f' | 'n';
- ``trans_cam`` (3,): the translation that puts the posed GT mesh in the camera frame given that
  rotated root. The root rotates about the rest pelvis J0 (of the gendered model with these
  betas), so ``trans_cam = R·(trans + J0) + t − J0``, not ``R·trans + t``;
- ``intrinsics`` (3, 3): ``camera['intrinsics']``.

``--smpl-dir`` gives the SMPL_{MALE,FEMALE,NEUTRAL} models for J0.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from dsr.data.preprocess.common import (PreprocessError, Summary, bbox_to_center_scale, progress, read_pickle_dict,
                                        require_dir)
from dsr.data.preprocess.pw3d import rotate_root

SCALE_FACTOR = 1.2
GENDER_CODES = {"male": "m", "female": "f", "neutral": "n"}
_KEYS = ("gender", "name", "emdb1", "emdb2", "n_frames", "good_frames_mask", "camera", "smpl", "bboxes")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dsr.config import get_cfg_defaults

    paths = get_cfg_defaults().PATHS
    p.add_argument("--subset", choices=("1", "2"), default="1",
                   help="EMDB-1 (default: the sequences with emdb1 true) or EMDB-2 (emdb2 true)")
    p.add_argument("--smpl-dir", default=paths.SMPL_MODEL_DIR,
                   help=f"SMPL_{{MALE,FEMALE,NEUTRAL}} model folder, for the rest pelvis J0 (default {paths.SMPL_MODEL_DIR})")


def find_sequences(root: str) -> list[tuple[str, str, str]]:
    """(subject, sequence folder, pkl path) of every ``P*/*/P*_*_data.pkl`` under ``root``, sorted."""
    require_dir(root, "EMDB root (the folder with P0 ... P9)")
    found = []
    for subj in sorted(os.listdir(root)):
        sdir = os.path.join(root, subj)
        if not (subj.startswith("P") and os.path.isdir(sdir)):
            continue
        for seq in sorted(os.listdir(sdir)):
            pkl = os.path.join(sdir, seq, f"{subj}_{seq}_data.pkl")
            if os.path.isfile(pkl):
                found.append((subj, seq, pkl))
    if not found:
        raise PreprocessError(f"{root}: no P<k>/<sequence>/P<k>_<sequence>_data.pkl (expected the EMDB download "
                              "unpacked as EMDB_ROOT/P0 ... P9)")
    return found


def load_sequence(path: str) -> dict:
    """Read and check one EMDB ``*_data.pkl``; returns its dict with arrays as float64 / bool."""
    d = read_pickle_dict(path, "an EMDB sequence pickle")
    missing = [k for k in _KEYS if k not in d]
    if missing:
        raise PreprocessError(f"{path}: no {missing} (has {sorted(d)})")
    n = int(d["n_frames"])

    def arr(parent, key, shape, dtype=np.float64):
        if not isinstance(d[parent], dict) or key not in d[parent]:
            raise PreprocessError(f"{path}: '{parent}' has no '{key}'")
        a = np.asarray(d[parent][key], dtype=dtype)
        if shape is not None and a.shape != shape:
            raise PreprocessError(f"{path}: '{parent}/{key}' has shape {a.shape}, expected {shape}")
        return a

    good = np.asarray(d["good_frames_mask"]).astype(bool).reshape(-1)
    if good.shape != (n,):
        raise PreprocessError(f"{path}: 'good_frames_mask' has {good.shape[0]} entries, n_frames is {n}")
    gender = str(d["gender"])
    if gender not in GENDER_CODES:
        raise PreprocessError(f"{path}: 'gender' is {gender!r}, expected 'male', 'female' or 'neutral'")
    betas = arr("smpl", "betas", None).reshape(-1)
    if betas.size < 10:
        raise PreprocessError(f"{path}: 'smpl/betas' has {betas.size} values, expected >= 10")
    return {
        "name": str(d["name"]), "gender": gender, "emdb1": bool(d["emdb1"]), "emdb2": bool(d["emdb2"]), "n": n,
        "good": good, "K": arr("camera", "intrinsics", (3, 3)), "w2c": arr("camera", "extrinsics", (n, 4, 4)),
        "poses_root": arr("smpl", "poses_root", (n, 3)), "poses_body": arr("smpl", "poses_body", (n, 69)),
        "trans": arr("smpl", "trans", (n, 3)), "betas": betas[:10], "boxes": arr("bboxes", "bboxes", (n, 4)),
        "invalid": arr("bboxes", "invalid_idxs", None, np.int64).reshape(-1),
    }


def rest_pelvis(smpl_dir: str, gender: str, betas: np.ndarray, cache: dict) -> np.ndarray:
    """J0 (3,) of the ``gender`` model with ``betas`` in the rest pose (metres)."""
    import torch

    from dsr.body import build_body_model
    from dsr.body.smpl_io import BodyModelError

    if gender not in cache:
        try:
            cache[gender] = build_body_model(smpl_dir, gender)
        except BodyModelError as e:
            raise PreprocessError(str(e)) from e
    body = cache[gender]
    eye = torch.eye(3, dtype=torch.float64)
    with torch.no_grad():
        body64 = body.double()
        out = body64(global_orient=eye.expand(1, 1, 3, 3), body_pose=eye.expand(1, body.num_joints - 1, 3, 3),
                     betas=torch.from_numpy(betas[None]))
    return out.smpl_joints[0, 0].numpy()


def sequence_rows(subj: str, seq_dir: str, s: dict, j0: np.ndarray, summary: Summary) -> dict:
    """The rows of one sequence (dict of arrays) and its skips counted in ``summary``."""
    frames = np.flatnonzero(s["good"])
    summary.skip("frame not in good_frames_mask", s["n"] - len(frames))
    boxes = s["boxes"][frames]
    bad = np.isin(frames, s["invalid"]) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    summary.skip("good frame with an invalid box (bboxes/invalid_idxs or empty)", int(bad.sum()))
    frames, boxes = frames[~bad], boxes[~bad]
    R, t = s["w2c"][frames, :3, :3], s["w2c"][frames, :3, 3]
    pose = np.concatenate([s["poses_root"][frames], s["poses_body"][frames]], axis=1)
    pose = rotate_root(pose, R)
    trans_cam = np.einsum("nij,nj->ni", R, s["trans"][frames] + j0) + t - j0
    cs = [bbox_to_center_scale(*b, SCALE_FACTOR) for b in boxes]
    m = len(frames)
    return {
        "imgname": np.array([f"{subj}/{seq_dir}/images/{i:05d}.jpg" for i in frames]),
        "center": np.array([c for c, _ in cs]).reshape(m, 2), "scale": np.array([sc for _, sc in cs]),
        "pose": pose, "shape": np.tile(s["betas"], (m, 1)), "gender": np.array([GENDER_CODES[s["gender"]]] * m),
        "trans_cam": trans_cam, "intrinsics": np.tile(s["K"], (m, 1, 1)),
        "sequence": np.array([s["name"]] * m), "frame": frames.astype(np.int64),
    }


def run(args) -> list[Summary]:
    subset = f"emdb{args.subset}"
    out_path = os.path.join(args.out, "dataset_extras", f"{subset}_test.npz")
    summary = Summary(f"{subset}_test.npz")
    rows, cache, n_seq = [], {}, 0
    for subj, seq_dir, pkl in progress(find_sequences(args.root), desc=f"EMDB sequences ({subset})", unit="seq"):
        s = load_sequence(pkl)
        if not s[subset]:
            summary.skip(f"sequence not in {subset.upper()} (frames)", s["n"])
            continue
        n_seq += 1
        j0 = rest_pelvis(args.smpl_dir, s["gender"], s["betas"], cache)
        rows.append(sequence_rows(subj, seq_dir, s, j0, summary))
    if not rows:
        raise PreprocessError(f"{args.root}: no sequence has {subset} true (is this the EMDB download?)")
    data = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    summary.save(out_path, data)
    summary.name = f"{subset}_test.npz ({n_seq} sequences)"
    return [summary]
