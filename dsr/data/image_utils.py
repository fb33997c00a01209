"""Crop and augmentation maths of SPIN/PARE (reference §5.3), numpy.

Conventions: an image crop is defined by a bbox ``center`` (2,) in original pixels, a ``scale``
(bbox side / 200) and a rotation ``rot`` in degrees; crops are ``res`` x ``res`` (224).

* ``get_transform(center, scale, res, rot)`` -> (3, 3) SPIN affine: original pixel -> crop pixel,
  rotation about the crop centre by ``-rot`` in SPIN's sign convention (matches ``crop_cv2``).
* ``transform(pt, center, scale, res, invert, rot)`` -> (2,) int: SPIN's keypoint transform,
  including its legacy quantisation ``int(t @ (pt - 1)) + 1`` (truncation toward zero).
* ``crop_cv2(img, center, scale, res, rot)``: PARE crop (centre rounded to int, square side
  ``round(200 * scale)``, rotated by ``rot``, bilinear ``warpAffine``, zero border).
* ``crop_transform`` / ``warp_source_box``: the (2, 3) affine of ``crop_cv2`` and the box of source
  pixels its warp can read (with a margin for the interpolation support).
* ``crop_region_cv2(shape, fill, ..., buf)``: the same crop as ``crop_cv2`` of a uint8 frame, bit for
  bit, converting to float32 only the source box (``fill`` writes it into a reused ``ScratchBuffer``
  of the frame's full shape: the warp sees the same array shape, matrix and pixel values).
* ``j2d_processing``: (N, 3) original-pixel keypoints -> crop keypoints in [-1, 1] (+ flip).
* ``j3d_processing``: (24, 4) metres: rotate x-y by ``-rot`` about the camera z axis (+ flip).
* ``pose_processing``: (72,) axis-angle: root left-multiplied by Rz(-rot) (+ flip).
* ``flip_img`` / ``flip_kp`` / ``flip_pose``, ``rot_aa``.
* ``sample_augmentation(rng, ...)``: SPIN's ``augm_params`` with an explicit generator.
"""
from __future__ import annotations

import cv2
import numpy as np

from dsr.constants import IMG_NORM_MEAN, IMG_NORM_STD, J24_FLIP_PERM, J49_FLIP_PERM, SMPL_POSE_FLIP_PERM

__all__ = [
    "get_transform",
    "transform",
    "crop_cv2",
    "crop_box",
    "crop_transform",
    "normalize_crop",
    "warp_source_box",
    "crop_region_cv2",
    "ScratchBuffer",
    "gen_trans_from_patch_cv",
    "flip_img",
    "flip_kp",
    "flip_pose",
    "rot_aa",
    "j2d_processing",
    "j3d_processing",
    "pose_processing",
    "sample_augmentation",
]


def get_transform(center, scale, res, rot=0.0) -> np.ndarray:
    """SPIN's (3, 3) affine from original pixels to crop pixels. ``res`` = (H, W) or int."""
    if np.isscalar(res):
        res = (res, res)
    h = 200.0 * float(scale)
    t = np.zeros((3, 3))
    t[0, 0] = float(res[1]) / h
    t[1, 1] = float(res[0]) / h
    t[0, 2] = res[1] * (-float(center[0]) / h + 0.5)
    t[1, 2] = res[0] * (-float(center[1]) / h + 0.5)
    t[2, 2] = 1.0
    if rot != 0:
        r = np.deg2rad(-rot)  # SPIN: negated to match the direction of the crop rotation
        sn, cs = np.sin(r), np.cos(r)
        rot_mat = np.array([[cs, -sn, 0.0], [sn, cs, 0.0], [0.0, 0.0, 1.0]])
        t_mat = np.eye(3)
        t_mat[0, 2] = -res[1] / 2.0
        t_mat[1, 2] = -res[0] / 2.0
        t_inv = np.eye(3)
        t_inv[0, 2] = res[1] / 2.0
        t_inv[1, 2] = res[0] / 2.0
        t = t_inv @ rot_mat @ t_mat @ t
    return t


