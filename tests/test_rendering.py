"""Tests of dsr.rendering against a brute-force SoftRas reference written here (float64, every
face x every pixel, reference §3.5, no truncation), finite differences, and the camera
convention (silhouette vs. perspective_projection of the vertices)."""
from __future__ import annotations

import math

import pytest
import torch

from dsr.geometry import perspective_projection
from dsr.rendering import SemanticRenderer, rasterize, semantic_prior_features
from dsr.rendering.meshes import body_mesh, icosphere

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


# ----------------------------------------------------------------------------- brute force
def _project(verts, cam_t, focal, H, W):
    p = verts + cam_t[:, None]
    return focal * p[..., 0] / p[..., 2] + W / 2.0, focal * p[..., 1] / p[..., 2] + H / 2.0, p[..., 2]


def _seg_dist2(px, py, ax, ay, bx, by):
    """Squared distance of points (P, 1) to segments (1, F): closest point by clamped projection."""
    abx, aby = bx - ax, by - ay
    L2 = abx**2 + aby**2
    t = torch.clamp(((px - ax) * abx + (py - ay) * aby) / L2, 0, 1)
    return (ax + t * abx - px) ** 2 + (ay + t * aby - py) ** 2


def _brute(verts, cam_t, faces, H, W, focal, sigma, gamma, feats, znear=1.0, zfar=100.0, eps=1e-3):
    """SoftRas by definition: features (B, C, H, W), alpha (B, H, W); all float64."""
    verts, cam_t, feats = verts.double(), cam_t.double(), feats.double()
    u, v, z = _project(verts, cam_t, focal, H, W)
    B, F = verts.shape[0], faces.shape[0]
    rows, cols = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                                indexing="ij")
    px, py = (cols + 0.5).reshape(-1, 1), (rows + 0.5).reshape(-1, 1)
    px_ndc = 2.0 / min(H, W)
    cutoff = math.log(1 / 1e-4 - 1) * sigma
    out_f, out_a = [], []
    for b in range(B):
        X, Y, Z = u[b][faces], v[b][faces], z[b][faces]  # (F, 3)
        x0, x1, x2 = X[:, 0][None], X[:, 1][None], X[:, 2][None]
        y0, y1, y2 = Y[:, 0][None], Y[:, 1][None], Y[:, 2][None]
        # barycentrics by solving p = a + s (b - a) + t (c - a)
        det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        s_ = ((px - x0) * (y2 - y0) - (x2 - x0) * (py - y0)) / det
        t_ = ((x1 - x0) * (py - y0) - (px - x0) * (y1 - y0)) / det
        w = torch.stack((1 - s_ - t_, s_, t_), -1)  # (P, F, 3)
        inside = ((w > 0) & (w < 1)).all(-1)
        d2 = torch.minimum(torch.minimum(_seg_dist2(px, py, x0, y0, x1, y1), _seg_dist2(px, py, x1, y1, x2, y2)),
                           _seg_dist2(px, py, x2, y2, x0, y0)) * px_ndc**2
        near = inside | (d2 < cutoff)
        D = torch.where(near, torch.sigmoid(torch.where(inside, d2, -d2) / sigma), torch.zeros_like(d2))
        alpha = 1 - torch.prod(1 - D, dim=1)
        wc = w.clamp(0, 1)
        wc = wc / wc.sum(-1, keepdim=True).clamp(min=1e-5)
        zp = 1 / (wc / Z[None]).sum(-1)
        ok = near & (zp >= znear) & (zp <= zfar)
        zn = (zfar - zp) / (zfar - znear)
        zmax = torch.maximum(torch.where(ok, zn, torch.full_like(zn, -1e9)).amax(1), torch.tensor(eps).double())
        e = torch.where(ok, D * torch.exp((zn - zmax[:, None]) / gamma), torch.zeros_like(zn))
        fb = feats[b if feats.shape[0] > 1 else 0]  # (F, C)
        den = e.sum(1) + torch.exp((eps - zmax) / gamma)
        col = (e @ fb) / den[:, None]
        out_f.append(col.T.reshape(-1, H, W))
        out_a.append(alpha.reshape(H, W))
    return torch.stack(out_f), torch.stack(out_a)


