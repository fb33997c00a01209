"""Run the regressor on a sequence of frames: detect (or take given boxes), track, crop, regress,
convert each crop camera to the full image's camera, smooth. ``run_on_frames`` is the Python API
under ``demo.py``.

    from dsr.inference import run_on_frames
    for fr in run_on_frames(model, frames, detector=det, tracker=IoUTracker(), fps=30):
        fr.index, fr.image (H, W, 3) uint8 RGB, fr.people: list of Person

``Person``: ``track_id`` (int, -1 without a tracker), ``bbox`` (4,) ``[x, y, w, h]`` (the box
the crop was made from, after smoothing), ``score``, ``pose`` (J, 3, 3) rotation matrices (camera
frame: the global orientation maps the body into the camera), ``betas`` (S,), ``cam_t`` (3,)
metres in the full image's camera (:mod:`.camera`), ``vertices`` (V, 3) and ``joints`` (49, 3)
body frame (add ``cam_t`` for the camera frame).

Crops: box ``[x, y, w, h]`` -> centre ``(x + w/2, y + h/2)``, SPIN scale ``box_scale * max(w, h) /
200`` (``box_scale`` 1.2 by default: detector boxes are tight, the regressor was trained on boxes
1.2 x the person's keypoint extent), cropped by :func:`dsr.data.image_utils.crop_cv2` (centre and
side rounded to pixels; the camera conversion uses the rounded values the crop used).

Video: with a ``tracker`` the detector runs on every ``det_every``-th frame and the tracker
predicts the boxes in between (constant velocity); with a ``smoother`` (:class:`TrackSmoother`)
boxes are One-Euro-filtered before cropping, then pose (as rotations, back to SO(3)), camera
translation filtered and betas averaged per track. Frames go through in chunks of ``chunk``
frames, all people of a chunk through the regressor in batches of ``batch_size``.
``timer`` (a :class:`StageTimer`) accumulates seconds per stage: read, detect, track, regress.
"""
from __future__ import annotations

import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from dsr.data.image_utils import crop_box, crop_cv2, normalize_crop

from .camera import crop_to_full_camera, full_image_focal
from .errors import InputError
from .one_euro import DEFAULT_BETA, DEFAULT_MIN_CUTOFF, OneEuroFilter, project_to_so3

__all__ = ["Person", "FrameResult", "StageTimer", "TrackSmoother", "run_on_frames", "crop_person"]


@dataclass
class Person:
    track_id: int
    bbox: np.ndarray
    score: float
    pose: np.ndarray = None
    betas: np.ndarray = None
    cam_t: np.ndarray = None
    vertices: np.ndarray = None
    joints: np.ndarray = None
    center: np.ndarray = None  # crop centre (pixels, rounded as cropped)
    box_size: float = 0.0  # crop side (pixels)


@dataclass
class FrameResult:
    index: int
    image: np.ndarray
    people: list
    focal_length: float = 0.0


