"""Graphonomy human parsers (Gong et al., CVPR 2019), inference only: images -> CIHP labels.

Two networks of the original repository (Gaoyiminggithub/Graphonomy), written anew with the
state-dict layout of their released checkpoints (keys and shapes after a ``module.`` prefix is
stripped; no ``num_batches_tracked``, which torch 0.4.0 checkpoints lack):

* ``"graphonomy"``: the network of the original demo ``exp/inference/inference.py``
  (``deeplab_xception_transfer_projection_savemem``, 20 CIHP classes, graph reasoning with hidden
  size 128 helped by a 7-class PASCAL-Person-Part source graph), weights ``inference.pth``;
* ``"graphonomy-universal"``: ``deeplab_xception_end2end_3d`` (weights ``universal_trained.pth``):
  the same trunk with three interacting graphs (PASCAL 7 source, CIHP 20 target, ATR 18 middle);
  we return its CIHP (target) branch.

Both share a DeepLab v3+ trunk on an aligned Xception at output stride 16: entry flow (stride 4
low-level features of 256 channels), 16 middle blocks, exit flow with dilation 2, ASPP (1x1 and
separable 3x3 at rates 6, 12, 18, plus image pooling), a decoder at stride 4 giving a
(B, 256, H/4, W/4) feature map that the graph layers read and write back into, a 1x1 classifier
and a bilinear (align_corners=True) upsampling to the input size.

``forward(x)``: x (B, 3, H, W) normalised as :func:`graphonomy_normalize` does (BGR, x * 2/255 - 1)
-> CIHP logits (B, 20, H, W), one scale, no flip; any B >= 1 and any H, W.
:func:`graphonomy_parse` is the demo's whole test-time procedure (scales 1, 0.5, 0.75, 1.25, 1.5,
1.75, each with a mirrored copy, summed, argmax).

Quirks of the original reproduced (they change outputs):
* Xception blocks whose first operation is a ReLU apply it in place, so their residual branch adds
  ReLU(input), not the input.
* In the demo network the third source-graph layer reuses ``source_graph_conv2``
  (``source_graph_conv3`` is stored but unused). In the universal network every graph level reuses
  the first layer of its graph (``*_graph_conv2/3`` unused) and the ATR graph runs through the CIHP
  graph's ``target_graph_conv1`` (``middle_graph_conv1..3`` unused).
* The inter-graph transfer layers (``transpose_graph*``) store an ``adj`` parameter, but the
  original forward passes are always given the fixed similarity matrices, which are used instead.
  In the universal checkpoint ``transpose_graph_middle2target.adj`` has shape (7, 18) although it
  maps ATR to CIHP (a construction slip of the original; it is unused anyway).

The original network itself runs at batch size 1 in eval mode (its only batch-size-1 failure is
the pooled-feature BatchNorm in train mode, and its demo indexes the flipped copy as the second
batch element); these modules are inference-only (BatchNorm always uses its running statistics)
and accept any batch size.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from dsr.constants import GRAPHONOMY_FLIP_PERM
from dsr.parsing.graphonomy_graph import (
    ATR_NEIGHBOURS,
    CIHP_NEIGHBOURS,
    CIHP_TO_ATR_SIMILARITY,
    CIHP_TO_PASCAL_SIMILARITY,
    PASCAL_NEIGHBOURS,
    PASCAL_TO_ATR_SIMILARITY,
    normalized_adjacency,
)

__all__ = [
    "GRAPHONOMY_PARSERS",
    "GRAPHONOMY_SCALES",
    "GraphonomyTransfer",
    "GraphonomyUniversal",
    "build_graphonomy",
    "graphonomy_normalize",
    "graphonomy_tta_logits",
    "graphonomy_parse",
]

GRAPHONOMY_PARSERS = ("graphonomy", "graphonomy-universal")
# The demo's scales, in its order: the first one sets the size the others are resized to.
GRAPHONOMY_SCALES = (1.0, 0.5, 0.75, 1.25, 1.5, 1.75)
NUM_CIHP_CLASSES = 20
_HIDDEN = 128  # graph node feature size
_DECODER_CHANNELS = 256


# ============================================================================ trunk building blocks
class _BatchNorm2d(nn.Module):
    """Inference BatchNorm (eps 1e-5) with exactly the checkpoint's entries.

    Parameters ``weight``, ``bias`` (C,); buffers ``running_mean``, ``running_var`` (C,). No
    ``num_batches_tracked``. Always normalises with the running statistics.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class _SeparableConv(nn.Module):
    """3x3 depthwise conv + BN, 1x1 pointwise conv + BN (no biases), zero padding = dilation.

    ``relu=True`` adds a ReLU after each BN (the original's ASPP/decoder/exit variant); without it
    the unit is linear (the variant inside the Xception blocks). (B, C_in, H, W) -> (B, C_out, H', W').
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1, relu: bool = False):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride, dilation, dilation, groups=c_in, bias=False)
        self.depthwise_bn = _BatchNorm2d(c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.pointwise_bn = _BatchNorm2d(c_out)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_bn(self.depthwise(x))
        if self.relu:
            x = F.relu(x)
        x = self.pointwise_bn(self.pointwise(x))
        return F.relu(x) if self.relu else x


def _indexed(modules: Sequence[nn.Module], first: int) -> nn.Sequential:
    """Sequential whose children are named first, first + 2, ... (the original interleaves ReLUs)."""
    return nn.Sequential(OrderedDict((str(first + 2 * i), m) for i, m in enumerate(modules)))


class _XceptionBlock(nn.Module):
    """Residual block of separable convolutions, each preceded by a ReLU.

    ``convs``: (c_in, c_out, stride) per separable conv; ``skip_stride``: a 1x1 conv + BN on the
    residual branch (None: identity). With ``start_with_relu=False`` the first conv gets the raw
    input. With ``low_level=True`` (the original's ``block2``) the last conv lives in
    ``block2_lastconv`` and the output before it is returned as well.
    forward: (B, C_in, H, W) -> (B, C_out, H/s, W/s) [, low-level (B, C_out, H, W)].
    """

    def __init__(self, convs: Sequence[tuple[int, int, int]], dilation: int = 1, skip_stride: Optional[int] = None,
                 start_with_relu: bool = True, low_level: bool = False):
        super().__init__()
        units = [_SeparableConv(ci, co, s, dilation) for ci, co, s in convs]
        first = 1 if start_with_relu else 0
        if low_level:
            self.rep = _indexed(units[:-1], first)
            self.block2_lastconv = _indexed(units[-1:], 1)
        else:
            self.rep = _indexed(units, first)
        if skip_stride is not None:
            self.skip = nn.Conv2d(convs[0][0], convs[-1][1], 1, skip_stride, bias=False)
            self.skipbn = _BatchNorm2d(convs[-1][1])
        else:
            self.skip = None
        self.start_with_relu = start_with_relu
        self.low_level = low_level

    def forward(self, x: torch.Tensor):
        if self.start_with_relu:
            x = F.relu(x)  # in place in the original: the residual branch sees the ReLU too
        residual = x if self.skip is None else self.skipbn(self.skip(x))
        for i, unit in enumerate(self.rep):
            x = unit(F.relu(x) if i > 0 else x)
        if not self.low_level:
            return x + residual
        low = x
        return self.block2_lastconv[0](F.relu(x)) + residual, low


class _Xception(nn.Module):
    """Aligned Xception at output stride 16: (B,3,H,W) -> (B,2048,H/16,W/16), low-level (B,256,H/4,W/4).

    (Sizes round up: each stride-2 stage maps n to ceil(n / 2).)
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = _BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.bn2 = _BatchNorm2d(64)
        self.block1 = _XceptionBlock([(64, 128, 1), (128, 128, 1), (128, 128, 2)], skip_stride=2,
                                     start_with_relu=False)
        self.block2 = _XceptionBlock([(128, 256, 1), (256, 256, 1), (256, 256, 2)], skip_stride=2, low_level=True)
        self.block3 = _XceptionBlock([(256, 728, 1), (728, 728, 1), (728, 728, 2)], skip_stride=2)
        for k in range(4, 20):  # middle flow
            setattr(self, f"block{k}", _XceptionBlock([(728, 728, 1)] * 3))
        self.block20 = _XceptionBlock([(728, 728, 1), (728, 1024, 1), (1024, 1024, 1)], skip_stride=1)
        self.conv3 = _SeparableConv(1024, 1536, dilation=2, relu=True)
        self.conv4 = _SeparableConv(1536, 1536, dilation=2, relu=True)
        self.conv5 = _SeparableConv(1536, 2048, dilation=2, relu=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.block1(x)
        x, low = self.block2(x)
        for k in range(3, 21):
            x = getattr(self, f"block{k}")(x)
        return self.conv5(self.conv4(self.conv3(x))), low


class _AsppPointwise(nn.Module):
    """ASPP 1x1 branch: conv (no bias) + BN + ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.atrous_convolution = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = _BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.atrous_convolution(x)))


class _Atrous(nn.Module):
    """A separable conv with ReLUs under the original's ``atrous_convolution`` name (ASPP, decoder)."""

    def __init__(self, c_in: int, c_out: int, dilation: int):
        super().__init__()
        self.atrous_convolution = _SeparableConv(c_in, c_out, dilation=dilation, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.atrous_convolution(x)


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


# ============================================================================ graph building blocks
def _xavier(*shape: int) -> nn.Parameter:
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(*shape)))


class _FeatureToGraph(nn.Module):
    """Pixels -> graph nodes: soft-assign pixels to nodes, pool projected features.

    ``pre_fea`` (C, N), ``weight`` (C, hidden). (B, C, H, W) -> (B, N, hidden).
    """

    def __init__(self, channels: int, nodes: int, hidden: int = _HIDDEN):
        super().__init__()
        self.pre_fea = _xavier(channels, nodes)
        self.weight = _xavier(channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        assign = torch.softmax(pixels @ self.pre_fea, dim=-1)  # (B, HW, N)
        return F.relu(assign.transpose(1, 2) @ (pixels @ self.weight))


class _GraphConv(nn.Module):
    """relu(adj @ (g @ weight)); without ``adj`` a node-wise linear layer. ``weight`` (in, out).

    g (B, N, in), adj (N, N) -> (B, N, out).
    """

    def __init__(self, f_in: int, f_out: int):
        super().__init__()
        self.weight = _xavier(f_in, f_out)

    def forward(self, g: torch.Tensor, adj: Optional[torch.Tensor] = None) -> torch.Tensor:
        g = g @ self.weight
        return F.relu(g if adj is None else adj @ g)


class _GraphTransfer(nn.Module):
    """Carries node features from one label graph to another: relu(T @ (g @ weight)).

    ``T`` (N_to, N_from) is the row-softmax of relu(similarity), given by the caller (the
    original's forward always passes it). ``weight`` (hidden, hidden); ``adj`` (adj_shape) is
    stored by the checkpoint but unused.
    """

    def __init__(self, adj_shape: tuple[int, int], hidden: int = _HIDDEN):
        super().__init__()
        self.weight = _xavier(hidden, hidden)
        self.adj = _xavier(*adj_shape)

    def forward(self, g: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
        return F.relu(transfer @ (g @ self.weight))


class _GraphToFeature(nn.Module):
    """Graph nodes -> pixels: each pixel takes a softmax mix (over nodes) of projected node features.

    ``node_fea_for_res`` (C, 1), ``node_fea_for_hidden`` (hidden, 1), ``weight`` (hidden, C).
    g (B, N, hidden), x (B, C, H, W) -> (B, C, H, W), non-negative.
    """

    def __init__(self, channels: int, hidden: int = _HIDDEN):
        super().__init__()
        self.node_fea_for_res = _xavier(channels, 1)
        self.node_fea_for_hidden = _xavier(hidden, 1)
        self.weight = _xavier(hidden, channels)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pixel_term = x.flatten(2).transpose(1, 2) @ self.node_fea_for_res  # (B, HW, 1)
        node_term = (g @ self.node_fea_for_hidden).transpose(1, 2)  # (B, 1, N)
        # the pixel term is constant over nodes, so it cancels in the softmax up to rounding; it is
        # kept because the original adds it
        mix = torch.softmax(pixel_term + node_term, dim=-1)  # (B, HW, N)
        out = mix @ (g @ self.weight)  # (B, HW, C)
        return F.relu(out.transpose(1, 2).reshape(b, c, h, w))


def _similarity_transfer(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Attention of target nodes over source nodes (cosine similarity, softmax), applied to source.

    source (B, Ns, F), target (B, Nt, F) -> (B, Nt, F).
    """
    sim = F.normalize(target, p=2, dim=-1) @ F.normalize(source, p=2, dim=-1).transpose(1, 2)
    return torch.softmax(sim, dim=-1) @ source


def _skip_conv(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU())


def _const(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float64)).float()


def _transfer_weights(similarity: np.ndarray) -> torch.Tensor:
    """The original's transfer normalisation of an (N_to, N_from) matrix: row softmax of its ReLU."""
    return torch.softmax(F.relu(_const(similarity)), dim=-1)


# ============================================================================ networks
class _GraphonomyBase(nn.Module):
    """DeepLab v3+ trunk (Xception, ASPP, decoder) + the CIHP classifier ``semantic``."""

    def __init__(self):
        super().__init__()
        self.xception_features = _Xception()
        self.aspp1 = _AsppPointwise(2048, 256)
        self.aspp2 = _Atrous(2048, 256, 6)
        self.aspp3 = _Atrous(2048, 256, 12)
        self.aspp4 = _Atrous(2048, 256, 18)
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2048, 256, 1, bias=False),
                                             _BatchNorm2d(256), nn.ReLU())
        self.concat_projection_conv1 = nn.Conv2d(1280, 256, 1, bias=False)
        self.concat_projection_bn1 = _BatchNorm2d(256)
        self.feature_projection_conv1 = nn.Conv2d(256, 48, 1, bias=False)
        self.feature_projection_bn1 = _BatchNorm2d(48)
        self.decoder = nn.Sequential(_Atrous(304, _DECODER_CHANNELS, 1), _Atrous(256, _DECODER_CHANNELS, 1))
        self.semantic = nn.Conv2d(_DECODER_CHANNELS, NUM_CIHP_CLASSES, 1)
        self.register_buffer("adj_cihp", _const(normalized_adjacency(CIHP_NEIGHBOURS)), persistent=False)
        self.register_buffer("adj_pascal", _const(normalized_adjacency(PASCAL_NEIGHBOURS)), persistent=False)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> decoder features (B, 256, ceil(H/4), ceil(W/4))."""
        x, low = self.xception_features(x)
        pooled = self.global_avg_pool(x).expand(-1, -1, *x.shape[2:])
        x = torch.cat((self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled), dim=1)
        x = F.relu(self.concat_projection_bn1(self.concat_projection_conv1(x)))
        x = _upsample(x, low.shape[2:])
        low = F.relu(self.feature_projection_bn1(self.feature_projection_conv1(low)))
        return self.decoder(torch.cat((x, low), dim=1))

    def classify(self, graph_features: torch.Tensor, skip: nn.Module, x: torch.Tensor, size) -> torch.Tensor:
        """skip(x) + graph features -> CIHP logits upsampled to ``size``: (B, 20, *size)."""
        return _upsample(self.semantic(skip(x) + graph_features), size)


class GraphonomyTransfer(_GraphonomyBase):
    """The demo network (``deeplab_xception_transfer_projection_savemem``, ``inference.pth``).

    A PASCAL source graph (7 nodes) feeds a CIHP target graph (20 nodes) at each of its three
    levels, through a similarity-attention transfer and a fixed word-similarity transfer.
    forward: (B, 3, H, W) normalised -> CIHP logits (B, 20, H, W).
    """

    def __init__(self):
        super().__init__()
        self.source_featuremap_2_graph = _FeatureToGraph(_DECODER_CHANNELS, 7)
        self.source_graph_conv1 = _GraphConv(_HIDDEN, _HIDDEN)
        self.source_graph_conv2 = _GraphConv(_HIDDEN, _HIDDEN)
        self.source_graph_conv3 = _GraphConv(_HIDDEN, _HIDDEN)  # stored, unused (see module doc)
        self.transpose_graph = _GraphTransfer((NUM_CIHP_CLASSES, 7))
        self.fc_graph = _GraphConv(3 * _HIDDEN, _HIDDEN)
        self.target_featuremap_2_graph = _FeatureToGraph(_DECODER_CHANNELS, NUM_CIHP_CLASSES)
        self.target_graph_conv1 = _GraphConv(_HIDDEN, _HIDDEN)
        self.target_graph_conv2 = _GraphConv(_HIDDEN, _HIDDEN)
        self.target_graph_conv3 = _GraphConv(_HIDDEN, _HIDDEN)
        self.target_graph_2_fea = _GraphToFeature(_DECODER_CHANNELS)
        self.target_skip_conv = _skip_conv(_DECODER_CHANNELS)
        self.register_buffer("transfer_pascal_to_cihp", _transfer_weights(CIHP_TO_PASCAL_SIMILARITY.T),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = self.decode(x)
        s = self.source_featuremap_2_graph(x)
        s1 = self.source_graph_conv1(s, self.adj_pascal)
        s2 = self.source_graph_conv2(s1, self.adj_pascal)
        s3 = self.source_graph_conv2(s2, self.adj_pascal)  # the original reuses conv2 here
        t = self.target_featuremap_2_graph(x)
        for source, layer in ((s1, self.target_graph_conv1), (s2, self.target_graph_conv2),
                              (s3, self.target_graph_conv3)):
            moved = self.transpose_graph(source, self.transfer_pascal_to_cihp)
            t = self.fc_graph(torch.cat((t, _similarity_transfer(source, t), moved), dim=-1))
            t = layer(t, self.adj_cihp)
        return self.classify(self.target_graph_2_fea(t, x), self.target_skip_conv, x, size)


class GraphonomyUniversal(_GraphonomyBase):
    """The universal network (``deeplab_xception_end2end_3d``, ``universal_trained.pth``), CIHP branch.

    Three graphs (PASCAL source 7, CIHP target 20, ATR middle 18) exchange node features at each of
    three levels; the CIHP graph then goes back to pixels. The PASCAL and ATR classifiers
    (``source_semantic``, ``middle_semantic``) and their graph-to-pixel layers are stored, unused.
    forward: (B, 3, H, W) normalised -> CIHP logits (B, 20, H, W).
    """

    def __init__(self):
        super().__init__()
        n_s, n_t, n_m = 7, NUM_CIHP_CLASSES, 18
        for name, nodes in (("source", n_s), ("target", n_t), ("middle", n_m)):
            setattr(self, f"{name}_featuremap_2_graph", _FeatureToGraph(_DECODER_CHANNELS, nodes))
            for k in (1, 2, 3):
                setattr(self, f"{name}_graph_conv{k}", _GraphConv(_HIDDEN, _HIDDEN))
            setattr(self, f"{name}_graph_2_fea", _GraphToFeature(_DECODER_CHANNELS))
            setattr(self, f"{name}_skip_conv", _skip_conv(_DECODER_CHANNELS))
            setattr(self, f"fc_graph_{name}", _GraphConv(5 * _HIDDEN, _HIDDEN))
        self.source_semantic = nn.Conv2d(_DECODER_CHANNELS, n_s, 1)
        self.middle_semantic = nn.Conv2d(_DECODER_CHANNELS, n_m, 1)
        self.transpose_graph_source2target = _GraphTransfer((n_t, n_s))
        self.transpose_graph_target2source = _GraphTransfer((n_s, n_t))
        self.transpose_graph_middle2source = _GraphTransfer((n_s, n_m))
        self.transpose_graph_middle2target = _GraphTransfer((n_s, n_m))  # sic: (7, 18) in the original
        self.transpose_graph_source2middle = _GraphTransfer((n_m, n_s))
        self.transpose_graph_target2middle = _GraphTransfer((n_m, n_t))
        self.register_buffer("adj_atr", _const(normalized_adjacency(ATR_NEIGHBOURS)), persistent=False)
        for name, similarity in (("source2target", CIHP_TO_PASCAL_SIMILARITY.T),
                                 ("target2source", CIHP_TO_PASCAL_SIMILARITY),
                                 ("source2middle", PASCAL_TO_ATR_SIMILARITY.T),
                                 ("middle2source", PASCAL_TO_ATR_SIMILARITY),
                                 ("target2middle", CIHP_TO_ATR_SIMILARITY.T),
                                 ("middle2target", CIHP_TO_ATR_SIMILARITY)):
            self.register_buffer(f"transfer_{name}", _transfer_weights(similarity), persistent=False)

    def _mix(self, own: torch.Tensor, fc: _GraphConv, *others: tuple[torch.Tensor, str]) -> torch.Tensor:
        """fc(cat(own, [similarity transfer, fixed transfer] of each other graph))."""
        parts = [own]
        for other, direction in others:
            parts.append(_similarity_transfer(other, own))
            parts.append(getattr(self, f"transpose_graph_{direction}")(other, getattr(self, f"transfer_{direction}")))
        return fc(torch.cat(parts, dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = self.decode(x)
        s = self.source_featuremap_2_graph(x)
        t = self.target_featuremap_2_graph(x)
        m = self.middle_featuremap_2_graph(x)
        for level in range(3):
            # every level reuses each graph's first layer; ATR runs through the CIHP layer (original)
            s = self.source_graph_conv1(s, self.adj_pascal)
            t = self.target_graph_conv1(t, self.adj_cihp)
            m = self.target_graph_conv1(m, self.adj_atr)
            t_next = self._mix(t, self.fc_graph_target, (s, "source2target"), (m, "middle2target"))
            if level < 2:  # the last level's PASCAL and ATR updates do not reach the CIHP output
                s, m = (self._mix(s, self.fc_graph_source, (t, "target2source"), (m, "middle2source")),
                        self._mix(m, self.fc_graph_middle, (s, "source2middle"), (t, "target2middle")))
            t = t_next
        return self.classify(self.target_graph_2_fea(t, x), self.target_skip_conv, x, size)


def build_graphonomy(name: str) -> nn.Module:
    """Randomly initialised Graphonomy parser ``name`` (one of GRAPHONOMY_PARSERS), in eval mode.

    Its ``state_dict()`` has the keys and shapes of the released checkpoint (``inference.pth`` /
    ``universal_trained.pth``) with any ``module.`` prefix stripped; BatchNorm running statistics are
    buffers, everything else parameters; no ``num_batches_tracked``.
    """
    if name == "graphonomy":
        model = GraphonomyTransfer()
    elif name == "graphonomy-universal":
        model = GraphonomyUniversal()
    else:
        raise ValueError(f"unknown Graphonomy parser {name!r}; expected one of {GRAPHONOMY_PARSERS}")
    return model.eval()


# ============================================================================ test-time procedure
def _rgb_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.dtype} array of shape {img.shape}")
    return img


def graphonomy_normalize(img_rgb_uint8: np.ndarray) -> torch.Tensor:
    """The demo's input transform: (H, W, 3) RGB uint8 -> (3, H, W) float32 BGR in [-1, 1] (x*2/255 - 1)."""
    x = _rgb_uint8(img_rgb_uint8).astype(np.float32) * 2.0 / 255.0 - 1.0
    return torch.from_numpy(np.ascontiguousarray(x[:, :, ::-1].transpose(2, 0, 1)))


def _scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The demo's resized (width, height): int() of the scaled sizes."""
    w, h = int(width * scale), int(height * scale)
    if w < 1 or h < 1:
        raise ValueError(f"scale {scale} turns a {width}x{height} image into {w}x{h} pixels")
    return w, h


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def graphonomy_tta_logits(model: nn.Module, images_rgb_uint8: Sequence[np.ndarray],
                          scales: Optional[Sequence[float]] = None, flip: bool = True) -> torch.Tensor:
    """Summed test-time logits of same-size images, as the demo computes them (before its argmax).

    For each scale s (default :data:`GRAPHONOMY_SCALES`): each image is resized with PIL bilinear
    to (int(W*s), int(H*s)), mirrored left-right when ``flip``, normalised, and the batch of
    originals and mirrored copies goes through ``model`` (-> (2N, 20, h, w)). A mirrored copy's
    logits get their left/right channels swapped (14<->15, 16<->17, 18<->19) and are mirrored back,
    then averaged with the original's. The per-scale maps are resized to (H, W) (bilinear,
    align_corners=True; a map already of that size, as at scale 1, is left as it is) and summed in
    the order of ``scales``. (The demo resizes to the size of its first scale, which is the image's
    own for the default scales; with other ``scales`` we still return the image's size.) Runs
    without gradients on the model's device.

    images_rgb_uint8: N arrays (H, W, 3) uint8 RGB, all the same size -> (N, 20, H, W) float32 on
    the model's device.
    """
    scales = GRAPHONOMY_SCALES if scales is None else tuple(scales)
    if not scales:
        raise ValueError("need at least one scale")
    if not images_rgb_uint8:
        raise ValueError("need at least one image")
    images = [_rgb_uint8(img) for img in images_rgb_uint8]
    height, width = images[0].shape[:2]
    if any(img.shape[:2] != (height, width) for img in images):
        raise ValueError("graphonomy_tta_logits needs images of one size; graphonomy_parse groups them")
    device = _model_device(model)
    pil_images = [Image.fromarray(img) for img in images]
    n = len(pil_images)
    total = None
    with torch.inference_mode():
        for scale in scales:
            size = _scaled_size(width, height, scale)
            resized = [np.asarray(img.resize(size, Image.Resampling.BILINEAR)) for img in pil_images]
            if flip:
                resized += [np.ascontiguousarray(img[:, ::-1]) for img in resized]
            batch = torch.stack([graphonomy_normalize(img) for img in resized]).to(device)
            logits = model(batch)
            if flip:
                mirrored = logits[n:, GRAPHONOMY_FLIP_PERM].flip(-1)
                logits = (logits[:n] + mirrored) / 2
            if logits.shape[2:] != (height, width):
                logits = _upsample(logits, (height, width))
            total = logits if total is None else total + logits
    return total


def graphonomy_parse(model: nn.Module, images_rgb_uint8: Sequence[np.ndarray],
                     scales: Optional[Sequence[float]] = None, flip: bool = True) -> list[np.ndarray]:
    """CIHP labels of each image with the demo's full test-time procedure (:func:`graphonomy_tta_logits`).

    Images of the same size are run as one batch. images_rgb_uint8: (H_i, W_i, 3) uint8 RGB each
    -> list of (H_i, W_i) int64 label maps (0..19), in input order.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images_rgb_uint8):
        groups.setdefault(tuple(np.asarray(img).shape[:2]), []).append(i)
    labels: list[Optional[np.ndarray]] = [None] * len(images_rgb_uint8)
    for indices in groups.values():
        logits = graphonomy_tta_logits(model, [images_rgb_uint8[i] for i in indices], scales, flip)
        for i, lab in zip(indices, logits.argmax(dim=1).cpu().numpy().astype(np.int64)):
            labels[i] = lab
    return labels
