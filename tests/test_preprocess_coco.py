"""python -m dsr.data.preprocess coco on fabricated COCO-2014 keypoint, EFT fits and OpenPose jsons
with a few people whose values are known; the npz compared with values computed by hand."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from dsr.data.preprocess.__main__ import main as cli
from dsr.data.preprocess.coco import match_openpose
from conftest import load_script  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREE = os.path.join(REPO, "dsr", "assets", "free_body")
IMG1, IMG2, IMG3 = (f"COCO_train2014_{i:012d}.jpg" for i in (11, 22, 33))


def table_counts(out: str) -> dict:
    """The closing table's lines -> {label: count}."""
    return {ln[:-9].strip(): int(ln.split()[-1]) for ln in out.splitlines()
            if ln.startswith("  ") and ln.split()[-1].isdigit()}


def keypoints(body_visible=12, face_visible=5, seed=0):
    """51 COCO numbers: 5 face points then 12 body points, the first n of each annotated (v 1 or 2)."""
    rng = np.random.default_rng(seed)
    kp = np.zeros((17, 3))
    kp[:, 0] = rng.integers(20, 300, 17)
    kp[:, 1] = rng.integers(20, 400, 17)
    kp[:, 2] = rng.choice([1, 2], 17)
    kp[face_visible:5] = 0
    kp[5 + body_visible:] = 0
    return kp


def annotation(aid, image_id, kp, bbox):
    return {"id": aid, "image_id": image_id, "category_id": 1, "iscrowd": 0, "num_keypoints": int((kp[:, 2] > 0).sum()),
            "keypoints": kp.reshape(-1).astype(int).tolist(), "bbox": list(bbox), "area": 1.0}


@pytest.fixture
def coco_tree(tmp_path):
    kps = {101: keypoints(seed=1), 102: keypoints(body_visible=11, seed=2), 103: keypoints(face_visible=0, seed=3),
           104: np.zeros((17, 3)), 105: keypoints(seed=5)}
    annots = [annotation(101, 1, kps[101], [10, 20, 100, 200]), annotation(102, 1, kps[102], [0, 0, 50, 50]),
              annotation(103, 2, kps[103], [0.5, 0.0, 300.0, 100.0]), annotation(104, 2, kps[104], [0, 0, 5, 5]),
              annotation(105, 3, kps[105], [40, 40, 60, 30])]
    images = [{"id": i, "file_name": n, "height": 480, "width": 640} for i, n in ((1, IMG1), (2, IMG2), (3, IMG3))]
    os.makedirs(tmp_path / "coco" / "annotations")
    with open(tmp_path / "coco" / "annotations" / "person_keypoints_train2014.json", "w") as f:
        json.dump({"images": images, "annotations": annots, "categories": [{"id": 1, "name": "person"}]}, f)
    return tmp_path / "coco", kps


def test_spin_rows_by_hand(coco_tree, tmp_path, capsys):
    root, kps = coco_tree
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o")]) == 0
    d = np.load(tmp_path / "o" / "dataset_extras" / "coco_2014_train.npz")
    assert sorted(d.files) == ["center", "imgname", "openpose", "part", "scale"]
    # 102 has 11 body joints, 104 none: skipped; file order kept
    assert list(d["imgname"]) == [f"train2014/{IMG1}", f"train2014/{IMG2}", f"train2014/{IMG3}"]
    # box from the annotation's bbox [x, y, w, h], factor 1.2
    np.testing.assert_allclose(d["center"], [[60, 120], [150.5, 50], [70, 55]])
    np.testing.assert_allclose(d["scale"], [1.2 * 200 / 200, 1.2 * 300 / 200, 1.2 * 60 / 200])
    # joint order: COCO nose -> 19, left eye -> 20, right eye -> 21, left shoulder -> 9,
    # right shoulder -> 8, left ankle -> 5, right ankle -> 0; visibility 2 -> 1
    kp = kps[101]
    for coco_k, j24 in ((0, 19), (1, 20), (2, 21), (3, 22), (4, 23), (5, 9), (6, 8), (7, 10), (8, 7), (9, 11),
                        (10, 6), (11, 3), (12, 2), (13, 4), (14, 1), (15, 5), (16, 0)):
        np.testing.assert_array_equal(d["part"][0, j24], [kp[coco_k, 0], kp[coco_k, 1], 1.0])
    np.testing.assert_array_equal(d["part"][0, 12:19], 0)  # no COCO counterpart
    np.testing.assert_array_equal(d["part"][1, 19:24], 0)  # 103: no face point annotated
    np.testing.assert_array_equal(d["openpose"], 0)
    table = table_counts(capsys.readouterr().out)
    assert table == {"rows written": 3, "skipped: fewer than 12 of 12 body joints annotated": 2}


