"""The ``window`` rasterization backend: a local-window rasterizer in plain torch.

Every face is tested only against the pixels whose centres lie in its screen-space bounding box
grown by a margin (SoftRas's cut-off distance for soft rendering, 0 for hard rendering), instead
of against all H*W pixels. Candidate (face, pixel) pairs are enumerated exactly (no padding):
face j owns ``nx_j * ny_j`` candidates, laid out by ``repeat_interleave``. Work therefore grows
with the covered area, not with H*W*F, and nothing is truncated (every overlapping face counts,
exactly as SoftRas).

Pixel (row r, column c) is sampled at (u, v) = (c + 0.5, r + 0.5) (see camera.py). Coordinates
here are pixels; distances are converted to NDC (SoftRas units) by the caller's factor.

Outputs:
- :func:`soft_pairs`: the surviving pairs as a :class:`~dsr.rendering.pairs.Pairs` (pixel index,
  face index, signed squared NDC distance, SoftRas depth). One custom autograd function computes
  all pair geometry in one elementwise pass and has an analytic backward (it saves 8 numbers per
  pair instead of autograd's dozens of intermediates); the two elementwise kernels can optionally
  be compiled (:func:`use_compiled_kernels`).
- :func:`hard_rasterize`: the front face per pixel by a z-buffer computed with one
  ``scatter_reduce('amin')`` over int64 keys (depth bits << 32 | face): exact, deterministic, ties
  go to the lower face index.
"""
from __future__ import annotations

import torch

from .pairs import Pairs, softras_depth

# Smallest |2 * signed area| (px^2) of a projected face; SoftRas clamps its determinant to 1e-10
# in NDC units (~1e-6 px^2 at 224); we use the same order of magnitude in pixels.
_MIN_AREA_PX2 = 1e-9


