"""Human3.6M raw download -> ``h36m_valid_protocol1.npz``, ``h36m_valid_protocol2.npz``,
``h36m_train.npz``.

    python -m dsr.data.preprocess h36m --root RAW --out dsr_data [--split all|valid|train]
        [--extract-frames] [--images DIR] [--fits FILE] [--fix-frame-offset] [--workers N]

Expected under ``--root`` (the dataset's own download, unpacked), per subject S9, S11 (evaluation)
and S1, S5, S6, S7, S8 (training):
  S<k>/MyPoseFeatures/D3_Positions_mono/<Action>.<camera>.cdf   ("Poses > D3 Positions Mono")
  S<k>/MyPoseFeatures/D2_Positions/<Action>.<camera>.cdf        (training only: "D2 Positions")
  S<k>/MySegmentsMat/ground_truth_bb/<Action>.<camera>.mat      ("Segments > BBoxes MAT", v7.3)
  S<k>/Videos/<Action>.<camera>.mp4                             ("Videos"; with --extract-frames)
Frames go to ``<images>/images/`` (``--images`` defaults to ``--root``: point
``PATHS.DATASET_FOLDERS['h36m']`` (and ``h36m-p1``, ``h36m-p2``) at it).

As SPIN's ``h36m.py`` / ``h36m_train.py``: per subject, every CDF of ``D3_Positions_mono`` in name
order except the ``_ALL`` ones; the action is the file name's first part with spaces replaced by
``_`` (kept as spelled: S1's ``TakingPhoto`` / ``WalkingDog`` and the other subjects' ``Photo`` /
``WalkDog`` are not unified; the video and mask of a sequence are found under either spelling);
every 5th frame (frame index 0, 5, 10, ...); protocol 2 = camera 60457274 only; image name
``images/S9_Directions_1.54138969_000001.jpg`` (the 1-based frame number); box = ``[min, max + 1)``
of the pixels equal to 1 in frame ``i`` of the ground-truth box mask (``Masks[i, 0]``), scale
factor 0.9; ``S`` = the 17 joints ``[11, 6, 7, 8, 1, 2, 3, 12, 24, 14, 15, 17, 18, 19, 25, 26, 27]``
of the 32 in metres minus the first, in the 24-joint layout (confidence 1); training also ``part``
from ``D2_Positions`` (same joints, confidence 1). With ``--fits FILE`` (npz with ``pose`` (N, 72),
``shape`` (N, 10), ``has_smpl``; matched by ``imgname`` if it has one, else one per row in order)
the training file gets SMPL parameters; without, none (the MoSh fits are not distributable).
OpenPose detections are not written (the loader uses zeros).

SPIN behaviour reproduced by default:
- the evaluation frames are one video frame late: SPIN's ``h36m.py`` reads one frame before its
  loop, so the image named frame k (1-based) holds video frame k + 1 and a row exists only where
  the video has that next frame (SPIN's loop stops at the video's end, so the S11
  ``Directions.54138969`` video, which does not decode, gives no protocol-1 rows).
  ``--fix-frame-offset`` writes frame k under name k (the training script has no such read);
- a protocol-1 (and training) row is written only where the video has its frame (SPIN extracted
  while writing protocol 1); protocol 2 keeps every row of camera 60457274, as SPIN's, which never
  reads the video for it (a warning counts the rows whose image the video lacks).
Without ``--extract-frames`` the frames of a video are known from the record a finished
extraction leaves (``images/.frames/<video>.json``), or else from the images present.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
from loguru import logger

from dsr.data.preprocess.common import (J17_TO_J24, PreprocessError, Summary, add_frame_arguments,
                                        bbox_to_center_scale, frame_folders, load_fits, progress, require_dir,
                                        require_file, worker_pool)
from dsr.data.preprocess.video import VideoJob, extract_videos, read_record

__all__ = ["add_arguments", "run", "read_cdf_pose", "list_sequences", "sequence_rows"]

EVAL_SUBJECTS = (9, 11)
TRAIN_SUBJECTS = (1, 5, 6, 7, 8)
EVERY = 5
P2_CAMERA = "60457274"
SCALE_FACTOR = 0.9
H36M_J17 = [11, 6, 7, 8, 1, 2, 3, 12, 24, 14, 15, 17, 18, 19, 25, 26, 27]  # of the 32 joints
# the two spellings of two actions in the download (S1 uses the long ones)
ACTION_ALIASES = {"Photo": "TakingPhoto", "TakingPhoto": "Photo", "WalkDog": "WalkingDog", "WalkingDog": "WalkDog"}
OUT_P1 = "h36m_valid_protocol1.npz"
OUT_P2 = "h36m_valid_protocol2.npz"
OUT_TRAIN = "h36m_train.npz"


def add_arguments(p) -> None:
    p.add_argument("--split", choices=("all", "valid", "train"), default="all",
                   help="valid = protocols 1 and 2 (S9, S11); train = S1, S5-S8 (default: all)")
    add_frame_arguments(p, "extract the kept frames from the .mp4 videos (resumable)", "images/")
    p.add_argument("--fix-frame-offset", action="store_true",
                   help="evaluation images show the annotated frame (SPIN's are one frame late)")


def read_cdf_pose(path: str, width: int) -> np.ndarray:
    """The ``Pose`` variable of a Human3.6M CDF as (N, width) float64 (96 = 32x3 mm, 64 = 32x2 px)."""
    import cdflib

    require_file(path, "Human3.6M pose file (.cdf)")
    try:
        cdf = cdflib.CDF(path)
        info = cdf.cdf_info()
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise PreprocessError(f"{path}: cannot read as a CDF file: {e}") from e
    names = list(info.zVariables) + list(info.rVariables)
    if "Pose" not in names:
        raise PreprocessError(f"{path}: no 'Pose' variable (has {names})")
    arr = np.asarray(cdf.varget("Pose"))
    if arr.ndim == 3 and arr.shape[0] == 1:  # one record of (N, width)
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise PreprocessError(f"{path}: 'Pose' has shape {arr.shape}, expected (1, N, {width})")
    return arr.astype(np.float64)


@dataclass
class Sequence:
    """One ``<Action>.<camera>`` of a subject and its files."""

    subject: int
    stem: str  # file name without extension, e.g. "Directions 1.54138969"
    action: str  # SPIN's: first part, spaces -> '_'
    camera: str
    pose3d: str
    pose2d: str
    masks: str
    video: str

    def imgname(self, frame: int) -> str:
        """SPIN's image name of 0-based pose frame ``frame``."""
        return os.path.join("images", f"S{self.subject}_{self.action}.{self.camera}_{frame + 1:06d}.jpg")


