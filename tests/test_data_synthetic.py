"""Pose sampler (by hand) and the synthetic generator (on the free body model, if built)."""
import os

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dsr.constants import SMPL_JOINT_NAMES
from dsr.data import pose_sampler as PS
from conftest import load_script  # noqa: E402

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
FREE_BODY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dsr", "assets", "free_body")
HAVE_BODY = os.path.isfile(os.path.join(FREE_BODY, "smpl", "SMPL_NEUTRAL.npz")) and os.path.isfile(
    os.path.join(FREE_BODY, "face_parts.npy"))
needs_body = pytest.mark.skipif(not HAVE_BODY, reason="free body assets not built (tools/build_free_body.py)")


def test_joint_limits_mirrored():
    L = PS.JOINT_LIMITS
    np.testing.assert_array_equal(L[J["left_shoulder"]], [[-45, 45], [-100, 35], [-85, 75]])
    np.testing.assert_array_equal(L[J["right_shoulder"]], [[-45, 45], [-35, 100], [-75, 85]])
    np.testing.assert_array_equal(L[J["right_knee"]], [[0, 145], [-3, 3], [-3, 3]])
    np.testing.assert_array_equal(L[J["right_elbow"]], [[-10, 10], [0, 145], [-10, 10]])


def test_sampled_poses_within_limits():
    rng = np.random.default_rng(0)
    poses = np.stack([PS.sample_body_pose(rng) for _ in range(300)])
    assert (poses[:, :3] == 0).all()
    eul = Rotation.from_rotvec(poses.reshape(-1, 3)).as_euler("XYZ", degrees=True).reshape(300, 24, 3)
    # XYZ Euler angles are ambiguous: (x, y, z) ~ (x + 180, +-180 - y, z + 180); one must fit
    alt = eul + np.array([180.0, 0.0, 180.0])
    alt[..., 1] = np.sign(eul[..., 1]) * 180.0 - eul[..., 1]
    alt = (alt + 180.0) % 360.0 - 180.0
    lo, hi = PS.JOINT_LIMITS[None, :, :, 0] - 1e-6, PS.JOINT_LIMITS[None, :, :, 1] + 1e-6

    def within(e):
        return ((e >= lo) & (e <= hi)).all(-1)
    assert (within(eul) | within(alt))[:, 1:].all()
    # knees only bend backwards (positive x), by hand from the limits
    assert (eul[:, J["left_knee"], 0] >= -1e-6).all()


def _tpose():
    """A hand-made T-pose skeleton (metres, SMPL frame: x left, y up)."""
    p = np.zeros((24, 3))
    coords = {
        "pelvis": (0, 0.9, 0), "left_hip": (0.09, 0.82, 0), "right_hip": (-0.09, 0.82, 0), "spine1": (0, 1.0, 0),
        "left_knee": (0.1, 0.45, 0), "right_knee": (-0.1, 0.45, 0), "spine2": (0, 1.13, 0),
        "left_ankle": (0.1, 0.07, 0), "right_ankle": (-0.1, 0.07, 0), "spine3": (0, 1.2, 0),
        "left_foot": (0.1, 0.02, 0.12), "right_foot": (-0.1, 0.02, 0.12), "neck": (0, 1.45, 0),
        "left_collar": (0.08, 1.38, 0), "right_collar": (-0.08, 1.38, 0), "head": (0, 1.55, 0),
        "left_shoulder": (0.18, 1.4, 0), "right_shoulder": (-0.18, 1.4, 0), "left_elbow": (0.45, 1.4, 0),
        "right_elbow": (-0.45, 1.4, 0), "left_wrist": (0.7, 1.4, 0), "right_wrist": (-0.7, 1.4, 0),
        "left_hand": (0.78, 1.4, 0), "right_hand": (-0.78, 1.4, 0),
    }
    for n, c in coords.items():
        p[J[n]] = c
    return p


def test_limbs_collide_by_hand():
    t = _tpose()
    assert not PS.limbs_collide(t[None])[0]
    bad = t.copy()  # left forearm through the torso: elbow in front of the chest, wrist behind it
    bad[J["left_elbow"]] = (0.05, 1.25, 0.25)
    bad[J["left_wrist"]] = (0.0, 1.25, -0.2)
    bad[J["left_hand"]] = (0.0, 1.25, -0.28)
    assert PS.limbs_collide(bad[None])[0]
    legs = t.copy()  # left shin crossing through the right shin
    legs[J["left_ankle"]] = (-0.12, 0.07, 0.0)
    legs[J["left_knee"]] = (-0.05, 0.45, 0.0)
    legs[J["right_knee"]] = (-0.05, 0.45, 0.02)
    assert PS.limbs_collide(legs[None])[0]


