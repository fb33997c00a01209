"""Loading HMR weights from the checkpoint formats of reference §2.4, with an explicit key report.

Formats, tried in this order:

a. SPIN / DSR release: ``{'model': flat_state_dict, ...}`` with keys ``conv1.*``, ``bn1.*``,
   ``layer1..4.*`` (backbone) and ``fc1.*``, ``fc2.*``, ``decpose.*``, ``decshape.*``,
   ``deccam.*``, ``init_pose``/``init_shape``/``init_cam`` (head), all at the top level;
b. Lightning: ``{'state_dict': ...}`` whose keys carry ``model.`` and then ``backbone.`` /
   ``head.`` prefixes (ours and the original's);
c. a raw state dict in either key style.

``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes are dropped. Keys of the
body model (``body.*``, ``smpl.*``) are ignored: the body model comes from the SMPL files. So are
the layers that the original modules register but never call, named by each part's
``dropped_keys``: PARE's HRNet ``backbone.final_layer.*`` (a heatmap conv) and PARE's HMR head
``head.downsample_module.*`` (its call is commented out); PARE-layout HRNet checkpoints thus load
with nothing missing or unexpected. Mean
parameter buffers absent from the file keep the values read from ``smpl_mean_params.npz`` (what the
original does for format c).

``torch.load(weights_only=True)`` is used first; a file that needs full unpickling (e.g. a
Lightning checkpoint with a config object in ``hyper_parameters``) is re-read with
``weights_only=False`` and a warning, unless ``allow_unsafe=False``.

Errors (:class:`CheckpointError`, naming the file): missing/unreadable file, no state dict inside,
any shape mismatch, a checkpoint of another architecture (fewer than half of the model's
tensors found, or more than half of the file's tensors unknown), or a PARE-layout HRNet checkpoint
of another fusion variant (its backbone has ``downsample_stage_*`` / ``upsample_stage_*`` layers
the model lacks, or lacks the model's): the error names the BACKBONE the file needs
(``hrnet_wXX-conv`` for ``downsample_stage_1..3``, ``hrnet_wXX`` or ``hrnet_wXX-interp`` for
none), since its 36 extra or missing tensors are too few for the rule above and the model would
otherwise evaluate a different network. Everything else is loaded, and
missing / unexpected keys are logged and returned in a :class:`LoadReport`.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from loguru import logger

__all__ = ["CheckpointError", "LoadReport", "read_checkpoint", "load_hmr_checkpoint"]

_IGNORED_PREFIXES = ("body.", "smpl.")
_MEAN_BUFFERS = ("init_pose", "init_shape", "init_cam")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


@dataclass
class LoadReport:
    path: str
    format: str  # 'spin' | 'lightning' | 'raw' ('backbone' for dsr.models.backbone.load_backbone_weights)
    loaded: list = field(default_factory=list)  # model keys set from the file
    missing: list = field(default_factory=list)  # model keys absent from the file (kept as they were)
    unexpected: list = field(default_factory=list)  # file keys with no place in the model
    ignored: list = field(default_factory=list)  # file keys deliberately skipped (body model, unused layers)

    def __str__(self) -> str:
        return (f"{self.path} ({self.format} format): {len(self.loaded)} loaded, {len(self.missing)} missing "
                f"{self.missing[:5]}, {len(self.unexpected)} unexpected {self.unexpected[:5]}, "
                f"{len(self.ignored)} ignored (body model / unused layers) {self.ignored[:3]}")


def _torch_load(path: str, allow_unsafe: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" not in str(e).lower():  # not a pickle at all / corrupt
            raise CheckpointError(f"{path}: cannot read checkpoint ({e})") from e
        if not allow_unsafe:
            raise CheckpointError(f"{path}: needs full unpickling (weights_only=False), not allowed here: {e}") from e
        logger.warning(f"{path}: holds non-tensor objects; loading with weights_only=False (only load files you trust)")
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:
            raise CheckpointError(f"{path}: cannot read checkpoint ({type(e2).__name__}: {e2})") from e2
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e


def _is_state_dict(d) -> bool:
    return isinstance(d, dict) and len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())


def read_checkpoint(path: str, allow_unsafe: bool = True) -> tuple[dict, str]:
    """Read ``path`` -> (state dict with ``module.``/``_orig_mod.``/``model.`` stripped, format)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path!r} (TRAINING.PRETRAINED / --ckpt)")
    obj = _torch_load(path, allow_unsafe)
    if isinstance(obj, dict) and _is_state_dict(obj.get("model")):
        sd, fmt = obj["model"], "spin"
    elif isinstance(obj, dict) and _is_state_dict(obj.get("state_dict")):
        sd, fmt = obj["state_dict"], "lightning"
    elif _is_state_dict(obj):
        sd, fmt = obj, "raw"
    else:
        keys = list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: no state dict found (expected 'model', 'state_dict' or tensors; got {keys})")

    def strip(k: str) -> str:
        changed = True
        while changed:
            changed = False
            for p in ("module.", "_orig_mod."):
                if k.startswith(p):
                    k, changed = k[len(p):], True
        if fmt == "lightning" and k.startswith("model."):
            k = k[len("model."):]
        return k

    return {strip(k): v for k, v in sd.items()}, fmt


