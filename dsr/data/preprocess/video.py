"""Resumable frame extraction from the raw videos (MPI-INF-3DHP ``.avi``, Human3.6M ``.mp4``).

A video is decoded in order with OpenCV (``cv2.VideoCapture``: the frames SPIN's ``vidcap.read()``
loop sees) and only the frames a dataset keeps are written, as JPEG (``cv2.imencode``, OpenCV's
default quality 95, the bytes ``cv2.imwrite`` writes), each to a temporary file renamed into place:
a killed run leaves no half-written image, and a rerun skips every image already on disk.

After a full pass, a small record ``{"video": name, "bytes": size, "frames": n}`` is written (also
atomically) beside the frames: ``n`` is the number of frames the video decodes to. The datasets
use it to know which frames exist without decoding the video again (a rerun with every wanted
image on disk opens no video). A record whose ``bytes`` differ from the video's size is stale and
ignored.

- :func:`read_record` — the recorded frame count of a video, or None.
- :func:`header_frame_count` — the container's frame count (a guess, before any decode).
- :func:`extract_frames` — one video: write the wanted frames, return the decoded count.
- :func:`extract_videos` — many videos, in worker processes, with a progress bar.
"""
from __future__ import annotations

import json
import os
from contextlib import nullcontext
import tempfile
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import cv2

from dsr.data.preprocess.common import PreprocessError, progress, require_file, worker_pool

__all__ = ["VideoJob", "ExtractResult", "read_record", "header_frame_count", "extract_frames",
           "extract_videos"]


@dataclass
class VideoJob:
    """One video to extract: ``wanted`` maps 0-based decode index -> output image path."""

    video: str
    record: str
    wanted: Mapping[int, str] = field(default_factory=dict)


@dataclass
class ExtractResult:
    """What one :func:`extract_frames` call did."""

    video: str
    frames: int  # frames the video decodes to (from the record when no full decode was needed)
    written: int = 0  # images written by this call
    existing: int = 0  # wanted images already on disk (resume)
    missing: int = 0  # wanted indices at or beyond the video's end


def read_record(record: str, video: str) -> int | None:
    """The decoded frame count recorded for ``video``, or None (no record, or a stale one: the
    video's size differs). A record of a video no longer on disk is trusted (videos may be deleted
    after the extraction)."""
    try:
        with open(record) as f:
            rec = json.load(f)
        if os.path.exists(video) and int(rec["bytes"]) != os.path.getsize(video):
            return None
        return int(rec["frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_record(record: str, video: str, frames: int) -> None:
    rec = {"video": os.path.basename(video), "bytes": os.path.getsize(video), "frames": int(frames)}
    _write_atomic(record, json.dumps(rec).encode())


def header_frame_count(video: str) -> int | None:
    """The frame count the container declares (``CAP_PROP_FRAME_COUNT``), None if unknown.

    Only a guess: the decoded count can differ (a damaged file decodes fewer frames)."""
    cap = cv2.VideoCapture(video)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n if n > 0 else None


def extract_frames(video: str, wanted: Mapping[int, str], record: str) -> ExtractResult:
    """Write the frames ``wanted`` (0-based decode index -> image path) of ``video``; resumable.

    Images already on disk are kept (not decoded again into a file). With a valid record and every
    wanted image on disk the video is not opened; with a record, decoding stops after the last
    missing wanted frame; without one the whole video is decoded and the record written.
    A video OpenCV cannot open decodes to 0 frames (as SPIN's read loop, which stops at once).

    Returns: ExtractResult (frames = decoded count).
    """
    require_file(video, "video")
    known = read_record(record, video)
    todo = {i: p for i, p in wanted.items() if not os.path.exists(p)}
    existing = len(wanted) - len(todo)
    if known is not None:
        missing = sum(1 for i in todo if i >= known)
        todo = {i: p for i, p in todo.items() if i < known}
        if not todo:
            return ExtractResult(video, known, 0, existing, missing)
    last = max(todo) if (known is not None and todo) else None
    cap = cv2.VideoCapture(video)
    n = written = 0
    try:
        while cap.isOpened():
            if not cap.grab():
                break
            if n in todo:
                ok, img = cap.retrieve()
                if not ok:
                    break
                ok, buf = cv2.imencode(".jpg", img)
                if not ok:
                    raise PreprocessError(f"{video}: cannot encode frame {n} as JPEG")
                _write_atomic(todo[n], buf.tobytes())
                written += 1
            n += 1
            if last is not None and n > last:
                break
    finally:
        cap.release()
    if last is None:
        _write_record(record, video, n)
        frames = n
    else:
        frames = known
    missing = sum(1 for i in wanted if i >= frames)
    return ExtractResult(video, frames, written, existing, missing)


def _run_job(job: VideoJob) -> ExtractResult:
    return extract_frames(job.video, job.wanted, job.record)


def extract_videos(jobs: Sequence[VideoJob], workers: int = 1, desc: str = "extract frames") -> list[ExtractResult]:
    """:func:`extract_frames` for every job (in ``workers`` processes), in the order of ``jobs``."""
    results: list[ExtractResult | None] = [None] * len(jobs)
    bar = progress(range(len(jobs)), desc=desc, total=len(jobs), unit="video")
    written = 0
    with (worker_pool(workers) if workers > 1 and len(jobs) > 1 else nullcontext()) as pool:
        it = pool.imap(_run_job, jobs) if pool is not None else map(_run_job, jobs)
        for i in bar:
            results[i] = next(it)
            written += results[i].written
            bar.set_postfix(written=written)
    return results  # type: ignore[return-value]
