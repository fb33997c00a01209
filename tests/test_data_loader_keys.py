"""The DataLoader keys of issue 25 (DATASET.NUM_WORKERS incl. -1 = auto, PIN_MEMORY,
PERSISTENT_WORKERS, PREFETCH_FACTOR) reach the DataLoader that training and evaluation use."""
import cv2
import pytest
import torch

from dsr.config import get_cfg_defaults
from dsr.data import loader as L


class _Tiny(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"x": torch.tensor(float(i))}


def test_defaults_are_the_originals_and_pytorchs():
    d = get_cfg_defaults().DATASET
    assert (d.NUM_WORKERS, d.PIN_MEMORY, d.PERSISTENT_WORKERS, d.PREFETCH_FACTOR) == (8, True, False, 2)


@pytest.mark.parametrize("make", [L.train_dataloader, L.val_dataloader])
def test_keys_reach_the_dataloader(make, monkeypatch):
    cfg = get_cfg_defaults()
    cfg.DATASET.NUM_WORKERS = 3
    cfg.DATASET.PERSISTENT_WORKERS = True
    cfg.DATASET.PREFETCH_FACTOR = 5
    cfg.DATASET.PIN_MEMORY = True
    cfg.DATASET.BATCH_SIZE = 4
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    dl = make(cfg, _Tiny())
    assert (dl.num_workers, dl.persistent_workers, dl.prefetch_factor, dl.pin_memory) == (3, True, 5, True)
    assert dl.worker_init_fn.func is L.worker_init_fn and dl.batch_size == 4
    assert dl.worker_init_fn.keywords == {"keep_freed_mb": 128}
    assert dl.drop_last is (make is L.train_dataloader)
    cfg.DATASET.PERSISTENT_WORKERS = False
    cfg.DATASET.PREFETCH_FACTOR = 2
    cfg.DATASET.PIN_MEMORY = False
    dl = make(cfg, _Tiny())
    assert (dl.persistent_workers, dl.prefetch_factor, dl.pin_memory) == (False, 2, False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg.DATASET.PIN_MEMORY = True
    assert make(cfg, _Tiny()).pin_memory is False  # pinning needs CUDA


def test_no_workers_no_worker_options():
    cfg = get_cfg_defaults()
    cfg.DATASET.NUM_WORKERS = 0
    cfg.DATASET.PERSISTENT_WORKERS = True  # PyTorch refuses it without workers: not passed
    cfg.DATASET.PREFETCH_FACTOR = 4
    dl = L.train_dataloader(cfg, _Tiny(), batch_size=2)
    assert dl.num_workers == 0 and dl.persistent_workers is False and dl.prefetch_factor is None
    assert dl.worker_init_fn is None
    assert [b["x"].tolist() for b in dl] != []  # it loads


@pytest.mark.parametrize("cores,local,want", [(16, None, 15), (16, "2", 7), (2, None, 1), (1, None, 0), (3, "4", 0)])
def test_auto_workers(cores, local, want, monkeypatch):
    monkeypatch.setattr(L.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    cfg = get_cfg_defaults()
    cfg.DATASET.NUM_WORKERS = -1
    assert L.resolve_num_workers(cfg) == want
    assert L.train_dataloader(cfg, _Tiny(), batch_size=2).num_workers == want


def test_bad_worker_count_refused():
    cfg = get_cfg_defaults()
    cfg.DATASET.NUM_WORKERS = -2
    with pytest.raises(ValueError, match="DATASET.NUM_WORKERS"):
        L.train_dataloader(cfg, _Tiny())


def test_worker_init_sets_one_opencv_thread():
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        L.worker_init_fn(0)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)



def test_worker_init_applies_the_memory_setting(monkeypatch):
    got = []
    monkeypatch.setattr(L, "keep_freed_memory", lambda mb: got.append(mb))
    L.worker_init_fn(0, keep_freed_mb=77)
    assert got == [77]


_FAULTS = """
import resource, sys
sys.path.insert(0, {bench!r})
from loguru import logger
logger.remove()
from loader_fixtures import loader_cfg
from dsr.data import BaseDataset
from dsr.data.loader import keep_freed_memory
cfg = loader_cfg({root!r}, "nIOU")
cfg.DATASET.JPEG_REGION_DECODE = "off"
applied = keep_freed_memory({mb})
ds = BaseDataset(cfg, "h36m")
for i in range(3):
    ds[i % len(ds)]
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(12):
    ds[i % len(ds)]
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 12)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc malloc only")
def test_keeping_freed_memory_removes_the_page_faults_of_an_item(tmp_path):
    """DATASET.WORKER_KEEP_FREED_MB: a training item on 1000 x 1000 frames faults in fresh pages for
    the blocks it allocates (MBs) under glibc's defaults, hardly any with the setting."""
    import os
    import subprocess
    import sys

    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    sys.path.insert(0, bench)
    from loader_fixtures import make_loader_dataset

    root = str(tmp_path / "d")
    make_loader_dataset(root, os.path.join(root, "train.npz"), (1000, 1000), 3, "palette", seed=2)
    out = {}
    for mb in (0, 128):
        r = subprocess.run([sys.executable, "-c", _FAULTS.format(bench=bench, root=root, mb=mb)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        applied, faults = r.stdout.split()[-2:]
        out[mb] = (applied, float(faults))
    assert out[0][0] == "False" and out[128][0] == "True"
    assert out[0][1] > 300  # pages of 4 kB: > 1.2 MB faulted in per item
    assert out[128][1] < out[0][1] / 5, out
