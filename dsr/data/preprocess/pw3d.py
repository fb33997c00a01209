"""3DPW (von Marcard et al., ECCV 2018) -> ``3dpw_<split>.npz``, SPIN's conventions.

Input: ``<root>/sequenceFiles/<split>/*.pkl`` (the latin-1 pickles of the 3DPW download, read
through dsr.safe_pickle's restricted unpickler: numpy arrays and plain containers only); the
images ``<root>/imageFiles/<seq>/image_%05d.jpg`` are not read.

Rows, as SPIN's ``datasets/preprocess/pw3d.py``: for each sequence file (sorted by name: SPIN
took ``os.listdir`` order, which is arbitrary), each person, each frame whose ``campose_valid``
is true:

- ``imgname``: ``imageFiles/<sequence>/image_%05d.jpg`` (frame index);
- ``center`` / ``scale``: box = min / max of the frame's ``poses2d`` points (18 OpenPose-COCO
  points incl. the face) with confidence > ``--box-min-conf`` (SPIN: > 0); scale factor 1.2;
  a frame with no such point is skipped and counted (SPIN's script would crash on it);
- ``pose`` (72,): the SMPL fit with its global orientation rotated into the camera,
  ``R_cam · R_root`` (``R_cam`` = ``cam_poses[frame][:3, :3]``, world -> camera);
- ``shape`` (10,): ``betas[:10]``; ``gender``: 'm' / 'f'.

``--split train`` and ``validation`` add (SPIN has no script for them; our conventions):

- ``S`` (24, 4): the 24 ground-truth joints (``BodyModel.joints[:, 25:]``, i.e. SMPL joints plus
  ``J_regressor_extra``) of the gendered fit (``poses``, ``betas[:10]``, ``trans``) moved into
  the camera (``cam_poses``), in metres, minus the pelvis (GT joint 14, the joint SPIN's H36M /
  MPI-INF-3DHP files are centred on); confidence 1;
- ``part`` (24, 3): the same joints projected with ``cam_intrinsics`` (pixels), confidence 1
  for joints in front of the camera;
- ``has_smpl`` (ones).

Output: ``<out>/dataset_extras/3dpw_{test,train,validation}.npz``. ``--split test`` also writes
the same rows as ``3dpw_test_with_mmpose.npz``, the name the evaluation config reads
(``PATHS.TEST_FILES['3dpw']``); its boxes come from 3DPW's ``poses2d``, while the original's file
of that name has boxes from PARE's mmpose keypoints (docs/data.md, "3DPW", for the crop difference). ``--eval-copy`` decides: ``auto``
(default) writes it unless a file of that name with other rows or boxes is there (the original's,
kept and reported), ``force`` replaces it, ``no`` skips it. ``--workers N`` reads the sequence
files in N processes (forked from this one where the platform allows, so they share its body
models); the rows keep the sorted file order.
"""
from __future__ import annotations

import argparse
import glob
import multiprocessing as mp
import os
from collections import Counter

import numpy as np

from dsr.data.preprocess.common import (PreprocessError, Summary, bbox_to_center_scale, progress, read_pickle_dict,
                                        require_dir)

SCALE_FACTOR = 1.2
EVAL_NAME = "3dpw_test_with_mmpose.npz"
PELVIS = 14  # GT joint 'Pelvis (MPII)'
BATCH = 256  # frames per body-model call
_KEYS = ("sequence", "poses", "betas", "poses2d", "cam_poses", "genders", "campose_valid")
_TRAIN_KEYS = ("trans", "cam_intrinsics")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dsr.config import get_cfg_defaults

    paths = get_cfg_defaults().PATHS
    p.add_argument("--split", choices=("test", "train", "validation"), default="test",
                   help="which sequenceFiles/<split> folder (default test)")
    p.add_argument("--smpl-dir", default=paths.SMPL_MODEL_DIR,
                   help="SMPL_{MALE,FEMALE} model folder for S / part of train and validation "
                        f"(default {paths.SMPL_MODEL_DIR})")
    p.add_argument("--extra-regressor", default=paths.JOINT_REGRESSOR_TRAIN_EXTRA,
                   help=f"J_regressor_extra.npy (default {paths.JOINT_REGRESSOR_TRAIN_EXTRA})")
    p.add_argument("--box-min-conf", type=float, default=0.0,
                   help="poses2d points with confidence above this make the box (default 0: SPIN)")
    p.add_argument("--eval-copy", choices=("auto", "force", "no"), default="auto",
                   help=f"test split: also write the rows as {EVAL_NAME} (see the module help)")


