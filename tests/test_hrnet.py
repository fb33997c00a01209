"""Tests of HRNet-W32 / W48 in PARE's layout (dsr.models.hrnet, issue 16 item 9): state-dict keys and
shapes of PARE's ``PoseHighResolutionNet`` enumerated here from the architecture (not from our
module), parameter counts from layer formulae, the branch exchange computed by hand, PARE-layout
HMR checkpoints and pose-HRNet initial weights loaded with their key reports, the HMR forward."""
import pytest
import torch
import torch.nn.functional as F

from dsr.body.toy import write_toy_model
from dsr.models import HMR, BackboneWeightsError, build_backbone, load_hmr_checkpoint
from dsr.models.backbone import load_backbone_weights
from dsr.models.checkpoint import CheckpointError
from dsr.models.head import HMRHead
from dsr.models.hrnet import PoseHRNet

torch.set_num_threads(min(2, torch.get_num_threads()))

# PARE's PoseHighResolutionNet for width 32 with its 24-joint final_layer has 29,306,328 parameters
# (counted on PARE's own module, pare/models/backbone/hrnet.py @f848b2f, outside this repository).
PARE_W32_PARAMS = 29_306_328


# ----------------------------------------------------------------------------- PARE's keys, from the architecture
def _bn(prefix, c):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def pare_hrnet_keys(width=32, downsample=False, use_conv=False, num_joints=24):
    """{key: shape} of PARE's PoseHighResolutionNet(width, DOWNSAMPLE, USE_CONV, NUM_JOINTS), as read
    from pare/models/backbone/hrnet.py: stem, layer1 (4 bottlenecks), transitions, stages 2-4
    (1/4/3 modules, 4 basic blocks per branch, fuse layers), final_layer, fusion convs."""
    W = width
    k = {"conv1.weight": (64, 3, 3, 3), "conv2.weight": (64, 64, 3, 3), **_bn("bn1", 64), **_bn("bn2", 64)}
    for b in range(4):  # layer1: Bottleneck(in, 64) x 4, projection on the first
        p, cin = f"layer1.{b}", (64 if b == 0 else 256)
        k.update({f"{p}.conv1.weight": (64, cin, 1, 1), f"{p}.conv2.weight": (64, 64, 3, 3),
                  f"{p}.conv3.weight": (256, 64, 1, 1), **_bn(f"{p}.bn1", 64), **_bn(f"{p}.bn2", 64),
                  **_bn(f"{p}.bn3", 256)})
        if b == 0:
            k.update({f"{p}.downsample.0.weight": (256, 64, 1, 1), **_bn(f"{p}.downsample.1", 256)})
    # transition1: 256 -> W (3x3, stride 1) and 256 -> 2W (3x3, stride 2); later ones add one branch each
    k.update({"transition1.0.0.weight": (W, 256, 3, 3), **_bn("transition1.0.1", W),
              "transition1.1.0.0.weight": (2 * W, 256, 3, 3), **_bn("transition1.1.0.1", 2 * W),
              "transition2.2.0.0.weight": (4 * W, 2 * W, 3, 3), **_bn("transition2.2.0.1", 4 * W),
              "transition3.3.0.0.weight": (8 * W, 4 * W, 3, 3), **_bn("transition3.3.0.1", 8 * W)})
    for stage, n_modules, n_branches in ((2, 1, 2), (3, 4, 3), (4, 3, 4)):
        c = [W * 2 ** i for i in range(n_branches)]
        for m in range(n_modules):
            p = f"stage{stage}.{m}"
            for b in range(n_branches):
                for blk in range(4):
                    q = f"{p}.branches.{b}.{blk}"
                    k.update({f"{q}.conv1.weight": (c[b], c[b], 3, 3), f"{q}.conv2.weight": (c[b], c[b], 3, 3),
                              **_bn(f"{q}.bn1", c[b]), **_bn(f"{q}.bn2", c[b])})
            for i in range(n_branches):
                for j in range(n_branches):
                    q = f"{p}.fuse_layers.{i}.{j}"
                    if j > i:  # 1x1 conv + BN (+ nearest upsampling, no parameters)
                        k.update({f"{q}.0.weight": (c[i], c[j], 1, 1), **_bn(f"{q}.1", c[i])})
                    for s in range(i - j):  # j < i: i - j stride-2 3x3 convs
                        out = c[i] if s == i - j - 1 else c[j]
                        k.update({f"{q}.{s}.0.weight": (out, c[j], 3, 3), **_bn(f"{q}.{s}.1", out)})
    k.update({"final_layer.weight": (num_joints, W, 1, 1), "final_layer.bias": (num_joints,)})
    if use_conv and downsample:  # [conv s2, BN, ReLU] x 3 / 2 / 1 on branches 0 / 1 / 2
        for name, c, n in (("downsample_stage_1", W, 3), ("downsample_stage_2", 2 * W, 2),
                           ("downsample_stage_3", 4 * W, 1)):
            for s in range(n):
                k.update({f"{name}.{3 * s}.weight": (c, c, 3, 3), **_bn(f"{name}.{3 * s + 1}", c)})
    elif use_conv:  # [Upsample, conv, BN, ReLU] x 1 / 2 / 3 on branches 1 / 2 / 3
        for name, c, n in (("upsample_stage_2", 2 * W, 1), ("upsample_stage_3", 4 * W, 2),
                           ("upsample_stage_4", 8 * W, 3)):
            for s in range(n):
                k.update({f"{name}.{4 * s + 1}.weight": (c, c, 3, 3), **_bn(f"{name}.{4 * s + 2}", c)})
    return k


