#!/usr/bin/env python
"""Benchmark of the DSR rendering step (issue "Speed and memory"), all measured in one run.

    python benchmarks/bench_render.py [--device cpu|cuda] [--batch 32] [--small-batch 1] [--threads 2]
    python benchmarks/bench_render.py --device cuda --sweep [--backends window,pytorch3d]
                                   [--batches 32,64,128] [--separate-batch 32] [--json out.json]

--img-res px crop (default 224; the focal length is scaled with it, 5000 * px / 224, so the body
covers the same share of the image), the SMPL-sized mesh of ``dsr.rendering.meshes.body_mesh``
(the free body when present, else a 20,480-face ellipsoid), predicted-like vertices at typical DSR
scales s ~ U(0.7, 1.1), 9 channels from the semantic prior (the free body's when present).
Measured, forward + backward (to vertices and camera), time per step and peak memory:

  (a)  ``window`` backend: ONE 9-channel render + DSR-MC (row nIOU) + DSR-C, batch B
  (a') the same on the ``pytorch3d`` backend (K = --k)
  (b)  the original's structure: 9 separate renders of the repeated batch (9B meshes, 3 channels
       each, PyTorch3D, K = --k) + the same losses on the channel means
  (c)  one HMR-ResNet50 step (dsr.models.HMR: ResNet-50 + HMR head + body model) + a dummy loss
  (d)  a hard render (dsr.rendering.rasterize) of one 320x320 image on each backend

--sweep measures instead: the one-pass render (a) on each of --backends at each of --batches, and
the original's structure (b) on each of --separate-backends at --separate-batch; a measurement
that fails (e.g. CUDA out of memory) or outlasts --child-timeout is reported as such and the
sweep goes on. --json writes every result (list of dicts: name, backend, batch, separate, time_s,
mem_mb, reps, note or error).

Environment overrides (to benchmark a fixed copy of the free body while it is being rebuilt):
DSR_BENCH_BODY_NPZ (an SMPL npz), DSR_BENCH_PRIOR (semantic_prior.npy), DSR_BENCH_FREE_BODY_DIR.

On CPU PyTorch3D's rasterizer is the naive one (minutes per batch at 224 px); (a') and (b) then
run at --small-batch and every figure is compared per image (the printout says so). Each
measurement runs in its own subprocess; CPU peak memory = peak RSS growth during the measured
step, CUDA peak memory = torch.cuda.max_memory_allocated growth.
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


def focal_for(res: int) -> float:
    """The DSR focal length (5000 px at 224) scaled with the crop."""
    return 5000.0 * res / 224.0


def _scene(B, device, res=224, seed=0):
    import numpy as np
    import torch

    from dsr.rendering.meshes import FREE_BODY_NPZ, body_mesh

    v, f, name = body_mesh()
    g = torch.Generator().manual_seed(seed)
    s = 0.7 + 0.4 * torch.rand(B, generator=g)
    # camera depth 2 f / (res s): independent of res since f scales with it
    cam_t = torch.stack((0.05 * torch.randn(B, generator=g), 0.05 * torch.randn(B, generator=g),
                         2 * focal_for(res) / (res * s)), 1)
    verts = v[None] + 0.01 * torch.randn(B, *v.shape, generator=g)
    prior_path = os.environ.get("DSR_BENCH_PRIOR") or os.path.join(os.path.dirname(os.path.dirname(FREE_BODY_NPZ)),
                                                                    "semantic_prior.npy")
    if os.path.exists(prior_path) and np.load(prior_path).shape[0] == f.shape[0]:
        prior = torch.tensor(np.load(prior_path), dtype=torch.float32)
    else:
        prior = torch.softmax(3 * torch.randn(f.shape[0], 20, generator=g), 1)
    mc = torch.zeros(B, res, res)
    mc[:, res * 60 // 224:res * 160 // 224, res * 90 // 224:res * 130 // 224] = 1.0
    labels = torch.randint(0, 8, (B, res, res), generator=g)
    weights = torch.rand(B, 8, generator=g)
    return dict(verts=verts.to(device), cam_t=cam_t.to(device), faces=f.to(device), prior=prior.to(device),
                mc=mc.to(device), labels=labels.to(device), weights=weights.to(device), mesh=name, res=res)


def _render_step(sc, backend, k, separate, compile_kernels=False):
    """One forward + backward of the DSR render + both losses."""
    import torch

    from dsr.losses import dsr_c_loss, dsr_mc_loss
    from dsr.rendering import SemanticRenderer, semantic_prior_features

    B, res = sc["verts"].shape[0], sc["res"]
    verts = sc["verts"].clone().requires_grad_(True)
    cam_t = sc["cam_t"].clone().requires_grad_(True)
    feats = semantic_prior_features(sc["prior"], torch.ones(B, 5, device=verts.device))  # (B, F, 9)
    r = SemanticRenderer(sc["faces"], image_size=res, focal_length=focal_for(res), backend=backend,
                         faces_per_pixel=k, compile_kernels=compile_kernels).to(verts.device)
    if not separate:
        render, _ = r(verts, cam_t, feats)  # (B, 9, H, W)
    else:  # the original: 9B meshes, each rendered with one 3-channel texture
        feats9 = feats.permute(0, 2, 1).reshape(B * 9, -1, 1).expand(-1, -1, 3)
        out, _ = r(verts.repeat_interleave(9, 0), cam_t.repeat_interleave(9, 0), feats9)
        render = out.mean(1).view(B, 9, res, res)
    loss = dsr_mc_loss(render[:, 0], sc["mc"], "row").mean() + dsr_c_loss(render[:, 1:], sc["labels"],
                                                                         sc["weights"]).mean()
    loss.backward()


def _hmr_step(B, device, res=224):
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
    images = torch.randn(B, 3, res, res, device=device)

    def step():
        out = model(images)
        loss = sum(v.float().pow(2).mean() for k, v in out.items() if torch.is_tensor(v) and v.is_floating_point())
        loss.backward()

    return step, which


def _measure(job, args):
    """Runs in the child process: prints one JSON line {time_s, mem_mb, batch, note, reps}.

    job: dict(what='render'|'hmr'|'hard', backend, batch, separate)."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    what, backend, B = job["what"], job.get("backend"), int(job["batch"])
    if what == "render":
        sc = _scene(B, device, args.img_res)
        note = sc["mesh"]

        def step():
            _render_step(sc, backend, args.k, separate=job.get("separate", False), compile_kernels=args.compile)
    elif what == "hmr":
        step, note = _hmr_step(B, device, args.img_res)
    elif what == "hard":
        from dsr.rendering import rasterize

        sc = _scene(1, device)
        cam = sc["cam_t"].clone()
        cam[:, 2] = 2 * 5000.0 / (320 * 0.9)
        note = sc["mesh"]

        def step():
            rasterize(sc["verts"], cam, sc["faces"], 320, 5000.0, backend=backend)
    else:
        raise ValueError(what)
    # PyTorch3D's naive CPU kernel: one call, no warm-up
    slow = (not cuda) and backend == "pytorch3d"
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
    t = min(times) if what == "hard" else sum(times) / len(times)
    print(json.dumps(dict(time_s=t, mem_mb=mem, batch=B, note=note, reps=reps)))


