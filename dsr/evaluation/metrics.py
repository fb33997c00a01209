"""Pose and shape metrics (reference §6), per sample; inputs and outputs in the same units.

All functions accept numpy arrays or torch tensors, compute in float64 and return the same kind
(numpy in → numpy out). Shapes: joints (N, J, 3), vertices (N, V, 3); outputs (N,).

- ``mpjpe``: mean joint L2 distance, no alignment (callers centre on the pelvis first).
- ``pa_mpjpe``: per-sample similarity Procrustes of pred onto gt (rotation with reflection
  correction, isotropic scale, translation; SPIN/HMR), then mean joint L2 distance.
- ``pve``: mean vertex L2 distance, no alignment.
- ``pck``: fraction of joints whose error is below ``threshold``.
- ``auc``: mean of PCK over 31 evenly spaced thresholds in [0, max_threshold] (MPI-INF-3DHP).
- ``rotation_angle_deg``: geodesic angle between rotations (EMDB's MPJAE / PA-MPJAE).
- ``scale_translation_align``: RMS-radius and mean matching (SSP-3D's PVE-T-SC).
- ``jitter``: mean jerk of a joint sequence, 10 m/s³ (EMDB).
- ``silhouette_counts``: TP / FP / FN pixels of two silhouettes (SSP-3D's IoU).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["mpjpe", "pa_mpjpe", "pve", "pck", "auc", "similarity_procrustes", "similarity_transform",
           "rotation_angle_deg", "scale_translation_align", "jitter", "silhouette_counts"]


def _as_tensor(x) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float64)), True
    return x.detach().to(torch.float64), False


def _out(x: torch.Tensor, was_numpy: bool):
    return x.cpu().numpy() if was_numpy else x


def _check(pred: torch.Tensor, gt: torch.Tensor, name: str):
    if pred.shape != gt.shape or pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(f"{name}: expected pred and gt of the same shape (N, J, 3), got {tuple(pred.shape)} and {tuple(gt.shape)}")


def _joint_errors(pred, gt, name) -> tuple[torch.Tensor, bool]:
    p, was_np = _as_tensor(pred)
    g, _ = _as_tensor(gt)
    _check(p, g, name)
    return (p - g).norm(dim=-1), was_np


def mpjpe(pred, gt):
    """Mean per-joint position error (N,) without alignment."""
    err, was_np = _joint_errors(pred, gt, "mpjpe")
    return _out(err.mean(dim=-1), was_np)


def pve(pred_verts, gt_verts):
    """Per-vertex error (N,): mean L2 over vertices, no alignment."""
    err, was_np = _joint_errors(pred_verts, gt_verts, "pve")
    return _out(err.mean(dim=-1), was_np)


def similarity_transform(pred: torch.Tensor, gt: torch.Tensor):
    """Least-squares similarity transform of pred (N,J,3) onto gt (N,J,3), per sample.

    Returns ``(scale (N,), R (N,3,3), mu_pred (N,1,3), mu_gt (N,1,3))`` such that the aligned
    prediction is ``scale·R·(pred − mu_pred) + mu_gt``, det(R) = +1 (reflections corrected as in
    SPIN/HMR's and EMDB's ``compute_similarity_transform``).
    """
    mu_p = pred.mean(dim=1, keepdim=True)
    mu_g = gt.mean(dim=1, keepdim=True)
    x = pred - mu_p
    y = gt - mu_g
    var_x = (x ** 2).sum(dim=(1, 2))
    k = x.transpose(1, 2) @ y  # (N,3,3) = X^T Y
    u, s, vh = torch.linalg.svd(k)
    v = vh.transpose(1, 2)
    # R maps x to y: R = V diag(1,1,det(V U^T)) U^T
    d = torch.ones_like(s)
    d[:, -1] = torch.sign(torch.linalg.det(v @ u.transpose(1, 2)))
    d[d == 0] = 1.0
    r = v @ torch.diag_embed(d) @ u.transpose(1, 2)
    scale = (s * d).sum(dim=1) / var_x.clamp_min(1e-30)
    return scale, r, mu_p, mu_g


def similarity_procrustes(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Align pred (N,J,3) onto gt (N,J,3) by the least-squares similarity transform, per sample.

    Returns the aligned prediction (N,J,3) = s·R·pred + t, with det(R) = +1 (reflections are
    corrected as in SPIN/HMR's ``compute_similarity_transform``).
    """
    scale, r, mu_p, mu_g = similarity_transform(pred, gt)
    aligned = scale[:, None, None] * ((pred - mu_p) @ r.transpose(1, 2)) + mu_g
    return aligned


