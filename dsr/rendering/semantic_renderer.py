"""Differentiable semantic rendering with SoftRas semantics (reference §3.4, §3.5).

``SemanticRenderer`` renders C per-face feature channels of a batch of meshes in ONE
rasterization: the result equals C separate SoftRas renders (DSR renders 9 images per sample:
MC + 8 classes). For pixel p and every face j whose coverage passes SoftRas's cut-off:

    s_j   = delta_j * d_j^2 / sigma          (d_j: NDC distance of p to the projected face,
                                             delta = +1 inside, -1 outside; 1 px = 2/min(H, W))
    D_j   = sigmoid(s_j),  pairs with delta = -1 and d^2 >= ln(1/dist_eps - 1) * sigma dropped
    z_j   = 1 / sum_i(wc_i / z_i)            (wc: barycentrics clipped to [0, 1], renormalised)
    zh_j  = (zfar - z_j) / (zfar - znear),   faces with z_j outside [znear, zfar] get no colour
    feat  = [sum_j D_j e^{(zh_j - zh_max)/gamma} c_j + e^{(eps - zh_max)/gamma} c_bg]
            / [sum_j D_j e^{(zh_j - zh_max)/gamma} + e^{(eps - zh_max)/gamma}],  c_bg = 0
    alpha = 1 - prod_j (1 - D_j)             (over every pair, as SoftRas: before the z test)

Double-sided (SoftRas ``fill_back=True``): every face counts once, whatever its orientation.
zh_max = max(eps, max_j zh_j) is a detached shift (the formula does not depend on it).

Backends (``backend=``): 'window' (plain torch local-window rasterizer, exact, default on CPU),
'pytorch3d' (MeshRasterizer, K faces per pixel, default on CUDA), 'auto' (by device). Both give
the same :class:`~dsr.rendering.pairs.Pairs`; :func:`softras_blend` is the one blend.

Shapes: vertices (B, V, 3) metres (body frame), cam_t (B, 3) metres, face_features (B|1, F, C)
-> features (B, C, H, W), alpha (B, H, W).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as Fn
from torch import nn

from . import pytorch3d_backend, window
from .camera import default_camera_center, image_hw, ndc_per_pixel, project_to_pixels
from .pairs import Pairs

BACKENDS = ("auto", "window", "pytorch3d")
SOFTRAS_DIST_EPS = 1e-4  # SoftRas dist_eps: the coverage cut-off probability
SOFTRAS_BG_EPS = 1e-3  # SoftRas eps: the background's normalised inverse depth


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' -> 'pytorch3d' on CUDA, 'window' elsewhere; validates the name."""
    if backend not in BACKENDS:
        raise ValueError(f"render backend must be one of {BACKENDS} (config DSR.RENDER_BACKEND), got {backend!r}")
    if backend == "auto":
        return "pytorch3d" if torch.device(device).type == "cuda" else "window"
    return backend


def softras_cutoff(sigma: float, dist_eps: float = SOFTRAS_DIST_EPS) -> float:
    """SoftRas's squared-NDC-distance cut-off ln(1/dist_eps - 1) * sigma (~9.21 sigma)."""
    return math.log(1.0 / dist_eps - 1.0) * sigma


def soft_pairs(vertices, cam_t, faces, image_size, focal_length=5000.0, sigma=1e-5, faces_per_pixel=64,
               backend="auto", camera_center=None, max_faces_per_bin=None) -> Pairs:
    """Rasterize a batch into SoftRas (face, pixel) pairs on the chosen backend."""
    H, W = image_hw(image_size)
    B = vertices.shape[0]
    if camera_center is None:
        camera_center = default_camera_center((H, W), B, vertices.dtype, vertices.device)
    thr = softras_cutoff(sigma)
    k = ndc_per_pixel((H, W))
    backend = resolve_backend(backend, vertices.device)
    if backend == "window":
        u, v, z = project_to_pixels(vertices, cam_t, focal_length, camera_center)
        tab = window.face_table(u, v, z, faces)
        return window.soft_pairs(tab, B, H, W, thr / (k * k), k)
    return pytorch3d_backend.soft_pairs(vertices, cam_t, faces, H, W, focal_length, camera_center, thr,
                                        faces_per_pixel, max_faces_per_bin)


