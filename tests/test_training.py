"""End to end through the LightningModule on a fake ``dsr_data/`` tree (issue: training and
evaluation): evaluation for every VAL_DS, a DSR training step, resume, DDP on CPU, the CLI.

The tree is laid out as the original's (reference §9): the free body model in SMPL file layout,
and a few synthetic items written as the 3DPW / H36M / MPI-INF-3DHP test files and as the
synthetic train/test files.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from dsr.config import get_cfg_defaults
from dsr.runner import build_trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREE = os.path.join(REPO, "dsr", "assets", "free_body")


def copy_free_body(root) -> None:
    """The free body model in the original's dsr_data layout under ``root`` (a pathlib folder):
    smpl/SMPL_{NEUTRAL,MALE,FEMALE}.npz, the regressors, mean parameters and semantic prior."""
    os.makedirs(root / "smpl")
    for g in ("NEUTRAL", "MALE", "FEMALE"):
        shutil.copy(os.path.join(FREE, "smpl", f"SMPL_{g}.npz"), root / "smpl")
    shutil.copy(os.path.join(FREE, "smpl", "vertex_ids.json"), root / "smpl")
    for f in ("J_regressor_extra.npy", "J_regressor_h36m.npy", "smpl_mean_params.npz", "semantic_prior.npy"):
        shutil.copy(os.path.join(FREE, f), root / f)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from dsr.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("fake") / "dsr_data"
    copy_free_body(root)
    synth = root / "dataset_folders" / "synthetic"
    extras = root / "dataset_extras"
    make_synthetic(str(synth), str(extras), n_train=8, n_test=6, seed=3)
    train = dict(np.load(extras / "synthetic_train.npz"))
    test = dict(np.load(extras / "synthetic_test.npz"))
    # H36M / MPI-INF-3DHP evaluation files carry S (root-centred 24 joints), 3DPW carries SMPL + gender
    s_keys = ("imgname", "center", "scale", "part", "S")
    for name in ("h36m_valid_protocol1.npz", "h36m_valid_protocol2.npz", "mpi_inf_3dhp_valid.npz"):
        np.savez(extras / name, **{k: train[k][:6] for k in s_keys})
    np.savez(extras / "3dpw_test_with_mmpose.npz", **test)
    for ds in ("h36m", "mpi_inf_3dhp", "3dpw"):
        os.symlink(synth, root / "dataset_folders" / ds)
    return root


def make_cfg(root, tmp_path, **over):
    cfg = get_cfg_defaults()
    P = cfg.PATHS
    P.SMPL_MODEL_DIR = str(root / "smpl")
    P.SMPL_MEAN_PARAMS = str(root / "smpl_mean_params.npz")
    P.JOINT_REGRESSOR_TRAIN_EXTRA = str(root / "J_regressor_extra.npy")
    P.JOINT_REGRESSOR_H36M = str(root / "J_regressor_h36m.npy")
    P.SEMANTIC_PRIOR = str(root / "semantic_prior.npy")
    P.DATASET_NPZ_PATH = str(root / "dataset_extras")
    for k in list(P.DATASET_FOLDERS.keys()):
        P.DATASET_FOLDERS[k] = P.DATASET_FOLDERS[k].replace("dsr_data", str(root))
    cfg.LOG_DIR = str(tmp_path / "run")
    cfg.METHOD = "spin"
    cfg.PL_LOGGING = False
    cfg.SEED_VALUE = 0
    cfg.DATASET.TRAIN_DS = "synthetic"
    cfg.DATASET.VAL_DS = "synthetic-test"
    cfg.DATASET.BATCH_SIZE = 2
    cfg.DATASET.NUM_WORKERS = 0
    cfg.DATASET.PIN_MEMORY = False
    cfg.TRAINING.MAX_EPOCHS = 1
    cfg.TRAINING.LIMIT_TRAIN_BATCHES = 2
    cfg.TRAINING.LIMIT_VAL_BATCHES = 2
    cfg.TRAINING.LOG_FREQ_TB_IMAGES = 0
    cfg.TRAINING.LOG_SAVE_INTERVAL = 1
    cfg.TRAINING.RELOAD_DATALOADERS_EVERY_EPOCH = False
    cfg.TESTING.LOG_FREQ_TB_IMAGES = 0
    cfg.TRAINER.ACCELERATOR = "cpu"
    cfg.SPIN.BACKBONE = "resnet18"
    cfg.DSR.BACKBONE = "resnet18"
    for key, value in over.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return cfg


@pytest.mark.parametrize("val_ds", ["3dpw", "h36m-p1", "h36m-p2", "mpi-inf-3dhp", "synthetic-test"])
def test_evaluation_every_val_ds(data_root, tmp_path, val_ds):
    from dsr.lightning_module import DSRModule

    cfg = make_cfg(data_root, tmp_path, **{"DATASET.VAL_DS": val_ds, "RUN_TEST": True, "METHOD": "dsr",
                                           "TESTING.SAVE_RESULTS": True})
    module = DSRModule(cfg)
    build_trainer(cfg).test(module)
    res = module.last_eval
    assert res["num_samples"] == 4  # 2 batches of 2
    for k in ("mpjpe", "pa_mpjpe", "pve"):
        assert np.isfinite(res[k])
    assert res["pa_mpjpe"] <= res["mpjpe"] + 1e-6  # alignment can only lower the error
    if val_ds in ("3dpw", "synthetic-test"):
        assert res["pve"] > 0
    else:
        assert res["pve"] == 0.0
    if val_ds == "mpi-inf-3dhp":
        assert 0 <= res["pck"] <= 100 and 0 <= res["auc"] <= 100
    with open(os.path.join(cfg.LOG_DIR, "val_accuracy_results.json")) as f:
        hist = json.load(f)
    assert hist[-1][1]["mpjpe"] == pytest.approx(res["mpjpe"])
    with open(os.path.join(cfg.LOG_DIR, f"evaluation_results_{val_ds}.pkl"), "rb") as f:
        dump = pickle.load(f)
    # the original's keys and units: per-joint errors of the first 14 joints and v2v in metres
    assert {"imgname", "dataset_name", "mpjpe", "pampjpe", "v2v", "epoch", "pose", "shape", "cam_t"} <= set(dump)
    assert dump["mpjpe"].shape == (4, 14) and dump["pampjpe"].shape == (4, 14) and dump["v2v"].shape == (4,)
    # metres: the logged metric (mm) is 1000 x the mean where the protocol has 14 joints
    if val_ds != "mpi-inf-3dhp":
        assert 1000 * dump["mpjpe"].mean() == pytest.approx(res["mpjpe"], rel=1e-6)
        assert 1000 * dump["pampjpe"].mean() == pytest.approx(res["pa_mpjpe"], rel=1e-6)
    assert 1000 * dump["v2v"].mean() == pytest.approx(res["pve"], rel=1e-6, abs=1e-9)
    assert isinstance(dump["imgname"], np.ndarray) and dump["imgname"].shape == (4,)
    assert isinstance(dump["dataset_name"], np.ndarray) and set(dump["dataset_name"]) == {val_ds}
    assert dump["pose"].shape == (4, 24, 3, 3) and dump["shape"].shape == (4, 10) and dump["cam_t"].shape == (4, 3)
    if val_ds == "mpi-inf-3dhp":  # added keys: per-sample fractions
        assert dump["pck"].shape == (4,) and 100 * dump["pck"].mean() == pytest.approx(res["pck"])
    assert os.path.isfile(os.path.join(os.path.dirname(cfg.LOG_DIR), "results.csv"))


def test_gt_protocol_matches_manual_computation(data_root, tmp_path):
    """3DPW protocol: GT joints from the gendered mesh through the H36M regressor, pelvis-centred."""
    from dsr.body import build_body_model
    from dsr.constants import H36M_TO_J14
    from dsr.geometry import batch_rodrigues

    d = np.load(data_root / "dataset_extras" / "3dpw_test_with_mmpose.npz")
    pose = torch.tensor(d["pose"][:1], dtype=torch.float32)
    betas = torch.tensor(d["shape"][:1], dtype=torch.float32)
    gid = 0 if str(d["gender"][0]) == "m" else 1  # 3DPW files store 'm'/'f'; the dataset gives 0/1
    gender = "male" if gid == 0 else "female"
    body = build_body_model(str(data_root / "smpl"), gender, h36m_regressor_path=str(data_root / "J_regressor_h36m.npy"))
    R = batch_rodrigues(pose.reshape(-1, 3)).reshape(1, -1, 3, 3)
    verts = body(global_orient=R[:, :1], body_pose=R[:, 1:], betas=betas).vertices
    reg = torch.tensor(np.load(data_root / "J_regressor_h36m.npy"), dtype=torch.float32)
    j = torch.einsum("jv,bvc->bjc", reg, verts)
    expected = (j - j[:, :1])[:, H36M_TO_J14]

    from dsr.lightning_module import DSRModule

    cfg = make_cfg(data_root, tmp_path, **{"DATASET.VAL_DS": "3dpw"})
    module = DSRModule(cfg)
    batch = {"pose": pose, "betas": betas, "gender": torch.tensor([gid])}
    gt_verts = module._gt_vertices_gendered(batch)
    from dsr.evaluation.protocols import centre_and_select

    got = centre_and_select(module.model.body.regress_h36m_joints(gt_verts), "3dpw")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_dsr_training_step_renders_and_backpropagates(data_root, tmp_path):
    from dsr.lightning_module import DSRModule

    cfg = make_cfg(data_root, tmp_path, **{"METHOD": "dsr", "DSR.START_DSR": -1, "DSR.SIGMA_VAL": 1e-5,
                                           "DSR.DSR_MC_LOSS_TYPE": "nIOU", "DSR.DSR_MC_LOSS_WEIGHT": 0.1,
                                           "DSR.DSR_C_LOSS_WEIGHT": 0.1})
    module = DSRModule(cfg)
    loader = module.train_dataloader()
    batch = next(iter(loader))
    module.train()
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in module.model.head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # the DSR terms were computed (synthetic masks always hold valid MC labels)
    _, terms = module.loss_fn(module.model(batch["img"]), batch, start_dsr=True)
    assert terms["loss/loss_dsr_mc"] > 0 and terms["loss/loss_dsr_c"] > 0
    _, terms_off = module.loss_fn(module.model(batch["img"]), batch, start_dsr=False)
    assert terms_off["loss/loss_dsr_mc"] == 0 and terms_off["loss/loss_dsr_c"] == 0


def test_resume_continues_step_epoch_and_optimizer(data_root, tmp_path):
    from dsr.lightning_module import DSRModule

    cfg = make_cfg(data_root, tmp_path, **{"TRAINING.MAX_EPOCHS": 1, "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100})
    trainer = build_trainer(cfg)
    trainer.fit(DSRModule(cfg))
    last = os.path.join(cfg.LOG_DIR, "checkpoints", "last.ckpt")
    assert os.path.isfile(last) and not os.path.exists(last + ".tmp")
    ck = torch.load(last, map_location="cpu", weights_only=False)
    assert ck["global_step"] == 2 and ck["epoch"] == 0
    adam_steps = {int(s["step"]) for s in ck["optimizer_states"][0]["state"].values()}
    assert adam_steps == {2}

    cfg2 = make_cfg(data_root, tmp_path, **{"TRAINING.MAX_EPOCHS": 2, "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100,
                                            "TRAINING.RESUME": last})
    cfg2.LOG_DIR = str(tmp_path / "run2")
    module2 = DSRModule(cfg2)
    trainer2 = build_trainer(cfg2)
    trainer2.fit(module2, ckpt_path=last)
    assert trainer2.global_step == 4 and trainer2.current_epoch == 2
    ck2 = torch.load(os.path.join(cfg2.LOG_DIR, "checkpoints", "last.ckpt"), map_location="cpu", weights_only=False)
    assert ck2["global_step"] == 4 and ck2["epoch"] == 1
    assert {int(s["step"]) for s in ck2["optimizer_states"][0]["state"].values()} == {4}


def _write_cfg(path, cfg):
    with open(path, "w") as f:
        f.write(cfg.dump())


def test_ddp_two_cpu_processes_cli(data_root, tmp_path):
    cfg = make_cfg(data_root, tmp_path, **{"TRAINER.DEVICES": 2, "TRAINER.STRATEGY": "ddp",
                                           "TRAINING.MAX_EPOCHS": 1, "EXP_NAME": "ddp"})
    cfg_file = tmp_path / "ddp.cfg"
    _write_cfg(cfg_file, cfg)
    env = dict(os.environ, PL_DISABLE_FORK="1")
    env.pop("DSR_RUN_DIR", None)
    res = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--cfg", str(cfg_file)], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = [os.path.join(dp, "checkpoints", "last.ckpt") for dp, _, _ in os.walk(cfg.LOG_DIR)]
    lasts = [p for p in runs if os.path.isfile(p)]
    assert len(lasts) == 1, "both ranks must share one run directory"
    ck = torch.load(lasts[0], map_location="cpu", weights_only=False)
    assert ck["global_step"] == 2  # 2 batches per rank, each rank a different half of the data
    assert "test on synthetic-test (" in res.stderr + res.stdout


def test_bf16_mixed_precision_fit_with_dsr(data_root, tmp_path):
    """TRAINER.PRECISION 'bf16-mixed' (the CPU mixed precision): the DSR terms and the ground truth
    are computed in float32 inside autocast, training and evaluation finish with finite metrics."""
    from dsr.lightning_module import DSRModule

    cfg = make_cfg(data_root, tmp_path, **{"TRAINER.PRECISION": "bf16-mixed", "METHOD": "dsr", "DSR.START_DSR": -1,
                                           "DSR.SIGMA_VAL": 1e-5, "DSR.DSR_MC_LOSS_TYPE": "nIOU",
                                           "TRAINING.LIMIT_TRAIN_BATCHES": 1})
    module = DSRModule(cfg)
    batch = next(iter(module.train_dataloader()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = module.model(batch["img"])
        gt = module._gt_mesh(batch["pose"], batch["betas"]).vertices
        l_mc, l_c, _ = module.loss_fn.dsr_losses(pred, batch)
    assert gt.dtype == torch.float32 and l_mc.dtype == torch.float32 and l_c.dtype == torch.float32
    assert (l_mc > 0).all() and (l_c > 0).all()
    build_trainer(cfg).fit(module)
    assert all(np.isfinite(module.last_eval[k]) for k in ("mpjpe", "pa_mpjpe", "pve"))


def test_max_steps_and_throughput_log(data_root, tmp_path):
    """TRAINING.MAX_STEPS stops mid-epoch; the Throughput callback counts the images after the first
    step (3 steps of 2 images: 2 steps, 4 images) and every test image (2 batches of 2)."""
    from dsr.lightning_module import DSRModule
    from dsr.runner import Throughput

    cfg = make_cfg(data_root, tmp_path, **{"TRAINING.MAX_STEPS": 3, "TRAINING.MAX_EPOCHS": 100,
                                           "TRAINING.LIMIT_TRAIN_BATCHES": 4, "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100})
    module = DSRModule(cfg)
    trainer = build_trainer(cfg)
    trainer.fit(module)
    assert trainer.global_step == 3
    trainer.test(module)
    tp = [cb for cb in trainer.callbacks if isinstance(cb, Throughput)][0].results
    assert (tp["train"]["steps"], tp["train"]["images"], tp["train"]["warmup_steps"]) == (2, 4, 1)
    assert tp["test"]["images"] == 4 and tp["test"]["images_per_s"] > 0


def test_throughput_callback_by_hand():
    from types import SimpleNamespace

    from dsr.runner import Throughput

    module = SimpleNamespace(device=torch.device("cpu"))
    batch = {"img": torch.zeros(4, 3, 2, 2)}
    ticks = iter([100.0, 101.0, 104.0, 200.0, 202.0])
    cb = Throughput(warmup=2, clock=lambda: next(ticks), sync=lambda: None)
    cb.on_train_start(None, module)
    for i in range(5):  # clock read at the end of step 1 (100), of step 2 = warm-up (101), at the end (104)
        cb.on_train_batch_end(None, module, None, batch, i)
    cb.on_train_end(None, module)
    # steps 3..5 after the warm-up: 12 images in 104 - 101 = 3 s
    assert cb.results["train"] == dict(steps=3, images=12, seconds=3.0, images_per_s=4.0, warmup_steps=2)
    cb.on_test_start(None, module)
    for i, n in enumerate((5, 3)):  # the clock starts at the first batch's start (200), ends at 202
        cb.on_test_batch_start(None, module, None, i)
        cb.on_test_batch_end(None, module, None, {"img": torch.zeros(n, 3, 2, 2)}, i)
    cb.on_test_end(None, module)
    assert cb.results["test"] == dict(images=8, seconds=2.0, images_per_s=4.0)
    # fewer steps than the warm-up: every step after the first counts
    ticks = iter([0.0, 1.5])
    short = Throughput(warmup=10, clock=lambda: next(ticks), sync=lambda: None)
    short.on_train_start(None, module)
    for i in range(3):
        short.on_train_batch_end(None, module, None, batch, i)
    short.on_train_end(None, module)
    assert short.results["train"] == dict(steps=2, images=8, seconds=1.5, images_per_s=8 / 1.5, warmup_steps=1)


class _LrRecorder:
    """A callback recording the learning rate each training step runs with."""

    def __new__(cls):
        import pytorch_lightning as pl

        class Rec(pl.Callback):
            def __init__(self):
                self.lrs = []

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

        return Rec()


def test_warmup_schedule_by_hand_and_across_resume(data_root, tmp_path):
    """OPTIMIZER.WARMUP_STEPS N: step t (0-based) runs at LR * min(1, (t + 1) / N); the schedule's
    position is saved in last.ckpt and a resumed run continues it. 0 (default): constant LR."""
    from dsr.lightning_module import DSRModule

    lr, n = 1e-3, 4
    over = {"OPTIMIZER.LR": lr, "OPTIMIZER.WARMUP_STEPS": n, "TRAINING.MAX_STEPS": 6, "TRAINING.MAX_EPOCHS": 100,
            "TRAINING.LIMIT_TRAIN_BATCHES": 4, "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100}
    rec = _LrRecorder()
    build_trainer(make_cfg(data_root, tmp_path, **over), extra_callbacks=[rec]).fit(DSRModule(make_cfg(data_root, tmp_path, **over)))
    assert rec.lrs == pytest.approx([lr * 1 / 4, lr * 2 / 4, lr * 3 / 4, lr, lr, lr])

    # two steps, then resume for two more: the third and fourth steps run at 3/4 and 4/4 of LR
    cfg = make_cfg(data_root, tmp_path, **{**over, "TRAINING.MAX_STEPS": 2})
    cfg.LOG_DIR = str(tmp_path / "first")
    build_trainer(cfg).fit(DSRModule(cfg))
    last = os.path.join(cfg.LOG_DIR, "checkpoints", "last.ckpt")
    cfg2 = make_cfg(data_root, tmp_path, **{**over, "TRAINING.MAX_STEPS": 4})
    cfg2.LOG_DIR = str(tmp_path / "second")
    rec2 = _LrRecorder()
    build_trainer(cfg2, extra_callbacks=[rec2]).fit(DSRModule(cfg2), ckpt_path=last)
    assert rec2.lrs == pytest.approx([lr * 3 / 4, lr])

    off = {**over, "OPTIMIZER.WARMUP_STEPS": 0, "TRAINING.MAX_STEPS": 3}
    module = DSRModule(make_cfg(data_root, tmp_path, **off))
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)  # the original: no scheduler
    rec3 = _LrRecorder()
    build_trainer(make_cfg(data_root, tmp_path, **off), extra_callbacks=[rec3]).fit(module)
    assert rec3.lrs == [lr] * 3


@pytest.mark.parametrize("clip", [0.0, 1e-3])
def test_grad_clip_bounds_the_norm_at_the_optimizer_step(data_root, tmp_path, monkeypatch, clip):
    """OPTIMIZER.GRAD_CLIP_NORM c > 0: the global L2 norm of the gradients Adam sees is <= c, while
    the logged stats/grad_norm is the norm before clipping; 0 (default) leaves the gradients alone."""
    from dsr.lightning_module import DSRModule

    seen = []
    orig = torch.optim.Adam.step

    def step(self, closure=None):
        # Lightning passes the forward + backward (+ clipping) as the closure: run it first, then
        # measure the gradients the update is about to use
        loss = closure() if closure is not None else None
        g = [p.grad for grp in self.param_groups for p in grp["params"] if p.grad is not None]
        seen.append(float(sum((x.double() ** 2).sum() for x in g) ** 0.5))
        return orig(self, closure=lambda: loss)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    cfg = make_cfg(data_root, tmp_path, **{"OPTIMIZER.GRAD_CLIP_NORM": clip, "TRAINING.MAX_STEPS": 2,
                                           "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100})
    module = DSRModule(cfg)
    trainer = build_trainer(cfg)
    trainer.fit(module)
    assert len(seen) == 2
    pre_clip = float(trainer.callback_metrics["stats/grad_norm"])
    assert pre_clip > 1e-2  # the unclipped gradient of this loss is far above the clip value
    if clip > 0:
        assert max(seen) <= clip * (1 + 1e-4)
    else:
        assert seen[-1] == pytest.approx(pre_clip, rel=1e-4)


def test_evaluate_equals_the_lightning_test_pass(data_root, tmp_path):
    """DSRModule.evaluate(loader) (the learning-curve probe) gives the summary of trainer.test."""
    from dsr.data.loader import build_val_dataset, val_dataloader
    from dsr.lightning_module import DSRModule

    cfg = make_cfg(data_root, tmp_path, **{"TRAINING.LIMIT_VAL_BATCHES": 1.0})
    module = DSRModule(cfg)
    build_trainer(cfg).test(module)
    direct = module.evaluate(val_dataloader(cfg, build_val_dataset(cfg)))
    for k in ("mpjpe", "pa_mpjpe", "pve", "num_samples"):
        assert direct[k] == pytest.approx(module.last_eval[k], rel=1e-6)
    assert direct["num_samples"] == 6


def test_lr_factor_warmup_times_cosine_by_hand():
    """LRFactor(W, C): step t runs at min(1, (t + 1) / W) * (1 + cos(pi * min(t, C) / C)) / 2."""
    from dsr.lightning_module import LRFactor

    assert [LRFactor(0, 0)(t) for t in (0, 5, 1000)] == [1.0, 1.0, 1.0]
    assert [LRFactor(4, 0)(t) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    f = LRFactor(0, 8)
    # cos(0) = 1, cos(pi / 2) = 0 at t = 4, cos(pi) = -1 at t = 8 and after
    assert f(0) == 1.0 and f(4) == pytest.approx(0.5) and f(8) == pytest.approx(0.0) and f(20) == pytest.approx(0.0)
    assert f(2) == pytest.approx((1 + 2 ** -0.5) / 2)
    g = LRFactor(4, 8)
    assert g(1) == pytest.approx(0.5 * (1 + np.cos(np.pi / 8)) / 2)
    assert g(6) == pytest.approx((1 + np.cos(np.pi * 6 / 8)) / 2)


def test_cosine_schedule_reaches_the_optimizer(data_root, tmp_path):
    """OPTIMIZER.COSINE_STEPS alone (no warm-up) schedules the LR the training steps run with."""
    from dsr.lightning_module import DSRModule

    lr = 1e-3
    over = {"OPTIMIZER.LR": lr, "OPTIMIZER.COSINE_STEPS": 4, "TRAINING.MAX_STEPS": 5, "TRAINING.MAX_EPOCHS": 100,
            "TRAINING.LIMIT_TRAIN_BATCHES": 4, "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100}
    rec = _LrRecorder()
    build_trainer(make_cfg(data_root, tmp_path, **over), extra_callbacks=[rec]).fit(DSRModule(make_cfg(data_root, tmp_path, **over)))
    want = [lr * (1 + np.cos(np.pi * min(t, 4) / 4)) / 2 for t in range(5)]
    assert rec.lrs == pytest.approx(want, abs=1e-12)


def test_resume_takes_the_schedule_from_the_config(data_root, tmp_path):
    """A resumed run keeps the step count of last.ckpt but its LR factor follows the current config
    (torch's LambdaLR alone would copy the stored factor's lengths over the config's)."""
    from dsr.lightning_module import DSRModule

    lr = 1e-3
    over = {"OPTIMIZER.LR": lr, "OPTIMIZER.COSINE_STEPS": 2, "TRAINING.MAX_STEPS": 2, "TRAINING.MAX_EPOCHS": 100,
            "TRAINING.LIMIT_TRAIN_BATCHES": 4, "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100}
    cfg = make_cfg(data_root, tmp_path, **over)
    cfg.LOG_DIR = str(tmp_path / "first")
    build_trainer(cfg).fit(DSRModule(cfg))  # the cosine reaches 0 at step 2
    last = os.path.join(cfg.LOG_DIR, "checkpoints", "last.ckpt")
    cfg2 = make_cfg(data_root, tmp_path, **{**over, "OPTIMIZER.COSINE_STEPS": 0, "OPTIMIZER.WARMUP_STEPS": 4,
                                            "TRAINING.MAX_STEPS": 4})
    cfg2.LOG_DIR = str(tmp_path / "second")
    rec = _LrRecorder()
    build_trainer(cfg2, extra_callbacks=[rec]).fit(DSRModule(cfg2), ckpt_path=last)
    # steps 2 and 3 under the new config: warm-up 3/4 and 4/4, no cosine (the stored one gave 0)
    assert rec.lrs == pytest.approx([lr * 3 / 4, lr])
