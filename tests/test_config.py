"""Config defaults (reference §1.5), release configs (§1.3/§1.4), grid search and errors.

Every expected value is written out here, not read back from dsr/config.py.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dsr.config import ConfigError, get_cfg_defaults, grid_search_configs, load_config, run_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HMR_BLOCK = {
    "BACKBONE": "resnet50", "SHAPE_LOSS_WEIGHT": 0.0,  # original: int 0; float so 0.5 is accepted
    "KEYPOINT_LOSS_WEIGHT": 5.0,
    "KEYPOINT_NATIVE_LOSS_WEIGHT": 5.0, "POSE_LOSS_WEIGHT": 1.0, "BETA_LOSS_WEIGHT": 0.001,
    "OPENPOSE_TRAIN_WEIGHT": 0.0, "GT_TRAIN_WEIGHT": 1.0, "LOSS_WEIGHT": 60.0,
}
DEFAULTS_1_5 = {
    "LOG_DIR": "logs/experiments", "METHOD": "spin", "EXP_NAME": "default", "EXP_ID": "",
    "RUN_TEST": False, "SEED_VALUE": -1, "PL_LOGGING": True,
    "DATASET": {
        "NOISE_FACTOR": 0.4, "ROT_FACTOR": 30, "SCALE_FACTOR": 0.25, "BATCH_SIZE": 64,
        "NUM_WORKERS": 8, "PIN_MEMORY": True, "SHUFFLE_TRAIN": True, "SHUFFLE_VAL": True,
        "TRAIN_DS": "h36m", "VAL_DS": "3dpw", "NUM_IMAGES": -1, "IMG_RES": 224,
        "FOCAL_LENGTH": 5000.0, "IGNORE_3D": False, "ONLY_IUV": False, "MESH_COLOR": "light_pink",
        "GENDER_EVAL": True, "TRAIN_3DPW": False,
    },
    "OPTIMIZER": {"TYPE": "adam", "LR": 1e-4, "WD": 0.0, "MM": 0.9},
    "TRAINING": {
        "RESUME": None, "PRETRAINED": None, "PRETRAINED_LIT": None, "MAX_EPOCHS": 100,
        "LOG_SAVE_INTERVAL": 40, "LOG_FREQ_TB_IMAGES": 500, "CHECK_VAL_EVERY_N_EPOCH": 1,
        "RELOAD_DATALOADERS_EVERY_EPOCH": True, "SAVE_IMAGES": False, "USE_AUGM": True,
    },
    "TESTING": {
        "SAVE_IMAGES": False, "SAVE_RESULTS": False, "SIDEVIEW": True, "LOG_FREQ_TB_IMAGES": 50,
        "DISP_ALL": True,
    },
    "SPIN": dict(HMR_BLOCK),
    "DSR": dict(HMR_BLOCK, DSR_MC_LOSS_WEIGHT=0.2, DSR_C_LOSS_WEIGHT=0.2, GAMMA_VAL=0.1,
                SIGMA_VAL=1e-7, DSR_MC_LOSS_TYPE="DistM", START_DSR=-1),
}
ADDED = {
    "PATHS": {
        "SMPL_MODEL_DIR": "dsr_data/smpl", "SMPL_MEAN_PARAMS": "dsr_data/smpl_mean_params.npz",
        "JOINT_REGRESSOR_TRAIN_EXTRA": "dsr_data/J_regressor_extra.npy",
        "JOINT_REGRESSOR_H36M": "dsr_data/J_regressor_h36m.npy",
        "SEMANTIC_PRIOR": "dsr_data/semantic_prior.npy", "DATASET_NPZ_PATH": "dsr_data/dataset_extras",
    },
    "DSR": {"FLIP_SWAP_LR_MASKS": False, "MASK_WARP_NEAREST": False, "MIN_PIXELS_SCALE_WITH_RES": False, "MC_IOU_MODE": "row",
            "RENDER_BACKEND": "auto", "HEAD_DROPOUT": 0.5},
    "SPIN": {"HEAD_DROPOUT": 0.5},  # the original's nn.Dropout(0.5) after fc1 and fc2
    "TRAINER": {"ACCELERATOR": "auto", "DEVICES": 1, "STRATEGY": "auto", "PRECISION": "32"},
    "DATASET": {"MAX_MISSING_MASK_FRACTION": 0.01},
    "TRAINING": {"MAX_STEPS": -1},
    "OPTIMIZER": {"WARMUP_STEPS": 0, "COSINE_STEPS": 0, "GRAD_CLIP_NORM": 0.0},  # all off: the original's constant LR, no clipping
}
RELEASE_TRAIN = {
    "LOG_DIR": "logs", "EXP_NAME": "dsr_train", "METHOD": "dsr", "RUN_TEST": False, "SEED_VALUE": -1,
    "PL_LOGGING": False,
    "DATASET": {
        "NOISE_FACTOR": 0.4, "ROT_FACTOR": 30, "BATCH_SIZE": 128, "NUM_WORKERS": 8, "PIN_MEMORY": True,
        "SHUFFLE_TRAIN": False, "TRAIN_DS": "all", "VAL_DS": "3dpw", "NUM_IMAGES": -1, "IMG_RES": 224,
        "FOCAL_LENGTH": 5000.0, "MESH_COLOR": "blue", "TRAIN_3DPW": False,
    },
    "OPTIMIZER": {"TYPE": "adam", "LR": 3e-5, "WD": 0.0},
    "TRAINING": {
        "PRETRAINED": "dsr_data/dsr_wo3DPW_checkpoint.pt", "MAX_EPOCHS": 50, "LOG_SAVE_INTERVAL": 50,
        "LOG_FREQ_TB_IMAGES": 1000, "CHECK_VAL_EVERY_N_EPOCH": 1, "RELOAD_DATALOADERS_EVERY_EPOCH": False,
        "SAVE_IMAGES": True, "USE_AUGM": True,
    },
    "TESTING": {"SAVE_IMAGES": True, "SAVE_RESULTS": False, "LOG_FREQ_TB_IMAGES": 1, "SIDEVIEW": True},
    "DSR": {
        "BACKBONE": "resnet50", "SHAPE_LOSS_WEIGHT": 0.0,  # original: int 0; float so 0.5 is accepted
    "KEYPOINT_LOSS_WEIGHT": 5.0,
        "KEYPOINT_NATIVE_LOSS_WEIGHT": 5.0, "POSE_LOSS_WEIGHT": 1.0, "BETA_LOSS_WEIGHT": 0.001,
        "DSR_MC_LOSS_WEIGHT": 0.1, "DSR_C_LOSS_WEIGHT": 0.1, "OPENPOSE_TRAIN_WEIGHT": 0.0,
        "GT_TRAIN_WEIGHT": 1.0, "LOSS_WEIGHT": 60.0, "GAMMA_VAL": 0.1, "SIGMA_VAL": 1e-5,
        "DSR_MC_LOSS_TYPE": "nIOU", "START_DSR": 2,
    },
}
RELEASE_EVAL = {
    "LOG_DIR": "logs", "EXP_NAME": "dsr_eval", "METHOD": "dsr", "RUN_TEST": True, "SEED_VALUE": -1,
    "PL_LOGGING": False,
    "DATASET": {
        "BATCH_SIZE": 128, "NUM_WORKERS": 8, "PIN_MEMORY": True, "TRAIN_DS": "h36m", "VAL_DS": "3dpw",
        "NUM_IMAGES": -1, "IMG_RES": 224, "FOCAL_LENGTH": 5000.0, "MESH_COLOR": "blue", "TRAIN_3DPW": False,
    },
    "TRAINING": {
        "PRETRAINED": "dsr_data/dsr_wo3DPW_checkpoint.pt", "MAX_EPOCHS": 50, "LOG_SAVE_INTERVAL": 5,
        "LOG_FREQ_TB_IMAGES": 5, "CHECK_VAL_EVERY_N_EPOCH": 100, "RELOAD_DATALOADERS_EVERY_EPOCH": False,
        "SAVE_IMAGES": False, "USE_AUGM": False,
    },
    "TESTING": {"SAVE_IMAGES": False, "SAVE_RESULTS": False, "LOG_FREQ_TB_IMAGES": 1, "SIDEVIEW": True},
    # the DSR block is absent from dsr_eval.cfg: the code defaults stay
    "DSR": {"DSR_MC_LOSS_WEIGHT": 0.2, "SIGMA_VAL": 1e-7, "DSR_MC_LOSS_TYPE": "DistM", "START_DSR": -1},
}


def _walk(expected, prefix=""):
    for k, v in expected.items():
        if isinstance(v, dict):
            yield from _walk(v, prefix + k + ".")
        else:
            yield prefix + k, v


def _get(cfg, key):
    node = cfg
    for p in key.split("."):
        node = node[p]
    return node


def _assert_matches(cfg, expected):
    for key, value in _walk(expected):
        got = _get(cfg, key)
        if isinstance(value, float) and not isinstance(value, bool):
            assert got == pytest.approx(value, rel=1e-12), key
        else:
            assert got == value and type(got) is type(value), f"{key}: {got!r} != {value!r}"


def test_every_reference_default():
    cfg = get_cfg_defaults()
    _assert_matches(cfg, DEFAULTS_1_5)
    # every key of §1.5 is there, and nothing but the documented additions besides
    n_keys = sum(1 for _ in _walk(DEFAULTS_1_5))
    assert n_keys == 7 + 18 + 4 + 10 + 5 + 9 + 15


def test_added_keys_defaults():
    cfg = get_cfg_defaults()
    _assert_matches(cfg, ADDED)
    assert cfg.PATHS.DATASET_FOLDERS["3dpw"] == "dsr_data/dataset_folders/3dpw"
    assert cfg.PATHS.TEST_FILES["h36m-p2"] == "h36m_valid_protocol2.npz"
    assert cfg.PATHS.TEST_FILES["3dpw"] == "3dpw_test_with_mmpose.npz"
    assert cfg.PATHS.TRAIN_FILES["coco"] == "coco_2014_train.npz"
    assert cfg.PATHS.TRAIN_FILES["mpi-inf-3dhp"] == "mpi_inf_3dhp_train.npz"


def test_defaults_are_fresh_copies():
    a = get_cfg_defaults()
    a.DATASET.BATCH_SIZE = 3
    assert get_cfg_defaults().DATASET.BATCH_SIZE == 64


def test_release_train_config():
    configs = grid_search_configs(os.path.join(REPO, "configs", "dsr_train.cfg"))
    assert len(configs) == 1
    _assert_matches(configs[0], RELEASE_TRAIN)


def test_release_eval_config():
    cfg = load_config(os.path.join(REPO, "configs", "dsr_eval.cfg"))
    _assert_matches(cfg, RELEASE_EVAL)


def _write(tmp_path, text, name="grid.cfg"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_grid_two_axes_product_order(tmp_path):
    path = _write(tmp_path, """