class _BlendFn(torch.autograd.Function):
    """The blend as one autograd node: its backward needs per pair only D, the weight and two
    (N, C) gathers, instead of autograd's chain of (N, C) intermediates."""

    @staticmethod
    def forward(ctx, sd2, zp, table, pix, fidx, P, sigma, gamma, znear, zfar, eps):
        s = sd2 / sigma
        D = torch.sigmoid(s)
        log_bg = torch.zeros(P, dtype=s.dtype, device=s.device).index_add_(0, pix, Fn.logsigmoid(-s))
        alpha = 1.0 - torch.exp(log_bg)
        zn = (zfar - zp) / (zfar - znear)
        in_range = (zp >= znear) & (zp <= zfar)
        zn = torch.where(in_range, zn, torch.full_like(zn, -1.0))
        zmax = torch.full((P,), eps, dtype=s.dtype, device=s.device).scatter_reduce_(0, pix, zn, "amax")
        zm = zmax[pix]
        wgt = torch.where(in_range, D * torch.exp((zn - zm) / gamma), torch.zeros_like(D))
        den = torch.exp((eps - zmax) / gamma).index_add_(0, pix, wgt)
        f = table[fidx]
        num = torch.zeros(P, table.shape[1], dtype=s.dtype, device=s.device).index_add_(0, pix, wgt[:, None] * f)
        out = num / den[:, None]
        ctx.save_for_backward(pix, fidx, D, wgt, in_range, den, out, alpha, table)
        ctx.consts = (sigma, gamma, znear, zfar)
        return out, alpha

    @staticmethod
    def backward(ctx, g_out, g_alpha):
        pix, fidx, D, wgt, in_range, den, out, alpha, table = ctx.saved_tensors
        sigma, gamma, znear, zfar = ctx.consts
        g_s = torch.zeros_like(D)
        g_zp = torch.zeros_like(D)
        g_table = None
        if g_out is not None:
            Gp = g_out / den[:, None]  # d out_c / d num_c
            Ap = (Gp * out).sum(1)  # -d out / d den, contracted
            Gi = Gp[pix]
            gw = (Gi * table[fidx]).sum(1) - Ap[pix]  # d loss / d weight of each pair
            # weight = D * exp((zn - zmax) / gamma): d/dD = weight / D, d/dzn = weight / gamma
            g_s = gw * torch.where(in_range, wgt * (1.0 - D), torch.zeros_like(D))
            g_zp = torch.where(in_range, -gw * wgt / (gamma * (zfar - znear)), torch.zeros_like(D))
            if ctx.needs_input_grad[2]:
                g_table = torch.zeros_like(table).index_add_(0, fidx, wgt[:, None] * Gi)
        if g_alpha is not None:
            g_s = g_s + (g_alpha * (1.0 - alpha))[pix] * D  # d alpha / d s_i = (1 - alpha) D_i
        return g_s / sigma, g_zp, g_table, None, None, None, None, None, None, None, None


def softras_blend(pairs: Pairs, face_features: torch.Tensor, B: int, H: int, W: int, sigma=1e-5, gamma=0.1,
                  znear=1.0, zfar=100.0, eps=SOFTRAS_BG_EPS):
    """The SoftRas C-channel softmax blend + product alpha over a pair list (module docstring).

    Args:
        pairs: from any backend; face_features: (B|1, F, C).
    Returns:
        features (B, C, H, W), alpha (B, H, W).
    """
    Bf, F, C = face_features.shape
    if Bf not in (1, B):
        raise ValueError(f"face_features must have batch 1 or {B}, got {tuple(face_features.shape)}")
    table = face_features.reshape(Bf * F, C).to(pairs.sd2.dtype)
    fidx = pairs.fid if Bf == B else pairs.fid % F
    out, alpha = _BlendFn.apply(pairs.sd2, pairs.zp, table, pairs.pix, fidx, B * H * W, float(sigma), float(gamma),
                                float(znear), float(zfar), float(eps))
    return out.view(B, H, W, C).permute(0, 3, 1, 2), alpha.view(B, H, W)


