"""Graphonomy (CIHP, 20 labels) pseudo ground truth -> DSR targets (reference §3.1, §3.2).

All functions are pure numpy and work on one image:

* ``decode_colour_mask(rgb)``: (H, W, 3) uint8 RGB colour mask -> (H, W) int64 labels 0..19 by
  exact palette match; any other colour (e.g. blended by bilinear warping) -> 0 (background).
* ``palette_index(colours, bgr)``: the same match as (H, W) uint8 labels, 255 for other colours.
* ``swap_lr_labels(labels)``: leftArm<->rightArm, leftLeg<->rightLeg, leftShoe<->rightShoe
  (the optional fix ``DSR.FLIP_SWAP_LR_MASKS`` for flipped items, §3.9).
* ``keypoint_box`` / ``remove_background``: zero the mask outside the box of the confident
  keypoints (conf > 0.3) grown by 30 px, clipped to the crop, with the original's arithmetic
  (§3.2 step 2).
* ``dsr_mc_target(labels)``: binary minimal-clothing mask (H, W) float32 and the (5,) valid
  vector in the order leftShoe, rightShoe, leftArm, rightArm, face (§3.2 step 3).
* ``mc_distance_transform(mask)``: (H, W) float32 distance (pixels) to the nearest MC pixel,
  only needed by the ``DistM`` loss.
* ``merge_dsr_c_labels(labels)``: (H, W) int64 in 0..7 (the 8 DSR-C groups of §3.2 step 4).
* ``dsr_c_class_weights(merged, counted=None)``: (8,) float32 class weights of §3.2.
* ``encode_labels(labels)``: (H, W) labels -> (H, W, 3) uint8 RGB palette image (for writers).
* ``mask_path(root, imgname)``: ``<root>/grph_sequences/<imgname with its extension -> .png>``.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

from dsr.constants import (
    BG_REMOVAL_CONF,
    BG_REMOVAL_MARGIN,
    DSR_C_GROUPS,
    DSR_C_MERGE,
    DSR_C_MIN_PIXELS,
    DSR_MC_LABELS,
    DSR_MC_MIN_PIXELS,
    GRAPHONOMY_FLIP_PERM,
    GRAPHONOMY_PALETTE,
)

__all__ = [
    "decode_colour_mask",
    "decode_colour_labels",
    "palette_index",
    "encode_labels",
    "swap_lr_labels",
    "keypoint_box",
    "remove_background",
    "dsr_mc_target",
    "mc_distance_transform",
    "merge_dsr_c_labels",
    "dsr_c_class_weights",
    "dsr_targets",
    "mask_path",
    "NoConfidentKeypointsError",
]

NUM_LABELS = len(GRAPHONOMY_PALETTE)  # 20
NUM_C_CLASSES = len(DSR_C_GROUPS)  # 8

_PALETTE_CODES = (
    GRAPHONOMY_PALETTE[:, 0].astype(np.int64) << 16
    | GRAPHONOMY_PALETTE[:, 1].astype(np.int64) << 8
    | GRAPHONOMY_PALETTE[:, 2].astype(np.int64)
)
_UNKNOWN = 255
_CODE_DTYPE = np.dtype("<u4")  # a BGRA pixel read as R << 16 | G << 8 | B (+ alpha << 24)
_CODE_TABLE: np.ndarray | None = None  # (2^24,) uint8: label of each 24-bit RGB code, 255 = no palette colour


def _code_table() -> np.ndarray:
    """The colour -> label table (16 MB, built on first use in each process): one gather per pixel
    instead of a search among the 20 palette codes (~6x faster on a crop)."""
    global _CODE_TABLE
    if _CODE_TABLE is None:
        table = np.full(1 << 24, _UNKNOWN, dtype=np.uint8)
        table[_PALETTE_CODES] = np.arange(NUM_LABELS, dtype=np.uint8)
        _CODE_TABLE = table
    return _CODE_TABLE


class NoConfidentKeypointsError(ValueError):
    """No keypoint has confidence above the background-removal threshold."""


def decode_colour_mask(rgb: np.ndarray, return_known: bool = False):
    """Exact-colour decode of a Graphonomy colour mask.

    Args:
        rgb: (H, W, 3) uint8, RGB channel order.
        return_known: also return the (H, W) bool map of pixels whose colour is a palette colour.
    Returns:
        labels (H, W) int64 in 0..19 (unknown colours -> 0) [, known (H, W) bool].
    """
    labels, known = decode_colour_labels(rgb)
    labels = labels.astype(np.int64)
    return (labels, known) if return_known else labels


def decode_colour_labels(rgb: np.ndarray):
    """``decode_colour_mask(rgb, return_known=True)`` with the labels as uint8 (the loader's form)."""
    found = palette_index(rgb)
    known = found != _UNKNOWN
    return np.where(known, found, np.uint8(0)), known


def palette_index(colours: np.ndarray, bgr: bool = False) -> np.ndarray:
    """(H, W) uint8: the label 0..19 of each pixel of an (H, W, 3) uint8 colour mask (RGB order, or
    BGR with ``bgr``) whose colour is a palette colour, else 255.

    Each pixel is widened to 4 bytes B, G, R, 0 (one ``cv2.cvtColor`` to BGRA, the alpha cleared by
    the mask), read as a little-endian uint32 = R << 16 | G << 8 | B, and looked up in the 2^24
    table: four passes over the crop instead of the ten of shifting int32 channels."""
    colours = np.asarray(colours)
    if colours.ndim != 3 or colours.shape[2] != 3:
        raise ValueError(f"decode_colour_mask: expected an (H, W, 3) RGB array, got shape {colours.shape}")
    if colours.dtype != np.uint8:
        raise ValueError(f"decode_colour_mask: expected uint8 colours, got {colours.dtype}")
    if colours.size == 0:
        return np.full(colours.shape[:2], _UNKNOWN, dtype=np.uint8)
    if colours.strides[2] != 1 or colours.strides[1] != 3 or colours.strides[0] <= 0:  # cv2: rows of packed pixels
        colours = np.ascontiguousarray(colours)
    bgra = cv2.cvtColor(colours, cv2.COLOR_BGR2BGRA if bgr else cv2.COLOR_RGB2BGRA)
    codes = bgra.view(_CODE_DTYPE)[..., 0]
    np.bitwise_and(codes, 0xFFFFFF, out=codes)
    return np.take(_code_table(), codes)


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) int labels 0..19 -> (H, W, 3) uint8 RGB palette image (exact colours)."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= NUM_LABELS:
        raise ValueError(f"encode_labels: labels must lie in 0..{NUM_LABELS - 1}")
    return GRAPHONOMY_PALETTE[labels]


