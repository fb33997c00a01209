"""Mask files of the parsers: images in, CIHP colour PNGs out (used by ``tools/make_parsing_masks.py``).

* ``read_image_rgb(path)``: (H, W, 3) uint8 RGB, or :class:`ImageReadError` naming the reason
  (missing, truncated JPEG: the same check as the training loader, cannot decode).
* ``mask_file(out_dir, imgname)``: ``<out_dir>/<imgname with its extension -> .png>``; with
  ``out_dir = <dataset root>/grph_sequences`` this is where the training loader looks
  (``dsr.data.graphonomy.mask_path``).
* ``write_mask_png(path, labels)``: an 8-bit palette PNG with the CIHP colours of
  ``dsr.constants.GRAPHONOMY_PALETTE`` (read as colours by OpenCV / any viewer, as label indices by
  PIL), written atomically (``<path>.part``, then renamed).
* ``person_box(center, scale, margin, H, W)``: the crop of one person: the square of side
  200 * scale * margin pixels around ``center`` (SPIN's box convention), rounded to whole pixels
  and clipped to the image (no padding): (x0, y0, x1, y1), half-open, or None when empty.
* ``paste_crops(H, W, boxes, centres, labels)``: one full-size label map from the parsed crops.
  A pixel inside several crops takes the label of the crop whose person centre is nearest
  (ties: the earlier crop); pixels outside every crop are background (0).
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image

from dsr.constants import GRAPHONOMY_PALETTE
from dsr.data.frame_io import truncated_jpeg

__all__ = ["ImageReadError", "read_image_rgb", "mask_file", "write_mask_png", "person_box", "paste_crops"]

_PIL_PALETTE = GRAPHONOMY_PALETTE.reshape(-1).tolist()


class ImageReadError(ValueError):
    """An input image is missing, truncated or cannot be decoded (the message says which)."""


def read_image_rgb(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of ``path`` (EXIF orientation applied, as ``cv2.imread``)."""
    if not os.path.isfile(path):
        raise ImageReadError("missing")
    with open(path, "rb") as f:
        data = f.read()
    if truncated_jpeg(data):
        raise ImageReadError("truncated JPEG (no end-of-image marker after its last scan)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageReadError("cannot decode")
    return np.ascontiguousarray(img[:, :, ::-1])


def mask_file(out_dir: str, imgname: str) -> str:
    """``<out_dir>/<imgname, extension -> .png>`` (relative folders of ``imgname`` kept)."""
    return os.path.join(out_dir, os.path.splitext(imgname)[0] + ".png")


def write_mask_png(path: str, labels: np.ndarray) -> None:
    """Write (H, W) labels 0..19 as a CIHP palette PNG at ``path`` atomically (folders created)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min(initial=0) < 0 or labels.max(initial=0) >= len(GRAPHONOMY_PALETTE):
        raise ValueError(f"write_mask_png: expected (H, W) labels in 0..{len(GRAPHONOMY_PALETTE) - 1}, "
                         f"got shape {labels.shape}")
    img = Image.fromarray(labels.astype(np.uint8))  # mode L; putpalette makes it P
    img.putpalette(_PIL_PALETTE)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        img.save(f, format="PNG")
    os.replace(tmp, path)


def person_box(center, scale: float, margin: float, height: int, width: int):
    """Crop box of one person: (x0, y0, x1, y1) ints, half-open, clipped to the image; None if empty.

    x0 = floor(cx - side / 2 + 0.5), x1 = floor(cx + side / 2 + 0.5) with side = 200 * scale * margin
    (same for y), then clipped to [0, W] x [0, H].
    """
    half = 100.0 * float(scale) * float(margin)
    cx, cy = float(center[0]), float(center[1])
    x0 = int(np.clip(np.floor(cx - half + 0.5), 0, width))
    x1 = int(np.clip(np.floor(cx + half + 0.5), 0, width))
    y0 = int(np.clip(np.floor(cy - half + 0.5), 0, height))
    y1 = int(np.clip(np.floor(cy + half + 0.5), 0, height))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def paste_crops(height: int, width: int, boxes, centres, labels) -> np.ndarray:
    """Full-size (H, W) int64 labels from crops.

    Args:
        boxes: K boxes (x0, y0, x1, y1) (half-open, inside the image).
        centres: K person centres (x, y) in image pixels.
        labels: K label maps, the k-th of shape (y1 - y0, x1 - x0).
    """
    out = np.zeros((height, width), dtype=np.int64)
    best = np.full((height, width), np.inf)
    for (x0, y0, x1, y1), (cx, cy), lab in zip(boxes, centres, labels):
        lab = np.asarray(lab)
        if lab.shape != (y1 - y0, x1 - x0):
            raise ValueError(f"paste_crops: labels of shape {lab.shape} for box {(x0, y0, x1, y1)}")
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = (xx - float(cx)) ** 2 + (yy - float(cy)) ** 2
        region_best = best[y0:y1, x0:x1]
        take = d < region_best
        out[y0:y1, x0:x1][take] = lab[take]
        region_best[take] = d[take]
    return out
