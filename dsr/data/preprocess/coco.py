"""COCO-2014 train (+ EFT fits) -> ``coco_2014_train.npz``, SPIN's and EFT's conventions.

Input: ``<root>/annotations/person_keypoints_train2014.json``; images are not read (the npz names
``train2014/<file_name>``). Optional ``--eft FILE`` (EFT's fits json, e.g.
``COCO2014-Part-ver01.json``) and ``--openpose DIR`` (``<DIR>/<image stem>_keypoints.json``,
OpenPose BODY_25; SPIN's ``<openpose>/coco`` folder).

Rows, as SPIN's ``datasets/preprocess/coco.py``: every annotation of the json, in file order, with
at least ``--min-body-joints`` (default 12, i.e. all) of the 12 body joints (shoulders ... ankles)
annotated (visibility > 0):

- ``imgname``: ``train2014/<file_name>``;
- ``part`` (24, 3): the 17 COCO keypoints in the 24-joint layout, visibility 1 / 2 -> 1;
- ``center`` / ``scale``: the annotation's ``bbox`` (not the keypoints), scale factor 1.2;
- ``openpose`` (25, 3): with ``--openpose`` the detection SPIN's ``read_openpose`` matches to
  the person, else zeros.

With ``--eft`` the rows are EFT's records instead, in the file's order, as EFT's own npz export
(EFT chose the people: ``COCO2014-Part`` = all 12 body joints annotated, SPIN's filter;
``COCO2014-All`` = 6 or more). Each takes from its record: ``pose`` (72,) = ``parm_pose`` (24
rotation matrices) to axis-angle, ``shape`` = ``parm_shape``, ``has_smpl`` 1, ``center`` /
``scale`` = ``bbox_center`` / ``bbox_scale``, ``part`` = ``gt_keypoint_2d[25:]`` and, without
``--openpose``, ``openpose`` = ``gt_keypoint_2d[:25]``; ``imgname`` = ``train2014/<imageName>``.
A record whose image is not in the COCO json is skipped and counted. COCO people without a fit
are not written (EFT's file, which the original trained on, holds only fitted people);
``--keep-unfitted`` appends them (SPIN's rows, zero pose / shape, ``has_smpl`` 0), which needs
EFT's ``annotId`` to tell them apart.
No ``S`` is written: EFT's own export added an all-zero one, which makes a loader count every
COCO row as 3D-supervised with zero confidence (diluting the batch's 3D keypoint loss);
``--zero-S`` writes it to match that export.

``read_openpose`` quirks reproduced by default (``--openpose-strict`` fixes them): the person's
size is taken over all 24 rows of ``part``, unannotated (0, 0) rows included; a detection is
rejected only when its mean distance is above 0.1 x size *and* below 10 px, so a far one on a
person over 100 px is kept; when no detection has all 12 limb joints, the first one is kept.
Strict: size from the annotated joints, reject when no detection is complete or the distance is
above 0.1 x size.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from dsr.data.preprocess.common import (PreprocessError, Summary, bbox_to_center_scale, progress, require_dir,
                                        require_file)

SCALE_FACTOR = 1.2
OUT_NAME = "coco_2014_train.npz"
# COCO keypoint k -> 24-joint index (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
COCO_TO_J24 = [19, 20, 21, 22, 23, 9, 8, 10, 7, 11, 6, 3, 2, 4, 1, 5, 0]
# BODY_25 indices of the 24-joint layout's first 12 (R ankle, R knee, R hip, L hip, L knee, L ankle,
# R wrist, R elbow, R shoulder, L shoulder, L elbow, L wrist)
OP_LIMBS = [11, 10, 9, 12, 13, 14, 4, 3, 2, 5, 6, 7]
OPENPOSE_COCO_THRESH = 10.0  # SPIN's per-dataset pixel threshold for COCO
_EFT_KEYS = ("parm_pose", "parm_shape", "bbox_scale", "bbox_center", "gt_keypoint_2d", "imageName")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eft", default="", help="EFT fits json (pose / shape / box / keypoints per COCO person)")
    p.add_argument("--openpose", default="", help="folder of OpenPose json files <image stem>_keypoints.json")
    p.add_argument("--min-body-joints", type=int, default=12,
                   help="annotated body joints (of 12) a COCO person needs (default 12: SPIN); with --eft "
                        "only for the people --keep-unfitted adds")
    p.add_argument("--keep-unfitted", action="store_true",
                   help="with --eft: keep people without a fit (has_smpl 0) instead of skipping them")
    p.add_argument("--zero-S", action="store_true", help="write an all-zero S (24, 4) as EFT's own npz export")
    p.add_argument("--openpose-strict", action="store_true",
                   help="fix read_openpose's matching quirks (see the module help)")


# ----------------------------------------------------------------------------- OpenPose matching
def match_openpose(people: np.ndarray, part: np.ndarray, strict: bool = False,
                   thresh: float = OPENPOSE_COCO_THRESH) -> np.ndarray:
    """SPIN's ``read_openpose``: the detection of one person among an image's OpenPose people.

    Args: people (P, 25, 3) BODY_25 detections, part (24, 3) the person's annotated joints.
    Returns: (25, 3), zeros when no detection is accepted.
    """
    if len(people) == 0:
        return np.zeros((25, 3))
    pts = part[part[:, 2] > 0] if strict else part
    if len(pts) == 0:
        return np.zeros((25, 3))
    size = max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]))
    dist = np.full(len(people), np.inf)
    for i, op in enumerate(people):
        limbs = op[OP_LIMBS]
        if np.all(limbs[:, 2] > 0):
            dist[i] = np.mean(np.sqrt(np.sum((limbs[:, :2] - part[:12, :2]) ** 2, axis=1)))
    best = int(np.argmin(dist))
    d = dist[best]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = d / size
    if strict:
        reject = not np.isfinite(d) or not rel <= 0.1
    else:
        reject = rel > 0.1 and d < thresh
    return np.zeros((25, 3)) if reject else np.asarray(people[best], dtype=np.float64)


def read_openpose_people(path: str) -> np.ndarray:
    """An OpenPose json -> (P, 25, 3) ``pose_keypoints_2d`` of its people."""
    require_file(path, "OpenPose detection (--openpose folder, <image stem>_keypoints.json)")
    try:
        with open(path) as f:
            people = json.load(f)["people"]
        kps = [np.reshape(p["pose_keypoints_2d"], (25, 3)) for p in people]
        return np.array(kps, dtype=np.float64).reshape(-1, 25, 3)
    except (ValueError, KeyError, TypeError) as e:
        raise PreprocessError(f"{path}: not an OpenPose BODY_25 json ({type(e).__name__}: {e})") from e


# ----------------------------------------------------------------------------- inputs
def _load_json(path: str, what: str):
    require_file(path, what)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise PreprocessError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from e


def load_coco(path: str) -> tuple[dict, list]:
    """person_keypoints json -> ({image id: file_name}, annotations)."""
    data = _load_json(path, "COCO-2014 keypoint annotations (annotations/person_keypoints_train2014.json)")
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise PreprocessError(f"{path}: a COCO keypoint json has 'images' and 'annotations' "
                              f"(found {sorted(data) if isinstance(data, dict) else type(data).__name__})")
    try:
        images = {img["id"]: str(img["file_name"]) for img in data["images"]}
    except (KeyError, TypeError) as e:
        raise PreprocessError(f"{path}: an 'images' entry without 'id' / 'file_name'") from e
    return images, data["annotations"]


def load_eft(path: str) -> list[dict]:
    """EFT fits json -> its records with arrays (``annotId`` None where absent or 0); checks keys and shapes."""
    data = _load_json(path, "EFT fits json (--eft)")
    records = data.get("data") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise PreprocessError(f"{path}: an EFT fits json is {{'ver': ..., 'data': [records]}}")
    shapes = {"parm_pose": (24, 3, 3), "parm_shape": (10,), "bbox_center": (2,), "gt_keypoint_2d": (49, 3)}
    fits = []
    for n, r in enumerate(records):
        missing = [k for k in _EFT_KEYS if k not in r]
        if missing:
            raise PreprocessError(f"{path}: record {n} without {missing}")
        aid = r.get("annotId")
        rec = {"imageName": os.path.basename(str(r["imageName"])), "bbox_scale": float(r["bbox_scale"]),
               "annotId": aid if isinstance(aid, int) and aid > 0 else None}
        for k, s in shapes.items():
            a = np.asarray(r[k], dtype=np.float64)
            if a.shape != s:
                raise PreprocessError(f"{path}: record {n} key '{k}' has shape {a.shape}, expected {s}")
            rec[k] = a
        fits.append(rec)
    return fits


def rotmats_to_pose(rotmats: np.ndarray) -> np.ndarray:
    """(N, 24, 3, 3) rotation matrices -> (N, 72) axis-angle."""
    import torch

    from dsr.geometry import rotmat_to_axis_angle

    if len(rotmats) == 0:
        return np.zeros((0, 72))
    return rotmat_to_axis_angle(torch.from_numpy(rotmats)).reshape(len(rotmats), 72).numpy()


# ----------------------------------------------------------------------------- run
ROW_KEYS = ("imgname", "center", "scale", "part", "openpose", "rotmat", "shape", "has_smpl")


def _spin_row(a: dict, kp: np.ndarray, file_name: str) -> dict:
    """SPIN's row of one COCO annotation (no SMPL)."""
    x, y, w, h = (float(v) for v in a["bbox"])
    center, scale = bbox_to_center_scale(x, y, x + w, y + h, SCALE_FACTOR)
    part = np.zeros((24, 3))
    part[COCO_TO_J24] = kp
    return {"imgname": "train2014/" + file_name, "center": center, "scale": scale, "part": part,
            "openpose": np.zeros((25, 3)), "rotmat": np.tile(np.eye(3), (24, 1, 1)), "shape": np.zeros(10),
            "has_smpl": 0.0}


