"""Configuration: yacs defaults (every key of the original DSR, reference §1.5) and loading.

Public API
----------
get_cfg_defaults() -> CfgNode
    A fresh copy of the defaults.
grid_search_configs(cfg_file) -> list[CfgNode]
    Every list value with more than one element is a grid axis; the combinations are
    ``itertools.product`` over the axes in the order they appear in the file (last axis
    fastest); one-element lists are unwrapped; each combination is merged over the defaults.
load_config(cfg_file, cfg_id=0) -> CfgNode
    The ``cfg_id``-th combination.
run_name(cfg, cfg_file, ...) / make_run_dir(cfg, ...)
    The log directory of reference §1.2:
    ``LOG_DIR/METHOD/EXP_NAME/<dd-mm-YYYY_HH-MM-SS>_<EXP_NAME>[_<hp>-<val>...]``.

Errors (``ConfigError``) name the unknown key, the key with a value of the wrong type, the missing
file, or the number of combinations when ``cfg_id`` is out of range.

Keys marked "added" do not exist in the original; every other key has the original's default.
"""
from __future__ import annotations

import ast
import copy
import itertools
import os
import time
from typing import Any

import yaml
from yacs.config import CfgNode as CN

__all__ = [
    "ConfigError",
    "get_cfg_defaults",
    "grid_search_configs",
    "load_config",
    "grid_axes",
    "run_name",
    "make_run_dir",
    "merge_opts",
    "config_from_yaml_text",
]


class ConfigError(ValueError):
    """A configuration file or key is invalid (the message names the file / key)."""


_C = CN()

# ----------------------------------------------------------------------------- general
_C.LOG_DIR = "logs/experiments"  # root of the run directories
_C.METHOD = "spin"  # 'spin' (HMR losses only) | 'dsr' (+ DSR-MC / DSR-C)
_C.EXP_NAME = "default"  # experiment name, part of the run directory
_C.EXP_ID = ""  # set at run time to the run directory name
_C.RUN_TEST = False  # True: only evaluate (trainer.test) on DATASET.VAL_DS
_C.SEED_VALUE = -1  # >= 0: seed python/numpy/torch (lightning.seed_everything)
_C.PL_LOGGING = True  # TensorBoard logger + ModelCheckpoint(monitor='val_loss')