def pa_mpjpe(pred, gt):
    """Procrustes-aligned MPJPE (N,)."""
    p, was_np = _as_tensor(pred)
    g, _ = _as_tensor(gt)
    _check(p, g, "pa_mpjpe")
    aligned = similarity_procrustes(p, g)
    return _out((aligned - g).norm(dim=-1).mean(dim=-1), was_np)


def pck(pred, gt, threshold: float = 0.15):
    """Fraction (N,) of joints with error below ``threshold`` (same units as the inputs)."""
    err, was_np = _joint_errors(pred, gt, "pck")
    return _out((err < threshold).to(torch.float64).mean(dim=-1), was_np)


def auc(pred, gt, max_threshold: float = 0.15, num_thresholds: int = 31):
    """Area under the PCK curve (N,): mean PCK over ``num_thresholds`` thresholds in [0, max]."""
    err, was_np = _joint_errors(pred, gt, "auc")
    thresholds = torch.linspace(0.0, max_threshold, num_thresholds, dtype=torch.float64)
    below = (err[..., None] < thresholds).to(torch.float64)  # (N, J, T)
    return _out(below.mean(dim=1).mean(dim=-1), was_np)


def rotation_angle_deg(r_pred: torch.Tensor, r_gt: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (degrees) of ``r_pred · r_gtᵀ`` for rotation matrices (..., 3, 3) -> (...).

    ``atan2(|axis·sin|, cos)`` form: exact near 0 and π, where ``arccos`` of the trace loses
    digits (EMDB's MPJAE takes the norm of ``cv2.Rodrigues`` of the same matrix).
    """
    r = r_pred.to(torch.float64) @ r_gt.to(torch.float64).transpose(-1, -2)
    cos2 = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2] - 1.0  # 2 cos(theta)
    sin2 = torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]],
                       dim=-1).norm(dim=-1)  # 2 sin(theta)
    return torch.rad2deg(torch.atan2(sin2, cos2))


def scale_translation_align(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """pred (N,V,3) moved onto gt's mean and scaled to gt's RMS distance from that mean (per
    sample; no rotation): SSP-3D's ``scale_and_translation_transform_batch``."""
    mu_p = pred.mean(dim=1, keepdim=True)
    mu_g = gt.mean(dim=1, keepdim=True)
    rms_p = ((pred - mu_p) ** 2).sum(dim=(1, 2), keepdim=True).div(pred.shape[1]).sqrt()
    rms_g = ((gt - mu_g) ** 2).sum(dim=(1, 2), keepdim=True).div(gt.shape[1]).sqrt()
    return (pred - mu_p) / rms_p * rms_g + mu_g


def jitter(joints, fps: float = 30.0, ignored_joints=None) -> float:
    """Mean jerk norm of one sequence of joints (T, J, 3) metres -> units of 10 m/s³ (EMDB / PIP).

    Third finite difference times fps³, L2 norm per joint and frame, mean over the T − 3 frames
    and all J joints, where the joints in ``ignored_joints`` count as 0 (EMDB zeroes them: 0, 7,
    8, 10, 11, 20, 21, 22, 23), divided by 10. NaN for fewer than 4 frames.
    """
    j, _ = _as_tensor(joints) if not torch.is_tensor(joints) else (joints.detach().to(torch.float64), False)
    if j.shape[0] < 4:
        return float("nan")
    j = j.clone()
    if ignored_joints is not None:
        j[:, list(ignored_joints)] = 0.0
    jerk = (j[3:] - 3 * j[2:-1] + 3 * j[1:-2] - j[:-3]) * fps ** 3
    return float(jerk.norm(dim=-1).mean() / 10.0)


def silhouette_counts(pred, gt):
    """Pixel counts of two silhouettes (N, H, W) (nonzero = foreground): true positives, false
    positives, false negatives, each (N,) int64. IoU = TP / (TP + FP + FN)."""
    p = torch.as_tensor(pred) != 0
    g = torch.as_tensor(gt).to(p.device) != 0
    if p.shape != g.shape or p.dim() != 3:
        raise ValueError(f"silhouette_counts: expected two (N, H, W) masks, got {tuple(p.shape)} and {tuple(g.shape)}")
    tp = (p & g).sum(dim=(1, 2))
    fp = (p & ~g).sum(dim=(1, 2))
    fn = (~p & g).sum(dim=(1, 2))
    return tp, fp, fn