def _fusion_variant_error(path: str, keys, backbone: nn.Module, own: dict) -> str | None:
    """The error message when a PARE-layout HRNet file's fusion layers differ from the model's.
    ``own``: the backbone's state dict. None for a model or a file that is not an HRNet (the shape and
    architecture checks speak for those)."""
    fusion = getattr(backbone, "new_keys", None)  # PoseHRNet's fusion layer prefixes
    if fusion is None:
        return None

    def under(k: str, p: str) -> bool:
        return k.startswith(p) or k.startswith("backbone." + p)

    if not any(under(k, "transition1.") for k in keys):  # not an HRNet file
        return None
    file_keys = [k for k in keys if any(under(k, p) for p in fusion)]
    in_file = {p for k in file_keys for p in fusion if under(k, p)}
    in_model = {p for k in own for p in fusion if k.startswith(p)}
    if in_file == in_model:
        return None
    name = getattr(backbone, "name", "hrnet")
    base = name.split("-")[0]
    if "downsample_stage_" in in_file:
        needed = f"{base}-conv"
    elif "upsample_stage_" in in_file:
        needed = "PARE's upsampling fusion (downsample=False, use_conv=True; no BACKBONE name builds it)"
    else:
        needed = f"{base} or {base}-interp (no fusion convs)"
    has = f"has {sorted(in_file)} layers ({len(file_keys)} tensors)" if in_file else "has no fusion conv layers"
    return (f"{path}: an HRNet checkpoint of another fusion variant: the file {has}, the model ({name}) "
            f"{'has ' + str(sorted(in_model)) if in_model else 'has none'}; it needs BACKBONE {needed} "
            f"(DSR.BACKBONE / SPIN.BACKBONE)")


def load_hmr_checkpoint(model: nn.Module, path: str, allow_unsafe: bool = True) -> LoadReport:
    """Load ``path`` into an HMR model (attributes ``backbone`` and ``head``); see module doc."""
    sd, fmt = read_checkpoint(path, allow_unsafe)
    parts = {"backbone": model.backbone, "head": model.head}
    own = {name: part.state_dict() for name, part in parts.items()}
    report = LoadReport(path=path, format=fmt)
    new = {name: {} for name in parts}
    bad_shape = []
    unused = tuple(f"{name}.{p}" for name, part in parts.items() for p in getattr(part, "dropped_keys", ()))
    for k, v in sd.items():
        if k.startswith(_IGNORED_PREFIXES + unused):
            report.ignored.append(k)
            continue
        target = None
        for name in parts:
            if k.startswith(name + ".") and k[len(name) + 1:] in own[name]:
                target, sub = name, k[len(name) + 1:]
                break
        if target is None:  # SPIN flat keys
            for name in parts:
                if k in own[name]:
                    target, sub = name, k
                    break
        if target is None:
            report.unexpected.append(k)
            continue
        if tuple(own[target][sub].shape) != tuple(v.shape):
            bad_shape.append(f"{k}: file {tuple(v.shape)} vs model {tuple(own[target][sub].shape)}")
            continue
        new[target][sub] = v
    fusion = _fusion_variant_error(path, [k for k in sd if k not in report.ignored], model.backbone,
                                   own["backbone"])
    if fusion:
        raise CheckpointError(fusion)
    n_model = sum(len(o) for o in own.values())
    n_found = sum(len(n) for n in new.values())
    n_file = len(sd) - len(report.ignored)
    if bad_shape:
        raise CheckpointError(
            f"{path}: does not fit this model ({getattr(model.backbone, 'name', '?')}): {len(bad_shape)} shape "
            f"mismatches, e.g. {bad_shape[:3]}"
        )
    if n_found < 0.5 * n_model or len(report.unexpected) > 0.5 * max(n_file, 1):
        raise CheckpointError(
            f"{path}: a checkpoint of another architecture ({n_found}/{n_model} model tensors found, "
            f"{len(report.unexpected)}/{n_file} file tensors unknown, e.g. {report.unexpected[:3]})"
        )
    for name, part in parts.items():
        part.load_state_dict(new[name], strict=False)
        report.loaded += [f"{name}.{k}" for k in new[name]]
        report.missing += [f"{name}.{k}" for k in own[name] if k not in new[name]]
    logger.info(f"{path}: loaded {len(report.loaded)} tensors ({fmt} format); ignored {len(report.ignored)} "
                f"body-model / unused-layer keys")
    if report.missing:
        kept = [k for k in report.missing if k.split(".")[-1] in _MEAN_BUFFERS]
        logger.warning(f"{path}: {len(report.missing)} model keys missing from the file (kept as initialised): "
                       f"{report.missing[:10]}" + (" (mean-parameter buffers keep smpl_mean_params.npz)" if kept else ""))
    if report.unexpected:
        logger.warning(f"{path}: {len(report.unexpected)} unexpected keys ignored: {report.unexpected[:10]}")
    return report
