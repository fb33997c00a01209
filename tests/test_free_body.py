"""Tests of the committed free body model (dsr/assets/free_body/) and of its outfit model.

Expectations are computed here from geometry, by hand or by Monte Carlo; the assets are not
rebuilt except in the `slow` reproducibility test (--runslow or DSR_RUN_SLOW=1).
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dsr.body import build_body_model, outfits

GENDERS = ("NEUTRAL", "MALE", "FEMALE")
LEFT_LABELS, RIGHT_LABELS = [14, 16, 18], [15, 17, 19]


@pytest.fixture(scope="module")
def fb(free_body_dir):
    return free_body_dir


def _npz(fb, gender="NEUTRAL"):
    return dict(np.load(os.path.join(fb, "smpl", f"SMPL_{gender}.npz")))


def _body(fb, gender="neutral"):
    return build_body_model(os.path.join(fb, "smpl"), gender,
                            extra_regressor_path=os.path.join(fb, "J_regressor_extra.npy"),
                            h36m_regressor_path=os.path.join(fb, "J_regressor_h36m.npy"),
                            dtype=torch.float64)


def _rot(axis, deg):
    """Rotation matrix about a principal axis, written out by hand."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _pose(body, rots=None, glob=None):
    B = 1
    go = torch.eye(3, dtype=torch.float64).repeat(B, 1, 1, 1)
    if glob is not None:
        go[0, 0] = torch.as_tensor(glob)
    bp = torch.eye(3, dtype=torch.float64).repeat(B, body.num_joints - 1, 1, 1)
    for j, R in (rots or {}).items():
        bp[0, j - 1] = torch.as_tensor(R)
    return go, bp


