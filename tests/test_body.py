"""Tests of dsr.body: chumpy-free loading, LBS against a hand-written reference, the 49-joint map
of reference §2.3, H36M regression, gendered models, and errors on bad files.

A tiny synthetic SMPL-format model (dsr.body.toy) is used throughout; tests on the embedded free
model run when dsr/assets/free_body exists.
"""
import json
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from dsr.body import BodyModelError, build_body_model, load_smpl_data
from dsr.body.toy import make_toy_smpl_data, write_toy_model
from dsr.geometry import batch_rodrigues

# Reference §2.3, written out here independently of dsr.constants: index of each of the 49 joints
# in the extended set (24 SMPL + 21 smplx vertex joints + 9 J_regressor_extra rows).
REF_49 = [24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
          8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25, 28, 27]
# smplx's vertex-joint order (index 24 + k).
VJ_NAMES = ["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
            "RSmallToe", "RHeel", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex",
            "rmiddle", "rring", "rpinky"]
PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
FREE = os.path.join(os.path.dirname(__file__), "..", "dsr", "assets", "free_body")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_model(str(tmp_path_factory.mktemp("toy")), seed=0)


@pytest.fixture(scope="module")
def toy_model(toy):
    return build_body_model(toy["model_dir"], "neutral", toy["extra"], toy["h36m"], dtype=torch.float64)


def random_pose(B, J, seed, scale=0.6):
    g = torch.Generator().manual_seed(seed)
    return batch_rodrigues(torch.randn(B * J, 3, generator=g, dtype=torch.float64) * scale).reshape(B, J, 3, 3)


def lbs_reference(d, R, betas):
    """Hand-written SMPL for one sample with one-hot skinning weights (numpy, float64)."""
    parents = np.asarray(d["kintree_table"])[0].astype(np.int64)
    parents[0] = -1
    J = parents.size
    V = d["v_template"].shape[0]
    v_shaped = d["v_template"] + d["shapedirs"][:, :, : betas.size] @ betas
    Jr = np.asarray(d["J_regressor"].toarray() if scipy.sparse.issparse(d["J_regressor"]) else d["J_regressor"])
    Jt = Jr @ v_shaped
    feat = np.concatenate([(R[j] - np.eye(3)).reshape(-1) for j in range(1, J)])
    v_posed = v_shaped + d["posedirs"].reshape(V * 3, -1).dot(feat).reshape(V, 3)
    Rw = [None] * J
    Jw = np.zeros((J, 3))
    for j in range(J):
        if parents[j] < 0:
            Rw[j], Jw[j] = R[j], Jt[j]
        else:
            p = parents[j]
            Rw[j] = Rw[p] @ R[j]
            Jw[j] = Jw[p] + Rw[p] @ (Jt[j] - Jt[p])
    owner = d["weights"].argmax(1)
    verts = np.stack([Jw[k] + Rw[k] @ (v_posed[i] - Jt[k]) for i, k in enumerate(owner)])
    return verts, Jw


# ----------------------------------------------------------------------------- chumpy-style pickles
class _FakeCh:
    """Pickled like chumpy.ch.Ch: the class path chumpy.ch.Ch and a __dict__ holding 'x'."""


def write_chumpy_pickle(path, data, protocol=2, sparse_regressor=True):
    mod_ch = types.ModuleType("chumpy.ch")
    mod = types.ModuleType("chumpy")
    _FakeCh.__module__, _FakeCh.__qualname__, _FakeCh.__name__ = "chumpy.ch", "Ch", "Ch"
    mod_ch.Ch = _FakeCh
    mod.ch = mod_ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = mod, mod_ch
    try:
        out = {}
        for k, v in data.items():
            if k in ("v_template", "shapedirs", "posedirs", "weights"):
                c = _FakeCh()
                c.__dict__.update({"x": np.asarray(v), "_dirty_vars": set(), "_itr": None,
                                   "_depends_on_deps": {}, "_make_dense": False, "_make_sparse": False})
                out[k] = c
            elif k == "J_regressor" and sparse_regressor:
                out[k] = scipy.sparse.csc_matrix(v)
            else:
                out[k] = v
        out["bs_style"] = "lbs"
        with open(path, "wb") as f:
            pickle.dump(out, f, protocol=protocol)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_chumpy_pickle_loads_as_numpy(tmp_path, protocol):
    d = make_toy_smpl_data(seed=3)
    p = tmp_path / "SMPL_NEUTRAL.pkl"
    write_chumpy_pickle(p, d, protocol=protocol)
    assert "chumpy" not in sys.modules
    got = load_smpl_data(str(p))
    assert "chumpy" not in sys.modules
    for k in ("v_template", "shapedirs", "posedirs", "weights", "kintree_table", "f"):
        assert isinstance(got[k], np.ndarray)
        np.testing.assert_array_equal(got[k], d[k])
    assert scipy.sparse.issparse(got["J_regressor"])
    np.testing.assert_array_equal(got["J_regressor"].toarray(), d["J_regressor"])


