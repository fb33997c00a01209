"""Streamed video and image I/O with OpenCV: frames are read one at a time, never extracted to disk.

``VideoReader(path)``: ``fps``, ``width``, ``height``, ``frame_count`` (the container's count,
may be approximate), iterate -> (H, W, 3) uint8 RGB frames. ``VideoWriter(path, fps, (w, h))``:
``write(rgb)``, ``close()``; writes ``<path>.part.mp4`` (codec mp4v) and renames it to ``path``
on close, so an interrupted run leaves no truncated result. ``read_image(path)`` -> RGB.
Unreadable inputs raise :class:`InputError` naming the file.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from .errors import InputError

__all__ = ["VideoReader", "VideoWriter", "read_image", "IMG_EXTS"]

IMG_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB; InputError if missing or undecodable."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: image not found")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise InputError(f"{path}: cannot decode the image (unsupported or corrupt file)")
    return img[:, :, ::-1].copy()


class VideoReader:
    """Frames of a video file, streamed (module docstring)."""

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise InputError(f"{path}: video not found")
        self.path = path
        self.cap = cv2.VideoCapture(path)
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok or first is None:
            self.cap.release()
            raise InputError(f"{path}: cannot decode the video (OpenCV reads no frame from it)")
        self._first = first
        self.height, self.width = first.shape[:2]
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if np.isfinite(fps) and fps > 0 else 30.0
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def __iter__(self):
        frame, self._first = self._first, None
        if frame is None:
            raise RuntimeError(f"{self.path}: a VideoReader is iterated once")
        while frame is not None:
            yield frame[:, :, ::-1].copy()
            ok, frame = self.cap.read()
            frame = frame if ok else None
        self.cap.release()

    def __len__(self):
        return self.frame_count


class VideoWriter:
    """mp4 writer with an atomic rename on close (module docstring)."""

    def __init__(self, path: str, fps: float, size_wh: tuple[int, int]):
        self.path = path
        self.tmp = path + ".part.mp4"
        self.size = (int(size_wh[0]), int(size_wh[1]))
        self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), self.size)
        if not self.writer.isOpened():
            raise InputError(f"{path}: OpenCV cannot open an mp4 writer here")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise ValueError(f"VideoWriter: frame of size {rgb.shape[1]}x{rgb.shape[0]}, expected {self.size}")
        self.writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        self.frames += 1

    def close(self) -> None:
        self.writer.release()
        os.replace(self.tmp, self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.writer.release()
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