def test_min_body_joints_option(coco_tree, tmp_path):
    root, _ = coco_tree
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o"), "--min-body-joints", "11"]) == 0
    d = np.load(tmp_path / "o" / "dataset_extras" / "coco_2014_train.npz")
    assert list(d["imgname"]) == [f"train2014/{n}" for n in (IMG1, IMG1, IMG2, IMG3)]


# ----------------------------------------------------------------------------- EFT
def eft_record(aid, image, rotmats, center, scale, kp49, betas):
    return {"parm_pose": rotmats.tolist(), "parm_shape": list(betas), "parm_cam": [0.9, 0.0, 0.1],
            "bbox_scale": scale, "bbox_center": list(center), "gt_keypoint_2d": kp49.tolist(),
            "joint_validity_openpose18": [1] * 18, "smpltype": "smpl", "annotId": aid, "imageName": image}


@pytest.fixture
def eft_file(tmp_path):
    rz90 = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 deg about z
    perm = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # x -> y -> z -> x: 120 deg about (1, 1, 1)
    r1 = np.tile(np.eye(3), (24, 1, 1))
    r1[0], r1[5] = rz90, perm
    r2 = np.tile(np.eye(3), (24, 1, 1))
    r2[0] = rz90.T
    kp49 = np.arange(49 * 3, dtype=float).reshape(49, 3)
    recs = [eft_record(103, IMG2, r2, [5, 6], 0.7, kp49 + 1000, np.full(10, -0.5)),
            eft_record(101, IMG1, r1, [61.5, 118.0], 1.35, kp49, np.arange(10) / 10),
            eft_record(999, "COCO_train2014_000000999999.jpg", r1, [1, 1], 1.0, kp49, np.zeros(10))]
    path = tmp_path / "COCO2014-Part-ver01.json"
    with open(path, "w") as f:
        json.dump({"ver": 0.1, "data": recs, "meta": {"dbname": "COCO2014-Part"}}, f)
    return path, kp49