def test_chumpy_expressions_only_fail_where_needed(tmp_path):
    mod_r = types.ModuleType("chumpy.reordering")

    class Select:
        pass

    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    mod_r.Select = Select
    d = make_toy_smpl_data(seed=3)
    mod = types.ModuleType("chumpy")
    mod.reordering = mod_r
    sys.modules["chumpy"], sys.modules["chumpy.reordering"] = mod, mod_r
    try:
        expr = Select()
        expr.__dict__.update({"a": np.zeros(3), "idxs": np.arange(2)})
        with open(tmp_path / "ok.pkl", "wb") as f:
            pickle.dump({**d, "J": expr}, f, protocol=2)
        with open(tmp_path / "bad.pkl", "wb") as f:
            pickle.dump({**d, "shapedirs": expr}, f, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.reordering"]
    got = load_smpl_data(str(tmp_path / "ok.pkl"))
    assert "J" not in got and got["v_template"].shape == d["v_template"].shape
    with pytest.raises(BodyModelError, match="chumpy.reordering.Select"):
        load_smpl_data(str(tmp_path / "bad.pkl"))


def test_pkl_and_npz_give_the_same_body(tmp_path, toy):
    d = make_toy_smpl_data(seed=0)  # = toy SMPL_NEUTRAL
    pkl_dir = tmp_path / "pkl"
    pkl_dir.mkdir()
    write_chumpy_pickle(pkl_dir / "SMPL_NEUTRAL.pkl", d)
    with open(os.path.join(toy["model_dir"], "vertex_ids.json")) as f:
        (pkl_dir / "vertex_ids.json").write_text(f.read())
    a = build_body_model(str(pkl_dir), dtype=torch.float64)
    b = build_body_model(toy["model_dir"], dtype=torch.float64)
    R = random_pose(2, 24, seed=1)
    betas = torch.randn(2, 10, dtype=torch.float64)
    oa, ob = a(R[:, :1], R[:, 1:], betas), b(R[:, :1], R[:, 1:], betas)
    torch.testing.assert_close(oa.vertices, ob.vertices)
    torch.testing.assert_close(oa.extended_joints, ob.extended_joints)
    assert oa.joints is None  # no extra regressor given


def test_restricted_unpickler_refuses_other_classes(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    p = tmp_path / "SMPL_NEUTRAL.pkl"
    with open(p, "wb") as f:
        pickle.dump({"v_template": Evil()}, f)
    with pytest.raises(BodyModelError, match="refusing to unpickle"):
        load_smpl_data(str(p))
    assert not (tmp_path / "pwned").exists()


def test_npz_with_pickled_sparse_member(tmp_path):
    d = make_toy_smpl_data(seed=4)
    obj = np.empty((), dtype=object)
    obj[()] = scipy.sparse.csc_matrix(d["J_regressor"])
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", **{**d, "J_regressor": obj})
    got = load_smpl_data(str(tmp_path / "SMPL_NEUTRAL.npz"))
    assert scipy.sparse.issparse(got["J_regressor"])
    np.testing.assert_array_equal(got["J_regressor"].toarray(), d["J_regressor"])
    evil = np.empty((), dtype=object)
    evil[()] = _Evil(str(tmp_path / "pwned"))
    np.savez(tmp_path / "SMPL_MALE.npz", **{**d, "J_regressor": evil})
    with pytest.raises(BodyModelError, match="refusing to unpickle"):
        load_smpl_data(str(tmp_path / "SMPL_MALE.npz"))
    assert not (tmp_path / "pwned").exists()


def test_npz_that_is_not_an_archive_or_has_a_bad_member(tmp_path):
    """dsr.safe_pickle.load_npz reads the archive; the SMPL reader's error type and hint stay."""
    import zipfile

    from dsr.body.smpl_io import SMPL_SOURCE_HINT

    bad = tmp_path / "SMPL_NEUTRAL.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(BodyModelError) as e:
        load_smpl_data(str(bad))
    assert str(e.value).startswith(f"{bad}: not a valid .npz archive (")
    assert str(e.value).endswith(f"). {SMPL_SOURCE_HINT}") and str(e.value).count(SMPL_SOURCE_HINT) == 1
    with zipfile.ZipFile(tmp_path / "SMPL_MALE.npz", "w") as z:
        z.writestr("v_template.npy", b"\x93NUMPY garbage")
    with pytest.raises(BodyModelError) as e:
        load_smpl_data(str(tmp_path / "SMPL_MALE.npz"))
    assert str(e.value).startswith(f"{tmp_path / 'SMPL_MALE.npz'}: member 'v_template' is not a .npy array (")
    assert str(e.value).count(SMPL_SOURCE_HINT) == 1


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, ("echo pwned > " + self.target,))


def test_lbs_against_hand_written_reference(toy_model):
    d = make_toy_smpl_data(seed=0)
    R = random_pose(3, 24, seed=5)
    g = torch.Generator().manual_seed(6)
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    out = toy_model(R[:, :1], R[:, 1:], betas)
    for b in range(3):
        verts, Jw = lbs_reference(d, R[b].numpy(), betas[b].numpy())
        np.testing.assert_allclose(out.vertices[b].numpy(), verts, atol=1e-10)
        np.testing.assert_allclose(out.smpl_joints[b].numpy(), Jw, atol=1e-10)


def test_axis_angle_input_matches_rotmat_input(toy_model):
    g = torch.Generator().manual_seed(7)
    aa = torch.randn(2, 72, generator=g, dtype=torch.float64) * 0.5
    R = batch_rodrigues(aa.reshape(-1, 3)).reshape(2, 24, 3, 3)
    betas = torch.zeros(2, 10, dtype=torch.float64)
    a = toy_model(aa[:, :3], aa[:, 3:], betas, pose2rot=True)
    b = toy_model(R[:, :1], R[:, 1:], betas)
    torch.testing.assert_close(a.vertices, b.vertices)


def test_49_joint_map(toy, toy_model):
    R = random_pose(2, 24, seed=8)
    betas = torch.randn(2, 10, dtype=torch.float64)
    out = toy_model(R[:, :1], R[:, 1:], betas)
    v = out.vertices
    extra = np.load(toy["extra"])
    with open(os.path.join(toy["model_dir"], "vertex_ids.json")) as f:
        vid = json.load(f)
    ext = torch.cat([out.smpl_joints, v[:, [vid[n] for n in VJ_NAMES]],
                     torch.einsum("kv,bvc->bkc", torch.from_numpy(extra), v)], dim=1)
    assert ext.shape[1] == 54
    torch.testing.assert_close(out.joints, ext[:, REF_49])
    # spot checks named in the brief
    torch.testing.assert_close(out.joints[:, 25 + 2], torch.einsum("v,bvc->bc", torch.from_numpy(extra[0]), v))
    torch.testing.assert_close(out.joints[:, 8], out.smpl_joints[:, 0])  # OP MidHip = pelvis
    torch.testing.assert_close(out.joints[:, 0], v[:, vid["nose"]])  # OP Nose
    torch.testing.assert_close(out.joints[:, 21], v[:, vid["LHeel"]])  # OP LHeel


def test_h36m_regression(toy, toy_model):
    R = random_pose(2, 24, seed=9)
    out = toy_model(R[:, :1], R[:, 1:], torch.zeros(2, 10, dtype=torch.float64))
    reg = np.load(toy["h36m"])
    expected = np.einsum("kv,bvc->bkc", reg, out.vertices.numpy())
    np.testing.assert_allclose(toy_model.regress_h36m_joints(out.vertices).numpy(), expected, atol=1e-12)


def test_sizes_come_from_the_file(toy_model):
    d = make_toy_smpl_data(seed=0)
    assert toy_model.num_vertices == d["v_template"].shape[0]
    assert toy_model.num_faces == d["f"].shape[0] and toy_model.num_joints == 24
    assert toy_model.faces.dtype == torch.long
    torch.testing.assert_close(toy_model.faces, torch.from_numpy(d["f"]))
    assert len(list(toy_model.parameters())) == 0  # nothing trainable inside the body model


def test_genders_differ_and_load(toy):
    outs = {}
    for g in ("neutral", "male", "female", "m", "F"):
        m = build_body_model(toy["model_dir"], g)
        outs[g] = m.smpl.v_template.clone()
    torch.testing.assert_close(outs["male"], outs["m"])
    torch.testing.assert_close(outs["female"], outs["F"])
    assert not torch.allclose(outs["male"], outs["female"])
    with pytest.raises(ValueError, match="gender"):
        build_body_model(toy["model_dir"], "robot")


def test_zero_or_absent_posedirs_and_2d_layout(tmp_path):
    d = make_toy_smpl_data(seed=2)
    vid = {n: i for i, n in enumerate(VJ_NAMES)}
    ref = None
    for name, variant in (("full", d), ("flat", {**d, "posedirs": d["posedirs"].reshape(-1, 207).T})):
        sub = tmp_path / name
        sub.mkdir()
        np.savez(sub / "SMPL_NEUTRAL.npz", **variant)
        (sub / "vertex_ids.json").write_text(json.dumps(vid))
        m = build_body_model(str(sub), dtype=torch.float64)
        R = random_pose(1, 24, seed=3)
        v = m(R[:, :1], R[:, 1:], torch.zeros(1, 10, dtype=torch.float64)).vertices
        if ref is None:
            ref = v
        torch.testing.assert_close(v, ref)  # (P, 3V) layout == (V, 3, P) layout
    sub = tmp_path / "absent"
    sub.mkdir()
    np.savez(sub / "SMPL_NEUTRAL.npz", **{k: v for k, v in d.items() if k != "posedirs"})
    (sub / "vertex_ids.json").write_text(json.dumps(vid))
    m = build_body_model(str(sub), dtype=torch.float64)
    R = random_pose(1, 24, seed=3)
    out = m(R[:, :1], R[:, 1:], torch.zeros(1, 10, dtype=torch.float64))
    verts, _ = lbs_reference({**d, "posedirs": np.zeros_like(d["posedirs"])}, R[0].numpy(), np.zeros(10))
    np.testing.assert_allclose(out.vertices[0].numpy(), verts, atol=1e-10)


# ----------------------------------------------------------------------------- errors
def test_missing_folder_and_file_errors(tmp_path):
    with pytest.raises(BodyModelError) as e:
        build_body_model(str(tmp_path / "nope"))
    msg = str(e.value)
    assert "nope" in msg and "SMPL_NEUTRAL" in msg and "smpl.is.tue.mpg.de" in msg
    with pytest.raises(BodyModelError) as e:
        build_body_model(str(tmp_path), "female")
    msg = str(e.value)
    assert str(tmp_path) in msg and "SMPL_FEMALE.npz" in msg and "SMPL_FEMALE.pkl" in msg
    assert "smpl.is.tue.mpg.de" in msg


def test_malformed_files(tmp_path):
    d = make_toy_smpl_data(seed=0)
    bad = dict(d, weights=d["weights"][:, :20])
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", **bad)
    with pytest.raises(BodyModelError, match="weights"):
        build_body_model(str(tmp_path))
    np.savez(tmp_path / "SMPL_MALE.npz", **{k: v for k, v in d.items() if k != "f"})
    with pytest.raises(BodyModelError, match=r"missing SMPL arrays \['f'\]"):
        build_body_model(str(tmp_path), "male")
    (tmp_path / "SMPL_FEMALE.pkl").write_bytes(b"this is not a pickle")
    with pytest.raises(BodyModelError, match="SMPL_FEMALE.pkl"):
        build_body_model(str(tmp_path), "female")


def test_vertex_ids_needed_for_other_topologies(tmp_path):
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", **make_toy_smpl_data(seed=0))
    with pytest.raises(BodyModelError, match="vertex_ids.json"):
        build_body_model(str(tmp_path))


def test_regressor_errors(toy, tmp_path):
    np.save(tmp_path / "extra.npy", np.zeros((9, 7)))
    with pytest.raises(BodyModelError, match="extra.npy"):
        build_body_model(toy["model_dir"], extra_regressor_path=str(tmp_path / "extra.npy"))
    with pytest.raises(BodyModelError, match="missing.npy"):
        build_body_model(toy["model_dir"], h36m_regressor_path=str(tmp_path / "missing.npy"))


# ----------------------------------------------------------------------------- the free body model
free = pytest.mark.skipif(not os.path.isfile(os.path.join(FREE, "smpl", "SMPL_NEUTRAL.npz")),
                          reason="dsr/assets/free_body not built yet")


@free
@pytest.mark.parametrize("gender", ["neutral", "male", "female"])
def test_free_model_49_joints(gender):
    m = build_body_model(os.path.join(FREE, "smpl"), gender, os.path.join(FREE, "J_regressor_extra.npy"),
                         os.path.join(FREE, "J_regressor_h36m.npy"), dtype=torch.float64)
    assert m.num_joints == 24
    R = random_pose(2, 24, seed=11, scale=0.3)
    out = m(R[:, :1], R[:, 1:], torch.zeros(2, 10, dtype=torch.float64))
    v = out.vertices
    assert v.shape == (2, m.num_vertices, 3) and out.joints.shape == (2, 49, 3)
    extra = torch.from_numpy(np.load(os.path.join(FREE, "J_regressor_extra.npy"))).double()
    with open(os.path.join(FREE, "smpl", "vertex_ids.json")) as f:
        vid = json.load(f)
    ext = torch.cat([out.smpl_joints, v[:, [vid[n] for n in VJ_NAMES]], torch.einsum("kv,bvc->bkc", extra, v)], 1)
    torch.testing.assert_close(out.joints, ext[:, REF_49])
    torch.testing.assert_close(out.joints[:, 27], torch.einsum("v,bvc->bc", extra[0], v))  # R hip (extra)
    torch.testing.assert_close(out.joints[:, 8], out.smpl_joints[:, 0])  # OP MidHip == SMPL joint 0
    h36m = m.regress_h36m_joints(v)
    assert h36m.shape == (2, 17, 3)
