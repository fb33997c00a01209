"""Self-Correction Human Parsing (SCHP, Li et al., TPAMI 2020), LIP model: network and test procedure.

Written from the published architecture (SCHP's ``networks/AugmentCE2P.py``): a ResNet-101 trunk
(3-conv stem, output stride 8: layer4 dilated by 2), a PSP context module (pooling to 1, 2, 3, 6
cells), an edge branch on layers 1-3, a decoder fusing the context with layer 1, and a fusion
head. Parameter and buffer names and shapes are those of the released checkpoint
(``exp-schp-201908261155-lip.pth``, keys stored with a ``module.`` prefix), so it loads directly.

InPlaceABN, re-expressed in plain PyTorch (:class:`ActivatedBatchNorm`, inference only): batch
norm with the running statistics whose scale is ``|weight| + eps`` (not ``weight``), followed by
an activation: none in the ResNet trunk (its ReLUs are separate modules), leaky ReLU with slope
0.01 in the PSP, edge, decoder and fusion modules. Its buffers are ``running_mean`` and
``running_var`` only (no ``num_batches_tracked``).

``SCHP.forward(x)``: x (B, 3, H, W) normalised BGR -> fusion logits (B, 20, h, w) at stride 4
(h = ceil(ceil(H / 2) / 2), 119 for 473). The parsing-branch and edge-branch logits of the
original (unused by its inference scripts) are not computed; their weights are kept.

``schp_parse`` is SCHP's test-time procedure, per image (``simple_extractor.py`` with the flip and
scale fusion of ``evaluate.py``):

1. the box of the whole image, centre ((W-1)/2, (H-1)/2), side max(W-1, H-1), is warped to
   473 x 473 by a similarity (``cv2.warpAffine``, bilinear, black border) of the BGR uint8 image;
2. /255, normalised by mean (0.406, 0.456, 0.485) and std (0.225, 0.224, 0.229) (BGR order);
3. per scale s: the input resized to floor(473 s) (bilinear, align_corners=True); with ``flip``
   the mirrored input too, whose logits get their left/right channels swapped (14<->15, 16<->17,
   18<->19) and are mirrored back, then averaged with the direct ones; the logits are upsampled
   to 473 x 473 (bilinear, align_corners=True) and averaged over the scales;
4. the 20 logit maps are warped back to the image with the inverse similarity (``cv2.warpAffine``,
   bilinear, border 0) and the label is their argmax.

Default: one scale (1.0), as both SCHP scripts; ``flip=False`` with one scale is exactly
``simple_extractor.py``. LIP's 20 labels are CIHP's, in the same order (see ``LIP_LABELS``).
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dsr.constants import GRAPHONOMY_FLIP_PERM

__all__ = [
    "SCHP_PARSERS",
    "SCHP_INPUT_SIZE",
    "SCHP_SCALES",
    "SCHP_MEAN_BGR",
    "SCHP_STD_BGR",
    "LIP_LABELS",
    "ActivatedBatchNorm",
    "SCHP",
    "build_schp",
    "schp_box",
    "schp_affine",
    "schp_normalize",
    "schp_parse",
]

SCHP_PARSERS = ("schp-lip",)
SCHP_INPUT_SIZE = 473  # LIP models: 473 x 473 network input
SCHP_SCALES = (1.0,)  # evaluate.py's default --multi-scales '1'; simple_extractor has no choice
SCHP_MEAN_BGR = (0.406, 0.456, 0.485)
SCHP_STD_BGR = (0.225, 0.224, 0.229)
# The LIP label list of SCHP's simple_extractor.py ('lip' settings); same order as CIHP's.
LIP_LABELS = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks",
    "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg",
    "Left-shoe", "Right-shoe",
)
NUM_CLASSES = len(LIP_LABELS)


class ActivatedBatchNorm(nn.Module):
    """InPlaceABN at inference: y = act((x - running_mean) / sqrt(running_var + eps) * (|weight| + eps) + bias).

    Args:
        num_features: C.
        activation: 'leaky_relu' (slope ``slope``) or 'none'.
    Shapes: x (B, C, H, W) -> (B, C, H, W). Always uses the running statistics (no training mode).
    """

    def __init__(self, num_features: int, activation: str = "leaky_relu", slope: float = 0.01, eps: float = 1e-5):
        super().__init__()
        if activation not in ("leaky_relu", "none"):
            raise ValueError(f"ActivatedBatchNorm: activation must be 'leaky_relu' or 'none', got {activation!r}")
        self.activation = activation
        self.slope = slope
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mul = torch.rsqrt(self.running_var + self.eps) * (self.weight.abs() + self.eps)
        y = (x - self.running_mean[:, None, None]) * mul[:, None, None] + self.bias[:, None, None]
        if self.activation == "leaky_relu":
            y = F.leaky_relu(y, self.slope)
        return y

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, activation={self.activation}, slope={self.slope}, eps={self.eps}"


def _abn(c: int) -> ActivatedBatchNorm:
    """InPlaceABN of the PSP / edge / decoder / fusion modules (leaky ReLU 0.01)."""
    return ActivatedBatchNorm(c, "leaky_relu")


def _bn(c: int) -> ActivatedBatchNorm:
    """InPlaceABN of the ResNet trunk (no activation)."""
    return ActivatedBatchNorm(c, "none")


def _conv_abn(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    """Keys '<0>.weight' (conv, no bias) and '<1>.*' (ABN with leaky ReLU)."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), _abn(cout))


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3 with stride / dilation, 1x1 x4), ReLU after each norm and the sum."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = _bn(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class PSPModule(nn.Module):
    """Pyramid pooling: adaptive average pools to 1, 2, 3, 6 cells, 1x1 conv + ABN each, upsampled
    (bilinear, align_corners=True) and concatenated with the input, then 3x3 conv + ABN."""

    def __init__(self, cin: int = 2048, cout: int = 512, sizes=(1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(cin, cout, 1, bias=False), _abn(cout)) for s in sizes)
        self.bottleneck = _conv_abn(cin + len(sizes) * cout, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        priors = [F.interpolate(st(x), size=(h, w), mode="bilinear", align_corners=True) for st in self.stages]
        return self.bottleneck(torch.cat(priors + [x], 1))


class EdgeModule(nn.Module):
    """Edge branch: 1x1 conv + ABN on layers 1, 2, 3 (256 channels each), the deeper two upsampled to
    layer 1's size; returns their concatenation (B, 768, h, w). ``conv4`` / ``conv5`` (the edge
    logits) belong to the checkpoint but do not feed the fusion, so they are not evaluated."""

    def __init__(self, cins=(256, 512, 1024), mid: int = 256, out: int = 2):
        super().__init__()
        self.conv1 = _conv_abn(cins[0], mid)
        self.conv2 = _conv_abn(cins[1], mid)
        self.conv3 = _conv_abn(cins[2], mid)
        self.conv4 = nn.Conv2d(mid, out, 3, padding=1, bias=True)
        self.conv5 = nn.Conv2d(out * 3, out, 1, bias=True)

    def forward(self, x1, x2, x3) -> torch.Tensor:
        h, w = x1.shape[2:]
        e1 = self.conv1(x1)
        e2 = F.interpolate(self.conv2(x2), size=(h, w), mode="bilinear", align_corners=True)
        e3 = F.interpolate(self.conv3(x3), size=(h, w), mode="bilinear", align_corners=True)
        return torch.cat([e1, e2, e3], 1)


class DecoderModule(nn.Module):
    """Parsing decoder: context (1x1 -> 256, upsampled to layer 1's size) + layer 1 (1x1 -> 48),
    two 1x1 conv + ABN -> features (B, 256, h, w). ``conv4`` (the parsing-branch logits) is kept
    for the checkpoint but not evaluated."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = _conv_abn(512, 256)
        self.conv2 = _conv_abn(256, 48)
        self.conv3 = nn.Sequential(nn.Conv2d(304, 256, 1, bias=False), _abn(256),
                                   nn.Conv2d(256, 256, 1, bias=False), _abn(256))
        self.conv4 = nn.Conv2d(256, num_classes, 1, bias=True)

    def forward(self, context, x1) -> torch.Tensor:
        h, w = x1.shape[2:]
        xt = F.interpolate(self.conv1(context), size=(h, w), mode="bilinear", align_corners=True)
        return self.conv3(torch.cat([xt, self.conv2(x1)], 1))


class SCHP(nn.Module):
    """SCHP's AugmentCE2P ResNet-101 (inference): x (B, 3, H, W) normalised BGR -> (B, 20, h, w) fusion logits."""

    def __init__(self, num_classes: int = NUM_CLASSES, layers=(3, 4, 23, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = _bn(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = _bn(128)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._cin = 128
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], dilation=2)
        self.context_encoding = PSPModule(2048, 512)
        self.edge = EdgeModule()
        self.decoder = DecoderModule(num_classes)
        # the original's spelling; index 2 is its Dropout2d(0.1) (identity at inference)
        self.fushion = nn.Sequential(nn.Conv2d(1024, 256, 1, bias=False), _abn(256), nn.Identity(),
                                     nn.Conv2d(256, num_classes, 1, bias=True))

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._cin != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self._cin, planes * 4, 1, stride=stride, bias=False), _bn(planes * 4))
        mods = [Bottleneck(self._cin, planes, stride, dilation, downsample)]
        self._cin = planes * 4
        mods += [Bottleneck(self._cin, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x1 = self.layer1(self.maxpool(x))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        parsing_fea = self.decoder(self.context_encoding(x4), x1)
        edge_fea = self.edge(x1, x2, x3)
        return self.fushion(torch.cat([parsing_fea, edge_fea], 1))


def build_schp(name: str = "schp-lip") -> SCHP:
    """Randomly initialised SCHP network of parser ``name`` (state-dict layout of its checkpoint)."""
    if name not in SCHP_PARSERS:
        raise ValueError(f"unknown SCHP parser {name!r}; known: {SCHP_PARSERS}")
    return SCHP(NUM_CLASSES)


# ----------------------------------------------------------------------------- test-time procedure
def schp_box(height: int, width: int, aspect: float = 1.0):
    """SCHP's box of the whole image: centre ((W-1)/2, (H-1)/2) and size (w, h) of the box
    [0, W-1] x [0, H-1] grown to the input's aspect ratio (width / height).

    Returns: centre (2,) float64 (x, y), size (2,) float64 (w, h).
    """
    w, h = float(width - 1), float(height - 1)
    centre = np.array([w * 0.5, h * 0.5])
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return centre, np.array([w, h])


def schp_affine(centre, size, out_size: int = SCHP_INPUT_SIZE, inverse: bool = False) -> np.ndarray:
    """(2, 3) similarity mapping the box (centre, width size[0]) onto an out x out input: the
    centre goes to ((out-1)/2, (out-1)/2) and the box width to out - 1 pixels (no rotation).
    ``inverse``: input pixels -> image pixels."""
    k = (out_size - 1) / float(size[0])
    c = (out_size - 1) * 0.5
    if inverse:
        return np.array([[1 / k, 0.0, centre[0] - c / k], [0.0, 1 / k, centre[1] - c / k]])
    return np.array([[k, 0.0, c - k * centre[0]], [0.0, k, c - k * centre[1]]])


def schp_normalize(img_rgb_uint8: np.ndarray, out_size: int = SCHP_INPUT_SIZE) -> torch.Tensor:
    """(H, W, 3) uint8 RGB image -> (3, out, out) float32 network input (steps 1-2 of the module
    docstring: BGR, whole-image box warped to out x out, /255, mean/std)."""
    img = np.asarray(img_rgb_uint8)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"schp_normalize: expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    centre, size = schp_box(img.shape[0], img.shape[1])
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    warped = cv2.warpAffine(bgr, schp_affine(centre, size, out_size), (out_size, out_size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    x = torch.from_numpy(warped).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(SCHP_MEAN_BGR)[:, None, None]
    std = torch.tensor(SCHP_STD_BGR)[:, None, None]
    return (x - mean) / std


def _fused_logits(model: nn.Module, x: torch.Tensor, scales: Sequence[float], flip: bool) -> torch.Tensor:
    """(B, 3, S, S) inputs -> (B, 20, S, S) logits averaged over scales (and the mirrored input)."""
    size = x.shape[-1]
    perm = torch.as_tensor(GRAPHONOMY_FLIP_PERM, device=x.device)
    acc = None
    for s in scales:
        xs = x
        if s != 1:
            side = int(math.floor(size * s))
            xs = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=True)
        b = xs.shape[0]
        out = model(torch.cat([xs, xs.flip(-1)]) if flip else xs)
        logits = out[:b]
        if flip:
            logits = (logits + out[b:][:, perm].flip(-1)) * 0.5
        logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=True)
        acc = logits if acc is None else acc + logits
    return acc / len(scales)


@torch.no_grad()
def schp_parse(model: nn.Module, images_rgb_uint8: Sequence[np.ndarray], scales: Sequence[float] | None = None,
               flip: bool = True) -> list[np.ndarray]:
    """SCHP's test-time procedure (module docstring) on a batch of images of any sizes.

    Args:
        model: an :class:`SCHP` in eval mode (its device and dtype are used).
        images_rgb_uint8: N arrays (H_i, W_i, 3) uint8 RGB.
        scales: input scales (default ``SCHP_SCALES`` = (1.0,)); flip: add the mirrored input.
    Returns:
        N label maps (H_i, W_i) int64 in 0..19 (CIHP order).
    """
    scales = tuple(SCHP_SCALES if scales is None else scales)
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"schp_parse: scales must be positive, got {scales}")
    if len(images_rgb_uint8) == 0:
        return []
    p = next(model.parameters())
    x = torch.stack([schp_normalize(im) for im in images_rgb_uint8]).to(device=p.device, dtype=p.dtype)
    logits = _fused_logits(model, x, scales, flip).float().permute(0, 2, 3, 1).cpu().numpy()  # (N, S, S, 20)
    out = []
    for im, lg in zip(images_rgb_uint8, logits):
        h, w = im.shape[:2]
        centre, size = schp_box(h, w)
        back = cv2.warpAffine(np.ascontiguousarray(lg), schp_affine(centre, size, inverse=True), (w, h),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out.append(np.argmax(back.reshape(h, w, -1), axis=2).astype(np.int64))
    return out