def run_job(name, job, args) -> dict:
    """Measure ``job`` in a fresh subprocess; returns the job with its result or its error."""
    cmd = [sys.executable, os.path.abspath(__file__), "--job", json.dumps(job), "--device", args.device,
           "--k", str(args.k), "--threads", str(args.threads), "--reps", str(args.reps),
           "--img-res", str(args.img_res)] + (["--compile"] if args.compile else [])
    rec = dict(name=name, backend=job.get("backend"), batch=int(job["batch"]), separate=bool(job.get("separate")),
               what=job["what"])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout)
    except subprocess.TimeoutExpired:
        rec["error"] = f"timed out after {args.child_timeout:.0f} s"
        return rec
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not line:
        err = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        oom = "out of memory" in out.stderr.lower()
        rec["error"] = ("out of memory: " if oom else "") + (err[-1][:300] if err else f"exit code {out.returncode}")
        rec["stderr_tail"] = out.stderr[-2000:]
        return rec
    rec.update(json.loads(line[-1]))
    return rec


def _print(rec):
    if "error" in rec:
        print(f"({rec['name']:11s}) B={rec['batch']:4d}  FAILED: {rec['error']}", flush=True)
        return
    print(f"({rec['name']:11s}) B={rec['batch']:4d}  {rec['time_s']:8.3f} s/step  {rec['time_s'] / rec['batch']:7.3f} "
          f"s/img  peak {rec['mem_mb']:8.1f} MB  {rec['mem_mb'] / rec['batch']:7.1f} MB/img  [{rec['note']}]",
          flush=True)


