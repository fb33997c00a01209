"""Graphonomy's two networks (:mod:`dsr.parsing.graphonomy` describes them and their quirks):
the graph layers, :class:`GraphonomyTransfer` (``inference.pth``), :class:`GraphonomyUniversal`
(``universal_trained.pth``) and :func:`build_graphonomy`.

``forward(x)``: x (B, 3, H, W) normalised BGR in [-1, 1] -> CIHP logits (B, 20, H, W).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dsr.parsing.graphonomy_graph import (
    ATR_NEIGHBOURS,
    CIHP_NEIGHBOURS,
    CIHP_TO_ATR_SIMILARITY,
    CIHP_TO_PASCAL_SIMILARITY,
    PASCAL_NEIGHBOURS,
    PASCAL_TO_ATR_SIMILARITY,
    normalized_adjacency,
)
from dsr.parsing.graphonomy_trunk import AsppPointwise, Atrous, BatchNorm2dInference, Xception, upsample

GRAPHONOMY_PARSERS = ("graphonomy", "graphonomy-universal")
NUM_CIHP_CLASSES = 20
_HIDDEN = 128  # graph node feature size
_DECODER_CHANNELS = 256


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
        self.xception_features = Xception()
        self.aspp1 = AsppPointwise(2048, 256)
        self.aspp2 = Atrous(2048, 256, 6)
        self.aspp3 = Atrous(2048, 256, 12)
        self.aspp4 = Atrous(2048, 256, 18)
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2048, 256, 1, bias=False),
                                             BatchNorm2dInference(256), nn.ReLU())
        self.concat_projection_conv1 = nn.Conv2d(1280, 256, 1, bias=False)
        self.concat_projection_bn1 = BatchNorm2dInference(256)
        self.feature_projection_conv1 = nn.Conv2d(256, 48, 1, bias=False)
        self.feature_projection_bn1 = BatchNorm2dInference(48)
        self.decoder = nn.Sequential(Atrous(304, _DECODER_CHANNELS, 1), Atrous(256, _DECODER_CHANNELS, 1))
        self.semantic = nn.Conv2d(_DECODER_CHANNELS, NUM_CIHP_CLASSES, 1)
        self.register_buffer("adj_cihp", _const(normalized_adjacency(CIHP_NEIGHBOURS)), persistent=False)
        self.register_buffer("adj_pascal", _const(normalized_adjacency(PASCAL_NEIGHBOURS)), persistent=False)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> decoder features (B, 256, ceil(H/4), ceil(W/4))."""
        x, low = self.xception_features(x)
        pooled = self.global_avg_pool(x).expand(-1, -1, *x.shape[2:])
        x = torch.cat((self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled), dim=1)
        x = F.relu(self.concat_projection_bn1(self.concat_projection_conv1(x)))
        x = upsample(x, low.shape[2:])
        low = F.relu(self.feature_projection_bn1(self.feature_projection_conv1(low)))
        return self.decoder(torch.cat((x, low), dim=1))

    def classify(self, graph_features: torch.Tensor, skip: nn.Module, x: torch.Tensor, size) -> torch.Tensor:
        """skip(x) + graph features -> CIHP logits upsampled to ``size``: (B, 20, *size)."""
        return upsample(self.semantic(skip(x) + graph_features), size)


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
