"""The ``pytorch3d`` rasterization backend (default on CUDA; reference §3.10).

One ``MeshRasterizer`` call per batch with K faces per pixel, no back-face culling, blur radius =
SoftRas's cut-off ln(1/dist_eps - 1) * sigma (PyTorch3D, like SoftRas, compares the *squared*
NDC distance with it), ``perspective_correct=False``, ``clip_barycentric_coords=True`` (without
clipping PyTorch3D drops faces whose extrapolated depth is negative: thin faces seen from
outside). PyTorch3D gives the pairs (the K nearest faces of each pixel) and their signed squared
distances (coverage); the raw screen barycentrics that SoftRas's depth needs (SoftRas clamps them
to [0, 1], PyTorch3D only at 0) are recomputed in torch from the projected vertices.

Differences from SoftRas (and the exact window backend): only the K nearest faces (by depth) of
each pixel are kept (studies/k_study.py), and PyTorch3D skips faces whose projected area is below
1e-8 NDC^2 (edge-on faces: ~10 of the body's faces in a typical view, changing ~30 pixels by up
to ~0.02).

On CPU PyTorch3D has only its naive kernel (every face against every pixel); ``bin_size`` is set
to 0 there (any positive bin size raises on CPU). On CUDA K is at most 150 (PyTorch3D's kernels).
"""
from __future__ import annotations

import torch

from . import window
from .camera import default_camera_center, opencv_to_pytorch3d_cameras, project_to_pixels
from .pairs import Pairs, softras_depth

# PyTorch3D's CUDA rasterization kernels keep at most this many faces per pixel ("Must have
# num_closest <= 150"); its CPU kernel has no limit.
CUDA_MAX_FACES_PER_PIXEL = 150


def _rasterize(vertices, cam_t, faces, H, W, focal_length, camera_center, blur_radius, K, perspective_correct,
               clip_barycentric_coords, max_faces_per_bin=None):
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes

    B = vertices.shape[0]
    if vertices.device.type == "cuda" and K > CUDA_MAX_FACES_PER_PIXEL:
        raise ValueError(f"faces_per_pixel (config DSR.FACES_PER_PIXEL) is {K}: PyTorch3D's CUDA rasterizer "
                         f"keeps at most {CUDA_MAX_FACES_PER_PIXEL} faces per pixel (or use DSR.RENDER_BACKEND window, "
                         "which has no K)")
    if max_faces_per_bin is None and vertices.device.type != "cpu":
        # PyTorch3D's coarse pass silently drops faces when a bin overflows: allow every face
        max_faces_per_bin = int(faces.shape[0])
    cameras = opencv_to_pytorch3d_cameras(cam_t, focal_length, (H, W), camera_center)
    settings = RasterizationSettings(
        image_size=(H, W),
        blur_radius=float(blur_radius),
        faces_per_pixel=int(K),
        bin_size=0 if vertices.device.type == "cpu" else None,
        max_faces_per_bin=max_faces_per_bin,
        perspective_correct=perspective_correct,
        clip_barycentric_coords=clip_barycentric_coords,
        cull_backfaces=False,
        cull_to_frustum=False,
    )
    meshes = Meshes(verts=vertices, faces=faces[None].expand(B, -1, -1))
    return MeshRasterizer(cameras=cameras, raster_settings=settings)(meshes)


def soft_pairs(vertices, cam_t, faces, H, W, focal_length, camera_center, threshold_ndc2, K,
               max_faces_per_bin=None, fragments=None, layers=None) -> Pairs:
    """Pairs from one K-layer PyTorch3D rasterization of the batch (see pairs.py).

    ``fragments`` (a previous rasterization with K layers) and ``layers`` (keep only the first
    ``layers`` <= K nearest faces) let the K study emulate every smaller K from one run."""
    frag = fragments if fragments is not None else _rasterize(
        vertices, cam_t, faces, H, W, focal_length, camera_center, threshold_ndc2, K, False, True, max_faces_per_bin)
    K = frag.pix_to_face.shape[-1]
    p2f = frag.pix_to_face
    if layers is not None:
        p2f = p2f[..., :layers]
        K = p2f.shape[-1]
    dists = frag.dists[..., :K]
    p2f = p2f.reshape(-1)
    sel = (p2f >= 0).nonzero().squeeze(1)
    fid = p2f[sel]
    pix = torch.div(sel, K, rounding_mode="floor")
    sd2 = -dists.reshape(-1)[sel]  # PyTorch3D: negative inside; SoftRas: positive inside
    # SoftRas's depth needs the raw screen barycentrics (PyTorch3D's clipping differs, and without
    # clipping it drops faces whose extrapolated depth is negative): recompute them in torch.
    B = vertices.shape[0]
    if camera_center is None:
        camera_center = default_camera_center((H, W), B, vertices.dtype, vertices.device)
    u, v, z = project_to_pixels(vertices, cam_t, focal_length, camera_center)
    t = window.face_table(u, v, z, faces).index_select(0, fid)
    rc = pix % (H * W)
    row = torch.div(rc, W, rounding_mode="floor")
    col = rc - row * W
    w0, w1, w2 = window.barycentrics(col.to(t.dtype) + 0.5, row.to(t.dtype) + 0.5, t)
    return Pairs(pix=pix, fid=fid, sd2=sd2, zp=softras_depth(torch.stack((w0, w1, w2), 1), t[:, 6:9]))


@torch.no_grad()
def hard_rasterize(vertices, cam_t, faces, H, W, focal_length, camera_center):
    """K = 1, no blur, perspective-correct barycentrics; same outputs as window.hard_rasterize."""
    frag = _rasterize(vertices, cam_t, faces, H, W, focal_length, camera_center, 0.0, 1, True, False)
    F = faces.shape[0]
    p2f = frag.pix_to_face[..., 0]
    face = torch.where(p2f >= 0, p2f % F, p2f)
    return face, frag.zbuf[..., 0], frag.bary_coords[..., 0, :]
