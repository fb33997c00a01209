"""The SPIN / HMR loss terms (reference §4). Each returns a scalar tensor.

- :func:`keypoint_loss`: 2D, confidence-weighted MSE over B x 49 x 2 (crop coords in [-1, 1]);
  confidences of the first ``num_openpose`` (25) joints x openpose_weight, the rest x gt_weight.
- :func:`keypoint_3d_loss`: samples with has_pose_3d; pred joints [25:] vs GT (24, 4) (xyz +
  conf), both centred at the mid-point of joints 2 and 3 (hips); conf-weighted MSE over N x 24 x 3.
- :func:`smpl_losses`: samples with has_smpl; MSE of rotation matrices (N x 24 x 3 x 3) and betas.
- :func:`shape_loss`: L1 of vertices for has_smpl samples.
- :func:`camera_loss`: mean (exp(-10 s))^2 of the weak-perspective scale s.
Terms without any valid sample are 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def keypoint_loss(pred_2d, gt_2d, openpose_weight: float, gt_weight: float, num_openpose: int = 25):
    """pred_2d (B, J, 2), gt_2d (B, J, 3)."""
    conf = gt_2d[..., -1:].clone()
    conf[:, :num_openpose] *= openpose_weight
    conf[:, num_openpose:] *= gt_weight
    return (conf * F.mse_loss(pred_2d, gt_2d[..., :-1], reduction="none")).mean()


def keypoint_3d_loss(pred_3d, gt_3d, has_pose_3d, num_openpose: int = 25):
    """pred_3d (B, 49, 3), gt_3d (B, 24, 4), has_pose_3d (B,)."""
    sel = has_pose_3d.bool()
    if not bool(sel.any()):
        return pred_3d.sum() * 0.0
    pred = pred_3d[sel][:, num_openpose:]
    gt = gt_3d[sel].to(pred.dtype)
    conf, gt = gt[..., -1:], gt[..., :-1]
    gt = gt - 0.5 * (gt[:, 2:3] + gt[:, 3:4])
    pred = pred - 0.5 * (pred[:, 2:3] + pred[:, 3:4])
    return (conf * F.mse_loss(pred, gt, reduction="none")).mean()


def smpl_losses(pred_rotmat, pred_betas, gt_rotmat, gt_betas, has_smpl):
    """pred_rotmat (B, J, 3, 3), pred_betas (B, 10), gt_rotmat (B, J, 3, 3), gt_betas (B, 10)."""
    sel = has_smpl.bool()
    if not bool(sel.any()):
        z = pred_rotmat.sum() * 0.0 + pred_betas.sum() * 0.0
        return z, z
    return (F.mse_loss(pred_rotmat[sel], gt_rotmat[sel].to(pred_rotmat.dtype)),
            F.mse_loss(pred_betas[sel], gt_betas[sel].to(pred_betas.dtype)))


def shape_loss(pred_vertices, gt_vertices, has_smpl):
    """(B, V, 3) each -> L1 over the has_smpl samples."""
    sel = has_smpl.bool()
    if not bool(sel.any()):
        return pred_vertices.sum() * 0.0
    return F.l1_loss(pred_vertices[sel], gt_vertices[sel].to(pred_vertices.dtype))


def camera_loss(pred_cam):
    """pred_cam (B, 3) weak perspective [s, tx, ty]."""
    return (torch.exp(-10.0 * pred_cam[:, 0]) ** 2).mean()
