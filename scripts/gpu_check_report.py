"""The report of ``scripts/gpu_check.sh`` (its ``summary`` step, ``scripts/gpu_check.py summary``).

Reads what the steps left in the work folder (step status files, JSON results, pytest's JUnit
XML, the benchmark and training logs) and writes ``summary.md`` (every figure, each section
stating its status), ``results.json`` (the same numbers) and ``logs.tar.gz`` (the raw logs).
Standard library only, so that it runs whatever failed before. Also holds the verdict
tolerances (``SAME_TOL``, ``CROSS_TOL``) that the ``agree`` step applies.
"""
from __future__ import annotations

import datetime
import glob
import io
import json
import os
import re
import statistics
import tarfile
import xml.etree.ElementTree as ET

SAME_TOL = dict(feat_max=1e-4, loss_rel=1e-4, grad_rel=1e-3)
CROSS_TOL = dict(feat_mean=3e-4, loss_rel=2e-3)
GPU_SIZES_GB = (24, 48, 80)


def _load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_steps(work: str) -> list:
    """steps.tsv rows: name, status, seconds, log (written by gpu_check.sh)."""
    rows = []
    try:
        with open(os.path.join(work, "steps.tsv")) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) >= 4:
                    rows.append(dict(name=p[0], status=p[1], seconds=float(p[2]), log=p[3]))
    except OSError:
        pass
    return rows


