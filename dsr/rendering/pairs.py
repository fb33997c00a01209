"""The (face, pixel) pair list that every rasterization backend hands to the one SoftRas blend.

Fields (N surviving pairs; batch b, row r, column c of a (B, H, W) raster):
    pix:  (N,) long   flat pixel index (b * H + r) * W + c
    fid:  (N,) long   face index into the batch-stacked faces, b * F + f
    sd2:  (N,) float  SoftRas's signed squared distance delta * d^2 in NDC units
                      (delta = +1 when the pixel centre is inside the face, -1 outside)
    zp:   (N,)  float  SoftRas's depth of the face at the pixel: the screen barycentrics clipped to
                      [0, 1] and renormalised (sum clamped at 1e-5), z = 1 / sum_i(wc_i / z_i)
sd2 and zp carry gradients to the vertices and the camera translation.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


def softras_depth(bary: torch.Tensor, vz: torch.Tensor) -> torch.Tensor:
    """bary (N, 3) raw screen barycentrics, vz (N, 3) vertex depths -> SoftRas depth (N,)."""
    c = bary.clamp(0.0, 1.0)
    wc = c / c.sum(1, keepdim=True).clamp(min=1e-5)
    return 1.0 / (wc / vz).sum(1)


class Pairs(NamedTuple):
    pix: torch.Tensor
    fid: torch.Tensor
    sd2: torch.Tensor
    zp: torch.Tensor
