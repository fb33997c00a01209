"""The DSR rendering losses, per sample (reference §3.6, §3.7).

- :func:`dsr_mc_loss` (``nIOU``): 1 - soft IoU of the rendered minimal-clothing probability P and
  the binary MC mask M. ``mode='row'`` is the original (its IoU helper reduces every dim but the
  first, so for a (H, W) image the IoU is taken per row: I_r = sum_x P M, U_r = sum_x (P + M - P M)
  + 1e-6, loss = 1 - mean_r I_r / U_r); ``mode='image'`` is the whole-image soft IoU (the fix).
- :func:`dsr_mc_dist_loss` (``DistM``): sum(P * D) / (sum P)^{3/2} with D the distance transform of
  the complement of the MC mask (pixels). The original sums over its 3 identical RGB channels,
  reproduced by ``channels=3``: 3 sum(P D) / ((3 sum P)^{3/2} + 1e-6) [the place of the 1e-6 is
  an assumption: in the denominator, where it prevents 0/0].
- :func:`dsr_c_loss`: class-weighted cross-entropy of the 8 rendered class channels used directly
  as logits (values in [0, 1]): sum_p w_{y_p} (-log softmax(z(p))_{y_p}) / sum_p w_{y_p}, i.e.
  ``nn.CrossEntropyLoss(weight=w_b)`` per sample. A sample whose weights of all present labels are
  0 gives 0/0 = NaN, as in the original (DSRLoss zeroes such samples and counts them).

All return (B,) tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(render, target, name):
    if render.shape != target.shape or render.dim() != 3:
        raise ValueError(f"{name}: render and target must both be (B, H, W); got {tuple(render.shape)} and "
                         f"{tuple(target.shape)}")


def dsr_mc_loss(render: torch.Tensor, target: torch.Tensor, mode: str = "row") -> torch.Tensor:
    """render (B, H, W) MC probability, target (B, H, W) binary MC mask -> (B,) 1 - soft IoU."""
    _check(render, target, "dsr_mc_loss")
    target = target.to(render.dtype)
    inter = render * target
    union = render + target - inter
    if mode == "row":
        iou = inter.sum(-1) / (union.sum(-1) + 1e-6)  # (B, H)
        return 1.0 - iou.mean(-1)
    if mode == "image":
        return 1.0 - inter.sum((-2, -1)) / (union.sum((-2, -1)) + 1e-6)
    raise ValueError(f"dsr_mc_loss mode (config DSR.MC_IOU_MODE) must be 'row' or 'image', got {mode!r}")


def dsr_mc_dist_loss(render: torch.Tensor, dist: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """render (B, H, W), dist (B, H, W) pixels to the nearest MC pixel -> (B,) DistM."""
    _check(render, dist, "dsr_mc_dist_loss")
    dist = dist.to(render.dtype)
    num = channels * (render * dist).sum((-2, -1))
    return num / ((channels * render.sum((-2, -1))) ** 1.5 + 1e-6)


def dsr_c_loss(render: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """render (B, K, H, W) class channels used as logits, labels (B, H, W) int in [0, K),
    class_weights (B, K) -> (B,) per-sample weighted cross-entropy (mean reduction)."""
    B, K, H, W = render.shape
    if labels.shape != (B, H, W):
        raise ValueError(f"dsr_c_loss: labels must be (B, H, W) = {(B, H, W)}, got {tuple(labels.shape)}")
    if class_weights.shape != (B, K):
        raise ValueError(f"dsr_c_loss: class_weights must be (B, K) = {(B, K)}, got {tuple(class_weights.shape)}")
    labels = labels.long()
    nll = -F.log_softmax(render, dim=1).gather(1, labels[:, None])[:, 0]  # (B, H, W)
    w = class_weights.to(render.dtype).gather(1, labels.view(B, -1)).view(B, H, W)
    return (w * nll).sum((-2, -1)) / w.sum((-2, -1))