def pare_hmr_head_keys(c, npose=144):
    """PARE's HMRHead for an HRNet backbone: fc1 (c + 157 inputs) ... and its unused downsample_module."""
    k = {"fc1.weight": (1024, c + npose + 13), "fc1.bias": (1024,), "fc2.weight": (1024, 1024), "fc2.bias": (1024,),
         "decpose.weight": (npose, 1024), "decpose.bias": (npose,), "decshape.weight": (10, 1024),
         "decshape.bias": (10,), "deccam.weight": (3, 1024), "deccam.bias": (3,),
         "init_pose": (1, npose), "init_shape": (1, 10), "init_cam": (1, 3)}
    for i in range(3):
        k.update({f"downsample_module.{i}.0.weight": (c, c, 3, 3), f"downsample_module.{i}.0.bias": (c,),
                  **_bn(f"downsample_module.{i}.1", c)})
    return k


def hrnet_param_count(W, downsample=False, use_conv=False):
    """Parameters of our PoseHRNet (no final_layer) from the layer formulae."""
    conv3, bn = (lambda a, b: 9 * a * b), (lambda c: 2 * c)
    n = conv3(3, 64) + bn(64) + conv3(64, 64) + bn(64)
    n += 64 * 256 + bn(256)  # layer1 projection
    n += sum(cin * 64 + bn(64) + conv3(64, 64) + bn(64) + 64 * 256 + bn(256) for cin in (64, 256, 256, 256))
    n += conv3(256, W) + bn(W) + conv3(256, 2 * W) + bn(2 * W)
    n += conv3(2 * W, 4 * W) + bn(4 * W) + conv3(4 * W, 8 * W) + bn(8 * W)
    for n_modules, n_branches in ((1, 2), (4, 3), (3, 4)):
        c = [W * 2 ** i for i in range(n_branches)]
        per = sum(4 * 2 * (conv3(x, x) + bn(x)) for x in c)  # basic blocks
        for i in range(n_branches):
            for j in range(n_branches):
                if j > i:
                    per += c[j] * c[i] + bn(c[i])
                elif j < i:
                    per += (i - j - 1) * (conv3(c[j], c[j]) + bn(c[j])) + conv3(c[j], c[i]) + bn(c[i])
        n += n_modules * per
    if use_conv:
        stages = ((W, 3), (2 * W, 2), (4 * W, 1)) if downsample else ((2 * W, 1), (4 * W, 2), (8 * W, 3))
        n += sum(layers * (conv3(c, c) + bn(c)) for c, layers in stages)
    return n


def head_param_count(c, hidden=1024):
    d_in = c + 144 + 10 + 3
    return d_in * hidden + hidden + hidden * hidden + hidden + sum(hidden * k + k for k in (144, 10, 3))


# ----------------------------------------------------------------------------- the module
@pytest.mark.parametrize("width,downsample,use_conv", [
    (32, False, False), (32, False, True), (32, True, False), (32, True, True), (48, False, False), (48, True, True)])
def test_keys_and_shapes_are_pares(width, downsample, use_conv):
    net = PoseHRNet(width, downsample=downsample, use_conv=use_conv)
    want = pare_hrnet_keys(width, downsample, use_conv)
    del want["final_layer.weight"], want["final_layer.bias"]  # PARE's unused heatmap conv: not built
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert sorted(got) == sorted(want)
    assert got == want
    assert net.out_channels == 15 * width  # 480 / 720
    assert sum(p.numel() for p in net.parameters()) == hrnet_param_count(width, downsample, use_conv)


