"""Tests of dsr.models: backbones, the HMR head (reference §2.2), HMR outputs (§2.3), parameter
count from layer formulae, ImageNet init from local files, and checkpoint loading (§2.4)."""
import math
import os

import numpy as np
import pytest
import torch
import torchvision
from yacs.config import CfgNode

from dsr.body.toy import write_toy_model
from dsr.config import get_cfg_defaults
from dsr.geometry import rot6d_to_rotmat
from dsr.models import HMR, BackboneWeightsError, CheckpointError, build_backbone, load_hmr_checkpoint
from dsr.models.head import HMRHead

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_model(str(tmp_path_factory.mktemp("toy")), seed=0)


def make_hmr(toy, backbone="resnet18", **kw):
    return HMR(backbone=backbone, smpl_model_dir=toy["model_dir"], mean_params=toy["mean_params"],
               extra_regressor=toy["extra"], h36m_regressor=toy["h36m"], **kw)


@pytest.fixture(scope="module")
def hmr18(toy):
    torch.manual_seed(0)
    return make_hmr(toy).eval()


# ----------------------------------------------------------------------------- parameter counts by formula
def resnet_param_count(block, layers):
    """conv/bn parameters of a torchvision ResNet without fc, from the layer formulae."""
    n = 7 * 7 * 3 * 64 + 2 * 64  # conv1 + bn1
    inplanes = 64
    for i, blocks in enumerate(layers):
        planes = 64 * 2 ** i
        for b in range(blocks):
            if block == "basic":
                out = planes
                n += 3 * 3 * inplanes * planes + 2 * planes + 3 * 3 * planes * planes + 2 * planes
            else:
                out = 4 * planes
                n += (inplanes * planes + 2 * planes + 9 * planes * planes + 2 * planes
                      + planes * out + 2 * out)
            if b == 0 and (inplanes != out or i > 0):  # projection shortcut
                n += inplanes * out + 2 * out
            inplanes = out
    return n, inplanes


def head_param_count(c, joints=24, betas=10, hidden=1024):
    d_in = c + 6 * joints + betas + 3
    return (d_in * hidden + hidden) + (hidden * hidden + hidden) + sum(hidden * k + k for k in (6 * joints, betas, 3))


def test_hmr_resnet50_parameter_count(toy):
    model = make_hmr(toy, backbone="resnet50")
    bb, c = resnet_param_count("bottleneck", [3, 4, 6, 3])
    assert c == 2048
    assert head_param_count(2048) == 2205 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 157 + 157
    expected = bb + head_param_count(2048)
    n = sum(p.numel() for p in model.parameters())
    print(f"HMR-ResNet50 parameters: {n} (backbone {bb}, head {head_param_count(2048)})")
    assert n == expected
    assert 26e6 < n < 28e6  # SPIN's HMR: about 27M
    assert model.head.fc1.in_features == 2205


def test_resnet18_backbone_count_and_shapes():
    bb = build_backbone("resnet18")
    n, c = resnet_param_count("basic", [2, 2, 2, 2])
    assert sum(p.numel() for p in bb.parameters()) == n and bb.out_channels == c == 512


@pytest.mark.parametrize("name,channels", [("resnet50", 2048), ("resnet34", 512)])
def test_resnet_feature_shape(name, channels):
    bb = build_backbone(name).eval()
    with torch.no_grad():
        f = bb(torch.randn(1, 3, 224, 224))
    assert f.shape == (1, channels, 7, 7)
    assert not hasattr(bb, "fc") and not hasattr(bb, "avgpool")


def test_unknown_backbone():
    with pytest.raises(ValueError, match="resnet50"):
        build_backbone("vgg16")


