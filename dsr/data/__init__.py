"""Data: SPIN-format datasets with DSR's Graphonomy targets, the training mixture, loaders and
the synthetic dataset generator (reference §3.1, §3.2, §5)."""
from dsr.data.base_dataset import BaseDataset, DatasetError, load_spin_npz
from dsr.data.loader import build_train_dataset, build_val_dataset, train_dataloader, val_dataloader
from dsr.data.mixed_dataset import MixedDataset

__all__ = [
    "BaseDataset",
    "DatasetError",
    "MixedDataset",
    "load_spin_npz",
    "build_train_dataset",
    "build_val_dataset",
    "train_dataloader",
    "val_dataloader",
]