# ----------------------------------------------------------------------------- PATHS (added)
# Every file the code reads is a key here; defaults are the original's dsr_data/ names (§1.5, §9).
_C.PATHS = CN()
_C.PATHS.SMPL_MODEL_DIR = "dsr_data/smpl"  # SMPL_{NEUTRAL,MALE,FEMALE}.pkl or .npz
_C.PATHS.SMPL_MEAN_PARAMS = "dsr_data/smpl_mean_params.npz"  # SPIN mean pose (6D)/shape/cam
_C.PATHS.JOINT_REGRESSOR_TRAIN_EXTRA = "dsr_data/J_regressor_extra.npy"  # 9 extra joints
_C.PATHS.JOINT_REGRESSOR_H36M = "dsr_data/J_regressor_h36m.npy"  # 17 H36M joints (evaluation)
_C.PATHS.SEMANTIC_PRIOR = "dsr_data/semantic_prior.npy"  # per-face prior (F, 20)
_C.PATHS.DATASET_NPZ_PATH = "dsr_data/dataset_extras"  # folder of the SPIN-format npz files
# root folder of each dataset's images (and its grph_sequences/ Graphonomy masks)
_C.PATHS.DATASET_FOLDERS = CN()
_C.PATHS.DATASET_FOLDERS["h36m"] = "dsr_data/dataset_folders/h36m"
_C.PATHS.DATASET_FOLDERS["h36m-p1"] = "dsr_data/dataset_folders/h36m"
_C.PATHS.DATASET_FOLDERS["h36m-p2"] = "dsr_data/dataset_folders/h36m"
_C.PATHS.DATASET_FOLDERS["coco"] = "dsr_data/dataset_folders/coco"
_C.PATHS.DATASET_FOLDERS["mpi-inf-3dhp"] = "dsr_data/dataset_folders/mpi_inf_3dhp"
_C.PATHS.DATASET_FOLDERS["3dpw"] = "dsr_data/dataset_folders/3dpw"
_C.PATHS.DATASET_FOLDERS["synthetic"] = "dsr_data/dataset_folders/synthetic"
_C.PATHS.DATASET_FOLDERS["synthetic-test"] = "dsr_data/dataset_folders/synthetic"
_C.PATHS.DATASET_FOLDERS["emdb-1"] = "dsr_data/dataset_folders/emdb"  # EMDB_ROOT (P0 ... P9)
_C.PATHS.DATASET_FOLDERS["emdb-2"] = "dsr_data/dataset_folders/emdb"
_C.PATHS.DATASET_FOLDERS["ssp-3d"] = "dsr_data/dataset_folders/ssp_3d"  # images/, silhouettes/
# npz file (inside DATASET_NPZ_PATH) of each training set
_C.PATHS.TRAIN_FILES = CN()
_C.PATHS.TRAIN_FILES["h36m"] = "h36m_train.npz"
_C.PATHS.TRAIN_FILES["coco"] = "coco_2014_train.npz"
_C.PATHS.TRAIN_FILES["mpi-inf-3dhp"] = "mpi_inf_3dhp_train.npz"
_C.PATHS.TRAIN_FILES["3dpw"] = "3dpw_train.npz"
_C.PATHS.TRAIN_FILES["synthetic"] = "synthetic_train.npz"
# npz file (inside DATASET_NPZ_PATH) of each evaluation set
_C.PATHS.TEST_FILES = CN()
_C.PATHS.TEST_FILES["h36m-p1"] = "h36m_valid_protocol1.npz"
_C.PATHS.TEST_FILES["h36m-p2"] = "h36m_valid_protocol2.npz"
_C.PATHS.TEST_FILES["mpi-inf-3dhp"] = "mpi_inf_3dhp_valid.npz"
_C.PATHS.TEST_FILES["3dpw"] = "3dpw_test_with_mmpose.npz"
_C.PATHS.TEST_FILES["synthetic-test"] = "synthetic_test.npz"
_C.PATHS.TEST_FILES["emdb-1"] = "emdb1_test.npz"  # python -m dsr.data.preprocess emdb
_C.PATHS.TEST_FILES["emdb-2"] = "emdb2_test.npz"  # ... emdb --subset 2
_C.PATHS.TEST_FILES["ssp-3d"] = "ssp3d_test.npz"  # python -m dsr.data.preprocess ssp-3d
# local initial weights per backbone ('' = random init, with a warning; never downloaded);
# hrnet_wXX-conv / -interp read the hrnet_wXX entry
_C.PATHS.BACKBONE_WEIGHTS = CN()
_C.PATHS.BACKBONE_WEIGHTS["resnet18"] = ""  # e.g. resnet18-f37072fd.pth
_C.PATHS.BACKBONE_WEIGHTS["resnet34"] = ""  # e.g. resnet34-b627a593.pth
_C.PATHS.BACKBONE_WEIGHTS["resnet50"] = ""  # torchvision v1: resnet50-19c8e357.pth (original)
_C.PATHS.BACKBONE_WEIGHTS["resnet101"] = ""  # e.g. resnet101-5d3b4d8f.pth
_C.PATHS.BACKBONE_WEIGHTS["hrnet_w32"] = ""  # COCO pose HRNet, PARE's init: pose_hrnet_w32_256x192.pth
_C.PATHS.BACKBONE_WEIGHTS["hrnet_w48"] = ""  # COCO pose HRNet, PARE's init: pose_hrnet_w48_256x192.pth

