"""studies/learning_curve.py: probes at the asked steps, the train probe, the mean row, resume."""
from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from test_training import copy_free_body, make_cfg  # noqa: E402

spec = importlib.util.spec_from_file_location("learning_curve", os.path.join(REPO, "studies", "learning_curve.py"))
lc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lc)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from dsr.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("lc") / "dsr_data"
    copy_free_body(root)
    make_synthetic(str(root / "dataset_folders" / "synthetic"), str(root / "dataset_extras"), n_train=8, n_test=4,
                   seed=5, progress=False)
    return root


def _cfg_file(tree, tmp_path, **over):
    cfg = make_cfg(tree, tmp_path, **{"DATASET.IMG_RES": 64, "DATASET.FOCAL_LENGTH": 5000 * 64 / 224,
                                      "TRAINING.LIMIT_TRAIN_BATCHES": 1.0, "TRAINING.LIMIT_VAL_BATCHES": 1.0, **over})
    path = tmp_path / "curve.cfg"
    path.write_text(cfg.dump())
    return str(path), cfg


def _test_metrics(cfg, ckpt=None, mean=False):
    """The test pass of train.py's Lightning loop on synthetic-test (independent of the probe)."""
    from dsr.lightning_module import DSRModule
    from dsr.runner import build_trainer

    cfg = cfg.clone()
    cfg.TRAINING.PRETRAINED = ckpt
    cfg.TESTING.MEAN_PARAMS_BASELINE = mean
    module = DSRModule(cfg)
    build_trainer(cfg).test(module)
    return module.last_eval


def test_probes_mean_row_and_resume(tree, tmp_path):
    path, cfg = _cfg_file(tree, tmp_path)
    out = tmp_path / "curve"
    assert lc.main(["--cfg", path, "--out-dir", str(out), "--steps", "2", "4", "--train-rows", "3"]) == 0
    curve = json.loads((out / "curve.json").read_text())
    assert [r["step"] for r in curve["rows"]] == [2, 4]
    # batch 2, 8 people: 4 steps per epoch
    assert [(r["images"], r["epoch"]) for r in curve["rows"]] == [(4, 0), (8, 0)]
    assert all(r["test"]["num_samples"] == 4 and r["train"]["num_samples"] == 3 for r in curve["rows"])
    probe = np.load(out / "train_probe.npz")
    train = np.load(tree / "dataset_extras" / "synthetic_train.npz")
    assert "S" not in probe.files
    np.testing.assert_array_equal(probe["pose"], train["pose"][:3])
    np.testing.assert_array_equal(probe["imgname"], train["imgname"][:3])

    # the mean row and the last probe equal train.py's own test pass (mean baseline; last.ckpt of step 4)
    mean = _test_metrics(cfg, mean=True)
    last = _test_metrics(cfg, ckpt=str(out / "run" / "checkpoints" / "last.ckpt"))
    for k in ("mpjpe", "pa_mpjpe", "pve"):
        assert curve["mean"]["test"][k] == pytest.approx(mean[k], rel=1e-5)
        assert curve["rows"][-1]["test"][k] == pytest.approx(last[k], rel=1e-5)
    assert curve["rows"][-1]["test"]["pa_mpjpe"] != pytest.approx(curve["mean"]["test"]["pa_mpjpe"], rel=1e-6)

    # again with one more probe: the rows so far are kept, training continues from step 4's checkpoint
    assert lc.main(["--cfg", path, "--out-dir", str(out), "--steps", "2", "4", "6", "--train-rows", "3"]) == 0
    again = json.loads((out / "curve.json").read_text())
    assert again["rows"][:2] == curve["rows"] and again["mean"] == curve["mean"]
    assert (again["rows"][2]["step"], again["rows"][2]["images"], again["rows"][2]["epoch"]) == (6, 12, 1)
    assert "| 6 | 1 |" in (out / "curve.md").read_text()


def test_train_probe_needs_smpl(tmp_path):
    np.savez(tmp_path / "t.npz", imgname=np.array(["a.jpg"]), center=np.zeros((1, 2)), scale=np.ones(1))
    with pytest.raises(SystemExit, match="lacks"):
        lc.write_train_probe(str(tmp_path / "t.npz"), 5, str(tmp_path / "p.npz"))