# ----------------------------------------------------------------------------- ImageNet init from files
def test_imagenet_weights_from_local_file(tmp_path):
    tv = torchvision.models.resnet18(weights=None)  # a stand-in for resnet18-f37072fd.pth (with fc)
    torch.nn.init.normal_(tv.layer4[1].conv2.weight)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    bb = build_backbone("resnet18", str(tmp_path / "r18.pth"))
    torch.testing.assert_close(bb.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    torch.testing.assert_close(bb.bn1.running_var, tv.bn1.running_var)
    with pytest.raises(BackboneWeightsError, match="r18.pth"):
        build_backbone("resnet50", str(tmp_path / "r18.pth"))
    with pytest.raises(BackboneWeightsError, match="nothere.pth"):
        build_backbone("resnet50", str(tmp_path / "nothere.pth"))


# ----------------------------------------------------------------------------- head
def test_head_iterations_without_relu():
    torch.manual_seed(1)
    head = HMRHead(in_channels=32, mean_params=None).eval()
    for dec in (head.decpose, head.decshape, head.deccam):
        torch.nn.init.normal_(dec.weight, std=0.01)
    feats = torch.randn(2, 32, 7, 7)
    out = head(feats)
    # reference written here: mean pool, 3 x (fc1 -> fc2, no activation), residual updates
    x = feats.mean(dim=(2, 3))
    pose, shape, cam = head.init_pose.expand(2, -1), head.init_shape.expand(2, -1), head.init_cam.expand(2, -1)
    W = {n: (getattr(head, n).weight, getattr(head, n).bias) for n in ("fc1", "fc2", "decpose", "decshape", "deccam")}
    lin = lambda n, v: v @ W[n][0].T + W[n][1]  # noqa: E731
    for _ in range(3):
        h = lin("fc2", lin("fc1", torch.cat([x, pose, shape, cam], 1)))
        pose, shape, cam = pose + lin("decpose", h), shape + lin("decshape", h), cam + lin("deccam", h)
    torch.testing.assert_close(out["pred_pose_6d"], pose)
    torch.testing.assert_close(out["pred_shape"], shape)
    torch.testing.assert_close(out["pred_cam"], cam)
    assert out["pred_pose"].shape == (2, 24, 3, 3)


def test_head_init(toy):
    head = HMRHead(in_channels=2048, mean_params=toy["mean_params"])
    mp = np.load(toy["mean_params"])
    np.testing.assert_allclose(head.init_pose.numpy()[0], mp["pose"], rtol=1e-6)
    np.testing.assert_allclose(head.init_shape.numpy()[0], mp["shape"], rtol=1e-6)
    np.testing.assert_allclose(head.init_cam.numpy()[0], mp["cam"], rtol=1e-6)
    assert isinstance(head.drop1, torch.nn.Dropout) and head.drop1.p == 0.5 and head.drop2.p == 0.5
    # Xavier-uniform, gain 0.01: |w| <= 0.01 * sqrt(6 / (fan_in + fan_out)), and close to it
    for dec, fan_out in ((head.decpose, 144), (head.decshape, 10), (head.deccam, 3)):
        bound = 0.01 * math.sqrt(6.0 / (1024 + fan_out))
        assert dec.weight.abs().max() <= bound and dec.weight.abs().max() > 0.9 * bound
    # zero decoders -> the output is the mean parameters
    for dec in (head.decpose, head.decshape, head.deccam):
        torch.nn.init.zeros_(dec.weight)
        torch.nn.init.zeros_(dec.bias)
    out = head.eval()(torch.randn(1, 2048, 7, 7))
    torch.testing.assert_close(out["pred_pose"][0], rot6d_to_rotmat(torch.from_numpy(mp["pose"]).float()))
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        HMRHead(mean_params="nope.npz")


# ----------------------------------------------------------------------------- HMR forward
def test_hmr_forward_shapes_and_camera(hmr18):
    with torch.no_grad():
        out = hmr18(torch.randn(2, 3, 224, 224))
    V = hmr18.body.num_vertices
    shapes = {"pred_pose": (2, 24, 3, 3), "pred_shape": (2, 10), "pred_cam": (2, 3), "pred_cam_t": (2, 3),
              "smpl_vertices": (2, V, 3), "smpl_joints3d": (2, 49, 3), "smpl_joints2d": (2, 49, 2)}
    for k, s in shapes.items():
        assert tuple(out[k].shape) == s, k
    s, tx, ty = out["pred_cam"].unbind(1)
    torch.testing.assert_close(out["pred_cam_t"], torch.stack([tx, ty, 2 * 5000.0 / (224 * s + 1e-9)], 1))
    X, t = out["smpl_joints3d"].double(), out["pred_cam_t"].double()
    uv = 5000.0 * (X[..., :2] + t[:, None, :2]) / (X[..., 2:] + t[:, None, 2:]) / 112.0
    torch.testing.assert_close(out["smpl_joints2d"].double(), uv, rtol=1e-5, atol=1e-6)
    R = out["pred_pose"]
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand_as(R), atol=1e-5, rtol=0)


