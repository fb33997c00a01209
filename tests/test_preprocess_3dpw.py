"""python -m dsr.data.preprocess 3dpw on a fabricated raw tree: 3DPW's latin-1 sequence pickles with
a few frames and people whose values are known; the npz compared with values computed by hand."""
from __future__ import annotations

import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
import torch

from dsr.data.preprocess.__main__ import main as cli
from conftest import load_script  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREE = os.path.join(REPO, "dsr", "assets", "free_body")


def rot(axis: str, deg: float) -> np.ndarray:
    """Rotation matrix about a coordinate axis, written out."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def aa(axis: str, deg: float) -> np.ndarray:
    return np.radians(deg) * np.eye(3)["xyz".index(axis)]


def cam_pose(R, t):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def poses2d_frame(xs, ys, conf):
    """(3, 18) in 3DPW's layout: rows x, y, confidence; columns the 18 OpenPose-COCO points."""
    return np.stack([np.asarray(xs, float), np.asarray(ys, float), np.asarray(conf, float)])


def write_sequence(folder, name, people, cam_poses, K=None):
    """A 3DPW sequence pickle (latin-1 readable, protocol 2 as the download's Python 2 files)."""
    N = len(cam_poses)
    data = {
        "sequence": name,
        "poses": [p["poses"] for p in people],
        "betas": [p["betas"] for p in people],
        "trans": [p.get("trans", np.zeros((N, 3))) for p in people],
        "poses2d": [p["poses2d"] for p in people],
        "genders": [p["gender"] for p in people],
        "campose_valid": [np.asarray(p["valid"], dtype=np.int64) for p in people],
        "cam_poses": np.asarray(cam_poses),
        "cam_intrinsics": np.array([[1000.0, 0, 540], [0, 1000.0, 960], [0, 0, 1]]) if K is None else K,
        "img_frame_ids": np.arange(N),
        "jointPositions": [np.zeros((N, 72)) for _ in people],
        "betas_clothed": [np.zeros(10) for _ in people],
    }
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".pkl"), "wb") as f:
        pickle.dump(data, f, protocol=2)


def spread_points(x0, x1, y0, y1, n=18, rng=None):
    """18 points whose extremes are exactly x0, x1, y0, y1 (the others strictly inside)."""
    rng = rng or np.random.default_rng(0)
    xs = rng.uniform(x0 + 1, x1 - 1, n)
    ys = rng.uniform(y0 + 1, y1 - 1, n)
    xs[0], xs[1], ys[2], ys[3] = x0, x1, y0, y1
    return xs, ys


@pytest.fixture
def raw_tree(tmp_path):
    """Two sequences; 'outdoors_z' is written first, 'downtown_a' sorts first."""
    rng = np.random.default_rng(1)
    seq = tmp_path / "3dpw" / "sequenceFiles" / "test"
    body = rng.normal(0, 0.2, (4, 69))
    cams = [cam_pose(rot("z", 90), [0.1, 0, 3]), cam_pose(rot("y", 45), [0, 0, 4]),
            cam_pose(np.eye(3), [0, 0, 5]), cam_pose(rot("x", -30), [0, 0.2, 4])]
    # person 0 (male): root 90 deg about x, frame 2 has an invalid camera pose, frame 3 no confident point
    p0 = np.concatenate([np.tile(aa("x", 90), (4, 1)), body], axis=1)
    xs, ys = spread_points(100, 300, 50, 450, rng=rng)
    conf = np.full(18, 0.5)
    xs_far, ys_far, conf_far = xs.copy(), ys.copy(), conf.copy()
    xs_far[10], ys_far[10], conf_far[10] = 900.0, 1900.0, 0.0  # conf 0: not part of the box
    p2d0 = np.stack([poses2d_frame(xs_far, ys_far, conf_far),
                     poses2d_frame(*spread_points(10, 110, 20, 60, rng=rng), conf),
                     poses2d_frame(xs, ys, conf),
                     poses2d_frame(xs, ys, np.zeros(18))])
    # person 1 (female): root 60 deg about z, all frames valid, boxes wider than high
    p1 = np.concatenate([np.tile(aa("z", 60), (4, 1)), -body], axis=1)
    p2d1 = np.stack([poses2d_frame(*spread_points(0, 500, 100, 200, rng=rng), conf) for _ in range(4)])
    betas0, betas1 = np.arange(1, 11) / 10.0, -np.arange(1, 11) / 20.0
    write_sequence(seq, "outdoors_z", [{"poses": p1[:2], "betas": betas1, "poses2d": p2d1[:2], "gender": "f",
                                        "valid": [1, 1]}], cams[:2])
    write_sequence(seq, "downtown_a", [
        {"poses": p0, "betas": np.concatenate([betas0, [7.0, 7.0]]), "poses2d": p2d0, "gender": "m",
         "valid": [1, 1, 0, 1]},
        {"poses": p1, "betas": betas1, "poses2d": p2d1, "gender": "f", "valid": [1, 1, 1, 1]}], cams)
    return tmp_path / "3dpw", dict(p0=p0, p1=p1, cams=cams, betas0=betas0, betas1=betas1, p2d1=p2d1)


