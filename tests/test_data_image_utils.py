"""Crop / keypoint transform / flip / rotation maths of SPIN and PARE, checked by hand."""
import cv2
import numpy as np
import pytest

from dsr import constants as C
from dsr.data import image_utils as IU


def _swap_side(name: str) -> str:
    for a, b in (("Left", "Right"), ("left", "right"), ("OP L", "OP R")):
        if a in name:
            return name.replace(a, b)
        if b in name:
            return name.replace(b, a)
    return name


@pytest.mark.parametrize("perm,names", [
    (C.J24_FLIP_PERM, C.GT_JOINT_NAMES),
    (C.J49_FLIP_PERM, C.JOINT_NAMES),
    (C.SMPL_JOINTS_FLIP_PERM, C.SMPL_JOINT_NAMES),
])
def test_flip_perms_are_involutions_mapping_left_to_right(perm, names):
    perm = np.asarray(perm)
    assert sorted(perm.tolist()) == list(range(len(names)))
    assert (perm[perm] == np.arange(len(perm))).all()
    for i, j in enumerate(perm):
        assert names[j] == _swap_side(names[i]), (names[i], names[j])


def test_flip_twice_is_identity():
    rng = np.random.default_rng(0)
    for n in (24, 49):
        kp = rng.normal(size=(n, 3))
        np.testing.assert_array_equal(IU.flip_kp(IU.flip_kp(kp)), kp)
    S = rng.normal(size=(24, 4))
    np.testing.assert_array_equal(IU.flip_kp(IU.flip_kp(S)), S)
    pose = rng.normal(size=72)
    np.testing.assert_array_equal(IU.flip_pose(IU.flip_pose(pose)), pose)
    # through the full processing (rot 0): keypoints in [-1,1] are flipped exactly
    kp = np.c_[rng.uniform(50, 150, size=(49, 2)), np.ones(49)]
    a = IU.j2d_processing(kp, (100, 100), 1.0, 0, 0)
    b = IU.j2d_processing(kp, (100, 100), 1.0, 0, 1)
    np.testing.assert_allclose(IU.flip_kp(b), a)
    np.testing.assert_allclose(IU.j3d_processing(IU.j3d_processing(S, 0, 1), 0, 1), S.astype(np.float32), atol=1e-6)
    np.testing.assert_allclose(IU.pose_processing(IU.pose_processing(pose, 0, 1), 0, 1), pose.astype(np.float32), atol=1e-6)


def test_flip_pose_by_hand():
    pose = np.zeros(72)
    pose[3:6] = [0.1, 0.2, 0.3]  # left hip (SMPL joint 1)
    f = IU.flip_pose(pose)
    np.testing.assert_allclose(f[6:9], [0.1, -0.2, -0.3])  # -> right hip, y and z negated
    assert not f[3:6].any()


def test_keypoint_lands_where_spin_formula_says():
    center, scale, res = np.array([310.0, 205.0]), 1.7, 224
    pts = np.array([[310.0, 205.0, 1], [250.3, 140.9, 1], [401.2, 333.3, 1], [150.0, 60.0, 1]])
    h = 200 * scale
    for rot in (0.0, 25.0, -40.0):
        out = IU.j2d_processing(pts, center, scale, rot, 0, res)
        for p, o in zip(pts, out):
            # crop pixel before rotation: res * (p - c) / h + res / 2, then rotation by -rot about the centre
            q = res * (p[:2] - center) / h
            r = np.deg2rad(-rot)
            q = np.array([np.cos(r) * q[0] - np.sin(r) * q[1], np.sin(r) * q[0] + np.cos(r) * q[1]]) + res / 2
            want = np.trunc(q) + 1  # SPIN's int() quantisation and +1
            exact = np.abs(q - np.round(q)) > 1e-6  # away from a float edge of the truncation
            np.testing.assert_allclose(o[:2][exact], (2 * want / res - 1)[exact], atol=1e-6)
            # on an integer (the bbox centre), float rounding may land on either side
            assert np.all(np.abs(o[:2] - (2 * want / res - 1)) <= 2 / res + 1e-6)
            assert o[2] == 1
    # the spin transform() on a single point (pt + 1 convention) gives the same pixel
    px = IU.transform(pts[1, :2] + 1, center, scale, (res, res), rot=25.0)
    np.testing.assert_allclose(2 * px / res - 1, IU.j2d_processing(pts[1:2], center, scale, 25.0, 0)[0, :2], atol=1e-6)