def _brute_hard(verts, cam_t, faces, H, W, focal):
    """Nearest covering face per pixel centre (w >= 0), its depth; (B, H, W) each."""
    u, v, z = _project(verts.double(), cam_t.double(), focal, H, W)
    B = verts.shape[0]
    rows, cols = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                                indexing="ij")
    px, py = (cols + 0.5).reshape(-1, 1), (rows + 0.5).reshape(-1, 1)
    idx, dep = [], []
    for b in range(B):
        X, Y, Z = u[b][faces], v[b][faces], z[b][faces]
        x0, x1, x2 = X[:, 0][None], X[:, 1][None], X[:, 2][None]
        y0, y1, y2 = Y[:, 0][None], Y[:, 1][None], Y[:, 2][None]
        det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        s_ = ((px - x0) * (y2 - y0) - (x2 - x0) * (py - y0)) / det
        t_ = ((x1 - x0) * (py - y0) - (px - x0) * (y1 - y0)) / det
        w = torch.stack((1 - s_ - t_, s_, t_), -1)
        cover = (w >= 0).all(-1)
        zp = 1 / (w / Z[None]).sum(-1)
        zp = torch.where(cover, zp, torch.full_like(zp, float("inf")))
        m, i = zp.min(1)
        idx.append(torch.where(torch.isfinite(m), i, torch.full_like(i, -1)).reshape(H, W))
        dep.append(torch.where(torch.isfinite(m), m, torch.full_like(m, -1.0)).reshape(H, W))
    return torch.stack(idx), torch.stack(dep)


# ----------------------------------------------------------------------------- fixtures
def _small_scene(seed=0, B=2, level=1):
    """An ico-sphere (radius 0.5 m) plus random loose triangles, at ~4 m: faces of a few pixels
    at 24x20 px, front and back layers, faces crossing the image border."""
    g = torch.Generator().manual_seed(seed)
    v, f = icosphere(level)
    v = v * 0.5
    loose_v = (torch.rand(6, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([1.6, 1.6, 1.0])
    loose_f = torch.arange(6).view(2, 3) + v.shape[0]
    verts = torch.cat((v, loose_v))
    faces = torch.cat((f, loose_f))
    verts = verts[None] + 0.05 * torch.randn(B, *verts.shape, generator=g, dtype=torch.float64)
    cam_t = torch.tensor([[0.05, -0.02, 4.0], [-0.1, 0.08, 4.5]], dtype=torch.float64)[:B]
    return verts, cam_t, faces


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["window", "pytorch3d"])
@pytest.mark.parametrize("sigma,gamma", [(2e-3, 0.1), (5e-4, 0.003)])
def test_soft_render_matches_bruteforce(device, backend, sigma, gamma):
    verts, cam_t, faces = _small_scene()
    H, W, focal = 24, 20, 30.0
    C = 4
    feats = torch.rand(2, faces.shape[0], C, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_f, ref_a = _brute(verts, cam_t, faces, H, W, focal, sigma, gamma, feats)
    assert ref_a.max() > 0.99 and ref_a.min() < 1e-6  # covered and empty pixels both present
    dtype = torch.float64 if backend == "window" else torch.float32  # PyTorch3D rasterizes in float32
    r = SemanticRenderer(faces, image_size=(H, W), focal_length=focal, sigma=sigma, gamma=gamma,
                         faces_per_pixel=faces.shape[0], backend=backend).to(device)
    out_f, out_a = r(verts.to(device, dtype), cam_t.to(device, dtype), feats.to(device, dtype))
    tol = 1e-4
    assert (out_f.double().cpu() - ref_f).abs().max() < tol
    assert (out_a.double().cpu() - ref_a).abs().max() < tol


def test_window_float32_matches_bruteforce_and_batch1_features():
    verts, cam_t, faces = _small_scene(seed=3)
    H, W, focal, sigma, gamma = 24, 20, 30.0, 1e-3, 0.02
    feats = torch.rand(1, faces.shape[0], 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref_f, ref_a = _brute(verts, cam_t, faces, H, W, focal, sigma, gamma, feats)
    r = SemanticRenderer(faces, image_size=(H, W), focal_length=focal, sigma=sigma, gamma=gamma, backend="window")
    out_f, out_a = r(verts.float(), cam_t.float(), feats.float())  # (1, F, C) features shared by the batch
    assert (out_f.double() - ref_f).abs().max() < 1e-4
    assert (out_a.double() - ref_a).abs().max() < 1e-4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["window", "pytorch3d"])
def test_hard_rasterize_matches_bruteforce(device, backend):
    verts, cam_t, faces = _small_scene(seed=5, level=2)
    H, W, focal = 30, 26, 70.0
    ref_idx, ref_dep = _brute_hard(verts, cam_t, faces, H, W, focal)
    assert (ref_idx >= 0).float().mean() > 0.2
    dtype = torch.float64 if backend == "window" else torch.float32
    out = rasterize(verts.to(device, dtype), cam_t.to(device, dtype), faces.to(device), (H, W), focal,
                    backend=backend)
    assert torch.equal(out.pix_to_face.cpu(), ref_idx)
    hit = ref_idx >= 0
    assert (out.depth.cpu().double()[hit] - ref_dep[hit]).abs().max() < 1e-4
    assert (out.depth.cpu()[~hit] == -1).all()
    # perspective-correct barycentrics reproduce the depth: 1 / sum(b_i / z_i) ... and sum to 1
    b = out.bary.cpu().double()[hit]
    assert (b.sum(-1) - 1).abs().max() < 1e-5 and (b >= -1e-6).all()
    z = (verts.double() + cam_t.double()[:, None])[..., 2]
    bidx = torch.arange(verts.shape[0])[:, None, None].expand(-1, H, W)[hit]
    zf = z[bidx[:, None], faces[ref_idx[hit]]]  # (n, 3) vertex depths
    assert ((b * zf).sum(-1) - ref_dep[hit]).abs().max() < 1e-4


def _tiny(dtype):
    g = torch.Generator().manual_seed(7)
    # two adjacent faces + one overlapping them nearer the camera (depth order matters)
    verts = torch.tensor([[[-0.5, -0.4, 0.1], [0.45, -0.3, -0.05], [0.0, 0.5, 0.0], [0.6, 0.55, 0.3],
                           [-0.2, -0.1, -0.6], [0.5, 0.1, -0.4], [0.1, 0.4, -0.7]]], dtype=torch.float64)
    verts = verts + 0.02 * torch.randn(verts.shape, generator=g, dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2], [4, 5, 6]])
    cam_t = torch.tensor([[0.03, -0.01, 3.0]], dtype=torch.float64)
    feats = torch.rand(1, 3, 2, generator=g, dtype=torch.float64)
    weights = torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64)
    return verts.to(dtype), cam_t.to(dtype), faces, feats.to(dtype), weights.to(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["window", "pytorch3d"])
