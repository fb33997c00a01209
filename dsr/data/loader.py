"""Dataset and DataLoader construction from the config (reference §5.1, §5.3).

* ``build_train_dataset(cfg)``: TRAIN_DS 'all' -> MixedDataset (§5.1); any other key (e.g.
  'synthetic', 'h36m') -> that one BaseDataset with TRAINING.USE_AUGM.
* ``build_val_dataset(cfg, name=None)``: the evaluation file of DATASET.VAL_DS (no augmentation;
  EMDB / SSP-3D through :class:`dsr.data.eval_dataset.EvalExtrasDataset`).
* ``train_dataloader(cfg, dataset)``: batch DATASET.BATCH_SIZE, shuffle DATASET.SHUFFLE_TRAIN,
  drop_last=True, DATASET.NUM_WORKERS workers (-1: ``auto_num_workers()``), DATASET.PIN_MEMORY (on
  CUDA), DATASET.PERSISTENT_WORKERS and DATASET.PREFETCH_FACTOR (with workers only), OpenCV on one
  thread in each worker and DATASET.WORKER_KEEP_FREED_MB (``worker_init_fn``).
* ``val_dataloader(cfg, dataset)``: no shuffle, keeps the last partial batch.
* ``resolve_num_workers(cfg)`` / ``auto_num_workers()``: DATASET.NUM_WORKERS; for -1 the cores
  this process may use (its CPU affinity), divided among the processes of this machine
  (LOCAL_WORLD_SIZE, DDP), less one for the process itself.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

import cv2
import torch
from torch.utils.data import DataLoader

from dsr.data.base_dataset import BaseDataset
from dsr.data.eval_dataset import EXTRAS_DATASETS, EvalExtrasDataset
from dsr.data.mixed_dataset import MixedDataset

__all__ = ["build_train_dataset", "build_val_dataset", "train_dataloader", "val_dataloader", "worker_init_fn",
           "auto_num_workers", "resolve_num_workers", "keep_freed_memory"]


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit


def keep_freed_memory(mb: int) -> bool:
    """Let this process's glibc malloc keep up to ``mb`` MB of freed memory for reuse (allocations
    below 32 MB from the heap, the heap trimmed only above ``mb`` MB free) instead of handing each
    large block back to the OS when it is freed and faulting fresh zeroed pages in for the next
    one. A training item allocates and frees several such blocks (the decoded frame, the mask rows,
    the crops): 40 % of a 1000 x 1000 item's CPU time went to those page faults (docs/loader.md).
    Returns False where there is no glibc (macOS, musl): nothing changes there."""
    if mb <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    return mallopt(_M_TRIM_THRESHOLD, int(mb) << 20) == 1 and ok


def worker_init_fn(worker_id: int, keep_freed_mb: int = 0) -> None:
    """A DataLoader worker: one OpenCV thread (the workers already run in parallel) and
    ``keep_freed_memory(keep_freed_mb)`` (DATASET.WORKER_KEEP_FREED_MB)."""
    cv2.setNumThreads(1)
    keep_freed_memory(keep_freed_mb)


def auto_num_workers() -> int:
    """Workers for DATASET.NUM_WORKERS = -1: the cores of this process's CPU affinity divided by the
    processes on this machine (LOCAL_WORLD_SIZE, set by DDP launchers; 1 otherwise), less one
    for the process itself (0 on a single core: items are then loaded in the process)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(0, cores // local - 1)


def resolve_num_workers(cfg) -> int:
    """DATASET.NUM_WORKERS, with -1 resolved by ``auto_num_workers``; other negatives are refused."""
    nw = int(cfg.DATASET.NUM_WORKERS)
    if nw == -1:
        return auto_num_workers()
    if nw < 0:
        raise ValueError(f"DATASET.NUM_WORKERS must be >= 0 or -1 (auto), got {nw}")
    return nw


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
    nw = resolve_num_workers(cfg) if num_workers is None else int(num_workers)
    extra = {}
    if nw > 0:  # PyTorch refuses these without workers
        extra = dict(persistent_workers=bool(cfg.DATASET.PERSISTENT_WORKERS),
                     prefetch_factor=int(cfg.DATASET.PREFETCH_FACTOR),
                     worker_init_fn=functools.partial(worker_init_fn,
                                                      keep_freed_mb=int(cfg.DATASET.WORKER_KEEP_FREED_MB)))
    return DataLoader(
        dataset,
        batch_size=int(batch_size or cfg.DATASET.BATCH_SIZE),
        shuffle=shuffle,
        num_workers=nw,
        pin_memory=bool(cfg.DATASET.PIN_MEMORY) and torch.cuda.is_available(),
        drop_last=drop_last,
        **extra,
    )


def train_dataloader(cfg, dataset, batch_size=None, num_workers=None) -> DataLoader:
    return _loader(cfg, dataset, bool(cfg.DATASET.SHUFFLE_TRAIN), True, batch_size, num_workers)


def val_dataloader(cfg, dataset, batch_size=None, num_workers=None) -> DataLoader:
    return _loader(cfg, dataset, False, False, batch_size, num_workers)
