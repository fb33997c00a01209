"""MPI-INF-3DHP raw download -> ``mpi_inf_3dhp_valid.npz`` (test) and ``mpi_inf_3dhp_train.npz``.

    python -m dsr.data.preprocess mpi-inf-3dhp --root RAW --out dsr_data [--split all|test|train]
        [--extract-frames] [--images DIR] [--fits FILE] [--workers N]

Expected under ``--root`` (the dataset's own download, unpacked):
  mpi_inf_3dhp_test_set/TS1..TS6/annot_data.mat        (MATLAB v7.3 = HDF5)
  mpi_inf_3dhp_test_set/TS1..TS6/imageSequence/img_%06d.jpg
  S1..S8/Seq1..Seq2/annot.mat                          (MATLAB v5)
  S1..S8/Seq1..Seq2/imageSequence/video_0..video_8.avi (train; cameras 0-2 and 4-8 are used)
Train frames go to ``<images>/S*/Seq*/imageFrames/video_<cam>/frame_%06d.jpg`` (``--images``
defaults to ``--root``: point ``PATHS.DATASET_FOLDERS['mpi-inf-3dhp']`` at it).

Test (SPIN ``test_data``): per sequence TS1..TS6, every frame with ``valid_frame`` set whose 17
``annot2`` joints all lie inside its image (``0 <= x < W``, ``0 <= y < H``, the size of the
frame's own JPEG: 2048x2048 for TS1-4, 1920x1080 for TS5-6); ``S`` from ``univ_annot3`` (the
universal, height-normalised skeleton the benchmark scores; not ``annot3``) in metres minus the
pelvis; box = min/max of the 17 joints, scale factor 1.2.
Keys: imgname ``mpi_inf_3dhp_test_set/TS<k>/imageSequence/img_%06d.jpg``, center (N, 2),
scale (N,), part (N, 24, 3), S (N, 24, 4) (17 joints set, confidence 1).

Train (SPIN ``train_data``): subjects S1..S8, sequences 1..2, cameras 0, 1, 2, 4..8; frame
``frame_%06d.jpg`` (k from 1) is annotation row k-1 of ``annot2`` / ``annot3`` (not univ) in
``annot.mat``; frames with a joint outside a 2048x2048 image are dropped, then every 10th of the
remaining frames is kept, counting across all sequences and cameras in that order (SPIN's
``counter % 10 == 1``: the 1st, 11th, 21st ... frame with all joints inside); ``S`` in metres
minus the pelvis (MPI joint 4); box and scale as the test set. With ``--fits FILE`` (SPIN's
static multi-view fits, or any npz with ``pose`` (N, 72), ``shape`` (N, 10), ``has_smpl``; with an
``imgname`` key matched by name, else one per row in order) the file also gets pose, shape,
has_smpl. OpenPose detections are not written (the loader uses zeros, as for a file without them).

Differences from SPIN's script, none of which changes the file SPIN writes on a file system that
lists a folder in name order:
- frames are paired with annotation rows by frame number, where SPIN pairs the i-th file that
  ``glob`` lists with row i (in the listing order, which is arbitrary on e.g. ext4);
- only the kept frames are written as images (SPIN writes every frame, ~10x the disk), each
  atomically; a rerun skips images on disk, and a record of each video's decoded frame count
  (``.frames.json`` beside its frames) lets a rerun skip the videos;
- ``camera.calibration`` is not read (SPIN reads it but uses nothing from it).
Without ``--extract-frames`` the frames of a video are taken from that record, or else from the
``frame_%06d.jpg`` files present (frames extracted by SPIN's script).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from dsr.data.preprocess.common import (J17_TO_J24, PreprocessError, Summary, add_frame_arguments,
                                        bbox_to_center_scale, frame_folders, load_fits, progress, require_dir,
                                        require_file)
from dsr.data.preprocess.video import VideoJob, extract_videos, header_frame_count, read_record

__all__ = ["add_arguments", "run", "test_rows", "train_plan", "select_train_frames"]

SCALE_FACTOR = 1.2
TEST_SEQUENCES = range(1, 7)
TRAIN_SUBJECTS = range(1, 9)
TRAIN_SEQUENCES = (1, 2)
TRAIN_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
TRAIN_IMAGE_SIZE = 2048  # SPIN's visibility check assumes 2048x2048 for every training camera
TRAIN_EVERY = 10
# the 17 joints (SPIN's order, see common.J17_TO_J24) among the 17 test-set joints / the 28
# training-set joints of MPI-INF-3DHP
TEST_J17 = [14, 11, 12, 13, 8, 9, 10, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]
TRAIN_J17 = [4, 18, 19, 20, 23, 24, 25, 3, 5, 6, 7, 9, 10, 11, 14, 15, 16]
TRAIN_ROOT = 4  # pelvis among the 28 training joints
OUT_TEST = "mpi_inf_3dhp_valid.npz"
OUT_TRAIN = "mpi_inf_3dhp_train.npz"


def add_arguments(p) -> None:
    p.add_argument("--split", choices=("all", "test", "train"), default="all",
                   help="which file(s) to write (default: both)")
    add_frame_arguments(p, "extract the kept training frames from the .avi videos (resumable)",
                        "S*/Seq*/imageFrames/")


# ------------------------------------------------------------------------------------ test set
def _read_test_annotations(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """annot2 (N, 17, 2), univ_annot3 (N, 17, 3), valid_frame (N,) from a v7.3 annot_data.mat."""
    import h5py

    require_file(path, "MPI-INF-3DHP test annotation (annot_data.mat)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise PreprocessError(f"{path}: not a MATLAB v7.3 (HDF5) file: {e}") from e
    with f:
        for k in ("annot2", "univ_annot3", "valid_frame"):
            if k not in f:
                raise PreprocessError(f"{path}: no '{k}' (has {sorted(f.keys())})")
        a2 = np.asarray(f["annot2"], dtype=np.float64)
        a3 = np.asarray(f["univ_annot3"], dtype=np.float64)
        valid = np.asarray(f["valid_frame"]).reshape(-1)
    n = len(valid)
    if a2.shape != (n, 1, 17, 2) or a3.shape != (n, 1, 17, 3):
        raise PreprocessError(f"{path}: expected annot2 ({n}, 1, 17, 2) and univ_annot3 ({n}, 1, 17, 3) "
                              f"(MATLAB 2x17x1xN, 3x17x1xN), got {a2.shape} and {a3.shape}")
    return a2[:, 0], a3[:, 0], valid


def _image_size(path: str) -> tuple[int, int]:
    """(height, width) of an image from its header."""
    from PIL import Image

    require_file(path, "MPI-INF-3DHP test image")
    try:
        with Image.open(path) as im:
            w, h = im.size
    except OSError as e:
        raise PreprocessError(f"{path}: cannot read the image: {e}") from e
    return h, w


def _all_inside(joints: np.ndarray, h: float, w: float) -> np.ndarray:
    """(..., 17, 2) -> (...) True where every joint lies in [0, w) x [0, h) (NaN counts as outside)."""
    x, y = joints[..., 0], joints[..., 1]
    return np.all((x >= 0) & (x < w) & (y >= 0) & (y < h), axis=-1)


def _rows(j2d: np.ndarray, s17: np.ndarray) -> dict[str, np.ndarray]:
    """(M, 17, 2) image joints, (M, 17, 3) root-centred metres -> center, scale, part, S."""
    m = len(j2d)
    center = np.zeros((m, 2))
    scale = np.zeros(m)
    for i in range(m):
        lo, hi = j2d[i].min(axis=0), j2d[i].max(axis=0)
        center[i], scale[i] = bbox_to_center_scale(lo[0], lo[1], hi[0], hi[1], SCALE_FACTOR)
    part = np.zeros((m, 24, 3))
    part[:, J17_TO_J24, :2] = j2d
    part[:, J17_TO_J24, 2] = 1.0
    S = np.zeros((m, 24, 4))
    S[:, J17_TO_J24, :3] = s17
    S[:, J17_TO_J24, 3] = 1.0
    return {"center": center, "scale": scale, "part": part, "S": S}


def test_rows(root: str, summary: Summary) -> dict[str, np.ndarray]:
    """The test file's arrays (SPIN's ``test_data``); skips counted in ``summary``."""
    test_root = require_dir(os.path.join(root, "mpi_inf_3dhp_test_set"),
                            "MPI-INF-3DHP test set (mpi_inf_3dhp_test_set/ under --root)")
    names, j2ds, s17s = [], [], []
    for ts in progress(TEST_SEQUENCES, desc="mpi-inf-3dhp test", unit="seq"):
        seq = os.path.join(test_root, f"TS{ts}")
        a2, a3, valid = _read_test_annotations(os.path.join(seq, "annot_data.mat"))
        for i in range(len(valid)):
            if valid[i] == 0:
                summary.skip("valid_frame = 0")
                continue
            name = os.path.join("mpi_inf_3dhp_test_set", f"TS{ts}", "imageSequence", f"img_{i + 1:06d}.jpg")
            j2d = a2[i, TEST_J17]
            h, w = _image_size(os.path.join(root, name))
            if not _all_inside(j2d, h, w):
                summary.skip("a joint outside the image")
                continue
            s17 = a3[i, TEST_J17] / 1000.0
            names.append(name)
            j2ds.append(j2d)
            s17s.append(s17 - s17[0])
    out = _rows(np.asarray(j2ds).reshape(-1, 17, 2), np.asarray(s17s).reshape(-1, 17, 3))
    out["imgname"] = np.asarray(names, dtype=str)
    return out


# ----------------------------------------------------------------------------------- train set
@dataclass
class TrainVideo:
    """One (subject, sequence, camera): its annotation row count and visibility flags."""

    subject: int
    seq: int
    cam: int
    n_annot: int
    inside: np.ndarray  # (n_annot,) bool: all 17 joints inside the 2048x2048 image
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # kept (1-based)

    @property
    def seq_dir(self) -> str:
        return os.path.join(f"S{self.subject}", f"Seq{self.seq}")

    def video(self, root: str) -> str:
        return os.path.join(root, self.seq_dir, "imageSequence", f"video_{self.cam}.avi")

    def frame_dir(self, images: str) -> str:
        return os.path.join(images, self.seq_dir, "imageFrames", f"video_{self.cam}")

    def imgname(self, k: int) -> str:
        return os.path.join(self.seq_dir, "imageFrames", f"video_{self.cam}", f"frame_{k:06d}.jpg")


def _read_train_annotations(path: str) -> tuple[np.ndarray, np.ndarray]:
    """annot2, annot3 cell arrays (one (n, 56) / (n, 84) array per camera) from a v5 annot.mat."""
    import scipy.io

    require_file(path, "MPI-INF-3DHP training annotation (annot.mat)")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise PreprocessError(f"{path}: cannot read as a MATLAB v5 .mat file: {e}") from e
    for k in ("annot2", "annot3"):
        if k not in mat:
            raise PreprocessError(f"{path}: no '{k}' (has {sorted(k for k in mat if not k.startswith('__'))})")
    a2, a3 = mat["annot2"].reshape(-1), mat["annot3"].reshape(-1)
    if len(a2) <= max(TRAIN_CAMERAS) or len(a3) != len(a2):
        raise PreprocessError(f"{path}: annot2 / annot3 have {len(a2)} / {len(a3)} cameras, "
                              f"expected at least {max(TRAIN_CAMERAS) + 1}")
    for c in TRAIN_CAMERAS:
        if a2[c].ndim != 2 or a2[c].shape[1] != 56 or a3[c].shape != (len(a2[c]), 84):
            raise PreprocessError(f"{path}: camera {c}: expected annot2 (n, 56) and annot3 (n, 84), "
                                  f"got {a2[c].shape} and {a3[c].shape}")
    return a2, a3


def train_plan(root: str) -> list[TrainVideo]:
    """Every training video in SPIN's order with its visibility flags (annotations only)."""
    plan = []
    seqs = [(u, s) for u in TRAIN_SUBJECTS for s in TRAIN_SEQUENCES]
    for u, s in progress(seqs, desc="mpi-inf-3dhp train annotations", unit="seq"):
        a2, _ = _read_train_annotations(os.path.join(root, f"S{u}", f"Seq{s}", "annot.mat"))
        for c in TRAIN_CAMERAS:
            j2d = np.asarray(a2[c], np.float64).reshape(-1, 28, 2)[:, TRAIN_J17]
            plan.append(TrainVideo(u, s, c, len(j2d), _all_inside(j2d, TRAIN_IMAGE_SIZE, TRAIN_IMAGE_SIZE)))
    return plan


