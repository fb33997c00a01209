"""Graphonomy parsers (dsr.parsing.graphonomy): checkpoint layout, forward, test-time procedure.

The expected state-dict layouts are derived here from the original modules' construction rules
(Graphonomy's networks/deeplab_xception.py, gcn.py, deeplab_xception_transfer.py,
deeplab_xception_universal.py), not from our modules. The test-time procedure is checked with fake
networks whose logits are known, so the expected sums and labels follow by hand.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from dsr.parsing.graphonomy import (
    GRAPHONOMY_PARSERS,
    GRAPHONOMY_SCALES,
    build_graphonomy,
    graphonomy_normalize,
    graphonomy_parse,
    graphonomy_tta_logits,
)
from dsr.parsing.graphonomy_graph import PASCAL_NEIGHBOURS, normalized_adjacency


# ----------------------------------------------------------------------------- expected layouts
def _bn(prefix, c):
    return {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}


def _separable(prefix, c_in, c_out):
    """SeparableConv2d_same / SeparableConv2d_aspp: depthwise 3x3 + BN, pointwise 1x1 + BN."""
    keys = {f"{prefix}.depthwise.weight": (c_in, 1, 3, 3), f"{prefix}.pointwise.weight": (c_out, c_in, 1, 1)}
    keys.update(_bn(f"{prefix}.depthwise_bn", c_in))
    keys.update(_bn(f"{prefix}.pointwise_bn", c_out))
    return keys


def _block(prefix, inplanes, planes, reps, stride=1, start_with_relu=True, grow_first=True, is_last=False,
           block2=False):
    """The original Block / Block2 construction: a list of 'relu' / (c_in, c_out) entries."""
    keys = {}
    if planes != inplanes or stride != 1:
        keys[f"{prefix}.skip.weight"] = (planes, inplanes, 1, 1)
        keys.update(_bn(f"{prefix}.skipbn", planes))
    rep, filters = [], inplanes
    if grow_first:
        rep += ["relu", (inplanes, planes)]
        filters = planes
    for _ in range(reps - 1):
        rep += ["relu", (filters, filters)]
    if not grow_first:
        rep += ["relu", (inplanes, planes)]
    if not start_with_relu:
        rep = rep[1:]
    if stride != 1:
        if block2:
            keys.update(_separable(f"{prefix}.block2_lastconv.1", planes, planes))
        else:
            rep += ["relu", (planes, planes)]
    if is_last:
        rep += ["relu", (planes, planes)]
    for i, entry in enumerate(rep):
        if entry != "relu":
            keys.update(_separable(f"{prefix}.rep.{i}", *entry))
    return keys


def _trunk_layout():
    x = "xception_features"
    keys = {f"{x}.conv1.weight": (32, 3, 3, 3), f"{x}.conv2.weight": (64, 32, 3, 3)}
    keys.update(_bn(f"{x}.bn1", 32))
    keys.update(_bn(f"{x}.bn2", 64))
    keys.update(_block(f"{x}.block1", 64, 128, 2, stride=2, start_with_relu=False))
    keys.update(_block(f"{x}.block2", 128, 256, 2, stride=2, block2=True))
    keys.update(_block(f"{x}.block3", 256, 728, 2, stride=2))
    for k in range(4, 20):
        keys.update(_block(f"{x}.block{k}", 728, 728, 3))
    keys.update(_block(f"{x}.block20", 728, 1024, 2, grow_first=False, is_last=True))
    keys.update(_separable(f"{x}.conv3", 1024, 1536))
    keys.update(_separable(f"{x}.conv4", 1536, 1536))
    keys.update(_separable(f"{x}.conv5", 1536, 2048))
    keys["aspp1.atrous_convolution.weight"] = (256, 2048, 1, 1)
    keys.update(_bn("aspp1.bn", 256))
    for k in (2, 3, 4):
        keys.update(_separable(f"aspp{k}.atrous_convolution", 2048, 256))
    keys["global_avg_pool.1.weight"] = (256, 2048, 1, 1)
    keys.update(_bn("global_avg_pool.2", 256))
    keys["concat_projection_conv1.weight"] = (256, 1280, 1, 1)
    keys.update(_bn("concat_projection_bn1", 256))
    keys["feature_projection_conv1.weight"] = (48, 256, 1, 1)
    keys.update(_bn("feature_projection_bn1", 48))
    keys.update(_separable("decoder.0.atrous_convolution", 304, 256))
    keys.update(_separable("decoder.1.atrous_convolution", 256, 256))
    keys.update({"semantic.weight": (20, 256, 1, 1), "semantic.bias": (20,)})
    return keys


def _graph(prefix, nodes, hidden=128, channels=256, to_features=True):
    """Featuremaps_to_Graph + three GraphConvolutions (+ Graph_to_Featuremaps_savemem + skip conv)."""
    keys = {f"{prefix}_featuremap_2_graph.pre_fea": (channels, nodes),
            f"{prefix}_featuremap_2_graph.weight": (channels, hidden)}
    for k in (1, 2, 3):
        keys[f"{prefix}_graph_conv{k}.weight"] = (hidden, hidden)
    if to_features:
        keys.update({f"{prefix}_graph_2_fea.node_fea_for_res": (channels, 1),
                     f"{prefix}_graph_2_fea.node_fea_for_hidden": (hidden, 1),
                     f"{prefix}_graph_2_fea.weight": (hidden, channels),
                     f"{prefix}_skip_conv.0.weight": (channels, channels, 1, 1),
                     f"{prefix}_skip_conv.0.bias": (channels,)})
    return keys


def _graph_trans(prefix, begin_nodes, end_nodes, hidden=128):
    """Graph_trans built with adj=None: weight and an (end_nodes, begin_nodes) adj parameter."""
    return {f"{prefix}.weight": (hidden, hidden), f"{prefix}.adj": (end_nodes, begin_nodes)}


def expected_layout(name):
    keys = _trunk_layout()
    if name == "graphonomy":  # deeplab_xception_transfer_projection_savemem(20, hidden 128, source 7)
        keys.update(_graph("target", 20))
        keys.update(_graph("source", 7, to_features=False))
        keys.update(_graph_trans("transpose_graph", 7, 20))
        keys["fc_graph.weight"] = (3 * 128, 128)
    else:  # deeplab_xception_end2end_3d(20, source 7, middle 18)
        s, t, m = 7, 20, 18
        keys.update(_graph("source", s))
        keys.update(_graph("target", t))
        keys.update(_graph("middle", m))
        keys.update({"source_semantic.weight": (s, 256, 1, 1), "source_semantic.bias": (s,),
                     "middle_semantic.weight": (m, 256, 1, 1), "middle_semantic.bias": (m,)})
        keys.update(_graph_trans("transpose_graph_source2target", s, t))
        keys.update(_graph_trans("transpose_graph_target2source", t, s))
        keys.update(_graph_trans("transpose_graph_middle2source", m, s))
        keys.update(_graph_trans("transpose_graph_middle2target", m, s))  # end_nodes=source_classes
        keys.update(_graph_trans("transpose_graph_source2middle", s, m))
        keys.update(_graph_trans("transpose_graph_target2middle", t, m))
        for g in ("source", "target", "middle"):
            keys[f"fc_graph_{g}.weight"] = (5 * 128, 128)
    return keys


def random_state(layout, seed=0):
    """A plausible random state dict in ``layout`` (positive running variances)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("running_var") or (len(shape) == 1 and key.endswith("weight")):
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        elif len(shape) == 1:
            state[key] = 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
            state[key] = torch.randn(shape, generator=gen) / fan_in ** 0.5
    return state


