"""Crop camera -> one perspective camera of the full image (the CLIFF / 4D-Humans conversion).

The regressor predicts a weak-perspective camera ``[s, tx, ty]`` of its square crop: a point X of
the body (metres, model frame) lands at crop coordinates s (X + t) in [-1, 1]. The crop is the
square box of side ``b`` pixels centred at ``(cx, cy)`` of a W x H image. The full image gets
one pinhole camera for everybody, principal point at the image centre and focal length

    f = sqrt(W^2 + H^2)       (the image diagonal: a ~53 degree diagonal field of view,
                               CLIFF's and 4D-Humans' choice when the true focal is unknown)

and each person the translation that projects its body origin where the crop camera put it
and with the same scale (pixels per metre at the body's depth, f / tz = b s / 2):

    tz = 2 f / (b s),   tx' = tx + 2 (cx - W/2) / (b s),   ty' = ty + 2 (cy - H/2) / (b s).

Shapes: pred_cam (B, 3), center (B, 2) pixels, box_size (B,) pixels -> cam_t (B, 3) metres.
"""
from __future__ import annotations

import math

import torch

__all__ = ["full_image_focal", "crop_to_full_camera"]


def full_image_focal(width: int, height: int) -> float:
    """The focal length (pixels) of the full-image camera: the image diagonal."""
    return math.sqrt(float(width) ** 2 + float(height) ** 2)


def crop_to_full_camera(pred_cam: torch.Tensor, center: torch.Tensor, box_size: torch.Tensor, width: int,
                        height: int, focal_length: float | None = None) -> torch.Tensor:
    """Weak-perspective crop cameras -> translations in the full image's camera (module docstring)."""
    f = full_image_focal(width, height) if focal_length is None else float(focal_length)
    s, tx, ty = pred_cam[:, 0], pred_cam[:, 1], pred_cam[:, 2]
    bs = box_size.to(pred_cam) * s + 1e-9
    cx, cy = center[:, 0].to(pred_cam), center[:, 1].to(pred_cam)
    return torch.stack((tx + 2.0 * (cx - width / 2.0) / bs, ty + 2.0 * (cy - height / 2.0) / bs, 2.0 * f / bs), -1)