def select_train_frames(plan: list[TrainVideo], available: list[np.ndarray], summary: Summary) -> None:
    """Set each video's kept frames (SPIN's rule) from its available frame numbers (1-based).

    Frames are taken in frame-number order; a frame without an annotation row is skipped (SPIN
    would fail on it), visibility drops a frame before the global every-10th counter sees it."""
    counter = 0
    for v, frames in zip(plan, available):
        frames = np.unique(np.asarray(frames, np.int64))
        summary.skip("video frame without annotation row", int(np.sum(frames > v.n_annot)))
        frames = frames[(frames >= 1) & (frames <= v.n_annot)]
        summary.skip("annotation row without video frame", v.n_annot - len(frames))
        visible = frames[v.inside[frames - 1]]
        summary.skip("a joint outside the 2048x2048 image", len(frames) - len(visible))
        count = counter + np.arange(1, len(visible) + 1)
        v.frames = visible[count % TRAIN_EVERY == 1]
        summary.skip(f"not every {TRAIN_EVERY}th visible frame", len(visible) - len(v.frames))
        counter += len(visible)


def _frames_on_disk(frame_dir: str) -> np.ndarray:
    """Frame numbers of the ``frame_%06d.jpg`` files in a folder."""
    if not os.path.isdir(frame_dir):
        return np.zeros(0, np.int64)
    nums = []
    for f in os.listdir(frame_dir):
        if f.startswith("frame_") and f.endswith(".jpg") and f[6:-4].isdigit():
            nums.append(int(f[6:-4]))
    return np.asarray(sorted(nums), np.int64)