def swap_lr_labels(labels: np.ndarray) -> np.ndarray:
    """Swap Graphonomy left/right labels (14<->15, 16<->17, 18<->19) of an (H, W) label map."""
    return np.asarray(GRAPHONOMY_FLIP_PERM, dtype=np.int64)[labels]


def keypoint_box(keypoints: np.ndarray, size: int, conf_thresh: float = BG_REMOVAL_CONF,
                 margin: int = BG_REMOVAL_MARGIN):
    """The original's keypoint box: the region of a ``size`` x ``size`` crop kept by background removal.

    The original's arithmetic, step by step: crop pixels ``p = 0.5 * size * (k + 1)`` in float32
    (it converts the item's float32 keypoints on a float32 tensor); keypoints with float32
    confidence > 0.3; ``x0 = int(max(min p_x - margin, 0))``, ``x1 = int(min(max p_x + margin,
    size))`` (the +-margin in float64, ``int`` truncates), rows likewise. The kept region is the
    Python slice ``[y0:y1, x0:x1]`` (end exclusive; a negative end counts from the far side, as in
    the original's ``img[ymax:] = 0``, reachable only when every confident keypoint lies at least
    ``margin + 1`` pixels left of / above the crop). The original clips x by ``shape[0]`` and y by
    ``shape[1]``: the same side here, DSR crops being square.

    Args:
        keypoints: (N, 3) the item's keypoints, x and y normalised to [-1, 1] over the crop, and
            confidence (the 49 augmented keypoints).
        size: the crop side in pixels (DATASET.IMG_RES).
    Returns:
        (x0, y0, x1, y1) ints: keep ``labels[y0:y1, x0:x1]``.
    Raises:
        NoConfidentKeypointsError if no keypoint has conf > conf_thresh (the original crashed).
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    sel = kp[kp[:, 2] > np.float32(conf_thresh), :2]
    if len(sel) == 0:
        raise NoConfidentKeypointsError(
            f"background removal: no keypoint has confidence > {conf_thresh} (of {len(kp)})")
    px = np.float32(0.5 * size) * (sel + np.float32(1.0))  # float32, as the original's tensor
    lo = px.min(axis=0).astype(np.float64) - margin
    hi = px.max(axis=0).astype(np.float64) + margin
    x0, y0 = int(max(lo[0], 0)), int(max(lo[1], 0))
    x1, y1 = int(min(hi[0], size)), int(min(hi[1], size))
    return x0, y0, x1, y1


def remove_background(labels: np.ndarray, keypoints: np.ndarray, **kwargs) -> np.ndarray:
    """Copy of the square ``labels`` (S, S[, C]) with every pixel outside ``keypoint_box`` set to 0.

    ``keypoints``: (N, 3) normalised to [-1, 1] over the crop, + confidence."""
    h, w = labels.shape[:2]
    if h != w:
        raise ValueError(f"remove_background: expected a square crop, got {h} x {w}")
    x0, y0, x1, y1 = keypoint_box(keypoints, h, **kwargs)
    out = np.zeros_like(labels)
    out[y0:y1, x0:x1] = labels[y0:y1, x0:x1]
    return out


def min_pixels(base: float, img_res: int, scale_with_res: bool) -> float:
    """A pixel-count threshold of the original (``base``, for its 224-px crops), unchanged by
    default; with ``scale_with_res`` (DSR.MIN_PIXELS_SCALE_WITH_RES) the same share of the crop at
    ``img_res``: base * (img_res / 224)^2 (identical at 224)."""
    return base * (img_res / 224.0) ** 2 if scale_with_res else base


def dsr_mc_target(labels: np.ndarray, min_px: float = DSR_MC_MIN_PIXELS):
    """DSR-MC target of one label map.

    Args:
        labels: (H, W) int labels 0..19 (after cropping and background removal).
        min_px: a label must have more pixels than this (the original: 60, see :func:`min_pixels`).
    Returns:
        mask (H, W) float32: 1 at the pixels of the *valid* MC labels, else 0;
        valid (5,) float32: label k of [leftShoe, rightShoe, leftArm, rightArm, face] is valid
        when it has more than ``min_px`` pixels.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels.ravel(), minlength=NUM_LABELS)
    mc = np.asarray(DSR_MC_LABELS)
    valid = counts[mc] > min_px
    selected = np.zeros(NUM_LABELS, dtype=np.float32)
    selected[mc[valid]] = 1.0
    mask = selected[labels]
    return mask, valid.astype(np.float32)


