"""studies/fit_study.py's pieces: HMR.decode with another body (projection by hand) and the
fitting loop (a known camera is found)."""
from __future__ import annotations

import os

import pytest
import torch

from dsr.body import build_body_model
from dsr.geometry import batch_rodrigues
from dsr.losses import DSRLoss
from dsr.models import HMR
from conftest import load_script  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fit_study = load_script("studies/fit_study.py")
BODY = os.path.join(REPO, "dsr", "assets", "free_body")
EXTRA = os.path.join(BODY, "J_regressor_extra.npy")


@pytest.fixture(scope="module")
def hmr():
    return HMR(backbone="resnet18", smpl_model_dir=os.path.join(BODY, "smpl"),
               mean_params=os.path.join(BODY, "smpl_mean_params.npz"), extra_regressor=EXTRA,
               focal_length=5000.0, img_res=224).eval()


def _male():
    return build_body_model(os.path.join(BODY, "smpl"), "male", extra_regressor_path=EXTRA).eval()


def test_decode_with_another_body_projects_with_the_weak_perspective_camera(hmr):
    male = _male()
    g = torch.Generator().manual_seed(0)
    rot = batch_rodrigues(0.2 * torch.randn(2 * 24, 3, generator=g)).reshape(2, 24, 3, 3)
    betas, cam = torch.randn(2, 10, generator=g), torch.tensor([[0.9, 0.05, -0.03], [1.2, -0.1, 0.2]])
    with torch.no_grad():
        out = hmr.decode({"pred_pose": rot, "pred_shape": betas, "pred_cam": cam}, male)
        ref = male(global_orient=rot[:, :1], body_pose=rot[:, 1:], betas=betas)
        neutral = hmr.decode({"pred_pose": rot, "pred_shape": betas, "pred_cam": cam})
    torch.testing.assert_close(out["smpl_vertices"], ref.vertices)
    assert (out["smpl_vertices"] - neutral["smpl_vertices"]).abs().max() > 1e-3  # not the neutral body
    tz = 2 * 5000.0 / (224 * cam[:, 0])  # the weak-perspective depth, by hand
    p = ref.joints + torch.stack([cam[:, 1], cam[:, 2], tz], -1)[:, None]
    expected = 5000.0 * p[..., :2] / p[..., 2:] / 112.0
    torch.testing.assert_close(out["smpl_joints2d"], expected, rtol=1e-4, atol=1e-5)


def test_fit_recovers_a_known_camera_from_2d_keypoints(hmr):
    male = _male()
    decode = lambda o: hmr.decode(o, male)  # noqa: E731
    g = torch.Generator().manual_seed(1)
    B = 3
    rot = batch_rodrigues(0.2 * torch.randn(B * 24, 3, generator=g)).reshape(B, 24, 3, 3)
    betas = torch.randn(B, 10, generator=g)
    cam = torch.tensor([[0.9, 0.05, -0.03], [1.1, -0.1, 0.1], [0.8, 0.0, 0.2]])
    with torch.no_grad():
        target = decode({"pred_pose": rot, "pred_shape": betas, "pred_cam": cam})["smpl_joints2d"]
    batch = {"keypoints": torch.cat([target, torch.ones(B, 49, 1)], -1), "pose": torch.zeros(B, 72),
             "betas": torch.zeros(B, 10), "has_smpl": torch.zeros(B), "has_pose_3d": torch.zeros(B),
             "pose_3d": torch.zeros(B, 24, 4)}
    loss_fn = DSRLoss(dsr_mc_loss_weight=0.0, dsr_c_loss_weight=0.0, img_res=224, focal_length=5000.0)
    start = {"pred_pose": rot, "pred_shape": betas, "pred_cam": torch.tensor([[0.7, 0.0, 0.0]] * B)}
    out = fit_study.fit(loss_fn, decode, batch, start, 400, 0.01, free=("cam",))
    torch.testing.assert_close(out["pred_cam"], cam, atol=5e-3, rtol=0)
    torch.testing.assert_close(out["pred_pose"], rot, atol=1e-5, rtol=0)  # not free: unchanged