def _ints(text):
    return [int(x) for x in str(text).split(",") if x.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="B (default 32 on CPU, 128 on CUDA)")
    ap.add_argument("--small-batch", type=int, default=1, help="CPU batch of the PyTorch3D runs (a'), (b)")
    ap.add_argument("--k", type=int, default=None, help="PyTorch3D faces per pixel (default: config)")
    ap.add_argument("--img-res", type=int, default=224, help="crop size in px (focal length scaled with it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="(a): window kernels through torch.compile")
    ap.add_argument("--sweep", action="store_true", help="one-pass render per backend and batch (docstring)")
    ap.add_argument("--backends", default="window,pytorch3d", help="--sweep: backends")
    ap.add_argument("--batches", default=None, help="--sweep: batch sizes (default 32,64,128 on CUDA, 1,2 on CPU)")
    ap.add_argument("--separate-batch", type=int, default=None,
                    help="--sweep: batch of the nine-render structure (b) (default 32 on CUDA, 1 on CPU; 0 = none)")
    ap.add_argument("--separate-backends", default="pytorch3d,window", help="--sweep: backends of (b)")
    ap.add_argument("--child-timeout", type=float, default=None, help="seconds per measurement (default none)")
    ap.add_argument("--json", default=None, help="write every result to this file")
    ap.add_argument("--job", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.batch is None:
        args.batch = 128 if cuda else 32
    if args.k is None:
        from dsr.config import get_cfg_defaults

        args.k = int(get_cfg_defaults().DSR.FACES_PER_PIXEL)
    if args.job:
        _measure(json.loads(args.job), args)
        return 0
    small = args.batch if cuda else args.small_batch
    if args.sweep:
        batches = _ints(args.batches) if args.batches else ([32, 64, 128] if cuda else [1, 2])
        sep_b = args.separate_batch if args.separate_batch is not None else (32 if cuda else 1)
        jobs = [(f"{be}", dict(what="render", backend=be, batch=b)) for be in args.backends.split(",") for b in batches]
        if sep_b > 0:
            jobs += [(f"9x3 {be}", dict(what="render", backend=be, batch=sep_b, separate=True))
                     for be in args.separate_backends.split(",")]
    else:
        jobs = [("a", dict(what="render", backend="window", batch=args.batch)),
                ("a1", dict(what="render", backend="pytorch3d", batch=small)),
                ("b", dict(what="render", backend="pytorch3d", batch=small, separate=True)),
                ("c", dict(what="hmr", batch=args.batch)),
                ("d_window", dict(what="hard", backend="window", batch=1)),
                ("d_pytorch3d", dict(what="hard", backend="pytorch3d", batch=1))]
    res = {}
    for name, job in jobs:
        res[name] = run_job(name, job, args)
        _print(res[name])
    print(f"\ndevice={args.device} threads={args.threads} K={args.k} img_res={args.img_res} compile={args.compile}")
    if args.json:
        from dsr.reporting import write_json_atomic

        write_json_atomic(args.json, dict(device=args.device, k=args.k, img_res=args.img_res, threads=args.threads,
                                          results=list(res.values())))
    failed = [n for n, r in res.items() if "error" in r]
    if args.sweep:
        return 1 if len(failed) == len(res) else 0
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1

    def per(k, key):
        return res[k][key] / res[k]["batch"]

    def ratio(x, y, key):
        return per(x, key) / max(per(y, key), 1e-9)

    print("per-image ratios" + (f" ((a') and (b) at batch {args.small_batch})" if not cuda else ""))
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