def test_parameter_counts():
    n = hrnet_param_count(32)
    assert n + 24 * 32 + 24 == PARE_W32_PARAMS  # + PARE's final_layer
    model_n = n + head_param_count(480)
    print(f"HMR-HRNet-W32: {model_n} parameters (backbone {n}, head {head_param_count(480)}); "
          f"with -conv: {hrnet_param_count(32, True, True) + head_param_count(480)}")
    assert HMRHead(in_channels=480).fc1.in_features == 637
    assert HMRHead(in_channels=720).fc1.in_features == 877


def test_pare_init():
    """PARE's init_weights: convs N(0, 0.001), BN weight 1 / bias 0."""
    torch.manual_seed(0)
    net = PoseHRNet(32, downsample=True, use_conv=True)
    w = net.downsample_stage_1[0].weight
    assert abs(w.std().item() - 0.001) < 5e-5 and abs(w.mean().item()) < 5e-5
    assert abs(net.stage4[2].fuse_layers[0][3][0].weight.std().item() - 0.001) < 5e-5
    assert torch.equal(net.bn1.weight, torch.ones(64)) and torch.equal(net.bn1.bias, torch.zeros(64))


def _randomise(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif t.dtype.is_floating_point:
                t.copy_(torch.randn(t.shape, generator=g) * (0.2 if t.dim() == 4 else 0.1))
    return net.eval()


def test_branch_exchange_by_hand():
    """Stage 2 (two branches): out0 = ReLU(b0 + up2(BN(conv1x1(b1)))), out1 = ReLU(BN(conv3x3/2(b0)) + b1)."""
    net = _randomise(PoseHRNet(32))
    mod = net.stage2[0]
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(1, 32, 8, 8, generator=g), torch.randn(1, 64, 4, 4, generator=g)
    with torch.no_grad():
        out0, out1 = mod([x0, x1])
        b0, b1 = mod.branches[0](x0), mod.branches[1](x1)

        def bn(x, m):
            return (x - m.running_mean[None, :, None, None]) / torch.sqrt(m.running_var[None, :, None, None] + m.eps) \
                * m.weight[None, :, None, None] + m.bias[None, :, None, None]

        up = mod.fuse_layers[0][1]
        y = bn(F.conv2d(b1, up[0].weight), up[1])
        want0 = torch.relu(b0 + y.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
        down = mod.fuse_layers[1][0][0]
        want1 = torch.relu(bn(F.conv2d(b0, down[0].weight, stride=2, padding=1), down[1]) + b1)
    torch.testing.assert_close(out0, want0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out1, want1, rtol=1e-5, atol=1e-5)


def test_fusions_at_224():
    """The four stage-4 outputs (strides 4..32) fused at stride 4 by bilinear resizing (hrnet_w32) or
    at stride 32 by PARE's strided convs (hrnet_w32-conv) / resizing (hrnet_w32-interp)."""
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    plain = _randomise(build_backbone("hrnet_w32"))
    with torch.no_grad():
        xs = plain.stage_outputs(x)
        f = plain(x)
    assert [tuple(t.shape) for t in xs] == [(1, 32, 56, 56), (1, 64, 28, 28), (1, 128, 14, 14), (1, 256, 7, 7)]
    assert f.shape == (1, 480, 56, 56)
    torch.testing.assert_close(f[:, :32], xs[0])
    # branch 3 (7x7) resized to 56x56 with align_corners=True: corners are kept exactly
    torch.testing.assert_close(f[:, 224:, [0, -1]][:, :, :, [0, -1]], xs[3][:, :, [0, -1]][:, :, :, [0, -1]])
    interp = build_backbone("hrnet_w32-interp")
    interp.load_state_dict(plain.state_dict())
    with torch.no_grad():
        fi = interp.eval()(x)
    assert fi.shape == (1, 480, 7, 7)
    torch.testing.assert_close(fi[:, 224:], xs[3])  # the lowest branch passes unchanged
    conv = _randomise(build_backbone("hrnet_w32-conv"))
    with torch.no_grad():
        fc = conv(x)
    assert fc.shape == (1, 480, 7, 7) and conv.stride == 32 and plain.stride == 4


# ----------------------------------------------------------------------------- initial weights and checkpoints
def _fake(shapes, seed=0):
    """Seeded tensors of the given shapes (positive running variances, He-scaled convs)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        last = k.split(".")[-1]
        if last == "num_batches_tracked":
            out[k] = torch.tensor(7)
        elif last == "running_var":
            out[k] = 0.5 + torch.rand(s, generator=g)
        elif len(s) == 4:
            out[k] = torch.randn(s, generator=g) * (2.0 / (s[1] * s[2] * s[3])) ** 0.5
        else:
            out[k] = 0.1 * torch.randn(s, generator=g)
    return out


def test_pose_hrnet_weights_initialise_the_backbone(tmp_path):
    """pose_hrnet_w32_256x192.pth: the trunk + a 17-joint COCO heatmap conv (final_layer), in the
    HRNet repository's era without num_batches_tracked."""
    pose = {k: v for k, v in _fake(pare_hrnet_keys(32, num_joints=17)).items() if "num_batches_tracked" not in k}
    assert pose["final_layer.weight"].shape == (17, 32, 1, 1)
    torch.save(pose, tmp_path / "pose_hrnet_w32_256x192.pth")
    path = str(tmp_path / "pose_hrnet_w32_256x192.pth")
    for name in ("hrnet_w32", "hrnet_w32-conv"):
        net = build_backbone(name)
        torch.manual_seed(0)
        rep = load_backbone_weights(net, path)
        assert sorted(rep.ignored) == ["final_layer.bias", "final_layer.weight"]
        assert rep.unexpected == []
        new = [k for k in net.state_dict() if k.startswith("downsample_stage_") and "num_batches" not in k]
        assert sorted(rep.missing) == sorted(new) and (len(new) == 6 * 5 if name == "hrnet_w32-conv" else not new)
        assert len(rep.loaded) == len(pose) - 2
        sd = net.state_dict()
        for k in ("conv1.weight", "stage4.2.fuse_layers.0.3.0.weight", "transition3.3.0.1.running_var",
                  "stage3.3.branches.2.3.bn2.bias", "layer1.0.downsample.0.weight"):
            torch.testing.assert_close(sd[k], pose[k])
    assert abs(net.downsample_stage_2[0].weight.std().item() - 0.001) < 1e-4  # new layer: PARE's init
    # through build_backbone too; a W48 tensor or a missing trunk tensor is an error naming the file
    torch.testing.assert_close(build_backbone("hrnet_w32", path).conv1.weight, pose["conv1.weight"])
    bad = dict(pose, **{"transition1.0.0.weight": torch.zeros(48, 256, 3, 3)})
    torch.save(bad, tmp_path / "w48.pth")
    with pytest.raises(BackboneWeightsError, match="w48.pth.*1 shape mismatches"):
        build_backbone("hrnet_w32", str(tmp_path / "w48.pth"))
    del pose["stage3.1.branches.0.2.conv1.weight"]
    torch.save(pose, tmp_path / "cut.pth")
    with pytest.raises(BackboneWeightsError, match="cut.pth.*stage3.1.branches.0.2.conv1.weight"):
        build_backbone("hrnet_w32", str(tmp_path / "cut.pth"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_model(str(tmp_path_factory.mktemp("toy")), seed=0)


def make_hmr(toy, backbone):
    return HMR(backbone=backbone, smpl_model_dir=toy["model_dir"], mean_params=toy["mean_params"],
               extra_regressor=toy["extra"], h36m_regressor=toy["h36m"])


@pytest.mark.parametrize("backbone,downsample,use_conv", [("hrnet_w32", False, False), ("hrnet_w32-conv", True, True)])
def test_pare_layout_hmr_checkpoint_loads(toy, tmp_path, backbone, downsample, use_conv):
    """A Lightning checkpoint of PARE's HMR (model.backbone.* = PoseHighResolutionNet with its
    24-joint final_layer, model.head.* = HMRHead of 480 + 157 = 637 inputs with its unused
    downsample_module, model.smpl.*) loads with nothing missing or unexpected."""
    bb = {f"model.backbone.{k}": v for k, v in _fake(pare_hrnet_keys(32, downsample, use_conv), 1).items()}
    head = {f"model.head.{k}": v for k, v in _fake(pare_hmr_head_keys(480), 2).items()}
    sd = {**bb, **head, "model.smpl.smpl.shapedirs": torch.zeros(3)}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "pare_hmr.ckpt")
    model = make_hmr(toy, backbone)
    assert model.backbone.out_channels == 480 and model.head.fc1.in_features == 637
    rep = load_hmr_checkpoint(model, str(tmp_path / "pare_hmr.ckpt"))
    assert rep.missing == [] and rep.unexpected == []
    dropped = ["backbone.final_layer.weight", "backbone.final_layer.bias"] + \
        [f"head.{k}" for k in pare_hmr_head_keys(480) if k.startswith("downsample_module.")]
    assert sorted(rep.ignored) == sorted(dropped + ["smpl.smpl.shapedirs"])
    assert len(rep.loaded) == len(sd) - len(rep.ignored)
    msd = model.state_dict()
    for k in rep.loaded:
        assert torch.equal(msd[k], sd[f"model.{k}"]), k
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, 224, 224))
    V = model.body.num_vertices
    for k, s in {"pred_pose": (2, 24, 3, 3), "pred_shape": (2, 10), "pred_cam": (2, 3),
                 "smpl_vertices": (2, V, 3), "smpl_joints2d": (2, 49, 2)}.items():
        assert tuple(out[k].shape) == s, k
        assert torch.isfinite(out[k]).all()
    n = sum(p.numel() for p in model.backbone.parameters()) + sum(p.numel() for p in model.head.parameters())
    assert n == hrnet_param_count(32, downsample, use_conv) + head_param_count(480)


def test_hrnet_fusion_variant_mismatch_is_an_error_naming_the_variant(toy, tmp_path):
    """An hrnet_w32-conv checkpoint (36 downsample_stage_1..3 tensors) loaded into hrnet_w32, and
    the reverse, used to load with a warning and evaluate another network: now an error."""
    head = {f"model.head.{k}": v for k, v in _fake(pare_hmr_head_keys(480), 2).items()}
    conv = {f"model.backbone.{k}": v for k, v in _fake(pare_hrnet_keys(32, True, True), 3).items()}
    assert sum(".downsample_stage_" in k for k in conv) == 6 * 6  # 6 conv + BN layers: weight + 5 BN
    torch.save({"state_dict": {**conv, **head}}, tmp_path / "conv.ckpt")
    with pytest.raises(CheckpointError, match=r"conv\.ckpt.*fusion variant.*36 tensors.*needs BACKBONE hrnet_w32-conv"):
        load_hmr_checkpoint(make_hmr(toy, "hrnet_w32"), str(tmp_path / "conv.ckpt"))
    with pytest.raises(CheckpointError, match=r"needs BACKBONE hrnet_w32-conv"):
        load_hmr_checkpoint(make_hmr(toy, "hrnet_w32-interp"), str(tmp_path / "conv.ckpt"))
    plain = {f"model.backbone.{k}": v for k, v in _fake(pare_hrnet_keys(32, False, False), 4).items()}
    torch.save({"state_dict": {**plain, **head}}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match=r"no fusion conv layers.*needs BACKBONE hrnet_w32 or hrnet_w32-interp"):
        load_hmr_checkpoint(make_hmr(toy, "hrnet_w32-conv"), str(tmp_path / "plain.ckpt"))
    # a file of another architecture (a ResNet-50 HMR) is not called an HRNet of another variant
    resnet = {f"model.backbone.{k}": v for k, v in make_hmr(toy, "resnet50").backbone.state_dict().items()}
    torch.save({"state_dict": {**resnet, **head}}, tmp_path / "resnet.ckpt")
    with pytest.raises(CheckpointError) as err:
        load_hmr_checkpoint(make_hmr(toy, "hrnet_w32-conv"), str(tmp_path / "resnet.ckpt"))
    assert "fusion variant" not in str(err.value) and "resnet.ckpt" in str(err.value)
    # the matching variants still load
    assert load_hmr_checkpoint(make_hmr(toy, "hrnet_w32-conv"), str(tmp_path / "conv.ckpt")).missing == []
    assert load_hmr_checkpoint(make_hmr(toy, "hrnet_w32-interp"), str(tmp_path / "plain.ckpt")).missing == []


def test_hmr_from_cfg_reads_the_hrnet_weights_key(toy, tmp_path):
    from dsr.config import get_cfg_defaults

    pose = _fake(pare_hrnet_keys(32, num_joints=17), 4)
    torch.save(pose, tmp_path / "pose_hrnet_w32_256x192.pth")
    cfg = get_cfg_defaults()
    cfg.METHOD = "dsr"
    cfg.DSR.BACKBONE = "hrnet_w32-conv"
    cfg.PATHS.BACKBONE_WEIGHTS.hrnet_w32 = str(tmp_path / "pose_hrnet_w32_256x192.pth")
    cfg.PATHS.SMPL_MODEL_DIR, cfg.PATHS.SMPL_MEAN_PARAMS = toy["model_dir"], toy["mean_params"]
    cfg.PATHS.JOINT_REGRESSOR_TRAIN_EXTRA, cfg.PATHS.JOINT_REGRESSOR_H36M = toy["extra"], toy["h36m"]
    m = HMR(cfg)
    assert m.backbone.name == "hrnet_w32-conv" and m.head.fc1.in_features == 637
    torch.testing.assert_close(m.backbone.stage2[0].branches[1][3].conv2.weight,
                               pose["stage2.0.branches.1.3.conv2.weight"])
