"""Photos and videos -> meshes of every person (issue 29); nothing in training imports it.

- :mod:`.detector`  torchvision person detectors from a local weights file (no download)
- :mod:`.tracker`   IoU + Hungarian tracker (min-hits / max-age rules)
- :mod:`.one_euro`  One-Euro filter, rotation projection to SO(3)
- :mod:`.camera`    crop camera -> the full image's perspective camera (CLIFF / 4D-Humans)
- :mod:`.video`     streamed video reader / atomic mp4 writer, image reader
- :mod:`.render`    full-frame multi-person overlay (our rasterizer, one z-buffer)
- :mod:`.pipeline`  ``run_on_frames``: detect/track/crop/regress/convert/smooth a frame sequence
- :mod:`.outputs`   npz rows (one per person per frame), obj files, box files
"""
from .camera import crop_to_full_camera, full_image_focal
from .detector import DETECTORS, PersonDetector, default_weights_path
from .errors import InputError
from .one_euro import OneEuroFilter, project_to_so3
from .pipeline import FrameResult, Person, StageTimer, TrackSmoother, run_on_frames
from .render import render_people
from .tracker import IoUTracker, count_id_switches, iou_matrix
from .video import VideoReader, VideoWriter, read_image

__all__ = [
    "DETECTORS", "FrameResult", "InputError", "IoUTracker", "OneEuroFilter", "Person", "PersonDetector", "StageTimer",
    "TrackSmoother", "VideoReader", "VideoWriter", "count_id_switches", "crop_to_full_camera", "default_weights_path",
    "full_image_focal", "iou_matrix", "project_to_so3", "read_image", "render_people", "run_on_frames",
]
