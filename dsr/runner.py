"""Build the Lightning ``Trainer`` from the config and run fit / test (reference §1.2, §11).

Departures from the original, documented in docs/fidelity.md:
* ``last.ckpt`` is written every epoch (and every ``TRAINING.CKPT_EVERY_N_STEPS`` steps when > 0)
  and when training stops on an exception or Ctrl-C, whatever ``PL_LOGGING`` says, so a killed
  run resumes with ``TRAINING.RESUME: <run dir>/checkpoints/last.ckpt``;
* with ``PL_LOGGING`` the TensorBoard logger works (it was broken in the original).
"""
from __future__ import annotations

import os
import time
import zipfile

import pytorch_lightning as pl
import torch
from loguru import logger
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger

__all__ = ["LastCheckpoint", "Throughput", "build_trainer", "check_resume_checkpoint", "run"]


class LastCheckpoint(Callback):
    """Write ``<dirpath>/last.ckpt`` atomically at every training-epoch end, every
    ``every_n_steps`` optimizer steps (when set) and when fitting stops on an exception
    (Ctrl-C included). The file is written to ``last.ckpt.tmp`` and renamed, so a run killed while
    saving keeps the previous complete checkpoint."""

    def __init__(self, dirpath: str, every_n_steps: int | None = None):
        self.dirpath = dirpath
        self.every_n_steps = every_n_steps
        self._last_step_saved = -1

    @property
    def path(self) -> str:
        return os.path.join(self.dirpath, "last.ckpt")

    def save(self, trainer: pl.Trainer) -> None:
        if trainer.sanity_checking or trainer.global_step == self._last_step_saved and trainer.global_step > 0:
            return
        tmp = self.path + ".tmp"
        trainer.save_checkpoint(tmp)  # every rank calls it; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        self._last_step_saved = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every_n_steps and trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._last_step_saved = -1  # the end-of-epoch state differs from a mid-epoch one
        self.save(trainer)

    def on_exception(self, trainer, pl_module, exception):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._last_step_saved = -1
            self.save(trainer)


