"""SPIN-format npz dataset with DSR's Graphonomy targets (reference §3.2, §5.2, §5.3).

``BaseDataset(cfg, dataset, is_train)`` reads ``PATHS.DATASET_NPZ_PATH/<PATHS.TRAIN_FILES or
TEST_FILES [dataset]>`` and images under ``PATHS.DATASET_FOLDERS[dataset]``; Graphonomy colour
masks under ``<root>/grph_sequences/`` (training with ``with_dsr_targets`` only).

npz keys (N samples): imgname (N,) str, center (N, 2), scale (N,), optional part (N, 24, 3),
openpose (N, 25, 3), S (N, 24, 4), pose (N, 72), shape (N, 10), has_smpl (N,), gender (N,)
('m'/'f'), maskname, partname; added: has_pose_3d (N,) per-row 0/1 (default: 1 for every row of a
file with S, SPIN's rule), so that one file can mix 3D-supervised and 2D-only rows.

Item (one sample; tensors, collated batch first by the DataLoader):
  index, sample_index (row of the npz), img (3, 224, 224) ImageNet-normalised float32,
  pose (72,), betas (10,), imgname (full path), pose_3d (24, 4) (zeros if none),
  keypoints (49, 3) in [-1, 1] crop coords + conf, has_smpl, has_pose_3d (float32 0/1),
  scale (augmented), center (2,), orig_shape (2,) (H, W), is_flipped, rot_angle, gender
  (0 m / 1 f / 2 n (neutral: EMDB) / -1 unknown), dataset_name, maskname, partname.
  pose / betas are zeros (then rotated and flipped like a pose) where has_smpl is 0 (the original).
  With DSR targets (training): grph_dsr_mc_label (224, 224) float32, grph_dsr_c_label (224, 224) int64,
  dsr_c_class_weight (8,) float32, valid_labels_dsr_mc (5,) float32, valid_labels_dsr_c (8,)
  ones, and grph_dsr_mc_dist_mat (224, 224) float32 only when DSR.DSR_MC_LOSS_TYPE == 'DistM'.
  (The original's (9, F, 3) per-item texture is not built: the renderer builds face features
  from the prior and ``valid_labels_dsr_mc`` once per batch. Its ``grph``, the (3, 224, 224)
  float crop of the colour mask, is not returned either: nothing reads it but a debug dump.)

Speed (issue 25, docs/loader.md): the crops convert to float32 only the pixels their warp reads
(``crop_region_cv2``, into a float32 scratch of the frame's shape kept per dataset and process:
12 MB for a 1000 x 1000 frame), the Graphonomy mask is read only down to the rows and in the box
that background removal keeps (``dsr.data.frame_io.read_mask``); the items are those of the
whole-frame path (tests/test_loader_equivalence.py).

Randomness: augmentation draws from a per-process ``np.random.Generator`` seeded from
``torch.initial_seed()`` (different per DataLoader worker and per epoch), or from the ``rng``
given to the constructor.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from loguru import logger
from torch.utils.data import Dataset

from dsr.constants import GRAPHONOMY_FLIP_PERM, IMG_NORM_MEAN, IMG_NORM_STD
from dsr.data import graphonomy as G
from dsr.data.frame_io import FrameReadError, read_mask, truncated_jpeg
from dsr.data.jpeg_region import get_region_decoder
from dsr.data.image_utils import (
    ScratchBuffer,
    crop_region_cv2,
    crop_transform,
    j2d_processing,
    j3d_processing,
    pose_processing,
    sample_augmentation,
)
from dsr.data.rng import ProcessRng
from dsr.safe_pickle import UnsafePickleError, load_npz

__all__ = ["BaseDataset", "DatasetError", "load_spin_npz", "dataset_npz_path", "dataset_root"]

TRAIN_DATASETS = ("h36m", "coco", "mpi-inf-3dhp", "3dpw", "synthetic")
TEST_DATASETS = ("h36m-p1", "h36m-p2", "mpi-inf-3dhp", "3dpw", "synthetic-test", "emdb-1", "emdb-2", "ssp-3d")

# key -> expected shape after the leading N (None = any)
NPZ_SHAPES = {
    "imgname": (),
    "center": (2,),
    "scale": (),
    "part": (24, 3),
    "openpose": (25, 3),
    "S": (24, 4),
    "pose": (72,),
    "shape": (10,),
    "has_smpl": (),
    "has_pose_3d": (),
    "gender": (),
    "maskname": (),
    "partname": (),
}
REQUIRED_KEYS = ("imgname", "center", "scale")


class DatasetError(ValueError):
    """A dataset file (npz, image, mask) is missing or malformed; the message names the file."""


def dataset_root(cfg, dataset: str) -> str:
    folders = cfg.PATHS.DATASET_FOLDERS
    if dataset not in folders:
        raise DatasetError(f"unknown dataset '{dataset}': PATHS.DATASET_FOLDERS has {sorted(folders.keys())}")
    return folders[dataset]


def dataset_npz_path(cfg, dataset: str, is_train: bool) -> str:
    table = cfg.PATHS.TRAIN_FILES if is_train else cfg.PATHS.TEST_FILES
    name = "PATHS.TRAIN_FILES" if is_train else "PATHS.TEST_FILES"
    if dataset not in table:
        raise DatasetError(f"dataset '{dataset}' has no {'training' if is_train else 'evaluation'} file: "
                           f"{name} has {sorted(table.keys())}")
    return os.path.join(cfg.PATHS.DATASET_NPZ_PATH, table[dataset])


def load_spin_npz(path: str) -> dict:
    """Load and validate a SPIN-format npz; returns a dict of arrays (known keys only).

    Raises DatasetError naming the file when it is missing, lacks a required key, has a key of
    the wrong shape, or its keys disagree on the number of samples.
    """
    if not os.path.isfile(path):
        raise DatasetError(f"dataset file not found: {path} (SPIN-format npz; see docs/data.md)")
    try:
        raw = np.load(path, allow_pickle=False)
        data = {k: raw[k] for k in raw.files if k in NPZ_SHAPES}
        files = raw.files
    except ValueError:  # object arrays (older SPIN/PARE files store some strings that way): their
        # members go through the restricted unpickler (numpy arrays and plain containers only)
        try:
            raw = load_npz(path)
        except UnsafePickleError as e:
            raise DatasetError(str(e)) from e
        data, files = {k: raw[k] for k in raw if k in NPZ_SHAPES}, list(raw)
    except Exception as e:  # noqa: BLE001 - a corrupt file
        raise DatasetError(f"{path}: cannot read as npz: {e}") from e
    for k in REQUIRED_KEYS:
        if k not in data:
            raise DatasetError(f"{path}: missing key '{k}' (has {sorted(files)})")
    n = len(data["imgname"])
    for k, v in data.items():
        want = NPZ_SHAPES[k]
        if v.ndim == 0 or v.shape[0] != n or tuple(v.shape[1:]) != want:
            if k == "scale" and v.ndim == 2 and v.shape == (n, 1):
                data[k] = v[:, 0]
                continue
            raise DatasetError(f"{path}: key '{k}' has shape {v.shape}, expected {(n,) + want}")
    return data


# G.palette_index's output (0..19, 255 = unknown colour) -> labels: unknown -> 0 (the original's
# decode), and for flipped items with DSR.FLIP_SWAP_LR_MASKS the left/right swap (G.swap_lr_labels)
_FOUND_TO_LABEL = np.zeros(256, dtype=np.uint8)
_FOUND_TO_LABEL[:len(GRAPHONOMY_FLIP_PERM)] = np.arange(len(GRAPHONOMY_FLIP_PERM))
_FOUND_TO_LABEL_SWAP = np.zeros(256, dtype=np.uint8)
_FOUND_TO_LABEL_SWAP[:len(GRAPHONOMY_FLIP_PERM)] = GRAPHONOMY_FLIP_PERM
_MEAN = np.asarray(IMG_NORM_MEAN, dtype=np.float32)
_STD = np.asarray(IMG_NORM_STD, dtype=np.float32)


def _augment_normalize(bgr: np.ndarray, flip: int, pn: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR float32 crop in [0, 255] -> (3, H, W) RGB ImageNet-normalised float32: the
    original's ``np.clip(flip(img) * pn, 0, 255) / 255``, then ``(img - mean) / std``, the same
    float32 operations per pixel, done on contiguous planes (no strided passes over the crop)."""
    planes = cv2.split(bgr)[::-1]  # R, G, B
    out = np.empty((3,) + bgr.shape[:2], dtype=np.float32)
    pn32 = pn.astype(np.float32)
    for c in range(3):
        o = out[c]
        np.multiply(planes[c][:, ::-1] if flip else planes[c], pn32[c], out=o)
        np.clip(o, 0.0, 255.0, out=o)
        np.divide(o, np.float32(255.0), out=o)
        np.subtract(o, _MEAN[c], out=o)
        np.divide(o, _STD[c], out=o)
    return out


