"""SCHP (schp-lip): checkpoint layout, InPlaceABN maths, forward shapes, and its test-time procedure
(box, warp and warp-back, flip channel swap, scale pyramid) checked against values worked out by hand.

The fidelity against the original network (same seeded random weights and inputs) was measured
outside the repository (the original code is not part of it): see docs/benchmarks.md."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from dsr.constants import GRAPHONOMY_LABELS
from dsr.parsing import build_parser, parser_layout
from dsr.parsing.schp import (
    LIP_LABELS,
    SCHP_INPUT_SIZE,
    ActivatedBatchNorm,
    build_schp,
    schp_affine,
    schp_box,
    schp_normalize,
    schp_parse,
)


def lip_checkpoint_layout() -> dict[str, tuple]:
    """(key, shape) of SCHP's lip checkpoint, 'module.' stripped, written out from the published
    architecture (networks/AugmentCE2P.py: ResNet-101 with a 3-conv stem, PSP 512, edge 256,
    decoder 256/48, fusion 1024->256->20). Every InPlaceABN holds weight, bias, running_mean,
    running_var (no num_batches_tracked)."""
    L = {}

    def abn(prefix, c):
        for k in ("weight", "bias", "running_mean", "running_var"):
            L[f"{prefix}.{k}"] = (c,)

    def conv(prefix, cout, cin, k, bias=False):
        L[f"{prefix}.weight"] = (cout, cin, k, k)
        if bias:
            L[f"{prefix}.bias"] = (cout,)

    conv("conv1", 64, 3, 3), abn("bn1", 64)
    conv("conv2", 64, 64, 3), abn("bn2", 64)
    conv("conv3", 128, 64, 3), abn("bn3", 128)
    cin = 128
    for li, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 23), (512, 3)], start=1):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            conv(f"{p}.conv1", planes, cin, 1), abn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3), abn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1), abn(f"{p}.bn3", planes * 4)
            if b == 0:  # every layer's first block changes the width (128->256, ...)
                conv(f"{p}.downsample.0", planes * 4, cin, 1), abn(f"{p}.downsample.1", planes * 4)
            cin = planes * 4
    for i in range(4):  # stages: (pool, conv, abn)
        conv(f"context_encoding.stages.{i}.1", 512, 2048, 1), abn(f"context_encoding.stages.{i}.2", 512)
    conv("context_encoding.bottleneck.0", 512, 2048 + 4 * 512, 3), abn("context_encoding.bottleneck.1", 512)
    for i, c in enumerate((256, 512, 1024), start=1):
        conv(f"edge.conv{i}.0", 256, c, 1), abn(f"edge.conv{i}.1", 256)
    conv("edge.conv4", 2, 256, 3, bias=True)
    conv("edge.conv5", 2, 6, 1, bias=True)
    conv("decoder.conv1.0", 256, 512, 1), abn("decoder.conv1.1", 256)
    conv("decoder.conv2.0", 48, 256, 1), abn("decoder.conv2.1", 48)
    conv("decoder.conv3.0", 256, 304, 1), abn("decoder.conv3.1", 256)
    conv("decoder.conv3.2", 256, 256, 1), abn("decoder.conv3.3", 256)
    conv("decoder.conv4", 20, 256, 1, bias=True)
    conv("fushion.0", 256, 1024, 1), abn("fushion.1", 256)
    conv("fushion.3", 20, 256, 1, bias=True)
    return L


def test_layout_is_the_lip_checkpoint():
    want = lip_checkpoint_layout()
    got = parser_layout("schp-lip")
    assert set(got) - set(want) == set() and set(want) - set(got) == set()
    assert {k: got[k] for k in want} == want
    assert not any(k.endswith("num_batches_tracked") for k in got)


def test_random_checkpoint_in_the_released_format_loads(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {"module." + k: torch.randn(s, generator=g) for k, s in lip_checkpoint_layout().items()}
    path = tmp_path / "lip.pth"
    torch.save({"state_dict": sd, "cycle_n": 3}, path)  # SCHP's save_schp_checkpoint format
    model = build_parser("schp-lip", str(path))
    assert not model.training
    own = model.state_dict()
    for k in ("conv1.weight", "layer3.22.bn3.running_var", "fushion.3.bias", "edge.conv5.weight"):
        assert torch.equal(own[k], sd["module." + k])


def test_lip_labels_are_cihp_labels():
    norm = [s.lower().replace("-", "") for s in LIP_LABELS]
    assert norm == [s.lower() for s in GRAPHONOMY_LABELS]


def test_activated_batch_norm_by_hand():
    torch.manual_seed(0)
    c = 5
    x = torch.randn(2, c, 3, 4)
    w = torch.tensor([1.5, -0.7, 0.0, -2.0, 0.3])  # negatives: the scale is |w| + eps
    b, m, v = torch.randn(c), torch.randn(c), torch.rand(c) + 0.2
    eps = 1e-5
    xn, wn, bn, mn, vn = (t.double().numpy() for t in (x, w, b, m, v))
    lin = (xn - mn[:, None, None]) / np.sqrt(vn[:, None, None] + eps) * (np.abs(wn) + eps)[:, None, None] \
        + bn[:, None, None]
    for act, expected in (("none", lin), ("leaky_relu", np.where(lin > 0, lin, 0.01 * lin))):
        layer = ActivatedBatchNorm(c, act)
        layer.load_state_dict({"weight": w, "bias": b, "running_mean": m, "running_var": v})
        np.testing.assert_allclose(layer(x).detach().double().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert (lin < 0).any()  # the leaky branch was exercised


def test_trunk_has_no_activation_heads_leaky():
    model = build_schp()
    acts = {n: m.activation for n, m in model.named_modules() if isinstance(m, ActivatedBatchNorm)}
    assert all(a == "none" for n, a in acts.items() if n.startswith(("bn", "layer")))
    assert all(a == "leaky_relu" for n, a in acts.items()
               if n.startswith(("context_encoding", "edge", "decoder", "fushion")))
    assert sum(a == "leaky_relu" for a in acts.values()) == 4 + 1 + 3 + 4 + 1  # PSP 5, edge 3, decoder 4, fusion 1


def test_forward_batch_of_one_and_batch_independence():
    torch.manual_seed(0)
    model = build_schp().eval()
    x = torch.randn(2, 3, 65, 47)
    with torch.no_grad():
        out = model(x)
        one = model(x[:1])
    # stride 4: conv1 s2 (pad 1) then max-pool s2 (pad 1): 65 -> 33 -> 17, 47 -> 24 -> 12
    assert out.shape == (2, 20, 17, 12) and one.shape == (1, 20, 17, 12)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(one[0], out[0], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- test-time procedure
def test_box_and_affine_by_hand():
    centre, size = schp_box(300, 200)  # H, W: box [0, 199] x [0, 299] grown to a square
    np.testing.assert_allclose(centre, [99.5, 149.5])
    np.testing.assert_allclose(size, [299.0, 299.0])
    centre2, size2 = schp_box(100, 401)
    np.testing.assert_allclose(centre2, [200.0, 49.5])
    np.testing.assert_allclose(size2, [400.0, 400.0])
    M = schp_affine(centre, size)
    # the box corners go to the input's corner pixels 0 and 472, its centre to 236
    for src, dst in (((99.5 - 149.5, 0.0), (0, 0)), ((99.5 + 149.5, 299.0), (472, 472)), ((99.5, 149.5), (236, 236))):
        np.testing.assert_allclose(M @ [src[0], src[1], 1.0], dst, atol=1e-9)
    Minv = schp_affine(centre, size, inverse=True)
    np.testing.assert_allclose(Minv @ np.append(M @ [17.0, 3.0, 1.0], 1.0), [17.0, 3.0], atol=1e-9)


def test_normalize_is_bgr_mean_std_on_the_warped_box():
    img = np.zeros((20, 10, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 200, 100, 50  # R, G, B
    x = schp_normalize(img)
    assert x.shape == (3, SCHP_INPUT_SIZE, SCHP_INPUT_SIZE)
    # channel 0 is blue; the image fills the middle columns (box 19 px wide -> 472 px), black border left/right
    mid = x[:, 236, 236]
    expected = [(50 / 255 - 0.406) / 0.225, (100 / 255 - 0.456) / 0.224, (200 / 255 - 0.485) / 0.229]
    np.testing.assert_allclose(mid.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(x[:, 236, 5].numpy(), [-0.406 / 0.225, -0.456 / 0.224, -0.485 / 0.229], rtol=1e-5)


class RedDetector(nn.Module):
    """Fake network: label 5 logit = the red channel of the normalised BGR input (channel 2), at the
    input's resolution; every other logit 0."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = torch.zeros(x.shape[0], 20, *x.shape[2:])
        out[:, 5] = x[:, 2]
        return out


