"""A synthetic two-person video with known SMPL parameters, from the embedded default (free body
model, the synthetic dataset's outfits, colours and backgrounds): two people walk across the
frame in opposite directions at different depths and cross (the nearer one occludes the other).

``make_crossing_video(out_dir, seconds=10, fps=25, size=(640, 480), seed=0, stem='crossing')``
writes ``<stem>.mp4``, ``<stem>_boxes.json`` (per frame the two true boxes ``[x, y, w, h]`` of
the projected vertices, in a shuffled order per frame) and ``<stem>_truth.npz``:
``pose`` (T, 2, 72) axis-angle (camera frame), ``betas`` (2, 10), ``cam_t`` (T, 2, 3) metres,
``boxes`` (T, 2, 4), ``order`` (T, 2) the person index of each json box, ``focal_length``
(the full image's camera, sqrt(w^2 + h^2): :mod:`.camera`), ``fps``, ``img_size`` (w, h).
Camera-frame vertices of person k at frame t = SMPL(pose[t, k], betas[k]).vertices + cam_t[t, k]
(neutral free body). Returns the truth dict.

Motion: a pose from the training pose sampler ("stand"), plus a walking swing (hips, knees,
shoulders, elbows; sinusoids of 1 Hz), yaw towards the walking direction (+-30 deg from facing
the camera), translation linear in time; person 0 at depth 6 m left->right, person 1 at 8 m
right->left, crossing at mid-video.
"""
from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from .camera import full_image_focal
from .video import VideoWriter

__all__ = ["make_crossing_video", "person_boxes", "match_rows_to_truth", "evaluate_rows"]

# SMPL joint ids
L_HIP, R_HIP, L_KNEE, R_KNEE, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW = 1, 2, 4, 5, 16, 17, 18, 19


def person_boxes(verts_cam: np.ndarray, focal: float, W: int, H: int) -> np.ndarray:
    """(N, V, 3) camera-frame vertices -> (N, 4) boxes ``[x, y, w, h]`` of their projection."""
    u = focal * verts_cam[..., 0] / verts_cam[..., 2] + W / 2.0
    v = focal * verts_cam[..., 1] / verts_cam[..., 2] + H / 2.0
    x0, y0, x1, y1 = u.min(-1), v.min(-1), u.max(-1), v.max(-1)
    return np.stack([x0, y0, x1 - x0, y1 - y0], -1)


def _walk(base: np.ndarray, t: float, phase: float) -> np.ndarray:
    """(72,) base pose + a 1 Hz walking swing at time t (s)."""
    p = base.reshape(24, 3).copy()
    s = math.sin(2 * math.pi * t + phase)
    swing = {L_HIP: (0.45 * s, 0, 0), R_HIP: (-0.45 * s, 0, 0), L_KNEE: (0.35 * max(-s, 0) + 0.1, 0, 0),
             R_KNEE: (0.35 * max(s, 0) + 0.1, 0, 0), L_SHOULDER: (-0.4 * s, 0, -1.1), R_SHOULDER: (0.4 * s, 0, 1.1),
             L_ELBOW: (0, -0.3, 0), R_ELBOW: (0, 0.3, 0)}
    for j, aa in swing.items():
        p[j] = (Rotation.from_rotvec(p[j]) * Rotation.from_rotvec(aa)).as_rotvec()
    return p.reshape(72)