class SemanticRenderer(nn.Module):
    """SoftRas-style renderer of per-face feature channels (module docstring).

    Args:
        faces: (F, 3) long vertex indices.
        image_size: int or (H, W); focal_length: pixels; principal point = image centre.
        sigma, gamma, znear, zfar: SoftRas sigma_val, gamma_val, near, far (DSR: 1e-5, 0.1, 1, 100).
        faces_per_pixel: K of the pytorch3d backend (the window backend has no K); 64 from the K
            study (studies/k_study.py): mean |feature error| <= 4e-4 and DSR loss relative error
            <= 2.5e-3 on the body at s = 0.7..1.1.
        backend: 'auto' | 'window' | 'pytorch3d' (config DSR.RENDER_BACKEND).
        compile_kernels: run the window backend's two elementwise kernels through torch.compile
            (optional speed-up, ~7x on those kernels on CPU; first call compiles for ~30 s;
            falls back to eager when compilation is unavailable).
    """

    def __init__(self, faces, image_size=224, focal_length=5000.0, sigma=1e-5, gamma=0.1, znear=1.0, zfar=100.0,
                 faces_per_pixel=64, backend="auto", max_faces_per_bin=None, compile_kernels=False):
        super().__init__()
        faces = torch.as_tensor(faces)
        if faces.dim() != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
        resolve_backend(backend, "cpu")
        if faces_per_pixel < 1:
            raise ValueError(f"faces_per_pixel (config DSR.FACES_PER_PIXEL) must be >= 1, got {faces_per_pixel}")
        self.register_buffer("faces", faces.long(), persistent=False)
        self.image_size = image_hw(image_size)
        self.focal_length = float(focal_length)
        self.sigma, self.gamma, self.znear, self.zfar = float(sigma), float(gamma), float(znear), float(zfar)
        self.faces_per_pixel = int(faces_per_pixel)
        self.backend = backend
        self.max_faces_per_bin = max_faces_per_bin
        self.compile_kernels = bool(compile_kernels)
        self._compiled = False

    def forward(self, vertices: torch.Tensor, cam_t: torch.Tensor, face_features: torch.Tensor,
                camera_center: torch.Tensor | None = None):
        """vertices (B, V, 3), cam_t (B, 3), face_features (B|1, F, C) -> (B, C, H, W), (B, H, W)."""
        if vertices.dim() != 3 or vertices.shape[-1] != 3:
            raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
        if cam_t.shape != (vertices.shape[0], 3):
            raise ValueError(f"cam_t must be (B, 3) = {(vertices.shape[0], 3)}, got {tuple(cam_t.shape)}")
        if face_features.dim() != 3 or face_features.shape[1] != self.faces.shape[0]:
            raise ValueError(f"face_features must be (B|1, F={self.faces.shape[0]}, C), "
                             f"got {tuple(face_features.shape)}")
        H, W = self.image_size
        if self.compile_kernels and not self._compiled:
            self._compiled = True
            window.use_compiled_kernels(True)
        pairs = soft_pairs(vertices, cam_t, self.faces, (H, W), self.focal_length, self.sigma, self.faces_per_pixel,
                           self.backend, camera_center, self.max_faces_per_bin)
        return softras_blend(pairs, face_features, vertices.shape[0], H, W, self.sigma, self.gamma, self.znear,
                             self.zfar)


class Raster(dict):
    """Hard rasterization result; keys (and attributes) pix_to_face (B, H, W) long face index in
    [0, F) or -1, depth (B, H, W) camera depth (-1 background), bary (B, H, W, 3)
    perspective-correct barycentrics (-1 background)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def rasterize(vertices, cam_t, faces, image_size, focal_length=5000.0, backend="auto", camera_center=None) -> Raster:
    """Hard (non-differentiable) rasterization: the front face of each pixel centre.

    Args:
        vertices (B, V, 3), cam_t (B, 3), faces (F, 3), image_size int or (H, W), focal_length px,
        backend 'auto'|'window'|'pytorch3d', camera_center (B, 2) px or None (image centre).
    A pixel is covered when its centre is inside the projected triangle (edges included);
    the nearest perspective-interpolated depth wins (window ties: lower face index).
    """
    H, W = image_hw(image_size)
    B = vertices.shape[0]
    faces = torch.as_tensor(faces, device=vertices.device).long()
    if camera_center is None:
        camera_center = default_camera_center((H, W), B, vertices.dtype, vertices.device)
    backend = resolve_backend(backend, vertices.device)
    with torch.no_grad():
        if backend == "window":
            u, v, z = project_to_pixels(vertices, cam_t, focal_length, camera_center)
            p2f, depth, bary = window.hard_rasterize(window.face_table(u, v, z, faces), B, H, W)
        else:
            p2f, depth, bary = pytorch3d_backend.hard_rasterize(vertices, cam_t, faces, H, W, focal_length,
                                                                camera_center)
    return Raster(pix_to_face=p2f, depth=depth, bary=bary)