class Throughput(Callback):
    """Log images / s of training and of testing, one loguru line each when they end.

    train: the images of the steps after the first ``warmup`` (start-up, cuDNN autotuning, the first
    batches of the workers) over the wall time from the end of step ``warmup`` to the end of
    training, so data waits, epoch ends and checkpoints count (a run with at most ``warmup`` steps
    counts every step from the end of the first). test: every image over the wall time from the
    first batch's start to the end of testing (the DataLoader's start-up excluded).
    ``clock`` (seconds) and ``sync`` (waits for queued device work; CUDA: torch.cuda.synchronize)
    are arguments so that a test can drive them. ``self.results`` keeps the figures."""

    def __init__(self, warmup: int = 10, clock=time.perf_counter, sync=None):
        self.warmup = int(warmup)
        self.clock = clock
        self.sync = sync
        self.results = {}

    def _now(self, pl_module) -> float:
        if self.sync is not None:
            self.sync()
        elif pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return self.clock()

    @staticmethod
    def _images(batch) -> int:
        img = batch["img"] if isinstance(batch, dict) else batch[0]
        return int(img.shape[0])

    def on_train_start(self, trainer, pl_module):
        self._steps, self._t_first, self._t_warm, self._n_first, self._n_warm = 0, None, None, 0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._steps += 1
        n = self._images(batch)
        if self._steps == 1:
            self._t_first = self._now(pl_module)
        else:
            self._n_first += n
        if self._steps == self.warmup:
            self._t_warm = self._now(pl_module)
        elif self._steps > self.warmup:
            self._n_warm += n

    def on_train_end(self, trainer, pl_module):
        if self._steps < 2:
            return
        t = self._now(pl_module)
        if self._steps > self.warmup and self._t_warm is not None:
            steps, n, dt, skipped = self._steps - self.warmup, self._n_warm, t - self._t_warm, self.warmup
        else:
            steps, n, dt, skipped = self._steps - 1, self._n_first, t - self._t_first, 1
        rate = n / dt if dt > 0 else float("nan")
        self.results["train"] = dict(steps=steps, images=n, seconds=dt, images_per_s=rate, warmup_steps=skipped)
        logger.info(f"throughput: train {n} images in {steps} steps, {dt:.2f} s: {rate:.1f} images/s "
                    f"(after {skipped} warm-up steps; data waits, epoch ends and checkpoints included)")

    def on_test_start(self, trainer, pl_module):
        self._test_t0, self._test_n = None, 0

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self._test_t0 is None:
            self._test_t0 = self._now(pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._test_n += self._images(batch)

    def on_test_end(self, trainer, pl_module):
        if self._test_t0 is None or self._test_n == 0:
            return
        dt = self._now(pl_module) - self._test_t0
        rate = self._test_n / dt if dt > 0 else float("nan")
        self.results["test"] = dict(images=self._test_n, seconds=dt, images_per_s=rate)
        logger.info(f"throughput: test {self._test_n} images, {dt:.2f} s: {rate:.1f} images/s "
                    "(from the first batch's start to the end)")


def _devices(value):
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def build_trainer(cfg, logdir: str | None = None, extra_callbacks=None) -> pl.Trainer:
    logdir = logdir or cfg.LOG_DIR
    ckpt_dir = os.path.join(logdir, "checkpoints")
    T = cfg.TRAINER
    devices = _devices(T.DEVICES)
    strategy = T.STRATEGY
    if strategy == "auto" and isinstance(devices, int) and devices > 1:
        strategy = "ddp"
    every_n = cfg.TRAINING.CKPT_EVERY_N_STEPS if cfg.TRAINING.CKPT_EVERY_N_STEPS > 0 else None
    callbacks = [
        # last.ckpt at every epoch end (and every N steps): a killed run loses at most that much
        LastCheckpoint(ckpt_dir, every_n_steps=every_n),
        TQDMProgressBar(refresh_rate=1),
        Throughput(),
    ]
    tb_logger = False
    if cfg.PL_LOGGING:
        tb_logger = TensorBoardLogger(save_dir=logdir, name="tb_logs")
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, monitor="val_loss", mode="min",
                                         save_top_k=cfg.TRAINING.SAVE_TOP_K,
                                         filename="epoch{epoch:03d}-val_loss{val_loss:.2f}",
                                         auto_insert_metric_name=False))
    callbacks += list(extra_callbacks or [])
    return pl.Trainer(
        accelerator=T.ACCELERATOR,
        devices=devices,
        num_nodes=T.NUM_NODES,
        strategy=strategy,
        precision=T.PRECISION,
        max_epochs=cfg.TRAINING.MAX_EPOCHS,
        max_steps=cfg.TRAINING.MAX_STEPS,
        check_val_every_n_epoch=cfg.TRAINING.CHECK_VAL_EVERY_N_EPOCH,
        reload_dataloaders_every_n_epochs=1 if cfg.TRAINING.RELOAD_DATALOADERS_EVERY_EPOCH else 0,
        log_every_n_steps=max(1, cfg.TRAINING.LOG_SAVE_INTERVAL),
        limit_train_batches=cfg.TRAINING.LIMIT_TRAIN_BATCHES,
        limit_val_batches=cfg.TRAINING.LIMIT_VAL_BATCHES,
        limit_test_batches=cfg.TRAINING.LIMIT_VAL_BATCHES,
        num_sanity_val_steps=0,
        logger=tb_logger,
        callbacks=callbacks,
        gradient_clip_val=cfg.OPTIMIZER.GRAD_CLIP_NORM if cfg.OPTIMIZER.GRAD_CLIP_NORM > 0 else None,
        gradient_clip_algorithm="norm",
        default_root_dir=logdir,
        enable_checkpointing=True,
    )


def check_resume_checkpoint(path: str) -> None:
    """Fail early, naming ``TRAINING.RESUME`` and the file, when it is missing or cut short (e.g. the
    ``last.ckpt.tmp`` of a run killed while saving); Lightning's own error names neither."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TRAINING.RESUME: checkpoint not found: {path}")
    if zipfile.is_zipfile(path):  # torch.save's zip format ends with its central directory
        return
    try:  # not a zip: a legacy torch.save file, or a damaged one
        torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        from dsr.models.checkpoint import CheckpointError

        raise CheckpointError(f"TRAINING.RESUME: {path} is not a readable checkpoint (truncated or corrupt): "
                              f"{type(e).__name__}: {e}") from e


def run(cfg) -> int:
    """Train (then test) or only test, as ``cfg.RUN_TEST`` says. ``cfg.LOG_DIR`` is the run dir."""
    from dsr.lightning_module import DSRModule

    resume = cfg.TRAINING.RESUME or None
    if resume and not cfg.RUN_TEST:
        check_resume_checkpoint(resume)
    module = DSRModule(cfg)
    trainer = build_trainer(cfg)
    if cfg.RUN_TEST:
        trainer.test(module)
        return 0
    trainer.fit(module, ckpt_path=resume)
    if trainer.interrupted:
        logger.warning("training interrupted; last.ckpt was written, resume with TRAINING.RESUME")
        return 1
    best = None
    if cfg.PL_LOGGING:
        for cb in trainer.checkpoint_callbacks:
            if getattr(cb, "monitor", None) == "val_loss" and cb.best_model_path:
                best = cb.best_model_path
    trainer.test(module, ckpt_path=best)
    return 0
