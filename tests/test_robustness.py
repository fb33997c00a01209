"""Robustness under faults (issue 9): a training run killed with SIGKILL at a random step resumes
from a complete ``last.ckpt``; a NaN injected into a batch is zeroed and counted (DSR terms, per
sample) or its step is skipped and counted (any other term), and training goes on; corrupt inputs
(truncated image, mask of the wrong size, npz without a key, checkpoint of another architecture,
config with a typo) each raise one clear error naming the file or key.

Uses the fake ``dsr_data`` tree of tests/test_training.py (free body model + synthetic items) and
its small CPU config (ResNet-18, batch 2, ``METHOD: spin`` unless a test needs the DSR terms).
"""
from __future__ import annotations

import glob
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from test_training import data_root, make_cfg  # noqa: F401  (data_root: module-scoped fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "train.py")


def _env():
    env = dict(os.environ)
    env.pop("DSR_RUN_DIR", None)  # train.py reuses it (DDP children); a fresh run must not
    env.pop("LOCAL_RANK", None)
    env.pop("NODE_RANK", None)
    env["OMP_NUM_THREADS"] = "1"  # the cores are shared; spinning OpenMP threads only slow it down
    return env


def _write_cfg(path, cfg) -> str:
    with open(path, "w") as f:
        f.write(cfg.dump())
    return str(path)


def _adam_steps(ck) -> set:
    return {int(s["step"]) for s in ck["optimizer_states"][0]["state"].values()}


def _find_last(log_dir):
    hits = glob.glob(os.path.join(str(log_dir), "**", "checkpoints", "last.ckpt"), recursive=True)
    return hits[0] if hits else None


