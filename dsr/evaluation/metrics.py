"""Pose and shape metrics (reference §6), per sample; inputs and outputs in the same units.

All functions accept numpy arrays or torch tensors, compute in float64 and return the same kind
(numpy in → numpy out). Shapes: joints (N, J, 3), vertices (N, V, 3); outputs (N,).

- ``mpjpe``: mean joint L2 distance, no alignment (callers centre on the pelvis first).
- ``pa_mpjpe``: per-sample similarity Procrustes of pred onto gt (rotation with reflection
  correction, isotropic scale, translation; SPIN/HMR), then mean joint L2 distance.
- ``pve``: mean vertex L2 distance, no alignment.
- ``pck``: fraction of joints whose error is below ``threshold``.
- ``auc``: mean of PCK over 31 evenly spaced thresholds in [0, max_threshold] (MPI-INF-3DHP).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["mpjpe", "pa_mpjpe", "pve", "pck", "auc", "similarity_procrustes"]


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


def similarity_procrustes(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Align pred (N,J,3) onto gt (N,J,3) by the least-squares similarity transform, per sample.

    Returns the aligned prediction (N,J,3) = s·R·pred + t, with det(R) = +1 (reflections are
    corrected as in SPIN/HMR's ``compute_similarity_transform``).
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
    aligned = scale[:, None, None] * (x @ r.transpose(1, 2)) + mu_g
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
