"""scripts/gpu_check.sh --device cpu --quick end to end (every step at toy sizes, in a copy of the
repository so that the toy data do not touch ./dsr_data), and the summary's helpers by hand."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
from conftest import load_script  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
gc = load_script("scripts/gpu_check_report.py")

STEPS = ("env", "data", "tests", "agree", "render", "bench_fp32", "bench_amp", "train", "bench_hrnet", "feed")
NUM = r"[0-9]+(?:\.[0-9]+)?(?:e[-+][0-9]+)?"


def _section(text: str, title: str) -> str:
    i = text.index(f"## {title}")
    j = text.find("\n## ", i + 1)
    return text[i:] if j < 0 else text[i:j]


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu_check")
    repo = base / "repo"
    shutil.copytree(REPO, repo, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "dsr_data", "logs", "gpu_bundle", "__pycache__", ".pytest_cache", "*.ckpt"))
    out, work = base / "out", base / "work"
    env = dict(os.environ, OUT=str(out), GPU_CHECK_WORK=str(work), PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)  # the script puts the copy first itself
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--device", "cpu", "--quick"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=1200)
    return proc, out, work, repo


def test_cpu_quick_every_step_ok(cpu_run):
    proc, out, work, repo = cpu_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (out / "summary.md").read_text()
    rows = dict(re.findall(r"^\| (\w+) \| ([^|]+) \| \d+ \|", text, re.M))
    assert {k: rows.get(k, "").strip() for k in STEPS} == {k: "ok" for k in STEPS}, proc.stdout[-4000:]
    # what comes back from the device machine: at most 8 small files, no folder
    files = sorted(p.name for p in out.iterdir())
    assert files == ["logs.tar.gz", "results.json", "summary.md"]
    assert all((out / f).stat().st_size < 2 * 2**20 for f in files)
    # the toy data went into the copy, built by prepare_data.sh at the requested size
    import numpy as np

    assert len(np.load(repo / "dsr_data" / "dataset_extras" / "synthetic_test.npz")["imgname"]) == 12


def test_cpu_quick_summary_has_every_figure(cpu_run):
    _, out, _, _ = cpu_run
    text = (out / "summary.md").read_text()
    res = json.loads((out / "results.json").read_text())
    # 1. tests (all skipped without CUDA, counted from the junit report) and the agreement table
    s1 = _section(text, "1. CUDA tests and agreement")
    m = re.search(r"(\d+) passed, (\d+) failed, (\d+) skipped \(of (\d+) selected\)", s1)
    assert m and int(m.group(2)) == 0 and int(m.group(3)) == int(m.group(4)) > 0
    for name in ("window: cpu vs cpu", "pytorch3d: cpu vs cpu", "pytorch3d (K=64) vs window, cpu"):
        assert re.search(rf"\| {re.escape(name)} \| 1 \| \d+ \| {NUM} \| {NUM} \|", s1), name
    # the CPU compared with itself: identical renders and losses
    same = [r for r in res["agree"] if r["kind"] == "same"]
    assert len(same) == 2 and all(r["feat_max"] == 0 and r["mc_rel"] == 0 and r["c_rel"] == 0 for r in same)
    # 2. render benchmark: both backends, and the nine-render structure against the one pass
    s2 = _section(text, "2. Render benchmark")
    for backend, struct in (("window", "one 9-channel pass"), ("pytorch3d", "one 9-channel pass"),
                            ("window", "nine 3-channel renders")):
        assert re.search(rf"\| {backend} \| {struct} \| 1 \| {NUM} \| {NUM} \| {NUM} \| {NUM} \|", s2), (backend, struct)
    assert re.search(rf"nine 3-channel renders take {NUM}x the time", s2)
    assert re.search(r"faster backend at B = 1: `(window|pytorch3d)`", s2)
    assert "RENDER_BACKEND" not in s2  # no CUDA recommendation from a CPU run
    # 3. training-step split: three settings, each with the render / backbone ratio and its table
    s3 = _section(text, "3. Training-step split")
    for title in ("ResNet-50, fp32", "ResNet-50, 16-mixed", "HRNet-W32, fp32"):
        sub = s3[s3.index(f"### {title}"):]
        assert re.search(rf"render / backbone time: \*\*{NUM}\*\*", sub), title
        assert re.search(rf"\| semantic render \+ DSR-MC/C fwd\+bwd \| {NUM} \|", sub), title
    b = res["bench"]
    assert (b["fp32"]["precision"], b["amp"]["precision"], b["hrnet"]["backbone"]) == ("32", "16-mixed", "hrnet_w32")
    assert all(v["batch"] == 2 and v["img_res"] == 128 for v in b.values())
    # 4. train.py: 4 steps of 2 images, the first one not counted; the 12 test images
    s4 = _section(text, "4. train.py")
    assert re.search(rf"training: \*\*{NUM} images/s\*\* \(6 images in 3 steps", s4)
    assert re.search(rf"evaluation \(synthetic-test\): \*\*{NUM} images/s\*\* \(12 images", s4)
    assert re.search(rf"MPJPE {NUM}, PA-MPJPE {NUM}, PVE {NUM} on 12 samples", s4)
    assert res["train"]["train"]["images"] == 6 and res["train"]["test"]["images"] == 12
    # 5. the step fed by the loader vs from memory: the toy run's two worker counts
    s5 = _section(text, "5. The training step fed by the loader")
    assert re.search(rf"From memory: \*\*{NUM} images/s\*\*", s5)
    for nw in (0, 1):
        assert re.search(rf"^\| {nw} \| {NUM} \| {NUM} \| \d+ % \|$", s5, re.M), nw
    f = res["feed"]
    assert [r["workers"] for r in f["rows"]] == [0, 1] and f["batch_size"] == 2 and f["size"] == "320x240"
    for r in f["rows"]:  # the share is the ratio of the two measured rates
        assert r["fed_over_memory"] == pytest.approx(r["fed_images_per_s"] / f["from_memory_images_per_s"])
        assert r["loader_items_per_s"] > 0 and r["fed_images_per_s"] > 0
    # the raw logs travel in one tarball
    with tarfile.open(out / "logs.tar.gz") as t:
        names = set(t.getnames())
    assert {"logs/tests.log", "logs/pytest.xml", "logs/render.log", "train/train.log", "render.json",
            "bench_hrnet.json", "feed.json", "steps.tsv"} <= names


def test_budget_exhausted_steps_are_recorded_as_skipped(tmp_path):
    """With no budget left every step is skipped, recorded, and the summary still says so."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "dsr_data", "logs", "gpu_bundle", "__pycache__", ".pytest_cache"))
    env = dict(os.environ, OUT=str(tmp_path / "out"), GPU_CHECK_WORK=str(tmp_path / "work"), PYTHON=sys.executable,
               GPU_CHECK_BUDGET_S="1")
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--device", "cpu"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp_path / "out" / "summary.md").read_text()
    rows = dict(re.findall(r"^\| (\w+) \| ([^|]+) \| \d+ \|", text, re.M))
    assert {k: rows[k].strip() for k in STEPS} == {k: "skipped (budget)" for k in STEPS}
    assert "no results" in _section(text, "2. Render benchmark")