@pytest.fixture(scope="module", params=GRAPHONOMY_PARSERS)
def loaded(request):
    """(name, model with a seeded random state in the checkpoint layout, that state)."""
    model = build_graphonomy(request.param)
    state = random_state(expected_layout(request.param))
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return request.param, model, state


def test_parser_names_and_scales():
    assert GRAPHONOMY_PARSERS == ("graphonomy", "graphonomy-universal")
    assert GRAPHONOMY_SCALES == (1, 0.5, 0.75, 1.25, 1.5, 1.75)  # the demo's scale_list, in order
    with pytest.raises(ValueError, match="unknown Graphonomy parser"):
        build_graphonomy("schp-lip")


def test_state_dict_layout_is_the_checkpoints(loaded):
    name, model, state = loaded
    layout = expected_layout(name)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    assert len(layout) == {"graphonomy": 750, "graphonomy-universal": 781}[name]
    buffers = {k for k, _ in model.named_buffers() if k in layout}
    assert buffers == {k for k in layout if k.endswith(("running_mean", "running_var"))}
    assert not any(k.endswith("num_batches_tracked") for k in model.state_dict())
    # the load really copied the values
    for key in ("xception_features.block20.rep.5.pointwise.weight", "target_graph_2_fea.weight", "semantic.bias"):
        assert torch.equal(model.state_dict()[key], state[key])


def test_forward_shapes_any_batch_size(loaded):
    name, model, _ = loaded
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 45, 38, generator=gen) * 2 - 1  # odd sizes: stride-2 stages round up
    with torch.no_grad():
        y2 = model(x)
        y1 = model(x[:1])
    assert y2.shape == (2, 20, 45, 38) and y1.shape == (1, 20, 45, 38)
    assert torch.isfinite(y2).all()
    torch.testing.assert_close(y1[0], y2[0], rtol=1e-4, atol=1e-4)  # no batch interaction
    assert not torch.allclose(y2[0], y2[1])