def test_files_shapes_and_size(fb):
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(fb, "**", "*"), recursive=True)
                if os.path.isfile(p))
    assert total <= 15 * 2**20
    d = _npz(fb)
    V, F = d["v_template"].shape[0], d["f"].shape[0]
    assert d["v_template"].dtype == np.float32 and d["v_template"].shape == (V, 3)
    assert d["shapedirs"].shape == (V, 3, 10)
    assert d["posedirs"].shape == (V, 3, 207) and not d["posedirs"].any()
    assert d["J_regressor"].shape == (24, V) and d["weights"].shape == (V, 24)
    assert d["kintree_table"].shape == (2, 24) and d["f"].min() == 0 and d["f"].max() == V - 1
    parents = np.where(d["kintree_table"][0] > 1000, -1, d["kintree_table"][0])
    assert parents.tolist() == [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18,
                                19, 20, 21]
    # closed 2-manifold surface: every edge shared by exactly two faces, Euler characteristic 2
    e = np.sort(d["f"][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    assert (counts == 2).all() and V - len(counts) + F == 2
    assert np.load(os.path.join(fb, "semantic_prior.npy")).shape == (F, 20)
    assert np.load(os.path.join(fb, "J_regressor_extra.npy")).shape == (9, V)
    assert np.load(os.path.join(fb, "J_regressor_h36m.npy")).shape == (17, V)


@pytest.mark.parametrize("gender", GENDERS)
def test_genders_load_adult_t_pose(fb, gender):
    body = _body(fb, gender.lower())
    out = body(*_pose(body), betas=torch.zeros(1, 10, dtype=torch.float64))
    v = out.vertices[0].numpy()
    height = np.ptp(v[:, 1])
    assert 1.5 < height < 1.9  # an adult
    # T-pose: arm span about the height, finger tips at shoulder height
    span = np.ptp(v[:, 0])
    assert 0.9 * height < span < 1.15 * height
    tips = v[[np.argmax(v[:, 0]), np.argmin(v[:, 0])]]
    j = out.smpl_joints[0].numpy()
    assert np.all(np.abs(tips[:, 1] - j[[16, 17], 1]) < 0.1)
    assert out.joints.shape == (1, 49, 3)


def test_smplx_loads_npz_directly(fb):
    smplx = pytest.importorskip("smplx")
    ids = json.load(open(os.path.join(fb, "smpl", "vertex_ids.json")))
    data = smplx.utils.Struct(**_npz(fb))  # smplx's SMPL unpickles files itself; npz goes in this way
    m = smplx.SMPL(model_path="", data_struct=data, vertex_ids=ids)
    out = m()
    assert out.vertices.shape == (1, m.v_template.shape[0], 3)
    assert np.allclose(out.vertices[0].detach().numpy(), _npz(fb)["v_template"], atol=1e-6)


def test_bending_left_elbow_moves_forearm_not_torso(fb):
    body = _body(fb)
    d = _npz(fb)
    v0 = d["v_template"].astype(np.float64)
    R = _rot("y", -90)  # +x (left arm direction) -> +z (forward)
    rest = body(*_pose(body), betas=torch.zeros(1, 10, dtype=torch.float64))
    bent = body(*_pose(body, {18: R}), betas=torch.zeros(1, 10, dtype=torch.float64))
    a, b = rest.vertices[0].numpy(), bent.vertices[0].numpy()
    elbow = rest.smpl_joints[0, 18].numpy()
    moved = np.linalg.norm(b - a, axis=1)
    forearm = v0[:, 0] > elbow[0] + 0.08  # left forearm and hand, by geometry
    torso = (np.abs(v0[:, 0]) < 0.12) & (v0[:, 1] > -0.1) & (v0[:, 1] < 0.35)
    assert forearm.sum() > 100 and torso.sum() > 300
    assert moved[forearm].min() > 0.05
    assert moved[torso].max() < 1e-9
    # the finger tip is carried rigidly about the elbow: x_new = e + R (x - e)
    tip = np.argmax(v0[:, 0])
    assert np.allclose(b[tip], elbow + R @ (a[tip] - elbow), atol=1e-6)
    assert b[tip, 2] > 0.3  # now in front of the body
    # the right side does not move
    assert moved[v0[:, 0] < -0.2].max() < 1e-9


@pytest.mark.parametrize("gender", GENDERS)
def test_first_shape_component_changes_height(fb, gender):
    d = _npz(fb, gender)
    v, s0 = d["v_template"].astype(np.float64), d["shapedirs"][:, :, 0]
    tall, short = v + 2 * s0, v - 2 * s0
    assert np.ptp(tall[:, 1]) - np.ptp(short[:, 1]) > 0.15


def test_regressor_rows_are_sparse_convex_combinations(fb):
    mats = [_npz(fb, g)["J_regressor"] for g in GENDERS]
    mats += [np.load(os.path.join(fb, n)) for n in ("J_regressor_extra.npy", "J_regressor_h36m.npy")]
    for M in mats:
        assert (M >= 0).all()
        assert np.allclose(M.sum(1), 1.0, atol=1e-5)
        assert ((M > 0).sum(1) <= 100).all()
    w = _npz(fb)["weights"]
    assert (w >= 0).all() and np.allclose(w.sum(1), 1.0, atol=1e-5)


def test_h36m_and_extra_joint_semantics(fb):
    body = _body(fb)
    # a shaped, posed body: knees bent, arms lowered
    go, bp = _pose(body, {4: _rot("x", 40), 5: _rot("x", 40), 16: _rot("z", -50), 17: _rot("z", 50)})
    betas = torch.zeros(1, 10, dtype=torch.float64)
    betas[0, :3] = torch.tensor([1.0, -1.0, 0.5])
    out = body(go, bp, betas)
    h = body.regress_h36m_joints(out.vertices)[0].numpy()
    mid = 0.5 * (h[1] + h[4])
    assert np.linalg.norm(h[0] - mid) < 0.02  # pelvis between the hips
    assert h[1, 0] > h[0, 0] > h[4, 0]  # person's left = +x
    for l, r in ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)):
        assert h[l, 0] > 0.03 and h[r, 0] < -0.03
    y = h[:, 1]
    assert y[10] > y[9] > y[8] > y[7] > y[0] > y[2] > y[3]  # head > jaw > thorax > spine > pelvis > knee > ankle
    # the 14 evaluation joints (H36M_TO_J14) are right/left as the evaluation assumes
    j14 = h[[6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]]
    assert (j14[:3, 0] < 0).all() and (j14[3:6, 0] > 0).all()
    assert (j14[6:9, 0] < 0).all() and (j14[9:12, 0] > 0).all()
    # extra joints: R hip, L hip, ..., head top = the highest point of the mesh
    ext = out.extended_joints[0, -9:].numpy()
    assert ext[0, 0] < 0 < ext[1, 0]
    assert abs(ext[3, 1] - out.vertices[0, :, 1].max().item()) < 0.01
    assert np.allclose(ext[4], h[0], atol=1e-9) and np.allclose(ext[8], h[10], atol=1e-9)


