"""Shaded mesh rendering for visualisation (TensorBoard grids, demo), CPU or GPU, no OpenGL.

Hard rasterization (:func:`dsr.rendering.rasterize`, either backend) gives the front face of
every pixel; each face is shaded with a Lambertian model from its camera-frame normal
(ambient light plus a head-on key light and an upper-left fill light; the original used
pyrender with three directional lights, reference §10 — the look, not the pixels, is kept),
double-sided, in the mesh colour; mesh pixels replace the image, the rest shows the image
(overlay) or white (side view).

Shapes: vertices (B, V, 3) metres in the body frame, cam_t (B, 3), faces (F, 3); images
(B, H, W, 3) float in [0, 1]. Returns (B, H, W, 3) float in [0, 1] and the mesh mask (B, H, W).
"""
from __future__ import annotations

import math

import torch

from dsr.rendering.semantic_renderer import rasterize

__all__ = ["face_normals", "shade_faces", "render_mesh", "side_view_vertices", "LIGHT_DIRECTIONS"]

# Directions *towards* the lights in the OpenCV camera frame (x right, y down, z forward) and
# their intensities: a key light from the camera, a fill light from the upper left.
LIGHT_DIRECTIONS = torch.tensor([[0.0, 0.0, -1.0], [-1.0, -1.0, -1.0]])
LIGHT_INTENSITIES = (0.6, 0.3)
AMBIENT = 0.25


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V, 3), (F, 3) -> unit face normals (B, F, 3)."""
    tri = vertices[:, faces]  # (B, F, 3, 3)
    n = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def shade_faces(normals: torch.Tensor, color) -> torch.Tensor:
    """Lambertian, double-sided: (B, F, 3) normals -> (B, F, 3) RGB in [0, 1]."""
    lights = LIGHT_DIRECTIONS.to(normals)
    lights = lights / lights.norm(dim=-1, keepdim=True)
    weights = torch.tensor(LIGHT_INTENSITIES, dtype=normals.dtype, device=normals.device)
    intensity = AMBIENT + ((normals @ lights.T).abs() * weights).sum(dim=-1, keepdim=True)
    base = torch.as_tensor(color, dtype=normals.dtype, device=normals.device)
    if base.max() > 1.0:
        base = base / 255.0
    return (intensity * base).clamp(0.0, 1.0)


@torch.no_grad()
def render_mesh(vertices, cam_t, faces, image_size, focal_length=5000.0, color=(69, 117, 180),
                background=None, backend="auto", camera_center=None):
    """Render shaded meshes over ``background`` (B, H, W, 3) (white when None).

    Returns (images (B, H, W, 3), mask (B, H, W) bool).
    """
    faces = torch.as_tensor(faces, device=vertices.device).long()
    raster = rasterize(vertices, cam_t, faces, image_size, focal_length, backend=backend,
                       camera_center=camera_center)
    p2f = raster.pix_to_face  # (B, H, W)
    B, H, W = p2f.shape
    colours = shade_faces(face_normals(vertices + cam_t[:, None], faces), color)  # (B, F, 3)
    mask = p2f >= 0
    idx = p2f.clamp_min(0).reshape(B, -1, 1).expand(-1, -1, 3)
    mesh_rgb = torch.gather(colours, 1, idx).reshape(B, H, W, 3)
    if background is None:
        background = torch.ones(B, H, W, 3, dtype=vertices.dtype, device=vertices.device)
    out = torch.where(mask[..., None], mesh_rgb, background.to(mesh_rgb))
    return out, mask


def side_view_vertices(vertices: torch.Tensor, angle_deg: float = 270.0) -> torch.Tensor:
    """Rotate (B, V, 3) vertices by ``angle_deg`` about the y axis through their centroid."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    rot = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=vertices.dtype, device=vertices.device)
    centre = vertices.mean(dim=1, keepdim=True)
    return (vertices - centre) @ rot.T + centre
