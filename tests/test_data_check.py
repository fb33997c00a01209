"""tools/check_data.py on a tiny fake data tree: every problem is named, a clean tree passes."""
import os

import cv2
import numpy as np

from dsr.body.toy import write_toy_model
from dsr.config import get_cfg_defaults
from conftest import load_script  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_script():
    return load_script("tools/check_data.py")


def _tree(tmp_path):
    paths = write_toy_model(str(tmp_path / "body"))
    F = int(np.load(os.path.join(paths["model_dir"], "SMPL_NEUTRAL.npz"))["f"].shape[0])
    prior = np.full((F, 20), 1 / 20)
    np.save(tmp_path / "body" / "semantic_prior.npy", prior)
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "grph_sequences" / "images").mkdir(parents=True)
    names = []
    for i in range(3):
        cv2.imwrite(str(root / f"images/{i}.jpg"), np.full((40, 30, 3), 128, np.uint8))
        m = np.zeros((40, 30, 3), np.uint8)
        m[5:10, 5:10] = (0, 0, 255)  # BGR; RGB (255, 0, 0) = hair, a palette colour
        m[10:30, 5:25] = (255, 0, 0)  # RGB (0, 0, 255) = face: > 60 px in the 224 crop, a DSR-MC label
        cv2.imwrite(str(root / f"grph_sequences/images/{i}.png"), m)
        names.append(f"images/{i}.jpg")
    n = 3
    part = np.zeros((n, 24, 3))
    part[:, :, :] = (15.0, 20.0, 1.0)  # confident keypoints: the DSR background-removal box
    np.savez(tmp_path / "train.npz", imgname=np.array(names), center=np.full((n, 2), 20.0), scale=np.ones(n),
             part=part)
    np.savez(tmp_path / "test.npz", imgname=np.array(names), center=np.full((n, 2), 20.0), scale=np.ones(n),
             pose=np.zeros((n, 72)), shape=np.zeros((n, 10)), gender=np.array(["m", "f", "m"]))
    cfg = get_cfg_defaults()
    cfg.METHOD = "dsr"
    cfg.PATHS.SMPL_MODEL_DIR = paths["model_dir"]
    cfg.PATHS.JOINT_REGRESSOR_TRAIN_EXTRA = paths["extra"]
    cfg.PATHS.JOINT_REGRESSOR_H36M = paths["h36m"]
    cfg.PATHS.SMPL_MEAN_PARAMS = paths["mean_params"]
    cfg.PATHS.SEMANTIC_PRIOR = str(tmp_path / "body" / "semantic_prior.npy")
    cfg.PATHS.DATASET_NPZ_PATH = str(tmp_path)
    cfg.PATHS.DATASET_FOLDERS["synthetic"] = str(root)
    cfg.PATHS.DATASET_FOLDERS["synthetic-test"] = str(root)
    cfg.PATHS.TRAIN_FILES["synthetic"] = "train.npz"
    cfg.PATHS.TEST_FILES["synthetic-test"] = "test.npz"
    cfg.DATASET.TRAIN_DS = "synthetic"
    cfg.DATASET.VAL_DS = "synthetic-test"
    return cfg, root


def test_clean_tree_passes(tmp_path):
    cd = _load_script()
    cfg, _ = _tree(tmp_path)
    rep = cd.run(cfg)
    assert rep.problems == [], rep.problems
    assert len(rep.rows) >= 12
    detail = {item: d for item, _, _, d in rep.rows}
    assert detail["synthetic mask coverage"] == "3/3 rows (100.0%)"
    # per mask: 25 hair + 400 face pixels of 1200
    assert "hair 2.1% (3/3)" in detail["synthetic mask labels"] and "face 33.3% (3/3)" in detail["synthetic mask labels"]
    assert "DSR-MC target empty 0 (0.0%)" in detail["synthetic DSR targets"]


