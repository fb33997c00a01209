"""Timing and memory probes of ``benchmarks/bench.py``: interleaved timed rounds, peak memory of a
call (CUDA allocator or the process's RSS high-water mark), the steady-state DataLoader period.

Times are seconds per call; memories are MB. Linux only for the RSS probes (/proc).
"""
from __future__ import annotations

import ctypes
import gc
import resource
import time

def _status_kb(key: str, pid="self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    raise KeyError(key)


def _private_mb(pid) -> float:
    """Private (unshared) memory of a process, MB (smaps_rollup)."""
    kb = 0.0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                kb += float(line.split()[1])
    return kb / 1024


class PeakMemory:
    """Peak memory growth (MB) over a ``with`` block: CUDA allocator stats, or the process's RSS."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.mb = float("nan")

    def __enter__(self):
        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except OSError:
                pass
            try:
                with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
                    f.write("5")
                self.hwm = True
                self.base = _status_kb("VmRSS")
            except OSError:  # no VmHWM reset: growth of the lifetime peak (a lower bound)
                self.hwm = False
                self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            peak = _status_kb("VmHWM") if self.hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.mb = max(peak - self.base, 0.0) / 1024
        return False


def timed(components, n, device) -> dict:
    """components: [(key, fn, reset or None)] -> {key: [n seconds]}.

    One warm-up call of each, then n rounds calling every component once in turn (so that a change
    of machine load hits all of them alike); ``reset`` runs before each call, untimed."""
    import torch

    cuda = device.type == "cuda"
    times = {key: [] for key, _, _ in components}
    for i in range(n + 1):
        for key, fn, reset in components:
            if reset is not None:
                reset()
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            if i:
                times[key].append(time.perf_counter() - t0)
    return times


def peak_memory_of(fn, device, reset=None) -> float:
    if reset is not None:
        reset()
    with PeakMemory(device) as pm:
        fn()
    return pm.mb


def to_device(batch, device):
    import torch

    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def loader_rate(loader, n, device):
    """(per-batch period in s at steady state, start-up s, first batch on the device, memory MB,
    workers' private MB): back-to-back batches, the first num_workers * prefetch_factor + 1 not timed.

    A loader with fewer than skip + n + 1 batches times as many as it has after the skipped ones
    (at least one); with none left the periods are None (the data row is then not measured)."""
    import torch

    cuda = device.type == "cuda"
    # skip the batches the workers may have ready before the first arrives (prefetch), time the rest
    skip = loader.num_workers * (loader.prefetch_factor or 0) + 1
    if len(loader) < 1:
        raise ValueError("the dataset gives no full batch (lower --batch-size)")
    n = min(n, len(loader) - skip - 1)
    t0 = time.perf_counter()
    it = iter(loader)
    first = to_device(next(it), device)
    startup = time.perf_counter() - t0
    if n < 1:
        del it
        return None, startup, first, float("nan"), []
    for _ in range(skip - 1):
        to_device(next(it), device)
    if cuda:
        torch.cuda.synchronize()
    periods = []
    for _ in range(n):
        t0 = time.perf_counter()
        b = to_device(next(it), device)
        if cuda:
            torch.cuda.synchronize()
        periods.append(time.perf_counter() - t0)
        del b
    with PeakMemory(device) as pm:
        b = to_device(next(it), device)
    mem = pm.mb
    if not cuda:  # the batch arrives in shared memory, not resident until touched: count its bytes
        mem = sum(v.nbytes for v in b.values() if torch.is_tensor(v)) / 2**20
    del b
    workers = [w.pid for w in getattr(it, "_workers", [])]
    try:
        wmem = [_private_mb(p) for p in workers]
    except OSError:
        wmem = []
    del it
    # the workers hand batches over in turn: a single period is 0 or ~num_workers x the mean,
    # so the per-batch cost is their mean, reported as n equal values
    mean = sum(periods) / len(periods)
    return [mean] * n, startup, first, mem, wmem
