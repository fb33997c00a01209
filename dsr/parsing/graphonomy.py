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

Layout: the trunk in :mod:`dsr.parsing.graphonomy_trunk`, the graph layers and both networks in
:mod:`dsr.parsing.graphonomy_nets`, the label graphs in :mod:`dsr.parsing.graphonomy_graph`; this
module holds the test-time procedure and re-exports the networks.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from dsr.constants import GRAPHONOMY_FLIP_PERM
from dsr.parsing.graphonomy_nets import (GRAPHONOMY_PARSERS, NUM_CIHP_CLASSES, GraphonomyTransfer,  # noqa: F401
                                         GraphonomyUniversal, build_graphonomy)
from dsr.parsing.graphonomy_trunk import upsample

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

# The demo's scales, in its order: the first one sets the size the others are resized to.
GRAPHONOMY_SCALES = (1.0, 0.5, 0.75, 1.25, 1.5, 1.75)


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
                logits = upsample(logits, (height, width))
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