def test_empty_targets_and_row_failures_are_problems(tmp_path):
    cd = _load_script()
    cfg, root = _tree(tmp_path)
    for i in range(3):  # hair only: no DSR-MC label, but a foreground class for DSR-C
        m = np.zeros((40, 30, 3), np.uint8)
        m[5:35, 5:25] = (0, 0, 255)
        cv2.imwrite(str(root / f"grph_sequences/images/{i}.png"), m)
    rep = cd.run(cfg)
    (item, _, _, detail), = rep.problems
    assert item == "synthetic DSR targets"
    assert "DSR-MC target empty 3 (100.0%)" in detail and "DSR-C target empty (no foreground class > 60 px) 0" in detail
    d = dict(np.load(tmp_path / "train.npz"))
    d["part"][1] = 0  # no confident keypoint: the loader cannot build row 1's targets
    np.savez(tmp_path / "train.npz", **d)
    rep = cd.run(cfg)
    (item, _, _, detail), = rep.problems
    assert "1 rows failed: row 1:" in detail and "no keypoint has confidence" in detail


def test_problems_are_named(tmp_path):
    cd = _load_script()
    cfg, root = _tree(tmp_path)
    os.remove(root / "grph_sequences/images/1.png")  # 1 of 3 missing > 1 %
    m = np.zeros((40, 30, 3), np.uint8)
    m[0, 0] = (1, 2, 3)  # not a palette colour
    m[10:30, 5:25] = (255, 0, 0)  # face, so that not every DSR-MC target is empty
    cv2.imwrite(str(root / "grph_sequences/images/2.png"), m)
    os.remove(root / "images/0.jpg")
    np.save(cfg.PATHS.SEMANTIC_PRIOR, np.ones((5, 20)))
    cfg.PATHS.TEST_FILES["synthetic-test"] = "nope.npz"
    rep = cd.run(cfg)
    text = "\n".join(f"{i} {p} {d}" for i, p, _, d in rep.problems)
    assert "semantic_prior" in text
    assert "images/0.jpg (missing)" in text
    assert "grph_sequences/images/1.png" in text and "2/3 present" in text
    assert "grph_sequences/images/2.png (1 non-palette colours" in text
    assert "nope.npz" in text
    assert len(rep.problems) == 5


def test_ssp3d_and_emdb_eval_files(tmp_path):
    """check_data knows the protocol keys of EMDB / SSP-3D and samples the SSP-3D silhouettes."""
    import sys

    sys.path.insert(0, os.path.join(REPO, "tests"))
    import emdb_fixtures as fx

    from dsr.data.preprocess.__main__ import main as preprocess_main

    mod = _load_script()
    cfg, _ = _tree(tmp_path)
    cfg.RUN_TEST = True
    ssp = tmp_path / "ssp"
    fx.make_ssp3d_tree(str(ssp))
    assert preprocess_main(["ssp-3d", "--root", str(ssp), "--out", str(tmp_path / "out")]) == 0
    cfg.PATHS.DATASET_NPZ_PATH = str(tmp_path / "out" / "dataset_extras")
    cfg.PATHS.DATASET_FOLDERS["ssp-3d"] = str(ssp)
    cfg.DATASET.VAL_DS = "ssp-3d"
    rep = mod.run(cfg, samples=5)
    rows = {r[0]: r for r in rep.rows}
    assert rows["ssp-3d protocol keys"][2] and rows["ssp-3d silhouettes"][2], rep.rows
    os.remove(ssp / "silhouettes" / "person_0001.png")
    rows = {r[0]: r for r in mod.run(cfg, samples=5).rows}
    assert not rows["ssp-3d silhouettes"][2] and "person_0001.png (missing)" in rows["ssp-3d silhouettes"][3]
    # an EMDB file without its sequence / frame keys (e.g. a 3DPW-style npz under the emdb-1 name)
    d = dict(np.load(tmp_path / "out" / "dataset_extras" / "ssp3d_test.npz"))
    np.savez(tmp_path / "out" / "dataset_extras" / "emdb1_test.npz",
             **{k: d[k] for k in ("imgname", "center", "scale", "pose", "shape", "gender")})
    cfg.PATHS.DATASET_FOLDERS["emdb-1"] = str(ssp)
    cfg.DATASET.VAL_DS = "emdb-1"
    rows = {r[0]: r for r in mod.run(cfg, samples=5).rows}
    assert not rows["emdb-1 protocol keys"][2] and "['sequence', 'frame']" in rows["emdb-1 protocol keys"][3]
