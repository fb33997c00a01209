"""Multi-person tracking by box overlap: IoU cost + Hungarian assignment, constant-velocity boxes.

``IoUTracker(iou_threshold=0.3, min_hits=3, max_age=30)``; per frame call ``update(boxes)`` with
(N, 4) ``[x, y, w, h]`` detections -> (N,) track ids (int, >= 0), or ``predict_only()`` on frames
without detection (``--det-every``) -> the live tracks' predicted boxes.

Rules (SORT's, written from its paper; no SORT code):
  * every track predicts its box for the new frame with a constant velocity (centre, width,
    height; the velocity is the last observed displacement per frame, averaged with weight
    ``velocity_momentum`` over earlier ones);
  * cost = 1 - IoU(predicted track box, detection); ``scipy.optimize.linear_sum_assignment``
    finds the assignment of least total cost; a pair is kept only if IoU >= ``iou_threshold``;
  * what is left (fast motion, a track whose velocity is not known yet, a detection gap) is
    matched on distance: a track and a detection of similar height (ratio < ``max_height_ratio``,
    1.3) whose centres lie less than ``max_centre_distance`` (0.5) x the larger height apart,
    the gate widened by 0.1 x height per frame of gap beyond the first (at most 1.5 x; with
    ``--det-every`` detections are several frames apart), nearest first (Hungarian again);
  * an unmatched detection starts a new track (ids 0, 1, 2, ... in order of birth);
  * a track is *confirmed* (reported) once matched in ``min_hits`` consecutive detection frames,
    or at once within the first ``min_hits`` frames of the video (people present from the start are
    not dropped); ``reported(track)`` says whether to output it;
  * a track missed for more than ``max_age`` consecutive frames is deleted (frames without a
    detection pass count too; its id is never reused).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["iou_matrix", "IoUTracker", "Track", "count_id_switches"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) ``[x, y, w, h]`` -> (N, M) intersection over union."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _to_cxcywh(b):
    return np.array([b[0] + b[2] / 2, b[1] + b[3] / 2, b[2], b[3]], np.float64)


def _to_xywh(c):
    return np.array([c[0] - c[2] / 2, c[1] - c[3] / 2, c[2], c[3]], np.float64)


@dataclass
class Track:
    id: int
    state: np.ndarray  # (4,) cx, cy, w, h of the last observation or prediction
    observed: np.ndarray  # (4,) the last observation
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    hits: int = 1  # consecutive matched detection frames
    age: int = 0  # frames since the last match
    born: int = 0  # frame index of birth
    confirmed: bool = False

    @property
    def box(self) -> np.ndarray:
        return _to_xywh(self.state)


class IoUTracker:
    """See the module docstring."""

    def __init__(self, iou_threshold: float = 0.3, min_hits: int = 3, max_age: int = 30,
                 velocity_momentum: float = 0.5, max_centre_distance: float = 0.5, max_height_ratio: float = 1.3):
        if min_hits < 1 or max_age < 0 or not 0 <= iou_threshold <= 1:
            raise ValueError(f"IoUTracker: need min_hits >= 1, max_age >= 0, 0 <= iou_threshold <= 1; got "
                             f"{min_hits}, {max_age}, {iou_threshold}")
        self.iou_threshold, self.min_hits, self.max_age = float(iou_threshold), int(min_hits), int(max_age)
        self.momentum = float(velocity_momentum)
        self.max_centre_distance, self.max_height_ratio = float(max_centre_distance), float(max_height_ratio)
        self.tracks: list[Track] = []
        self.frame = -1
        self.next_id = 0

    def _advance(self) -> None:
        self.frame += 1
        for t in self.tracks:
            t.state = t.state + t.velocity
            t.state[2:] = np.maximum(t.state[2:], 1.0)
            t.age += 1
        self.tracks = [t for t in self.tracks if t.age <= self.max_age]

    def predict_only(self) -> list[Track]:
        """A frame without detection: move every track by its velocity; -> reported tracks."""
        self._advance()
        return [t for t in self.tracks if self.reported(t)]

    def update(self, boxes) -> np.ndarray:
        """A frame with detections (N, 4) -> (N,) track ids."""
        self._advance()
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        if len(self.tracks) and len(boxes):
            iou = iou_matrix(np.stack([t.box for t in self.tracks]), boxes)
            rows, cols = linear_sum_assignment(1.0 - iou)
            for r, c in zip(rows, cols):
                if iou[r, c] < self.iou_threshold:
                    continue
                self._assign(self.tracks[r], boxes[c])
                ids[c] = self.tracks[r].id
        self._match_by_distance(boxes, ids)
        for t in self.tracks:
            if t.age > 0 and not t.confirmed:
                t.hits = 0  # a tentative track must be matched in consecutive detection frames
        for c in np.nonzero(ids < 0)[0]:
            obs = _to_cxcywh(boxes[c])
            self.tracks.append(Track(id=self.next_id, state=obs, observed=obs.copy(), born=self.frame))
            ids[c] = self.next_id
            self.next_id += 1
        for t in self.tracks:
            if t.hits >= self.min_hits or t.born < self.min_hits:
                t.confirmed = True
        return ids

    def _match_by_distance(self, boxes: np.ndarray, ids: np.ndarray) -> None:
        """Second pass for what the IoU pass left: a track and a detection of similar height
        (ratio within 1 / ``max_height_ratio`` .. ``max_height_ratio``) whose centres are less than
        ``max_centre_distance`` x the larger height apart (+ 0.1 per frame of gap beyond the first,
        at most 1.5), least distance first (Hungarian)."""
        taken = set(ids.tolist())
        free_t = [t for t in self.tracks if t.id not in taken and t.age > 0]
        free_d = np.nonzero(ids < 0)[0]
        if not free_t or not len(free_d):
            return
        tb = np.stack([t.state for t in free_t])  # (n, 4) cx, cy, w, h
        db = np.stack([_to_cxcywh(boxes[c]) for c in free_d])
        hmax = np.maximum(tb[:, None, 3], db[None, :, 3])
        dist = np.linalg.norm(tb[:, None, :2] - db[None, :, :2], axis=-1) / hmax
        ratio = np.maximum(tb[:, None, 3] / db[None, :, 3], db[None, :, 3] / tb[:, None, 3])
        ages = np.array([t.age for t in free_t], np.float64)[:, None]
        gate = np.minimum(self.max_centre_distance + 0.1 * (ages - 1), 1.5)  # frames apart: people move further
        ok = (dist < gate) & (ratio < self.max_height_ratio)
        rows, cols = linear_sum_assignment(np.where(ok, dist, 1e6))
        for r, c in zip(rows, cols):
            if ok[r, c]:
                self._assign(free_t[r], boxes[free_d[c]])
                ids[free_d[c]] = free_t[r].id

    def _assign(self, t: Track, box) -> None:
        obs = _to_cxcywh(box)
        v = (obs - t.observed) / t.age  # displacement per frame since the last match
        t.velocity = v if t.hits <= 1 else self.momentum * v + (1 - self.momentum) * t.velocity
        t.state, t.observed = obs, obs
        t.hits += 1
        t.age = 0

    def reported(self, track_or_id) -> bool:
        """Whether a track (or id) is output: confirmed and not deleted."""
        if not isinstance(track_or_id, Track):
            track_or_id = next((t for t in self.tracks if t.id == int(track_or_id)), None)
            if track_or_id is None:
                return False
        return track_or_id.confirmed


def count_id_switches(track_ids, truth_ids) -> int:
    """Identity switches: over frames in order, the number of times a true person's track id
    differs from its previous one (CLEAR-MOT's IDSW). ``track_ids``/``truth_ids``: per frame, a
    list of (track id, true id) pairs may be given as two parallel lists of arrays."""
    last: dict = {}
    switches = 0
    for tr, gt in zip(track_ids, truth_ids):
        for t, g in zip(np.asarray(tr).ravel(), np.asarray(gt).ravel()):
            if t < 0:
                continue
            if g in last and last[g] != t:
                switches += 1
            last[g] = t
    return switches
