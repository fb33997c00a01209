"""The LightningModule: wires model, body model, losses, data and evaluation (no maths here).

``DSRModule(cfg)``:
* training step — GT vertices from GT pose/betas with the neutral body model, ``DSRLoss`` (DSR-MC
  and DSR-C from ``current_epoch > START_DSR``; ``METHOD: spin`` = the same without DSR terms),
  scalars under the loss names of reference §10, image grids every ``LOG_FREQ_TB_IMAGES`` steps;
* validation / test step — ``self.protocol``, the protocol object of ``DATASET.VAL_DS``
  (dsr.evaluation: SPIN-style §6 for 3DPW / H36M / MPI-INF-3DHP / synthetic-test, EMDB, SSP-3D;
  this module knows no dataset by name), per-sample results gathered over devices; at epoch end:
  ``val_loss`` (PA-MPJPE in mm; PVE-T-SC on SSP-3D) and ``<stage>_<metric>`` of the protocol's
  summary logged, ``val_accuracy_results.json`` appended, ``evaluation_results_<VAL_DS>.pkl``
  dumped for the best epoch (1.5·PA-MPJPE + MPJPE; PVE-T-SC on SSP-3D): the protocol's arrays
  (SPIN-style: the original's keys and units, ``mpjpe`` / ``pampjpe`` (N, 14) per-joint errors in
  metres, ``v2v`` (N,) metres (0 without GT meshes); added ``pck`` / ``auc`` (N,) on
  MPI-INF-3DHP), ``imgname``, ``dataset_name`` (N,) str arrays, ``epoch``; ``pose`` (N, 24, 3, 3),
  ``shape`` (N, 10), ``cam_t`` (N, 3) with TESTING.SAVE_RESULTS; a line naming dataset and
  protocol appended to the experiment's ``results.csv`` (test stage);
* Adam with ``OPTIMIZER.LR`` / ``OPTIMIZER.WD``, no schedule (§7); added, off by default: a linear
  warm-up over ``OPTIMIZER.WARMUP_STEPS`` steps and a cosine decay to 0 over ``OPTIMIZER.COSINE_STEPS``
  (:class:`LRFactor`) (gradient clipping: ``OPTIMIZER.GRAD_CLIP_NORM`` in
  the Trainer, dsr.runner); ``stats/grad_norm`` (before clipping) every LOG_SAVE_INTERVAL steps;
* ``evaluate(loader)``: the metrics of a DataLoader outside Lightning's loops (learning-curve probes).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from loguru import logger
from yacs.config import CfgNode

from dsr.body import build_body_model
from dsr.config import config_from_yaml_text
from dsr.data.loader import build_train_dataset, build_val_dataset, train_dataloader, val_dataloader
from dsr.evaluation.protocols import SUMMARY_FIELDS, SpinProtocol, build_protocol, gt_mesh
from dsr.losses import DSRLoss
from dsr.models import HMR
from dsr.visualization import image_grid

__all__ = ["DSRModule"]


def _as_cfg(cfg) -> CfgNode:
    if isinstance(cfg, CfgNode):
        return cfg
    if isinstance(cfg, str):
        return config_from_yaml_text(cfg, "stored config")
    raise TypeError(f"cfg must be a CfgNode or its YAML dump, got {type(cfg).__name__}")


class DSRModule(pl.LightningModule):
    def __init__(self, cfg: CfgNode | str):
        super().__init__()
        cfg = _as_cfg(cfg)
        self.cfg = cfg
        self.save_hyperparameters({"cfg": cfg.dump()})
        P = cfg.PATHS
        self.model = HMR(cfg)  # loads TRAINING.PRETRAINED (SPIN/DSR, Lightning or raw) with a key report
        if self.model.load_report is not None:
            logger.info(f"pretrained weights {cfg.TRAINING.PRETRAINED}: {self.model.load_report}")
        # Body models used for ground truth are not part of the state dict (plain attributes).
        self._bodies: dict[str, torch.nn.Module] = {}
        self._body_paths = (P.SMPL_MODEL_DIR, P.JOINT_REGRESSOR_TRAIN_EXTRA, P.JOINT_REGRESSOR_H36M)
        neutral = self._body("neutral")
        prior = None
        if cfg.METHOD == "dsr":
            prior = torch.from_numpy(np.load(P.SEMANTIC_PRIOR)).float() if P.SEMANTIC_PRIOR else None
        self.loss_fn = DSRLoss.from_cfg(cfg, faces=neutral.faces, semantic_prior=prior)
        self.protocol = build_protocol(cfg, self._body)  # DATASET.VAL_DS's (dsr.evaluation)
        self._val_outputs: list[dict[str, Any]] = []
        self._best_score = float("inf")
        self.nonfinite_steps = 0

    # ------------------------------------------------------------------ helpers
    @property
    def hp(self):
        return self.cfg.DSR if self.cfg.METHOD == "dsr" else self.cfg.SPIN

    def _body(self, gender: str):
        if gender == "neutral":
            return self.model.body
        if gender not in self._bodies:
            model_dir, extra, h36m = self._body_paths
            self._bodies[gender] = build_body_model(model_dir, gender, extra_regressor_path=extra, h36m_regressor_path=h36m)
        body = self._bodies[gender]
        if body.faces.device != self.device:
            body.to(self.device)
        return body

    def _gt_mesh(self, pose: torch.Tensor, betas: torch.Tensor, gender: str = "neutral"):
        """Ground-truth mesh in float32, whatever the autocast context (mixed precision)."""
        return gt_mesh(self._body(gender), pose, betas)

    def start_dsr(self) -> bool:
        # the loss holds DSR.START_DSR and the original's gate (epoch > START_DSR; -1 = always)
        return self.cfg.METHOD == "dsr" and self.loss_fn.dsr_active(self.current_epoch)

    # ------------------------------------------------------------------ training
    def forward(self, images):
        return self.model(images)

    def _batchnorm_stats(self) -> list:
        """(module, running_mean, running_var, num_batches_tracked) copies of every BatchNorm."""
        return [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                for m in self.model.modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]

    def training_step(self, batch, batch_idx):
        bn_stats = self._batchnorm_stats()  # put back if the step is skipped
        pred = self.model(batch["img"])
        with torch.no_grad():
            batch["gt_vertices"] = self._gt_mesh(batch["pose"], batch["betas"]).vertices
        loss, terms = self.loss_fn(pred, batch, start_dsr=self.start_dsr())
        B = batch["img"].shape[0]
        bad = not bool(torch.isfinite(loss))
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1:  # every rank must agree, or the ranks that go on would wait for gradients
            flag = self.trainer.strategy.reduce(torch.tensor(float(bad), device=loss.device), reduce_op="max")
            bad = bool(flag > 0)
        if bad:
            # a skipped step changes nothing: the forward pass has already moved the BatchNorm
            # running statistics, and a NaN input would have made them NaN for good
            with torch.no_grad():
                for m, mean, var, n in bn_stats:
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(n)
            self.nonfinite_steps += 1
            logger.warning(f"step {self.global_step}: non-finite total loss, step skipped "
                           f"({self.nonfinite_steps} so far)")
            if world > 1:
                # DDP: a backward pass must still happen on every rank; zero gradients everywhere
                return sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)
            return None
        self.log_dict({k: v.detach() if torch.is_tensor(v) else v for k, v in terms.items()},
                      on_step=True, on_epoch=False, batch_size=B)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, batch_size=B, logger=False)
        freq = self.cfg.TRAINING.LOG_FREQ_TB_IMAGES
        if freq > 0 and self.global_step % freq == 0:
            self._log_images("train", batch, pred, self.global_step)
        return loss

    def _log_images(self, stage: str, batch, pred, step: int, max_items: int = 6):
        grid = image_grid(batch, pred, faces=self._body("neutral").faces, cfg=self.cfg, max_items=max_items)
        if grid is None:
            return
        if self.logger is not None and hasattr(self.logger, "experiment") and hasattr(self.logger.experiment, "add_image"):
            self.logger.experiment.add_image(f"{stage}_images", grid, step)
        save = self.cfg.TRAINING.SAVE_IMAGES if stage == "train" else self.cfg.TESTING.SAVE_IMAGES
        if save and self.global_rank == 0:
            import cv2

            folder = os.path.join(self.cfg.LOG_DIR, f"{stage}_output_images")
            os.makedirs(folder, exist_ok=True)
            img = (grid.permute(1, 2, 0).cpu().numpy() * 255).clip(0, 255).astype(np.uint8)
            cv2.imwrite(os.path.join(folder, f"result_{step:08d}.png"), img[..., ::-1])

    def configure_optimizers(self):
        O = self.cfg.OPTIMIZER
        opt = torch.optim.Adam(self.model.parameters(), lr=O.LR, weight_decay=O.WD)
        if O.WARMUP_STEPS <= 0 and O.COSINE_STEPS <= 0:
            return opt
        sched = _ConfigLambdaLR(opt, LRFactor(O.WARMUP_STEPS, O.COSINE_STEPS))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_before_optimizer_step(self, optimizer):
        """Log the global L2 norm of the gradients before any clipping (OPTIMIZER.GRAD_CLIP_NORM)."""
        if self.global_step % max(1, self.cfg.TRAINING.LOG_SAVE_INTERVAL) == 0:
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            if grads:
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                self.log("stats/grad_norm", norm, on_step=True, on_epoch=False)

    # ------------------------------------------------------------------ evaluation
    def eval_batch(self, batch) -> tuple[dict[str, Any], dict]:
        """The protocol of DATASET.VAL_DS (``self.protocol``, dsr.evaluation) on one batch ->
        (per-sample results, prediction): the protocol's tensors (e.g. ``mpjpe_joints`` /
        ``pampjpe_joints`` (B, J) metres, ``v2v`` (B,) metres), ``pose`` / ``shape`` / ``cam_t``
        with TESTING.SAVE_RESULTS; lists ``imgname`` / ``dataset_name``."""
        ds = self.cfg.DATASET.VAL_DS
        if self.cfg.TESTING.MEAN_PARAMS_BASELINE:
            pred = self.model.mean_prediction(batch["img"].shape[0])
        else:
            pred = self.model(batch["img"])
        out = self.protocol.score(batch, pred)
        B = pred["smpl_vertices"].shape[0]
        if self.cfg.TESTING.SAVE_RESULTS:
            out["pose"] = pred["pred_pose"]
            out["shape"] = pred["pred_shape"]
            out["cam_t"] = pred["pred_cam_t"]
        out = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
        out["imgname"] = list(batch.get("imgname", [""] * B))
        out["dataset_name"] = list(batch.get("dataset_name", [ds] * B))
        return out, pred

    def _eval_step(self, batch, batch_idx, stage):
        out, pred = self.eval_batch(batch)
        self._val_outputs.append(out)
        freq = self.cfg.TESTING.LOG_FREQ_TB_IMAGES
        if freq > 0 and batch_idx == 0:  # one grid per evaluation
            self._log_images(stage, batch, pred, self.global_step, max_items=4)

    def _gt_vertices_gendered(self, batch):
        """GT vertices of the SPIN-style protocol (gendered with GENDER_EVAL; see SpinProtocol)."""
        proto = self.protocol if isinstance(self.protocol, SpinProtocol) else SpinProtocol(
            self.cfg.DATASET.VAL_DS, self._body, gender_eval=self.cfg.DATASET.GENDER_EVAL)
        return proto.gt_vertices(batch)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "test")

    def on_validation_epoch_start(self):
        self._val_outputs = []

    on_test_epoch_start = on_validation_epoch_start

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        """Metrics of the model on every batch of ``loader`` (an evaluation DataLoader of
        DATASET.VAL_DS's protocol), outside Lightning's loops: nothing logged or written, one
        process. The model runs in eval mode (BatchNorm running statistics, no dropout); the
        previous mode is restored. Returns the protocol's summary (``summarise``)."""
        was_training = self.training
        self.eval()
        try:
            outs = []
            for batch in loader:
                batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                outs.append(self.eval_batch(batch)[0])
        finally:
            self.train(was_training)
        res = {k: (v.cpu().numpy() if torch.is_tensor(v) else v) for k, v in _concat(outs).items()}
        return self.protocol.summarise(res)

    def _gather(self) -> dict[str, Any]:
        res = _concat(self._val_outputs)
        for k, t in res.items():
            if torch.is_tensor(t):
                if self.trainer.world_size > 1:
                    t = self.all_gather(t).flatten(0, 1)
                res[k] = t.cpu().numpy()
        if self.trainer.world_size > 1:
            import torch.distributed as dist

            lists = {k: v for k, v in res.items() if isinstance(v, list)}
            gathered = [None] * self.trainer.world_size
            dist.all_gather_object(gathered, lists)
            for k in lists:
                # all_gather stacks rank-major, as all_gather_object does
                res[k] = [x for g in gathered for x in g[k]]
        return res

    def _eval_epoch_end(self, stage: str):
        if not self._val_outputs:
            return
        res = self._gather()
        self._val_outputs = []
        ds = self.cfg.DATASET.VAL_DS
        summary = self.protocol.summarise(res)
        self.log("val_loss", self.protocol.val_loss(summary))  # identical on every rank (gathered)
        for k, v in summary.items():
            if k != "num_samples":
                self.log(f"{stage}_{k}", v)
        if self.global_rank != 0:
            return
        logger.info(f"{stage} on {ds} ({summary['num_samples']} samples, protocol {self.protocol.name}, "
                    f"epoch {self.current_epoch}, step {self.global_step}): {self.protocol.log_line(summary)}")
        self.last_eval = dict(summary, dataset=ds, stage=stage, protocol=self.protocol.name)
        self._write_results(stage, ds, summary, res)

    def _write_results(self, stage, ds, summary, res):
        logdir = self.cfg.LOG_DIR
        os.makedirs(logdir, exist_ok=True)
        acc_file = os.path.join(logdir, "val_accuracy_results.json")
        history = []
        if os.path.isfile(acc_file):
            with open(acc_file) as f:
                history = json.load(f)
        history.append([int(self.global_step), dict(summary, dataset=ds, protocol=self.protocol.name, stage=stage,
                                                    epoch=int(self.current_epoch))])
        _atomic_write(acc_file, json.dumps(history, indent=1).encode())
        score = self.protocol.selection_score(summary)
        if score < self._best_score or stage == "test":
            self._best_score = min(score, self._best_score)
            # the protocol's arrays (SPIN-style: the original's file, metres, the first 14 joints)
            dump = dict(self.protocol.dump(res), imgname=np.array(res["imgname"]),
                        dataset_name=np.array(res["dataset_name"]), epoch=int(self.current_epoch))
            for k in ("pose", "shape", "cam_t"):
                if k in res:
                    dump[k] = res[k]
            _atomic_write(os.path.join(logdir, f"evaluation_results_{ds}.pkl"), pickle.dumps(dump))
        if stage == "test":
            exp_dir = os.path.dirname(os.path.normpath(logdir))
            row = {"run": os.path.basename(os.path.normpath(logdir)), "dataset": ds, "protocol": self.protocol.name,
                   "epoch": int(self.current_epoch), "step": int(self.global_step),
                   **{k: (f"{summary[k]:.4f}" if k in ("iou", "iou_mean") else f"{summary[k]:.3f}") if k in summary
                      else "" for k in SUMMARY_FIELDS}, "num_samples": summary["num_samples"]}
            append_results_csv(os.path.join(exp_dir, "results.csv"), row)

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------ data
    def train_dataloader(self):
        return train_dataloader(self.cfg, build_train_dataset(self.cfg))

    def val_dataloader(self):
        return val_dataloader(self.cfg, build_val_dataset(self.cfg))

    def test_dataloader(self):
        return val_dataloader(self.cfg, build_val_dataset(self.cfg))


class _ConfigLambdaLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR whose factor always comes from the config: a resumed run restores the step count
    from the checkpoint but not the stored factor's attributes (torch's LambdaLR would copy them
    over the config's, so that a changed OPTIMIZER.WARMUP_STEPS / COSINE_STEPS had no effect).
    Lightning restores the optimizer before the scheduler, so the LR set here is the one used."""

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        state_dict.pop("lr_lambdas", None)
        super().load_state_dict({**state_dict, "lr_lambdas": [None] * len(self.lr_lambdas)})
        # the optimizer's restored LR is the stored factor's: set the config's for the next step
        for group, base, fn in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas):
            group["lr"] = base * fn(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class LRFactor:
    """LR factor of optimizer step t (0-based): the linear warm-up min(1, (t + 1) / W) times the
    cosine decay (1 + cos(pi * min(t, C) / C)) / 2, each factor 1 when its length (W =
    OPTIMIZER.WARMUP_STEPS, C = OPTIMIZER.COSINE_STEPS) is <= 0. A class, not a lambda, so that
    the scheduler's state dict stays picklable."""

    def __init__(self, warmup_steps: int = 0, cosine_steps: int = 0):
        self.warmup_steps = int(warmup_steps)
        self.cosine_steps = int(cosine_steps)

    def __call__(self, step: int) -> float:
        f = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.cosine_steps > 0:
            f *= 0.5 * (1.0 + math.cos(math.pi * min(step, self.cosine_steps) / self.cosine_steps))
        return f


def _concat(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-batch results of :meth:`DSRModule.eval_batch` -> one dict (tensors concatenated, lists joined)."""
    return {k: ([x for o in outs for x in o[k]] if isinstance(outs[0][k], list) else torch.cat([o[k] for o in outs]))
            for k in outs[0]}


RESULTS_FIELDS = ["run", "dataset", "protocol", "epoch", "step", "num_samples", *SUMMARY_FIELDS]


def append_results_csv(path: str, row: dict) -> None:
    """Append ``row`` to the experiment's results.csv (columns RESULTS_FIELDS: every protocol's
    metrics, blank where a protocol has none). A file with an older header is rewritten to this
    one first (its rows keep their values; the new columns are blank)."""
    if os.path.isfile(path):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames, list(reader)
        if header != RESULTS_FIELDS:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=RESULTS_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            _atomic_write(path, buf.getvalue().encode())
    new = not os.path.isfile(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RESULTS_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