class StageTimer:
    """Seconds per stage: ``with timer('detect'): ...``; ``timer.seconds`` dict."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


class TrackSmoother:
    """Per-track One-Euro filters (boxes in units of the track's first box side; rotation matrix
    entries, projected back to SO(3); cam_t in metres) and a running mean of betas."""

    def __init__(self, fps: float, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA):
        self.dt, self.min_cutoff, self.beta = 1.0 / float(fps), float(min_cutoff), float(beta)
        self.state: dict[int, dict] = {}

    def _track(self, tid: int) -> dict:
        if tid not in self.state:
            mk = lambda: OneEuroFilter(self.min_cutoff, self.beta)  # noqa: E731
            self.state[tid] = dict(box=mk(), pose=mk(), cam=mk(), unit=None, betas_sum=None, n=0)
        return self.state[tid]

    def box(self, tid: int, frame: int, box) -> np.ndarray:
        s = self._track(tid)
        box = np.asarray(box, np.float64)
        if s["unit"] is None:
            s["unit"] = max(float(box[2]), float(box[3]), 1.0)
        c = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2, box[2], box[3]]) / s["unit"]
        c = s["box"](c, frame * self.dt) * s["unit"]
        return np.array([c[0] - c[2] / 2, c[1] - c[3] / 2, c[2], c[3]])

    def params(self, tid: int, frame: int, pose, betas, cam_t):
        s = self._track(tid)
        t = frame * self.dt
        pose = project_to_so3(s["pose"](pose, t))
        cam_t = s["cam"](cam_t, t)
        s["betas_sum"] = betas.astype(np.float64) if s["betas_sum"] is None else s["betas_sum"] + betas
        s["n"] += 1
        return pose, s["betas_sum"] / s["n"], cam_t


def crop_person(img: np.ndarray, box, res: int, box_scale: float = 1.2):
    """-> (normalised crop (3, res, res) float32, centre (2,) as cropped, box side in pixels)."""
    x, y, w, h = (float(v) for v in box[:4])
    center = np.array([x + w / 2.0, y + h / 2.0])
    scale = box_scale * max(w, h) / 200.0
    c_x, c_y, bb = crop_box(center, scale)  # the centre and side crop_cv2 cuts at
    return normalize_crop(crop_cv2(img, center, scale, res)), np.array([c_x, c_y], np.float64), float(bb)


def _as_rows(boxes, where: str) -> np.ndarray:
    try:
        rows = [list(map(float, b)) for b in boxes]
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected a list of [x, y, w, h(, score)] boxes, got {boxes!r}"[:300]) from None
    out = np.zeros((len(rows), 5))
    for i, r in enumerate(rows):
        if len(r) not in (4, 5) or r[2] <= 0 or r[3] <= 0:
            raise InputError(f"{where}: box {i} must be [x, y, w, h] or [x, y, w, h, score] with w, h > 0, got {r}")
        out[i, :len(r)] = r
        if len(r) == 4:
            out[i, 4] = 1.0
    return out


@torch.no_grad()
def _regress(model, crops: list, batch_size: int, device) -> dict:
    outs = []
    for i in range(0, len(crops), batch_size):
        x = torch.from_numpy(np.stack(crops[i:i + batch_size])).to(device)
        p = model(x)
        outs.append({k: p[k].float().cpu() for k in ("pred_pose", "pred_shape", "pred_cam", "smpl_vertices",
                                                      "smpl_joints3d")})
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def run_on_frames(model, frames, *, boxes=None, detector=None, tracker=None, smoother=None, det_every: int = 1,
                  fps: float = 30.0, batch_size: int = 8, chunk: int | None = None, box_scale: float = 1.2,
                  device="cpu", timer: StageTimer | None = None, boxes_source: str = "boxes"):
    """Yield a :class:`FrameResult` per frame (module docstring). ``boxes``: per frame a list of
    ``[x, y, w, h(, score)]`` (replaces the detector); ``detector``: callable(list of frames) ->
    list of (N, 5) arrays; neither: the whole frame is one person (the original's rule: a box of
    side max(H, W) / ``box_scale`` about (W // 2, H // 2), so the crop is max(H, W) square)."""
    timer = timer or StageTimer()
    res = int(model.img_res)
    chunk = int(chunk or max(batch_size, 1))
    det_every = max(int(det_every), 1)
    it = iter(frames)
    index, last_det = 0, -1
    last_score: dict[int, float] = {}
    body = model.body
    while True:
        with timer("read"):
            imgs = list(itertools.islice(it, chunk))
        if not imgs:
            return
        idx = list(range(index, index + len(imgs)))
        index += len(imgs)
        dets: list = [None] * len(imgs)
        if boxes is not None:
            for k, i in enumerate(idx):
                if i >= len(boxes):
                    raise InputError(f"{boxes_source}: {len(boxes)} entries, but the video has more frames (frame {i})")
                dets[k] = _as_rows(boxes[i], f"{boxes_source} entry {i}")
        elif detector is not None:
            todo = [k for k, i in enumerate(idx) if tracker is None or i % det_every == 0]
            if todo:
                with timer("detect"):
                    found = detector([imgs[k] for k in todo])
                for k, d in zip(todo, found):
                    dets[k] = np.asarray(d, np.float64).reshape(-1, 5)
        else:
            for k, img in enumerate(imgs):  # the original's rule: centre (W // 2, H // 2), scale max(H, W) / 200
                h, w = img.shape[:2]
                s = max(h, w) / box_scale  # crop_person multiplies by box_scale: the crop side is max(H, W)
                dets[k] = np.array([[w // 2 - s / 2.0, h // 2 - s / 2.0, s, s, 1.0]])
        with timer("track"):
            people: list[list[Person]] = []
            for k, i in enumerate(idx):
                if tracker is None:
                    people.append([Person(-1, d[:4].copy(), float(d[4])) for d in dets[k]])
                    continue
                if dets[k] is not None:
                    last_det = i
                    ids = tracker.update(dets[k][:, :4])
                    for tid, d in zip(ids, dets[k]):
                        last_score[int(tid)] = float(d[4])
                    row = [Person(int(t), d[:4].copy(), float(d[4])) for t, d in zip(ids, dets[k]) if tracker.reported(t)]
                else:
                    row = [Person(t.id, t.box, last_score.get(t.id, 0.0)) for t in tracker.predict_only()
                           if t.age <= i - last_det]
                if smoother is not None:
                    for p in row:
                        p.bbox = smoother.box(p.track_id, i, p.bbox)
                people.append(sorted(row, key=lambda p: p.track_id))
        with timer("regress"):
            flat = [(k, p) for k, row in enumerate(people) for p in row]
            crops = []
            for k, p in flat:
                z, p.center, p.box_size = crop_person(imgs[k], p.bbox, res, box_scale)
                crops.append(z)
            if flat:
                pred = _regress(model, crops, batch_size, device)
                H, W = imgs[0].shape[:2]
                cam_t = crop_to_full_camera(pred["pred_cam"], torch.tensor(np.stack([p.center for _, p in flat])),
                                            torch.tensor([p.box_size for _, p in flat]), W, H).numpy()
                for j, (k, p) in enumerate(flat):
                    p.pose, p.betas = pred["pred_pose"][j].numpy(), pred["pred_shape"][j].numpy()
                    p.cam_t = cam_t[j]
                    p.vertices, p.joints = pred["smpl_vertices"][j].numpy(), pred["smpl_joints3d"][j].numpy()
        if smoother is not None and flat:
            with timer("track"):
                for k, p in flat:
                    p.pose, p.betas, p.cam_t = smoother.params(p.track_id, idx[k], p.pose, p.betas, p.cam_t)
            with timer("regress"):
                pose = torch.from_numpy(np.stack([p.pose for _, p in flat])).float().to(device)
                out = body(global_orient=pose[:, :1], body_pose=pose[:, 1:],
                           betas=torch.from_numpy(np.stack([p.betas for _, p in flat])).float().to(device))
                for j, (_, p) in enumerate(flat):
                    p.vertices, p.joints = out.vertices[j].cpu().numpy(), out.joints[j].cpu().numpy()
        for k, i in enumerate(idx):
            H, W = imgs[k].shape[:2]
            yield FrameResult(i, imgs[k], people[k], full_image_focal(W, H))