EXP_NAME: 'grid'
OPTIMIZER:
  LR: [1e-4, 3e-5]
DATASET:
  BATCH_SIZE: [8]
DSR:
  GAMMA_VAL: [0.1, 0.01, 0.001]
""")
    configs = grid_search_configs(path)
    assert len(configs) == 6
    expected = [(1e-4, 0.1), (1e-4, 0.01), (1e-4, 0.001), (3e-5, 0.1), (3e-5, 0.01), (3e-5, 0.001)]
    assert [(c.OPTIMIZER.LR, c.DSR.GAMMA_VAL) for c in configs] == expected
    for c in configs:
        assert c.DATASET.BATCH_SIZE == 8  # one-element list unwrapped
        assert c.EXP_NAME == "grid"
        assert c.DATASET.NUM_WORKERS == 8  # untouched default
    assert load_config(path, 4).DSR.GAMMA_VAL == 0.01
    assert load_config(path, 4).OPTIMIZER.LR == 3e-5
    name = run_name(load_config(path, 5), path, timestamp=0)
    assert name.endswith("_grid_lr-3e-05_gamma_val-0.001")


def test_unknown_key(tmp_path):
    path = _write(tmp_path, "DATASET:\n  BATCH_SIZ: 4\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'DATASET.BATCH_SIZ'") as e:
        load_config(path)
    assert path in str(e.value)


def test_wrong_type(tmp_path):
    path = _write(tmp_path, "DATASET:\n  BATCH_SIZE: 'large'\n")
    with pytest.raises(ConfigError, match=r"'DATASET.BATCH_SIZE' expects an integer, got 'large'"):
        load_config(path)
    path = _write(tmp_path, "PL_LOGGING: 3\n", "b.cfg")
    with pytest.raises(ConfigError, match=r"'PL_LOGGING' expects a bool"):
        load_config(path)


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.cfg")
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.cfg"):
        load_config(missing)


def test_cfg_id_out_of_range(tmp_path):
    path = _write(tmp_path, "OPTIMIZER:\n  LR: [1e-4, 3e-5]\nDSR:\n  GAMMA_VAL: [0.1, 0.2, 0.3]\n")
    with pytest.raises(ConfigError, match=r"cfg_id 6 is out of range: the file defines 6 combination"):
        load_config(path, 6)


def test_print_config_cli():
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), "--cfg", os.path.join(REPO, "configs", "dsr_train.cfg"),
         "--print-config"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "TRAIN_DS: all" in out and "LR: 3.0e-05" in out and "DSR_MC_LOSS_TYPE: nIOU" in out
    assert "START_DSR: 2" in out and "BATCH_SIZE: 128" in out


def test_cli_config_error_is_one_line(tmp_path):
    path = _write(tmp_path, "NOT_A_KEY: 1\n")
    res = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--cfg", path],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "unknown config key 'NOT_A_KEY'" in res.stderr


def test_opts_override_with_checks():
    from dsr.config import merge_opts

    base = load_config(os.path.join(REPO, "configs", "dsr_eval.cfg"))
    cfg = merge_opts(base, ["DATASET.BATCH_SIZE", "16", "TRAINING.PRETRAINED", "123", "DSR.SIGMA_VAL", "3e-5",
                            "TESTING.SAVE_RESULTS", "True"])
    assert cfg.DATASET.BATCH_SIZE == 16 and cfg.TRAINING.PRETRAINED == "123"
    assert cfg.DSR.SIGMA_VAL == 3e-5 and cfg.TESTING.SAVE_RESULTS is True
    assert base.DATASET.BATCH_SIZE == 128  # the input is not modified
    with pytest.raises(ConfigError, match=r"unknown config key 'DATASET.BATCH_SIZ'"):
        merge_opts(base, ["DATASET.BATCH_SIZ", "1"])
    with pytest.raises(ConfigError, match=r"'DATASET.BATCH_SIZE' expects an integer, got 'x'"):
        merge_opts(base, ["DATASET.BATCH_SIZE", "x"])
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        merge_opts(base, ["DATASET.BATCH_SIZE"])


def test_yaml_text_round_trip_keeps_types():
    from dsr.config import config_from_yaml_text

    cfg = load_config(os.path.join(REPO, "configs", "dsr_train.cfg"))
    back = config_from_yaml_text(cfg.dump())
    assert back == cfg
    assert back.TRAINER.PRECISION == "32" and isinstance(back.TRAINER.PRECISION, str)
    assert back.OPTIMIZER.LR == 3e-5 and back.TRAINING.RESUME is None
    with pytest.raises(ConfigError, match="unknown config key 'NOPE'"):
        config_from_yaml_text("NOPE: 1\n", "ckpt")