def face_table(u: torch.Tensor, v: torch.Tensor, z: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V) u, v, z and faces (F, 3) -> (B*F, 9) rows [x0, y0, x1, y1, x2, y2, z0, z1, z2]."""
    B = u.shape[0]
    fu, fv, fz = u[:, faces], v[:, faces], z[:, faces]  # (B, F, 3)
    tab = torch.stack((fu[..., 0], fv[..., 0], fu[..., 1], fv[..., 1], fu[..., 2], fv[..., 2]), dim=-1)
    return torch.cat((tab, fz), dim=-1).reshape(B * faces.shape[0], 9)


def candidates(tab: torch.Tensor, H: int, W: int, margin: float):
    """Enumerate (face, pixel) candidates of each face's grown bounding box.

    Args:
        tab: (B*F, 9) face table (pixels / metres); only read, no gradient.
        margin: bounding-box growth in pixels.
    Returns:
        fid (M,) long row of ``tab``; col (M,), row (M,) long pixel coordinates.
    """
    t = tab.detach()
    xs, ys, zs = t[:, 0:6:2], t[:, 1:6:2], t[:, 6:9]
    cmin = torch.ceil(xs.amin(1) - margin - 0.5).clamp_(0, W)
    cmax = torch.floor(xs.amax(1) + margin - 0.5).clamp_(-1, W - 1)
    rmin = torch.ceil(ys.amin(1) - margin - 0.5).clamp_(0, H)
    rmax = torch.floor(ys.amax(1) + margin - 0.5).clamp_(-1, H - 1)
    nx = (cmax - cmin + 1).clamp_(min=0)
    ny = (rmax - rmin + 1).clamp_(min=0)
    ok = (zs.amin(1) > 0) & torch.isfinite(xs).all(1) & torch.isfinite(ys).all(1)
    n = torch.where(ok, nx * ny, torch.zeros_like(nx)).long()
    keep = n.nonzero().squeeze(1)
    n = n[keep]
    total = int(n.sum())
    fid = torch.repeat_interleave(keep, n, output_size=total)
    start = torch.cumsum(n, 0) - n
    local = torch.arange(total, device=tab.device) - torch.repeat_interleave(start, n, output_size=total)
    nxk = nx[keep].long()
    nx_p = torch.repeat_interleave(nxk, n, output_size=total)
    col = cmin[fid].long() + local % nx_p
    row = rmin[fid].long() + torch.div(local, nx_p, rounding_mode="floor")
    return fid, col, row


def _face_aux(tab: torch.Tensor) -> torch.Tensor:
    """(B*F, 9) face table -> (B*F, 13): the table + [1/A, 1/|e01|^2, 1/|e12|^2, 1/|e20|^2]
    (A = twice the signed screen area, clamped away from 0)."""
    x0, y0, x1, y1, x2, y2 = tab[:, :6].unbind(1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    area = torch.where(area >= 0, area.clamp(min=_MIN_AREA_PX2), area.clamp(max=-_MIN_AREA_PX2))
    il = [1.0 / ((bx - ax) ** 2 + (by - ay) ** 2).clamp(min=1e-20)
          for ax, ay, bx, by in ((x0, y0, x1, y1), (x1, y1, x2, y2), (x2, y2, x0, y0))]
    return torch.cat((tab, torch.stack([1.0 / area] + il, 1)), 1)


def _geometry_kernel(r: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
    """Per (face, pixel) pair, elementwise: barycentrics, exact squared distance to the triangle
    and the nearest edge's projection (t, residual r, edge index) for the analytic backward.

    r: (M, 13) rows of :func:`_face_aux`; px, py: (M,) pixel centres.
    Returns w0, w1, w2, d2, t, rx, ry (M,) each, edge (M,) long, inside (M,) bool.
    """
    x0, y0, x1, y1, x2, y2, _, _, _, inv_a, il0, il1, il2 = r.unbind(1)
    qx = (px - x0, px - x1, px - x2)
    qy = (py - y0, py - y1, py - y2)
    w0 = (qx[1] * qy[2] - qx[2] * qy[1]) * inv_a
    w1 = (qx[2] * qy[0] - qx[0] * qy[2]) * inv_a
    w2 = 1.0 - w0 - w1
    best = None
    for k, il in enumerate((il0, il1, il2)):
        j = (k + 1) % 3
        ex, ey = qx[k] - qx[j], qy[k] - qy[j]  # v_j - v_k
        t = ((qx[k] * ex + qy[k] * ey) * il).clamp_(0.0, 1.0)
        rx, ry = qx[k] - t * ex, qy[k] - t * ey  # p - (v_k + t e)
        d2 = rx * rx + ry * ry
        if best is None:
            best = [d2, t, rx, ry, torch.zeros_like(d2, dtype=torch.long)]
        else:
            better = d2 < best[0]
            best = [torch.where(better, d2, best[0]), torch.where(better, t, best[1]),
                    torch.where(better, rx, best[2]), torch.where(better, ry, best[3]),
                    best[4].masked_fill(better, k)]
    inside = (w0 > 0) & (w1 > 0) & (w2 > 0) & (w0 < 1) & (w1 < 1) & (w2 < 1)
    return w0, w1, w2, best[0], best[1], best[2], best[3], best[4], inside


def _pairs_backward_kernel(r, w0, w1, w2, t, rx, ry, zp, sign, edge, g_sd2, g_zp, k2: float):
    """Analytic gradients of (sd2, zp) w.r.t. the 9 face-table columns of each pair: 9 x (N,).

    d^2 = |p - a - t (b - a)|^2 at the optimal (clamped) t: dd2/da = -2 r (1 - t), dd2/db = -2 r t.
    zp = 1 / sum_i wc_i / z_i; barycentrics move with the vertices as dw_i/dv_j = -w_j grad_p(w_i).
    """
    x0, y0, x1, y1, x2, y2, z0, z1, z2, inv_a = r[:, :10].unbind(1)
    g1 = g_sd2 * sign * (-2.0 * k2)
    ca, cb = g1 * (1.0 - t), g1 * t
    # v_j is the start (a) of edge j and the end (b) of edge j - 1
    ea = [edge == j for j in range(3)]
    cj = [torch.where(ea[j], ca, 0.0) + torch.where(ea[(j + 2) % 3], cb, 0.0) for j in range(3)]
    c = [w0.clamp(0.0, 1.0), w1.clamp(0.0, 1.0), w2.clamp(0.0, 1.0)]
    csum = c[0] + c[1] + c[2]
    inv_c = 1.0 / csum.clamp(min=1e-5)
    wc = [ci * inv_c for ci in c]
    zz = (z0, z1, z2)
    zp2 = g_zp * zp * zp
    gz = [zp2 * wc[i] / (zz[i] * zz[i]) for i in range(3)]
    gwc = [-zp2 / zz[i] for i in range(3)]
    dot = gwc[0] * wc[0] + gwc[1] * wc[1] + gwc[2] * wc[2]
    wl = (w0, w1, w2)
    gw = [torch.where((wl[i] >= 0) & (wl[i] <= 1), (gwc[i] - dot) * inv_c, 0.0) for i in range(3)]
    Gx = (gw[0] * (y1 - y2) + gw[1] * (y2 - y0) + gw[2] * (y0 - y1)) * inv_a
    Gy = (gw[0] * (x2 - x1) + gw[1] * (x0 - x2) + gw[2] * (x1 - x0)) * inv_a
    out = []
    for j in range(3):
        out += [cj[j] * rx - wl[j] * Gx, cj[j] * ry - wl[j] * Gy]
    return out + gz


_KERNELS = {"geometry": _geometry_kernel, "backward": _pairs_backward_kernel}


def use_compiled_kernels(enable: bool = True) -> bool:
    """Optionally run the two elementwise kernels through ``torch.compile`` (inductor; needs a C
    compiler). Returns whether compiled kernels are now in use; falls back to eager on failure."""
    if not enable:
        _KERNELS.update(geometry=_geometry_kernel, backward=_pairs_backward_kernel)
        return False
    try:
        _KERNELS["geometry"] = torch.compile(_geometry_kernel, dynamic=True)
        _KERNELS["backward"] = torch.compile(_pairs_backward_kernel, dynamic=True)
        return True
    except Exception:  # noqa: BLE001 - compile is an optional speed-up only
        use_compiled_kernels(False)
        return False


class _SoftPairsFn(torch.autograd.Function):
    """tab (B*F, 9) -> pix, fid (long, no grad), sd2 (NDC^2, signed), zp (SoftRas depth)."""

    @staticmethod
    def forward(ctx, tab, B, H, W, threshold_px2, k2):
        aux = _face_aux(tab)
        fid, col, row = candidates(tab, H, W, threshold_px2**0.5)
        r = aux.index_select(0, fid)
        px = col.to(tab.dtype) + 0.5
        py = row.to(tab.dtype) + 0.5
        w0, w1, w2, d2, t, rx, ry, edge, inside = _KERNELS["geometry"](r, px, py)
        keep = (inside | (d2 < threshold_px2)).nonzero().squeeze(1)
        fid, col, row, inside, edge = fid[keep], col[keep], row[keep], inside[keep], edge[keep]
        w0, w1, w2, d2, t, rx, ry = (a[keep] for a in (w0, w1, w2, d2, t, rx, ry))
        z = r[:, 6:9][keep]
        b = torch.div(fid, tab.shape[0] // B, rounding_mode="floor")
        pix = (b * H + row) * W + col
        sign = inside.to(tab.dtype) * 2.0 - 1.0
        zp = softras_depth(torch.stack((w0, w1, w2), 1), z)
        sd2 = sign * d2 * k2
        ctx.save_for_backward(aux, fid, w0, w1, w2, t, rx, ry, zp, sign, edge)
        ctx.k2 = k2
        ctx.mark_non_differentiable(pix, fid)
        return pix, fid, sd2, zp

    @staticmethod
    def backward(ctx, _g_pix, _g_fid, g_sd2, g_zp):
        aux, fid, *saved = ctx.saved_tensors
        if g_sd2 is None:
            g_sd2 = torch.zeros_like(saved[0])
        if g_zp is None:
            g_zp = torch.zeros_like(saved[0])
        cols = _KERNELS["backward"](aux.index_select(0, fid), *saved, g_sd2, g_zp, ctx.k2)
        grad = torch.zeros(9, aux.shape[0], dtype=g_sd2.dtype, device=g_sd2.device)
        for k, g in enumerate(cols):
            grad[k].index_add_(0, fid, g)
        return grad.T, None, None, None, None, None


def soft_pairs(tab: torch.Tensor, B: int, H: int, W: int, threshold_px2: float, ndc_per_px: float) -> Pairs:
    """Pairs within SoftRas's cut-off (inside, or outside with d^2 < threshold), with their signed
    squared NDC distance and SoftRas depth; analytic backward (custom autograd function).

    Args:
        tab: (B*F, 9) face table from :func:`face_table` (differentiable).
        threshold_px2: SoftRas cut-off ln(1/dist_eps - 1) * sigma converted to px^2.
        ndc_per_px: NDC units per pixel (for the returned squared distance).
    """
    pix, fid, sd2, zp = _SoftPairsFn.apply(tab, B, H, W, float(threshold_px2), float(ndc_per_px) ** 2)
    return Pairs(pix=pix, fid=fid, sd2=sd2, zp=zp)


@torch.no_grad()
def hard_rasterize(tab: torch.Tensor, B: int, H: int, W: int):
    """Z-buffer rasterization (pixel centre inside the triangle, w >= 0, nearest depth wins).

    Args:
        tab: (B*F, 9) face table.
    Returns:
        pix_to_face (B, H, W) long face index in [0, F) (-1 background), depth (B, H, W) camera
        depth (-1 background), bary (B, H, W, 3) perspective-correct barycentrics (-1 background).
    """
    F = tab.shape[0] // B
    tab = tab.detach()
    fid, col, row = candidates(tab, H, W, 0.0)
    t = tab[fid]
    px = col.to(t.dtype) + 0.5
    py = row.to(t.dtype) + 0.5
    w0, w1, w2 = barycentrics(px, py, t)
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    sel = inside.nonzero().squeeze(1)
    fid, col, row = fid[sel], col[sel], row[sel]
    t = t[sel]
    w0, w1, w2 = w0[sel], w1[sel], w2[sel]
    zp = 1.0 / (w0 / t[:, 6] + w1 / t[:, 7] + w2 / t[:, 8])
    b = torch.div(fid, F, rounding_mode="floor")
    pix = (b * H + row) * W + col
    zbits = zp.float().view(torch.int32).long()  # positive floats: bit order == value order
    key = (zbits << 32) | (fid - b * F)
    big = torch.iinfo(torch.int64).max
    zkey = torch.full((B * H * W,), big, dtype=torch.int64, device=tab.device)
    zkey.scatter_reduce_(0, pix, key, reduce="amin", include_self=True)
    hit = zkey != big
    face = torch.where(hit, zkey & 0xFFFFFFFF, torch.full_like(zkey, -1))
    pix_to_face = face.view(B, H, W)
    # Recompute depth / barycentrics of the winners at their pixels (at most B*H*W of them).
    hp = hit.nonzero().squeeze(1)
    hb = torch.div(hp, H * W, rounding_mode="floor")
    hr = torch.div(hp - hb * H * W, W, rounding_mode="floor")
    hc = hp - hb * H * W - hr * W
    ht = tab[hb * F + face[hp]]
    a0, a1, a2 = barycentrics(hc.to(ht.dtype) + 0.5, hr.to(ht.dtype) + 0.5, ht)
    q = torch.stack((a0 / ht[:, 6], a1 / ht[:, 7], a2 / ht[:, 8]), 1)
    zz = 1.0 / q.sum(1)
    depth = torch.full((B * H * W,), -1.0, dtype=tab.dtype, device=tab.device)
    depth[hp] = zz
    bary = torch.full((B * H * W, 3), -1.0, dtype=tab.dtype, device=tab.device)
    bary[hp] = q * zz[:, None]
    return pix_to_face, depth.view(B, H, W), bary.view(B, H, W, 3)


def barycentrics(px, py, t):
    """Screen barycentrics (w0, w1, w2) of points (px, py) in faces t (N, >=6) of face_table rows."""
    x0, y0, x1, y1, x2, y2 = t[:, :6].unbind(1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    area = torch.where(area >= 0, area.clamp(min=_MIN_AREA_PX2), area.clamp(max=-_MIN_AREA_PX2))
    w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / area
    w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / area
    return w0, w1, 1.0 - w0 - w1
