"""Image backbones for HMR (reference §2.1).

``build_backbone(name, weights_path=None) -> nn.Module`` with ``out_channels``; forward maps
images (B, 3, H, W) to a feature map (B, C, H/32, W/32):

* ``resnet18`` / ``resnet34`` (C = 512), ``resnet50`` / ``resnet101`` (C = 2048): torchvision's
  layout (``conv1``, ``bn1``, ``layer1..4``; Bottleneck v1.5 for 50/101) without ``avgpool``/``fc``.
  ResNet-50 at 224 -> (B, 2048, 7, 7), the original's backbone.
* ``hrnet_w32`` (C = 2048): timm's HRNet-W32 classification trunk (``HRNet-W32-C``), its own
  fusion of the 4 resolution branches: each branch goes through its ``incre`` bottleneck
  (32/64/128/256 -> 128/256/512/1024 channels), the branches are merged from high to low
  resolution by strided 3x3 convolutions and summed, and a final 1x1 convolution gives 2048
  channels at stride 32 (7x7 at 224). Global pooling and classifier are removed. Every layer of
  this fusion is part of the ImageNet-pretrained network, so nothing is newly initialised and the
  HMR head sees the same (B, 2048, 7, 7) as with ResNet-50. (The original ships no HRNet.)

ImageNet initialisation comes only from a local file (``weights_path``: a torchvision/timm state
dict, ``.pth``/``.pt``/``.safetensors``); nothing is downloaded. ``''``/``None`` = random init, with
a warning. The classifier keys of the file (``fc.*``, ``classifier.*``) are dropped; any other
mismatch (missing keys, shape differences) is an error naming the file.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn as nn
import torchvision
from loguru import logger

__all__ = ["BACKBONES", "build_backbone", "ResNetBackbone", "HRNetBackbone", "BackboneWeightsError"]

_RESNETS = {
    "resnet18": (torchvision.models.resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (torchvision.models.resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (torchvision.models.resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (torchvision.models.resnet.Bottleneck, [3, 4, 23, 3]),
}
BACKBONES = tuple(_RESNETS) + ("hrnet_w32",)


class BackboneWeightsError(RuntimeError):
    """The ImageNet weights file is missing or does not fit the backbone."""


class ResNetBackbone(torchvision.models.ResNet):
    """torchvision ResNet without ``avgpool``/``fc``: (B,3,H,W) -> (B, C, H/32, W/32)."""

    def __init__(self, name: str):
        block, layers = _RESNETS[name]
        super().__init__(block, layers)
        del self.avgpool, self.fc
        self.name = name
        self.out_channels = 512 * block.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class HRNetBackbone(nn.Module):
    """timm HRNet-W32 classification trunk without pooling/classifier: (B,3,H,W) -> (B,2048,H/32,W/32)."""

    def __init__(self, name: str = "hrnet_w32"):
        super().__init__()
        import timm

        self.net = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
        self.name = name
        self.out_channels = self.net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)

    def imagenet_target(self) -> nn.Module:
        return self.net


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


def load_imagenet_weights(backbone: nn.Module, path: str) -> None:
    """Load a torchvision/timm ImageNet state dict into ``backbone`` (classifier keys dropped)."""
    if not os.path.isfile(path):
        raise BackboneWeightsError(
            f"ImageNet weights for {backbone.name} not found: {path!r}. Point PATHS.BACKBONE_WEIGHTS.{backbone.name} "
            f"at a local torchvision/timm state dict (e.g. resnet50-19c8e357.pth), or set it to '' for random init."
        )
    try:
        sd = _read_state_dict(path)
    except BackboneWeightsError:
        raise
    except Exception as e:  # unreadable / not a weights file
        raise BackboneWeightsError(f"{path}: cannot read ImageNet weights ({type(e).__name__}: {e})") from e
    target = backbone.imagenet_target() if hasattr(backbone, "imagenet_target") else backbone
    sd = {k: v for k, v in sd.items() if not k.startswith(("fc.", "classifier."))}
    own = target.state_dict()
    bad_shape = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
                 if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if bad_shape or missing:
        raise BackboneWeightsError(
            f"{path}: not {backbone.name} ImageNet weights ({len(missing)} missing keys, e.g. {missing[:3]}; "
            f"{len(bad_shape)} shape mismatches, e.g. {bad_shape[:3]})"
        )
    target.load_state_dict(sd, strict=False)
    logger.info(f"{backbone.name}: ImageNet weights from {path} ({len(sd)} tensors"
                + (f", ignored {len(unexpected)} unexpected: {unexpected[:5]}" if unexpected else "") + ")")


def build_backbone(name: str, weights_path: Optional[str] = None) -> nn.Module:
    """Backbone ``name`` (one of :data:`BACKBONES`), ImageNet-initialised from ``weights_path``."""
    if name in _RESNETS:
        net = ResNetBackbone(name)
    elif name == "hrnet_w32":
        net = HRNetBackbone(name)
    else:
        raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")
    if weights_path:
        load_imagenet_weights(net, weights_path)
    else:
        logger.warning(f"{name}: no ImageNet weights file given (PATHS.BACKBONE_WEIGHTS.{name}); random init")
    return net
