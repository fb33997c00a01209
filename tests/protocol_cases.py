"""Fabricated evaluation batches for the protocol tests (not a test module).

``run_case(ds, gender_eval)`` builds a :class:`dsr.lightning_module.DSRModule` on the embedded free
body model (ResNet-18, no weights: its forward pass is replaced by a fixed prediction), scores one
fabricated batch of ``B`` samples with the protocol of ``ds`` and returns the arrays of
``evaluation_results_<ds>.pkl`` that the module writes.

Run as a script (``python tests/protocol_cases.py``) it stores those arrays for every case in
``tests/data/protocol_golden.npz``; the stored file was made with the code before the protocols
moved into ``dsr/evaluation/`` (commit 59064e1, ``DSRModule.eval_batch`` with its per-dataset
branches), so that ``tests/test_protocols.py`` can check the move changed no number.
"""
from __future__ import annotations

import json
import os
import pickle
import sys
import tempfile

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(REPO, "tests", "data", "protocol_golden.npz")
B = 5
CASES = [("3dpw", True), ("3dpw", False), ("synthetic-test", True), ("h36m-p1", True), ("h36m-p2", True),
         ("mpi-inf-3dhp", True)]


def make_cfg(ds: str, gender_eval: bool, logdir: str):
    from conftest import free_body_cfg

    cfg = free_body_cfg("resnet18")
    cfg.PATHS.SEMANTIC_PRIOR = ""
    cfg.METHOD = "spin"
    cfg.DATASET.VAL_DS = ds
    cfg.DATASET.GENDER_EVAL = gender_eval
    cfg.TESTING.SAVE_RESULTS = True
    cfg.LOG_DIR = logdir
    return cfg


def fabricated(seed: int = 0):
    """(batch, prediction pose (B, 72) axis-angle, prediction betas (B, 10), cam_t (B, 3))."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(scale=0.3, size=(B, 72))
    pose[:, :3] = rng.normal(scale=1.0, size=(B, 3))
    betas = rng.normal(size=(B, 10))
    S = np.ones((B, 24, 4))
    S[:, :, :3] = rng.normal(scale=0.3, size=(B, 24, 3))
    S[:, :, :3] -= S[:, 14:15, :3]
    batch = {
        "img": torch.zeros(B, 3, 8, 8),
        "pose": torch.from_numpy(pose),
        "betas": torch.from_numpy(betas).float(),
        "pose_3d": torch.from_numpy(S),
        "gender": torch.tensor([0, 1, 1, 0, 1]),
        "imgname": [f"img_{i}.jpg" for i in range(B)],
        "dataset_name": ["fab"] * B,
    }
    pred_pose = pose + rng.normal(scale=0.2, size=(B, 72))
    pred_betas = betas + rng.normal(scale=0.5, size=(B, 10))
    cam_t = rng.normal(size=(B, 3)) + np.array([0, 0, 40.0])
    return batch, pred_pose, pred_betas, cam_t


def run_case(ds: str, gender_eval: bool, seed: int = 0) -> dict:
    """The pkl arrays (and ``summary_*`` of the logged summary) of one case, on one CPU thread
    (float32 sums depend on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_case(ds, gender_eval, seed)
    finally:
        torch.set_num_threads(threads)


def _run_case(ds: str, gender_eval: bool, seed: int) -> dict:
    from dsr.geometry import batch_rodrigues
    from dsr import lightning_module as lm
    from dsr.lightning_module import DSRModule

    with tempfile.TemporaryDirectory() as tmp:
        logdir = os.path.join(tmp, "run")
        module = DSRModule(make_cfg(ds, gender_eval, logdir))
        batch, pred_pose, pred_betas, cam_t = fabricated(seed)
        rot = batch_rodrigues(torch.from_numpy(pred_pose).float().reshape(-1, 3)).reshape(B, 24, 3, 3)
        betas = torch.from_numpy(pred_betas).float()
        with torch.no_grad():
            verts = module.model.body(global_orient=rot[:, :1], body_pose=rot[:, 1:], betas=betas).vertices
        pred = {"smpl_vertices": verts, "pred_pose": rot, "pred_shape": betas,
                "pred_cam_t": torch.from_numpy(cam_t).float()}
        module.model.forward = lambda img: pred
        module.eval()
        with torch.no_grad():
            module.on_test_epoch_start()
            module.test_step(batch, 0)
            module._trainer = None
            res = {k: (v.cpu().numpy() if torch.is_tensor(v) else v)
                   for k, v in lm._concat(module._val_outputs).items()}
        # the module's own summary (its protocol's; the code before the move had summarise_eval)
        summary = module.protocol.summarise(res) if hasattr(module, "protocol") else lm.summarise_eval(res)
        module._write_results("val", ds, summary, res)
        with open(os.path.join(logdir, f"evaluation_results_{ds}.pkl"), "rb") as f:
            dump = pickle.load(f)
        with open(os.path.join(logdir, "val_accuracy_results.json")) as f:
            summary = json.load(f)[-1][1]
        dump.update({f"summary_{k}": np.float64(v) for k, v in summary.items()
                     if isinstance(v, float) or k == "num_samples"})
        return dump


def key(ds: str, gender_eval: bool, name: str) -> str:
    return f"{ds}|{int(gender_eval)}|{name}"


def main() -> int:
    arrays = {}
    for ds, ge in CASES:
        dump = run_case(ds, ge)
        for k, v in dump.items():
            if isinstance(v, (np.ndarray, np.floating)) and np.asarray(v).dtype.kind in "fiuU":
                arrays[key(ds, ge, k)] = v
    os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {GOLDEN}: {len(arrays)} arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