def test_vertex_ids(fb):
    ids = json.load(open(os.path.join(fb, "smpl", "vertex_ids.json")))
    v = _npz(fb)["v_template"]
    assert len(ids) == 21 and len(set(ids.values())) == 21  # distinct vertices
    for n, i in ids.items():
        if n[0] in "lL":
            assert v[i, 0] > 0.02, n
        elif n[0] in "rR":
            assert v[i, 0] < -0.02, n
    assert abs(v[ids["nose"], 0]) < 0.015 and v[ids["nose"], 1] > 0.4
    jx = (_npz(fb)["J_regressor"] @ v)[:, 0]
    assert v[ids["lthumb"], 0] > jx[20] and v[ids["rthumb"], 0] < jx[21]  # beyond the wrists
    for tip in ("index", "middle", "ring", "pinky"):  # beyond the hand joints
        assert v[ids["l" + tip], 0] > jx[22] and v[ids["r" + tip], 0] < jx[23]
    for s in "LR":
        assert v[ids[f"{s}Heel"], 2] < v[ids[f"{s}BigToe"], 2] - 0.15
        assert v[ids[f"{s}Heel"], 1] < -0.7


def test_semantic_prior_is_the_outfit_marginal(fb):
    prior = np.load(os.path.join(fb, "semantic_prior.npy"))
    parts = np.load(os.path.join(fb, "face_parts.npy"))
    assert prior.dtype == np.float32 and (prior >= 0).all()
    assert np.allclose(prior.sum(1), 1.0, atol=1e-5)
    assert np.allclose(prior, outfits.semantic_prior(parts), atol=1e-7)
    # Monte Carlo: label frequencies of sampled outfits
    rng = np.random.default_rng(0)
    n = 3000
    F = len(parts)
    counts = np.zeros((F, 20))
    rows = np.arange(F)
    for _ in range(n):
        lab = outfits.sample_outfit(rng, "neutral", face_parts=parts)
        counts[rows, lab] += 1
    assert np.abs(counts / n - prior).max() < 0.04  # > 4.5 sigma of a p=0.5 frequency


def test_prior_matches_hand_computed_probabilities(fb):
    prior = np.load(os.path.join(fb, "semantic_prior.npy"))
    d = _npz(fb)
    c = d["v_template"][d["f"]].mean(1)
    p = outfits.OUTFIT_PROBS
    shoes = 0.5 * (p["male"]["shoes"][1] + p["female"]["shoes"][1])
    sole = c[:, 1] < c[:, 1].min() + 0.015
    assert np.allclose(prior[sole & (c[:, 0] > 0), 18], shoes, atol=1e-6)
    assert np.allclose(prior[sole & (c[:, 0] < 0), 19], shoes, atol=1e-6)
    # the finger tips are always skin of the arm
    assert np.allclose(prior[c[:, 0] > c[:, 0].max() - 0.03, 14], 1.0)
    # the top of the head: hat, else hair, else (no hair) face
    top = c[:, 1] > c[:, 1].max() - 0.01
    hat = 0.5 * (p["male"]["hat"][1] + p["female"]["hat"][1])
    nohair = 0.5 * (p["male"]["hair"][0] * p["male"]["hat"][0]
                    + p["female"]["hair"][0] * p["female"]["hat"][0])
    assert np.allclose(prior[top, 1], hat, atol=1e-6)
    assert np.allclose(prior[top, 13], nohair, atol=1e-6)