def mc_distance_transform(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32 Euclidean distance (pixels) of each pixel to the nearest MC pixel
    (0 on the mask). An empty mask gives all zeros (such samples have no valid MC label and
    are skipped by the loss)."""
    mask = np.asarray(mask) > 0
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.float32)
    return distance_transform_edt(~mask).astype(np.float32)


def merge_dsr_c_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) Graphonomy labels 0..19 -> (H, W) int64 DSR-C classes 0..7 (§3.2 step 4)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_LABELS):
        raise ValueError(f"merge_dsr_c_labels: labels must lie in 0..{NUM_LABELS - 1}")
    return DSR_C_MERGE[labels]


def dsr_c_class_weights(merged: np.ndarray, counted: np.ndarray | None = None,
                        min_px: float = DSR_C_MIN_PIXELS) -> np.ndarray:
    """Per-sample DSR-C class weights (§3.2 step 4).

    count_c = pixels of class c (only pixels where ``counted`` is True, if given: the original
    counts exact palette colours, so blended/unknown colours count for no class);
    m = the smallest count among classes with count >= 60; weight_c = m / count_c if
    count_c > 60 else 0 (the original's >= / > asymmetry is kept).

    Args:
        merged: (H, W) int classes 0..7.
        counted: optional (H, W) bool.
        min_px: the 60 above (the original's; see :func:`min_pixels`).
    Returns:
        (8,) float32 (all zeros if no class reaches ``min_px`` pixels).
    """
    merged = np.asarray(merged)
    vals = merged.ravel() if counted is None else merged[np.asarray(counted, dtype=bool)]
    return _class_weights(np.bincount(vals, minlength=NUM_C_CLASSES).astype(np.float64), min_px)


def _class_weights(counts: np.ndarray, min_px: float) -> np.ndarray:
    """The weights of :func:`dsr_c_class_weights` from the (8,) float64 class pixel counts."""
    big = counts >= min_px
    if not big.any():
        return np.zeros(NUM_C_CLASSES, dtype=np.float32)
    m = counts[big].min()
    w = np.where(counts > min_px, m / np.maximum(counts, 1.0), 0.0)
    return w.astype(np.float32)


_MC_INDEX = np.asarray(DSR_MC_LABELS)
_MERGE_LUT = np.zeros(256, dtype=np.uint8)
_MERGE_LUT[:NUM_LABELS] = DSR_C_MERGE


def dsr_targets(labels: np.ndarray, known: np.ndarray, mc_min_px: float = DSR_MC_MIN_PIXELS,
                c_min_px: float = DSR_C_MIN_PIXELS):
    """The loader's DSR targets of one uint8 label map in one pass: ``dsr_mc_target(labels,
    mc_min_px)``, ``merge_dsr_c_labels(labels)`` and ``dsr_c_class_weights(merged, counted=known,
    min_px=c_min_px)``, the same values, from two label histograms (all pixels, ``known`` ones).

    Returns:
        mc_mask (H, W) float32, mc_valid (5,) float32, merged (H, W) int64, weights (8,) float32.
    """
    labels = np.ascontiguousarray(labels)
    if labels.dtype != np.uint8:
        raise ValueError(f"dsr_targets: expected uint8 labels, got {labels.dtype}")
    hist = cv2.calcHist([labels], [0], None, [256], [0, 256]).reshape(-1)  # float32, exact below 2^24
    if hist[NUM_LABELS:].any():
        raise ValueError(f"dsr_targets: labels must lie in 0..{NUM_LABELS - 1}")
    valid = hist[_MC_INDEX] > mc_min_px
    selected = np.zeros(256, dtype=np.uint8)
    selected[_MC_INDEX[valid]] = 1
    mc_mask = cv2.LUT(labels, selected).astype(np.float32)
    merged = cv2.LUT(labels, _MERGE_LUT).astype(np.int64)  # DSR_C_MERGE[labels], 3x faster
    kh = cv2.calcHist([labels], [0], np.ascontiguousarray(known, dtype=np.uint8), [256], [0, 256]).reshape(-1)[:NUM_LABELS]
    class_counts = np.bincount(DSR_C_MERGE, weights=kh.astype(np.float64), minlength=NUM_C_CLASSES)
    return mc_mask, valid.astype(np.float32), merged, _class_weights(class_counts, c_min_px)


def mask_path(root: str, imgname: str) -> str:
    """Graphonomy mask of an image: ``<root>/grph_sequences/<imgname, extension -> .png>``.

    (The original stripped the characters j, p, g from both ends of the name, which mangles
    names starting with those letters; only the extension is replaced here.)
    """
    stem, _ = os.path.splitext(imgname)
    return os.path.join(root, "grph_sequences", stem + ".png")
