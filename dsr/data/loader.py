"""Dataset and DataLoader construction from the config (reference §5.1, §5.3).

* ``build_train_dataset(cfg)``: TRAIN_DS 'all' -> MixedDataset (§5.1); any other key (e.g.
  'synthetic', 'h36m') -> that one BaseDataset with TRAINING.USE_AUGM.
* ``build_val_dataset(cfg, name=None)``: the evaluation file of DATASET.VAL_DS (no augmentation;
  EMDB / SSP-3D through :class:`dsr.data.eval_dataset.EvalExtrasDataset`).
* ``train_dataloader(cfg, dataset)``: batch DATASET.BATCH_SIZE, shuffle DATASET.SHUFFLE_TRAIN,
  drop_last=True, DATASET.NUM_WORKERS workers, DATASET.PIN_MEMORY.
* ``val_dataloader(cfg, dataset)``: no shuffle, keeps the last partial batch.
"""
from __future__ import annotations

import cv2
import torch
from torch.utils.data import DataLoader

from dsr.data.base_dataset import BaseDataset
from dsr.data.eval_dataset import EXTRAS_DATASETS, EvalExtrasDataset
from dsr.data.mixed_dataset import MixedDataset

__all__ = ["build_train_dataset", "build_val_dataset", "train_dataloader", "val_dataloader", "worker_init_fn"]


def worker_init_fn(worker_id: int) -> None:
    """One OpenCV thread per DataLoader worker (the workers already run in parallel)."""
    cv2.setNumThreads(1)


def build_train_dataset(cfg, **kwargs):
    if cfg.DATASET.TRAIN_DS == "all":
        return MixedDataset(cfg, **kwargs)
    return BaseDataset(cfg, cfg.DATASET.TRAIN_DS, is_train=True, **kwargs)


def build_val_dataset(cfg, name: str | None = None, **kwargs):
    name = name or cfg.DATASET.VAL_DS
    if name in EXTRAS_DATASETS:  # EMDB / SSP-3D: + sequence, frame, silhouette, ... (eval_dataset)
        return EvalExtrasDataset(cfg, name, **kwargs)
    return BaseDataset(cfg, name, is_train=False, **kwargs)


def _loader(cfg, dataset, shuffle, drop_last, batch_size=None, num_workers=None):
    nw = int(cfg.DATASET.NUM_WORKERS if num_workers is None else num_workers)
    return DataLoader(
        dataset,
        batch_size=int(batch_size or cfg.DATASET.BATCH_SIZE),
        shuffle=shuffle,
        num_workers=nw,
        pin_memory=bool(cfg.DATASET.PIN_MEMORY) and torch.cuda.is_available(),
        drop_last=drop_last,
        worker_init_fn=worker_init_fn if nw > 0 else None,
    )


def train_dataloader(cfg, dataset, batch_size=None, num_workers=None) -> DataLoader:
    return _loader(cfg, dataset, bool(cfg.DATASET.SHUFFLE_TRAIN), True, batch_size, num_workers)


def val_dataloader(cfg, dataset, batch_size=None, num_workers=None) -> DataLoader:
    return _loader(cfg, dataset, False, False, batch_size, num_workers)
