"""Person detection with torchvision's COCO detectors, loaded from a local file only (no download).

``PersonDetector(name, weights=None, device='cpu', threshold=0.5, max_people=10, size=None)``;
``detector(frames)`` with frames a list of (H, W, 3) uint8 RGB images -> one (N, 5) float array
per frame, rows ``[x, y, w, h, score]`` in pixels, people (COCO label 1) above ``threshold``,
at most ``max_people``, largest box first. ``size``: the shorter image side the detector resizes
to (torchvision's own transform; None = its default, 800 for these three models; the frame's own
height, e.g. 480, skips the upscaling and is ~2x cheaper on the CPU).

Names (``DETECTORS``): ``fasterrcnn_mobilenet_v3`` (torchvision
``fasterrcnn_mobilenet_v3_large_fpn``), ``fasterrcnn_resnet50`` (``fasterrcnn_resnet50_fpn``),
``keypointrcnn`` (``keypointrcnn_resnet50_fpn``; its 17 keypoints give the person box:
centre = mean of the keypoints whose heat-map score is > 0, side = their largest extent, a tight
box like the other detectors' so that the pipeline's ``box_scale`` (1.2) makes the crop 1.2 x the
extent, the demo's OpenPose rule, applied once).

Weights: ``weights`` (a path), else torchvision's own cache, the file torchvision would download
(``$TORCH_HOME/hub/checkpoints/<name>-<hash>.pth``, ``TORCH_HOME`` defaulting to
``~/.cache/torch``). The network is built with ``weights=None, weights_backbone=None`` and the
state dict loaded from that file: nothing is ever downloaded. Without a file: :class:`InputError`
naming the file to get and the ``--det-weights`` flag.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .errors import InputError

__all__ = ["DETECTORS", "PersonDetector", "default_weights_path", "detector_weights_url", "box_from_keypoints"]

DETECTORS = {
    "fasterrcnn_mobilenet_v3": ("fasterrcnn_mobilenet_v3_large_fpn", "FasterRCNN_MobileNet_V3_Large_FPN_Weights"),
    "fasterrcnn_resnet50": ("fasterrcnn_resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights"),
    "keypointrcnn": ("keypointrcnn_resnet50_fpn", "KeypointRCNN_ResNet50_FPN_Weights"),
}
PERSON_LABEL = 1  # COCO category "person" in torchvision's detectors


def _check_name(name: str) -> None:
    if name not in DETECTORS:
        raise InputError(f"--detector: unknown detector {name!r}; choose one of {', '.join(DETECTORS)} or none")


def detector_weights_url(name: str) -> str:
    """The URL torchvision downloads the COCO weights of ``name`` from (read from its weights enum)."""
    import torchvision.models.detection as det

    _check_name(name)
    return getattr(det, DETECTORS[name][1]).DEFAULT.url


def default_weights_path(name: str) -> str:
    """Where torchvision caches those weights: ``<torch.hub.get_dir()>/checkpoints/<file name>``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(detector_weights_url(name)))


def box_from_keypoints(kp: np.ndarray, visible: np.ndarray, rescale: float = 1.2):
    """(K, 2) keypoints, (K,) bool -> [x, y, w, h] square box by the OpenPose rule, or None (< 2 visible)."""
    pts = kp[visible]
    if len(pts) < 2:
        return None
    c = pts.mean(0)
    side = rescale * float((pts.max(0) - pts.min(0)).max())
    return [c[0] - side / 2, c[1] - side / 2, side, side]


class PersonDetector:
    """A torchvision COCO detector kept to people (module docstring)."""

    def __init__(self, name: str = "fasterrcnn_mobilenet_v3", weights: str | None = None, device: str = "cpu",
                 threshold: float = 0.5, max_people: int = 10, size: int | None = None):
        import torchvision.models.detection as det

        _check_name(name)
        path = weights or default_weights_path(name)
        if not os.path.isfile(path):
            if weights:
                raise InputError(f"{weights}: detector weights file not found (--det-weights)")
            raise InputError(f"no weights for detector {name}: get {detector_weights_url(name)} and pass "
                             f"--det-weights PATH (or put it at {path}), or give --boxes FILE.json or --detector none")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{path}: cannot read the detector weights ({type(e).__name__}: {e})") from None
        if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
            sd = sd["model"]
        kw = {} if size is None else dict(min_size=int(size), max_size=int(round(size * 1333 / 800)))
        net = getattr(det, DETECTORS[name][0])(weights=None, weights_backbone=None, **kw)
        try:
            net.load_state_dict(sd)
        except (RuntimeError, TypeError, AttributeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"{path}: not the weights of torchvision's {DETECTORS[name][0]} ({msg})") from None
        self.name, self.path = name, path
        self.net = net.to(device).eval()
        self.device = device
        self.threshold, self.max_people = float(threshold), int(max_people)

    @torch.no_grad()
    def __call__(self, frames) -> list[np.ndarray]:
        x = [torch.from_numpy(np.ascontiguousarray(f)).to(self.device).permute(2, 0, 1).float() / 255.0 for f in frames]
        out = []
        for o in self.net(x):
            keep = (o["labels"] == PERSON_LABEL) & (o["scores"] >= self.threshold)
            boxes = o["boxes"][keep].cpu().numpy().astype(np.float64)
            scores = o["scores"][keep].cpu().numpy().astype(np.float64)
            rows = []
            if "keypoints" in o:
                kps = o["keypoints"][keep].cpu().numpy()
                vis = (o["keypoints_scores"][keep] > 0).cpu().numpy()  # heat-map logit > 0
                for kp, v, s, b in zip(kps, vis, scores, boxes):
                    box = box_from_keypoints(kp[:, :2], v, rescale=1.0)  # tight: box_scale adds the 1.2
                    rows.append((box if box is not None else [b[0], b[1], b[2] - b[0], b[3] - b[1]]) + [s])
            else:
                rows = [[b[0], b[1], b[2] - b[0], b[3] - b[1], s] for b, s in zip(boxes, scores)]
            out.append(sort_boxes(np.asarray(rows, np.float64).reshape(-1, 5), self.max_people))
        return out


def sort_boxes(rows: np.ndarray, max_people: int) -> np.ndarray:
    """(N, 5) ``[x, y, w, h, score]`` -> the ``max_people`` largest (by area), largest first."""
    order = np.argsort(-(rows[:, 2] * rows[:, 3]), kind="stable")
    return rows[order][:max_people]