def _find(folder: str, stem: str, ext: str, what: str) -> str:
    """``folder/stem.ext``, else the same with the action's other spelling; error if neither."""
    path = os.path.join(folder, stem + ext)
    if os.path.isfile(path):
        return path
    first, rest = stem.split(" ", 1) if " " in stem else stem.split(".", 1)
    sep = " " if " " in stem else "."
    if first in ACTION_ALIASES:
        alt = os.path.join(folder, ACTION_ALIASES[first] + sep + rest + ext)
        if os.path.isfile(alt):
            return alt
    raise PreprocessError(f"missing {what}: {path}")


def list_sequences(root: str, subject: int, skipped: Counter) -> list[Sequence]:
    """A subject's sequences in SPIN's order (sorted CDF names), ``_ALL`` ones counted in ``skipped``."""
    sdir = require_dir(os.path.join(root, f"S{subject}"), f"Human3.6M subject folder (S{subject} under --root)")
    pose_dir = require_dir(os.path.join(sdir, "MyPoseFeatures", "D3_Positions_mono"),
                           f"S{subject} 3D poses (Poses > D3 Positions Mono)")
    mask_dir = require_dir(os.path.join(sdir, "MySegmentsMat", "ground_truth_bb"),
                           f"S{subject} ground-truth boxes (Segments > BBoxes MAT)")
    names = sorted(n for n in os.listdir(pose_dir) if n.endswith(".cdf") and not n.startswith("."))
    if not names:
        raise PreprocessError(f"no .cdf file in {pose_dir}")
    seqs = []
    for name in names:
        parts = name.split(".")
        if len(parts) != 3:
            raise PreprocessError(f"{os.path.join(pose_dir, name)}: expected '<Action>.<camera>.cdf'")
        stem = name[:-4]
        action = parts[0].replace(" ", "_")
        if action.startswith("_ALL"):
            skipped["sequence _ALL (all actions, not a sequence)"] += 1
            continue
        seqs.append(Sequence(
            subject=subject, stem=stem, action=action, camera=parts[1],
            pose3d=os.path.join(pose_dir, name),
            pose2d=os.path.join(sdir, "MyPoseFeatures", "D2_Positions", name),
            masks=_find(mask_dir, stem, ".mat", "ground-truth box mask"),
            video=os.path.join(sdir, "Videos", stem + ".mp4")))
    return seqs