def test_keypoint_normalisation_in_the_npz_dtype():
    """The original normalises 2 k / res - 1 in the keypoints' own dtype: float32 npz files give
    float32 arithmetic, float64 files float64 rounded to float32 at the end. Centre (112, 112),
    scale 1.12 (224 px box -> the identity map, up to rounding): keypoint x = p - 0.5 lands on crop
    pixel int(p - 0.5) + 1 = p."""
    p = np.arange(1.0, 224.0)
    kp = np.stack([p - 0.5, p - 0.5, np.ones_like(p)], 1)
    f32 = IU.j2d_processing(kp.astype(np.float32), (112, 112), 1.12, 0, 0)[:, 0]
    f64 = IU.j2d_processing(kp, (112, 112), 1.12, 0, 0)[:, 0]
    by_hand_32 = np.float32(2.0) * p.astype(np.float32) / np.float32(224) - np.float32(1.0)
    by_hand_64 = (2.0 * p / 224 - 1.0).astype(np.float32)
    np.testing.assert_array_equal(f32, by_hand_32)
    np.testing.assert_array_equal(f64, by_hand_64)
    assert (by_hand_32 != by_hand_64).sum() > 10  # one float32 ulp apart: enough to move a keypoint box edge


@pytest.mark.parametrize("rot", [0.0, 30.0, -55.0])
def test_crop_cv2_agrees_with_keypoint_transform(rot):
    """A bright dot in the image ends up where the (unquantised) SPIN transform puts it."""
    img = np.zeros((400, 500), np.float32)
    p = np.array([180.0, 260.0])
    yy, xx = np.mgrid[:400, :500]
    img[:] = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 3.0 ** 2))
    center, scale = np.array([250.0, 210.0]), 1.8
    crop = IU.crop_cv2(img, center, scale, 224, rot=rot)
    t = IU.get_transform(center, scale, (224, 224), rot=rot)
    want = (t @ np.array([p[0], p[1], 1.0]))[:2]
    ys, xs = np.mgrid[:224, :224]
    w = crop / crop.sum()
    got = np.array([(w * xs).sum(), (w * ys).sum()])
    np.testing.assert_allclose(got, want, atol=0.75)


def test_rotating_root_pose_equals_rotating_projection():
    """Rotate the root by rot_aa(r), project with the crop camera: same as rotating the projected
    joints by SPIN's 2D crop rotation of r about the crop centre. Same for j3d_processing."""
    rng = np.random.default_rng(1)
    f, res, tz = 5000.0, 224, 50.0
    P = rng.normal(scale=0.4, size=(20, 3))  # body-frame points
    aa = rng.normal(size=3)

    def project(X):
        return f * X[:, :2] / X[:, 2:] + res / 2

    def posed(aa_root):
        R, _ = cv2.Rodrigues(aa_root.reshape(3, 1))
        return P @ R.T + np.array([0, 0, tz])

    u = project(posed(aa))
    for rot in (20.0, -35.0):
        u_rot = project(posed(IU.rot_aa(aa, rot)))
        # SPIN 2D transform of a 224 crop centred on the principal point (identity without rot)
        t = IU.get_transform((res / 2, res / 2), res / 200.0, (res, res), rot=rot)
        want = (np.c_[u, np.ones(len(u))] @ t.T)[:, :2]
        np.testing.assert_allclose(u_rot, want, atol=1e-6)
        # 3D joints rotated by j3d_processing project to the same place
        S = np.c_[posed(aa) - [0, 0, tz], np.ones(len(P))]
        S_rot = IU.j3d_processing(S, rot, 0).astype(np.float64)
        np.testing.assert_allclose(project(S_rot[:, :3] + [0, 0, tz]), want, atol=1e-3)


def test_flip_pose_matches_mirrored_projection():
    """Flipping the pose (root only) mirrors the projected x of the points about the crop centre
    when the body-frame points are themselves mirrored (x -> -x)."""
    rng = np.random.default_rng(2)
    P = rng.normal(scale=0.4, size=(10, 3))
    aa = rng.normal(size=3)
    R, _ = cv2.Rodrigues(aa.reshape(3, 1))
    pose = np.zeros(72)
    pose[:3] = aa
    Rf, _ = cv2.Rodrigues(IU.flip_pose(pose)[:3].reshape(3, 1))
    M = np.diag([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(M @ R @ M, Rf, atol=1e-9)  # mirror conjugation
    np.testing.assert_allclose((P * [-1, 1, 1]) @ Rf.T, (P @ R.T) * [-1, 1, 1], atol=1e-9)


def test_sample_augmentation_ranges():
    rng = np.random.default_rng(3)
    draws = [IU.sample_augmentation(rng) for _ in range(2000)]
    flips = np.array([d[0] for d in draws])
    pn = np.array([d[1] for d in draws])
    rots = np.array([d[2] for d in draws])
    scs = np.array([d[3] for d in draws])
    assert 0.45 < flips.mean() < 0.55
    assert pn.min() >= 0.6 and pn.max() <= 1.4
    assert np.abs(rots).max() <= 60 and 0.55 < (rots == 0).mean() < 0.65
    assert scs.min() >= 0.75 and scs.max() <= 1.25
