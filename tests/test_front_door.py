"""The mission's commands in a clone without the licensed files: a user's mistake (a missing or
malformed file) prints what is wrong and where to get it, exits 2, creates no run directory and
shows no traceback (tracebacks are for bugs)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from test_training import copy_free_body  # noqa: E402


def _run(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=REPO)
    for k in ("DSR_RUN_DIR", "LOCAL_RANK", "NODE_RANK"):
        env.pop(k, None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("cfg", ["dsr_eval.cfg", "dsr_train.cfg"])
def test_train_without_licensed_files_lists_them_and_exits_2(tmp_path, cfg):
    res = _run([os.path.join(REPO, "train.py"), "--cfg", os.path.join(REPO, "configs", cfg)], cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert os.listdir(tmp_path) == []  # no run directory (logs/...) and no config copy
    problems = [ln for ln in res.stderr.splitlines() if ln.startswith("  - ")]
    hints = [ln for ln in res.stderr.splitlines() if ln.startswith("      get it: ")]
    assert len(problems) == len(hints) > 0
    err = res.stderr
    # the files every release config reads, each named with its source
    assert "smpl models: dsr_data/smpl" in err and "https://smpl.is.tue.mpg.de" in err
    assert "J_regressor_h36m: dsr_data/J_regressor_h36m.npy" in err and "github.com/nkolot/SPIN" in err
    assert "semantic_prior: dsr_data/semantic_prior.npy" in err and "github.com/saidwivedi/DSR" in err
    assert "3dpw npz: dsr_data/dataset_extras/3dpw_test_with_mmpose.npz" in err
    assert "python -m dsr.data.preprocess 3dpw" in err
    if cfg == "dsr_train.cfg":  # the training mixture (TRAIN_DS 'all'): each of its datasets
        for name in ("h36m", "coco", "mpi-inf-3dhp"):
            assert f"  - {name} npz: " in err and f"python -m dsr.data.preprocess {name} " in err


def test_train_names_a_malformed_file(tmp_path):
    """Every file present (the free body as dsr_data/) but one regressor of the wrong shape: that one
    line says which file and what shape was expected."""
    root = tmp_path / "dsr_data"
    copy_free_body(root)
    np.save(root / "J_regressor_h36m.npy", np.zeros((3, 5), np.float32))
    res = _run([os.path.join(REPO, "train.py"), "--cfg", os.path.join(REPO, "configs", "dsr_eval.cfg")], cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("  - J_regressor_h36m:"))
    assert "dsr_data/J_regressor_h36m.npy" in line and "shape (3, 5), expected (17, 6890)" in line
    assert "  - smpl" not in res.stderr  # the body model itself is fine
    assert sorted(os.listdir(tmp_path)) == ["dsr_data"]


def test_user_error_during_the_run_is_one_line(tmp_path):
    """--skip-checks: the body model error of the run itself ends the run with status 2, no traceback."""
    res = _run([os.path.join(REPO, "train.py"), "--cfg", os.path.join(REPO, "configs", "dsr_eval.cfg"),
                "--skip-checks"], cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "BodyModelError: SMPL model folder not found: 'dsr_data/smpl'" in res.stderr


@pytest.mark.parametrize("dataset", ["3dpw", "coco", "h36m", "mpi-inf-3dhp"])
def test_preprocess_missing_root(tmp_path, dataset):
    res = _run(["-m", "dsr.data.preprocess", dataset, "--root", str(tmp_path / "nowhere"), "--out",
                str(tmp_path / "out")], cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert str(tmp_path / "nowhere") in res.stderr
    assert not (tmp_path / "out").exists()


def test_parsing_masks_missing_weights(tmp_path):
    (tmp_path / "photos").mkdir()
    res = _run([os.path.join(REPO, "tools", "make_parsing_masks.py"), "--parser", "schp-lip", "--weights",
                str(tmp_path / "lip.pth"), "--img-folder", str(tmp_path / "photos"), "--out", str(tmp_path / "o")],
               cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "lip.pth" in res.stderr and res.stderr.strip().startswith("error:")
