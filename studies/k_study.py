#!/usr/bin/env python
"""K study: error of the PyTorch3D backend (K faces per pixel) against the exact window backend.

    python studies/k_study.py [--scales 0.7 0.9 1.1] [--kmax 96] [--device cpu]

The SMPL-sized mesh of ``dsr.rendering.meshes.body_mesh`` (the free body when present) is rendered
at the DSR crop camera (224^2, f = 5000, cam_t z = 2 f / (224 s)) with SoftRas's sigma = 1e-5,
gamma = 0.1 and the 9 DSR channels of the semantic prior (the free body's when present). PyTorch3D
is rasterized once with ``--kmax`` layers; every smaller K is emulated exactly by keeping the
first K layers (PyTorch3D keeps the K nearest faces by depth). Printed per scale and K: max and
mean |difference| of the 9 feature channels and of alpha over the covered pixels, the relative
difference of the DSR-MC (row nIOU) and DSR-C losses against a fixed target, and how many
(face, pixel) pairs a pixel has in the exact render (max and 99th percentile).
"""
from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dsr.losses import dsr_c_loss, dsr_mc_loss  # noqa: E402
from dsr.rendering import pytorch3d_backend, semantic_prior_features, soft_pairs, softras_blend  # noqa: E402
from dsr.rendering.meshes import FREE_BODY_NPZ, body_mesh  # noqa: E402
from dsr.rendering.semantic_renderer import softras_cutoff  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", type=float, nargs="+", default=[0.7, 0.9, 1.1])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96])
    ap.add_argument("--kmax", type=int, default=96)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    v, f, name = body_mesh()
    prior_path = os.environ.get("DSR_BENCH_PRIOR") or os.path.join(os.path.dirname(os.path.dirname(FREE_BODY_NPZ)),
                                                                    "semantic_prior.npy")
    if os.path.exists(prior_path):
        prior = torch.tensor(np.load(prior_path), dtype=torch.float32)
    else:
        prior = torch.softmax(3 * torch.randn(f.shape[0], 20, generator=torch.Generator().manual_seed(0)), 1)
    feats = semantic_prior_features(prior, torch.ones(1, 5)).to(dev)
    v, f = v.to(dev), f.to(dev)
    sigma, gamma = 1e-5, 0.1
    print(f"mesh: {name}, {f.shape[0]} faces; sigma={sigma}, gamma={gamma}, 224^2, f=5000")
    print(f"{'s':>4} {'K':>4} | {'feat max':>9} {'feat mean':>9} | {'alpha max':>9} {'alpha mean':>10} | "
          f"{'dMC rel':>8} {'dC rel':>8}")
    for s in args.scales:
        cam_t = torch.tensor([[0.0, 0.0, 2 * 5000.0 / (224 * s)]], device=dev)
        verts = v[None]
        exact_pairs = soft_pairs(verts, cam_t, f, 224, 5000.0, sigma, backend="window")
        ref, ref_a = softras_blend(exact_pairs, feats, 1, 224, 224, sigma, gamma)
        counts = torch.bincount(exact_pairs.pix, minlength=224 * 224).float()
        covered = ref_a[0] > 1e-3
        # a fixed target: the exact render's own MC mask / class argmax shifted by 3 px
        mc_t = torch.roll((ref[:, 0] > 0.5).float(), 3, dims=2)
        c_t = torch.roll(ref[:, 1:].argmax(1), 3, dims=2)
        w = torch.ones(1, 8, device=dev)
        l_mc = dsr_mc_loss(ref[:, 0], mc_t).item()
        l_c = dsr_c_loss(ref[:, 1:], c_t, w).item()
        c = counts[counts > 0]
        print(f"# s={s}: pairs per covered pixel: max {int(c.max())}, 99th pct {float(c.quantile(0.99)):.0f}, "
              f"mean {float(c.mean()):.1f}; {int((counts > args.kmax).sum())} pixels exceed kmax={args.kmax}")
        frag = pytorch3d_backend._rasterize(verts, cam_t, f, 224, 224, 5000.0, None, softras_cutoff(sigma),
                                            args.kmax, False, True)
        for K in [k for k in args.ks if k <= args.kmax]:
            pairs = pytorch3d_backend.soft_pairs(verts, cam_t, f, 224, 224, 5000.0, None, softras_cutoff(sigma),
                                                 args.kmax, fragments=frag, layers=K)
            out, a = softras_blend(pairs, feats, 1, 224, 224, sigma, gamma)
            df = (out - ref).abs()[0][:, covered]
            da = (a - ref_a).abs()[0][covered]
            mc = dsr_mc_loss(out[:, 0], mc_t).item()
            cc = dsr_c_loss(out[:, 1:], c_t, w).item()
            print(f"{s:4.1f} {K:4d} | {df.max().item():9.2e} {df.mean().item():9.2e} | {da.max().item():9.2e} "
                  f"{da.mean().item():10.2e} | {abs(mc - l_mc) / l_mc:8.1e} {abs(cc - l_c) / l_c:8.1e}", flush=True)


if __name__ == "__main__":
    main()
