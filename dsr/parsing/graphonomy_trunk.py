"""The DeepLab v3+ trunk of the Graphonomy parsers (:mod:`dsr.parsing.graphonomy`), inference only.

An aligned Xception at output stride 16 (entry flow with stride-4 low-level features of 256
channels, 16 middle blocks, exit flow with dilation 2) and the pieces the networks build ASPP and
the decoder from, with the attribute names of the released checkpoints. Shapes: (B, C, H, W).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class BatchNorm2dInference(nn.Module):
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
        self.depthwise_bn = BatchNorm2dInference(c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.pointwise_bn = BatchNorm2dInference(c_out)
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
            self.skipbn = BatchNorm2dInference(convs[-1][1])
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


class Xception(nn.Module):
    """Aligned Xception at output stride 16: (B,3,H,W) -> (B,2048,H/16,W/16), low-level (B,256,H/4,W/4).

    (Sizes round up: each stride-2 stage maps n to ceil(n / 2).)
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = BatchNorm2dInference(32)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2dInference(64)
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


class AsppPointwise(nn.Module):
    """ASPP 1x1 branch: conv (no bias) + BN + ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.atrous_convolution = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = BatchNorm2dInference(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.atrous_convolution(x)))


class Atrous(nn.Module):
    """A separable conv with ReLUs under the original's ``atrous_convolution`` name (ASPP, decoder)."""

    def __init__(self, c_in: int, c_out: int, dilation: int):
        super().__init__()
        self.atrous_convolution = _SeparableConv(c_in, c_out, dilation=dilation, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.atrous_convolution(x)


def upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
