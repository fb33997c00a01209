"""Markdown of ``benchmarks/bench.py``: the per-component tables, a setting's section, the machine
lines and the update of ``docs/benchmarks.md`` between per-device markers (pure functions).

A result (``bench_measure.measure``) is a dict: backbone, img_res, batch_size, steps, num_workers,
render_backend, precision, train_times / eval_times {component: [seconds per call]},
train_mem / eval_mem {component: MB}, notes [str].
"""
from __future__ import annotations

import os
import platform
import statistics

from dsr.reporting import replace_block

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
MARK = "<!-- bench.py:{device}:{end} -->"
DOC_TITLE = ("# Benchmarks\n\nFigures measured by `benchmarks/bench.py` (training step and evaluation split by "
             "component) and `benchmarks/bench_render.py` (the render step alone).\n")


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
    return replace_block(text, begin, end, section, title=DOC_TITLE)


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