class _Masks:
    """The per-frame masks of a ground_truth_bb .mat (v7.3: ``Masks`` = (N, 1) references)."""

    def __init__(self, path: str):
        import h5py

        try:
            self.f = h5py.File(path, "r")
        except OSError as e:
            raise PreprocessError(f"{path}: not a MATLAB v7.3 (HDF5) file: {e}") from e
        if "Masks" not in self.f:
            keys = sorted(self.f.keys())
            self.f.close()
            raise PreprocessError(f"{path}: no 'Masks' (has {keys})")
        self.refs = self.f["Masks"]
        if self.refs.ndim != 2 or self.refs.shape[1] != 1:
            shape = self.refs.shape
            self.f.close()
            raise PreprocessError(f"{path}: 'Masks' has shape {shape}, expected (N, 1)")
        self.n = self.refs.shape[0]

    def box(self, i: int) -> tuple[int, int, int, int] | None:
        """[xmin, ymin, xmax + 1, ymax + 1] of the pixels equal to 1 in frame ``i``; None if none."""
        mask = self.f[self.refs[i, 0]][()].T  # MATLAB H x W, stored transposed
        ys = np.flatnonzero((mask == 1).any(axis=1))
        if len(ys) == 0:
            return None
        xs = np.flatnonzero((mask == 1).any(axis=0))
        return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1

    def close(self):
        self.f.close()


def _record_path(images: str, seq: Sequence) -> str:
    return os.path.join(images, "images", ".frames", f"S{seq.subject}_{seq.stem}.json")


def no_frame_reason(n_video: int | None) -> str:
    """The skip reason of a row whose image the video (or, without a record, the disk) lacks."""
    if n_video is None:
        return "no image on disk (no extraction record)"
    return "no video frame (the video ends before it)"