def expected_root(R_cam, aa_root):
    """SPIN's rule with cv2.Rodrigues (an implementation independent of ours)."""
    R = R_cam @ cv2.Rodrigues(np.asarray(aa_root, float))[0]
    return cv2.Rodrigues(R)[0][:, 0]


def test_test_split_rows_by_hand(raw_tree, tmp_path):
    root, v = raw_tree
    out = tmp_path / "out"
    assert cli(["3dpw", "--root", str(root), "--out", str(out)]) == 0
    d = np.load(out / "dataset_extras" / "3dpw_test.npz")
    assert sorted(d.files) == ["center", "gender", "imgname", "pose", "scale", "shape"]
    # sorted files; person 0 of downtown_a: frames 0, 1 (2 invalid, 3 without a confident point);
    # person 1: frames 0..3; then outdoors_z frames 0, 1
    assert list(d["imgname"]) == (["imageFiles/downtown_a/image_00000.jpg", "imageFiles/downtown_a/image_00001.jpg"]
                                  + [f"imageFiles/downtown_a/image_{i:05d}.jpg" for i in range(4)]
                                  + ["imageFiles/outdoors_z/image_00000.jpg", "imageFiles/outdoors_z/image_00001.jpg"])
    assert list(d["gender"]) == ["m"] * 2 + ["f"] * 6
    # box: x 100..300, y 50..450 (the far point has confidence 0) -> centre (200, 250), scale 1.2*400/200
    np.testing.assert_allclose(d["center"][0], [200, 250])
    assert d["scale"][0] == pytest.approx(2.4)
    np.testing.assert_allclose(d["center"][1], [60, 40])
    assert d["scale"][1] == pytest.approx(1.2 * 100 / 200)
    np.testing.assert_allclose(d["center"][2:], np.tile([250, 150], (6, 1)))
    np.testing.assert_allclose(d["scale"][2:], 1.2 * 500 / 200)
    # global orientation rotated into each frame's camera; the body pose unchanged
    cams = v["cams"]
    np.testing.assert_allclose(d["pose"][0, :3], expected_root(cams[0][:3, :3], aa("x", 90)), atol=1e-9)
    np.testing.assert_allclose(d["pose"][1, :3], expected_root(cams[1][:3, :3], aa("x", 90)), atol=1e-9)
    for k, f in enumerate(range(4)):
        np.testing.assert_allclose(d["pose"][2 + k, :3], expected_root(cams[f][:3, :3], aa("z", 60)), atol=1e-9)
    # by hand: identity camera keeps the root; Rz(90) . Rx(90) = 120 deg about (1, 1, 1)/sqrt(3)
    np.testing.assert_allclose(d["pose"][4, :3], aa("z", 60), atol=1e-12)
    np.testing.assert_allclose(d["pose"][0, :3], np.radians(120) * np.ones(3) / np.sqrt(3), atol=1e-9)
    np.testing.assert_allclose(d["pose"][:2, 3:], v["p0"][:2, 3:])
    np.testing.assert_allclose(d["pose"][2:6, 3:], v["p1"][:, 3:])
    np.testing.assert_allclose(d["shape"][:2], np.tile(v["betas0"], (2, 1)))  # betas[:10] of 12
    np.testing.assert_allclose(d["shape"][2:], np.tile(v["betas1"], (6, 1)))
    # the evaluation name holds the same rows
    e = np.load(out / "dataset_extras" / "3dpw_test_with_mmpose.npz")
    for k in d.files:
        np.testing.assert_array_equal(e[k], d[k])