def test_unused_checkpoint_layers_are_unused_and_the_reused_ones_used(loaded):
    """The original reuses graph layers (see the module doc); the stored spares do not matter."""
    name, model, state = loaded
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    unused = {"graphonomy": ["source_graph_conv3.weight", "transpose_graph.adj"],
              "graphonomy-universal": ["middle_graph_conv1.weight", "target_graph_conv2.weight",
                                       "source_graph_conv3.weight", "source_semantic.weight",
                                       "transpose_graph_middle2target.adj"]}[name]
    used = {"graphonomy": "source_graph_conv2.weight", "graphonomy-universal": "target_graph_conv1.weight"}[name]
    params = dict(model.named_parameters())
    try:
        with torch.no_grad():
            ref = model(x)
            for key in unused:
                params[key].mul_(-3.0)
            torch.testing.assert_close(model(x), ref, rtol=0, atol=0)
            params[used].mul_(-3.0)
            assert (model(x) - ref).abs().max() > 1e-4
    finally:
        model.load_state_dict(state)


def test_xception_residual_adds_relu_of_its_input(loaded):
    """Original quirk: the block's first ReLU is in place, so an empty residual body gives relu(x)."""
    _, model, state = loaded
    block = model.xception_features.block4  # 728 -> 728, identity skip
    bn = block.rep[-1].pointwise_bn
    try:
        with torch.no_grad():
            bn.weight.zero_()
            bn.bias.zero_()
            x = torch.randn(1, 728, 3, 4, generator=torch.Generator().manual_seed(3))
            torch.testing.assert_close(block(x), x.clamp(min=0), rtol=0, atol=0)
    finally:
        model.load_state_dict(state)


# ----------------------------------------------------------------------------- graphs
def test_normalized_adjacency_by_hand():
    # edges 0-1 (listed once) and a self-loop at 2: A + I = [[1,1,0],[1,1,0],[0,0,2]], row sums 2
    adj = normalized_adjacency({0: (1,), 1: (), 2: (2,)})
    np.testing.assert_allclose(adj, [[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1]], atol=1e-15)
    pascal = normalized_adjacency(PASCAL_NEIGHBOURS)
    # node 1 lists (1, 2): diagonal 2, one edge -> row sum 3; node 2 lists (1, 2, 3, 5) -> 5
    assert pascal[1, 1] == pytest.approx(2 / 3) and pascal[1, 2] == pytest.approx(1 / np.sqrt(15))
    np.testing.assert_allclose(pascal, pascal.T)


# ----------------------------------------------------------------------------- test-time procedure
def test_normalize_by_hand():
    img = np.array([[[255, 0, 51], [0, 102, 255]]], dtype=np.uint8)  # (1, 2, 3) RGB
    x = graphonomy_normalize(img)
    assert x.shape == (3, 1, 2) and x.dtype == torch.float32
    expected_bgr = np.array([[[51, 255]], [[0, 102]], [[255, 0]]], dtype=np.float64) * 2 / 255 - 1
    np.testing.assert_allclose(x.numpy(), expected_bgr, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        graphonomy_normalize(img.astype(np.float32))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="uint8"):
        graphonomy_parse(Recorder(), [np.zeros((8, 8), dtype=np.uint8)])
    with pytest.raises(ValueError, match="one size"):
        graphonomy_tta_logits(Recorder(), [_image(8, 8), _image(8, 9)])
    with pytest.raises(ValueError, match="scale 0.1"):
        graphonomy_parse(Recorder(), [_image(8, 8)], scales=[0.1])


class Recorder(nn.Module):
    """Fake network: logits[c] = h * ((c + 1) * j / (w - 1) + i / (h - 1)) on an (h, w) input.

    Independent of the pixels; records each input batch.
    """

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.clone())
        b, _, h, w = x.shape
        cols = torch.arange(w, dtype=torch.float32) / (w - 1)
        rows = torch.arange(h, dtype=torch.float32) / (h - 1)
        slope = torch.arange(1, 21, dtype=torch.float32)
        out = h * (slope[:, None, None] * cols[None, None, :] + rows[None, :, None])
        return out.expand(b, -1, -1, -1)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_scale_pyramid_sizes_and_mirrored_copies():
    fake = Recorder()
    img = _image(37, 50)
    graphonomy_tta_logits(fake, [img, _image(37, 50, seed=1)])
    # int() of scale x size for scales 1, 0.5, 0.75, 1.25, 1.5, 1.75 of a 37 x 50 image
    sizes = [(37, 50), (18, 25), (27, 37), (46, 62), (55, 75), (64, 87)]
    assert [tuple(x.shape) for x in fake.inputs] == [(4, 3, h, w) for h, w in sizes]
    for x, (h, w) in zip(fake.inputs, sizes):
        resized = np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))
        torch.testing.assert_close(x[0], graphonomy_normalize(resized), rtol=0, atol=0)
        torch.testing.assert_close(x[2], x[0].flip(-1), rtol=0, atol=0)  # mirrored copies after the originals
    fake.inputs.clear()
    graphonomy_tta_logits(fake, [img], scales=[0.3], flip=False)
    assert [tuple(x.shape) for x in fake.inputs] == [(1, 3, 11, 15)]  # int(37*0.3), int(50*0.3)


