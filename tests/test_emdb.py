"""EMDB: the converter on a fabricated raw tree, the protocol against hand computations, and
``DATASET.VAL_DS emdb-1`` end to end (the free body model stands in for SMPL)."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import emdb_fixtures as fx
from dsr.body import build_body_model
from dsr.data.preprocess.__main__ import main as preprocess_main
from dsr.evaluation import emdb as E
from dsr.evaluation.metrics import jitter
from dsr.geometry import batch_rodrigues


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("emdb_raw")
    seqs = fx.make_emdb_tree(str(root))
    out = tmp_path_factory.mktemp("emdb_out")
    assert preprocess_main(["emdb", "--root", str(root), "--out", str(out), "--smpl-dir", fx.SMPL_DIR]) == 0
    return root, out, seqs, dict(np.load(out / "dataset_extras" / "emdb1_test.npz"))


def test_rows_are_the_good_frames_of_emdb1_sequences(tree):
    _, _, seqs, d = tree
    # P0_09: 7 frames, frame 2 masked; P0_10: not EMDB-1; P3_27: 6 frames, frame 4 has an empty box
    assert d["sequence"].tolist() == ["P0_09_outdoor_walk"] * 6 + ["P3_27_indoor_walk_off_mvs"] * 5
    assert d["frame"].tolist() == [0, 1, 3, 4, 5, 6, 0, 1, 2, 3, 5]
    assert d["imgname"][2] == "P0/09_outdoor_walk/images/00003.jpg"
    assert d["gender"].tolist() == ["m"] * 6 + ["f"] * 5
    s = seqs["P0_09_outdoor_walk"]
    x1, y1, x2, y2 = s["bboxes"]["bboxes"][3]
    np.testing.assert_allclose(d["center"][2], [(x1 + x2) / 2, (y1 + y2) / 2])
    assert d["scale"][2] == pytest.approx(1.2 * max(x2 - x1, y2 - y1) / 200)
    np.testing.assert_array_equal(d["intrinsics"][0], s["camera"]["intrinsics"])
    np.testing.assert_allclose(d["shape"][0], s["smpl"]["betas"])


def test_subset_2_and_the_skip_table(tree, tmp_path, capsys):
    root = tree[0]
    assert preprocess_main(["emdb", "--root", str(root), "--out", str(tmp_path), "--smpl-dir", fx.SMPL_DIR,
                            "--subset", "2"]) == 0
    d = np.load(tmp_path / "dataset_extras" / "emdb2_test.npz")
    assert set(d["sequence"].tolist()) == {"P0_10_indoor_dance"} and len(d["frame"]) == 5
    out = capsys.readouterr().out
    assert "sequence not in EMDB2" in out


def test_camera_frame_pose_and_trans_reproduce_the_world_mesh(tree):
    """GT mesh from (world pose, trans) moved by the extrinsics == mesh from the npz's camera-frame
    pose + trans_cam (the root rotates about J0, so trans_cam = R (trans + J0) + t - J0)."""
    _, _, seqs, d = tree
    s = seqs["P0_09_outdoor_walk"]
    body = build_body_model(fx.SMPL_DIR, "male").double()
    i_row, f = 3, 4
    assert d["frame"][i_row] == f

    def mesh(pose, betas, trans):
        rot = batch_rodrigues(torch.from_numpy(pose).reshape(-1, 3)).reshape(1, 24, 3, 3)
        return body(rot[:, :1], rot[:, 1:], torch.from_numpy(betas)[None], transl=torch.from_numpy(trans)[None]
                    ).vertices[0].numpy()

    world_pose = np.concatenate([s["smpl"]["poses_root"][f], s["smpl"]["poses_body"][f]])
    world = mesh(world_pose, s["smpl"]["betas"], s["smpl"]["trans"][f])
    E_ = s["camera"]["extrinsics"][f]
    want = world @ E_[:3, :3].T + E_[:3, 3]
    got = mesh(d["pose"][i_row], d["shape"][i_row], d["trans_cam"][i_row])
    np.testing.assert_allclose(got, want, atol=1e-9)
    naive = mesh(d["pose"][i_row], d["shape"][i_row], E_[:3, :3] @ s["smpl"]["trans"][f] + E_[:3, 3])
    assert np.abs(naive - want).max() > 1e-3  # R·trans + t is not it


def test_bad_pickle_class_is_refused(tmp_path):
    sdir = tmp_path / "P0" / "01_x"
    os.makedirs(sdir)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo hacked",))

    with open(sdir / "P0_01_x_data.pkl", "wb") as f:
        pickle.dump({"gender": Evil()}, f)
    assert preprocess_main(["emdb", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


# ----------------------------------------------------------------------------- protocol by hand
def test_hip_mean_centring():
    rng = np.random.default_rng(0)
    gj = torch.from_numpy(rng.normal(size=(2, 24, 3)))
    gv = torch.from_numpy(rng.normal(size=(2, 50, 3)))
    shift = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    r = E.positional_errors(gj + shift, gv + shift, gj, gv)  # off by a pure translation
    for k in ("mpjpe_joints", "pampjpe_joints", "v2v"):
        assert float(r[k].abs().max()) < 1e-12
    # only joint 0 (the pelvis) moves by d: centred on the hips the other joints stay put, so MPJPE
    # = |d| / 24 (a pelvis centring would move all 23 others by d instead)
    d = torch.tensor([0.0, 0.24, 0.0], dtype=torch.float64)
    pj = gj.clone()
    pj[:, 0] += d
    r = E.positional_errors(pj, gv, gj, gv)
    np.testing.assert_allclose(r["mpjpe_joints"].mean(dim=1).numpy(), [0.01, 0.01], atol=1e-12)
    np.testing.assert_allclose(r["v2v"].numpy(), 0.0, atol=1e-12)


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_joint_angles_by_hand():
    parents = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
    gt = np.tile(np.eye(3), (1, 24, 1, 1))
    pred = gt.copy()
    pred[0, 0] = _rot_z(np.deg2rad(10))  # the root: every global rotation turns by 10 degrees
    ident = torch.eye(3, dtype=torch.float64)[None]
    mpjae, pampjae = E.angle_errors(torch.from_numpy(pred), torch.from_numpy(gt), parents, ident)
    assert float(mpjae) == pytest.approx(10.0, abs=1e-9)
    # a Procrustes rotation of -10 degrees about z undoes it
    _, pa = E.angle_errors(torch.from_numpy(pred), torch.from_numpy(gt), parents,
                           torch.from_numpy(_rot_z(np.deg2rad(-10)))[None])
    assert float(pa) == pytest.approx(0.0, abs=1e-9)
    pred[0, 4] = _rot_z(np.deg2rad(-10))  # left knee turned back: joint 4 (in the 9) is 0 again
    mpjae, _ = E.angle_errors(torch.from_numpy(pred), torch.from_numpy(gt), parents, ident)
    assert float(mpjae) == pytest.approx(10.0 * 8 / 9, abs=1e-9)


def test_jitter_joins_the_good_frames_across_a_gap():
    # rows of frames 0, 1, 3, 4, 5 (frame 2 masked), given out of order; x = a k^3 over the joined
    # rows (k = 0..4) -> third difference 6a, jerk 6a * 30^3 on the 15 joints not ignored
    a = 1e-4
    frames = np.array([4, 0, 3, 5, 1])
    k = np.argsort(np.argsort(frames))  # position in the joined sequence
    joints = np.zeros((5, 24, 3))
    joints[:, :, 0] = (a * k.astype(float) ** 3)[:, None]
    res = {"sequence": ["s"] * 5, "frame": frames, "jitter_joints": joints}
    got = E.EmdbProtocol.jitter_per_sequence(res)["s"]
    assert got == pytest.approx(6 * a * 30 ** 3 * 15 / 24 / 10, rel=1e-12)
    # a row repeated (a distributed sampler pads the last batch) changes nothing
    dup = {"sequence": ["s"] * 6, "frame": np.append(frames, 3), "jitter_joints": np.concatenate([joints, joints[2:3]])}
    assert E.EmdbProtocol.jitter_per_sequence(dup)["s"] == pytest.approx(got, rel=1e-12)
    assert np.isnan(jitter(joints[:3]))


def _protocol():
    body_of = fx.body_cache()
    return E.EmdbProtocol("emdb-1", body_of), body_of


def test_gender_choice_ground_truth_uses_the_sequence_gender():
    proto, body_of = _protocol()
    rng = np.random.default_rng(1)
    pose = torch.from_numpy(rng.normal(scale=0.3, size=(3, 72)))
    betas = torch.from_numpy(rng.normal(size=(3, 10))).float()
    rot = batch_rodrigues(pose.float().reshape(-1, 3)).reshape(3, 24, 3, 3)
    batch = {"pose": pose, "betas": betas, "gender": torch.tensor([0, 1, 2]), "frame": torch.arange(3),
             "sequence": ["s"] * 3}
    res = proto.score(batch, {"pred_pose": rot, "pred_shape": betas})
    # the neutral sample (code 2) is scored against the neutral model: the same mesh, zero error
    assert float(res["v2v"][2]) < 1e-6 and float(res["mpjpe_joints"][2].max()) < 1e-6
    assert float(res["mpjae"][2]) < 1e-3
    for i, g in ((0, "male"), (1, "female")):
        gt = body_of(g)(rot[i:i + 1, :1], rot[i:i + 1, 1:], betas[i:i + 1])
        pr = body_of("neutral")(rot[i:i + 1, :1], rot[i:i + 1, 1:], betas[i:i + 1])
        hip = lambda o: (o.smpl_joints[:, 1] + o.smpl_joints[:, 2]) / 2  # noqa: E731
        want = ((pr.vertices - hip(pr)[:, None]) - (gt.vertices - hip(gt)[:, None])).norm(dim=-1).mean()
        assert float(res["v2v"][i]) == pytest.approx(float(want), rel=1e-5)
        assert float(res["v2v"][i]) > 1e-4  # the gendered model differs from the neutral one


def test_emdb1_evaluation_end_to_end(tree, tmp_path):
    root, out, _, d = tree
    module, dump = fx.evaluate("emdb-1", str(root), str(out / "dataset_extras"), str(tmp_path / "exp" / "run"), 4)
    n = len(d["imgname"])
    assert dump["mpjpe"].shape == (n, 24) and dump["pampjpe"].shape == (n, 24)
    for k in ("v2v", "mpjae", "pampjae", "sequence"):
        assert dump[k].shape == (n,)
    assert dump["pose"].shape == (n, 24, 3, 3)
    res = module.last_eval
    assert res["protocol"] == "emdb"
    assert 1000 * dump["mpjpe"].mean() == pytest.approx(res["mpjpe"], rel=1e-9)
    assert dump["mpjae"].mean() == pytest.approx(res["mpjae"], rel=1e-9)
    assert np.isfinite(res["jitter"])
    assert res["jitter"] == pytest.approx(np.mean(list(dump["jitter_per_sequence"].values())))
    csv = (tmp_path / "exp" / "results.csv").read_text().splitlines()
    assert csv[0].startswith("run,dataset,protocol,") and ",emdb-1,emdb," in csv[1]


def test_conformance_script_needs_the_official_clones(tmp_path, capsys):
    """studies/conformance_emdb_ssp3d.py (the official code is not in the repository): clear
    errors for a missing clone and for a work folder inside the repository."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("conf", os.path.join(fx.REPO, "studies", "conformance_emdb_ssp3d.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--emdb-code", str(tmp_path)]) == 2
    assert "--ssp3d-code, --hierprob-code" in capsys.readouterr().err
    assert mod.main(["--emdb-code", str(tmp_path), "--ssp3d-code", str(tmp_path), "--hierprob-code", str(tmp_path),
                     "--work", str(tmp_path / "w")]) == 2
    assert "evaluation_metrics.py not found" in capsys.readouterr().err
    assert mod.main(["--emdb-code", str(tmp_path), "--ssp3d-code", str(tmp_path), "--hierprob-code", str(tmp_path),
                     "--work", os.path.join(fx.REPO, "conf_tmp")]) == 2
    assert "inside the repository" in capsys.readouterr().err
