"""studies/learning_curve.py: probes at the asked steps, the train probe, the mean row, resume."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from test_training import copy_free_body, make_cfg  # noqa: E402
from conftest import load_script  # noqa: E402

lc = load_script("studies/learning_curve.py")


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


def _mean_row_by_hand(tree):
    """MPJPE / PVE (mm) of the mean pose and shape on synthetic-test, computed here with smplx and numpy:
    SPIN's 6D -> rotation (Gram-Schmidt of the two columns), gendered GT meshes ('m' / 'f'), the
    H36M regressor, pelvis (joint 0) centring, the 14 LSP joints of H36M_TO_J17[:14], no alignment."""
    import smplx
    import torch
    from smplx.utils import Struct

    def body(gender):
        d = np.load(tree / "smpl" / f"SMPL_{gender.upper()}.npz")
        return smplx.SMPL(model_path="", data_struct=Struct(**{k: d[k] for k in d.files}))

    mean = np.load(tree / "smpl_mean_params.npz")
    x = mean["pose"].reshape(24, 3, 2)
    b1 = x[:, :, 0] / np.linalg.norm(x[:, :, 0], axis=1, keepdims=True)
    a2 = x[:, :, 1] - (b1 * x[:, :, 1]).sum(1, keepdims=True) * b1
    b2 = a2 / np.linalg.norm(a2, axis=1, keepdims=True)
    R = torch.tensor(np.stack([b1, b2, np.cross(b1, b2)], axis=-1), dtype=torch.float32)
    with torch.no_grad():
        pred = body("neutral")(global_orient=R[None, :1], body_pose=R[None, 1:],
                               betas=torch.tensor(mean["shape"][None, :10], dtype=torch.float32),
                               pose2rot=False).vertices[0].double().numpy()
        test = np.load(tree / "dataset_extras" / "synthetic_test.npz")
        gt = []
        for pose, shape, g in zip(test["pose"], test["shape"], test["gender"]):
            pose = torch.tensor(pose[None], dtype=torch.float32)
            gt.append(body("male" if str(g) == "m" else "female")(global_orient=pose[:, :3], body_pose=pose[:, 3:],
                                                              betas=torch.tensor(shape[None], dtype=torch.float32))
                      .vertices[0].double().numpy())
    gt = np.stack(gt)
    reg = np.load(tree / "J_regressor_h36m.npy").astype(np.float64)
    lsp = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]

    def joints(v):
        j = np.einsum("jv,...vk->...jk", reg, v)
        return (j - j[..., :1, :])[..., lsp, :]

    mpjpe = np.linalg.norm(joints(pred)[None] - joints(gt), axis=-1).mean() * 1000
    pve = np.linalg.norm(pred[None] - gt, axis=-1).mean() * 1000
    return mpjpe, pve


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

    # the mean row, pinned independently of eval_batch / summarise_eval (smplx + numpy here)
    mpjpe, pve = _mean_row_by_hand(tree)
    assert curve["mean"]["test"]["mpjpe"] == pytest.approx(mpjpe, rel=1e-4)
    assert curve["mean"]["test"]["pve"] == pytest.approx(pve, rel=1e-4)
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