def test_hmr_from_cfg(toy):
    cfg = get_cfg_defaults()
    cfg.METHOD = "dsr"
    cfg.DSR.BACKBONE = "resnet18"
    cfg.SPIN.BACKBONE = "resnet34"
    cfg.PATHS.SMPL_MODEL_DIR = toy["model_dir"]
    cfg.PATHS.SMPL_MEAN_PARAMS = toy["mean_params"]
    cfg.PATHS.JOINT_REGRESSOR_TRAIN_EXTRA = toy["extra"]
    cfg.PATHS.JOINT_REGRESSOR_H36M = toy["h36m"]
    m = HMR(cfg)
    assert m.backbone.name == "resnet18" and m.focal_length == cfg.DATASET.FOCAL_LENGTH
    assert m.body.J_regressor_h36m is not None
    assert m.head.drop1.p == 0.5 and m.head.drop2.p == 0.5  # the original's head
    cfg.DSR.HEAD_DROPOUT = 0.0
    cfg.SPIN.HEAD_DROPOUT = 0.3  # the other method's block is not read
    m0 = HMR(cfg)
    assert m0.head.drop1.p == 0.0 and m0.head.drop2.p == 0.0
    # without dropout the training-mode head is deterministic and equals the eval-mode head;
    # with the original's 0.5 the training-mode output differs from the eval-mode one
    m0.head.train()
    feats = torch.randn(2, m0.backbone.out_channels, 2, 2)
    for dec in (m0.head.decpose, m0.head.decshape, m0.head.deccam):
        torch.nn.init.normal_(dec.weight, std=0.01)
    out_train = m0.head(feats)["pred_pose_6d"]
    torch.testing.assert_close(out_train, m0.head.eval()(feats)["pred_pose_6d"])
    m.head.load_state_dict(m0.head.state_dict())
    torch.manual_seed(0)
    assert not torch.allclose(m.head.train()(feats)["pred_pose_6d"], out_train)


# ----------------------------------------------------------------------------- checkpoints
def spin_state_dict(model):
    """The SPIN/DSR release layout: backbone and head keys flat at the top level."""
    sd = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    sd.update({k: v.clone() for k, v in model.head.state_dict().items()})
    return sd


def test_spin_format_round_trip_with_report(toy, tmp_path):
    torch.manual_seed(2)
    src = make_hmr(toy)
    sd = spin_state_dict(src)
    sd["fc1.weight"].normal_()
    sd["init_cam"].fill_(1.5)
    del sd["layer4.1.bn2.running_mean"]
    sd["some_old_layer.weight"] = torch.zeros(3)
    torch.save({"model": sd, "optimizer": {}, "epoch": 3, "total_step_count": 10}, tmp_path / "spin.pt")
    dst = make_hmr(toy)
    rep = load_hmr_checkpoint(dst, str(tmp_path / "spin.pt"))
    assert rep.format == "spin"
    assert rep.missing == ["backbone.layer4.1.bn2.running_mean"]
    assert rep.unexpected == ["some_old_layer.weight"]
    torch.testing.assert_close(dst.head.fc1.weight, sd["fc1.weight"])
    torch.testing.assert_close(dst.head.init_cam, torch.full((1, 3), 1.5))
    torch.testing.assert_close(dst.backbone.layer3[0].conv1.weight, sd["layer3.0.conv1.weight"])
    with torch.no_grad():
        a, b = src.eval()(torch.ones(1, 3, 64, 64)), dst.eval()(torch.ones(1, 3, 64, 64))
    assert not torch.allclose(a["pred_shape"], b["pred_shape"])  # fc1 differs
    # full round trip: identical outputs
    full = make_hmr(toy)
    rep = load_hmr_checkpoint(full, str(_save(tmp_path / "full.pt", {"model": spin_state_dict(src)})))
    assert rep.missing == [] and rep.unexpected == []
    with torch.no_grad():
        torch.testing.assert_close(full.eval()(torch.ones(1, 3, 64, 64))["smpl_joints2d"], a["smpl_joints2d"])


