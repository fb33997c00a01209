"""Image grids for TensorBoard and ``*_output_images/``: [input | mesh overlay | side view] rows.

``image_grid(batch, pred, faces, cfg, max_items)`` -> (3, H_grid, W_grid) float tensor in [0, 1].
"""
from __future__ import annotations

import torch
from torchvision.utils import make_grid

from dsr import constants
from dsr.rendering.overlay import render_mesh, side_view_vertices

__all__ = ["denormalize", "image_grid"]


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) ImageNet-normalised -> (B, H, W, 3) in [0, 1]."""
    mean = torch.tensor(constants.IMG_NORM_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(constants.IMG_NORM_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1)


@torch.no_grad()
def image_grid(batch, pred, faces, cfg, max_items: int = 6):
    imgs = batch["img"][:max_items].detach().float()
    n = imgs.shape[0]
    if n == 0:
        return None
    verts = pred["smpl_vertices"][:n].detach().float()
    cam_t = pred["pred_cam_t"][:n].detach().float()
    H = imgs.shape[-1]
    color = constants.MESH_COLORS.get(cfg.DATASET.MESH_COLOR, constants.MESH_COLORS["light_pink"])
    background = denormalize(imgs)
    f = cfg.DATASET.FOCAL_LENGTH
    overlay, _ = render_mesh(verts, cam_t, faces, H, f, color=color, background=background)
    cols = [background, overlay]
    if cfg.TESTING.SIDEVIEW:
        side, _ = render_mesh(side_view_vertices(verts), cam_t, faces, H, f, color=color)
        cols.append(side)
    tiles = torch.stack(cols, dim=1).flatten(0, 1).permute(0, 3, 1, 2)  # (n*cols, 3, H, W)
    return make_grid(tiles.cpu(), nrow=len(cols), padding=2, pad_value=1.0)
