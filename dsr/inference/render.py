"""Full-frame multi-person overlay with our rasterizer (no OpenGL): everybody in one z-buffer.

``render_people(image, vertices, faces, focal_length, colors=None)``: image (H, W, 3) uint8 RGB,
vertices (N, V, 3) metres in the full image's camera frame (body vertices + cam_t), faces (F, 3),
focal_length pixels (principal point at the image centre) -> (H, W, 3) uint8 RGB. The N meshes are
joined into one mesh and hard-rasterized once, so at each pixel the nearest surface of whichever
person wins (depth order, occlusions between people); each face is Lambert-shaded
(:mod:`dsr.rendering.overlay`'s lights) in its person's colour (``colors`` (N, 3) 0..255, default:
a fixed palette by index, e.g. by track id). Also returns the (H, W) person index map (-1 none).
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.rendering import rasterize
from dsr.rendering.overlay import face_normals, shade_faces

__all__ = ["render_people", "PALETTE", "person_color"]

PALETTE = np.array([(69, 117, 180), (215, 48, 39), (26, 152, 80), (253, 174, 97), (118, 42, 131),
                    (0, 170, 170), (230, 171, 2), (166, 118, 29)], np.float32)


def person_color(index: int) -> np.ndarray:
    return PALETTE[int(index) % len(PALETTE)]


@torch.no_grad()
def render_people(image: np.ndarray, vertices, faces, focal_length: float, colors=None, backend: str = "auto",
                  device="cpu"):
    """-> (overlay (H, W, 3) uint8, person index (H, W) int64, -1 where no mesh). ``device``: where
    to rasterize ('auto' backend: PyTorch3D on CUDA, the window rasterizer on the CPU)."""
    H, W = image.shape[:2]
    verts = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    n = verts.shape[0]
    if n == 0:
        return image.copy(), np.full((H, W), -1, np.int64)
    faces = torch.as_tensor(faces).long().to(verts.device)
    V, F = verts.shape[1], faces.shape[0]
    all_faces = (faces[None] + V * torch.arange(n, device=verts.device)[:, None, None]).reshape(-1, 3)
    ras = rasterize(verts.reshape(1, n * V, 3), torch.zeros(1, 3, device=verts.device), all_faces, (H, W),
                    float(focal_length), backend=backend)
    p2f = ras.pix_to_face[0]
    cols = np.stack([person_color(i) for i in range(n)]) if colors is None else np.asarray(colors, np.float32)
    normals = face_normals(verts, faces)  # (n, F, 3) camera frame
    shaded = torch.cat([shade_faces(normals[i:i + 1], cols[i])[0] for i in range(n)])  # (n F, 3)
    hit = p2f >= 0
    out = torch.from_numpy(image).to(verts.device).float() / 255.0
    out[hit] = shaded[p2f[hit]]
    who = torch.where(hit, torch.div(p2f, F, rounding_mode="floor"), torch.full_like(p2f, -1))
    return (out * 255.0).round().clamp(0, 255).byte().cpu().numpy(), who.cpu().numpy()
