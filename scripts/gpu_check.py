#!/usr/bin/env python
"""The Python half of ``scripts/gpu_check.sh`` (which runs the steps; see its header).

    python scripts/gpu_check.py env      --json FILE [--bundle-log FILE]
    python scripts/gpu_check.py agree    --device cuda --json FILE [--batch 2 --img-res 112 --cross-batch 8 ...]
    python scripts/gpu_check.py summary  --work DIR --out DIR [--device cuda] [--mode full]

env      versions of Python, torch, CUDA and every package the project imports (marked "(bundle)"
         when imported from $GPU_CHECK_SITE, the unpacked bundle), the GPU (torch and nvidia-smi).
agree    the render backends against each other and across devices, on the SMPL-sized free body
         (the scene of benchmarks/bench_render.py: scales 0.7-1.1, 9 DSR channels of the semantic
         prior), forward + backward of DSR-MC (row nIOU) + DSR-C against a fixed target (the
         reference render's own MC mask and class argmax shifted by 3 px, as studies/k_study.py):
           window CPU vs window DEVICE, pytorch3d CPU vs pytorch3d DEVICE   (--batch, --img-res)
           pytorch3d (K = DSR.FACES_PER_PIXEL) vs window on DEVICE          (--cross-batch, --cross-res)
         Per comparison: max and mean |feature difference| over the covered pixels (reference
         alpha > 1e-3, 9 channels), max |alpha difference|, relative difference of each loss and of
         the gradients (norm of the difference over the reference's norm). Verdicts: the same backend
         on two devices agrees when features differ by <= 1e-4 (the tolerance of the renderer tests
         against the brute-force reference), losses by <= 1e-4 and gradients by <= 1e-3 relative;
         pytorch3d agrees with the exact window backend under the K study's criteria (mean feature
         error <= 3e-4, each DSR loss within 2e-3 relative).
summary  reads what the steps left in --work and writes --out/summary.md (every figure, each
         section stating its status), --out/results.json (the same numbers) and --out/logs.tar.gz
         (the raw logs): scripts/gpu_check_report.py, standard library only, so that it runs
         whatever failed before.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from gpu_check_report import CROSS_TOL, SAME_TOL, summary  # noqa: E402

MODULES = ("torch", "torchvision", "pytorch_lightning", "pytorch3d", "smplx", "yacs", "loguru", "roma", "iopath",
           "cv2", "scipy", "numpy", "tensorboard", "yaml", "tqdm", "pytest")


# ----------------------------------------------------------------------------- env
def env_info() -> dict:
    import importlib
    import importlib.metadata as md

    dists = md.packages_distributions()
    site = os.path.realpath(os.environ["GPU_CHECK_SITE"]) if os.environ.get("GPU_CHECK_SITE") else ""
    out = dict(python=sys.version.split()[0], executable=sys.executable, modules={})
    for m in MODULES:
        try:
            mod = importlib.import_module(m)
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            out["modules"][m] = f"MISSING ({type(e).__name__}: {str(e)[:120]})"
            continue
        version = getattr(mod, "__version__", None)
        if version is None:
            for d in dists.get(m, []):
                try:
                    version = md.version(d)
                    break
                except md.PackageNotFoundError:
                    pass
        f = os.path.realpath(getattr(mod, "__file__", None) or "")
        from_bundle = bool(site) and f.startswith(site + os.sep)
        out["modules"][m] = f"{version or '?'}" + (" (bundle)" if from_bundle else "")
    try:
        import torch

        out["torch_cuda"] = torch.version.cuda
        out["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            out["gpu"] = dict(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), count=torch.cuda.device_count(),
                              capability=f"{p.major}.{p.minor}")
        out["cpu_threads"] = torch.get_num_threads()
    except Exception as e:  # noqa: BLE001
        out["torch_error"] = str(e)[:300]
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        out["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        out["nvidia_smi"] = f"not available ({type(e).__name__})"
    out["cpu_count"] = os.cpu_count()
    return out


# ----------------------------------------------------------------------------- agree
def _render(sc, backend, device, k, target=None):
    """Forward + backward of the DSR losses on ``device``; everything returned on the CPU in float64."""
    import torch

    from bench_render import focal_for
    from dsr.losses import dsr_c_loss, dsr_mc_loss
    from dsr.rendering import SemanticRenderer, semantic_prior_features

    B, res = sc["verts"].shape[0], sc["res"]
    verts = sc["verts"].to(device).clone().requires_grad_(True)
    cam_t = sc["cam_t"].to(device).clone().requires_grad_(True)
    feats = semantic_prior_features(sc["prior"].to(device), torch.ones(B, 5, device=device))
    r = SemanticRenderer(sc["faces"].to(device), image_size=res, focal_length=focal_for(res), backend=backend,
                         faces_per_pixel=k).to(device)
    out, alpha = r(verts, cam_t, feats)
    if target is None:  # the fixed target: this render's own MC mask and class argmax, shifted by 3 px
        target = (torch.roll((out[:, 0] > 0.5).float(), 3, dims=2).detach().cpu(),
                  torch.roll(out[:, 1:].argmax(1), 3, dims=2).detach().cpu())
    mc_t, c_t = (t.to(device) for t in target)
    l_mc = dsr_mc_loss(out[:, 0], mc_t, "row").mean()
    l_c = dsr_c_loss(out[:, 1:], c_t, torch.ones(B, 8, device=device)).mean()
    (l_mc + l_c).backward()
    cpu = dict(feat=out.detach().double().cpu(), alpha=alpha.detach().double().cpu(), mc=l_mc.item(), c=l_c.item(),
               gv=verts.grad.double().cpu(), gt=cam_t.grad.double().cpu())
    return cpu, target


def compare(ref: dict, other: dict) -> dict:
    """Differences of ``other`` against ``ref`` (outputs of :func:`_render`)."""
    covered = ref["alpha"] > 1e-3  # (B, H, W)
    df = (other["feat"] - ref["feat"]).abs().permute(1, 0, 2, 3)[:, covered]
    da = (other["alpha"] - ref["alpha"]).abs()

    def rel(a, b):
        return abs(a - b) / max(abs(b), 1e-12)

    def grel(a, b):
        return float((a - b).norm() / b.norm().clamp(min=1e-12))

    return dict(feat_max=float(df.max()) if df.numel() else 0.0, feat_mean=float(df.mean()) if df.numel() else 0.0,
                alpha_max=float(da.max()), mc_rel=rel(other["mc"], ref["mc"]), c_rel=rel(other["c"], ref["c"]),
                grad_v_rel=grel(other["gv"], ref["gv"]), grad_t_rel=grel(other["gt"], ref["gt"]),
                covered_px=int(covered.sum()), loss_mc=ref["mc"], loss_c=ref["c"])


def verdict(row: dict, kind: str) -> bool:
    if kind == "same":
        return (row["feat_max"] <= SAME_TOL["feat_max"] and max(row["mc_rel"], row["c_rel"]) <= SAME_TOL["loss_rel"]
                and max(row["grad_v_rel"], row["grad_t_rel"]) <= SAME_TOL["grad_rel"])
    return row["feat_mean"] <= CROSS_TOL["feat_mean"] and max(row["mc_rel"], row["c_rel"]) <= CROSS_TOL["loss_rel"]


def agreement(device: str, batch: int, img_res: int, cross_batch: int, cross_res: int, k: int) -> list:
    import torch

    from bench_render import _scene

    rows = []
    dev = torch.device(device)
    sc = _scene(batch, "cpu", img_res, seed=1)
    for backend in ("window", "pytorch3d"):
        t0 = time.perf_counter()
        ref, target = _render(sc, backend, torch.device("cpu"), k)
        other, _ = _render(sc, backend, dev, k, target)
        row = dict(name=f"{backend}: cpu vs {device}", kind="same", batch=batch, img_res=img_res, **compare(ref, other))
        row.update(ok=verdict(row, "same"), seconds=time.perf_counter() - t0)
        rows.append(row)
        print(json.dumps(row), flush=True)
    sc = _scene(cross_batch, "cpu", cross_res, seed=2)
    t0 = time.perf_counter()
    ref, target = _render(sc, "window", dev, k)
    other, _ = _render(sc, "pytorch3d", dev, k, target)
    row = dict(name=f"pytorch3d (K={k}) vs window, {device}", kind="cross", batch=cross_batch, img_res=cross_res,
               **compare(ref, other))
    row.update(ok=verdict(row, "cross"), seconds=time.perf_counter() - t0)
    rows.append(row)
    print(json.dumps(row), flush=True)
    return rows


# ----------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("env")
    p.add_argument("--json", required=True)
    p.add_argument("--require-cuda", action="store_true", help="exit 3 when torch sees no CUDA device")
    p = sub.add_parser("agree")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--img-res", type=int, default=112)
    p.add_argument("--cross-batch", type=int, default=8)
    p.add_argument("--cross-res", type=int, default=224)
    p.add_argument("--k", type=int, default=None, help="PyTorch3D faces per pixel (default: the config's)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", required=True)
    p = sub.add_parser("summary")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--mode", default="full")
    p.add_argument("--budget", type=float, default=0.0)
    args = ap.parse_args(argv)
    if args.cmd == "env":
        info = env_info()
        print(f"Python {info['python']} ({info['executable']}), torch CUDA {info.get('torch_cuda')}, "
              f"CUDA available: {info.get('cuda_available')}, GPU: {info.get('gpu')}")
        print(", ".join(f"{k} {v}" for k, v in info["modules"].items()))
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
        missing = [m for m, v in info["modules"].items() if v.startswith("MISSING")]
        if args.require_cuda and not info.get("cuda_available"):
            print("no CUDA device visible to torch: run `bash scripts/gpu_check.sh --device cpu` instead",
                  file=sys.stderr)
            return 3
        if missing:
            print(f"missing modules: {', '.join(missing)}", file=sys.stderr)
            return 1
        return 0
    if args.cmd == "agree":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        if args.k is None:
            from dsr.config import get_cfg_defaults

            args.k = int(get_cfg_defaults().DSR.FACES_PER_PIXEL)
        rows = agreement(args.device, args.batch, args.img_res, args.cross_batch, args.cross_res, args.k)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
        return 0 if all(r["ok"] for r in rows) else 1
    summary(args.work, args.out, args.device, args.mode, args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