def _record(v: TrainVideo, images: str) -> str:
    return os.path.join(v.frame_dir(images), ".frames.json")


def _available_without_extraction(plan, root, images) -> list[np.ndarray]:
    out = []
    for v in plan:
        video = v.video(root)
        n = read_record(_record(v, images), video)
        if n is not None:
            out.append(np.arange(1, n + 1))
            continue
        on_disk = _frames_on_disk(v.frame_dir(images))
        if len(on_disk) == 0:
            raise PreprocessError(f"no frames for {video}: neither a record of an extraction nor "
                                  f"frame_*.jpg in {v.frame_dir(images)}; run with --extract-frames")
        out.append(on_disk)
    return out


def _extract(plan, root, images, workers) -> tuple[list[np.ndarray], Summary]:
    """Extract the kept frames; returns the final availability and the extraction summary.

    The kept frames depend on every earlier video's frame count (the global counter), known only
    once decoded: start from the record or the container's count, extract, and repeat with the
    decoded counts where they differ from that guess (the rerun only writes what changed)."""
    guess = []
    for v in plan:
        video = require_file(v.video(root), "MPI-INF-3DHP training video")
        n = read_record(_record(v, images), video)
        guess.append(n if n is not None else (header_frame_count(video) or v.n_annot))
    frames_summary = Summary("mpi-inf-3dhp train frames", path=images)
    for _ in range(4):
        available = [np.arange(1, n + 1) for n in guess]
        select_train_frames(plan, available, Summary("scratch"))
        jobs = [VideoJob(v.video(root), _record(v, images),
                         {int(k) - 1: os.path.join(images, v.imgname(int(k))) for k in v.frames}) for v in plan]
        results = extract_videos(jobs, workers, desc="mpi-inf-3dhp extract frames")
        frames_summary.written += sum(r.written for r in results)
        decoded = [r.frames for r in results]
        if decoded == guess:
            frames_summary.skip("already on disk (resume)", sum(r.existing for r in results))
            return available, frames_summary
        guess = decoded
    raise PreprocessError(f"{root}: the training videos' frame counts did not settle after 4 passes")