@pytest.mark.parametrize("zfar,gamma", [(100.0, 0.05), (4.0, 0.02)])
def test_gradients_match_finite_differences(device, backend, zfar, gamma):
    dtype = torch.float64 if backend == "window" else torch.float32
    verts, cam_t, faces, feats, weights = (t.to(device) for t in _tiny(dtype))
    # soft edges of ~2 px so that the objective is smooth at the finite-difference step; the
    # second setting makes the depth softmax strong (the overlapping front face dominates)
    r = SemanticRenderer(faces, image_size=12, focal_length=12.0, sigma=0.05, gamma=gamma, zfar=zfar,
                         backend=backend, faces_per_pixel=3).to(device)

    def objective(v, t):
        f, a = r(v, t, feats)
        return (torch.cat((f, a[:, None]), 1) * weights).sum()

    v = verts.clone().requires_grad_(True)
    t = cam_t.clone().requires_grad_(True)
    objective(v, t).backward()
    h = 1e-6 if dtype == torch.float64 else 1e-4
    tol = 1e-5 if dtype == torch.float64 else 3e-2
    for x, g in ((verts, v.grad), (cam_t, t.grad)):
        num = torch.zeros_like(x)
        for i in range(x.numel()):
            e = torch.zeros_like(x).view(-1)
            e[i] = h
            e = e.view_as(x)
            with torch.no_grad():
                xp, xm = x + e, x - e
                fp = objective(xp, cam_t) if x is verts else objective(verts, xp)
                fm = objective(xm, cam_t) if x is verts else objective(verts, xm)
            num.view(-1)[i] = (fp - fm) / (2 * h)
        scale = num.abs().max().clamp(min=1e-3)
        assert (g - num).abs().max() / scale < tol, (backend, g, num)


