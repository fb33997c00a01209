"""Whole-file runs behind ``demo.py``: a video or a list of images -> overlays, npz rows, obj files.

``process_video(model, path, out_folder, ...)`` streams ``path`` through :func:`run_on_frames`
(tracking, optional smoothing), renders every frame (:func:`render_people`) into
``<stem>_result.mp4`` (the input's frame count and fps), and writes ``<stem>.npz`` /
``<stem>_obj/<frame>_<track>.obj`` on request. ``process_image(...)`` does one photo:
``<stem>_result.png``, ``<stem>.npz``, ``<stem>_<k>.obj``. Both return a :class:`RunSummary`
(frames, people, tracks, seconds per stage: read, detect, track, regress, render, write).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import InputError
from .outputs import ParamRows, write_obj
from .pipeline import StageTimer, TrackSmoother, run_on_frames
from .render import render_people
from .tracker import IoUTracker
from .video import VideoReader, VideoWriter, read_image

__all__ = ["RunSummary", "process_video", "process_image"]

STAGES = ("read", "detect", "track", "regress", "render", "write")


@dataclass
class RunSummary:
    outputs: list
    frames: int = 0
    people: int = 0
    tracks: set = field(default_factory=set)
    seconds: dict = field(default_factory=dict)
    track_ids: list = field(default_factory=list)  # per frame: the (N,) track ids

    def line(self) -> str:
        total = sum(self.seconds.values())
        stages = ", ".join(f"{s} {self.seconds.get(s, 0.0):.1f}" for s in STAGES)
        fps = self.frames / total if total > 0 else float("nan")
        return (f"{self.frames} frame(s), {self.people} people, {len(self.tracks)} track(s); seconds: {stages} "
                f"(total {total:.1f}, {fps:.2f} frames/s)")


def _faces(model) -> np.ndarray:
    return model.body.faces.cpu().numpy()


def process_video(model, path: str, out_folder: str, *, boxes=None, detector=None, det_every: int = 1,
                  smooth: bool = False, min_cutoff: float = 1.0, beta: float = 0.5, min_hits: int = 3,
                  max_age: int = 30, iou_threshold: float = 0.3, batch_size: int = 8, box_scale: float = 1.2,
                  save_params: bool = False, save_obj: bool = False, render: bool = True, device="cpu",
                  boxes_source: str = "boxes", progress: bool = True) -> RunSummary:
    from tqdm import tqdm

    timer = StageTimer()
    with timer("read"):
        reader = VideoReader(path)
    if boxes is not None and reader.frame_count > 0 and len(boxes) != reader.frame_count:
        raise InputError(f"{boxes_source}: {len(boxes)} entries for a video of {reader.frame_count} frames ({path})")
    stem = os.path.splitext(os.path.basename(path))[0]
    os.makedirs(out_folder, exist_ok=True)
    out_mp4 = os.path.join(out_folder, f"{stem}_result.mp4")
    summary = RunSummary(outputs=[out_mp4] if render else [])
    writer = VideoWriter(out_mp4, reader.fps, (reader.width, reader.height)) if render else None
    rows = ParamRows() if save_params else None
    obj_dir = os.path.join(out_folder, f"{stem}_obj")
    if save_obj:
        os.makedirs(obj_dir, exist_ok=True)
    faces = _faces(model)
    smoother = TrackSmoother(reader.fps, min_cutoff, beta) if smooth else None
    tracker = IoUTracker(iou_threshold, min_hits, max_age)
    frames = run_on_frames(model, reader, boxes=boxes, detector=detector, tracker=tracker, smoother=smoother,
                           det_every=det_every, fps=reader.fps, batch_size=batch_size, box_scale=box_scale,
                           device=device, timer=timer, boxes_source=boxes_source)
    bar = tqdm(frames, total=reader.frame_count or None, desc=stem, unit="frame", disable=not progress)
    try:
        for fr in bar:
            summary.frames += 1
            summary.people += len(fr.people)
            summary.tracks.update(p.track_id for p in fr.people)
            summary.track_ids.append(np.array([p.track_id for p in fr.people], np.int64))
            if writer is not None:
                with timer("render"):
                    img, _ = render_people(fr.image, np.stack([p.vertices + p.cam_t for p in fr.people]) if fr.people
                                           else np.zeros((0, 1, 3)), faces, fr.focal_length,
                                           colors=_colors(fr.people), device=device)
                with timer("write"):
                    writer.write(img)
            with timer("write"):
                for p in fr.people:
                    if rows is not None:
                        rows.add(fr.index, p, fr.focal_length)
                    if save_obj:
                        write_obj(os.path.join(obj_dir, f"{fr.index:06d}_{p.track_id}.obj"), p.vertices + p.cam_t, faces)
    except BaseException:
        if writer is not None:
            writer.__exit__(RuntimeError, None, None)
        raise
    if boxes is not None and summary.frames != len(boxes):
        if writer is not None:
            writer.__exit__(RuntimeError, None, None)
        raise InputError(f"{boxes_source}: {len(boxes)} entries for a video of {summary.frames} frames ({path})")
    with timer("write"):
        if writer is not None:
            writer.close()
        if rows is not None:
            out_npz = os.path.join(out_folder, f"{stem}.npz")
            rows.save(out_npz, (reader.width, reader.height), reader.fps)
            summary.outputs.append(out_npz)
    summary.seconds = dict(timer.seconds)
    return summary


def _colors(people):
    from .render import person_color

    return [person_color(p.track_id if p.track_id >= 0 else k) for k, p in enumerate(people)]


def process_image(model, path: str, out_folder: str, *, boxes=None, detector=None, batch_size: int = 8,
                  box_scale: float = 1.2, save_params: bool = False, save_obj: bool = False, device="cpu",
                  boxes_source: str = "boxes") -> RunSummary:
    timer = StageTimer()
    with timer("read"):
        img = read_image(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    fr = next(run_on_frames(model, [img], boxes=None if boxes is None else [boxes], detector=detector,
                            batch_size=batch_size, box_scale=box_scale, device=device, timer=timer,
                            boxes_source=boxes_source))
    faces = _faces(model)
    out_png = os.path.join(out_folder, f"{stem}_result.png")
    with timer("render"):
        verts = np.stack([p.vertices + p.cam_t for p in fr.people]) if fr.people else np.zeros((0, 1, 3))
        overlay, _ = render_people(img, verts, faces, fr.focal_length, colors=_colors(fr.people), device=device)
    summary = RunSummary(outputs=[out_png], frames=1, people=len(fr.people))
    with timer("write"):
        cv2.imwrite(out_png, overlay[:, :, ::-1])
        if save_params:
            rows = ParamRows()
            for p in fr.people:
                rows.add(0, p, fr.focal_length)
            rows.save(os.path.join(out_folder, f"{stem}.npz"), (img.shape[1], img.shape[0]), 0.0)
            summary.outputs.append(os.path.join(out_folder, f"{stem}.npz"))
        if save_obj:
            for k, p in enumerate(fr.people):
                write_obj(os.path.join(out_folder, f"{stem}_{k}.obj"), p.vertices + p.cam_t, faces)
    summary.seconds = dict(timer.seconds)
    return summary