# ----------------------------------------------------------------------------- reading
def load_sequence(path: str, with_camera: bool) -> dict:
    """Read and check one 3DPW sequence pickle.

    Returns the dict with ``poses`` [P x (N, 72)], ``betas`` [P x (>=10,)], ``poses2d``
    [P x (N, 3, 18)], ``cam_poses`` (N, 4, 4), ``campose_valid`` (P, N) bool, ``genders``
    [P x 'm'|'f'], ``sequence`` str and, with ``with_camera``, ``trans`` [P x (N, 3)] and
    ``cam_intrinsics`` (3, 3). Raises PreprocessError naming the file and what is wrong.
    """
    data = read_pickle_dict(path, "a 3DPW sequence pickle")  # a file from the web runs no code
    need = _KEYS + (_TRAIN_KEYS if with_camera else ())
    missing = [k for k in need if k not in data]
    if missing:
        raise PreprocessError(f"{path}: sequence file without {missing} (has {sorted(data)})")
    P = len(data["poses"])
    if P == 0:
        raise PreprocessError(f"{path}: 'poses' lists no person")
    N = len(data["poses"][0])
    out = {"sequence": str(data["sequence"]), "genders": [str(g) for g in data["genders"]]}

    def arr(key, i, shape):
        a = np.asarray(data[key][i] if i is not None else data[key], dtype=np.float64)
        if a.shape != shape:
            who = f"'{key}'" + (f" of person {i}" if i is not None else "")
            raise PreprocessError(f"{path}: {who} has shape {a.shape}, expected {shape}")
        return a

    for key in ("betas", "poses2d", "genders", "campose_valid") + (("trans",) if with_camera else ()):
        if len(data[key]) != P:
            raise PreprocessError(f"{path}: '{key}' lists {len(data[key])} people, 'poses' {P}")
    out["poses"] = [arr("poses", i, (N, 72)) for i in range(P)]
    out["poses2d"] = [arr("poses2d", i, (N, 3, 18)) for i in range(P)]
    out["cam_poses"] = arr("cam_poses", None, (N, 4, 4))
    out["campose_valid"] = np.stack([np.asarray(data["campose_valid"][i]).astype(bool).reshape(-1)
                                     for i in range(P)])
    if out["campose_valid"].shape != (P, N):
        raise PreprocessError(f"{path}: 'campose_valid' has shape {out['campose_valid'].shape}, expected {(P, N)}")
    out["betas"] = []
    for i in range(P):
        b = np.asarray(data["betas"][i], dtype=np.float64).reshape(-1)
        if b.size < 10:
            raise PreprocessError(f"{path}: 'betas' of person {i} has {b.size} values, expected >= 10")
        out["betas"].append(b[:10])
    bad = sorted({g for g in out["genders"] if g not in ("m", "f")})
    if bad:
        raise PreprocessError(f"{path}: 'genders' has {bad}, expected 'm' or 'f'")
    if with_camera:
        out["trans"] = [arr("trans", i, (N, 3)) for i in range(P)]
        out["cam_intrinsics"] = arr("cam_intrinsics", None, (3, 3))
    return out


# ----------------------------------------------------------------------------- per person
def rotate_root(pose: np.ndarray, R_cam: np.ndarray) -> np.ndarray:
    """(N, 72) axis-angle, (N, 3, 3) world -> camera rotations -> (N, 72) with root R_cam · R_root."""
    import torch

    from dsr.geometry import batch_rodrigues, rotmat_to_axis_angle

    R_root = batch_rodrigues(torch.from_numpy(pose[:, :3]))
    out = pose.copy()
    out[:, :3] = rotmat_to_axis_angle(torch.from_numpy(R_cam) @ R_root).numpy()
    return out