def test_bad_arguments_exit_2(tmp_path):
    for args in (["--device", "tpu"], ["--fast"]):
        proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu_check.sh"), *args],
                              env=dict(os.environ, OUT=str(tmp_path / "o")), capture_output=True, text=True)
        assert proc.returncode == 2 and "gpu_check:" in proc.stderr


def test_linear_batch_estimate_by_hand():
    # peaks 1000 MB at B = 32 and 3000 MB at B = 128: 20.833 MB per sample + 333.3 MB fixed
    est = gc.linear_batch_estimate([(32, 1000.0), (64, 1700.0), (128, 3000.0)], 24 * 1024 * 0.9)
    assert est == int((24 * 1024 * 0.9 - (1000 - 2000 / 96 * 32)) // (2000 / 96))
    assert gc.linear_batch_estimate([(32, 1000.0)], 1e5) is None


def test_backend_recommendation_cases():
    same_ok = dict(kind="same", name="window: cpu vs cuda", ok=True)
    at = dict(batch=128, faster="pytorch3d")
    assert "keep `pytorch3d`" in gc.backend_recommendation(at, [same_ok, dict(kind="cross", name="x", ok=True)])
    assert "NOT agree" in gc.backend_recommendation(at, [dict(kind="cross", name="x", ok=False)])
    at = dict(batch=128, faster="window")
    assert "switch `auto` to `window`" in gc.backend_recommendation(at, [same_ok])
    assert "undecided" in gc.backend_recommendation(at, [dict(same_ok, ok=False)])


def test_parse_throughput_reads_the_runner_lines():
    text = ("... | INFO | throughput: train 25600 images in 190 steps, 95.20 s: 268.9 images/s (after 10 warm-up ...)\n"
            "... | INFO | throughput: test 500 images, 3.10 s: 161.3 images/s (from the first batch's start ...)\n")
    tp = gc.parse_throughput(text)
    assert tp["train"] == dict(images=25600, steps=190, seconds=95.2, images_per_s=268.9)
    assert tp["test"] == dict(images=500, seconds=3.1, images_per_s=161.3)
