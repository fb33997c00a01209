"""Result files of the demo: the per-person npz rows, obj meshes, and the ``--boxes`` json.

npz (one per image or video), one row per person per frame:
  ``frame`` (N,) int, ``track_id`` (N,) int (-1 for images), ``bbox`` (N, 4) ``[x, y, w, h]`` px,
  ``score`` (N,), ``pose`` (N, 72) SMPL axis-angle (24 joints x 3; joint 0 = global orientation
  in the camera frame), ``betas`` (N, 10), ``cam_t`` (N, 3) metres (the full image's camera:
  camera-frame vertices = SMPL(pose, betas) vertices + cam_t), ``focal_length`` (N,) px (principal
  point at the image centre), and ``img_size`` (2,) ``[w, h]``, ``fps`` (scalar; 0 for images).
Written to ``<path>.part.npz`` and renamed (atomic).

``--boxes`` json: for an image a list of boxes, for a video a list with one entry per frame (each
a list of boxes); a box is ``[x, y, w, h]`` in pixels, optionally followed by a score.
"""
from __future__ import annotations

import json
import os

import numpy as np

from dsr.geometry import rotmat_to_axis_angle

from .errors import InputError

__all__ = ["ParamRows", "write_obj", "load_boxes_json"]


class ParamRows:
    """Collects :class:`~dsr.inference.pipeline.Person` rows; ``save(path, img_size, fps)``."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, frame: int, person, focal_length: float) -> None:
        import torch

        aa = rotmat_to_axis_angle(torch.as_tensor(np.asarray(person.pose), dtype=torch.float64)).numpy().reshape(-1)
        self.rows.append(dict(frame=int(frame), track_id=int(person.track_id), bbox=np.asarray(person.bbox, np.float64),
                              score=float(person.score), pose=aa, betas=np.asarray(person.betas, np.float64),
                              cam_t=np.asarray(person.cam_t, np.float64), focal_length=float(focal_length)))

    def save(self, path: str, img_size, fps: float) -> None:
        keys = ("frame", "track_id", "bbox", "score", "pose", "betas", "cam_t", "focal_length")
        widths = {"bbox": 4, "pose": 72, "betas": 10, "cam_t": 3}
        data = {}
        for k in keys:
            vals = [r[k] for r in self.rows]
            if k in widths:
                data[k] = np.asarray(vals, np.float32).reshape(-1, widths[k]) if vals else np.zeros((0, widths[k]), np.float32)
            else:
                data[k] = np.asarray(vals, np.int64 if k in ("frame", "track_id") else np.float32)
        data["img_size"] = np.asarray(img_size, np.int64)
        data["fps"] = np.float32(fps)
        tmp = path + ".part.npz"
        np.savez(tmp, **data)
        os.replace(tmp, path)


def write_obj(path: str, vertices: np.ndarray, faces: np.ndarray) -> None:
    with open(path, "w") as f:
        f.writelines(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in vertices)
        f.writelines(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces)


def load_boxes_json(path: str, video: bool):
    """-> a list of boxes (image) or a list of per-frame lists (video); shapes checked lazily per
    entry by the pipeline, the nesting here. InputError naming the file otherwise."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: boxes file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: malformed boxes json ({e})") from None
    want = ("a list with one entry per frame, each a list of [x, y, w, h(, score)] boxes" if video
            else "a list of [x, y, w, h(, score)] boxes")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected {want}, got a {type(data).__name__}")
    entries = data if video else [data]
    for i, e in enumerate(entries):
        if not isinstance(e, list) or not all(isinstance(b, list) and len(b) in (4, 5) and
                                              all(isinstance(v, (int, float)) for v in b) for b in e):
            where = f"entry {i}" if video else "the list"
            raise InputError(f"{path}: {where} is not a list of [x, y, w, h(, score)] boxes (expected {want})")
        for b in e:
            if b[2] <= 0 or b[3] <= 0:
                raise InputError(f"{path}: box {b} has a non-positive width or height")
    return data
