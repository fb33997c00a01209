"""scripts/quickstart.sh: the default and the --long training schedules are consistent with the
data prepare_data.sh renders (cosine over every step, DSR in the last four epochs), and bad
arguments stop before anything is set up."""
from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from dsr.config import load_config, merge_opts
from dsr.losses.dsr_loss import DSRLoss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "quickstart.sh")


def _long_opts() -> list[str]:
    text = open(SCRIPT).read()
    m = re.search(r"^LONG_OPTS=\((.*)\)$", text, flags=re.M)
    assert m, "scripts/quickstart.sh has no LONG_OPTS=(...) line"
    return shlex.split(m.group(1))


def _n_train() -> int:
    m = re.search(r'N_TRAIN="\$\{N_TRAIN:-(\d+)\}"', open(os.path.join(REPO, "prepare_data.sh")).read())
    assert m, "prepare_data.sh has no N_TRAIN default"
    return int(m.group(1))


@pytest.mark.parametrize("long", [False, True], ids=["default", "long"])
def test_schedule_matches_the_data(long):
    cfg = load_config(os.path.join(REPO, "configs", "quickstart_train.cfg"))
    if long:
        cfg = merge_opts(cfg, _long_opts())
    steps_per_epoch = _n_train() // cfg.DATASET.BATCH_SIZE  # the train loader drops the last batch
    total = cfg.TRAINING.MAX_EPOCHS * steps_per_epoch
    # the LR reaches 0 exactly at the last step
    assert cfg.OPTIMIZER.COSINE_STEPS == total
    # DSR-MC / DSR-C in exactly the last four epochs (the original's gate: epoch > START_DSR)
    gate = DSRLoss(dsr_mc_loss_weight=0.0, dsr_c_loss_weight=0.0, start_dsr=cfg.DSR.START_DSR)
    active = [e for e in range(cfg.TRAINING.MAX_EPOCHS) if gate.dsr_active(e)]
    assert active == list(range(cfg.TRAINING.MAX_EPOCHS - 4, cfg.TRAINING.MAX_EPOCHS))
    if long:
        # the learning curve's step count for PA-MPJPE <= 104 mm (docs/learning_curve.md)
        assert 1900 <= total <= 2100


def test_bad_argument_stops_before_setup(tmp_path):
    r = subprocess.run(["bash", SCRIPT, "--longer"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert "unknown argument '--longer'" in r.stderr
    assert "[quickstart]" not in r.stdout  # nothing was set up or run
