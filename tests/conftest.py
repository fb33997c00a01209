"""Shared pytest setup: CPU-only by default, `cuda` tests need a GPU, `slow` tests need --runslow."""
from __future__ import annotations

import os

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREE_BODY_DIR = os.path.join(REPO, "dsr", "assets", "free_body")

torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--runslow") or os.environ.get("DSR_RUN_SLOW") == "1"
    has_cuda = torch.cuda.is_available()
    skip_slow = pytest.mark.skip(reason="slow: use --runslow or DSR_RUN_SLOW=1")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(skip_cuda)


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def free_body_dir():
    return FREE_BODY_DIR


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory):
    """A small synthetic training split made for the tests (6 images, seed 0), independent of the
    ./dsr_data tree that prepare_data.sh builds: (dataset folder, training npz path)."""
    from dsr.data.synthetic import make_synthetic

    out = tmp_path_factory.mktemp("synthetic_small")
    paths = make_synthetic(str(out), n_train=6, n_test=0, seed=0, progress=False)
    return str(out), paths["train"]


def load_script(relpath: str, name: str = ""):
    """Import a command file of the repository (``tools/check_data.py``, ``studies/ablation.py``, ...)
    as a module without running its ``main``: ``relpath`` is relative to the repository root."""
    import importlib.util

    path = os.path.join(REPO, *relpath.split("/"))
    spec = importlib.util.spec_from_file_location(name or "dsr_script_" + os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_body_cfg(backbone: str = "resnet18"):
    """The default config with every body-model path on the embedded free body and a small backbone."""
    from dsr.config import get_cfg_defaults

    cfg = get_cfg_defaults()
    P = cfg.PATHS
    P.SMPL_MODEL_DIR = os.path.join(FREE_BODY_DIR, "smpl")
    P.SMPL_MEAN_PARAMS = os.path.join(FREE_BODY_DIR, "smpl_mean_params.npz")
    P.JOINT_REGRESSOR_TRAIN_EXTRA = os.path.join(FREE_BODY_DIR, "J_regressor_extra.npy")
    P.JOINT_REGRESSOR_H36M = os.path.join(FREE_BODY_DIR, "J_regressor_h36m.npy")
    cfg.SPIN.BACKBONE = backbone
    return cfg
