"""benchmarks/bench_report.py (the markdown of benchmarks/bench.py): the ratio / table helpers and the doc
update (pure functions, no measurement)."""
from __future__ import annotations


import pytest
from conftest import load_script  # noqa: E402

bench = load_script("benchmarks/bench_report.py")


def test_summarise_medians_and_shares():
    times = {"b": [3.0, 1.0, 2.0], "a": [4.0, 100.0, 6.0, 5.0], "zzz": [7.0]}
    rows = bench.summarise(times, ["a", "b", "missing"])
    # medians by hand: a -> (5 + 6) / 2 = 5.5, b -> 2; shares of 7.5; 'zzz' not in the order
    assert [r[0] for r in rows] == ["a", "b"]
    assert rows[0][1] == pytest.approx(5.5) and rows[1][1] == pytest.approx(2.0)
    assert rows[0][2] == pytest.approx(5.5 / 7.5) and rows[1][2] == pytest.approx(2.0 / 7.5)


def test_summarise_rejects_empty_component():
    with pytest.raises(ValueError, match="'a'"):
        bench.summarise({"a": []}, ["a"])


def _result():
    return dict(batch_size=4, num_workers=2, backbone="resnet18", img_res=128, steps=3, render_backend="window",
                train_times={"data": [0.1] * 3, "backbone": [0.3, 0.2, 0.4], "smpl": [0.1] * 3,
                             "render": [0.4] * 3, "losses": [0.05] * 3, "optimizer": [0.05] * 3,
                             "full": [0.9] * 3},
                train_mem={"data": 1.0, "backbone": 100.0, "render": 50.0},
                eval_times={"data": [0.2] * 3, "forward": [0.1] * 3, "body": [0.05] * 3, "metrics": [0.05] * 3},
                eval_mem={"forward": 10.0}, notes=["a note"])


def test_train_table_figures():
    table = bench.train_table(_result())
    lines = table.splitlines()
    assert len(lines) == 2 + 6 + 2  # header, rule, components, sum, end-to-end check
    # backbone: median 0.3 s of a 1.0 s sum -> 300.0 ms, 30.0 %, 75.00 ms per image (B = 4)
    assert "| backbone + head fwd+bwd | 300.0 | 200-400 | 30.0 % | 75.00 | 100 |" in lines
    assert "| data loading (2 workers) + copy to device | 100.0 | 100-100 | 10.0 % | 25.00 | 1 |" in lines
    assert "| **sum of components** | **1000.0** |" in table
    # end to end 0.9 s against the compute rows (1.0 - 0.1 data = 0.9 s): 100 %
    assert "| 900.0 | 900-900 | 100 % of the compute rows |" in table
    assert "| other losses fwd+bwd | 50.0 | 50-50 | 5.0 % | 12.50 | nan |" in lines  # memory not measured


def test_eval_table_throughput():
    table = bench.eval_table(_result())
    # forward: 0.1 s per batch of 4 -> 40 images / s, 25 % of 0.4 s; whole: 4 / 0.4 = 10 images / s
    assert "| model forward (backbone + head) | 100.0 | 100-100 | 40.0 | 25.0 % | 10 |" in table
    assert "| **whole evaluation (serial sum)** | **400.0** | | **10.0** | 100 % | |" in table


def test_update_doc_replaces_only_its_block():
    first = bench.update_doc("", "cpu", "CPU ONE")
    assert first.startswith("# Benchmarks") and "CPU ONE" in first
    text = first + "\n## Render benchmark\nkept text\n"
    text = bench.update_doc(text, "cuda", "GPU ONE")
    text = bench.update_doc(text, "cpu", "CPU TWO")
    assert "CPU ONE" not in text and "CPU TWO" in text and "GPU ONE" in text and "kept text" in text
    assert text.count("<!-- bench.py:cpu:begin -->") == 1 and text.count("<!-- bench.py:cuda:end -->") == 1
    with pytest.raises(ValueError, match="broken"):
        bench.update_doc("<!-- bench.py:cpu:begin -->\nno end\n", "cpu", "x")