@torch.no_grad()
def make_crossing_video(out_dir: str, seconds: float = 10.0, fps: float = 25.0, size=(640, 480), seed: int = 0,
                        stem: str = "crossing", progress: bool = True) -> dict:
    from tqdm import tqdm

    from dsr.body.outfits import sample_outfit
    from dsr.data.pose_sampler import sample_body_pose
    from dsr.data.synthetic import _face_base_colours, _forward, _label_colours, background_texture, load_body_models
    from dsr.rendering import rasterize

    W, H = int(size[0]), int(size[1])
    T = int(round(seconds * fps))
    rng = np.random.default_rng(seed)
    models, face_parts = load_body_models()
    body = models["neutral"]
    faces = body.faces.long()
    F, V = faces.shape[0], body.num_vertices
    f = full_image_focal(W, H)
    betas = np.clip(rng.standard_normal((2, 10)), -1.5, 1.5).astype(np.float32)
    base = [sample_body_pose(rng, "stand") for _ in range(2)]
    cols = []
    for _ in range(2):
        outfit = sample_outfit(rng, "neutral", face_parts=face_parts)
        cols.append(_face_base_colours(outfit, _label_colours(rng)) * rng.uniform(0.93, 1.07, (F, 1)))
    bg = background_texture(rng, H, W).astype(np.float32)
    depth = np.array([6.0, 8.0])
    direction = np.array([1.0, -1.0])
    half_width = np.array([0.5 * W * d / f * 0.8 for d in depth])  # metres from the image centre at the depth
    pose = np.zeros((T, 2, 72), np.float32)
    cam_t = np.zeros((T, 2, 3), np.float32)
    for t in range(T):
        a = t / max(T - 1, 1)
        for k in range(2):
            p = _walk(base[k], t / fps, phase=k * 1.3)
            yaw = Rotation.from_euler("y", 30.0 * direction[k], degrees=True)
            p[:3] = (Rotation.from_euler("x", 180, degrees=True) * yaw).as_rotvec()
            pose[t, k] = p
            x = direction[k] * half_width[k] * (2 * a - 1)
            cam_t[t, k] = (x, 0.15 + 0.03 * math.sin(4 * math.pi * t / fps), depth[k])
    flat = pose.reshape(T * 2, 72)
    out = _forward(body, flat[:, :3], flat[:, 3:], np.repeat(betas[None], T, 0).reshape(T * 2, 10))
    verts = out.vertices.numpy().reshape(T, 2, V, 3) + cam_t[:, :, None]
    boxes = person_boxes(verts, f, W, H)  # (T, 2, 4)
    os.makedirs(out_dir, exist_ok=True)
    order = np.zeros((T, 2), np.int64)
    light = np.array([0.3, -0.5, -1.0])
    light /= np.linalg.norm(light)
    json_boxes = []
    path = os.path.join(out_dir, f"{stem}.mp4")
    with VideoWriter(path, fps, (W, H)) as writer:
        for t in tqdm(range(T), desc="crossing video", disable=not progress):
            vt = torch.from_numpy(verts[t]).float()
            ras = rasterize(vt.reshape(1, 2 * V, 3), torch.zeros(1, 3),
                            torch.cat([faces, faces + V]), (H, W), f, backend="window")
            p2f = ras.pix_to_face[0].numpy()
            tri = vt[:, faces]
            nrm = torch.nn.functional.normalize(torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0],
                                                                   tri[:, :, 2] - tri[:, :, 0], dim=-1), dim=-1)
            nrm = torch.where((nrm * tri.mean(2)).sum(-1, keepdim=True) > 0, -nrm, nrm).numpy()
            shade = 0.3 + 0.7 * np.clip(nrm @ light, 0, 1)  # (2, F)
            face_rgb = np.concatenate([cols[k] * shade[k][:, None] for k in range(2)])
            img = bg.copy()
            hit = p2f >= 0
            img[hit] = face_rgb[p2f[hit]]
            img = cv2.GaussianBlur(img, (3, 3), 0.6) + rng.normal(0, 2.0, img.shape).astype(np.float32)
            writer.write(np.clip(img, 0, 255).astype(np.uint8))
            order[t] = rng.permutation(2)
            json_boxes.append([[round(float(v), 2) for v in boxes[t, k]] for k in order[t]])
    with open(os.path.join(out_dir, f"{stem}_boxes.json"), "w") as fh:
        json.dump(json_boxes, fh)
    truth = dict(pose=pose, betas=betas, cam_t=cam_t, boxes=boxes.astype(np.float32), order=order,
                 focal_length=np.float32(f), fps=np.float32(fps), img_size=np.array([W, H]))
    np.savez(os.path.join(out_dir, f"{stem}_truth.npz"), **truth)
    return truth


