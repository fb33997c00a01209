"""Shared pieces of the raw-dataset preprocessors (``python -m dsr.data.preprocess``).

Each dataset module (``pw3d``, ``mpi_inf_3dhp``, ``h36m``, ``coco``) turns a raw download into the
SPIN-format npz files that :func:`dsr.data.base_dataset.load_spin_npz` reads. What they share:

- :class:`PreprocessError`: one clear message naming the file and what is wrong or missing;
- :func:`require_file` / :func:`require_dir`: input checks that raise it;
- :func:`read_pickle_dict`: a downloaded pickle that must hold a dict, read without running code
  (``dsr.safe_pickle``);
- :func:`bbox_to_center_scale`: SPIN's box → ``center`` / ``scale`` rule;
- :func:`save_npz_atomic`: write to a temporary file in the same folder, then rename (a killed
  run never leaves a half-written npz under the final name);
- :class:`Summary`: rows written and rows skipped with their reasons, printed as a closing table
  (``Summary.save`` writes a file with :func:`save_npz_atomic` and records it);
- :func:`progress`: the tqdm progress bar every long loop uses;
- :func:`worker_pool`: the process pool of ``--workers``;
- :data:`J17_TO_J24`: where SPIN puts the 17 joints of Human3.6M / MPI-INF-3DHP (in SPIN's
  17-joint order) in the 24-joint ground-truth layout;
- :func:`add_frame_arguments`: ``--extract-frames``, ``--images`` and ``--fits`` of the video
  datasets (Human3.6M, MPI-INF-3DHP); :func:`frame_folders`: a run's root, frame and output folders;
- :func:`load_fits`: SMPL fits (``pose``, ``shape``, ``has_smpl``) given by ``--fits FILE``,
  aligned with the rows written.
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from tqdm import tqdm

__all__ = [
    "J17_TO_J24",
    "add_frame_arguments",
    "PreprocessError",
    "Summary",
    "bbox_to_center_scale",
    "frame_folders",
    "load_fits",
    "progress",
    "read_pickle_dict",
    "require_dir",
    "require_file",
    "save_npz_atomic",
    "worker_pool",
]


# 24-joint GT index of each of the 17 joints SPIN's Human3.6M and MPI-INF-3DHP scripts select, in
# their order: pelvis, L hip, L knee, L ankle, R hip, R knee, R ankle, spine, neck, jaw, head,
# L shoulder, L elbow, L wrist, R shoulder, R elbow, R wrist ("joints_idx" / "global_idx" there).
J17_TO_J24 = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]


class PreprocessError(RuntimeError):
    """A raw input is missing or malformed; the message names the file and what is wrong."""


def require_file(path: str, what: str) -> str:
    """Return ``path`` if it is a file, else raise PreprocessError naming it and ``what`` it is."""
    if not os.path.isfile(path):
        raise PreprocessError(f"missing {what}: {path}")
    return path


def require_dir(path: str, what: str) -> str:
    """Return ``path`` if it is a folder, else raise PreprocessError naming it and ``what`` it is."""
    if not os.path.isdir(path):
        raise PreprocessError(f"missing {what}: {path} is not a folder")
    return path


def read_pickle_dict(path: str, what: str) -> dict:
    """The dict in the pickle at ``path`` (numpy arrays and plain containers only, see
    dsr.safe_pickle); PreprocessError naming the file and ``what`` it should be (e.g. 'a 3DPW
    sequence pickle') when it is unreadable, names another class or holds no dict."""
    from dsr.safe_pickle import UnsafePickleError, load_pickle

    try:
        data = load_pickle(path)
    except UnsafePickleError as e:
        raise PreprocessError(f"{e} ({what})") from e
    except OSError as e:
        raise PreprocessError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
        raise PreprocessError(f"{path}: expected a dict ({what}), got {type(data).__name__}")
    return data


def bbox_to_center_scale(xmin: float, ymin: float, xmax: float, ymax: float,
                         scale_factor: float) -> tuple[np.ndarray, float]:
    """SPIN's rule: centre = box midpoint; scale = scale_factor · longer side / 200.

    The caller decides what the box is (SPIN: min/max of the visible keypoints for 3DPW, COCO and
    MPI-INF-3DHP; ``[min, max + 1)`` of the mask pixels for Human3.6M).

    Returns: center (2,) float64 in pixels, scale float.
    """
    center = np.array([(xmin + xmax) / 2.0, (ymin + ymax) / 2.0], dtype=np.float64)
    scale = float(scale_factor) * max(xmax - xmin, ymax - ymin) / 200.0
    return center, scale


def save_npz_atomic(path: str, **arrays) -> str:
    """``np.savez`` to a temporary file beside ``path``, then ``os.replace`` it into place.

    ``path`` must end in ``.npz``. Returns ``path``.
    """
    if not path.endswith(".npz"):
        raise ValueError(f"save_npz_atomic: {path} must end in .npz")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


@dataclass
class Summary:
    """What one output file received: rows written and rows skipped, by reason."""

    name: str
    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    path: str = ""

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += int(n)

    def save(self, path: str, arrays: dict) -> "Summary":
        """Write ``arrays`` to ``path`` (:func:`save_npz_atomic`); record the path and the rows
        (``len(arrays['imgname'])``) written. Returns this summary."""
        self.path = save_npz_atomic(path, **arrays)
        self.written = len(arrays["imgname"])
        return self

    def table(self) -> str:
        """The closing table: one line for the rows written, one per skip reason."""
        lines = [f"{self.name}: {self.path or '(not written)'}",
                 f"  {'rows written':<48} {self.written:>9}"]
        for reason, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {'skipped: ' + reason:<48} {n:>9}")
        if not self.skipped:
            lines.append(f"  {'skipped':<48} {0:>9}")
        return "\n".join(lines)


def progress(iterable: Iterable, desc: str, total: int | None = None, unit: str = "it"):
    """The progress bar of every preprocessing loop (tqdm on stderr)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True)


def add_frame_arguments(p, extract_help: str, images_receive: str) -> None:
    """Add ``--extract-frames`` (help ``extract_help``), ``--images`` (the folder receiving
    ``images_receive``, default ``--root``) and ``--fits`` (see :func:`load_fits`) to parser ``p``."""
    p.add_argument("--extract-frames", action="store_true", help=extract_help)
    p.add_argument("--images", default=None, help=f"folder receiving {images_receive} (default: --root)")
    p.add_argument("--fits", default=None,
                   help="npz with SMPL fits for the training rows (pose, shape, has_smpl[, imgname])")


def frame_folders(args, what: str) -> tuple[str, str, str]:
    """(root, images, out_dir) of a run with :func:`add_frame_arguments`: ``--root`` (checked to be
    a folder, ``what`` names it in the error), where frames go (``--images``, default the root) and
    ``<--out>/dataset_extras``."""
    root = require_dir(args.root, f"{what} root (--root)")
    return root, args.images or root, os.path.join(args.out, "dataset_extras")


def load_fits(path: str, imgnames: list[str]) -> dict[str, np.ndarray]:
    """SMPL fits for the rows ``imgnames`` from an npz with ``pose`` (M, 72), ``shape`` (M, 10[+])
    and optional ``has_smpl`` (M,) (default 1) — SPIN's static-fits form.

    With an ``imgname`` key the fits are matched to the rows by image name (every row must have
    one); without it the file must have exactly one fit per row, in the order written.

    Returns: {"pose": (N, 72), "shape": (N, 10), "has_smpl": (N,)} float64.
    """
    require_file(path, "fits file (--fits)")
    try:
        d = np.load(path, allow_pickle=False)
        fits = {k: d[k] for k in d.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise PreprocessError(f"{path}: cannot read as npz: {e}") from e
    for k in ("pose", "shape"):
        if k not in fits:
            raise PreprocessError(f"{path}: fits file has no '{k}' (has {sorted(fits)})")
    m = len(fits["pose"])
    pose = np.asarray(fits["pose"], np.float64).reshape(m, -1)
    shape = np.asarray(fits["shape"], np.float64).reshape(len(fits["shape"]), -1)
    has = np.asarray(fits["has_smpl"], np.float64).reshape(-1) if "has_smpl" in fits else np.ones(m)
    if pose.shape[1] != 72 or shape.shape[1] < 10 or len(shape) != m or len(has) != m:
        raise PreprocessError(f"{path}: expected pose (M, 72), shape (M, 10) and has_smpl (M,), got "
                              f"{pose.shape}, {shape.shape}, {has.shape}")
    if "imgname" in fits:
        index = {str(n): i for i, n in enumerate(fits["imgname"])}
        missing = [n for n in imgnames if n not in index]
        if missing:
            raise PreprocessError(f"{path}: no fit for {len(missing)} of the {len(imgnames)} rows "
                                  f"(first: {missing[0]})")
        rows = np.array([index[n] for n in imgnames], dtype=np.int64)
    else:
        if m != len(imgnames):
            raise PreprocessError(f"{path}: {m} fits for {len(imgnames)} rows; a fits file without "
                                  f"'imgname' must have one fit per row, in the order written")
        rows = np.arange(m)
    return {"pose": pose[rows], "shape": shape[rows, :10], "has_smpl": has[rows]}


def worker_pool(workers: int):
    """A ``multiprocessing`` pool of ``workers`` processes for the preprocessing steps.

    Forkserver with this package preloaded: the server imports it (and torch, through
    ``dsr.data``) once and forks each worker from it, where spawn would import torch in every
    worker; a worker never inherits the caller's OpenCV / HDF5 state. Spawn where forkserver
    does not exist (Windows)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["dsr.data.preprocess.common"])
    else:
        ctx = multiprocessing.get_context("spawn")
    return ctx.Pool(workers)
