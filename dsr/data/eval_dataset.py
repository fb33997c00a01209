"""Evaluation sets whose protocols need more than the SPIN npz keys: EMDB and SSP-3D.

``EvalExtrasDataset(cfg, dataset)`` = :class:`dsr.data.base_dataset.BaseDataset` (evaluation file,
no augmentation: the same image crop) plus the optional npz keys below, read for the same rows and
added to each item:

  ``trans_cam`` (N, 3) -> item ``trans_cam`` (3,) float32: GT translation in the camera frame;
  ``intrinsics`` (N, 3, 3) -> item ``intrinsics`` (3, 3) float32: the camera matrix (pixels);
  ``sequence`` (N,) str -> item ``sequence`` str;  ``frame`` (N,) int -> item ``frame`` int;
  ``silhouette`` (N,) str (relative to the dataset folder) -> item ``silhouette`` (R, R) uint8:
  the mask cropped exactly as the image (``crop_cv2`` with the row's centre and scale at
  DATASET.IMG_RES, nearest neighbour), 1 where any channel of the mask is nonzero.

A key absent from the file leaves its item field out.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from dsr.data.base_dataset import BaseDataset, DatasetError
from dsr.data.image_utils import crop_cv2

__all__ = ["EvalExtrasDataset", "EXTRAS_DATASETS", "EXTRA_SHAPES"]

EXTRAS_DATASETS = ("emdb-1", "emdb-2", "ssp-3d")
EXTRA_SHAPES = {"trans_cam": (3,), "intrinsics": (3, 3), "sequence": (), "frame": (), "silhouette": ()}


class EvalExtrasDataset(BaseDataset):
    """BaseDataset (evaluation) + the extra keys of EMDB / SSP-3D (module docstring)."""

    def __init__(self, cfg, dataset: str, **kwargs):
        super().__init__(cfg, dataset, is_train=False, **kwargs)
        raw = np.load(self.npz_path, allow_pickle=False)
        n = len(raw["imgname"])
        self.extras = {}
        for k, shape in EXTRA_SHAPES.items():
            if k not in raw.files:
                continue
            v = raw[k]
            if v.shape != (n,) + shape:
                raise DatasetError(f"{self.npz_path}: key '{k}' has shape {v.shape}, expected {(n,) + shape}")
            self.extras[k] = v[self.rows]

    def _silhouette(self, index: int) -> np.ndarray:
        path = os.path.join(self.root, str(self.extras["silhouette"][index]))
        mask = cv2.imread(path, cv2.IMREAD_UNCHANGED) if os.path.isfile(path) else None
        if mask is None:
            raise DatasetError(f"dataset {self.dataset}: silhouette {'not found' if not os.path.isfile(path) else 'unreadable'}: "
                               f"{path} (listed in {self.npz_path})")
        fg = (mask != 0).any(axis=2) if mask.ndim == 3 else mask != 0
        return crop_cv2(fg.astype(np.uint8), self.center[index], self.scale[index], self.img_res, nearest=True)

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        e = self.extras
        if "trans_cam" in e:
            item["trans_cam"] = torch.from_numpy(e["trans_cam"][index].astype(np.float32))
        if "intrinsics" in e:
            item["intrinsics"] = torch.from_numpy(e["intrinsics"][index].astype(np.float32))
        if "sequence" in e:
            item["sequence"] = str(e["sequence"][index])
        if "frame" in e:
            item["frame"] = int(e["frame"][index])
        if "silhouette" in e:
            item["silhouette"] = torch.from_numpy(self._silhouette(index))
        return item
