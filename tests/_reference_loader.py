"""The training item path as it was before issue 25 (whole-frame float conversion), kept verbatim as
the reference that ``tests/test_loader_equivalence.py`` and ``benchmarks/bench_loader.py`` compare
the current ``BaseDataset.__getitem__`` against.

``ReferenceDataset(cfg, dataset, ...)`` is a ``BaseDataset`` (same constructor, same npz reading)
whose ``__getitem__`` is the old one: the whole JPEG decoded and converted to float32, warped, the
whole colour mask read with ``cv2.imread`` and converted to float32, warped, decoded. Do not
"improve" this file: its only purpose is to stay what the loader was.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from dsr.constants import IMG_NORM_MEAN, IMG_NORM_STD
from dsr.data import graphonomy as G
from dsr.data.base_dataset import BaseDataset, DatasetError
from dsr.data.frame_io import truncated_jpeg as _truncated_jpeg
from dsr.data.image_utils import (
    flip_img,
    gen_trans_from_patch_cv,
    j2d_processing,
    j3d_processing,
    pose_processing,
)

__all__ = ["ReferenceDataset", "reference_crop_cv2"]

# the colour decode and the DSR-MC target as they were (graphonomy.py has faster equivalents since)
_SORT = np.argsort(G._PALETTE_CODES)
_SORTED_CODES = G._PALETTE_CODES[_SORT]


def _decode_colour_mask_ref(rgb: np.ndarray):
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2].astype(np.int64)
    pos = np.clip(np.searchsorted(_SORTED_CODES, code), 0, G.NUM_LABELS - 1)
    known = _SORTED_CODES[pos] == code
    return np.where(known, _SORT[pos], 0).astype(np.int64), known


def _dsr_mc_target_ref(labels: np.ndarray, min_px: float):
    counts = np.bincount(labels.ravel(), minlength=G.NUM_LABELS)
    mc = np.asarray(G.DSR_MC_LABELS)
    valid = counts[mc] > min_px
    return np.isin(labels, mc[valid]).astype(np.float32), valid.astype(np.float32)


def reference_crop_cv2(img: np.ndarray, center, scale, res, rot=0.0, nearest: bool = False) -> np.ndarray:
    """The PARE crop as it was (whole image in, bilinear or nearest ``warpAffine``, zero border)."""
    if np.isscalar(res):
        res = (res, res)
    c_x, c_y = int(round(float(center[0]))), int(round(float(center[1])))
    pw, ph = int(round(res[0])), int(round(res[1]))
    bb = int(round(float(scale) * 200.0))
    trans = gen_trans_from_patch_cv(c_x, c_y, bb, bb, pw, ph, rot)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(img, trans, (pw, ph), flags=flags, borderMode=cv2.BORDER_CONSTANT)


def _normalize_img(img: np.ndarray) -> np.ndarray:
    mean = np.asarray(IMG_NORM_MEAN, dtype=np.float32)
    std = np.asarray(IMG_NORM_STD, dtype=np.float32)
    return np.ascontiguousarray(((img - mean) / std).transpose(2, 0, 1), dtype=np.float32)


class ReferenceDataset(BaseDataset):
    """``BaseDataset`` with the pre-issue-25 item path (see the module docstring)."""

    def _read_image_ref(self, path: str) -> np.ndarray:
        if not os.path.isfile(path):
            raise DatasetError(f"dataset {self.dataset}: image not found: {path} (listed in {self.npz_path})")
        with open(path, "rb") as f:
            data = f.read()
        if _truncated_jpeg(data):
            raise DatasetError(f"dataset {self.dataset}: truncated JPEG {path} (no end-of-image marker after "
                               "its last scan; OpenCV would decode it with the missing part grey)")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"dataset {self.dataset}: cannot decode image {path}")
        return img[:, :, ::-1]

    def __getitem__(self, index: int) -> dict:
        imgname = self.imgname[index]
        path = os.path.join(self.root, imgname)
        center = self.center[index]
        scale = self.scale[index]
        flip, pn, rot, sc = self.augm_params()
        res = self.img_res

        img_u8 = self._read_image_ref(path)
        orig_shape = np.array(img_u8.shape[:2])
        img = reference_crop_cv2(img_u8.astype(np.float32), center, sc * scale, res, rot=rot)
        if flip:
            img = flip_img(img)
        img = np.clip(img * pn.astype(np.float32)[None, None, :], 0.0, 255.0) / 255.0

        keypoints = j2d_processing(self.keypoints[index], center, sc * scale, rot, flip, res)
        if self.pose_3d is not None:
            pose_3d = j3d_processing(self.pose_3d[index], rot, flip)
        else:
            pose_3d = np.zeros((24, 4), dtype=np.float32)
        if self.has_smpl[index]:
            pose, betas = self.pose[index], self.betas[index]
        else:
            pose, betas = np.zeros(72), np.zeros(10)
        pose = pose_processing(pose, rot, flip)

        item = {
            "index": index,
            "sample_index": int(self.rows[index]),
            "img": torch.from_numpy(_normalize_img(img.astype(np.float32))),
            "pose": torch.from_numpy(pose),
            "betas": torch.from_numpy(betas.astype(np.float32)),
            "imgname": path,
            "pose_3d": torch.from_numpy(pose_3d),
            "keypoints": torch.from_numpy(keypoints),
            "has_smpl": torch.tensor(float(self.has_smpl[index])),
            "has_pose_3d": torch.tensor(float(self.has_pose_3d[index])),
            "scale": torch.tensor(float(sc * scale)),
            "center": torch.from_numpy(center.astype(np.float32)),
            "orig_shape": torch.from_numpy(orig_shape),
            "is_flipped": int(flip),
            "rot_angle": torch.tensor(float(rot)),
            "gender": int(self.gender[index]),
            "dataset_name": self.dataset,
            "maskname": "" if self.maskname is None else self.maskname[index],
            "partname": "" if self.partname is None else self.partname[index],
        }
        if self.with_dsr_targets:
            item.update(self._dsr_targets_ref(index, imgname, orig_shape, center, sc * scale, rot, flip, keypoints))
        return item

    def _dsr_targets_ref(self, index, imgname, orig_shape, center, scale, rot, flip, keypoints) -> dict:
        res = self.img_res
        mpath = G.mask_path(self.root, imgname)
        if os.path.isfile(mpath):
            bgr = cv2.imread(mpath, cv2.IMREAD_COLOR)
            if bgr is None:
                raise DatasetError(f"dataset {self.dataset}: cannot decode Graphonomy mask {mpath}")
            if tuple(bgr.shape[:2]) != tuple(orig_shape):
                raise DatasetError(f"dataset {self.dataset}: Graphonomy mask {mpath} has size {bgr.shape[:2]} "
                                   f"but its image has size {tuple(orig_shape)} (H, W)")
            crop = reference_crop_cv2(bgr.astype(np.float32), center, scale, res, rot=rot,
                                      nearest=self.mask_warp_nearest)[:, :, ::-1]
            if flip:
                crop = flip_img(crop)
            crop = ((crop / 255.0) * 255).astype(np.uint8)
        else:
            crop = np.zeros((res, res, 3), dtype=np.uint8)
        labels, known = _decode_colour_mask_ref(crop)
        if flip and self.swap_lr_masks:
            labels = G.swap_lr_labels(labels)
        try:
            x0, y0, x1, y1 = G.keypoint_box(keypoints, res)
        except G.NoConfidentKeypointsError as e:
            raise DatasetError(f"dataset {self.dataset}, sample {index} ({imgname}, {self.npz_path}): {e}; "
                               "the DSR background removal needs at least one") from e
        inside = np.zeros((res, res), dtype=bool)
        inside[y0:y1, x0:x1] = True
        labels = np.where(inside, labels, 0)
        known = known | ~inside

        mc_mask, mc_valid = _dsr_mc_target_ref(labels, self.mc_min_px)
        merged = G.merge_dsr_c_labels(labels)
        weights = G.dsr_c_class_weights(merged, counted=known, min_px=self.c_min_px)
        out = {
            "grph_dsr_mc_label": torch.from_numpy(mc_mask),
            "grph_dsr_c_label": torch.from_numpy(merged.astype(np.int64)),
            "dsr_c_class_weight": torch.from_numpy(weights),
            "valid_labels_dsr_mc": torch.from_numpy(mc_valid),
            "valid_labels_dsr_c": torch.ones(G.NUM_C_CLASSES),
        }
        if self.with_dist_mat:
            out["grph_dsr_mc_dist_mat"] = torch.from_numpy(G.mc_distance_transform(mc_mask))
        return out