def sequence_rows(task) -> tuple[dict[str, np.ndarray], Counter]:
    """The rows of one sequence: ``task`` = (seq, lag, n_video or None, images, with_2d, need_all).

    Pose frame i (every 5th) has its image if video frame ``i + lag`` exists (``i + lag <
    n_video``, or, with no count known, if its image is on disk). Rows without it are left out
    unless ``need_all`` (protocol 2 keeps them, as SPIN's, which never looks at the video); they
    are flagged in ``has_frame``. Returns arrays (imgname, center, scale, S[, part], has_frame)
    and the skip counts."""
    seq, lag, n_video, images, with_2d, need_all = task
    skipped: Counter = Counter()
    p3 = read_cdf_pose(seq.pose3d, 96)
    n = len(p3)
    frames = np.arange(0, n, EVERY)
    skipped[f"not every {EVERY}th frame"] += n - len(frames)
    if n_video is not None:
        has_frame = frames + lag < n_video
    else:
        has_frame = np.array([os.path.isfile(os.path.join(images, seq.imgname(int(i)))) for i in frames], bool)
    p2 = read_cdf_pose(seq.pose2d, 64) if with_2d else None
    if p2 is not None:
        ok = frames < len(p2)
        skipped["no 2D pose for the frame"] += int(np.sum(~ok))
        frames, has_frame = frames[ok], has_frame[ok]
    masks = _Masks(seq.masks)
    keep, flags, centers, scales = [], [], [], []
    try:
        for i, f in zip(frames, has_frame):
            if not (f or need_all):
                skipped[no_frame_reason(n_video)] += 1
                continue
            if i >= masks.n:
                skipped["no box mask for the frame"] += 1
                continue
            box = masks.box(int(i))
            if box is None:
                skipped["empty box mask"] += 1
                continue
            c, s = bbox_to_center_scale(*box, SCALE_FACTOR)
            keep.append(int(i))
            flags.append(bool(f))
            centers.append(c)
            scales.append(s)
    finally:
        masks.close()
    keep = np.asarray(keep, np.int64)
    s17 = (p3[keep].reshape(-1, 32, 3) / 1000.0)[:, H36M_J17]
    s17 = s17 - s17[:, :1]
    S = np.zeros((len(keep), 24, 4))
    S[:, J17_TO_J24, :3] = s17
    S[:, J17_TO_J24, 3] = 1.0
    out = {"imgname": np.asarray([seq.imgname(int(i)) for i in keep], dtype=str),
           "center": np.asarray(centers, np.float64).reshape(-1, 2),
           "scale": np.asarray(scales, np.float64), "S": S,
           "has_frame": np.asarray(flags, bool)}
    if p2 is not None:
        part = np.zeros((len(keep), 24, 3))
        part[:, J17_TO_J24, :2] = p2[keep].reshape(-1, 32, 2)[:, H36M_J17]
        part[:, J17_TO_J24, 2] = 1.0
        out["part"] = part
    return out, skipped


def _video_frame_counts(seqs, lag, images, extract, workers, summary_name) -> tuple[list, Summary | None]:
    """Decoded frame count of each sequence's video (None: unknown, use the images on disk)."""
    if not extract:
        counts = []
        for seq in seqs:
            try:
                video = _find(os.path.dirname(seq.video), seq.stem, ".mp4", "video")
            except PreprocessError:
                video = seq.video  # the record alone (videos deleted after an extraction)
            counts.append(read_record(_record_path(images, seq), video))
        return counts, None
    jobs = []
    for seq in seqs:
        video = _find(os.path.dirname(seq.video), seq.stem, ".mp4", "video")
        n = len(read_cdf_pose(seq.pose3d, 96))
        wanted = {i + lag: os.path.join(images, seq.imgname(i)) for i in range(0, n, EVERY)}
        jobs.append(VideoJob(video, _record_path(images, seq), wanted))
    results = extract_videos(jobs, workers, desc=f"{summary_name} extract frames")
    fs = Summary(f"{summary_name} frames", path=os.path.join(images, "images"))
    fs.written = sum(r.written for r in results)
    fs.skip("already on disk (resume)", sum(r.existing for r in results))
    fs.skip("beyond the video's end", sum(r.missing for r in results))
    return [r.frames for r in results], fs


def _collect(tasks, workers: int, desc: str) -> list[tuple[dict, Counter]]:
    if workers <= 1 or len(tasks) <= 1:
        return [sequence_rows(t) for t in progress(tasks, desc=desc, unit="seq")]
    with worker_pool(workers) as pool:
        return list(progress(pool.imap(sequence_rows, tasks), desc=desc, total=len(tasks), unit="seq"))


