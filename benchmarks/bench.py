#!/usr/bin/env python
"""Benchmark of one DSR training step and of evaluation, split by component, all measured in one run.

    python benchmarks/bench.py [--cfg configs/quickstart_train.cfg] [--device cpu|cuda] [--batch-size B]
                            [--backbone resnet50] [--img-res 224] [--steps N] [--out docs/benchmarks.md]
                            [--precision 32|16-mixed|bf16-mixed] [--json FILE] [--opts KEY VALUE ...]

Settings: without --backbone / --img-res / --batch-size both of these are measured (each in its own
subprocess, so that peak memories do not mix):
  quickstart  the config as it is (configs/quickstart_train.cfg: resnet18, 64 px, B = 32), --steps steps
  release     the original's resnet50, 224 px, B = 32, --release-steps steps (fewer: slow on CPU)
With any of the three options one custom setting (the config with those overrides) is measured.
The focal length follows the crop: 5000 * IMG_RES / 224 (the quickstart config's own rule), so the
camera depth of a person stays the original's. --opts overrides config keys as train.py's does
(e.g. DATASET.NUM_WORKERS 8). --precision (default: the config's TRAINER.PRECISION) runs the
forward passes under autocast as Lightning does: float16 for '16-mixed' on CUDA, with a GradScaler
in the whole step (bfloat16 on CPU, where Lightning also replaces '16-mixed' by 'bf16-mixed'); the
DSR render and its losses stay float32 (DSRLoss.dsr_losses). --json writes the raw results.

Training step (one batch of the training DataLoader, DSR targets on, start_dsr=True), each
component on detached inputs so that its forward + backward is timed alone:
  data        DataLoader with DATASET.NUM_WORKERS workers, steady state (the mean period of
              back-to-back batches after the first workers x prefetch + 1), + the copy to the device
  backbone    backbone + HMR head forward, backward from the head outputs
  smpl        body model + camera (HMR.decode) forward + backward, + the no-grad GT mesh of the
              training step
  render      DSRLoss.dsr_losses (one SemanticRenderer pass + DSR-MC + DSR-C) forward + backward
  losses      every other DSRLoss term (start_dsr=False) forward + backward
  optimizer   Adam step + zero_grad
and, as a check, the whole step (model -> GT mesh -> DSRLoss -> backward -> Adam) timed end to end.
Evaluation (model.eval(), no grad, the validation DataLoader of DATASET.VAL_DS):
  data, forward (backbone + head), body (HMR.decode + H36M regression of prediction and GT mesh),
  metrics (PVE, MPJPE, Procrustes-aligned MPJPE in float64, as in DSRModule._eval_step).

Times: one warm-up call of each component, then N rounds in which every component runs once in
turn (load changes on a shared machine hit all alike); the median of the N calls, with min-max
(torch.cuda.synchronize around each call on CUDA).
Peak memory, per component, on one extra call after the timed ones:
  CPU   peak RSS growth of the process during the call: glibc's free memory is returned first
        (malloc_trim), the kernel's high-water mark is reset (/proc/self/clear_refs = 5) and
        VmHWM - VmRSS(before) is read; the data rows show the size of one collated batch (it arrives
        in shared memory), the training workers' private memory is in the notes.
  CUDA  torch.cuda.max_memory_allocated() - memory_allocated() before the call.

The markdown tables are printed and written to --out between the markers
``<!-- bench.py:<device>:begin/end -->`` (other text of the file is kept; a new file gets a title).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

TRAIN_COMPONENTS = (
    ("data", "data loading ({workers} workers) + copy to device"),
    ("backbone", "backbone + head fwd+bwd"),
    ("smpl", "SMPL + camera fwd+bwd (+ GT mesh)"),
    ("render", "semantic render + DSR-MC/C fwd+bwd"),
    ("losses", "other losses fwd+bwd"),
    ("optimizer", "Adam step + zero_grad"),
)
EVAL_COMPONENTS = (
    ("data", "data loading ({workers} workers)"),
    ("forward", "model forward (backbone + head)"),
    ("body", "body model + H36M regression (pred + GT)"),
    ("metrics", "metrics (PVE, MPJPE, PA-MPJPE)"),
)
SETTINGS = {
    "quickstart": {},  # the config as given
    "release": {"backbone": "resnet50", "img_res": 224, "batch_size": 32},
}
MARK = "<!-- bench.py:{device}:{end} -->"


# ----------------------------------------------------------------------------- pure helpers
def summarise(times: dict, order) -> list:
    """times: {component: [seconds per call]} -> [(component, median s, share of the sum of medians)].

    Components of ``order`` missing from ``times`` are skipped; an empty list of calls is an error."""
    meds = {}
    for k in order:
        if k in times:
            if not times[k]:
                raise ValueError(f"component {k!r} has no timed calls")
            meds[k] = statistics.median(times[k])
    total = sum(meds.values())
    return [(k, m, m / total if total > 0 else float("nan")) for k, m in meds.items()]


def _span(xs) -> str:
    return f"{1e3 * min(xs):.0f}-{1e3 * max(xs):.0f}"


def train_table(res: dict) -> str:
    """Markdown table of a training-step result (see ``measure``)."""
    labels = dict(TRAIN_COMPONENTS)
    rows = summarise(res["train_times"], [k for k, _ in TRAIN_COMPONENTS])
    B = res["batch_size"]
    total = sum(m for _, m, _ in rows)
    t = res["train_times"]
    lines = ["| training step component | ms / step | min-max ms | share | ms / image | peak memory (MB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for k, m, share in rows:
        lines.append(f"| {labels[k].format(workers=res['num_workers'])} | {1e3 * m:.1f} | {_span(t[k])} | "
                     f"{100 * share:.1f} % | {1e3 * m / B:.2f} | {res['train_mem'].get(k, float('nan')):.0f} |")
    lines.append(f"| **sum of components** | **{1e3 * total:.1f}** | | 100 % | {1e3 * total / B:.2f} | |")
    if "full" in t:
        full = statistics.median(t["full"])
        compute = total - (statistics.median(t["data"]) if "data" in t else 0.0)
        lines.append(f"| whole step without data, end to end (check) | {1e3 * full:.1f} | {_span(t['full'])} | "
                     f"{100 * full / compute:.0f} % of the compute rows | {1e3 * full / B:.2f} | "
                     f"{res['train_mem'].get('full', float('nan')):.0f} |")
    return "\n".join(lines)


def eval_table(res: dict) -> str:
    """Markdown table of the evaluation result: per component ms / batch, images / s, share, memory."""
    labels = dict(EVAL_COMPONENTS)
    rows = summarise(res["eval_times"], [k for k, _ in EVAL_COMPONENTS])
    B = res["batch_size"]
    total = sum(m for _, m, _ in rows)
    lines = ["| evaluation component | ms / batch | min-max ms | images / s | share | peak memory (MB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for k, m, share in rows:
        lines.append(f"| {labels[k].format(workers=res['num_workers'])} | {1e3 * m:.1f} | "
                     f"{_span(res['eval_times'][k])} | {B / m:.1f} | {100 * share:.1f} % | "
                     f"{res['eval_mem'].get(k, float('nan')):.0f} |")
    lines.append(f"| **whole evaluation (serial sum)** | **{1e3 * total:.1f}** | | **{B / total:.1f}** | 100 % | |")
    return "\n".join(lines)


def setting_section(name: str, res: dict) -> str:
    head = (f"### {name}: {res['backbone']}, {res['img_res']} px, batch {res['batch_size']}, "
            f"{res['steps']} timed steps (median), render backend `{res['render_backend']}`"
            + (f", precision {res['precision']}" if res.get("precision", "32") not in ("32", "32-true") else "")
            + "\n")
    notes = "".join(f"- {n}\n" for n in res.get("notes", []))
    return f"{head}\n{train_table(res)}\n\n{eval_table(res)}\n\n{notes}"


def update_doc(text: str, device: str, section: str) -> str:
    """Replace (or append) the block between this device's markers in ``text``."""
    begin, end = MARK.format(device=device, end="begin"), MARK.format(device=device, end="end")
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if not text.strip():
        text = "# Benchmarks\n\nFigures measured by `benchmarks/bench.py` (training step and evaluation split by " \
               "component) and `benchmarks/bench_render.py` (the render step alone).\n"
    i, j = text.find(begin), text.find(end)
    if (i < 0) != (j < 0) or (i >= 0 and j < i):
        raise ValueError(f"the benchmark file has a broken {begin} ... {end} pair")
    if i < 0:
        return text.rstrip() + "\n\n" + block + "\n"
    return text[:i] + block + text[j + len(end):]


