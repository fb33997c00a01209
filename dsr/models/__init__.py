"""Regressor models: backbones, the HMR head, HMR = backbone + head + body model, checkpoints."""
from dsr.models.backbone import BACKBONES, BackboneWeightsError, build_backbone
from dsr.models.checkpoint import CheckpointError, LoadReport, load_hmr_checkpoint, read_checkpoint
from dsr.models.head import HMRHead, load_mean_params
from dsr.models.hmr import HMR

__all__ = [
    "BACKBONES",
    "BackboneWeightsError",
    "CheckpointError",
    "HMR",
    "HMRHead",
    "LoadReport",
    "build_backbone",
    "load_hmr_checkpoint",
    "load_mean_params",
    "read_checkpoint",
]
