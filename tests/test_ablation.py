"""studies/ablation.py: the per-variant reduction and the table (values by hand)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import load_script  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ablation = load_script("studies/ablation.py")


def test_summarise_mean_and_std():
    runs = [{"mpjpe": 100.0, "pa_mpjpe": 50.0, "pve": 120.0}, {"mpjpe": 110.0, "pa_mpjpe": 54.0, "pve": 130.0},
            {"mpjpe": 120.0, "pa_mpjpe": 52.0, "pve": 140.0}]
    (row,) = ablation.summarise({"2d+dsr": runs})
    assert row["n"] == 3
    assert row["mpjpe"] == pytest.approx((110.0, (200 / 3) ** 0.5))  # population std of 100,110,120
    assert row["pa_mpjpe"] == pytest.approx((52.0, (8 / 3) ** 0.5))
    text = ablation.markdown([row], "# t")
    assert "| 2d+dsr | 3 | 110.0 ± 8.2 | 52.0 ± 1.6 | 130.0 ± 8.2 |" in text


def test_final_metrics_reads_the_test_entry(tmp_path):
    assert ablation.final_metrics(str(tmp_path)) is None
    hist = [[10, {"stage": "val", "mpjpe": 1.0}], [20, {"stage": "test", "mpjpe": 2.0}]]
    (tmp_path / "val_accuracy_results.json").write_text(json.dumps(hist))
    assert ablation.final_metrics(str(tmp_path))["mpjpe"] == 2.0


def test_variants_differ_only_in_dsr_keys():
    assert set(ablation.VARIANTS) >= {"2d-only", "2d+dsr", "2d+dsr-mc", "2d+dsr-c"}
    for opts in ablation.VARIANTS.values():
        assert all(k.startswith("DSR.") for k in opts[0::2])
    assert len({ablation.run_dir_name(v, 0) for v in ablation.VARIANTS}) == len(ablation.VARIANTS)


def test_write_doc_keeps_the_prose_around_the_table(tmp_path):
    doc = tmp_path / "ablation.md"
    ablation.write_doc(str(doc), "| a |\n")
    assert doc.read_text() == ("# DSR ablation in miniature (synthetic data, 2D-only supervision)\n\n"
                               f"{ablation.BEGIN}\n| a |\n{ablation.END}\n")
    doc.write_text(f"intro\n{ablation.BEGIN}\n| a |\n{ablation.END}\nfindings\n")
    ablation.write_doc(str(doc), "| b |\n")
    assert doc.read_text() == f"intro\n{ablation.BEGIN}\n| b |\n{ablation.END}\nfindings\n"


def test_run_seconds_from_the_run_files(tmp_path):
    (tmp_path / "config_to_run.yaml").write_text("x")
    (tmp_path / "val_accuracy_results.json").write_text("[]")
    os.utime(tmp_path / "config_to_run.yaml", (1000.0, 1000.0))
    os.utime(tmp_path / "val_accuracy_results.json", (1234.5, 1234.5))
    assert ablation.run_seconds(str(tmp_path)) == 234.5


def test_single_run_rows_have_no_spread():
    (row,) = ablation.summarise({"start": [{"mpjpe": 232.86, "pa_mpjpe": 129.19, "pve": 260.11}]})
    assert "| start | 1 | 232.9 | 129.2 | 260.1 |" in ablation.markdown([row], "# t")


def test_write_doc_second_table_is_appended_then_replaced(tmp_path):
    doc = tmp_path / "ablation.md"
    doc.write_text(f"intro\n{ablation.BEGIN}\n| a |\n{ablation.END}\nfindings\n")
    ablation.write_doc(str(doc), "| m |\n", ablation.MIXED_BEGIN, ablation.MIXED_END)
    assert doc.read_text() == (f"intro\n{ablation.BEGIN}\n| a |\n{ablation.END}\nfindings\n\n"
                               f"{ablation.MIXED_BEGIN}\n| m |\n{ablation.MIXED_END}\n")
    ablation.write_doc(str(doc), "| m2 |\n", ablation.MIXED_BEGIN, ablation.MIXED_END)
    ablation.write_doc(str(doc), "| a2 |\n")
    assert doc.read_text() == (f"intro\n{ablation.BEGIN}\n| a2 |\n{ablation.END}\nfindings\n\n"
                               f"{ablation.MIXED_BEGIN}\n| m2 |\n{ablation.MIXED_END}\n")


def _fake_split(root, n, tag):
    """A synthetic-training-like npz of n rows with one image and mask file each."""
    rng = np.random.default_rng(len(tag))
    names = [f"images/train/{tag}{i}.jpg" for i in range(n)]
    for name in names:
        for path in (root / name, root / "grph_sequences" / name.replace(".jpg", ".png")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(tag)
    d = {"imgname": np.array(names), "center": rng.normal(size=(n, 2)), "scale": rng.uniform(1, 2, n),
         "part": rng.normal(size=(n, 24, 3)), "openpose": rng.normal(size=(n, 25, 3)), "S": rng.normal(size=(n, 24, 4)),
         "pose": rng.normal(size=(n, 72)), "shape": rng.normal(size=(n, 10)), "gender": np.array(["m", "f"] * (n // 2)),
         "has_smpl": np.ones(n, np.float32)}
    np.savez(root / "train.npz", **d)
    return d


def test_build_mixed_flags_and_links(tmp_path):
    """Part A's rows keep their 3D labels (has_smpl = has_pose_3d = 1), domain b's lose them (0, zero
    pose / shape / S) and keep their 2D keypoints; every image and mask resolves through the links."""
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    da, db = _fake_split(tmp_path / "A", 4, "a"), _fake_split(tmp_path / "B", 2, "b")
    root, npz = ablation.build_mixed(str(tmp_path / "A"), str(tmp_path / "A" / "train.npz"),
                                     str(tmp_path / "B"), str(tmp_path / "B" / "train.npz"), str(tmp_path / "mix"))
    m = np.load(npz)
    assert m["imgname"].tolist() == [f"a/images/train/a{i}.jpg" for i in range(4)] + ["b/images/train/b0.jpg", "b/images/train/b1.jpg"]
    assert m["has_smpl"].tolist() == [1, 1, 1, 1, 0, 0] and m["has_pose_3d"].tolist() == [1, 1, 1, 1, 0, 0]
    np.testing.assert_array_equal(m["S"][:4], da["S"])
    np.testing.assert_array_equal(m["pose"][:4], da["pose"])
    assert not m["S"][4:].any() and not m["pose"][4:].any() and not m["shape"][4:].any()
    np.testing.assert_array_equal(m["part"][4:], db["part"])
    np.testing.assert_array_equal(m["center"], np.concatenate([da["center"], db["center"]]))
    for name in m["imgname"]:
        assert open(os.path.join(root, name)).read() == name[0]
        stem = os.path.splitext(name)[0]
        assert open(os.path.join(root, "grph_sequences", stem + ".png")).read() == name[0]
    ablation.build_mixed(str(tmp_path / "A"), str(tmp_path / "A" / "train.npz"),  # again: links reused
                         str(tmp_path / "B"), str(tmp_path / "B" / "train.npz"), str(tmp_path / "mix"))