def _concat(parts: list[dict]) -> dict[str, np.ndarray]:
    if not parts:
        return {"imgname": np.zeros(0, str), "center": np.zeros((0, 2)), "scale": np.zeros(0),
                "S": np.zeros((0, 24, 4)), "has_frame": np.zeros(0, bool)}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _split(root, images, subjects, lag, with_2d, need_all, args, name):
    """Every sequence of ``subjects`` (``need_all(seq)``: keep its rows without image, flagged):
    (sequences, video frame counts, per-sequence (rows, skips), scan skips, extraction summary)."""
    scan: Counter = Counter()
    seqs = [s for u in subjects for s in list_sequences(root, u, scan)]
    if with_2d:
        for s in seqs:
            require_file(s.pose2d, "Human3.6M 2D pose file (Poses > D2 Positions)")
    workers = max(1, int(args.workers))
    counts, fs = _video_frame_counts(seqs, lag, images, args.extract_frames, workers, name)
    img_dir = os.path.join(images, "images")
    if all(n is None for n in counts) and not (
            os.path.isdir(img_dir) and any(f.endswith(".jpg") for f in os.listdir(img_dir))):
        raise PreprocessError(f"no frames: neither records of an extraction ({img_dir}/.frames/) nor "
                              f"images in {img_dir}; run with --extract-frames")
    tasks = [(s, lag, n, images, with_2d, need_all(s)) for s, n in zip(seqs, counts)]
    results = _collect(tasks, workers, f"{name} rows")
    return seqs, counts, results, scan, fs


def _write(out_dir, out_name, summary, parts, fits=None):
    data = _concat(parts)
    data.pop("has_frame")
    if fits:
        data.update(load_fits(fits, [str(n) for n in data["imgname"]]))
    return summary.save(os.path.join(out_dir, out_name), data)


def _with_frame(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v[data["has_frame"]] for k, v in data.items()}


def run(args) -> list[Summary]:
    root, images, out_dir = frame_folders(args, "Human3.6M")
    summaries = []
    if args.split in ("all", "valid"):
        lag = 0 if args.fix_frame_offset else 1
        seqs, counts, results, scan, fs = _split(root, images, EVAL_SUBJECTS, lag, False,
                                                 lambda q: q.camera == P2_CAMERA, args, "h36m valid")
        if fs is not None:
            summaries.append(fs)
        p1, p2 = Summary("h36m-p1"), Summary("h36m-p2")
        for s in (p1, p2):
            for reason, k in scan.items():
                s.skip(reason, k)
        parts1, parts2 = [], []
        for seq, n_video, (data, skipped) in zip(seqs, counts, results):
            for reason, k in skipped.items():
                p1.skip(reason, k)
            # protocol 1 needs the frame; protocol 2 (SPIN never reads the video for it) does not
            parts1.append(_with_frame(data))
            p1.skip(no_frame_reason(n_video), int(np.sum(~data["has_frame"])))
            if seq.camera == P2_CAMERA:
                parts2.append(data)
                for reason, k in skipped.items():
                    p2.skip(reason, k)
            else:
                p2.skip(f"camera other than {P2_CAMERA} (protocol 2)", len(data["imgname"]) + sum(skipped.values()))
        no_image = sum(int(np.sum(~d["has_frame"])) for d in parts2)
        if no_image:
            logger.warning(f"h36m-p2: {no_image} rows whose frame the video lacks are kept, as in "
                           f"SPIN's file (it never reads the video for protocol 2); their images do not exist")
        summaries.append(_write(out_dir, OUT_P1, p1, parts1))
        summaries.append(_write(out_dir, OUT_P2, p2, parts2))
    if args.split in ("all", "train"):
        seqs, counts, results, scan, fs = _split(root, images, TRAIN_SUBJECTS, 0, True, lambda q: False,
                                                 args, "h36m train")
        if fs is not None:
            summaries.append(fs)
        s = Summary("h36m train")
        for reason, k in scan.items():
            s.skip(reason, k)
        for _, skipped in results:
            for reason, k in skipped.items():
                s.skip(reason, k)
        summaries.append(_write(out_dir, OUT_TRAIN, s, [d for d, _ in results], args.fits))
    return summaries