# ----------------------------------------------------------------------------- DATASET
_C.DATASET = CN()
_C.DATASET.NOISE_FACTOR = 0.4  # per-channel pixel noise U[1-f, 1+f]
_C.DATASET.ROT_FACTOR = 30  # rotation std in degrees (clipped at 2x, zero with p=0.6)
_C.DATASET.SCALE_FACTOR = 0.25  # scale std (clipped to 1 +- f)
_C.DATASET.BATCH_SIZE = 64  # per-device batch size
_C.DATASET.NUM_WORKERS = 8  # dataloader workers; -1 (added): the available cores per process, less 1 (docs/loader.md)
_C.DATASET.PIN_MEMORY = True  # dataloader pin_memory (on CUDA only)
_C.DATASET.PERSISTENT_WORKERS = False  # added: keep the workers between epochs (the original: False)
_C.DATASET.PREFETCH_FACTOR = 2  # added: batches each worker loads ahead (PyTorch's default)
_C.DATASET.WORKER_KEEP_FREED_MB = 128  # added: freed memory each worker keeps for reuse (glibc), no page faults per item; 0 = glibc's default (docs/loader.md)
_C.DATASET.JPEG_REGION_DECODE = "auto"  # added: decode only the crop's region of a JPEG frame through a libturbojpeg >= 3 ('auto' finds one, 'off', or its path); same pixels (docs/loader.md)
_C.DATASET.SHUFFLE_TRAIN = True  # shuffle the training set
_C.DATASET.SHUFFLE_VAL = True  # unused (kept for config compatibility)
_C.DATASET.TRAIN_DS = "h36m"  # 'all' (mixture of §5.1) or a single training set key
_C.DATASET.VAL_DS = "3dpw"  # evaluation set: 3dpw | h36m-p1 | h36m-p2 | mpi-inf-3dhp | synthetic-test | emdb-1 | emdb-2 | ssp-3d
_C.DATASET.NUM_IMAGES = -1  # > 0: random subset (with replacement) of this many items
_C.DATASET.IMG_RES = 224  # crop resolution
_C.DATASET.FOCAL_LENGTH = 5000.0  # focal length (pixels) of the crop camera
_C.DATASET.IGNORE_3D = False  # legacy: ignore 3D joints
_C.DATASET.ONLY_IUV = False  # legacy, unused
_C.DATASET.MESH_COLOR = "light_pink"  # mesh colour of the visualisations
_C.DATASET.GENDER_EVAL = True  # 3DPW ground truth from the gendered SMPL
_C.DATASET.TRAIN_3DPW = False  # add 3DPW-train to the 'all' mixture (ratios of §5.1)
_C.DATASET.MAX_MISSING_MASK_FRACTION = 0.01  # added: error above this fraction of missing masks
_C.DATASET.VAL_NUM_IMAGES = -1  # added: > 0 evaluates the first N items only (quick checks)

# ----------------------------------------------------------------------------- OPTIMIZER
_C.OPTIMIZER = CN()
_C.OPTIMIZER.TYPE = "adam"  # only Adam
_C.OPTIMIZER.LR = 1e-4  # learning rate
_C.OPTIMIZER.WD = 0.0  # weight decay
_C.OPTIMIZER.MM = 0.9  # unused (momentum)
_C.OPTIMIZER.WARMUP_STEPS = 0  # added: > 0 ramps the LR linearly, LR * min(1, (t + 1) / N) at step t (0 = constant, the original)
_C.OPTIMIZER.COSINE_STEPS = 0  # added: > 0 multiplies the LR by (1 + cos(pi * min(t, N) / N)) / 2 at step t (0 = off, the original)
_C.OPTIMIZER.GRAD_CLIP_NORM = 0.0  # added: > 0 clips the gradients' global L2 norm to this value (0 = off, the original)