def match_rows_to_truth(rows: dict, truth: dict) -> np.ndarray:
    """(N,) true person index of every npz row (its bbox matched to the frame's true boxes by
    IoU, Hungarian; -1 when unmatched or IoU < 0.3)."""
    from scipy.optimize import linear_sum_assignment

    from .tracker import iou_matrix

    who = np.full(len(rows["frame"]), -1, np.int64)
    for t in np.unique(rows["frame"]):
        sel = np.nonzero(rows["frame"] == t)[0]
        iou = iou_matrix(rows["bbox"][sel], truth["boxes"][t])
        r, c = linear_sum_assignment(-iou)
        ok = iou[r, c] >= 0.3
        who[sel[r[ok]]] = c[ok]
    return who


@torch.no_grad()
def evaluate_rows(rows: dict, truth: dict, body) -> dict:
    """Score demo npz rows against the truth: identity switches, and per true person the
    pelvis-aligned PVE (mm; the SMPL pelvis, joint 0 of the 24) and the joint jitter (mean
    |acceleration| of the 24 pelvis-aligned joints, mm / frame^2) of the predictions, with the
    truth's own jitter beside it. ``body``: the neutral BodyModel both were made with."""
    from dsr.evaluation.metrics import pve

    from .tracker import count_id_switches

    who = match_rows_to_truth(rows, truth)
    frames = np.unique(rows["frame"])
    switches = count_id_switches([rows["track_id"][rows["frame"] == t] for t in frames],
                                 [who[rows["frame"] == t] for t in frames])

    def accel_mm(j):  # (T, J, 3) metres -> mean |acceleration|, mm / frame^2 (not metrics.jitter's jerk)
        return float(np.linalg.norm(j[2:] - 2 * j[1:-1] + j[:-2], axis=-1).mean() * 1000) if len(j) > 2 else float("nan")

    res = {"id_switches": int(switches), "rows": int(len(who)), "unmatched_rows": int((who < 0).sum())}
    pves, jits, jits_gt = [], [], []
    for k in range(truth["pose"].shape[1]):
        sel = np.nonzero(who == k)[0]
        sel = sel[np.argsort(rows["frame"][sel])]
        if len(sel) == 0:
            continue
        t = rows["frame"][sel]
        pv, pj = _verts_joints(body, rows["pose"][sel], rows["betas"][sel])
        gv, gj = _verts_joints(body, truth["pose"][t, k], np.repeat(truth["betas"][k][None], len(t), 0))
        pv, gv = pv - pj[:, :1], gv - gj[:, :1]
        pj, gj = pj - pj[:, :1], gj - gj[:, :1]
        pves.append(pve(pv, gv) * 1000)
        jits.append(accel_mm(pj))
        jits_gt.append(accel_mm(gj))
    res["pve_mm"] = float(np.concatenate(pves).mean()) if pves else float("nan")
    res["jitter_mm"] = float(np.mean(jits)) if jits else float("nan")
    res["truth_jitter_mm"] = float(np.mean(jits_gt)) if jits_gt else float("nan")
    return res


@torch.no_grad()
def _verts_joints(body, pose, betas, chunk: int = 256):
    """(N, 72) axis-angle, (N, 10) -> vertices (N, V, 3), the 24 SMPL joints (N, 24, 3) (J_regressor)."""
    from dsr.data.synthetic import _forward

    vs = []
    for i in range(0, len(pose), chunk):
        p = np.asarray(pose[i:i + chunk])
        vs.append(_forward(body, p[:, :3], p[:, 3:], np.asarray(betas[i:i + chunk])).vertices)
    v = torch.cat(vs)
    jreg = body.smpl.J_regressor.to(v)
    return v.numpy(), torch.einsum("jv,nvk->njk", jreg, v).numpy()