def transform(pt, center, scale, res, invert: bool = False, rot=0.0) -> np.ndarray:
    """SPIN keypoint transform with its integer quantisation: ``int(T @ (pt - 1)) + 1``."""
    t = get_transform(center, scale, res, rot=rot)
    if invert:
        t = np.linalg.inv(t)
    new_pt = t @ np.array([pt[0] - 1.0, pt[1] - 1.0, 1.0])
    return new_pt[:2].astype(np.int64) + 1


def _rotate_2d(pt, rot_rad):
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return np.array([pt[0] * cs - pt[1] * sn, pt[0] * sn + pt[1] * cs], dtype=np.float32)


def gen_trans_from_patch_cv(c_x, c_y, src_w, src_h, dst_w, dst_h, rot, inv=False) -> np.ndarray:
    """(2, 3) affine mapping the rotated source box onto the destination patch (PARE)."""
    rot_rad = np.pi * rot / 180.0
    src_center = np.array([c_x, c_y], dtype=np.float32)
    src_down = _rotate_2d(np.array([0, src_h * 0.5], dtype=np.float32), rot_rad)
    src_right = _rotate_2d(np.array([src_w * 0.5, 0], dtype=np.float32), rot_rad)
    dst_center = np.array([dst_w * 0.5, dst_h * 0.5], dtype=np.float32)
    dst_down = np.array([0, dst_h * 0.5], dtype=np.float32)
    dst_right = np.array([dst_w * 0.5, 0], dtype=np.float32)
    src = np.stack([src_center, src_center + src_down, src_center + src_right]).astype(np.float32)
    dst = np.stack([dst_center, dst_center + dst_down, dst_center + dst_right]).astype(np.float32)
    if inv:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def crop_box(center, scale) -> tuple[int, int, int]:
    """The PARE crop's square in the original image as it is cut: centre (c_x, c_y) and side bb in
    whole pixels (``center`` and ``scale * 200`` rounded)."""
    return int(round(float(center[0]))), int(round(float(center[1]))), int(round(float(scale) * 200.0))


def crop_transform(center, scale, res, rot=0.0):
    """The PARE crop's (2, 3) float64 affine (original pixel -> crop pixel) and the crop size (pw, ph)."""
    if np.isscalar(res):
        res = (res, res)
    c_x, c_y, bb = crop_box(center, scale)
    pw, ph = int(round(res[0])), int(round(res[1]))
    return gen_trans_from_patch_cv(c_x, c_y, bb, bb, pw, ph, rot), (pw, ph)