def keypoint_boxes(poses2d: np.ndarray, min_conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3, 18) poses2d -> centre (N, 2), scale (N,), ok (N,) bool (a point above min_conf)."""
    xy, conf = poses2d[:, :2, :], poses2d[:, 2, :]
    use = conf > min_conf
    ok = use.any(axis=1)
    lo = np.where(use[:, None, :], xy, np.inf).min(axis=2)
    hi = np.where(use[:, None, :], xy, -np.inf).max(axis=2)
    center = np.zeros((len(xy), 2))
    scale = np.zeros(len(xy))
    for n in np.flatnonzero(ok):
        center[n], scale[n] = bbox_to_center_scale(lo[n, 0], lo[n, 1], hi[n, 0], hi[n, 1], SCALE_FACTOR)
    return center, scale, ok


def fit_joints(model, pose: np.ndarray, betas: np.ndarray, trans: np.ndarray, cam_poses: np.ndarray,
               K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 24 GT joints of the SMPL fit in the camera.

    Args: pose (N, 72) world-frame axis-angle, betas (10,), trans (N, 3), cam_poses (N, 4, 4)
    world -> camera, K (3, 3) intrinsics; ``model`` a BodyModel with the extra regressor.
    Returns: part (N, 24, 3) pixels + conf (1 where z > 0), S (N, 24, 4) metres, pelvis-centred, conf 1.
    """
    import torch

    n = len(pose)
    world = np.zeros((n, 24, 3))
    with torch.no_grad():
        for a in range(0, n, BATCH):
            p = torch.from_numpy(pose[a:a + BATCH]).float()
            b = torch.from_numpy(np.tile(betas[None, :], (len(p), 1))).float()
            out = model(p[:, :3], p[:, 3:], b, pose2rot=True)
            world[a:a + BATCH] = out.joints[:, 25:].double().numpy()
    world += trans[:, None, :]
    R, t = cam_poses[:, :3, :3], cam_poses[:, :3, 3]
    cam = np.einsum("nij,nkj->nki", R, world) + t[:, None, :]
    S = np.ones((n, 24, 4))
    S[:, :, :3] = cam - cam[:, PELVIS:PELVIS + 1]
    z = cam[:, :, 2]
    uvw = np.einsum("ij,nkj->nki", K, cam)
    part = np.zeros((n, 24, 3))
    front = z > 0
    part[:, :, :2] = np.where(front[..., None], uvw[:, :, :2] / np.where(front, z, 1.0)[..., None], 0.0)
    part[:, :, 2] = front
    return part, S


def process_sequence(path: str, with_joints: bool, min_conf: float, models=None) -> tuple[dict, Counter]:
    """One sequence file -> (rows as dict of lists of arrays, skip counts)."""
    seq = load_sequence(path, with_joints)
    rows = {k: [] for k in ("imgname", "center", "scale", "pose", "shape", "gender")
            + (("part", "S") if with_joints else ())}
    skipped = Counter()
    P, N = seq["campose_valid"].shape
    names = np.array([f"imageFiles/{seq['sequence']}/image_{i:05d}.jpg" for i in range(N)])
    for i in range(P):
        valid = seq["campose_valid"][i]
        skipped["invalid camera pose (campose_valid false)"] += int((~valid).sum())
        center, scale, ok = keypoint_boxes(seq["poses2d"][i][valid], min_conf)
        skipped[f"no poses2d point with confidence > {min_conf:g}"] += int((~ok).sum())
        frames = np.flatnonzero(valid)[ok]
        pose = rotate_root(seq["poses"][i][frames], seq["cam_poses"][frames, :3, :3])
        rows["imgname"].append(names[frames])
        rows["center"].append(center[ok])
        rows["scale"].append(scale[ok])
        rows["pose"].append(pose)
        rows["shape"].append(np.tile(seq["betas"][i], (len(frames), 1)))
        rows["gender"].append(np.array([seq["genders"][i]] * len(frames), dtype="<U1"))
        if with_joints:
            part, S = fit_joints(models[seq["genders"][i]], seq["poses"][i][frames], seq["betas"][i],
                                 seq["trans"][i][frames], seq["cam_poses"][frames], seq["cam_intrinsics"])
            rows["part"].append(part)
            rows["S"].append(S)
    return rows, skipped


# ----------------------------------------------------------------------------- workers
_WORKER = {}


def _build_models(smpl_dir: str, extra: str) -> dict:
    from dsr.body import BodyModelError, build_body_model

    try:
        return {g: build_body_model(smpl_dir, g, extra_regressor_path=extra) for g in ("m", "f")}
    except (BodyModelError, FileNotFoundError, ValueError) as e:
        raise PreprocessError(f"3DPW S / part need the gendered SMPL models and J_regressor_extra: {e}") from e


def _setup(with_joints, min_conf, smpl_dir, extra):
    """The per-process state of :func:`_work` (body models only for S / part)."""
    _WORKER.update(with_joints=with_joints, min_conf=min_conf,
                   models=_build_models(smpl_dir, extra) if with_joints else None)


