"""Image backbones for HMR (reference §2.1).

``build_backbone(name, weights_path=None) -> nn.Module`` with ``out_channels``; forward maps
images (B, 3, H, W) to a feature map (B, C, h, w) that the HMR head pools globally:

* ``resnet18`` / ``resnet34`` (C = 512), ``resnet50`` / ``resnet101`` (C = 2048): torchvision's
  layout (``conv1``, ``bn1``, ``layer1..4``; Bottleneck v1.5 for 50/101) without ``avgpool``/``fc``,
  stride 32. ResNet-50 at 224 -> (B, 2048, 7, 7), the original's backbone.
* ``hrnet_w32`` / ``hrnet_w48`` (C = 480 / 720): PARE's pose HRNet (:mod:`dsr.models.hrnet`, PARE's
  key names), its four branches bilinearly resized to stride 4 and concatenated: (B, 480, 56, 56) at
  224. PARE's ``hrnet_w32()`` as DSR's ``BACKBONE: hrnet_w32`` builds it (the original's head,
  ``AvgPool2d(7)``, cannot pool this map; ours pools globally, as PARE's HMR head does).
* ``hrnet_w32-conv`` / ``hrnet_w32-interp`` (and ``w48``): the same trunk fused at stride 32 by
  PARE's ``downsample_stage_1..3`` strided convs or by bilinear resizing, (B, 480, 7, 7) at 224:
  PARE's HMR with these backbone names.

Initial weights come only from a local file (``weights_path``: ``.pth``/``.pt``/``.safetensors``;
for ResNets a torchvision ImageNet state dict, for HRNets a COCO pose-HRNet state dict such as
``pose_hrnet_w32_256x192.pth``, PARE's init); nothing is downloaded. ``''``/``None`` = random init,
with a warning. Tensors of the file listed by the backbone's ``dropped_keys`` (ResNet ``fc.*``,
HRNet ``final_layer.*``) are dropped, layers of ``new_keys`` (PARE's fusion convs) may be absent
and keep their initialisation; any other missing key or any shape difference is an error naming
the file. The key report is returned by :func:`load_backbone_weights`.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn as nn
import torchvision
from loguru import logger

from dsr.models.checkpoint import LoadReport
from dsr.models.hrnet import PoseHRNet

__all__ = ["BACKBONES", "build_backbone", "load_backbone_weights", "weights_key", "ResNetBackbone",
           "BackboneWeightsError"]

_RESNETS = {
    "resnet18": (torchvision.models.resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (torchvision.models.resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (torchvision.models.resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (torchvision.models.resnet.Bottleneck, [3, 4, 23, 3]),
}
# name -> (width, downsample, use_conv) of PoseHRNet; the suffixes are PARE's HMR backbone names
_HRNETS = {
    f"hrnet_w{w}{suffix}": (w, down, conv)
    for w in (32, 48)
    for suffix, down, conv in (("", False, False), ("-conv", True, True), ("-interp", True, False))
}
BACKBONES = tuple(_RESNETS) + tuple(_HRNETS)


class BackboneWeightsError(RuntimeError):
    """The initial weights file is missing or does not fit the backbone."""


def weights_key(name: str) -> str:
    """The ``PATHS.BACKBONE_WEIGHTS`` key of backbone ``name`` (``hrnet_w32-conv`` -> ``hrnet_w32``)."""
    return name.split("-")[0]


class ResNetBackbone(torchvision.models.ResNet):
    """torchvision ResNet without ``avgpool``/``fc``: (B,3,H,W) -> (B, C, H/32, W/32)."""

    dropped_keys = ("fc.",)  # the ImageNet classifier of torchvision's files
    new_keys = ()

    def __init__(self, name: str):
        block, layers = _RESNETS[name]
        super().__init__(block, layers)
        del self.avgpool, self.fc
        self.name = name
        self.out_channels = 512 * block.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _read_state_dict(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise BackboneWeightsError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_backbone_weights(backbone: nn.Module, path: str) -> LoadReport:
    """Load a state dict file into ``backbone`` (see the module doc) -> the key report
    (``ignored``: dropped keys, ``missing``: new layers kept as initialised, ``unexpected``: file
    keys with no place, ignored)."""
    name = backbone.name
    if not os.path.isfile(path):
        raise BackboneWeightsError(
            f"initial weights for {name} not found: {path!r}. Point PATHS.BACKBONE_WEIGHTS.{weights_key(name)} "
            f"at a local state dict (resnet50-19c8e357.pth for ResNet-50, pose_hrnet_w32_256x192.pth for "
            f"HRNet-W32), or set it to '' for random init."
        )
    try:
        sd = _read_state_dict(path)
    except BackboneWeightsError:
        raise
    except Exception as e:  # unreadable / not a weights file
        raise BackboneWeightsError(f"{path}: cannot read backbone weights ({type(e).__name__}: {e})") from e
    report = LoadReport(path=path, format="backbone")
    report.ignored = [k for k in sd if k.startswith(backbone.dropped_keys)]
    sd = {k: v for k, v in sd.items() if not k.startswith(backbone.dropped_keys)}
    own = backbone.state_dict()
    bad_shape = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
                 if k in own and tuple(v.shape) != tuple(own[k].shape)]
    absent = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    report.missing = [k for k in absent if k.startswith(backbone.new_keys)]
    missing = [k for k in absent if not k.startswith(backbone.new_keys)]
    report.unexpected = [k for k in sd if k not in own]
    if bad_shape or missing:
        raise BackboneWeightsError(
            f"{path}: not {name} weights ({len(missing)} missing keys, e.g. {missing[:3]}; "
            f"{len(bad_shape)} shape mismatches, e.g. {bad_shape[:3]})"
        )
    backbone.load_state_dict(sd, strict=False)
    report.loaded = [k for k in sd if k in own]
    logger.info(f"{name}: initial weights from {path} ({len(report.loaded)} tensors"
                + (f"; dropped {len(report.ignored)}: {report.ignored[:4]}" if report.ignored else "")
                + (f"; {len(report.missing)} new-layer tensors kept as initialised: {report.missing[:4]}"
                   if report.missing else "")
                + (f"; ignored {len(report.unexpected)} unexpected: {report.unexpected[:5]}" if report.unexpected
                   else "") + ")")
    return report


def build_backbone(name: str, weights_path: Optional[str] = None) -> nn.Module:
    """Backbone ``name`` (one of :data:`BACKBONES`), initialised from ``weights_path``."""
    if name in _RESNETS:
        net = ResNetBackbone(name)
    elif name in _HRNETS:
        width, downsample, use_conv = _HRNETS[name]
        net = PoseHRNet(width, downsample=downsample, use_conv=use_conv, name=name)
    else:
        raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")
    if weights_path:
        load_backbone_weights(net, weights_path)
    else:
        logger.warning(f"{name}: no initial weights file given (PATHS.BACKBONE_WEIGHTS.{weights_key(name)}); "
                       f"random init")
    return net