def _save(path, obj):
    torch.save(obj, path)
    return path


def test_lightning_and_raw_formats(toy, tmp_path):
    torch.manual_seed(3)
    src = make_hmr(toy)
    light = {f"model.{k}": v for k, v in src.state_dict().items()}  # model.backbone.*, model.head.*, model.body.*
    cfg = CfgNode({"METHOD": "dsr"})
    _save(tmp_path / "l.ckpt", {"state_dict": light, "epoch": 1, "hyper_parameters": cfg})
    dst = make_hmr(toy)
    rep = load_hmr_checkpoint(dst, str(tmp_path / "l.ckpt"))
    assert rep.format == "lightning" and rep.missing == [] and rep.unexpected == []
    assert rep.ignored and all(k.startswith("body.") for k in rep.ignored)
    torch.testing.assert_close(dst.head.decpose.weight, src.head.decpose.weight)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_hmr_checkpoint(make_hmr(toy), str(tmp_path / "l.ckpt"), allow_unsafe=False)
    # raw dict without mean buffers: they keep smpl_mean_params.npz
    raw = {k: v for k, v in spin_state_dict(src).items() if not k.startswith("init_")}
    dst2 = make_hmr(toy)
    dst2.head.init_pose.mul_(1.0)
    before = dst2.head.init_pose.clone()
    rep = load_hmr_checkpoint(dst2, str(_save(tmp_path / "raw.pt", raw)))
    assert rep.format == "raw" and sorted(rep.missing) == ["head.init_cam", "head.init_pose", "head.init_shape"]
    torch.testing.assert_close(dst2.head.init_pose, before)


def test_checkpoint_errors(toy, tmp_path):
    r18 = make_hmr(toy, backbone="resnet18")
    _save(tmp_path / "r18.pt", {"model": spin_state_dict(r18)})
    r50 = make_hmr(toy, backbone="resnet50")
    with pytest.raises(CheckpointError, match="r18.pt"):
        load_hmr_checkpoint(r50, str(tmp_path / "r18.pt"))
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_hmr_checkpoint(r18, str(tmp_path / "missing.pt"))
    _save(tmp_path / "other.pt", {f"encoder.block{i}.weight": torch.zeros(2) for i in range(50)})
    with pytest.raises(CheckpointError, match="another architecture"):
        load_hmr_checkpoint(r18, str(tmp_path / "other.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_hmr_checkpoint(r18, str(tmp_path / "junk.pt"))


FREE = os.path.join(os.path.dirname(__file__), "..", "dsr", "assets", "free_body")


@pytest.mark.skipif(not os.path.isfile(os.path.join(FREE, "smpl", "SMPL_NEUTRAL.npz")),
                    reason="dsr/assets/free_body not built yet")
def test_hmr_on_the_free_body_assets():
    cfg = get_cfg_defaults()
    cfg.SPIN.BACKBONE = "resnet18"
    cfg.PATHS.SMPL_MODEL_DIR = os.path.join(FREE, "smpl")
    cfg.PATHS.SMPL_MEAN_PARAMS = os.path.join(FREE, "smpl_mean_params.npz")
    cfg.PATHS.JOINT_REGRESSOR_TRAIN_EXTRA = os.path.join(FREE, "J_regressor_extra.npy")
    cfg.PATHS.JOINT_REGRESSOR_H36M = os.path.join(FREE, "J_regressor_h36m.npy")
    m = HMR(cfg).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 3, 224, 224))
    assert out["smpl_vertices"].shape == (1, m.body.num_vertices, 3)
    assert out["smpl_joints2d"].shape == (1, 49, 2) and torch.isfinite(out["smpl_joints2d"]).all()
    assert m.body.regress_h36m_joints(out["smpl_vertices"]).shape == (1, 17, 3)