def run(args) -> list[Summary]:
    root, images, out_dir = frame_folders(args, "MPI-INF-3DHP")
    summaries = []
    if args.split in ("all", "test"):
        s = Summary("mpi-inf-3dhp test")
        data = test_rows(root, s)
        summaries.append(s.save(os.path.join(out_dir, OUT_TEST), data))
    if args.split in ("all", "train"):
        plan = train_plan(root)
        if args.extract_frames:
            available, fs = _extract(plan, root, images, max(1, int(args.workers)))
            summaries.append(fs)
        else:
            available = _available_without_extraction(plan, root, images)
        s = Summary("mpi-inf-3dhp train")
        select_train_frames(plan, available, s)
        data = _train_arrays(plan, root, images, check_images=not args.extract_frames)
        if args.fits:
            data.update(load_fits(args.fits, [str(n) for n in data["imgname"]]))
        summaries.append(s.save(os.path.join(out_dir, OUT_TRAIN), data))
    return summaries


def _train_arrays(plan: list[TrainVideo], root: str, images: str, check_images: bool) -> dict[str, np.ndarray]:
    """The training file's arrays for the kept frames (annotations read again, per sequence)."""
    names, j2ds, s17s = [], [], []
    by_seq: dict[tuple[int, int], list[TrainVideo]] = {}
    for v in plan:
        by_seq.setdefault((v.subject, v.seq), []).append(v)
    for (u, s), videos in progress(list(by_seq.items()), desc="mpi-inf-3dhp train rows", unit="seq"):
        a2, a3 = _read_train_annotations(os.path.join(root, f"S{u}", f"Seq{s}", "annot.mat"))
        for v in videos:
            rows = v.frames - 1
            j2d = np.asarray(a2[v.cam], np.float64).reshape(-1, 28, 2)[rows][:, TRAIN_J17]
            s28 = np.asarray(a3[v.cam], np.float64).reshape(-1, 28, 3)[rows] / 1000.0
            s17 = s28[:, TRAIN_J17] - s28[:, TRAIN_ROOT:TRAIN_ROOT + 1]
            for k in v.frames:
                name = v.imgname(int(k))
                if check_images and not os.path.isfile(os.path.join(images, name)):
                    raise PreprocessError(f"missing training frame {os.path.join(images, name)}; "
                                          f"run with --extract-frames")
                names.append(name)
            j2ds.append(j2d)
            s17s.append(s17)
    out = _rows(np.concatenate(j2ds) if j2ds else np.zeros((0, 17, 2)),
                np.concatenate(s17s) if s17s else np.zeros((0, 17, 3)))
    out["imgname"] = np.asarray(names, dtype=str)
    return out