def _expected_sum(height, width, heights):
    """By hand: each scale gives h_s * (((c+1) r + (c'+1)(1 - r)) / 2 + q), r = J/(W-1), q = I/(H-1),
    c' = c with 14<->15, 16<->17, 18<->19 (the mirrored copy's swapped channel, mirrored back)."""
    partner = list(range(20))
    for a, b in ((14, 15), (16, 17), (18, 19)):
        partner[a], partner[b] = b, a
    c = np.arange(20, dtype=np.float64)[:, None, None]
    cp = np.array(partner, dtype=np.float64)[:, None, None]
    r = (np.arange(width) / (width - 1))[None, None, :]
    q = (np.arange(height) / (height - 1))[None, :, None]
    return sum(heights) * (((c + 1) * r + (cp + 1) * (1 - r)) / 2 + q)


def test_flip_swap_and_upsampled_combination_by_hand():
    height, width = 30, 44
    img = _image(height, width)
    # one scale, no resize: the flip average alone
    one = graphonomy_tta_logits(Recorder(), [img], scales=[1.0])
    np.testing.assert_allclose(one[0].numpy(), _expected_sum(height, width, [30]), rtol=1e-5, atol=1e-4)
    # all scales: h_s = int(30 s); bilinear align_corners=True keeps these ramps linear when upsampled
    heights = [30, 15, 22, 37, 45, 52]
    total = graphonomy_tta_logits(Recorder(), [img])
    assert total.shape == (1, 20, height, width)
    np.testing.assert_allclose(total[0].numpy(), _expected_sum(height, width, heights), rtol=1e-5, atol=1e-3)
    # without flip: the recorder's own logits
    plain = graphonomy_tta_logits(Recorder(), [img], scales=[1.0], flip=False)[0].numpy()
    c = np.arange(1, 21)[:, None, None]
    expected = 30 * (c * (np.arange(width) / (width - 1))[None, None, :] + (np.arange(height) / (height - 1))[None, :, None])
    np.testing.assert_allclose(plain, expected, rtol=1e-5, atol=1e-4)


def test_parse_labels_by_hand_per_image_size():
    """Flip-averaged ramps: channel 18 (leftShoe) wins left of the centre, 19 (rightShoe) right of it.

    From _expected_sum: channel 18 ~ (20 - r) / 2, channel 19 ~ (19 + r) / 2, every other channel
    lower, so the label is 18 where r < 1/2 and 19 where r > 1/2 (even widths: no tie).
    """
    fake = Recorder()
    images = [_image(30, 44), _image(21, 16, seed=1), _image(30, 44, seed=2)]
    labels = graphonomy_parse(fake, images)
    assert [lab.shape for lab in labels] == [(30, 44), (21, 16), (30, 44)]
    assert all(lab.dtype == np.int64 for lab in labels)
    for lab, (h, w) in zip(labels, [(30, 44), (21, 16), (30, 44)]):
        expected = np.where(np.arange(w) < (w - 1) / 2, 18, 19)
        np.testing.assert_array_equal(lab, np.broadcast_to(expected, (h, w)))
    # same-size images went through together: 2 images + 2 mirrored copies, then 1 + 1
    assert [x.shape[0] for x in fake.inputs] == [4] * 6 + [2] * 6


def test_parse_real_network_matches_its_logits(loaded):
    """graphonomy_parse on the real network = argmax of graphonomy_tta_logits (one scale, tiny image)."""
    _, model, _ = loaded
    img = _image(24, 20, seed=4)
    labels = graphonomy_parse(model, [img], scales=[1.0])[0]
    logits = graphonomy_tta_logits(model, [img], scales=[1.0])
    np.testing.assert_array_equal(labels, logits[0].argmax(0).numpy())
    with torch.no_grad():
        x = torch.stack([graphonomy_normalize(img), graphonomy_normalize(np.ascontiguousarray(img[:, ::-1]))])
        y = model(x)
    swapped = y[1, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 14, 17, 16, 19, 18]].flip(-1)
    torch.testing.assert_close(logits[0], (y[0] + swapped) / 2, rtol=1e-4, atol=1e-4)