def test_global_orient_upright():
    rng = np.random.default_rng(1)
    R = Rotation.from_rotvec(PS.sample_global_orient(rng, 200)).as_matrix()
    up_cam = R @ np.array([0, 1.0, 0])  # the body's up axis in the OpenCV camera
    assert (up_cam[:, 1] < -np.cos(np.deg2rad(30))).all()  # points up the image (-y), within 30 deg


@pytest.fixture(scope="module")
def body():
    from dsr.data.synthetic import load_body_models
    torch.manual_seed(0)
    return load_body_models(FREE_BODY)


def _front_face_bruteforce(verts, faces, focal, W, H, px, py):
    """Index of the nearest face whose projected triangle contains (px, py) (rasterizer pixel
    centre convention), by testing every face: -1 if none."""
    u = focal * verts[:, 0] / verts[:, 2] + W / 2
    v = focal * verts[:, 1] / verts[:, 2] + H / 2
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    x0, y0, x1, y1, x2, y2 = u[a], v[a], u[b], v[b], u[c], v[c]
    den = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
    with np.errstate(divide="ignore", invalid="ignore"):
        l0 = ((y1 - y2) * (px - x2) + (x2 - x1) * (py - y2)) / den
        l1 = ((y2 - y0) * (px - x2) + (x0 - x2) * (py - y2)) / den
    l2 = 1 - l0 - l1
    inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0) & (np.abs(den) > 1e-12)
    if not inside.any():
        return -1
    idx = np.nonzero(inside)[0]
    za, zb, zc = verts[a[idx], 2], verts[b[idx], 2], verts[c[idx], 2]
    z = 1.0 / (l0[idx] / za + l1[idx] / zb + l2[idx] / zc)  # perspective-correct depth
    return int(idx[np.argmin(z)])