def test_eft_rows_by_hand(coco_tree, eft_file, tmp_path, capsys):
    root, _ = coco_tree
    path, kp49 = eft_file
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o"), "--eft", str(path)]) == 0
    d = np.load(tmp_path / "o" / "dataset_extras" / "coco_2014_train.npz")
    assert sorted(d.files) == ["center", "has_smpl", "imgname", "openpose", "part", "pose", "scale", "shape"]
    # EFT's records, in its order; the one whose image is not in COCO-2014 train is skipped
    assert list(d["imgname"]) == [f"train2014/{IMG2}", f"train2014/{IMG1}"]
    np.testing.assert_array_equal(d["has_smpl"], [1, 1])
    np.testing.assert_allclose(d["center"], [[5, 6], [61.5, 118.0]])
    np.testing.assert_allclose(d["scale"], [0.7, 1.35])
    np.testing.assert_array_equal(d["part"][1], kp49[25:])
    np.testing.assert_array_equal(d["openpose"][1], kp49[:25])
    np.testing.assert_allclose(d["shape"][1], np.arange(10) / 10)
    # rotation matrices -> axis-angle, by hand: Rz(90) -> (0, 0, pi/2); its transpose -> (0, 0, -pi/2);
    # the cyclic permutation -> 120 deg about (1, 1, 1)/sqrt(3); identity -> 0
    pose = d["pose"].reshape(2, 24, 3)
    np.testing.assert_allclose(pose[1, 0], [0, 0, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(pose[0, 0], [0, 0, -np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(pose[1, 5], 2 * np.pi / 3 * np.ones(3) / np.sqrt(3), atol=1e-12)
    np.testing.assert_allclose(np.delete(pose[1], [0, 5], axis=0), 0, atol=1e-12)
    table = table_counts(capsys.readouterr().out)
    assert table == {"rows written": 2, "skipped: EFT fit whose image is not in the COCO json": 1,
                     "skipped: no EFT fit, fewer than 12 of 12 body joints annotated": 2,  # 102, 104
                     "skipped: no EFT fit, passes the joint filter": 1}  # 105


def test_eft_keep_unfitted_and_zero_S(coco_tree, eft_file, tmp_path):
    root, kps = coco_tree
    path, _ = eft_file
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o"), "--eft", str(path), "--keep-unfitted",
                "--zero-S"]) == 0
    d = np.load(tmp_path / "o" / "dataset_extras" / "coco_2014_train.npz")
    # fitted people first (EFT order), then the unfitted ones passing SPIN's filter: 105 only
    assert list(d["imgname"]) == [f"train2014/{IMG2}", f"train2014/{IMG1}", f"train2014/{IMG3}"]
    np.testing.assert_array_equal(d["has_smpl"], [1, 1, 0])
    np.testing.assert_array_equal(d["pose"][2], 0)
    np.testing.assert_array_equal(d["shape"][2], 0)
    np.testing.assert_allclose(d["center"][2], [70, 55])
    np.testing.assert_array_equal(d["part"][2, 0], [kps[105][16, 0], kps[105][16, 1], 1])
    assert d["S"].shape == (3, 24, 4) and not d["S"].any()


def test_eft_errors(coco_tree, tmp_path, capsys):
    root, _ = coco_tree
    bad = tmp_path / "bad.json"
    with open(bad, "w") as f:
        json.dump({"ver": 0.1, "data": [{"parm_pose": [], "imageName": IMG1}]}, f)
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o"), "--eft", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "record 0 without" in err and "parm_shape" in err
    val = tmp_path / "val.json"
    rec = eft_record(7, "COCO_val2014_000000000007.jpg", np.tile(np.eye(3), (24, 1, 1)), [0, 0], 1.0,
                     np.zeros((49, 3)), np.zeros(10))
    with open(val, "w") as f:
        json.dump({"ver": 1.0, "data": [rec]}, f)
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o"), "--eft", str(val)]) == 2
    assert "is it the COCO-2014 train fits file" in capsys.readouterr().err
    assert cli(["coco", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "annotations/person_keypoints_train2014.json" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "dataset_extras" / "coco_2014_train.npz")


# ----------------------------------------------------------------------------- OpenPose
def op_person(part24, shift=0.0, drop=None):
    """A BODY_25 detection whose 12 limb joints sit at the person's annotated limbs + shift."""
    op = np.zeros((25, 3))
    op[[11, 10, 9, 12, 13, 14, 4, 3, 2, 5, 6, 7], :2] = part24[:12, :2] + shift
    op[:, 2] = 0.8
    if drop is not None:
        op[drop, 2] = 0
    return op


def test_match_openpose_by_hand():
    part = np.zeros((24, 3))
    part[:12, 0] = np.linspace(300, 400, 12)
    part[:12, 1] = np.linspace(200, 500, 12)
    part[:12, 2] = 1
    near, far = op_person(part, 3.0), op_person(part, 200.0)
    # size (SPIN: over all 24 rows, zeros included) = max(400 - 0, 500 - 0) = 500; near: 3*sqrt(2) px
    np.testing.assert_array_equal(match_openpose(np.stack([far, near]), part), near)
    # a far-off best match (relative distance 0.57) is kept by SPIN's rule (its distance >= 10 px) ...
    np.testing.assert_array_equal(match_openpose(far[None], part), far)
    # ... and rejected by the strict one
    np.testing.assert_array_equal(match_openpose(far[None], part, strict=True), 0)
    # no detection with all 12 limb joints: SPIN keeps the first, strict rejects
    incomplete, incomplete_far = op_person(part, 1.0, drop=[4]), op_person(part, 50.0, drop=[9])
    np.testing.assert_array_equal(match_openpose(np.stack([incomplete, incomplete_far]), part), incomplete)
    np.testing.assert_array_equal(match_openpose(np.stack([incomplete_far, incomplete]), part), incomplete_far)
    np.testing.assert_array_equal(match_openpose(np.stack([incomplete]), part, strict=True), 0)
    # SPIN rejects only when relative distance > 0.1 AND distance < 10 px: a 30 px-size person
    small = part.copy()
    small[:12, :2] = part[:12, :2] * 0.05 + 1000
    size = 1000 + 500 * 0.05  # SPIN's size: max over the 24 rows (zeros included) = the largest coordinate
    assert 6.0 * np.sqrt(2) / size < 0.1
    np.testing.assert_array_equal(match_openpose(op_person(small, 6.0)[None], small), op_person(small, 6.0))
    # with the size from the annotated joints (strict): 25 px, 8.5 px away -> rejected
    np.testing.assert_array_equal(match_openpose(op_person(small, 6.0)[None], small, strict=True), 0)
    assert match_openpose(np.zeros((0, 25, 3)), part).shape == (25, 3)


def test_openpose_folder(coco_tree, tmp_path):
    root, kps = coco_tree
    op_dir = tmp_path / "openpose"
    os.makedirs(op_dir)
    from dsr.data.preprocess.coco import COCO_TO_J24
    rows = {}
    for name, aid in ((IMG1, 101), (IMG2, 103), (IMG3, 105)):
        part = np.zeros((24, 3))
        part[COCO_TO_J24] = np.where(kps[aid][:, 2:] > 0, kps[aid], 0)
        rows[name] = op_person(part, 2.0)
        people = [{"pose_keypoints_2d": op_person(part, 300.0, drop=[2]).reshape(-1).tolist()},
                  {"pose_keypoints_2d": rows[name].reshape(-1).tolist()}]
        with open(op_dir / (name[:-4] + "_keypoints.json"), "w") as f:
            json.dump({"version": 1.3, "people": people}, f)
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o"), "--openpose", str(op_dir)]) == 0
    d = np.load(tmp_path / "o" / "dataset_extras" / "coco_2014_train.npz")
    for i, name in enumerate((IMG1, IMG2, IMG3)):
        np.testing.assert_array_equal(d["openpose"][i], rows[name])
    os.remove(op_dir / (IMG3[:-4] + "_keypoints.json"))
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o2"), "--openpose", str(op_dir)]) == 2


# ----------------------------------------------------------------------------- check_data on the result
def test_check_data_accepts_the_written_file(coco_tree, eft_file, tmp_path):
    from dsr.config import get_cfg_defaults

    root, _ = coco_tree
    path, _ = eft_file
    out = tmp_path / "dsr_data"
    assert cli(["coco", "--root", str(root), "--out", str(out), "--eft", str(path)]) == 0
    os.makedirs(root / "train2014")
    for name in (IMG1, IMG2):
        cv2.imwrite(str(root / "train2014" / name), np.full((48, 64, 3), 100, np.uint8))
    cd = load_script("tools/check_data.py")
    cfg = get_cfg_defaults()
    cfg.METHOD = "spin"
    cfg.PATHS.SMPL_MODEL_DIR = os.path.join(FREE, "smpl")
    for k in ("JOINT_REGRESSOR_TRAIN_EXTRA", "JOINT_REGRESSOR_H36M"):
        cfg.PATHS[k] = os.path.join(FREE, os.path.basename(cfg.PATHS[k]))
    cfg.PATHS.SMPL_MEAN_PARAMS = os.path.join(FREE, "smpl_mean_params.npz")
    cfg.PATHS.DATASET_NPZ_PATH = str(out / "dataset_extras")
    cfg.PATHS.DATASET_FOLDERS["coco"] = str(root)
    cfg.DATASET.TRAIN_DS = "coco"
    rep = cd.run(cfg)
    coco_rows = [r for r in rep.rows if r[0].startswith("coco")]
    assert [r[0] for r in coco_rows] == ["coco npz", "coco images"]
    assert all(ok for _, _, ok, _ in coco_rows), coco_rows
    assert "2 samples" in coco_rows[0][3]


def test_eft_without_annot_ids(coco_tree, eft_file, tmp_path, capsys):
    """Records without annotId still give their rows; only --keep-unfitted needs the ids."""
    root, _ = coco_tree
    path, _ = eft_file
    with open(path) as f:
        data = json.load(f)
    for r in data["data"]:
        del r["annotId"]
    with open(path, "w") as f:
        json.dump(data, f)
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o"), "--eft", str(path)]) == 0
    assert "COCO people without a fit not counted" in capsys.readouterr().out
    d = np.load(tmp_path / "o" / "dataset_extras" / "coco_2014_train.npz")
    assert list(d["imgname"]) == [f"train2014/{IMG2}", f"train2014/{IMG1}"]
    assert cli(["coco", "--root", str(root), "--out", str(tmp_path / "o"), "--eft", str(path), "--keep-unfitted"]) == 2
    assert "needs the COCO annotation id" in capsys.readouterr().err
