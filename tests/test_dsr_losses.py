"""DSR-MC (row / image), DistM, DSR-C on hand-made inputs with values worked out by hand, and the
DSRLoss module: weights, gating (§3.8), NaN zeroing, names (§10), HMR terms."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dsr.losses import LOSS_NAMES, DSRLoss, HMRLoss, dsr_c_loss, dsr_mc_dist_loss, dsr_mc_loss

P4 = torch.tensor([[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0, 0], [0.25, 0, 0, 0]])
M4 = torch.tensor([[1.0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]])


def test_dsr_mc_row_and_image_by_hand():
    # rows: I/U = 1/1, 0.5/1.5, 0/0 (-> 0), 0/1.25
    row = 1 - (1 / (1 + 1e-6) + 0.5 / (1.5 + 1e-6) + 0.0 + 0.0) / 4
    image = 1 - 1.5 / (3.75 + 1e-6)
    out_row = dsr_mc_loss(P4[None].double(), M4[None].double(), "row")
    out_img = dsr_mc_loss(P4[None].double(), M4[None].double(), "image")
    assert out_row.shape == (1,)
    assert abs(out_row.item() - row) < 1e-12 and abs(out_img.item() - image) < 1e-12
    # batch of 2: samples independent
    P = torch.stack((P4, M4)).double()
    M = torch.stack((M4, M4)).double()
    out = dsr_mc_loss(P, M, "image")
    assert abs(out[0].item() - image) < 1e-12 and abs(out[1].item() - (1 - 3 / (3 + 1e-6))) < 1e-12
    with pytest.raises(ValueError):
        dsr_mc_loss(P, M, "column")


def test_dsr_mc_dist_by_hand():
    D = torch.tensor([0.0, 1, 2, 3]).expand(4, 4)
    # sum P = 2.25, sum P*D = 0.5 (row 1, column 1); 3 identical channels in the original
    expect = 3 * 0.5 / ((3 * 2.25) ** 1.5 + 1e-6)
    out = dsr_mc_dist_loss(P4[None].double(), D[None].double())
    assert abs(out.item() - expect) < 1e-12
    assert abs(dsr_mc_dist_loss(P4[None].double(), D[None].double(), channels=1).item()
               - 0.5 / (2.25**1.5 + 1e-6)) < 1e-12


def test_dsr_c_by_hand():
    z = torch.zeros(1, 8, 2, 2, dtype=torch.float64)
    z[0, 0, 0, 0] = 1.0  # pixel (0,0): label 0, its own channel high
    z[0, 2, 0, 1] = 1.0  # pixel (0,1): label 1, another channel high
    z[0, 3, 1, 1] = 1.0  # pixel (1,1): label 3, own channel high; pixel (1,0) all zero, label 1
    labels = torch.tensor([[[0, 1], [1, 3]]])
    w = torch.tensor([[0.5, 1, 0, 0.25, 0, 0, 0, 0]], dtype=torch.float64)
    L = math.log(math.e + 7)
    expect = (0.5 * (L - 1) + L + math.log(8) + 0.25 * (L - 1)) / (0.5 + 1 + 1 + 0.25)
    assert abs(dsr_c_loss(z, labels, w).item() - expect) < 1e-12
    # same as torch's weighted cross entropy, per sample
    ref = nn.CrossEntropyLoss(weight=w[0])(z, labels)
    assert abs(ref.item() - expect) < 1e-12
    # all present labels with zero weight: 0/0 like the original
    assert torch.isnan(dsr_c_loss(z, labels, torch.zeros(1, 8, dtype=torch.float64))).all()


# ----------------------------------------------------------------------------- DSRLoss
class FixedRender(nn.Module):
    """Stands in for the renderer: returns a given (B, 9, H, W) render times a learnable scale."""

    def __init__(self, render):
        super().__init__()
        self.render = render
        self.calls = 0

    def forward(self, verts, cam_t, feats):
        self.calls += 1
        assert feats.shape[-1] == 9
        scale = 1 + 0 * verts.sum((1, 2)) + 0 * cam_t.sum(1)
        return self.render[: verts.shape[0]] * scale[:, None, None, None], None


def _batch(B=3, H=4, W=4, V=5, F=6):
    g = torch.Generator().manual_seed(0)
    pred = {
        "pred_pose": torch.eye(3).expand(B, 24, 3, 3).clone(),
        "pred_shape": torch.zeros(B, 10),
        "pred_cam": torch.tensor([[0.9, 0, 0]]).expand(B, 3).clone(),
        "pred_cam_t": torch.tensor([[0.0, 0, 50.0]]).expand(B, 3).clone(),
        "smpl_vertices": torch.randn(B, V, 3, generator=g),
        "smpl_joints3d": torch.zeros(B, 49, 3),
        "smpl_joints2d": torch.zeros(B, 49, 2),
    }
    batch = {
        "keypoints": torch.zeros(B, 49, 3),
        "pose_3d": torch.zeros(B, 24, 4),
        "pose": torch.zeros(B, 72),
        "betas": torch.zeros(B, 10),
        "has_smpl": torch.ones(B),
        "has_pose_3d": torch.ones(B),
        "grph_dsr_mc_label": M4.expand(B, H, W).clone(),
        "grph_dsr_c_label": torch.zeros(B, H, W, dtype=torch.long),
        "dsr_c_class_weight": torch.ones(B, 8),
        "valid_labels_dsr_mc": torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 1, 0]])[:B],
    }
    faces = torch.randint(0, V, (F, 3), generator=g)
    prior = torch.softmax(torch.randn(F, 20, generator=g), 1)
    return pred, batch, faces, prior


def _loss(faces, prior, **kw):
    return DSRLoss(faces, prior, render_backend="window", img_res=4, **kw)


def test_dsr_loss_gating_mean_over_batch_and_names():
    pred, batch, faces, prior = _batch()
    render = torch.zeros(3, 9, 4, 4)
    render[:, 0] = P4
    loss = _loss(faces, prior, dsr_mc_loss_weight=0.1, dsr_c_loss_weight=0.2, mc_iou_mode="image")
    fake = FixedRender(render)
    loss.renderer = fake
    total, d = loss(pred, batch, start_dsr=True)
    assert set(LOSS_NAMES) <= set(d)
    mc = 1 - 1.5 / (3.75 + 1e-6)  # per valid sample (samples 0 and 2); sample 1 counts as 0
    c = math.log(8)  # all-zero class logits, uniform softmax
    assert abs(d["loss/loss_dsr_mc"].item() - 0.1 * 2 * mc / 3) < 1e-6
    assert abs(d["loss/loss_dsr_c"].item() - 0.2 * 2 * c / 3) < 1e-6
    # every other term is 0 here except the camera term exp(-9)^2
    cam = math.exp(-9.0) ** 2
    assert abs(d["loss/loss_cam"].item() - cam) < 1e-9
    assert abs(total.item() - 60 * (cam + 0.1 * 2 * mc / 3 + 0.2 * 2 * c / 3)) < 1e-4
    assert abs(d["loss/total_loss"].item() - total.item()) < 1e-9
    # gate closed: nothing rendered, DSR terms 0
    calls = fake.calls
    total2, d2 = loss(pred, batch, start_dsr=False)
    assert fake.calls == calls and d2["loss/loss_dsr_mc"].item() == 0 and d2["loss/loss_dsr_c"].item() == 0
    # no valid sample at all: nothing rendered
    batch["valid_labels_dsr_mc"] = torch.zeros(3, 5)
    loss(pred, batch, start_dsr=True)
    assert fake.calls == calls


def test_dsr_loss_zero_weights_render_nothing_and_start_epoch():
    pred, batch, faces, prior = _batch()
    loss = _loss(faces, prior, dsr_mc_loss_weight=0.0, dsr_c_loss_weight=0.0, start_dsr=2)
    assert loss.renderer is None
    total, d = loss(pred, batch, start_dsr=True)
    assert d["loss/loss_dsr_mc"].item() == 0 and d["loss/loss_dsr_c"].item() == 0
    assert [loss.dsr_active(e) for e in range(5)] == [False, False, False, True, True]
    assert _loss(faces, prior, start_dsr=-1).dsr_active(0)


def test_dsr_loss_nonfinite_sample_zeroed_and_counted():
    pred, batch, faces, prior = _batch()
    render = torch.zeros(3, 9, 4, 4)
    render[:, 0] = P4
    loss = _loss(faces, prior, dsr_mc_loss_weight=0.0, dsr_c_loss_weight=1.0)
    loss.renderer = FixedRender(render.requires_grad_(True))
    batch["dsr_c_class_weight"][2] = 0.0  # sample 2: 0/0
    total, d = loss(pred, batch, start_dsr=True)
    assert abs(d["loss/loss_dsr_c"].item() - math.log(8) / 3) < 1e-6  # only sample 0 counts
    assert d["stats/dsr_nonfinite_samples"].item() == 1 and loss.nonfinite_count == 1
    total.backward()
    assert torch.isfinite(render.grad).all()


@pytest.mark.parametrize("wm, wc", [(0.1, 0.2), (0.5, 0.0)])
def test_dsr_loss_nonfinite_term_zeroes_both_terms_of_the_sample(wm, wc):
    """The original (losses.py, sr_losses): if either DSR term of a sample is NaN/Inf, both are set
    to 0. Sample 2's DSR-C is 0/0 (all class weights 0): its finite DSR-MC goes too, even when
    DSR-C has weight 0 (the original computes both terms whatever the weights). Counted once."""
    pred, batch, faces, prior = _batch()
    render = torch.zeros(3, 9, 4, 4)
    render[:, 0] = P4
    loss = _loss(faces, prior, dsr_mc_loss_weight=wm, dsr_c_loss_weight=wc, mc_iou_mode="image")
    loss.renderer = FixedRender(render.requires_grad_(True))
    batch["dsr_c_class_weight"][2] = 0.0
    total, d = loss(pred, batch, start_dsr=True)
    mc = 1 - 1.5 / (3.75 + 1e-6)  # image IoU of P4 and M4; samples 1 (no MC label) and 2 (zeroed) count 0
    assert abs(d["loss/loss_dsr_mc"].item() - wm * mc / 3) < 1e-6
    assert abs(d["loss/loss_dsr_c"].item() - wc * math.log(8) / 3) < 1e-6
    assert d["stats/dsr_nonfinite_samples"].item() == 1 and loss.nonfinite_count == 1
    l_mc, l_c, n = loss.dsr_losses(pred, batch)  # unweighted per sample: both 0 for sample 2
    assert n == 1 and l_mc[2] == 0 and l_c[2] == 0 and abs(l_mc[0].item() - mc) < 1e-6
    total.backward()
    assert torch.isfinite(render.grad).all() and (render.grad[1] == 0).all()  # render row 1 = sample 2
    assert render.grad[0, 0].abs().sum() > 0


def test_hmr_terms_by_hand():
    pred, batch, faces, prior = _batch(B=2)
    # 2D: GT joints (conf 1) at 0.5 on x for joint 30; OpenPose joint 3 off by 1 (weight 0)
    batch["keypoints"][:, :, 2] = 1.0
    batch["keypoints"][:, 30, 0] = 0.5
    batch["keypoints"][:, 3, 0] = 1.0
    kp = 0.25 / (49 * 2)
    # 3D: sample 0 only; GT joint 10 at z = 0.2 (hips at 0, pelvis centring keeps it)
    batch["has_pose_3d"] = torch.tensor([1.0, 0.0])
    batch["pose_3d"][:, :, 3] = 1.0
    batch["pose_3d"][0, 10, 2] = 0.2
    kp3d = 0.04 / (24 * 3)
    # pose: sample 1 has_smpl only; its GT joint 5 rotated 90 deg about z (axis-angle)
    batch["has_smpl"] = torch.tensor([0.0, 1.0])
    batch["pose"][1, 15:18] = torch.tensor([0, 0, math.pi / 2])
    pose = 4.0 / (24 * 9)  # |Rz(90) - I|^2 = 4
    batch["betas"][1, 0] = 1.0
    betas = 1.0 / 10
    batch["gt_vertices"] = pred["smpl_vertices"] + 0.5
    shape = 0.5
    loss = HMRLoss(keypoint_loss_weight=5.0, pose_loss_weight=1.0, beta_loss_weight=0.001, shape_loss_weight=0.5)
    total, d = loss(pred, batch)
    cam = math.exp(-9.0) ** 2
    assert abs(d["loss/loss_keypoints"].item() - 5 * kp) < 1e-7
    assert abs(d["loss/loss_keypoints_3d"].item() - 5 * kp3d) < 1e-7
    assert abs(d["loss/loss_regr_pose"].item() - pose) < 1e-6
    assert abs(d["loss/loss_regr_betas"].item() - 0.001 * betas) < 1e-9
    assert abs(d["loss/loss_shape"].item() - 0.5 * shape) < 1e-6
    expect = 60 * (5 * kp + 5 * kp3d + pose + 0.001 * betas + 0.5 * shape + cam)
    assert abs(total.item() - expect) < 1e-4


def test_dsr_loss_end_to_end_gradients_with_renderer():
    from dsr.rendering.meshes import icosphere

    v, f = icosphere(2)
    B = 2
    pred, batch, _, _ = _batch(B=B)
    prior = torch.softmax(torch.randn(f.shape[0], 20, generator=torch.Generator().manual_seed(1)), 1)
    verts = (v.float() * 0.3)[None].repeat(B, 1, 1).requires_grad_(True)
    cam_t = torch.tensor([[0.0, 0.0, 20.0], [0.05, 0.0, 22.0]], requires_grad=True)
    pred.update(smpl_vertices=verts, pred_cam_t=cam_t)
    batch["grph_dsr_mc_label"] = torch.zeros(B, 32, 32)
    batch["grph_dsr_mc_label"][:, 10:20, 12:22] = 1
    batch["grph_dsr_c_label"] = torch.zeros(B, 32, 32, dtype=torch.long)
    batch["grph_dsr_c_label"][:, 8:24, 8:24] = 2
    batch["valid_labels_dsr_mc"] = torch.ones(B, 5)
    loss = DSRLoss(f, prior, render_backend="window", img_res=32, focal_length=500.0)
    total, d = loss(pred, batch, start_dsr=True)
    total.backward()
    assert d["loss/loss_dsr_mc"].item() > 0 and d["loss/loss_dsr_c"].item() > 0
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
    assert torch.isfinite(cam_t.grad).all() and cam_t.grad.abs().sum() > 0


def test_from_cfg_and_bad_values():
    from dsr.config import get_cfg_defaults

    _, _, faces, prior = _batch()
    cfg = get_cfg_defaults()
    cfg.defrost()
    cfg.METHOD = "dsr"
    cfg.DSR.DSR_MC_LOSS_TYPE = "nIOU"
    cfg.DSR.RENDER_BACKEND = "window"
    cfg.DSR.START_DSR = 2
    loss = DSRLoss.from_cfg(cfg, faces, prior)
    assert loss.dsr_mc_loss_weight == cfg.DSR.DSR_MC_LOSS_WEIGHT and loss.start_dsr == 2
    assert loss.renderer.sigma == cfg.DSR.SIGMA_VAL and loss.renderer.backend == "window"
    spin = HMRLoss.from_cfg(cfg)
    assert not spin.uses_dsr and spin.renderer is None
    with pytest.raises(ValueError, match="DSR_MC_LOSS_TYPE"):
        DSRLoss(faces, prior, dsr_mc_loss_type="IoU")
    with pytest.raises(ValueError, match="semantic prior"):
        DSRLoss(faces, None)