def test_feature_gradients_match_finite_differences():
    verts, cam_t, faces, feats, weights = _tiny(torch.float64)
    r = SemanticRenderer(faces, image_size=12, focal_length=12.0, sigma=0.05, gamma=0.02, zfar=4.0, backend="window")
    f = feats.clone().requires_grad_(True)
    (r(verts, cam_t, f)[0] * weights[:, :2]).sum().backward()
    num = torch.zeros_like(feats)
    for i in range(feats.numel()):
        e = torch.zeros(feats.numel(), dtype=torch.float64)
        e[i] = 1e-6
        e = e.view_as(feats)
        with torch.no_grad():
            diff = r(verts, cam_t, feats + e)[0] - r(verts, cam_t, feats - e)[0]
            num.view(-1)[i] = (diff * weights[:, :2]).sum() / 2e-6
    assert (f.grad - num).abs().max() < 1e-6 * num.abs().max()


@pytest.mark.parametrize("backend", ["window", pytest.param("pytorch3d", marks=pytest.mark.slow)])
def test_body_silhouette_lines_up_with_projected_vertices(backend):
    v, f, _ = body_mesh()
    s = 0.9
    cam_t = torch.tensor([[0.02, -0.03, 2 * 5000.0 / (224 * s)]])
    verts = v[None]
    # the window backend is checked soft (alpha > 0.5) and hard; PyTorch3D's naive CPU kernel hard only
    out = rasterize(verts, cam_t, f, 224, 5000.0, backend=backend)
    masks = [(out.pix_to_face[0] >= 0, 0.0)]
    if backend == "window":
        feats = torch.ones(1, f.shape[0], 1)
        _, alpha = SemanticRenderer(f, backend="window")(verts, cam_t, feats)
        masks.append((alpha[0] > 0.5, 0.5))  # soft: many faces within the blur can exceed 0.5
    uv = perspective_projection(verts, cam_t, 5000.0, torch.tensor([[112.0, 112.0]]))[0]
    for m, slack in masks:
        rows, cols = m.nonzero(as_tuple=True)
        # pixel (r, c) is centred at (c + 0.5, r + 0.5): covered centres lie inside the projected
        # vertices' box (a half-pixel convention error would break this) and reach to within
        # about a pixel of it (grid spacing 1 px; 1.5 px allowed for the first centre inside a
        # rounded head top or a thin finger tip: measured 0.61-1.08 px on the free body)
        lo = torch.stack((cols.min(), rows.min())).double() + 0.5 - uv.min(0).values.double()
        hi = uv.max(0).values.double() - (torch.stack((cols.max(), rows.max())).double() + 0.5)
        assert (lo >= -1e-3 - slack).all() and (hi >= -1e-3 - slack).all(), (lo, hi)
        assert (lo <= 1.5).all() and (hi <= 1.5).all(), (lo, hi)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_backends_agree_on_body(device):
    """PyTorch3D with K >= the most faces any pixel has, against the exact window backend, on the
    body at a typical DSR camera (slow on CPU: PyTorch3D's naive kernel). PyTorch3D skips faces
    whose projected area is below 1e-8 NDC^2 (edge-on faces), SoftRas (and the window backend)
    does not: pixels those faces reach are compared loosely. PyTorch3D's CUDA kernels keep at most
    150 faces per pixel: on CUDA K is capped there and the pixels with more pairs (27 of 6238 at
    this camera) are compared loosely too."""
    from dsr.rendering import soft_pairs
    from dsr.rendering.pytorch3d_backend import CUDA_MAX_FACES_PER_PIXEL

    v, f, _ = body_mesh()
    verts = v[None].to(device)
    f = f.to(device)
    cam_t = torch.tensor([[0.02, -0.05, 2 * 5000.0 / (224 * 0.9)]], device=device)
    feats = semantic_prior_features(torch.softmax(torch.randn(f.shape[0], 20), 1), torch.ones(1, 5)).to(device)
    pairs = soft_pairs(verts, cam_t, f, 224, backend="window")
    counts = torch.bincount(pairs.pix, minlength=224 * 224)
    k = int(counts.max()) + 8
    if device == "cuda":
        k = min(k, CUDA_MAX_FACES_PER_PIXEL)
    u, v_, _ = _project(verts.double(), cam_t.double(), 5000.0, 224, 224)
    X, Y = u[0][f], v_[0][f]
    area = ((X[:, 1] - X[:, 0]) * (Y[:, 2] - Y[:, 0]) - (X[:, 2] - X[:, 0]) * (Y[:, 1] - Y[:, 0])) / 2 * (2 / 224) ** 2
    edge_on = area.abs() < 1e-8
    loose = torch.zeros(224 * 224, dtype=torch.bool, device=device)
    loose[pairs.pix[edge_on[pairs.fid]]] = True
    covered = pairs.pix.unique().numel()
    assert loose.sum() < 0.01 * covered and (counts > k).sum() < 0.01 * covered
    loose = (loose | (counts > k)).view(224, 224)
    outs = [SemanticRenderer(f, backend=b, faces_per_pixel=k).to(device)(verts, cam_t, feats)
            for b in ("window", "pytorch3d")]
    df = (outs[0][0] - outs[1][0]).abs()[0]
    da = (outs[0][1] - outs[1][1]).abs()[0]
    assert df[:, ~loose].max() < 1e-4 and da[~loose].max() < 1e-4
    assert df[:, loose].max() < 0.1