# ============================================================================ 1. SIGKILL + resume
def test_sigkill_at_random_step_then_resume(data_root, tmp_path):  # noqa: F811
    steps_per_epoch = 4  # 8 training items, batch 2, drop_last
    over = {"TRAINING.CKPT_EVERY_N_STEPS": 1, "TRAINING.MAX_EPOCHS": 100,
            "TRAINING.LIMIT_TRAIN_BATCHES": steps_per_epoch, "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 1000,
            "TRAINING.LIMIT_VAL_BATCHES": 1, "DATASET.IMG_RES": 64, "EXP_NAME": "kill"}
    cfg = make_cfg(data_root, tmp_path, **over)
    cfg_file = _write_cfg(tmp_path / "kill.yaml", cfg)
    seed = random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    log = open(tmp_path / "kill.log", "wb")
    proc = subprocess.Popen([sys.executable, TRAIN_PY, "--cfg", cfg_file], cwd=REPO, env=_env(),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.time()
        last = None
        while last is None:  # the first checkpoint
            assert proc.poll() is None, f"train.py exited early:\n{(tmp_path / 'kill.log').read_text()[-3000:]}"
            assert time.time() - t0 < 180, "no checkpoint within 180 s"
            time.sleep(0.05)
            last = _find_last(cfg.LOG_DIR)
        # a random moment, then (most adversarial) while the next checkpoint is being written
        time.sleep(rng.uniform(0.0, 1.5))
        tmp_file = last + ".tmp"
        t1 = time.time()
        while not os.path.exists(tmp_file) and time.time() - t1 < 3.0 and proc.poll() is None:
            time.sleep(0.0005)
        mid_write = os.path.exists(tmp_file)
        os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert rc == -signal.SIGKILL, f"the run was not killed (rc {rc}, seed {seed})"
    print(f"killed (seed {seed}); a .tmp was being written: {mid_write}; .tmp left: {os.path.exists(last + '.tmp')}")

    # last.ckpt is complete: it loads, it is self-consistent, its weights are finite
    ck = torch.load(last, map_location="cpu", weights_only=False)
    step, epoch = int(ck["global_step"]), int(ck["epoch"])
    assert step >= 1
    assert epoch == (step - 1) // steps_per_epoch  # saved at a batch end (or at the epoch end)
    assert _adam_steps(ck) == {step}  # the optimizer state belongs to the same step
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())

    # A copy whose Adam step counters are shifted by 1000: the resumed run's final counters then
    # tell that the optimizer state came from the file and how many steps ran after the resume
    # (a run that ignored the file would end at the same global step, with unshifted counters).
    shift = 1000
    for st in ck["optimizer_states"][0]["state"].values():
        st["step"] = st["step"] + shift
    resume_from = str(tmp_path / "resume_from.ckpt")
    torch.save(ck, resume_from)

    # resume in a new process, to the end of the interrupted epoch and one more
    max_epochs = epoch + 2
    cfg2 = make_cfg(data_root, tmp_path, **dict(over, **{"TRAINING.RESUME": resume_from,
                                                        "TRAINING.MAX_EPOCHS": max_epochs,
                                                        "TRAINING.CKPT_EVERY_N_STEPS": 0}))
    cfg2.LOG_DIR = str(tmp_path / "resumed")
    cfg2_file = _write_cfg(tmp_path / "resume.yaml", cfg2)
    res = subprocess.run([sys.executable, TRAIN_PY, "--cfg", cfg2_file], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    ck2 = torch.load(_find_last(cfg2.LOG_DIR), map_location="cpu", weights_only=False)
    # the interrupted epoch is finished (not restarted), then one more: the step count of an
    # uninterrupted run of max_epochs epochs, reached by exactly the missing steps
    total = steps_per_epoch * max_epochs
    assert int(ck2["global_step"]) == total > step
    assert int(ck2["epoch"]) == max_epochs - 1
    assert _adam_steps(ck2) == {shift + total}  # (step + shift) restored, then total - step more
    print(f"resumed from step {step} (epoch {epoch}) to step {total} (epoch {max_epochs - 1})")


def test_partial_tmp_never_read_and_truncated_resume_named(data_root, tmp_path):  # noqa: F811
    """The callback's write-then-rename: a save that dies half-way leaves the previous last.ckpt;
    a truncated file given as TRAINING.RESUME is refused with an error naming the key and file."""
    from dsr.lightning_module import DSRModule
    from dsr.models.checkpoint import CheckpointError
    from dsr.runner import LastCheckpoint, build_trainer, run

    cfg = make_cfg(data_root, tmp_path, **{"TRAINING.LIMIT_TRAIN_BATCHES": 1, "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100,
                                           "DATASET.IMG_RES": 64})
    trainer = build_trainer(cfg)
    trainer.fit(DSRModule(cfg))
    cb = next(c for c in trainer.callbacks if isinstance(c, LastCheckpoint))
    with open(cb.path, "rb") as f:
        before = f.read()

    def dies_half_way(path, *a, **k):
        with open(path, "wb") as f:
            f.write(before[: len(before) // 2])
        raise OSError("No space left on device")  # a write that dies half-way

    trainer.save_checkpoint = dies_half_way
    cb._last_step_saved = -1
    with pytest.raises(OSError, match="No space left"):
        cb.save(trainer)
    with open(cb.path, "rb") as f:
        assert f.read() == before  # last.ckpt untouched, the partial file is the .tmp
    assert os.path.getsize(cb.path + ".tmp") == len(before) // 2
    torch.load(cb.path, map_location="cpu", weights_only=False)

    cfg2 = make_cfg(data_root, tmp_path, **{"TRAINING.RESUME": cb.path + ".tmp", "DATASET.IMG_RES": 64})
    with pytest.raises(CheckpointError, match=r"TRAINING\.RESUME: .*last\.ckpt\.tmp is not a readable checkpoint"):
        run(cfg2)


# ============================================================================ 2. NaN in a batch
def _sphere_batch(B, res):
    from dsr.rendering.meshes import icosphere

    v, f = icosphere(2)
    g = torch.Generator().manual_seed(0)
    verts = (v.float() * 0.3)[None].repeat(B, 1, 1) + 0.02 * torch.randn(B, v.shape[0], 3, generator=g)
    pred = {
        "pred_pose": torch.eye(3).expand(B, 24, 3, 3).clone(),
        "pred_shape": torch.zeros(B, 10),
        "pred_cam": torch.tensor([[0.9, 0.0, 0.0]]).expand(B, 3).clone(),
        "pred_cam_t": torch.tensor([[0.0, 0.0, 20.0]]).expand(B, 3).clone(),
        "smpl_vertices": verts.requires_grad_(True),
        "smpl_joints3d": torch.zeros(B, 49, 3),
        "smpl_joints2d": torch.zeros(B, 49, 2),
    }
    mc = torch.zeros(B, res, res)
    mc[:, res // 3: 2 * res // 3, res // 3: res // 2] = 1
    c = torch.zeros(B, res, res, dtype=torch.long)
    c[:, res // 4: 3 * res // 4, res // 4: 3 * res // 4] = 2
    batch = {
        "keypoints": torch.zeros(B, 49, 3), "pose_3d": torch.zeros(B, 24, 4), "pose": torch.zeros(B, 72),
        "betas": torch.zeros(B, 10), "has_smpl": torch.ones(B), "has_pose_3d": torch.ones(B),
        "grph_dsr_mc_label": mc, "grph_dsr_c_label": c,
        "dsr_c_class_weight": torch.rand(B, 8, generator=g) + 0.5,
        "valid_labels_dsr_mc": torch.ones(B, 5),
    }
    prior = torch.softmax(torch.randn(f.shape[0], 20, generator=g), 1)
    return pred, batch, f, prior


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_dsr_target_zeroed_and_counted(bad):
    """Per-sample DSR zeroing (§3.8) with the real renderer: a sample with a NaN/Inf in either term
    contributes 0 to *both* batch means (the original's rule), is counted once, and leaves every
    gradient finite."""
    from dsr.losses import DSRLoss

    B, res = 4, 32
    pred, batch, faces, prior = _sphere_batch(B, res)
    wm, wc = 0.1, 0.2
    loss = DSRLoss(faces, prior, render_backend="window", img_res=res, focal_length=500.0,
                   dsr_mc_loss_weight=wm, dsr_c_loss_weight=wc)
    with torch.no_grad():
        mc_clean, c_clean, n0 = loss.dsr_losses(pred, batch)
    assert n0 == 0 and (mc_clean > 0).all() and (c_clean > 0).all()

    poisoned = {k: v.clone() for k, v in batch.items()}
    poisoned["grph_dsr_mc_label"][1, 5, 5] = bad  # sample 1: MC term only
    poisoned["dsr_c_class_weight"][3, 2] = bad  # sample 3: C term only (class 2 is present)
    poisoned["grph_dsr_mc_label"][0, 0, 0] = bad  # sample 0: both terms
    poisoned["dsr_c_class_weight"][0, :] = bad
    total, terms = loss(pred, poisoned, start_dsr=True)
    assert torch.isfinite(total)
    keep = torch.tensor([0.0, 0.0, 1.0, 0.0])  # samples 0, 1, 3 lose both terms
    torch.testing.assert_close(terms["loss/loss_dsr_mc"], wm * (mc_clean * keep).sum() / B, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(terms["loss/loss_dsr_c"], wc * (c_clean * keep).sum() / B, rtol=1e-5, atol=1e-7)
    assert loss.nonfinite_count == 3 and terms["stats/dsr_nonfinite_samples"].item() == 3
    total.backward()
    g = pred["smpl_vertices"].grad
    assert torch.isfinite(g).all()
    assert all((g[b] == 0).all() for b in (0, 1, 3))  # both terms dropped: no DSR gradient reaches them
    assert g[2].abs().sum() > 0
    # the counter accumulates over calls
    loss(pred, poisoned, start_dsr=True)
    assert loss.nonfinite_count == 6


class _Poison(torch.utils.data.Dataset):
    """Wraps a dataset; item i gets NaN in key k for every (i, k) in ``where``."""

    def __init__(self, base, where):
        self.base, self.where = base, where

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        item = self.base[i]
        for j, key in self.where:
            if i == j:
                t = item[key].clone()
                t.view(-1)[-max(1, t.numel() // 10):] = float("nan")  # keypoints: GT joints (not OpenPose)
                item[key] = t
        return item


def _poisoned_module(cfg, where):
    from dsr.data.loader import build_train_dataset, train_dataloader
    from dsr.lightning_module import DSRModule

    class Poisoned(DSRModule):
        def train_dataloader(self):
            return train_dataloader(self.cfg, _Poison(build_train_dataset(self.cfg), where))

    return Poisoned(cfg)


def test_nonfinite_loss_step_skipped_counted_training_goes_on(data_root, tmp_path):  # noqa: F811
    """NaN outside the DSR terms (keypoints; an image) makes the total loss non-finite: the step is
    skipped (no optimizer step, BatchNorm statistics untouched) and counted, the fit goes on."""
    from dsr.runner import build_trainer

    epochs = 1
    cfg = make_cfg(data_root, tmp_path, **{"TRAINING.MAX_EPOCHS": epochs, "TRAINING.LIMIT_TRAIN_BATCHES": 4,
                                           "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100, "DATASET.SHUFFLE_TRAIN": False,
                                           "DATASET.IMG_RES": 64})
    # batches (0,1) (2,3) (4,5) (6,7): item 1 NaN keypoints, item 6 a NaN image -> 2 bad of 4 per epoch
    module = _poisoned_module(cfg, [(1, "keypoints"), (6, "img")])
    trainer = build_trainer(cfg)
    trainer.fit(module)
    assert trainer.state.finished and trainer.current_epoch == epochs
    assert module.nonfinite_steps == 2 * epochs
    ck = torch.load(os.path.join(cfg.LOG_DIR, "checkpoints", "last.ckpt"), map_location="cpu", weights_only=False)
    assert _adam_steps(ck) == {2 * epochs}  # only the clean batches stepped the optimizer
    for name, t in module.model.state_dict().items():
        if t.is_floating_point():
            assert torch.isfinite(t).all(), f"{name} poisoned"
    module.eval()
    with torch.no_grad():
        out = module.model(torch.zeros(2, 3, 64, 64))
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("mc_type, target", [("nIOU", "grph_dsr_mc_label"), ("DistM", "grph_dsr_mc_dist_mat")])
def test_nan_dsr_target_in_a_fit_zeroed_counted(data_root, tmp_path, mc_type, target):  # noqa: F811
    """METHOD dsr with a NaN in one item's MC target: the sample's DSR-MC term is zeroed and
    counted, no step is skipped, the fit finishes."""
    from dsr.runner import build_trainer

    from dsr.data.loader import build_train_dataset

    # 112 px: the smallest crop where these items keep MC labels above DSR_MC_MIN_PIXELS
    cfg = make_cfg(data_root, tmp_path, **{"METHOD": "dsr", "DSR.START_DSR": -1, "DSR.RENDER_BACKEND": "window",
                                           "DSR.DSR_MC_LOSS_TYPE": mc_type, "TRAINING.LIMIT_TRAIN_BATCHES": 1,
                                           "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100,
                                           "DATASET.SHUFFLE_TRAIN": False, "DATASET.IMG_RES": 112,
                                           "TRAINING.USE_AUGM": False})
    clean = build_train_dataset(cfg)
    assert all(clean[i]["valid_labels_dsr_mc"].sum() > 0 for i in (0, 1))  # both items are rendered
    module = _poisoned_module(cfg, [(1, target)])
    trainer = build_trainer(cfg)
    trainer.fit(module)
    assert trainer.state.finished
    assert module.loss_fn.nonfinite_count == 1 and module.nonfinite_steps == 0
    ck = torch.load(os.path.join(cfg.LOG_DIR, "checkpoints", "last.ckpt"), map_location="cpu", weights_only=False)
    assert _adam_steps(ck) == {1}  # the step was taken
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())


# ============================================================================ 3. corrupt inputs
@pytest.fixture
def tree(data_root, tmp_path):  # noqa: F811
    """A private copy of the synthetic images, masks and npz files (tests corrupt them)."""
    root = tmp_path / "copy"
    shutil.copytree(data_root / "dataset_folders" / "synthetic", root / "synthetic")
    shutil.copytree(data_root / "dataset_extras", root / "extras")
    cfg = make_cfg(data_root, tmp_path)
    cfg.PATHS.DATASET_FOLDERS["synthetic"] = str(root / "synthetic")
    cfg.PATHS.DATASET_NPZ_PATH = str(root / "extras")
    return cfg, root


def _train_set(cfg, **kw):
    from dsr.data.base_dataset import BaseDataset

    return BaseDataset(cfg, "synthetic", is_train=True, use_augmentation=False, **kw)


def test_truncated_image_named(tree):
    from dsr.data.base_dataset import DatasetError

    cfg, root = tree
    ds = _train_set(cfg, with_dsr_targets=False)
    path = os.path.join(str(root / "synthetic"), ds.imgname[0])
    data = open(path, "rb").read()
    ds[0]  # intact
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"truncated JPEG {re.escape(path)}"):
        ds[0]
    with open(path, "wb") as f:
        f.write(b"not an image")
    with pytest.raises(DatasetError, match=f"cannot decode image {re.escape(path)}"):
        ds[0]
    os.remove(path)
    with pytest.raises(DatasetError, match=f"image not found: {re.escape(path)}"):
        ds[0]


def test_mask_of_wrong_size_named(tree):
    import cv2

    from dsr.data import graphonomy as G
    from dsr.data.base_dataset import DatasetError

    cfg, root = tree
    ds = _train_set(cfg, with_dsr_targets=True)
    ds[1]
    mpath = G.mask_path(str(root / "synthetic"), ds.imgname[1])
    m = cv2.imread(mpath, cv2.IMREAD_COLOR)
    cv2.imwrite(mpath, cv2.resize(m, (m.shape[1] // 2, m.shape[0]), interpolation=cv2.INTER_NEAREST))
    with pytest.raises(DatasetError, match=f"mask {re.escape(mpath)} has size"):
        ds[1]


@pytest.mark.parametrize("which", ["dataset", "mean_params", "smpl"])
def test_npz_missing_key_named(tree, tmp_path, which):
    cfg, root = tree
    if which == "dataset":
        from dsr.data.base_dataset import DatasetError

        path, key, err = str(root / "extras" / "synthetic_train.npz"), "center", DatasetError
    elif which == "mean_params":
        path, key, err = str(tmp_path / "smpl_mean_params.npz"), "cam", ValueError
        shutil.copy(cfg.PATHS.SMPL_MEAN_PARAMS, path)
        cfg.PATHS.SMPL_MEAN_PARAMS = path
    else:
        from dsr.body.smpl_io import BodyModelError

        shutil.copytree(cfg.PATHS.SMPL_MODEL_DIR, tmp_path / "smpl")
        path, key, err = str(tmp_path / "smpl" / "SMPL_NEUTRAL.npz"), "shapedirs", BodyModelError
        cfg.PATHS.SMPL_MODEL_DIR = str(tmp_path / "smpl")
    d = dict(np.load(path, allow_pickle=False))
    del d[key]
    np.savez(path, **d)
    with pytest.raises(err, match=rf"{re.escape(path)}.*{key}"):
        if which == "dataset":
            _train_set(cfg)
        else:
            from dsr.models import HMR

            HMR(cfg)


def test_checkpoint_of_another_architecture_named(data_root, tmp_path):  # noqa: F811
    from dsr.lightning_module import DSRModule
    from dsr.models import HMR
    from dsr.models.checkpoint import CheckpointError

    small = HMR(make_cfg(data_root, tmp_path))  # ResNet-18
    ck = str(tmp_path / "resnet18.pt")
    torch.save({"model": {**{f"backbone.{k}": v for k, v in small.backbone.state_dict().items()},
                          **{f"head.{k}": v for k, v in small.head.state_dict().items()}}}, ck)
    cfg = make_cfg(data_root, tmp_path, **{"SPIN.BACKBONE": "resnet50", "TRAINING.PRETRAINED": ck})
    with pytest.raises(CheckpointError, match=rf"{re.escape(ck)}: does not fit this model \(resnet50\)"):
        DSRModule(cfg)
    with open(ck, "rb") as f:
        half = f.read()
    with open(ck, "wb") as f:
        f.write(half[: len(half) // 2])
    with pytest.raises(CheckpointError, match=rf"{re.escape(ck)}: cannot read checkpoint"):
        DSRModule(cfg)


@pytest.mark.parametrize("text, key", [("TRAINING:\n  MAX_EPOHCS: 3\n", "TRAINING.MAX_EPOHCS"),
                                       ("DATASET:\n  BATCH_SIZE: two\n", "DATASET.BATCH_SIZE"),
                                       ("METOHD: dsr\n", "METOHD")])
def test_config_typo_exits_2_with_one_line(tmp_path, text, key):
    f = tmp_path / "typo.yaml"
    f.write_text(text)
    res = subprocess.run([sys.executable, TRAIN_PY, "--cfg", str(f)], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert str(f) in lines[0] and f"'{key}'" in lines[0]