@needs_body
@pytest.mark.parametrize("hw", [(320, 320), (288, 384)])
def test_joints_inside_mask_and_labels_equal_outfit(body, hw):
    from dsr.data.synthetic import render_batch
    models, parts = body
    faces = models["neutral"].faces.numpy()
    samples = render_batch(models, parts, np.random.default_rng(5), 2, hw)
    for s in samples:
        lab = s["labels"]
        H, W = lab.shape
        on_body = 0
        for x, y in s["joints2d"]:
            c, r = int(round(x)), int(round(y))
            assert 0 <= r < H and 0 <= c < W
            assert lab[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any(), "joint off the person's mask"
            if lab[r, c] == 0:
                continue
            on_body += 1
            f = _front_face_bruteforce(s["vertices"].astype(np.float64), faces, s["focal"], W, H, c + 0.5, r + 0.5)
            assert f >= 0 and s["outfit"][f] == lab[r, c]
        assert on_body >= 40  # of 49


@needs_body
def test_written_dataset_round_trip(body, tmp_path):
    from dsr.config import get_cfg_defaults
    from dsr.data import BaseDataset
    from dsr.data.graphonomy import decode_colour_mask, mask_path
    from dsr.data.synthetic import make_synthetic

    paths = make_synthetic(str(tmp_path / "root"), str(tmp_path / "npz"), n_train=4, n_test=2, seed=3,
                           body_dir=FREE_BODY, progress=False)
    tr = np.load(paths["train"])
    te = np.load(paths["test"])
    assert set(tr.files) == {"imgname", "center", "scale", "part", "openpose", "S", "pose", "shape", "has_smpl", "gender"}
    assert "S" not in te.files and set(te["gender"].tolist()) <= {"m", "f"}
    np.testing.assert_allclose(tr["S"][:, 14, :3], 0, atol=1e-6)  # pelvis-centred
    assert (tr["S"][:, :, 3] == 1).all() and (tr["part"][:, :, 2] == 1).all()
    root = str(tmp_path / "root")
    for i, name in enumerate(tr["imgname"]):
        img = cv2.imread(os.path.join(root, str(name)))
        m = cv2.imread(mask_path(root, str(name)))[:, :, ::-1]
        assert img.shape == m.shape
        labels, known = decode_colour_mask(np.ascontiguousarray(m), return_known=True)
        assert known.all()  # palette colours only
        for x, y, _ in tr["part"][i]:
            r, c = int(round(y)), int(round(x))
            assert labels[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any()
        # S equals the gendered body model's 24 GT joints for the stored pose/shape (pelvis-centred)
        g = "male" if tr["gender"][i] == "m" else "female"
        out = models_forward(body[0][g], tr["pose"][i], tr["shape"][i])
        j = out - out[14]
        np.testing.assert_allclose(tr["S"][i, :, :3], j, atol=1e-4)
    cfg = get_cfg_defaults()
    cfg.METHOD = "dsr"
    cfg.PATHS.DATASET_NPZ_PATH = str(tmp_path / "npz")
    cfg.PATHS.DATASET_FOLDERS["synthetic"] = root
    cfg.PATHS.DATASET_FOLDERS["synthetic-test"] = root
    it = BaseDataset(cfg, "synthetic", is_train=True)[0]
    assert it["grph_dsr_c_label"].shape == (224, 224) and it["valid_labels_dsr_mc"].shape == (5,)
    assert (it["grph_dsr_c_label"] > 0).float().mean() > 0.05  # a person fills the crop
    te_item = BaseDataset(cfg, "synthetic-test", is_train=False)[1]
    assert te_item["gender"] in (0, 1)


def models_forward(model, pose, shape):
    from dsr.geometry import batch_rodrigues
    R = batch_rodrigues(torch.as_tensor(pose, dtype=torch.float32).reshape(-1, 3))
    with torch.no_grad():
        out = model(global_orient=R[None, :1], body_pose=R[None, 1:], betas=torch.as_tensor(shape)[None].float())
    return out.joints[0, 25:].numpy()


@needs_body
def test_focal_range_option_reaches_the_renderer(monkeypatch):
    """make_synthetic.py --focal-range LO HI -> SynthSettings.focal_range -> each sample's focal / max(H, W)."""
    
    from dsr.data import synthetic
    from dsr.data.synthetic import SynthSettings, load_body_models, render_batch

    cli = load_script("tools/make_synthetic.py")
    seen = {}
    monkeypatch.setattr(synthetic, "make_synthetic", lambda *a, **kw: seen.update(kw) or {})
    cli.main(["--out", "unused", "--n-train", "1", "--n-test", "0", "--focal-range", "8", "10"])
    assert seen["settings"].focal_range == (8.0, 10.0)
    models, parts = load_body_models(FREE_BODY)
    for s in render_batch(models, parts, np.random.default_rng(0), 3, (288, 384), SynthSettings(focal_range=(8, 10))):
        assert 8 * 384 <= s["focal"] <= 10 * 384


# ----------------------------------------------------------------------------- domain b
def test_domain_b_pose_modes_and_tilt():
    """MODES_B: no standing pose, the draws follow the table; domain b's pitch/roll (N(0, 15),
    clipped at 35 deg) tilt the body further from upright than domain a's (N(0, 8), 20 deg)."""
    rng = np.random.default_rng(0)
    n = 4000
    draws = [PS.sample_mode(rng, PS.MODES_B) for _ in range(n)]
    for mode, p in PS.MODES_B.items():
        sd = (p * (1 - p) / n) ** 0.5
        assert abs(draws.count(mode) / n - p) <= 4 * sd + 1e-12
    assert "stand" not in draws
    assert PS.MODES_B["reach"] > PS.MODES["reach"] and PS.MODES_B["crouch"] > PS.MODES["crouch"]

    def tilt(R):  # angle (deg) between the body's up axis and the image's up (-y)
        return np.degrees(np.arccos(np.clip(-(R @ np.array([0, 1.0, 0]))[:, 1], -1, 1)))

    ta = tilt(Rotation.from_rotvec(PS.sample_global_orient(np.random.default_rng(1), 2000)).as_matrix())
    tb = tilt(Rotation.from_rotvec(PS.sample_global_orient(np.random.default_rng(1), 2000, 15.0, 35.0)).as_matrix())
    bound_a = np.degrees(np.arccos(np.cos(np.radians(20)) ** 2))  # pitch and roll both at the clip
    bound_b = np.degrees(np.arccos(np.cos(np.radians(35)) ** 2))
    assert ta.max() <= bound_a + 1e-6 < tb.max() <= bound_b + 1e-6
    assert tb.mean() > 1.5 * ta.mean()


def test_domain_b_outfit_table():
    """OUTFIT_PROBS_B: sampled outfits follow the table; coats, dresses, skirts, shorts, hats and
    bare feet are more frequent than in domain a's table, for both genders."""
    from dsr.body import outfits as O

    rng = np.random.default_rng(2)
    n = 3000
    for g in ("male", "female"):
        draws = [O.sample_outfit_choices(rng, g, O.OUTFIT_PROBS_B) for _ in range(n)]
        for var, choices in O.OUTFIT_CHOICES.items():
            for c, p in zip(choices, O.OUTFIT_PROBS_B[g][var]):
                f = sum(d[var] == c for d in draws) / n
                assert abs(f - p) <= 4 * (p * (1 - p) / n) ** 0.5 + 1e-12, (g, var, c)
        A, B = O.OUTFIT_PROBS[g], O.OUTFIT_PROBS_B[g]
        ch = O.OUTFIT_CHOICES
        assert B["upper"][ch["upper"].index("coat")] > A["upper"][ch["upper"].index("coat")]
        assert B["lower"][ch["lower"].index("shorts")] > A["lower"][ch["lower"].index("shorts")]
        assert B["hat"][1] > A["hat"][1] and B["shoes"][0] > A["shoes"][0]
    assert O.OUTFIT_PROBS_B["female"]["upper"][4] > O.OUTFIT_PROBS["female"]["upper"][4]  # dresses
    assert O.OUTFIT_PROBS_B["female"]["lower"][2] > O.OUTFIT_PROBS["female"]["lower"][2]  # skirts
    # the exact marginal of table b differs from the shipped prior's (table a)
    assert not np.allclose(O.part_label_marginal("neutral", O.OUTFIT_PROBS_B), O.part_label_marginal("neutral"))


def test_stripes_of_garment_faces_by_hand():
    from dsr.data.synthetic import _face_base_colours

    cols = np.arange(60, dtype=np.float32).reshape(20, 3)
    cols2 = cols + 100
    outfit = np.array([5, 5, 5, 5, 13, 13, 9])  # upper clothes x4, face x2, pants
    height = np.array([0.01, 0.05, 0.09, 0.13, 0.05, 0.09, -0.02])
    rgb = _face_base_colours(outfit, cols, cols2, height, period=0.04)
    # bands floor(h / 0.04): 0, 1, 2, 3 -> a, b, a, b for the garment; the face keeps its colour;
    # -0.02 is band -1 (odd) -> the pants' second colour
    want = np.stack([cols[5], cols2[5], cols[5], cols2[5], cols[13], cols[13], cols2[9]])
    np.testing.assert_array_equal(rgb, want)
    np.testing.assert_array_equal(_face_base_colours(outfit, cols), cols[outfit])  # domain a: flat


def test_outdoor_background_has_a_sky():
    from dsr.data.synthetic import outdoor_texture

    for seed in range(8):
        img = outdoor_texture(np.random.default_rng(seed), 240, 320)
        assert img.shape == (240, 320, 3) and img.dtype == np.uint8
        top = img[:12].reshape(-1, 3).astype(float).mean(0)  # RGB
        assert top[2] > top[0] + 20  # blue sky above the horizon
        np.testing.assert_array_equal(img, outdoor_texture(np.random.default_rng(seed), 240, 320))
    with pytest.raises(ValueError, match="domain"):
        from dsr.data.synthetic import SynthSettings
        SynthSettings(domain="c")


@needs_body
def test_domain_b_render_reproducible_and_other_people(body, tmp_path):
    """Domain b: the same seed renders the same images; domain a with the same seed other people;
    the written npz mixes with domain a's through make_synthetic.py --domain b (default names)."""
    
    from dsr.data.synthetic import SynthSettings, _chunk_rng, render_batch

    models, parts = body
    sb = SynthSettings(domain="b")
    b1 = render_batch(models, parts, _chunk_rng(0, "train", 0, "b"), 2, (256, 256), sb)
    b2 = render_batch(models, parts, _chunk_rng(0, "train", 0, "b"), 2, (256, 256), sb)
    a1 = render_batch(models, parts, _chunk_rng(0, "train", 0), 2, (256, 256))
    for x, y in zip(b1, b2):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["labels"], y["labels"])
    assert not np.allclose(b1[0]["shape"], a1[0]["shape"])
    cli = load_script("tools/make_synthetic.py")
    cli.main(["--out", str(tmp_path), "--n-train", "2", "--n-test", "1", "--domain", "b", "--workers", "1"])
    tr = np.load(tmp_path / "synthetic_b_train.npz")
    assert len(tr["imgname"]) == 2 and (tmp_path / "synthetic_b_test.npz").is_file()
