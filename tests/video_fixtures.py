"""Writers of the raw-download formats the video datasets' fabricated trees need (not a test
module): used by tests/test_preprocess_h36m.py, tests/test_preprocess_mpi_inf_3dhp.py and
benchmarks/bench_preprocess_video.py.

``write_frames(path, frames, size, fourcc, fps)`` writes (H, W, 3) uint8 BGR frames as a video with
OpenCV (size = (W, H)); ``matlab_v73(path, build)`` writes an HDF5 file with MATLAB 7.3's 512-byte
header, ``build(h5py.File)`` filling it (Human3.6M box masks, MPI-INF-3DHP test annotations).
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

import cv2
import numpy as np


def write_frames(path: str, frames: Iterable[np.ndarray], size: tuple[int, int], fourcc: str = "mp4v",
                 fps: float = 50) -> None:
    """Write ``frames`` ((H, W, 3) uint8, ``size`` = (W, H)) to the video ``path`` (folders made)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not w.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write {fourcc} video here")
    for img in frames:
        w.write(img)
    w.release()


def matlab_v73(path: str, build: Callable) -> None:
    """An HDF5 file with MATLAB's 512-byte user block header; build(f) fills it."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        build(f)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 .")