def _init_worker_process(setup_args=None):
    """Pool initializer: one torch thread per worker; a spawned worker builds its own state
    (a forked one inherits the parent's)."""
    import torch

    torch.set_num_threads(1)
    if setup_args is not None:
        _setup(*setup_args)


def _work(path):
    return process_sequence(path, _WORKER["with_joints"], _WORKER["min_conf"], _WORKER["models"])


# ----------------------------------------------------------------------------- run
def _concat(chunks: list, shape: tuple, dtype) -> np.ndarray:
    chunks = [c for c in chunks if len(c)]
    return np.concatenate(chunks).astype(dtype) if chunks else np.zeros((0,) + shape, dtype)


def _same_rows(path: str, arrays: dict) -> bool:
    try:
        old = np.load(path, allow_pickle=False)
        return (old["imgname"].shape == arrays["imgname"].shape
                and bool(np.all(old["imgname"].astype(str) == arrays["imgname"]))
                and np.allclose(old["center"], arrays["center"]) and np.allclose(old["scale"], arrays["scale"]))
    except Exception:  # noqa: BLE001 - unreadable or other keys: not ours
        return False


def run(args) -> list[Summary]:
    root = require_dir(args.root, "3DPW root (the folder holding sequenceFiles/ and imageFiles/)")
    folder = os.path.join(root, "sequenceFiles", args.split)
    require_dir(folder, f"3DPW sequence folder for split '{args.split}' (<root>/sequenceFiles/{args.split})")
    files = sorted(glob.glob(os.path.join(folder, "*.pkl")))
    if not files:
        raise PreprocessError(f"no *.pkl sequence file in {folder}")
    with_joints = args.split != "test"
    out_dir = os.path.join(args.out, "dataset_extras")
    out_path = os.path.join(out_dir, f"3dpw_{args.split}.npz")
    summary = Summary(f"3dpw {args.split}")

    workers = max(1, min(int(args.workers), len(files)))
    setup_args = (with_joints, args.box_min_conf, args.smpl_dir, args.extra_regressor)
    _setup(*setup_args)  # here first: a missing body model is one error, and forked workers inherit it
    pool = None
    if workers == 1:
        results = map(_work, files)
    else:
        fork = "fork" in mp.get_all_start_methods()
        pool = mp.get_context("fork" if fork else "spawn").Pool(
            workers, initializer=_init_worker_process, initargs=(None if fork else setup_args,))
        results = pool.imap(_work, files)
    parts = {}
    try:
        for rows, skipped in progress(results, f"3dpw {args.split}", total=len(files), unit="seq"):
            for k, v in rows.items():
                parts.setdefault(k, []).extend(v)
            summary.skipped.update(skipped)
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    summary.skipped = Counter({k: v for k, v in summary.skipped.items() if v})
    arrays = {
        "imgname": _concat(parts["imgname"], (), str),
        "center": _concat(parts["center"], (2,), np.float64),
        "scale": _concat(parts["scale"], (), np.float64),
        "pose": _concat(parts["pose"], (72,), np.float64),
        "shape": _concat(parts["shape"], (10,), np.float64),
        "gender": _concat(parts["gender"], (), "<U1"),
    }
    if with_joints:
        arrays["part"] = _concat(parts["part"], (24, 3), np.float64)
        arrays["S"] = _concat(parts["S"], (24, 4), np.float64)
        arrays["has_smpl"] = np.ones(len(arrays["imgname"]))
    if len(arrays["imgname"]) == 0:
        raise PreprocessError(f"{folder}: no valid frame in {len(files)} sequence files (nothing to write)")
    summary.save(out_path, arrays)
    summaries = [summary]
    if args.split == "test" and args.eval_copy != "no":
        summaries.append(_eval_copy(out_dir, arrays, args.eval_copy == "force"))
    return summaries


def _eval_copy(out_dir: str, arrays: dict, force: bool) -> Summary:
    """The test rows under the evaluation config's name, unless another file of that name is there."""
    path = os.path.join(out_dir, EVAL_NAME)
    s = Summary("3dpw test, evaluation name (boxes from poses2d)")
    if os.path.exists(path) and not force and not _same_rows(path, arrays):
        s.skip(f"kept the existing {EVAL_NAME} (other rows or boxes: the original's?); --eval-copy force "
               "replaces it", len(arrays["imgname"]))
        return s
    return s.save(path, arrays)