# ----------------------------------------------------------------------------- TRAINING
_C.TRAINING = CN()
_C.TRAINING.RESUME = None  # Lightning checkpoint to resume (epoch, step, optimizer)
_C.TRAINING.PRETRAINED = None  # model weights to start from (SPIN/DSR/Lightning/raw formats)
_C.TRAINING.PRETRAINED_LIT = None  # unused
_C.TRAINING.MAX_EPOCHS = 100  # number of epochs
_C.TRAINING.MAX_STEPS = -1  # added: stop after this many optimizer steps (-1: MAX_EPOCHS decides)
_C.TRAINING.LOG_SAVE_INTERVAL = 40  # log scalars every N steps
_C.TRAINING.LOG_FREQ_TB_IMAGES = 500  # image grid every N training steps
_C.TRAINING.CHECK_VAL_EVERY_N_EPOCH = 1  # validation interval in epochs
_C.TRAINING.RELOAD_DATALOADERS_EVERY_EPOCH = True  # rebuild the dataloaders each epoch
_C.TRAINING.SAVE_IMAGES = False  # write train_output_images/result_<step>.png
_C.TRAINING.USE_AUGM = True  # augmentation for single-dataset training
_C.TRAINING.SAVE_TOP_K = 5  # added: ModelCheckpoint save_top_k (with PL_LOGGING)
_C.TRAINING.CKPT_EVERY_N_STEPS = 0  # added: > 0 also writes last.ckpt every N training steps
_C.TRAINING.LIMIT_TRAIN_BATCHES = 1.0  # added: Lightning limit_train_batches (quick runs)
_C.TRAINING.LIMIT_VAL_BATCHES = 1.0  # added: Lightning limit_val_batches / limit_test_batches

# ----------------------------------------------------------------------------- TESTING
_C.TESTING = CN()
_C.TESTING.SAVE_IMAGES = False  # write val_output_images/
_C.TESTING.SAVE_RESULTS = False  # add pose/shape/cam_t to evaluation_results_<VAL_DS>.pkl
_C.TESTING.SIDEVIEW = True  # add a side view to the image grids
_C.TESTING.LOG_FREQ_TB_IMAGES = 50  # image grid every N evaluation batches
_C.TESTING.DISP_ALL = True  # unused
_C.TESTING.MEAN_PARAMS_BASELINE = False  # added: evaluate the mean pose/shape/camera instead of the network

# ----------------------------------------------------------------------------- TRAINER (added)
_C.TRAINER = CN()
_C.TRAINER.ACCELERATOR = "auto"  # Lightning accelerator: auto | cpu | gpu
_C.TRAINER.DEVICES = 1  # number of devices (> 1 -> DDP); may also be 'auto'
_C.TRAINER.STRATEGY = "auto"  # Lightning strategy (auto | ddp | ddp_spawn | ...)
_C.TRAINER.PRECISION = "32"  # '32' (faithful) | '16-mixed' | 'bf16-mixed'
_C.TRAINER.NUM_NODES = 1  # number of nodes


def _hmr_loss_block() -> CN:
    node = CN()
    node.BACKBONE = "resnet50"  # resnet18/34/50/101 | hrnet_w32/w48 [-conv|-interp] (PARE's HRNet)
    node.SHAPE_LOSS_WEIGHT = 0.0  # L1 vertex loss weight (off; int 0 in the original, float here)
    node.KEYPOINT_LOSS_WEIGHT = 5.0  # 2D keypoint loss weight
    node.KEYPOINT_NATIVE_LOSS_WEIGHT = 5.0  # unused in the original
    node.POSE_LOSS_WEIGHT = 1.0  # SMPL rotation-matrix loss weight
    node.BETA_LOSS_WEIGHT = 0.001  # SMPL betas loss weight
    node.OPENPOSE_TRAIN_WEIGHT = 0.0  # confidence multiplier of the 25 OpenPose keypoints
    node.GT_TRAIN_WEIGHT = 1.0  # confidence multiplier of the 24 GT keypoints
    node.LOSS_WEIGHT = 60.0  # global multiplier of the total loss
    node.HEAD_DROPOUT = 0.5  # added: dropout after the HMR head's fc1 and fc2 (0.5 in the original)
    return node


# ----------------------------------------------------------------------------- SPIN
_C.SPIN = _hmr_loss_block()

