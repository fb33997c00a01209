#!/usr/bin/env python
"""Benchmark of the DSR rendering step (issue "Speed and memory"), all measured in one run.

    python scripts/bench_render.py [--device cpu|cuda] [--batch 32] [--small-batch 1] [--threads 2]

224x224 crop camera (f = 5000), the SMPL-sized mesh of ``dsr.rendering.meshes.body_mesh`` (the
free body when present, else a 20,480-face ellipsoid), predicted-like vertices at typical DSR
scales s ~ U(0.7, 1.1), 9 channels from the semantic prior (the free body's when present).
Measured, forward + backward (to vertices and camera), time per step and peak memory:

  (a)  ``window`` backend: ONE 9-channel render + DSR-MC (row nIOU) + DSR-C, batch B
  (a') the same on the ``pytorch3d`` backend (K = --k)
  (b)  the original's structure: 9 separate renders of the repeated batch (9B meshes, 3 channels
       each, PyTorch3D, K = --k) + the same losses on the channel means
  (c)  one HMR-ResNet50 step (dsr.models.HMR: ResNet-50 + HMR head + body model) + a dummy loss
  (d)  a hard render (dsr.rendering.rasterize) of one 320x320 image on each backend

Environment overrides (to benchmark a fixed copy of the free body while it is being rebuilt):
DSR_BENCH_BODY_NPZ (an SMPL npz), DSR_BENCH_PRIOR (semantic_prior.npy), DSR_BENCH_FREE_BODY_DIR.

On CPU PyTorch3D's rasterizer is the naive one (minutes per batch); (a') and (b) then run at
--small-batch and every figure is compared per image (the printout says so). Each measurement
runs in its own subprocess; CPU peak memory = peak RSS growth during the measured step, CUDA peak
memory = torch.cuda.max_memory_allocated growth.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _scene(B, device, seed=0):
    import numpy as np
    import torch

    from dsr.rendering.meshes import FREE_BODY_NPZ, body_mesh

    v, f, name = body_mesh()
    g = torch.Generator().manual_seed(seed)
    s = 0.7 + 0.4 * torch.rand(B, generator=g)
    cam_t = torch.stack((0.05 * torch.randn(B, generator=g), 0.05 * torch.randn(B, generator=g),
                         2 * 5000.0 / (224 * s)), 1)
    verts = v[None] + 0.01 * torch.randn(B, *v.shape, generator=g)
    prior_path = os.environ.get("DSR_BENCH_PRIOR") or os.path.join(os.path.dirname(os.path.dirname(FREE_BODY_NPZ)),
                                                                    "semantic_prior.npy")
    if os.path.exists(prior_path) and np.load(prior_path).shape[0] == f.shape[0]:
        prior = torch.tensor(np.load(prior_path), dtype=torch.float32)
    else:
        prior = torch.softmax(3 * torch.randn(f.shape[0], 20, generator=g), 1)
    mc = torch.zeros(B, 224, 224)
    mc[:, 60:160, 90:130] = 1.0
    labels = torch.randint(0, 8, (B, 224, 224), generator=g)
    weights = torch.rand(B, 8, generator=g)
    return dict(verts=verts.to(device), cam_t=cam_t.to(device), faces=f.to(device), prior=prior.to(device),
                mc=mc.to(device), labels=labels.to(device), weights=weights.to(device), mesh=name)


def _render_step(sc, backend, k, separate, compile_kernels=False):
    """One forward + backward of the DSR render + both losses."""
    import torch

    from dsr.losses import dsr_c_loss, dsr_mc_loss
    from dsr.rendering import SemanticRenderer, semantic_prior_features

    B = sc["verts"].shape[0]
    verts = sc["verts"].clone().requires_grad_(True)
    cam_t = sc["cam_t"].clone().requires_grad_(True)
    feats = semantic_prior_features(sc["prior"], torch.ones(B, 5, device=verts.device))  # (B, F, 9)
    r = SemanticRenderer(sc["faces"], backend=backend, faces_per_pixel=k,
                         compile_kernels=compile_kernels).to(verts.device)
    if not separate:
        render, _ = r(verts, cam_t, feats)  # (B, 9, H, W)
    else:  # the original: 9B meshes, each rendered with one 3-channel texture
        feats9 = feats.permute(0, 2, 1).reshape(B * 9, -1, 1).expand(-1, -1, 3)
        out, _ = r(verts.repeat_interleave(9, 0), cam_t.repeat_interleave(9, 0), feats9)
        render = out.mean(1).view(B, 9, 224, 224)
    loss = dsr_mc_loss(render[:, 0], sc["mc"], "row").mean() + dsr_c_loss(render[:, 1:], sc["labels"],
                                                                         sc["weights"]).mean()
    loss.backward()


def _hmr_step(B, device):
    import torch

    from dsr.models import HMR

    fb = os.environ.get("DSR_BENCH_FREE_BODY_DIR") or os.path.join(REPO, "dsr", "assets", "free_body")
    if os.path.exists(os.path.join(fb, "smpl", "SMPL_NEUTRAL.npz")):
        model_dir, extra, mean, which = os.path.join(fb, "smpl"), os.path.join(fb, "J_regressor_extra.npy"), \
            os.path.join(fb, "smpl_mean_params.npz"), "free body"
    else:
        from dsr.body.toy import write_toy_model

        d = tempfile.mkdtemp()
        write_toy_model(d)
        model_dir, extra, mean, which = os.path.join(d, "smpl"), os.path.join(d, "J_regressor_extra.npy"), \
            os.path.join(d, "smpl_mean_params.npz"), "toy body model"
    model = HMR(backbone="resnet50", backbone_weights="", smpl_model_dir=model_dir, mean_params=mean,
                extra_regressor=extra).to(device)
    model.train()
    images = torch.randn(B, 3, 224, 224, device=device)

    def step():
        out = model(images)
        loss = sum(v.float().pow(2).mean() for k, v in out.items() if torch.is_tensor(v) and v.is_floating_point())
        loss.backward()

    return step, which


def _measure(what, args):
    """Runs in the child process: prints one JSON line {time_s, mem_mb, batch, note}."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    small = args.small_batch if not cuda else args.batch
    note = ""
    if what in ("a", "a1", "b"):
        B = args.batch if what == "a" else small
        sc = _scene(B, device)
        note = sc["mesh"]
        backend = "window" if what == "a" else "pytorch3d"

        def step():
            _render_step(sc, backend, args.k, separate=(what == "b"), compile_kernels=args.compile)
    elif what == "c":
        B = args.batch
        step, note = _hmr_step(B, device)
    elif what.startswith("d"):
        from dsr.rendering import rasterize

        B = 1
        sc = _scene(1, device)
        cam = sc["cam_t"].clone()
        cam[:, 2] = 2 * 5000.0 / (320 * 0.9)
        backend = "window" if what == "d_window" else "pytorch3d"
        note = sc["mesh"]

        def step():
            rasterize(sc["verts"], cam, sc["faces"], 320, 5000.0, backend=backend)
    else:
        raise ValueError(what)
    slow = (not cuda) and what in ("a1", "b", "d_pytorch3d")
    reps = 1 if slow else args.reps
    base_rss = _rss_mb()  # after the set-up, before any step (the peak is the same in every step)
    if not slow:
        step()  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if cuda:
        mem = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        mem = max(_peak_rss_mb() - base_rss, 0.0)
    t = min(times) if what.startswith("d") else sum(times) / len(times)
    print(json.dumps(dict(time_s=t, mem_mb=mem, batch=B, note=note, reps=reps)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="B (default 32 on CPU, 128 on CUDA)")
    ap.add_argument("--small-batch", type=int, default=1, help="CPU batch of the PyTorch3D runs (a'), (b)")
    ap.add_argument("--k", type=int, default=None, help="PyTorch3D faces per pixel (default: config)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="(a): window kernels through torch.compile")
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.batch is None:
        args.batch = 128 if args.device.startswith("cuda") else 32
    if args.k is None:
        from dsr.config import get_cfg_defaults

        args.k = int(get_cfg_defaults().DSR.FACES_PER_PIXEL)
    if args.only:
        _measure(args.only, args)
        return
    res = {}
    for what in ("a", "a1", "b", "c", "d_window", "d_pytorch3d"):
        cmd = [sys.executable, os.path.abspath(__file__), "--only", what, "--device", args.device,
               "--batch", str(args.batch), "--small-batch", str(args.small_batch), "--k", str(args.k),
               "--threads", str(args.threads), "--reps", str(args.reps)] + (["--compile"] if args.compile else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode or not line:
            print(f"({what}) failed:\n{out.stderr[-2000:]}")
            return 1
        res[what] = json.loads(line[-1])
        r = res[what]
        print(f"({what:11s}) B={r['batch']:4d}  {r['time_s']:8.3f} s/step  {r['time_s'] / r['batch']:7.3f} s/img  "
              f"peak {r['mem_mb']:8.1f} MB  {r['mem_mb'] / r['batch']:7.1f} MB/img  [{r['note']}]", flush=True)

    def per(k, key):
        return res[k][key] / res[k]["batch"]

    print(f"\ndevice={args.device} threads={args.threads} K={args.k} compile={args.compile}; per-image ratios"
          + (f" ((a') and (b) at batch {args.small_batch})" if not args.device.startswith("cuda") else ""))
    def ratio(x, y, key):
        return per(x, key) / max(per(y, key), 1e-9)

    print(f"b/a  time {ratio('b', 'a', 'time_s'):8.2f}   memory {ratio('b', 'a', 'mem_mb'):8.2f}   (target >= 4)")
    print(f"a'/a time {ratio('a1', 'a', 'time_s'):8.2f}   memory {ratio('a1', 'a', 'mem_mb'):8.2f}   "
          "(target >= 20 on CPU)")
    print(f"a/c  time {per('a', 'time_s') / per('c', 'time_s'):8.2f}   (target <= 1 on CPU, <= 0.5 on GPU; "
          f"a'/c {per('a1', 'time_s') / per('c', 'time_s'):.2f})")
    print(f"(d)  320^2 hard render: window {1e3 * res['d_window']['time_s']:.1f} ms, "
          f"pytorch3d {1e3 * res['d_pytorch3d']['time_s']:.1f} ms   (target window <= 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