def junit_counts(path: str):
    """(tests, failures + errors, skipped, [failed test names]) from a pytest junit xml; None if absent."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = sum(int(s.get("tests", 0)) for s in suites)
    bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    names = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
             if c.find("failure") is not None or c.find("error") is not None]
    return n, bad, skipped, names


THROUGHPUT_RE = {
    "train": re.compile(r"throughput: train (\d+) images in (\d+) steps, ([\d.]+) s: ([\d.naninf]+) images/s"),
    "test": re.compile(r"throughput: test (\d+) images, ([\d.]+) s: ([\d.naninf]+) images/s"),
}


def parse_throughput(text: str) -> dict:
    out = {}
    m = THROUGHPUT_RE["train"].findall(text)
    if m:
        n, steps, s, r = m[-1]
        out["train"] = dict(images=int(n), steps=int(steps), seconds=float(s), images_per_s=float(r))
    m = THROUGHPUT_RE["test"].findall(text)
    if m:
        n, s, r = m[-1]
        out["test"] = dict(images=int(n), seconds=float(s), images_per_s=float(r))
    return out


def linear_batch_estimate(points, budget_mb: float):
    """points: [(batch, peak MB)] of one backend -> the largest batch whose linear fit stays under
    ``budget_mb`` (None with fewer than two distinct batches)."""
    pts = sorted(set(points))
    if len({b for b, _ in pts}) < 2:
        return None
    (b0, m0), (b1, m1) = pts[0], pts[-1]
    slope = (m1 - m0) / (b1 - b0)
    if slope <= 0:
        return None
    return int((budget_mb - (m0 - slope * b0)) // slope)


def _f(x, fmt="{:.1f}"):
    return "n/a" if x is None else fmt.format(x)


def _status_of(steps, name):
    for s in steps:
        if s["name"] == name:
            return s
    return None


def _section_head(title, steps, names):
    st = [s for s in (_status_of(steps, n) for n in names) if s]
    tag = ", ".join(f"`{s['name']}` {s['status']} ({s['seconds']:.0f} s)" for s in st) or "not run"
    return [f"## {title}", "", f"status: {tag}", ""]


def render_section(render: dict | None, device: str):
    """Markdown lines + summary numbers of the render sweep."""
    lines, nums = [], {}
    if not render:
        return ["no results (see the step's log)."], nums
    lines += ["| backend | structure | B | ms / step | ms / image | peak MB | MB / image |", "|---|---|---:|---:|---:|---:|---:|"]
    ok = [r for r in render["results"] if "error" not in r]
    for r in render["results"]:
        struct = "nine 3-channel renders" if r.get("separate") else "one 9-channel pass"
        if "error" in r:
            lines.append(f"| {r['backend']} | {struct} | {r['batch']} | failed: {r['error'][:80]} | | | |")
            continue
        lines.append(f"| {r['backend']} | {struct} | {r['batch']} | {1e3 * r['time_s']:.1f} | "
                     f"{1e3 * r['time_s'] / r['batch']:.2f} | {r['mem_mb']:.0f} | {r['mem_mb'] / r['batch']:.1f} |")
    lines.append("")
    one = [r for r in ok if not r.get("separate")]
    nine = [r for r in ok if r.get("separate")]
    for r9 in nine:
        r1 = [r for r in one if r["backend"] == r9["backend"] and r["batch"] == r9["batch"]]
        if r1:
            t, m = r9["time_s"] / r1[0]["time_s"], r9["mem_mb"] / max(r1[0]["mem_mb"], 1e-9)
            nums[f"nine_vs_one_{r9['backend']}"] = dict(batch=r9["batch"], time_ratio=t, mem_ratio=m)
            lines.append(f"- {r9['backend']}, B = {r9['batch']}: nine 3-channel renders take {t:.2f}x the time and "
                         f"{m:.2f}x the peak memory of one 9-channel pass.")
    both = {}
    for r in one:
        both.setdefault(r["batch"], {})[r["backend"]] = r
    common = sorted(b for b, d in both.items() if {"window", "pytorch3d"} <= set(d))
    if common:
        b = 128 if 128 in common else common[-1]
        w, p = both[b]["window"], both[b]["pytorch3d"]
        faster = "window" if w["time_s"] < p["time_s"] else "pytorch3d"
        nums["backend_at"] = dict(batch=b, window_ms=1e3 * w["time_s"], pytorch3d_ms=1e3 * p["time_s"], faster=faster,
                                  window_mb=w["mem_mb"], pytorch3d_mb=p["mem_mb"])
        lines.append(f"- **faster backend at B = {b}: `{faster}`** (window {1e3 * w['time_s']:.1f} ms, "
                     f"{w['mem_mb']:.0f} MB; pytorch3d {1e3 * p['time_s']:.1f} ms, {p['mem_mb']:.0f} MB per step).")
    if device.startswith("cuda"):
        for be in ("window", "pytorch3d"):
            pts = [(r["batch"], r["mem_mb"]) for r in one if r["backend"] == be]
            est = {gb: linear_batch_estimate(pts, gb * 1024 * 0.9) for gb in GPU_SIZES_GB}
            if any(v is not None for v in est.values()):
                nums[f"render_batch_estimate_{be}"] = est
                lines.append(f"- {be}: largest render batch by a linear fit of the measured peaks, 90 % of "
                             + ", ".join(f"{gb} GB: {_f(v, '{}')}" for gb, v in est.items())
                             + " (the render alone: an extrapolation, not a measurement).")
    return lines, nums


def backend_recommendation(backend_at: dict, agree: list) -> str:
    """One sentence for DSR.RENDER_BACKEND 'auto' on CUDA (today: pytorch3d) from the measurements."""
    cross = [r for r in agree if r.get("kind") == "cross"]
    window_same = [r for r in agree if r.get("kind") == "same" and r["name"].startswith("window")]
    faster, b = backend_at["faster"], backend_at["batch"]
    head = (f"`RENDER_BACKEND: auto` on CUDA picks `pytorch3d` today; measured: `{faster}` is faster at B = {b}")
    if faster == "pytorch3d":
        if cross and cross[0]["ok"]:
            return head + ", and it agrees with the exact window render (K study criteria): keep `pytorch3d`."
        if cross:
            return head + (", but it does NOT agree with the exact window render within the K study's criteria: "
                           "check DSR.FACES_PER_PIXEL before keeping it.")
        return head + "; the agreement check did not run: undecided."
    if window_same and window_same[0]["ok"]:
        return head + (" (and exact, no K truncation), and it gives the CPU's results on the GPU: switch `auto` "
                       "to `window` on CUDA.")
    return head + "; its CPU-vs-CUDA agreement is not established: undecided."


def bench_section(name: str, path_json: str, path_md: str):
    lines, nums = [], {}
    data = _load(path_json)
    if not data or not data.get("settings"):
        return [f"### {name}", "", "no results (see the step's log).", ""], nums
    for _setting, res in data["settings"].items():
        med = {k: statistics.median(v) for k, v in res["train_times"].items() if v}
        B = res["batch_size"]
        r, bb = med.get("render"), med.get("backbone")
        full = med.get("full")
        ev = {k: statistics.median(v) for k, v in res["eval_times"].items() if v}
        ev_total = sum(ev.values()) if ev else None
        nums = dict(backbone=res["backbone"], img_res=res["img_res"], batch=B, precision=res.get("precision", "32"),
                    render_backend=res["render_backend"], render_ms=1e3 * r if r else None,
                    backbone_ms=1e3 * bb if bb else None, full_step_ms=1e3 * full if full else None,
                    render_over_backbone=(r / bb) if r and bb else None,
                    train_images_per_s=B / full if full else None,
                    eval_images_per_s=B / ev_total if ev_total else None,
                    full_step_peak_mb=res["train_mem"].get("full"))
        lines += [f"### {name}", ""]
        lines.append(f"- render / backbone time: **{_f(nums['render_over_backbone'], '{:.2f}')}** (goal <= 0.5); "
                     f"whole step {_f(nums['full_step_ms'])} ms = {_f(nums['train_images_per_s'])} images/s; "
                     f"evaluation {_f(nums['eval_images_per_s'])} images/s (serial sum); "
                     f"peak memory of the whole step {_f(nums['full_step_peak_mb'], '{:.0f}')} MB")
        lines.append("")
    try:
        with open(path_md) as f:
            md = f.read()
        body = md[md.index("\n## "):] if "\n## " in md else md
        body = re.sub(r"<!-- bench.py:\w+:(begin|end) -->\n?", "", body).strip()
        lines += [re.sub(r"^#", "###", ln) if ln.startswith("## ") or ln.startswith("### ") else ln
                  for ln in body.splitlines()] + [""]
    except OSError:
        pass
    return lines, nums


def train_section(work: str):
    lines, nums = [], {}
    log = os.path.join(work, "train", "train.log")
    try:
        with open(log) as f:
            text = f.read()
    except OSError:
        return ["no train.log (see the step's log)."], nums
    tp = parse_throughput(text)
    nums.update(tp)
    acc = _load(os.path.join(work, "train", "val_accuracy_results.json"))
    if acc:
        m = acc[-1][1]
        nums["metrics"] = {k: m.get(k) for k in ("mpjpe", "pa_mpjpe", "pve", "num_samples")}
    cfg = os.path.join(work, "train", "config_to_run.yaml")
    settings = ""
    if os.path.isfile(cfg):
        with open(cfg) as f:
            y = f.read()

        def key(section, name):
            m = re.search(rf"^{section}:\n(?:  .*\n)*?  {name}: (.*)$", y, re.M)
            return m.group(1).strip() if m else "?"

        settings = (f"{key('DSR', 'BACKBONE')}, {key('DATASET', 'IMG_RES')} px, batch {key('DATASET', 'BATCH_SIZE')}, "
                    f"precision {key('TRAINER', 'PRECISION')}, {key('TRAINING', 'MAX_STEPS')} steps, START_DSR "
                    f"{key('DSR', 'START_DSR')}, render backend {key('DSR', 'RENDER_BACKEND')}, "
                    f"{key('DATASET', 'NUM_WORKERS')} workers, pin_memory {key('DATASET', 'PIN_MEMORY')}")
        nums["settings"] = settings
    lines.append(f"- settings: {settings}")
    t = tp.get("train")
    lines.append(f"- training: **{_f(t and t['images_per_s'])} images/s** ({t['images']} images in {t['steps']} steps, "
                 f"{t['seconds']:.1f} s, after the warm-up steps)" if t else "- training: no throughput line")
    e = tp.get("test")
    lines.append(f"- evaluation (synthetic-test): **{_f(e and e['images_per_s'])} images/s** ({e['images']} images, "
                 f"{e['seconds']:.1f} s)" if e else "- evaluation: no throughput line")
    if "metrics" in nums:
        m = nums["metrics"]
        lines.append(f"- metrics after the run (mm): MPJPE {_f(m['mpjpe'])}, PA-MPJPE {_f(m['pa_mpjpe'])}, "
                     f"PVE {_f(m['pve'])} on {m['num_samples']} samples")
    return lines, nums


def summary(work: str, out: str, device: str, mode: str, budget: float) -> str:
    os.makedirs(out, exist_ok=True)
    steps = read_steps(work)
    env = _load(os.path.join(work, "env.json"), {})
    results = dict(device=device, mode=mode, budget_s=budget, steps=steps, env=env)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    used = sum(s["seconds"] for s in steps)
    L = [f"# GPU check: device `{device}`, {mode} ({when})", "",
         f"Budget {budget:.0f} s, steps took {used:.0f} s. Produced by `bash scripts/gpu_check.sh`; raw logs in "
         "`logs.tar.gz`, the same numbers in `results.json`.", "",
         "| step | status | seconds | log |", "|---|---|---:|---|"]
    L += [f"| {s['name']} | {s['status']} | {s['seconds']:.0f} | {s['log']} |" for s in steps]
    L += ["", "## Environment", ""]
    if env:
        L.append(f"- Python {env.get('python')} ({env.get('executable')}), torch CUDA {env.get('torch_cuda')}, "
                 f"CUDA available: {env.get('cuda_available')}, {env.get('cpu_count')} CPUs")
        if env.get("gpu"):
            g = env["gpu"]
            L.append(f"- GPU: {g['name']}, {g['memory_gib']} GiB, compute capability {g['capability']}, {g['count']} device(s)")
        L.append(f"- nvidia-smi: {env.get('nvidia_smi')}")
        L.append("- " + ", ".join(f"{k} {v}" for k, v in env.get("modules", {}).items()))
    bundle = _load(os.path.join(work, "bundle.json"))
    if bundle:
        L.append(f"- bundle: installed {', '.join(bundle['installed']) or 'nothing'}; already there: "
                 f"{', '.join(bundle['present']) or 'nothing'}")
    L.append("")

    # 1. tests + agreement
    L += _section_head("1. CUDA tests and agreement", steps, ["tests", "agree"])
    jc = junit_counts(os.path.join(work, "logs", "pytest.xml"))
    if jc:
        n, bad, skipped, names = jc
        results["tests"] = dict(tests=n, failed=bad, skipped=skipped, passed=n - bad - skipped, failed_names=names)
        L.append(f"- `pytest -m cuda --runslow`: {n - bad - skipped} passed, {bad} failed, {skipped} skipped "
                 f"(of {n} selected)" + (f"; failed: {', '.join(names)}" if names else ""))
        if skipped == n and n:
            L.append("  (every test skipped: no CUDA device visible)")
    else:
        L.append("- `pytest -m cuda`: no junit report")
    agree = _load(os.path.join(work, "agree.json"))
    if agree:
        results["agree"] = agree
        L += ["", "| comparison | B | px | feature max | feature mean | alpha max | DSR-MC rel | DSR-C rel | "
              "grad verts rel | grad cam rel | agree |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in agree:
            L.append(f"| {r['name']} | {r['batch']} | {r['img_res']} | {r['feat_max']:.2e} | {r['feat_mean']:.2e} | "
                     f"{r['alpha_max']:.2e} | {r['mc_rel']:.2e} | {r['c_rel']:.2e} | {r['grad_v_rel']:.2e} | "
                     f"{r['grad_t_rel']:.2e} | {'yes' if r['ok'] else '**no**'} |")
        L.append("")
        L.append(f"Criteria: same backend on two devices: feature max <= {SAME_TOL['feat_max']}, losses <= "
                 f"{SAME_TOL['loss_rel']}, gradients <= {SAME_TOL['grad_rel']} relative; pytorch3d vs the exact window "
                 f"backend: feature mean <= {CROSS_TOL['feat_mean']}, losses <= {CROSS_TOL['loss_rel']} relative "
                 "(the K study's).")
        if not device.startswith("cuda"):
            L.append("The device is the CPU: the 'cpu vs cpu' rows compare the CPU with itself.")
    else:
        L.append("- agreement: no results")
    L.append("")

    # 2. render benchmark
    L += _section_head("2. Render benchmark (forward + backward + DSR-MC / DSR-C)", steps, ["render"])
    render = _load(os.path.join(work, "render.json"))
    lines, rnums = render_section(render, device)
    L += lines
    results["render"] = dict(raw=render, **rnums)
    if "backend_at" in rnums and device.startswith("cuda"):
        rec = backend_recommendation(rnums["backend_at"], agree or [])
        results["render"]["recommendation"] = rec
        L.append(f"- {rec}")
    L.append("")

    # 3. training-step split
    L += _section_head("3. Training-step split (benchmarks/bench.py)", steps,
                       ["bench_fp32", "bench_amp", "bench_hrnet"])
    results["bench"] = {}
    for key, title in (("fp32", "ResNet-50, fp32"), ("amp", "ResNet-50, 16-mixed"), ("hrnet", "HRNet-W32, fp32")):
        lines, bnums = bench_section(title, os.path.join(work, f"bench_{key}.json"), os.path.join(work, f"bench_{key}.md"))
        L += lines
        results["bench"][key] = bnums
    # 4. train.py
    L += _section_head("4. train.py on the embedded default, then its evaluation", steps, ["train"])
    lines, tnums = train_section(work)
    L += lines + [""]
    results["train"] = tnums
    # 5. loader vs memory
    L += _section_head("5. The training step fed by the loader on real-size frames vs from memory "
                       "(benchmarks/bench_feed.py)", steps, ["feed"])
    feed = _load(os.path.join(work, "feed.json"))
    if feed and os.path.isfile(os.path.join(work, "feed.md")):
        with open(os.path.join(work, "feed.md")) as f:
            L += [f.read().rstrip(), ""]
        results["feed"] = feed
    else:
        L += ["- no results", ""]
    text = "\n".join(L) + "\n"
    for name, content in (("summary.md", text), ("results.json", json.dumps(results, indent=1, default=str))):
        with open(os.path.join(out, name + ".tmp"), "w") as f:
            f.write(content)
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    pack_logs(work, os.path.join(out, "logs.tar.gz"))
    return text


def pack_logs(work: str, path: str, max_file_mb: float = 4.0) -> None:
    """The logs, JSON results and run config into one tarball (files over ``max_file_mb`` keep their tail)."""
    files = sorted(set(glob.glob(os.path.join(work, "logs", "*")) + glob.glob(os.path.join(work, "*.json"))
                       + glob.glob(os.path.join(work, "*.md")) + glob.glob(os.path.join(work, "steps.tsv"))
                       + glob.glob(os.path.join(work, "train", "*.log"))
                       + glob.glob(os.path.join(work, "train", "*.yaml"))
                       + glob.glob(os.path.join(work, "train", "*.json"))))
    with tarfile.open(path + ".tmp", "w:gz") as t:
        for p in files:
            if not os.path.isfile(p):
                continue
            arc = os.path.relpath(p, work)
            size = os.path.getsize(p)
            if size <= max_file_mb * 2**20:
                t.add(p, arcname=arc)
                continue
            with open(p, "rb") as f:
                f.seek(size - int(max_file_mb * 2**20))
                data = f.read()
            ti = tarfile.TarInfo(arc + ".tail")
            ti.size = len(data)
            ti.mtime = int(os.path.getmtime(p))
            t.addfile(ti, io.BytesIO(data))
    os.replace(path + ".tmp", path)