# ----------------------------------------------------------------------------- DSR
_C.DSR = _hmr_loss_block()
_C.DSR.DSR_MC_LOSS_WEIGHT = 0.2  # DSR-MC (minimal clothing) weight
_C.DSR.DSR_C_LOSS_WEIGHT = 0.2  # DSR-C (clothing classes) weight
_C.DSR.GAMMA_VAL = 0.1  # SoftRas depth softmax temperature
_C.DSR.SIGMA_VAL = 1e-7  # SoftRas sharpness (release config: 1e-5)
_C.DSR.DSR_MC_LOSS_TYPE = "DistM"  # 'DistM' (distance transform) | 'nIOU' (soft IoU)
_C.DSR.START_DSR = -1  # DSR terms when current_epoch > START_DSR (-1 = from the start)
_C.DSR.FLIP_SWAP_LR_MASKS = False  # added: True swaps L/R Graphonomy labels on flips (fix, §3.9)
_C.DSR.MIN_PIXELS_SCALE_WITH_RES = False  # added: True scales the targets' 60-pixel thresholds by (IMG_RES / 224)^2 (same at 224)
_C.DSR.MASK_WARP_NEAREST = False  # added: True warps Graphonomy masks nearest-neighbour (fix, §3.9)
_C.DSR.MC_IOU_MODE = "row"  # added: 'row' = original row-wise soft IoU; 'image' = whole image
_C.DSR.FACES_PER_PIXEL = 64  # added: K of the PyTorch3D backend (K study: studies/k_study.py, docs/training.md)
_C.DSR.RENDER_BACKEND = "auto"  # added: auto (pytorch3d on CUDA, window on CPU) | pytorch3d | window


def get_cfg_defaults() -> CN:
    """Return a fresh copy of the default configuration."""
    return _C.clone()


# ----------------------------------------------------------------------------- loading
_SCALAR_TYPES = (str, int, float, bool, type(None))


def _read_yaml(cfg_file: str) -> dict:
    if not os.path.isfile(cfg_file):
        raise ConfigError(f"config file not found: {cfg_file}")
    with open(cfg_file, "r") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{cfg_file}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{cfg_file}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten nested dicts to ('A.B.C', value) pairs in file order."""
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def _lookup_default(defaults: CN, key: str, cfg_file: str):
    node = defaults
    parts = key.split(".")
    for i, p in enumerate(parts):
        if not isinstance(node, CN) or p not in node:
            raise ConfigError(f"{cfg_file}: unknown config key '{key}'")
        node = node[p]
    return node


def _check_type(key: str, value, default, cfg_file: str):
    """Coerce/validate a value against the default's type (yacs rules, plus int -> float).

    As in yacs, a string is first read as a Python literal where the default is not a string
    (YAML reads ``3e-5`` as a string; yacs turns it into 3e-05).
    """
    if isinstance(value, str) and default is not None and not isinstance(default, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
    if default is None or value is None:
        if value is not None and not isinstance(value, _SCALAR_TYPES):
            raise ConfigError(f"{cfg_file}: key '{key}' expects a scalar value, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{cfg_file}: key '{key}' expects a bool (True/False), got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{cfg_file}: key '{key}' expects a number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            # allow 'auto'-style strings where the default is a device count
            if key == "TRAINER.DEVICES" and isinstance(value, str):
                return value
            raise ConfigError(f"{cfg_file}: key '{key}' expects an integer, got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{cfg_file}: key '{key}' expects a string, got {value!r}")
        return value
    return value


def grid_axes(cfg_file: str) -> list[tuple[str, list]]:
    """The grid axes of a config file: [(key, values)] for lists with more than one element."""
    return [(k, v) for k, v in _flatten(_read_yaml(cfg_file)) if isinstance(v, list) and len(v) > 1]


def grid_search_configs(cfg_file: str) -> list[CN]:
    """All configurations of a (grid-search) config file, merged over the defaults."""
    return _configs_from_dict(_read_yaml(cfg_file), cfg_file)


def config_from_yaml_text(text: str, source: str = "<config text>") -> CN:
    """A config from YAML text (e.g. ``cfg.dump()`` stored in a checkpoint), merged over the
    defaults with the same checks as a file. Unlike yacs' ``load_cfg`` it keeps strings such as
    ``'32'`` strings."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    configs = _configs_from_dict(data, source)
    if len(configs) != 1:
        raise ConfigError(f"{source}: expected one configuration, the text defines {len(configs)}")
    return configs[0]