def normalize_crop(crop: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB crop -> (3, H, W) float32 network input (ImageNet mean / std)."""
    x = (crop.astype(np.float32) / 255.0 - np.array(IMG_NORM_MEAN, np.float32)) / np.array(IMG_NORM_STD, np.float32)
    return x.transpose(2, 0, 1)


def crop_cv2(img: np.ndarray, center, scale, res, rot=0.0, nearest: bool = False) -> np.ndarray:
    """PARE crop: (H, W[, C]) image -> (res, res[, C]) (bilinear, or nearest-neighbour with
    ``nearest``; zero border, same dtype)."""
    trans, (pw, ph) = crop_transform(center, scale, res, rot)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(img, trans, (pw, ph), flags=flags, borderMode=cv2.BORDER_CONSTANT)


def warp_source_box(trans: np.ndarray, size, shape, margin: int = 2, dst_box=None):
    """Source pixels a ``warpAffine(src, trans, size)`` can read: (x0, y0, x1, y1), half-open, clipped
    to ``shape`` = (H, W); None when the crop lies wholly outside the source.

    The crop's pixel centres (0..pw-1, 0..ph-1), or those of ``dst_box`` = (x0, y0, x1, y1)
    (half-open, non-empty) only, map back through the inverse affine to a parallelogram; bilinear
    interpolation reads floor(x) and floor(x) + 1 (nearest: round(x)). ``margin`` pixels more on
    each side cover OpenCV's fixed-point coordinates (1/32 px) and rounding;
    ``tests/test_loader_equivalence.py`` checks with the rest of the source set to NaN.
    """
    pw, ph = size
    bx0, by0, bx1, by1 = (0, 0, pw, ph) if dst_box is None else dst_box
    inv = cv2.invertAffineTransform(np.asarray(trans, dtype=np.float64))
    corners = np.array([[bx0, by0, 1.0], [bx1 - 1.0, by0, 1.0], [bx0, by1 - 1.0, 1.0], [bx1 - 1.0, by1 - 1.0, 1.0]],
                       dtype=np.float64)
    src = corners @ inv.T
    lo = np.floor(src.min(axis=0)).astype(np.int64) - margin
    hi = np.floor(src.max(axis=0)).astype(np.int64) + 2 + margin
    h, w = int(shape[0]), int(shape[1])
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), w), min(int(hi[1]), h)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


class ScratchBuffer:
    """A float32 array reused across items (one per process: base_dataset._SCRATCH), viewed at any shape.

    Zero-filled when (re)allocated, so that it only ever holds finite pixel values. ``poison`` (tests)
    fills each view with NaN before use: a warp reading outside the box it was given then shows."""

    def __init__(self):
        self._a = np.zeros(0, dtype=np.float32)
        self.poison = False

    def view(self, shape) -> np.ndarray:
        n = int(np.prod(shape))
        if self._a.size < n:
            self._a = np.zeros(n, dtype=np.float32)
        out = self._a[:n].reshape(shape)
        if self.poison:
            out.fill(np.nan)
        return out

    def __getstate__(self):  # not pickled with the dataset (spawned DataLoader workers)
        return {"poison": self.poison}

    def __setstate__(self, state):
        self.__init__()
        self.poison = state["poison"]


def crop_region_cv2(shape, fill, center, scale, res, rot=0.0, nearest: bool = False,
                    buf: ScratchBuffer | None = None, dst_box=None, transform=None) -> np.ndarray:
    """``crop_cv2(frame.astype(np.float32), ...)`` bit for bit, converting only what the warp reads.

    Args:
        shape: (H, W, C) of the uint8 frame.
        fill: ``fill(dst, x0, y0, x1, y1)`` writes the float32 values of frame[y0:y1, x0:x1] into
            ``dst`` (H', W', C) (e.g. ``dst[...] = frame[y0:y1, x0:x1]``).
        buf: the ScratchBuffer to use (a fresh one if None).
        dst_box: (x0, y0, x1, y1) non-empty, half-open: only these crop pixels are needed (the
            others are left undefined; they may come from an earlier item's pixels).
        transform: ``crop_transform(center, scale, res, rot)`` if already computed (the loader's
            image and mask crops share it).
    Returns:
        (res, res, C) float32.
    """
    trans, (pw, ph) = transform if transform is not None else crop_transform(center, scale, res, rot)
    box = warp_source_box(trans, (pw, ph), shape[:2], dst_box=dst_box)
    if box is None:  # every read is outside the frame: the constant (zero) border
        return np.zeros((ph, pw) + tuple(shape[2:]), dtype=np.float32)
    full = (buf or ScratchBuffer()).view(tuple(shape))
    x0, y0, x1, y1 = box
    fill(full[y0:y1, x0:x1], x0, y0, x1, y1)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(full, trans, (pw, ph), flags=flags, borderMode=cv2.BORDER_CONSTANT)


def flip_img(img: np.ndarray) -> np.ndarray:
    """Left-right flip of an (H, W[, C]) image."""
    return np.ascontiguousarray(img[:, ::-1])


def flip_kp(kp: np.ndarray) -> np.ndarray:
    """Flip (24, D) or (49, D) keypoints/joints: permute left/right and negate x."""
    if len(kp) == 24:
        perm = J24_FLIP_PERM
    elif len(kp) == 49:
        perm = J49_FLIP_PERM
    else:
        raise ValueError(f"flip_kp: expected 24 or 49 joints, got {len(kp)}")
    kp = np.array(kp[perm], copy=True)
    kp[:, 0] = -kp[:, 0]
    return kp


def flip_pose(pose: np.ndarray) -> np.ndarray:
    """Flip a (72,) SMPL axis-angle pose: swap left/right joints, negate the y and z components."""
    pose = np.array(pose[SMPL_POSE_FLIP_PERM], copy=True)
    pose[1::3] = -pose[1::3]
    pose[2::3] = -pose[2::3]
    return pose


def rot_aa(aa: np.ndarray, rot: float) -> np.ndarray:
    """Left-multiply the rotation of axis-angle ``aa`` (3,) by Rz(-rot degrees)."""
    r = np.deg2rad(-rot)
    rz = np.array([[np.cos(r), -np.sin(r), 0.0], [np.sin(r), np.cos(r), 0.0], [0.0, 0.0, 1.0]])
    per_rdg, _ = cv2.Rodrigues(np.asarray(aa, dtype=np.float64).reshape(3, 1))
    resrot, _ = cv2.Rodrigues(rz @ per_rdg)
    return resrot[:, 0]


def j2d_processing(kp: np.ndarray, center, scale, rot, flip, res: int = 224) -> np.ndarray:
    """(N, 3) keypoints in original pixels -> (N, 3) float32 in [-1, 1] crop coordinates.

    SPIN: each point goes through ``transform(kp + 1, ...)`` (quantised), then ``2 k / res - 1``;
    flipped items are permuted and x negated. The confidence column is unchanged. The arithmetic
    is the original's, in the keypoints' own dtype (float32 or float64, as stored in the npz):
    ``kp + 1`` and ``2 k / res - 1`` in that dtype, ``(kp + 1) - 1`` and the affine map in float64
    (numpy 1.x promotes a float32 scalar minus an int to float64); only the cast to float32 is last.
    Other dtypes are converted to float64 first.
    """
    kp = np.array(kp, copy=True)
    if kp.dtype not in (np.float32, np.float64):
        kp = kp.astype(np.float64)
    t = get_transform(center, scale, (res, res), rot=rot)
    pt = (kp[:, :2] + 1).astype(np.float64) - 1.0
    homo = np.concatenate([pt, np.ones((len(kp), 1))], axis=1)
    kp[:, :2] = (homo @ t.T)[:, :2].astype(np.int64) + 1
    kp[:, :-1] = 2.0 * kp[:, :-1] / res - 1.0
    if flip:
        kp = flip_kp(kp)
    return kp.astype(np.float32)


def j3d_processing(S: np.ndarray, rot, flip) -> np.ndarray:
    """(24, 4) 3D joints (metres + conf): rotate x-y by ``-rot`` degrees about z, then flip."""
    S = np.array(S, dtype=np.float64, copy=True)
    rot_mat = np.eye(3)
    if rot != 0:
        r = np.deg2rad(-rot)
        sn, cs = np.sin(r), np.cos(r)
        rot_mat[0, :2] = [cs, -sn]
        rot_mat[1, :2] = [sn, cs]
    S[:, :-1] = S[:, :-1] @ rot_mat.T
    if flip:
        S = flip_kp(S)
    return S.astype(np.float32)


def pose_processing(pose: np.ndarray, rot, flip) -> np.ndarray:
    """(72,) axis-angle: root rotated by Rz(-rot), then flipped."""
    pose = np.array(pose, dtype=np.float64, copy=True)
    pose[:3] = rot_aa(pose[:3], rot)
    if flip:
        pose = flip_pose(pose)
    return pose.astype(np.float32)


def sample_augmentation(rng: np.random.Generator, noise_factor=0.4, rot_factor=30.0, scale_factor=0.25):
    """SPIN's augmentation parameters (draw order: flip, noise, rotation, scale, rotation-off).

    Returns:
        flip (0/1), pn (3,) per-channel multiplicative noise U[1-nf, 1+nf],
        rot (degrees, clip(N(0, rf), +-2 rf), zero with probability 0.6),
        sc (clip(N(1, sf), 1-sf, 1+sf)).
    """
    flip = int(rng.uniform() <= 0.5)
    pn = rng.uniform(1 - noise_factor, 1 + noise_factor, 3)
    rot = float(min(2 * rot_factor, max(-2 * rot_factor, rng.standard_normal() * rot_factor)))
    sc = float(min(1 + scale_factor, max(1 - scale_factor, rng.standard_normal() * scale_factor + 1)))
    if rng.uniform() <= 0.6:
        rot = 0.0
    return flip, pn, rot, sc