def test_left_labels_lie_at_positive_x(fb):
    prior = np.load(os.path.join(fb, "semantic_prior.npy"))
    d = _npz(fb)
    c = d["v_template"][d["f"]].mean(1)
    left = prior[:, LEFT_LABELS].sum(1) > 0
    right = prior[:, RIGHT_LABELS].sum(1) > 0
    assert left.sum() > 1000 and right.sum() > 1000
    assert (c[left, 0] > 0).all() and (c[right, 0] < 0).all()


def test_sample_outfit_api(fb):
    parts = np.load(os.path.join(fb, "face_parts.npy"))
    a = outfits.sample_outfit(np.random.default_rng(5), "female", face_parts=parts)
    b = outfits.sample_outfit(np.random.default_rng(5), "female", face_parts=parts)
    assert a.dtype == np.int64 and a.shape == parts.shape and (a == b).all()
    assert 0 <= a.min() and a.max() < 20
    lab, outfit = outfits.sample_outfit(np.random.default_rng(1), face_parts=parts, return_outfit=True)
    assert set(outfit) == set(outfits.OUTFIT_CHOICES)
    with pytest.raises(ValueError, match="gender"):
        outfits.sample_outfit(np.random.default_rng(0), "other", face_parts=parts)


def _rot6d_gram_schmidt(x):
    a = x.reshape(-1, 3, 2)
    b1 = a[:, :, 0] / np.linalg.norm(a[:, :, 0], axis=1, keepdims=True)
    a2 = a[:, :, 1] - (b1 * a[:, :, 1]).sum(1, keepdims=True) * b1
    b2 = a2 / np.linalg.norm(a2, axis=1, keepdims=True)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=2)


def test_mean_params_give_an_upright_person_facing_the_camera(fb):
    mp = np.load(os.path.join(fb, "smpl_mean_params.npz"))
    assert mp["pose"].shape == (144,) and mp["shape"].shape == (10,) and mp["cam"].shape == (3,)
    assert np.allclose(mp["shape"], 0) and 0.5 < mp["cam"][0] < 1.5
    R = _rot6d_gram_schmidt(mp["pose"])
    assert np.allclose(R[0], _rot("x", 180), atol=1e-9)
    body = _body(fb)
    go = torch.as_tensor(R[None, :1])
    bp = torch.as_tensor(R[None, 1:])
    out = body(go, bp, torch.as_tensor(mp["shape"][None]))
    v = out.vertices[0].numpy()
    ids = json.load(open(os.path.join(fb, "smpl", "vertex_ids.json")))
    head, feet = v[ids["nose"]], v[[ids["LHeel"], ids["RHeel"]]]
    assert (head[1] < feet[:, 1] - 1.0).all()  # OpenCV y points down
    assert head[2] < out.smpl_joints[0, 15, 2].item()  # the face is nearer the camera (+z forward)
    # the person's left hand is on the image right when facing the camera
    assert v[ids["lindex"], 0] > 0 > v[ids["rindex"], 0]


@pytest.mark.slow
def test_build_script_reproduces_committed_assets(fb, tmp_path, repo_root):
    subprocess.run([sys.executable, os.path.join(repo_root, "tools", "build_free_body.py"),
                    "--out", str(tmp_path), "--seed", "0"], check=True, cwd=repo_root)
    for p in sorted(glob.glob(os.path.join(fb, "**", "*"), recursive=True)):
        if not os.path.isfile(p):
            continue
        q = os.path.join(tmp_path, os.path.relpath(p, fb))
        if p.endswith(".npz"):
            a, b = np.load(p), np.load(q)
            assert set(a.files) == set(b.files)
            for k in a.files:
                assert np.array_equal(a[k], b[k]), (p, k)
        else:
            assert open(p, "rb").read() == open(q, "rb").read(), p