def _configs_from_dict(data: dict, cfg_file: str) -> list[CN]:
    defaults = get_cfg_defaults()
    items = _flatten(data)
    fixed, axes = [], []
    for key, value in items:
        default = _lookup_default(defaults, key, cfg_file)
        if isinstance(default, CN):
            raise ConfigError(f"{cfg_file}: key '{key}' is a section; give it a mapping of keys")
        if isinstance(value, list):
            if len(value) == 0:
                raise ConfigError(f"{cfg_file}: key '{key}' has an empty list")
            values = [_check_type(key, v, default, cfg_file) for v in value]
            if len(values) == 1:
                fixed.append((key, values[0]))
            else:
                axes.append((key, values))
        else:
            fixed.append((key, _check_type(key, value, default, cfg_file)))
    combos = list(itertools.product(*[vals for _, vals in axes])) if axes else [()]
    configs = []
    for combo in combos:
        cfg = get_cfg_defaults()
        for key, value in fixed + [(k, v) for (k, _), v in zip(axes, combo)]:
            _set(cfg, key, value)
        cfg.freeze()
        configs.append(cfg)
    return configs


def _set(cfg: CN, key: str, value) -> None:
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = copy.deepcopy(value)


def load_config(cfg_file: str, cfg_id: int = 0) -> CN:
    """The ``cfg_id``-th configuration of ``cfg_file`` (see grid_search_configs)."""
    configs = grid_search_configs(cfg_file)
    if not isinstance(cfg_id, int) or cfg_id < 0 or cfg_id >= len(configs):
        raise ConfigError(
            f"{cfg_file}: cfg_id {cfg_id} is out of range: the file defines {len(configs)} "
            f"combination(s), valid ids are 0..{len(configs) - 1}"
        )
    return configs[cfg_id]


def merge_opts(cfg: CN, opts: list[str], source: str = "--opts") -> CN:
    """Override keys from a flat ``[KEY, VALUE, KEY, VALUE, ...]`` list (values read as YAML),
    with the same key and type checks as a config file. Returns a new frozen config."""
    if len(opts) % 2:
        raise ConfigError(f"{source}: expected KEY VALUE pairs, got an odd number of items: {opts}")
    defaults = get_cfg_defaults()
    out = cfg.clone()
    out.defrost()
    for key, raw in zip(opts[0::2], opts[1::2]):
        default = _lookup_default(defaults, key, source)
        if isinstance(default, CN):
            raise ConfigError(f"{source}: key '{key}' is a section, not a value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if (default is None or isinstance(default, str)) and not isinstance(value, str) and value is not None:
            value = raw  # a path or a name that YAML reads as a number
        _set(out, key, _check_type(key, value, default, source))
    out.freeze()
    return out


def run_name(cfg: CN, cfg_file: str | None = None, timestamp: float | None = None) -> str:
    """Run directory name ``<dd-mm-YYYY_HH-MM-SS>_<EXP_NAME>[_<hp>-<val>...]`` (§1.2).

    The ``_<hp>-<val>`` suffixes name the grid axes of ``cfg_file`` (last key component, lower
    case) with this configuration's values.
    """
    stamp = time.strftime("%d-%m-%Y_%H-%M-%S", time.localtime(timestamp))
    name = f"{stamp}_{cfg.EXP_NAME}"
    if cfg_file is not None:
        for key, _ in grid_axes(cfg_file):
            node = cfg
            for p in key.split("."):
                node = node[p]
            name += f"_{key.split('.')[-1].lower()}-{node}"
    return name


def make_run_dir(cfg: CN, cfg_file: str | None = None, timestamp: float | None = None) -> str:
    """Create ``LOG_DIR/METHOD/EXP_NAME/<run_name>`` and return its path."""
    path = os.path.join(cfg.LOG_DIR, cfg.METHOD, cfg.EXP_NAME, run_name(cfg, cfg_file, timestamp))
    os.makedirs(path, exist_ok=True)
    return path