# The float32 frame-size scratch of crop_region_cv2: one per process, shared by every dataset of the
# process (a process makes one item at a time; each warp reads only the box it has just filled).
# Module state, so a forked or spawned DataLoader worker gets its own.
_SCRATCH = ScratchBuffer()


class BaseDataset(Dataset):
    """One SPIN-format dataset (see the module docstring for items and keys).

    Args:
        cfg: the yacs config (PATHS.*, DATASET.*, DSR.*).
        dataset: 'h36m', 'h36m-p1', 'h36m-p2', 'mpi-inf-3dhp', 'coco', '3dpw', 'synthetic',
            'synthetic-test'.
        is_train: training file and augmentation; False = evaluation file, no augmentation.
        use_augmentation: defaults to TRAINING.USE_AUGM (only used when is_train).
        with_dsr_targets: load Graphonomy masks and build the DSR targets (training only);
            defaults to cfg.METHOD == 'dsr'.
        num_images: > 0 draws a random subset with replacement (DATASET.NUM_IMAGES); for
            evaluation sets, > 0 keeps the first N (DATASET.VAL_NUM_IMAGES).
        rng: generator for augmentation (default: per process, seeded from torch).
        subset_seed: seed of the NUM_IMAGES subset draw (default SEED_VALUE if >= 0, else 0).
    """

    def __init__(self, cfg, dataset: str, is_train: bool = True, use_augmentation: bool | None = None,
                 with_dsr_targets: bool | None = None, num_images: int | None = None,
                 rng: np.random.Generator | None = None, subset_seed: int | None = None):
        super().__init__()
        self.dataset = dataset
        self.is_train = is_train
        self.root = dataset_root(cfg, dataset)
        self.npz_path = dataset_npz_path(cfg, dataset, is_train)
        self.img_res = int(cfg.DATASET.IMG_RES)
        self.noise_factor = float(cfg.DATASET.NOISE_FACTOR)
        self.rot_factor = float(cfg.DATASET.ROT_FACTOR)
        self.scale_factor = float(cfg.DATASET.SCALE_FACTOR)
        if use_augmentation is None:
            use_augmentation = bool(cfg.TRAINING.USE_AUGM)
        self.use_augmentation = bool(use_augmentation) and is_train
        if with_dsr_targets is None:
            with_dsr_targets = cfg.METHOD == "dsr"
        self.with_dsr_targets = bool(with_dsr_targets) and is_train
        self.with_dist_mat = self.with_dsr_targets and cfg.DSR.DSR_MC_LOSS_TYPE == "DistM"
        self.swap_lr_masks = bool(cfg.DSR.FLIP_SWAP_LR_MASKS)
        self.mask_warp_nearest = bool(cfg.DSR.MASK_WARP_NEAREST)
        self.jpeg_region_decode = str(cfg.DATASET.JPEG_REGION_DECODE)
        get_region_decoder(self.jpeg_region_decode)  # a bad library path fails here, not in a worker
        # the original's 60-pixel thresholds of the DSR targets (224-px crops), or the same share of
        # the crop at DATASET.IMG_RES (DSR.MIN_PIXELS_SCALE_WITH_RES)
        scale_px = bool(cfg.DSR.MIN_PIXELS_SCALE_WITH_RES)
        self.mc_min_px = G.min_pixels(G.DSR_MC_MIN_PIXELS, cfg.DATASET.IMG_RES, scale_px)
        self.c_min_px = G.min_pixels(G.DSR_C_MIN_PIXELS, cfg.DATASET.IMG_RES, scale_px)
        self.max_missing_mask_fraction = float(cfg.DATASET.MAX_MISSING_MASK_FRACTION)
        self._rng = ProcessRng(rng, salt=())

        data = load_spin_npz(self.npz_path)
        n = len(data["imgname"])
        if num_images is None:
            num_images = int(cfg.DATASET.NUM_IMAGES if is_train else cfg.DATASET.VAL_NUM_IMAGES)
        if num_images > 0:
            if is_train:
                if subset_seed is None:
                    subset_seed = max(int(cfg.SEED_VALUE), 0)
                rows = np.random.default_rng(subset_seed).integers(0, n, size=num_images)
            else:
                rows = np.arange(min(num_images, n))
        else:
            rows = np.arange(n)
        self.rows = rows
        self.imgname = np.asarray([str(x) for x in data["imgname"][rows]])
        self.center = data["center"][rows].astype(np.float64)
        self.scale = data["scale"][rows].astype(np.float64)
        m = len(rows)
        if "pose" in data and "shape" in data:
            self.pose = data["pose"][rows].astype(np.float64)
            self.betas = data["shape"][rows].astype(np.float64)
            self.has_smpl = (data["has_smpl"][rows].astype(np.float32) if "has_smpl" in data
                             else np.ones(m, dtype=np.float32))
        elif "pose" in data or "shape" in data:
            raise DatasetError(f"{self.npz_path}: has 'pose' or 'shape' without the other")
        else:
            self.pose = np.zeros((m, 72))
            self.betas = np.zeros((m, 10))
            self.has_smpl = np.zeros(m, dtype=np.float32)
        if "S" in data:
            self.pose_3d = data["S"][rows].astype(np.float64)
            self.has_pose_3d = (data["has_pose_3d"][rows].astype(np.float32) if "has_pose_3d" in data
                                else np.ones(m, dtype=np.float32))
        else:
            self.pose_3d = None
            self.has_pose_3d = np.zeros(m, dtype=np.float32)
        if is_train and cfg.DATASET.IGNORE_3D:
            self.has_smpl = np.zeros(m, dtype=np.float32)
            self.has_pose_3d = np.zeros(m, dtype=np.float32)
        part = data["part"][rows] if "part" in data else np.zeros((m, 24, 3))
        openpose = data["openpose"][rows] if "openpose" in data else np.zeros((m, 25, 3))
        self.keypoints = np.concatenate([openpose, part], axis=1)  # the npz's dtype: see j2d_processing
        if "gender" in data:
            g = [str(x) for x in data["gender"][rows]]
            bad = sorted({x for x in g if x not in ("m", "f", "n")})
            if bad:
                raise DatasetError(f"{self.npz_path}: key 'gender' has values {bad}, expected 'm', 'f' (or 'n')")
            self.gender = np.array([{"m": 0, "f": 1, "n": 2}[x] for x in g], dtype=np.int64)
        else:
            self.gender = -np.ones(m, dtype=np.int64)
        self.maskname = np.asarray([str(x) for x in data["maskname"][rows]]) if "maskname" in data else None
        self.partname = np.asarray([str(x) for x in data["partname"][rows]]) if "partname" in data else None

        self.missing_masks = 0
        if self.with_dsr_targets:
            self._count_missing_masks()
        logger.info(f"dataset {dataset} ({'train' if is_train else 'eval'}): {m} samples from {self.npz_path}")

    # ------------------------------------------------------------------ setup helpers
    def _count_missing_masks(self) -> None:
        uniq = np.unique(self.imgname)
        missing = {name for name in uniq if not os.path.isfile(G.mask_path(self.root, name))}
        self._missing = missing
        n_missing = int(sum(1 for name in self.imgname if name in missing))
        self.missing_masks = n_missing
        if n_missing == 0:
            return
        frac = n_missing / max(1, len(self.imgname))
        example = G.mask_path(self.root, sorted(missing)[0])
        msg = (f"dataset {self.dataset}: {n_missing} of {len(self.imgname)} samples ({100 * frac:.2f}%) "
               f"have no Graphonomy mask (e.g. {example})")
        if frac > self.max_missing_mask_fraction:
            raise DatasetError(msg + f": above DATASET.MAX_MISSING_MASK_FRACTION = {self.max_missing_mask_fraction}")
        logger.warning(msg + ": an all-zero mask is used for them (the original's behaviour)")

    def _get_rng(self) -> np.random.Generator:
        return self._rng.get()

    @property
    def _scratch(self) -> ScratchBuffer:
        return _SCRATCH

    def __len__(self) -> int:
        return len(self.imgname)

    # ------------------------------------------------------------------ item
    def augm_params(self):
        if self.use_augmentation:
            return sample_augmentation(self._get_rng(), self.noise_factor, self.rot_factor, self.scale_factor)
        return 0, np.ones(3), 0.0, 1.0

    def _read_image_bytes(self, path: str) -> bytes:
        """The file's bytes, checked for truncation; DatasetError naming the file."""
        if not os.path.isfile(path):
            raise DatasetError(f"dataset {self.dataset}: image not found: {path} (listed in {self.npz_path})")
        with open(path, "rb") as f:  # read once: decoded here and checked for truncation
            data = f.read()
        if truncated_jpeg(data):
            raise DatasetError(f"dataset {self.dataset}: truncated JPEG {path} (no end-of-image marker after "
                               "its last scan; OpenCV would decode it with the missing part grey)")
        return data

    def _decode_bgr(self, data: bytes, path: str) -> np.ndarray:
        """(H, W, 3) uint8 BGR, as cv2.imread (EXIF orientation applied); DatasetError naming the file."""
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"dataset {self.dataset}: cannot decode image {path}")
        return img

    def _open_frame(self, path: str):
        """(shape, fill) of the frame: its (H, W, 3) and ``fill(dst, x0, y0, x1, y1)`` writing the BGR
        pixels [y0:y1, x0:x1] into ``dst``; only that region is decoded when a libturbojpeg >= 3 can
        (dsr/data/jpeg_region.py), else the whole frame, with OpenCV, at once."""
        data = self._read_image_bytes(path)
        dec = get_region_decoder(self.jpeg_region_decode)
        header = dec.header(data) if dec is not None else None
        if header is None:
            bgr = self._decode_bgr(data, path)

            def fill(dst, x0, y0, x1, y1):
                dst[...] = bgr[y0:y1, x0:x1]
            return bgr.shape, fill

        def fill_region(dst, x0, y0, x1, y1):
            got = dec.decode(data, header, x0, y0, x1, y1)
            if got is None:  # refused or failed: OpenCV's whole-frame decode (and its errors)
                dst[...] = self._decode_bgr(data, path)[y0:y1, x0:x1]
                return
            pixels, rx, ry = got
            dst[...] = pixels[y0 - ry:y1 - ry, x0 - rx:x1 - rx]
        return (header[0], header[1], 3), fill_region

    def __getitem__(self, index: int) -> dict:
        imgname = self.imgname[index]
        path = os.path.join(self.root, imgname)
        center = self.center[index]
        scale = self.scale[index]
        flip, pn, rot, sc = self.augm_params()
        res = self.img_res

        shape, fill = self._open_frame(path)
        orig_shape = np.array(shape[:2])

        # the whole-frame float32 crop of the original, converting only the pixels the warp reads;
        # the channels are independent, so BGR -> RGB after the warp is the same (on 224 x 224)
        transform = crop_transform(center, sc * scale, res, rot)  # shared by the image and the mask crop
        img = _augment_normalize(crop_region_cv2(shape, fill, center, sc * scale, res, rot=rot,
                                                 buf=self._scratch, transform=transform), flip, pn)

        keypoints = j2d_processing(self.keypoints[index], center, sc * scale, rot, flip, res)
        if self.pose_3d is not None:
            pose_3d = j3d_processing(self.pose_3d[index], rot, flip)
        else:
            pose_3d = np.zeros((24, 4), dtype=np.float32)
        if self.has_smpl[index]:
            pose, betas = self.pose[index], self.betas[index]
        else:  # the original: no SMPL parameters -> zeros
            pose, betas = np.zeros(72), np.zeros(10)
        pose = pose_processing(pose, rot, flip)

        item = {
            "index": index,
            "sample_index": int(self.rows[index]),
            "img": torch.from_numpy(img),
            "pose": torch.from_numpy(pose),
            "betas": torch.from_numpy(betas.astype(np.float32)),
            "imgname": path,
            "pose_3d": torch.from_numpy(pose_3d),
            "keypoints": torch.from_numpy(keypoints),
            "has_smpl": torch.tensor(float(self.has_smpl[index])),
            "has_pose_3d": torch.tensor(float(self.has_pose_3d[index])),
            "scale": torch.tensor(float(sc * scale)),
            "center": torch.from_numpy(center.astype(np.float32)),
            "orig_shape": torch.from_numpy(orig_shape),
            "is_flipped": int(flip),
            "rot_angle": torch.tensor(float(rot)),
            "gender": int(self.gender[index]),
            "dataset_name": self.dataset,
            "maskname": "" if self.maskname is None else self.maskname[index],
            "partname": "" if self.partname is None else self.partname[index],
        }
        if self.with_dsr_targets:
            item.update(self._dsr_targets(index, imgname, orig_shape, center, sc * scale, rot, flip, keypoints,
                                          transform))
        return item

    def _dsr_targets(self, index, imgname, orig_shape, center, scale, rot, flip, keypoints, transform=None) -> dict:
        mpath = G.mask_path(self.root, imgname)
        mask = None
        if os.path.isfile(mpath):
            try:
                mask = read_mask(mpath)
            except FrameReadError as e:
                raise DatasetError(f"dataset {self.dataset}: cannot decode Graphonomy mask {mpath}") from e
            if tuple(mask.shape[:2]) != tuple(orig_shape):
                raise DatasetError(f"dataset {self.dataset}: Graphonomy mask {mpath} has size {mask.shape[:2]} "
                                   f"but its image has size {tuple(orig_shape)} (H, W)")
        # (else: counted at construction; the original used an all-zero mask)
        try:
            box = self._label_box(keypoints)
        except G.NoConfidentKeypointsError as e:
            raise DatasetError(f"dataset {self.dataset}, sample {index} ({imgname}, {self.npz_path}): {e}; "
                               "the DSR background removal needs at least one") from e
        try:  # a palette PNG is inflated here, lazily: its stream may still turn out unreadable
            crop = self._mask_crop(mask, center, scale, rot, flip, box, transform)
        except FrameReadError as e:
            raise DatasetError(f"dataset {self.dataset}: cannot decode Graphonomy mask {mpath}") from e
        return self._targets_from_crop(crop, flip, box)

    def _label_box(self, keypoints):
        """The background-removal box (G.keypoint_box) as a plain half-open (x0, y0, x1, y1) in
        0..res (the original's slice semantics, a negative end included, resolved)."""
        res = self.img_res
        x0, y0, x1, y1 = G.keypoint_box(keypoints, res)
        x0, x1, _ = slice(x0, x1).indices(res)
        y0, y1, _ = slice(y0, y1).indices(res)
        return x0, y0, max(x1, x0), max(y1, y0)

    def _mask_crop(self, mask, center, scale, rot, flip, box, transform=None) -> np.ndarray:
        """(y1 - y0, x1 - x0, 3) uint8 BGR, not flipped: the box of the mask crop before the flip (its
        columns mirrored when ``flip``), as the original made it: the colour mask through the
        image's float32 processing (warp, / 255), then back to uint8 by * 255 and truncation (a
        blended value 51.99 -> 51). Only the pixels the warp reads for the box are converted;
        nothing outside the box is needed (background removal). The flip and the BGR -> RGB order
        of the original are applied to the labels (``_targets_from_crop``): per-pixel maths commutes
        with both."""
        res = self.img_res
        x0, y0, x1, y1 = box
        if mask is None or x1 <= x0 or y1 <= y0:
            return np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
        px0, px1 = (res - x1, res - x0) if flip else (x0, x1)  # the box before the flip
        crop = crop_region_cv2(mask.shape, mask.fill, center, scale, res, rot=rot, nearest=self.mask_warp_nearest,
                               buf=self._scratch, dst_box=(px0, y0, px1, y1), transform=transform)
        sub = crop[y0:y1, px0:px1]  # rows of packed pixels of a fresh array: in place
        np.divide(sub, 255.0, out=sub)  # float32, as the original's crop / 255.0
        np.multiply(sub, 255, out=sub)
        return sub.astype(np.uint8)

    def _targets_from_crop(self, crop, flip, box) -> dict:
        """The DSR targets from the box of the mask crop (``_mask_crop``: BGR, before the flip);
        outside the box: background, counted."""
        res = self.img_res
        x0, y0, x1, y1 = box
        labels = np.zeros((res, res), dtype=np.uint8)  # labels 0..19 (uint8: a quarter of the memory)
        known = np.ones((res, res), dtype=bool)
        if x1 > x0 and y1 > y0:
            found = G.palette_index(crop, bgr=True)  # 0..19, 255 = not a palette colour
            lut = _FOUND_TO_LABEL_SWAP if flip and self.swap_lr_masks else _FOUND_TO_LABEL
            lab = cv2.LUT(found, lut).reshape(found.shape)  # unknown -> 0 (background)
            if flip:
                found, lab = found[:, ::-1], lab[:, ::-1]
            labels[y0:y1, x0:x1] = lab
            np.not_equal(found, 255, out=known[y0:y1, x0:x1])

        mc_mask, mc_valid, merged, weights = G.dsr_targets(labels, known, self.mc_min_px, self.c_min_px)
        out = {
            "grph_dsr_mc_label": torch.from_numpy(mc_mask),
            "grph_dsr_c_label": torch.from_numpy(merged),
            "dsr_c_class_weight": torch.from_numpy(weights),
            "valid_labels_dsr_mc": torch.from_numpy(mc_valid),
            "valid_labels_dsr_c": torch.ones(G.NUM_C_CLASSES),
        }
        if self.with_dist_mat:
            out["grph_dsr_mc_dist_mat"] = torch.from_numpy(G.mc_distance_transform(mc_mask))
        return out