# ----------------------------------------------------------------------------- machine / memory
def machine_description(device: str, threads: int, omp_wait_policy: str = "") -> list:
    import torch

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    out = [f"CPU: {cpu}, {os.cpu_count()} logical cores ({usable} usable), {mem}",
           f"Python {platform.python_version()}, torch {torch.__version__}, torch threads {threads}, "
           f"device `{device}`",
           f"OMP_WAIT_POLICY={omp_wait_policy or os.environ.get('OMP_WAIT_POLICY', '(unset)')}",
           "load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())]
    if device.startswith("cuda"):
        out.append(f"GPU: {torch.cuda.get_device_name(torch.device(device))}, CUDA {torch.version.cuda}")
    return out


def _status_kb(key: str, pid="self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    raise KeyError(key)


def _private_mb(pid) -> float:
    """Private (unshared) memory of a process, MB (smaps_rollup)."""
    kb = 0.0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                kb += float(line.split()[1])
    return kb / 1024


class PeakMemory:
    """Peak memory growth (MB) over a ``with`` block: CUDA allocator stats, or the process's RSS."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.mb = float("nan")

    def __enter__(self):
        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except OSError:
                pass
            try:
                with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
                    f.write("5")
                self.hwm = True
                self.base = _status_kb("VmRSS")
            except OSError:  # no VmHWM reset: growth of the lifetime peak (a lower bound)
                self.hwm = False
                self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            peak = _status_kb("VmHWM") if self.hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.mb = max(peak - self.base, 0.0) / 1024
        return False


# ----------------------------------------------------------------------------- measurement (child)
def _timed(components, n, device) -> dict:
    """components: [(key, fn, reset or None)] -> {key: [n seconds]}.

    One warm-up call of each, then n rounds calling every component once in turn (so that a change
    of machine load hits all of them alike); ``reset`` runs before each call, untimed."""
    import torch

    cuda = device.type == "cuda"
    times = {key: [] for key, _, _ in components}
    for i in range(n + 1):
        for key, fn, reset in components:
            if reset is not None:
                reset()
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            if i:
                times[key].append(time.perf_counter() - t0)
    return times


def _memory(fn, device, reset=None) -> float:
    if reset is not None:
        reset()
    with PeakMemory(device) as pm:
        fn()
    return pm.mb


def _to(batch, device):
    import torch

    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _loader_rate(loader, n, device):
    """(per-batch period in s at steady state, start-up s, first batch on the device, memory MB,
    workers' private MB): back-to-back batches, the first num_workers * prefetch_factor + 1 not timed.

    A loader with fewer than skip + n + 1 batches times as many as it has after the skipped ones
    (at least one); with none left the periods are None (the data row is then not measured)."""
    import torch

    cuda = device.type == "cuda"
    # skip the batches the workers may have ready before the first arrives (prefetch), time the rest
    skip = loader.num_workers * (loader.prefetch_factor or 0) + 1
    if len(loader) < 1:
        raise ValueError("the dataset gives no full batch (lower --batch-size)")
    n = min(n, len(loader) - skip - 1)
    t0 = time.perf_counter()
    it = iter(loader)
    first = _to(next(it), device)
    startup = time.perf_counter() - t0
    if n < 1:
        del it
        return None, startup, first, float("nan"), []
    for _ in range(skip - 1):
        _to(next(it), device)
    if cuda:
        torch.cuda.synchronize()
    periods = []
    for _ in range(n):
        t0 = time.perf_counter()
        b = _to(next(it), device)
        if cuda:
            torch.cuda.synchronize()
        periods.append(time.perf_counter() - t0)
        del b
    with PeakMemory(device) as pm:
        b = _to(next(it), device)
    mem = pm.mb
    if not cuda:  # the batch arrives in shared memory, not resident until touched: count its bytes
        mem = sum(v.nbytes for v in b.values() if torch.is_tensor(v)) / 2**20
    del b
    workers = [w.pid for w in getattr(it, "_workers", [])]
    try:
        wmem = [_private_mb(p) for p in workers]
    except OSError:
        wmem = []
    del it
    # the workers hand batches over in turn: a single period is 0 or ~num_workers x the mean,
    # so the per-batch cost is their mean, reported as n equal values
    mean = sum(periods) / len(periods)
    return [mean] * n, startup, first, mem, wmem


def measure(args, setting: dict) -> dict:
    import torch

    from dsr.config import load_config, merge_opts
    from dsr.data.loader import build_train_dataset, build_val_dataset, train_dataloader, val_dataloader
    from dsr.evaluation import metrics
    from dsr.evaluation.protocols import MESH_GT_DATASETS, centre_and_select, gt_from_s
    from dsr.lightning_module import DSRModule
    from dsr.rendering.semantic_renderer import resolve_backend

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = merge_opts(load_config(args.cfg), args.opts)
    cfg.defrost()
    if cfg.METHOD != "dsr":
        raise SystemExit(f"{args.cfg}: METHOD is {cfg.METHOD!r}; the benchmark needs 'dsr' (the DSR terms)")
    if setting.get("backbone"):
        cfg.DSR.BACKBONE = setting["backbone"]
    if setting.get("img_res"):
        cfg.DATASET.FOCAL_LENGTH = float(cfg.DATASET.FOCAL_LENGTH) * setting["img_res"] / cfg.DATASET.IMG_RES
        cfg.DATASET.IMG_RES = int(setting["img_res"])
    if setting.get("batch_size"):
        cfg.DATASET.BATCH_SIZE = int(setting["batch_size"])
    if args.precision:
        cfg.TRAINER.PRECISION = args.precision
    cfg.TRAINING.PRETRAINED = None
    cfg.freeze()
    n = int(setting["steps"])
    B = int(cfg.DATASET.BATCH_SIZE)
    notes = []
    precision = str(cfg.TRAINER.PRECISION)
    amp_dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    if amp_dtype is torch.float16 and device.type != "cuda":
        amp_dtype = torch.bfloat16
        notes.append("precision 16-mixed on CPU runs as bf16-mixed (as Lightning does)")

    def amp():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()

    scaler = torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None

    module = DSRModule(cfg).to(device)
    model, loss_fn = module.model, module.loss_fn
    if loss_fn.renderer is None:
        raise SystemExit(f"{args.cfg}: both DSR loss weights are 0: nothing to render")
    res = dict(backbone=cfg.DSR.BACKBONE, img_res=int(cfg.DATASET.IMG_RES), batch_size=B, steps=n,
               num_workers=int(cfg.DATASET.NUM_WORKERS), render_backend=resolve_backend(loss_fn.renderer.backend, device),
               precision=precision, train_times={}, train_mem={}, eval_times={}, eval_mem={}, notes=notes)
    tt, tm = res["train_times"], res["train_mem"]

    # ---- training: data
    loader = train_dataloader(cfg, build_train_dataset(cfg))
    periods, startup, batch, tm["data"], wmem = _loader_rate(loader, n, device)
    if periods:
        tt["data"] = periods
    else:
        notes.append(f"training data loading not timed: {len(loader)} batches are too few for "
                     f"{loader.num_workers} workers")
    del loader
    notes.append(f"training DataLoader: start-up (workers + first batch) {startup:.2f} s"
                 + (f"; workers' private memory {', '.join(f'{m:.0f}' for m in wmem)} MB" if wmem else ""))
    img = batch["img"]
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.OPTIMIZER.LR, weight_decay=cfg.OPTIMIZER.WD)
    params = [p for p in model.parameters() if p.requires_grad]

    def clear_grads():
        model.zero_grad(set_to_none=True)

    # reference outputs (and gradient-shaped tensors) of one full forward
    with torch.no_grad():
        head_ref = model.head(model.backbone(img))
        pred_ref = model.decode(dict(head_ref))
        batch["gt_vertices"] = module._gt_mesh(batch["pose"], batch["betas"]).vertices
    if not bool((batch["valid_labels_dsr_mc"].sum(1) > 0).any()):
        raise SystemExit(f"no sample of the first training batch has a valid DSR-MC label (batch {B}, "
                         f"{cfg.DATASET.IMG_RES} px: the masks' minimum pixel counts are not met): nothing would be "
                         "rendered; use a larger batch or crop")
    head_keys = ("pred_pose", "pred_shape", "pred_cam")
    head_grads = [torch.randn_like(head_ref[k]) * 1e-3 for k in head_keys]
    out_keys = ("smpl_vertices", "smpl_joints3d", "smpl_joints2d", "pred_cam_t")
    out_grads = [torch.randn_like(pred_ref[k]) * 1e-3 for k in out_keys]

    def backbone_step():
        with amp():
            out = model.head(model.backbone(img))
        torch.autograd.backward([out[k] for k in head_keys], head_grads)

    def smpl_step():
        inp = {k: head_ref[k].detach().clone().requires_grad_(True) for k in head_keys}
        with amp():
            out = model.decode(inp)
            with torch.no_grad():
                module._gt_mesh(batch["pose"], batch["betas"])
        torch.autograd.backward([out[k] for k in out_keys], out_grads)

    def leaf_pred():
        return {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in pred_ref.items()}

    def render_step():
        pred = leaf_pred()
        with amp():
            l_mc, l_c, _ = loss_fn.dsr_losses(pred, batch)
        (loss_fn.dsr_mc_loss_weight * l_mc.mean() + loss_fn.dsr_c_loss_weight * l_c.mean()).backward()

    def losses_step():
        with amp():
            loss, _ = loss_fn(leaf_pred(), batch, start_dsr=False)
        loss.backward()

    def full_step():
        with amp():
            pred = model(img)
            with torch.no_grad():
                batch["gt_vertices"] = module._gt_mesh(batch["pose"], batch["betas"]).vertices
            loss, _ = loss_fn(pred, batch, start_dsr=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)

    fake = [torch.randn_like(p) * 1e-3 for p in params]

    def set_grads():
        for p, g in zip(params, fake):
            p.grad = g.clone()

    def opt_step():
        opt.step()
        opt.zero_grad(set_to_none=True)

    snapshot = [p.detach().clone() for p in params]

    def restore_and_clear():  # every full step starts from the same weights (untimed)
        with torch.no_grad():
            for p, q in zip(params, snapshot):
                p.copy_(q)
        clear_grads()

    comps = [("backbone", backbone_step, clear_grads), ("smpl", smpl_step, None), ("render", render_step, None),
             ("losses", losses_step, None), ("full", full_step, restore_and_clear), ("optimizer", opt_step, set_grads)]
    tt.update(_timed(comps, n, device))
    for key, fn, reset in comps:
        tm[key] = _memory(fn, device, reset)
    print(f"[{cfg.DSR.BACKBONE} {cfg.DATASET.IMG_RES}px] training: " + ", ".join(
        f"{k} {1e3 * statistics.median(tt[k]):.0f} ms" for k, _, _ in comps), file=sys.stderr, flush=True)
    restore_and_clear()
    del batch, head_ref, pred_ref, fake, snapshot

    # ---- evaluation
    et, em = res["eval_times"], res["eval_mem"]
    ds = cfg.DATASET.VAL_DS
    loader = val_dataloader(cfg, build_val_dataset(cfg))
    periods, _, vb, em["data"], _ = _loader_rate(loader, n, device)
    if periods:
        et["data"] = periods
    else:
        notes.append(f"evaluation data loading not timed: {len(loader)} batches are too few for "
                     f"{loader.num_workers} workers")
    del loader
    model.eval()
    body = model.body
    vimg = vb["img"]
    with torch.no_grad():
        head_out = model.head(model.backbone(vimg))
        pv = model.decode(dict(head_out))["smpl_vertices"]
        pj = centre_and_select(body.regress_h36m_joints(pv), ds)
        if ds in MESH_GT_DATASETS:
            gv = module._gt_vertices_gendered(vb)
            gj = centre_and_select(body.regress_h36m_joints(gv), ds)
        else:
            gv, gj = None, gt_from_s(vb["pose_3d"].to(pj.dtype), ds)

    def eval_forward():
        with torch.no_grad(), amp():
            model.head(model.backbone(vimg))

    def eval_body():
        with torch.no_grad(), amp():
            v = model.decode(dict(head_out))["smpl_vertices"]
            centre_and_select(body.regress_h36m_joints(v), ds)
            if gv is not None:
                centre_and_select(body.regress_h36m_joints(module._gt_vertices_gendered(vb)), ds)

    def eval_metrics():
        with torch.no_grad():
            if gv is not None:
                metrics.pve(pv, gv)
            p64, g64 = pj.double(), gj.double()
            (p64 - g64).norm(dim=-1)
            (metrics.similarity_procrustes(p64, g64) - g64).norm(dim=-1)

    comps = [("forward", eval_forward, None), ("body", eval_body, None), ("metrics", eval_metrics, None)]
    et.update(_timed(comps, n, device))
    for key, fn, _ in comps:
        em[key] = _memory(fn, device)
    print(f"[{cfg.DSR.BACKBONE} {cfg.DATASET.IMG_RES}px] evaluation: " + ", ".join(
        f"{k} {1e3 * statistics.median(et[k]):.0f} ms" for k, _, _ in comps), file=sys.stderr, flush=True)
    notes.append(f"evaluation on `{ds}`; memory: " + (
        "torch.cuda.max_memory_allocated growth per component" if device.type == "cuda" else
        "peak RSS growth of the main process per component (after malloc_trim, VmHWM reset)"))
    return res


# ----------------------------------------------------------------------------- driver
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default=os.path.join("configs", "quickstart_train.cfg"))
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--backbone", default=None, help="e.g. resnet50")
    ap.add_argument("--img-res", type=int, default=None, help="crop size (focal length scaled with it)")
    ap.add_argument("--steps", type=int, default=5, help="timed calls per component (quickstart / custom)")
    ap.add_argument("--release-steps", type=int, default=None,
                    help="timed calls per component of the release setting (default: --steps on CUDA, "
                         "min(--steps, 2) on CPU)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--omp-wait-policy", default="PASSIVE",
                    help="OMP_WAIT_POLICY of the measuring processes ('' = inherit). PASSIVE by default: on a "
                         "CPU shared with other jobs, spinning OpenMP threads made a ResNet step ~12x slower "
                         "with 2 threads here")
    ap.add_argument("--out", default=os.path.join("docs", "benchmarks.md"), help="markdown file, relative to the repository root ('' = print only)")
    ap.add_argument("--precision", default=None, choices=("32", "16-mixed", "bf16-mixed"),
                    help="autocast of the measured forward passes (default: the config's TRAINER.PRECISION)")
    ap.add_argument("--json", default=None, help="also write the raw results ({setting: result}) to this file")
    ap.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="override config keys")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    cuda = args.device.startswith("cuda")
    args.cfg = os.path.abspath(args.cfg)
    if not os.path.isfile(args.cfg):
        ap.error(f"--cfg {args.cfg}: no such file")
    if args.child is not None:
        print("RESULT " + json.dumps(measure(args, json.loads(args.child))), flush=True)
        return 0
    if cuda:
        import torch

        if not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA device is visible to torch")
    if args.backbone or args.img_res or args.batch_size:
        settings = {"custom": dict(backbone=args.backbone, img_res=args.img_res, batch_size=args.batch_size,
                                   steps=args.steps)}
    else:
        rel = args.release_steps or (args.steps if cuda else min(args.steps, 2))
        settings = {"quickstart": dict(SETTINGS["quickstart"], steps=args.steps),
                    "release": dict(SETTINGS["release"], steps=rel)}
    passthrough = ["--cfg", args.cfg, "--device", args.device, "--threads", str(args.threads)]
    if args.precision:
        passthrough += ["--precision", args.precision]
    if args.opts:
        passthrough += ["--opts", *args.opts]
    sections = []
    results = {}
    t_start = time.time()
    for name, setting in settings.items():
        cmd = [sys.executable, os.path.abspath(__file__), *passthrough, "--child", json.dumps(setting)]
        env = dict(os.environ)
        if args.omp_wait_policy:
            env["OMP_WAIT_POLICY"] = args.omp_wait_policy
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"setting {name} failed (exit code {proc.returncode})", file=sys.stderr)
            return 1
        res = json.loads(line[-1][len("RESULT "):])
        results[name] = res
        sec = setting_section(name, res)
        print("\n" + sec, flush=True)
        sections.append(sec)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(os.path.abspath(__file__), REPO),
                                                             *(argv if argv is not None else sys.argv[1:])])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"## `benchmarks/bench.py` on {args.device} ({when}, {time.time() - t_start:.0f} s)\n\n"
              + "".join(f"- {m}\n" for m in machine_description(args.device, args.threads,
                                                                  args.omp_wait_policy))
              + f"- command: `{command}`\n"
              + "- shares are of the serial sum of the components; in training the DataLoader workers run "
                "alongside the compute (and, on a CPU machine, share its cores); the data rows are the mean "
                "period of back-to-back batches (hence no min-max spread)\n\n")
    section = header + "\n".join(sections)
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(dict(device=args.device, command=command, machine=machine_description(
                args.device, args.threads, args.omp_wait_policy), settings=results), f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    if args.out:
        path = os.path.join(REPO, args.out) if not os.path.isabs(args.out) else args.out
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = open(path).read() if os.path.exists(path) else ""
        new = update_doc(old, "cuda" if cuda else "cpu", section)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(new)
        os.replace(tmp, path)
        print(f"\nwritten to {os.path.relpath(path, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