@pytest.mark.cuda
def test_pytorch3d_k_over_cuda_limit_is_a_clear_error():
    from dsr.rendering.pytorch3d_backend import CUDA_MAX_FACES_PER_PIXEL

    verts, cam_t, faces, feats, _ = (t.to("cuda") for t in _tiny(torch.float32))
    r = SemanticRenderer(faces, image_size=12, focal_length=12.0, backend="pytorch3d",
                         faces_per_pixel=CUDA_MAX_FACES_PER_PIXEL + 1).to("cuda")
    with pytest.raises(ValueError, match="DSR.FACES_PER_PIXEL"):
        r(verts, cam_t, feats)


def test_semantic_prior_features_by_hand():
    prior = torch.zeros(3, 20)
    prior[0, 18], prior[0, 5] = 0.25, 0.75  # leftShoe / upperclothes
    prior[1, 13], prior[1, 2], prior[1, 16] = 0.5, 0.25, 0.25  # face / hair / leftLeg
    prior[2, 0] = 1.0  # background
    mc_valid = torch.tensor([[1, 0, 0, 0, 1], [0, 1, 1, 1, 0]])
    out = semantic_prior_features(prior, mc_valid)
    assert out.shape == (2, 3, 9)
    assert torch.allclose(out[0, :, 0], torch.tensor([0.25, 0.5, 0.0]))
    assert torch.allclose(out[1, :, 0], torch.tensor([0.0, 0.0, 0.0]))
    # classes: 0 bg, 1 head, 2 upperclothes, 3 pants, 4 lArm, 5 rArm, 6 lLeg(+lShoe), 7 rLeg
    expect = torch.tensor([[0, 0, 0.75, 0, 0, 0, 0.25, 0], [0, 0.75, 0, 0, 0, 0, 0.25, 0], [1, 0, 0, 0, 0, 0, 0, 0]])
    assert torch.allclose(out[0, :, 1:], expect) and torch.allclose(out[1, :, 1:], expect)
    # per-vertex prior: a face takes the mean of its vertices
    faces = torch.tensor([[0, 1, 2], [0, 0, 1], [2, 3, 3], [1, 1, 1], [3, 3, 3]])
    pv = torch.zeros(4, 20)
    pv[:, 0] = 1.0
    pv[3] = 0.0
    pv[3, 14] = 1.0  # vertex 3: leftArm
    outv = semantic_prior_features(pv, torch.tensor([[0, 0, 1, 0, 0]]), faces=faces)
    assert torch.allclose(outv[0, :, 0], torch.tensor([0.0, 0.0, 2 / 3, 0.0, 1.0]))
    with pytest.raises(ValueError):
        semantic_prior_features(torch.zeros(3, 19), mc_valid)


def test_bad_backend_name_raises():
    with pytest.raises(ValueError, match="RENDER_BACKEND"):
        SemanticRenderer(torch.tensor([[0, 1, 2]]), backend="opengl")


@pytest.mark.slow
def test_compiled_window_kernels_match_eager():
    """The optional torch.compile path gives the same render and gradients (compiles ~1 min)."""
    from dsr.rendering import window

    verts, cam_t, faces = _small_scene(seed=2)
    feats = torch.rand(2, faces.shape[0], 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    outs = []
    for compiled in (False, True):
        window.use_compiled_kernels(compiled)
        try:
            v = verts.clone().requires_grad_(True)
            r = SemanticRenderer(faces, image_size=(24, 20), focal_length=30.0, sigma=1e-3, gamma=0.02,
                                 backend="window")
            f, a = r(v, cam_t, feats)
            (f.sum() + a.sum()).backward()
            outs.append((f.detach(), a.detach(), v.grad))
        finally:
            window.use_compiled_kernels(False)
    for x, y in zip(*outs):
        assert (x - y).abs().max() < 1e-9