def test_warp_back_puts_labels_where_the_pixels_are():
    img = np.zeros((300, 200, 3), np.uint8)
    img[100:200, 50:150, 0] = 255  # a red square: normalised red 2.25 > 0 there, -2.12 elsewhere
    lab = schp_parse(RedDetector(), [img], flip=False)[0]
    assert lab.shape == (300, 200) and lab.dtype == np.int64
    assert (lab[101:199, 51:149] == 5).all()  # inside (one pixel of bilinear blur allowed at the edge)
    outside = np.ones((300, 200), bool)
    outside[99:201, 49:151] = False
    assert (lab[outside] == 0).all()


class RampNet(nn.Module):
    """Fake network: channel 14 (leftArm) logit = column index of the input, all others 0 (not
    mirror-symmetric); records the input sizes."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape))
        out = torch.zeros(x.shape[0], 20, *x.shape[2:])
        out[:, 14] = torch.arange(x.shape[-1], dtype=torch.float32)
        return out


def test_flip_swaps_left_right_channels_back():
    img = np.full((64, 64, 3), 128, np.uint8)
    net = RampNet()
    lab = schp_parse(net, [img], flip=True)[0]
    assert net.sizes == [(2, 3, 473, 473)]  # the image and its mirror in one batch
    # direct pass: ch14 = j; mirrored pass: ch14 = j, swapped into ch15 and mirrored back: ch15 = 472 - j.
    # average: ch14 = j / 2 wins on the right half, ch15 = (472 - j) / 2 on the left half.
    assert (lab[:, :31] == 15).all() and (lab[:, 33:] == 14).all()
    no_flip = schp_parse(RampNet(), [img], flip=False)[0]
    assert (no_flip[:, 1:] == 14).all()  # j > 0 everywhere but the first input column


def test_scale_pyramid_sizes_and_average():
    net = RampNet()
    img = np.full((50, 80, 3), 10, np.uint8)
    from dsr.parsing.schp import _fused_logits

    x = schp_normalize(img)[None]
    fused = _fused_logits(net, x, (0.5, 0.75, 1.25), flip=False)
    # floor(473 s): 236, 354, 591
    assert [s[-2:] for s in net.sizes] == [(236, 236), (354, 354), (591, 591)]
    # each scale's ramp 0..side-1 upsampled with align_corners=True onto 0..472 is linear:
    # at output column j it is j (side - 1) / 472; averaged over the three sides
    j = torch.arange(473, dtype=torch.float32)
    expected = j * ((235 + 353 + 590) / 3) / 472
    torch.testing.assert_close(fused[0, 14, 100], expected, rtol=1e-5, atol=1e-4)
    assert fused.shape == (1, 20, 473, 473)


def test_parse_keeps_each_image_size():
    torch.manual_seed(0)
    imgs = [np.zeros((40, 30, 3), np.uint8), np.zeros((25, 61, 3), np.uint8)]
    labels = schp_parse(RedDetector(), imgs)
    assert [lab.shape for lab in labels] == [(40, 30), (25, 61)]


@pytest.mark.parametrize("bad", [[0.0], [-1.0], []])
def test_bad_scales(bad):
    with pytest.raises(ValueError, match="scales"):
        schp_parse(RedDetector(), [np.zeros((4, 4, 3), np.uint8)], scales=bad)
