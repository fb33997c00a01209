"""Fixed-ratio mixture of training datasets (reference §5.1).

``MixedDataset(cfg)``: ``DATASET.TRAIN_3DPW`` False -> h36m / coco / mpi-inf-3dhp with
probabilities 0.5 / 0.3 / 0.2; True -> h36m / coco / mpi-inf-3dhp / 3dpw with 0.3 / 0.4 / 0.1 / 0.2
(``dsr.constants.MIXTURE``). ``__getitem__(i)`` draws u ~ U(0, 1), picks the dataset whose
cumulative partition holds u and returns its item ``i mod len(dataset)``. Length = the longest
dataset. Every member augments (the original ignores TRAINING.USE_AUGM here).
"""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from dsr.constants import MIXTURE
from dsr.data.base_dataset import BaseDataset
from dsr.data.rng import ProcessRng

__all__ = ["MixedDataset"]


class MixedDataset(Dataset):
    """Args: cfg; datasets/ratios override the §5.1 table (ratios must sum to 1);
    rng: generator for the dataset draw (default: per process, seeded from torch);
    dataset_kwargs: passed to every BaseDataset (e.g. with_dsr_targets)."""

    def __init__(self, cfg, datasets=None, ratios=None, rng: np.random.Generator | None = None,
                 **dataset_kwargs):
        super().__init__()
        if datasets is None:
            datasets, ratios = MIXTURE[bool(cfg.DATASET.TRAIN_3DPW)]
        if ratios is None or len(ratios) != len(datasets):
            raise ValueError(f"MixedDataset: need one ratio per dataset, got {datasets} / {ratios}")
        ratios = np.asarray(ratios, dtype=np.float64)
        if abs(ratios.sum() - 1.0) > 1e-6 or (ratios < 0).any():
            raise ValueError(f"MixedDataset: ratios must be >= 0 and sum to 1, got {ratios.tolist()}")
        dataset_kwargs.setdefault("use_augmentation", True)
        self.dataset_names = list(datasets)
        self.datasets = [BaseDataset(cfg, name, is_train=True, **dataset_kwargs) for name in datasets]
        self.ratios = ratios
        self.partition = np.cumsum(ratios)
        self.length = max(len(d) for d in self.datasets)
        self._rng = ProcessRng(rng, salt=(1,))

    def _get_rng(self) -> np.random.Generator:
        return self._rng.get()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        u = self._get_rng().uniform()
        k = int(min(np.searchsorted(self.partition, u, side="right"), len(self.datasets) - 1))
        ds = self.datasets[k]
        return ds[index % len(ds)]