def test_closing_table_counts_skips(raw_tree, tmp_path, capsys):
    root, _ = raw_tree
    assert cli(["3dpw", "--root", str(root), "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    lines = {ln.split("  ")[1].strip(): int(ln.split()[-1]) for ln in text.splitlines()
             if ln.startswith("  ") and ln.split()[-1].isdigit()}
    assert lines["rows written"] == 8
    assert lines["skipped: invalid camera pose (campose_valid false)"] == 1
    assert lines["skipped: no poses2d point with confidence > 0"] == 1


def test_eval_copy_keeps_a_foreign_file(raw_tree, tmp_path, capsys):
    root, _ = raw_tree
    out = tmp_path / "out"
    foreign = out / "dataset_extras" / "3dpw_test_with_mmpose.npz"
    os.makedirs(foreign.parent)
    np.savez(foreign, imgname=np.array(["x.jpg"]), center=np.zeros((1, 2)), scale=np.ones(1))
    assert cli(["3dpw", "--root", str(root), "--out", str(out)]) == 0
    assert "kept the existing 3dpw_test_with_mmpose.npz" in capsys.readouterr().out
    assert list(np.load(foreign)["imgname"]) == ["x.jpg"]
    assert cli(["3dpw", "--root", str(root), "--out", str(out)]) == 0  # still foreign: kept
    assert len(np.load(foreign)["imgname"]) == 1
    assert cli(["3dpw", "--root", str(root), "--out", str(out), "--eval-copy", "force"]) == 0
    assert len(np.load(foreign)["imgname"]) == 8
    assert cli(["3dpw", "--root", str(root), "--out", str(out)]) == 0  # ours now: rewritten, same rows
    assert len(np.load(foreign)["imgname"]) == 8


def test_box_min_conf_option(tmp_path):
    xs = np.linspace(100, 200, 18)
    ys = np.linspace(300, 500, 18)
    conf = np.full(18, 0.9)
    conf[[0, 17]] = 0.2  # the two extreme points are unsure
    write_sequence(tmp_path / "raw" / "sequenceFiles" / "test", "s", [
        {"poses": np.zeros((1, 72)), "betas": np.zeros(10), "poses2d": poses2d_frame(xs, ys, conf)[None],
         "gender": "m", "valid": [1]}], [np.eye(4)])
    args = ["3dpw", "--root", str(tmp_path / "raw"), "--eval-copy", "no"]
    assert cli(args + ["--out", str(tmp_path / "a")]) == 0
    d = np.load(tmp_path / "a" / "dataset_extras" / "3dpw_test.npz")
    np.testing.assert_allclose(d["center"][0], [150, 400])  # SPIN: every point with confidence > 0
    assert d["scale"][0] == pytest.approx(1.2 * 200 / 200)
    assert cli(args + ["--out", str(tmp_path / "b"), "--box-min-conf", "0.5"]) == 0
    d = np.load(tmp_path / "b" / "dataset_extras" / "3dpw_test.npz")
    x0, x1, y0, y1 = xs[1], xs[16], ys[1], ys[16]
    np.testing.assert_allclose(d["center"][0], [(x0 + x1) / 2, (y0 + y1) / 2])
    assert d["scale"][0] == pytest.approx(1.2 * (y1 - y0) / 200)
    assert not os.path.exists(tmp_path / "b" / "dataset_extras" / "3dpw_test_with_mmpose.npz")


def test_input_errors_name_the_file(tmp_path, capsys):
    assert cli(["3dpw", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere" in capsys.readouterr().err
    os.makedirs(tmp_path / "r" / "sequenceFiles" / "train")
    assert cli(["3dpw", "--root", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    assert "sequenceFiles/test" in capsys.readouterr().err
    seq = tmp_path / "r" / "sequenceFiles" / "test"
    os.makedirs(seq)
    assert cli(["3dpw", "--root", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    assert "no *.pkl" in capsys.readouterr().err
    with open(seq / "bad.pkl", "wb") as f:
        pickle.dump({"sequence": "bad", "betas": [np.zeros(10)]}, f, protocol=2)
    assert cli(["3dpw", "--root", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.pkl" in err and "'poses'" in err and "sequence file without" in err
    assert not os.path.exists(tmp_path / "o" / "dataset_extras" / "3dpw_test.npz")


# ----------------------------------------------------------------------------- train: S and part
def _free_body_args():
    return ["--smpl-dir", os.path.join(FREE, "smpl"), "--extra-regressor", os.path.join(FREE, "J_regressor_extra.npy")]


def test_train_split_joints_through_the_camera(tmp_path):
    from dsr.body import build_body_model

    rng = np.random.default_rng(5)
    N = 3
    pose = np.concatenate([np.tile(aa("y", 30), (N, 1)), rng.normal(0, 0.2, (N, 69))], axis=1)
    betas = rng.normal(0, 1, 10)
    trans = np.array([[0.5, 0.2, 1.0], [0.0, 0.0, 0.0], [-0.3, 0.1, 2.0]])
    R0 = rot("x", 20)
    cams = [cam_pose(R0, [0.1, -0.2, 4.0]), cam_pose(np.eye(3), [0, 0, 5.0]), cam_pose(rot("z", -40), [0, 0, 6.0])]
    K = np.array([[1200.0, 0, 500], [0, 1100.0, 900], [0, 0, 1]])
    p2d = np.stack([poses2d_frame(*spread_points(0, 100, 0, 300), np.ones(18)) for _ in range(N)])
    write_sequence(tmp_path / "raw" / "sequenceFiles" / "train", "walk", [
        {"poses": pose, "betas": betas, "trans": trans, "poses2d": p2d, "gender": "f", "valid": [1, 1, 1]}], cams, K)
    assert cli(["3dpw", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--split", "train"]
               + _free_body_args()) == 0
    d = np.load(tmp_path / "o" / "dataset_extras" / "3dpw_train.npz")
    assert sorted(d.files) == ["S", "center", "gender", "has_smpl", "imgname", "part", "pose", "scale", "shape"]
    np.testing.assert_array_equal(d["has_smpl"], np.ones(N))
    np.testing.assert_array_equal(d["S"][..., 3], 1)
    np.testing.assert_array_equal(d["S"][:, 14, :3], 0)  # pelvis-centred

    body = build_body_model(os.path.join(FREE, "smpl"), "female", os.path.join(FREE, "J_regressor_extra.npy"))
    with torch.no_grad():
        t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        world = body(t(pose[:, :3]), t(pose[:, 3:]), t(np.tile(betas, (N, 1))), pose2rot=True)
        camf = body(t(d["pose"][:, :3]), t(d["pose"][:, 3:]), t(np.tile(betas, (N, 1))), pose2rot=True)
    # (1) S = the root-centred joints of the camera-frame pose (SMPL turns the body about its root
    # joint, so rotating the orientation equals rotating the points): a path independent of ours
    Jc = camf.joints[:, 25:].numpy().astype(np.float64)
    np.testing.assert_allclose(d["S"][:, :, :3], Jc - Jc[:, 14:15], atol=2e-5)
    # (2) 24-joint order: S joint 0 is the right ankle = SMPL joint 8, joint 11 the left wrist = SMPL 20
    sj = camf.smpl_joints.numpy()
    np.testing.assert_allclose(d["S"][:, 0, :3], sj[:, 8] - Jc[:, 14], atol=2e-5)
    np.testing.assert_allclose(d["S"][:, 11, :3], sj[:, 20] - Jc[:, 14], atol=2e-5)
    # (3) part: world joints + trans, into the camera, pinhole projection written out per joint
    Jw = world.joints[:, 25:].numpy().astype(np.float64)
    for n in range(N):
        R, tt = cams[n][:3, :3], cams[n][:3, 3]
        for j in (0, 7, 14, 23):
            X, Y, Z = R @ (Jw[n, j] + trans[n]) + tt
            u, v = 1200.0 * X / Z + 500, 1100.0 * Y / Z + 900
            np.testing.assert_allclose(d["part"][n, j], [u, v, 1.0], atol=1e-3)
    assert list(d["gender"]) == ["f"] * N


def test_workers_give_the_same_file(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for s in range(3):
        N = 4
        write_sequence(tmp_path / "raw" / "sequenceFiles" / "validation", f"s{s}", [
            {"poses": rng.normal(0, 0.3, (N, 72)), "betas": rng.normal(0, 1, 10), "trans": rng.normal(0, 1, (N, 3)),
             "poses2d": rng.uniform(1, 100, (N, 3, 18)), "gender": "mf"[s % 2], "valid": [1, 0, 1, 1]}],
            [cam_pose(rot("y", 10 * f), [0, 0, 6]) for f in range(N)])
    args = ["3dpw", "--root", str(tmp_path / "raw"), "--split", "validation"] + _free_body_args()
    assert cli(args + ["--out", str(tmp_path / "a")]) == 0
    assert cli(args + ["--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    a = np.load(tmp_path / "a" / "dataset_extras" / "3dpw_validation.npz")
    b = np.load(tmp_path / "b" / "dataset_extras" / "3dpw_validation.npz")
    assert len(a["imgname"]) == 9 and sorted(a.files) == sorted(b.files)
    for k in a.files:  # the body model runs in float32: one vs several torch threads may differ in the last bit
        if a[k].dtype.kind == "U":
            np.testing.assert_array_equal(a[k], b[k])
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-4)
    bad = tmp_path / "raw" / "sequenceFiles" / "validation" / "s1.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"sequence": "s1"}, f, protocol=2)
    capsys.readouterr()
    assert cli(args + ["--out", str(tmp_path / "c"), "--workers", "2"]) == 2  # a worker's error, one line
    assert "s1.pkl" in capsys.readouterr().err


def test_train_split_without_body_model_is_one_error(tmp_path, capsys):
    write_sequence(tmp_path / "raw" / "sequenceFiles" / "train", "walk", [
        {"poses": np.zeros((1, 72)), "betas": np.zeros(10), "poses2d": np.ones((1, 3, 18)), "gender": "m",
         "valid": [1]}], [np.eye(4)])
    assert cli(["3dpw", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--split", "train",
                "--smpl-dir", str(tmp_path / "nosmpl")]) == 2
    err = capsys.readouterr().err
    assert "nosmpl" in err and "SMPL" in err


# ----------------------------------------------------------------------------- end to end
def test_written_file_through_dataset_and_evaluation(raw_tree, tmp_path):
    """The test file as the evaluation config reads it: BaseDataset, the gendered GT mesh of the
    3DPW protocol, and a whole evaluation run."""
    from dsr.body import build_body_model
    from dsr.data.base_dataset import BaseDataset
    from dsr.geometry import batch_rodrigues
    from dsr.lightning_module import DSRModule
    from dsr.runner import build_trainer
    from tests.test_training import copy_free_body, make_cfg

    root, v = raw_tree
    # the tree the original's config expects: dsr_data/{smpl, regressors, dataset_extras, dataset_folders/3dpw}
    data = tmp_path / "dsr_data"
    copy_free_body(data)
    assert cli(["3dpw", "--root", str(root), "--out", str(data)]) == 0
    folder = data / "dataset_folders" / "3dpw"
    for seq, n in (("downtown_a", 4), ("outdoors_z", 2)):
        os.makedirs(folder / "imageFiles" / seq)
        for i in range(n):
            cv2.imwrite(str(folder / "imageFiles" / seq / f"image_{i:05d}.jpg"), np.full((96, 64, 3), 90, np.uint8))
    cfg = make_cfg(data, tmp_path, **{"DATASET.VAL_DS": "3dpw", "RUN_TEST": True, "TRAINING.LIMIT_VAL_BATCHES": 4})

    ds = BaseDataset(cfg, "3dpw", is_train=False)
    assert len(ds) == 8
    item = ds[0]
    assert item["gender"] == 0 and ds[3]["gender"] == 1
    assert item["imgname"].endswith("imageFiles/downtown_a/image_00000.jpg")
    # the GT mesh of the camera-frame pose = the world-frame fit turned by R_cam about the root joint
    body = build_body_model(str(data / "smpl"), "male")
    t = lambda a: torch.tensor(np.asarray(a)[None], dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        cam = body(t(item["pose"][:3]), t(item["pose"][3:]), item["betas"][None], pose2rot=True)
        wld = body(t(v["p0"][0, :3]), t(v["p0"][0, 3:]), item["betas"][None], pose2rot=True)
    J0 = wld.smpl_joints[0, 0].numpy()
    R = v["cams"][0][:3, :3]
    np.testing.assert_allclose(cam.vertices[0].numpy(), (wld.vertices[0].numpy() - J0) @ R.T + J0, atol=1e-4)
    assert torch.allclose(batch_rodrigues(item["pose"][None, :3].double())[0].float(),
                          torch.tensor(R @ cv2.Rodrigues(aa("x", 90))[0], dtype=torch.float32), atol=1e-5)

    module = DSRModule(cfg)
    build_trainer(cfg).test(module)
    res = module.last_eval
    assert res["num_samples"] == 8
    for k in ("mpjpe", "pa_mpjpe", "pve"):
        assert np.isfinite(res[k]) and res[k] > 0
    with open(os.path.join(cfg.LOG_DIR, "evaluation_results_3dpw.pkl"), "rb") as f:
        dump = pickle.load(f)
    names = [os.path.relpath(n, folder) for n in dump["imgname"]]
    assert names == list(np.load(data / "dataset_extras" / "3dpw_test_with_mmpose.npz")["imgname"])

    # tools/check_data.py on the same tree: every file the evaluation config reads is fine
    cd = load_script("tools/check_data.py")
    rep = cd.run(cfg, all_=True)
    assert rep.problems == [], rep.problems
    assert ("3dpw npz", str(data / "dataset_extras" / "3dpw_test_with_mmpose.npz"), True,
            "8 samples, keys ['center', 'gender', 'imgname', 'pose', 'scale', 'shape']") in rep.rows


def test_crop_study_geometry():
    """studies/pw3d_crop_study.py: SPIN boxes and square-crop IoU, by hand."""
    cs = load_script("studies/pw3d_crop_study.py")
    pts = np.array([[[0.0, 0.0], [10.0, 40.0], [500.0, 500.0]]])
    c, side = cs.boxes(pts, np.array([[True, True, False]]))
    np.testing.assert_allclose(c, [[5, 20]])
    np.testing.assert_allclose(side, [1.2 * 40])
    one = np.ones(1)
    assert cs.square_iou(np.zeros((1, 2)), one, np.zeros((1, 2)), 1.1 * one)[0] == pytest.approx(1 / 1.21)
    # unit squares shifted by half a side: overlap 0.5, union 1.5
    assert cs.square_iou(np.zeros((1, 2)), one, np.array([[0.5, 0.0]]), one)[0] == pytest.approx(1 / 3)