def _eft_row(fit: dict) -> dict:
    kp = fit["gt_keypoint_2d"]
    return {"imgname": "train2014/" + fit["imageName"], "center": fit["bbox_center"], "scale": fit["bbox_scale"],
            "part": kp[25:], "openpose": kp[:25], "rotmat": fit["parm_pose"], "shape": fit["parm_shape"],
            "has_smpl": 1.0}


def _keypoints(a: dict) -> np.ndarray:
    """An annotation's (17, 3) keypoints, visibility 1 / 2 -> 1 (SPIN)."""
    kp = np.asarray(a.get("keypoints", []), dtype=np.float64)
    if kp.size != 51:
        raise PreprocessError(f"annotation {a.get('id')}: 'keypoints' has {kp.size} values, expected 17 x 3")
    kp = kp.reshape(17, 3)
    kp[kp[:, 2] > 0, 2] = 1
    return kp


def _image(a: dict, images: dict) -> str:
    if a.get("image_id") not in images:
        raise PreprocessError(f"annotation {a.get('id')}: image_id {a.get('image_id')} is not in 'images'")
    return images[a["image_id"]]


def run(args) -> list[Summary]:
    root = require_dir(args.root, "COCO root (the folder holding annotations/ and train2014/)")
    coco_json = os.path.join(root, "annotations", "person_keypoints_train2014.json")
    images, annots = load_coco(coco_json)
    fits = load_eft(args.eft) if args.eft else None
    if args.openpose:
        require_dir(args.openpose, "OpenPose folder (--openpose)")
    if not 1 <= args.min_body_joints <= 12:
        raise PreprocessError(f"--min-body-joints must be 1..12, got {args.min_body_joints}")
    if args.keep_unfitted and fits is None:
        raise PreprocessError("--keep-unfitted needs --eft")
    s = Summary("coco 2014 train" + (" + EFT" if fits is not None else ""))
    few = f"fewer than {args.min_body_joints} of 12 body joints annotated"
    rows = []
    if fits is None:
        for a in progress(annots, "coco annotations", unit="person"):
            kp = _keypoints(a)
            if (kp[5:, 2] > 0).sum() < args.min_body_joints:
                s.skip(few)
                continue
            rows.append(_spin_row(a, kp, _image(a, images)))
    else:
        names = set(images.values())
        image_of = {a.get("id"): images.get(a.get("image_id")) for a in annots}
        for fit in progress(fits, "EFT fits", unit="fit"):
            if fit["imageName"] not in names:
                s.skip("EFT fit whose image is not in the COCO json")
                continue
            aid = fit["annotId"]
            if aid is not None and aid in image_of and image_of[aid] != fit["imageName"]:
                raise PreprocessError(f"{args.eft}: the fit of annotation {aid} names image {fit['imageName']}, "
                                      f"{coco_json} {image_of[aid]}")
            rows.append(_eft_row(fit))
        if not rows:
            raise PreprocessError(f"{args.eft}: no fit names an image of {coco_json}: is it the COCO-2014 train "
                                  "fits file (COCO2014-Part-ver01.json or COCO2014-All-ver01.json)?")
        if any(f["annotId"] is None for f in fits):
            if args.keep_unfitted:
                raise PreprocessError(f"{args.eft}: --keep-unfitted needs the COCO annotation id (annotId) of "
                                      "every fit, and some records lack it")
            s.name += " (fits without annotId: COCO people without a fit not counted)"
        else:
            fitted = {f["annotId"] for f in fits}
            for a in annots:
                if a.get("id") in fitted:
                    continue
                kp = _keypoints(a)
                if (kp[5:, 2] > 0).sum() < args.min_body_joints:
                    s.skip(f"no EFT fit, {few}")
                elif args.keep_unfitted:
                    rows.append(_spin_row(a, kp, _image(a, images)))
                else:
                    s.skip("no EFT fit, passes the joint filter")
    if args.openpose:
        for r in progress(rows, "openpose", unit="person"):
            stem = os.path.splitext(os.path.basename(r["imgname"]))[0]
            people = read_openpose_people(os.path.join(args.openpose, stem + "_keypoints.json"))
            r["openpose"] = match_openpose(people, r["part"], strict=args.openpose_strict)
    n = len(rows)
    if n == 0:
        raise PreprocessError(f"{coco_json}: no person passes the joint filter: nothing to write")
    col = {k: [r[k] for r in rows] for k in ROW_KEYS}
    arrays = {
        "imgname": np.array(col["imgname"]),
        "center": np.array(col["center"], dtype=np.float64).reshape(n, 2),
        "scale": np.array(col["scale"], dtype=np.float64),
        "part": np.array(col["part"], dtype=np.float64),
        "openpose": np.array(col["openpose"], dtype=np.float64),
    }
    if fits is not None:
        has = np.array(col["has_smpl"], dtype=np.float64)
        arrays["pose"] = rotmats_to_pose(np.array(col["rotmat"], dtype=np.float64))  # identity -> 0
        arrays["shape"] = np.array(col["shape"], dtype=np.float64)
        arrays["has_smpl"] = has
    if args.zero_S:
        arrays["S"] = np.zeros((n, 24, 4))
    return [s.save(os.path.join(args.out, "dataset_extras", OUT_NAME), arrays)]
