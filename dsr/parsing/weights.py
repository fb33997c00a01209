"""Load a human parser's released weights from a local file, with a strict key report.

Formats: a plain state dict (Graphonomy's ``inference.pth`` / ``universal_trained.pth``, saved by
torch 0.4) or ``{'state_dict': ...}`` (SCHP's ``exp-schp-201908261155-lip.pth``). Both are read
with ``torch.load(weights_only=True)``; a leading ``module.`` (DataParallel) is stripped.

Every problem is one :class:`ParserWeightsError` naming the file, raised before any weight is
copied: not a file, not a PyTorch checkpoint, no tensors, weights of another parser ("<file> looks
like schp-lip weights, not graphonomy"), or any missing, unexpected or mis-shaped key (all of
them listed). ``num_batches_tracked`` entries play no part in inference: the parsers' inference-only
normalisation layers have none, a file without them (torch 0.4 checkpoints, InPlaceABN layers) is
accepted and a file with them (saved by a later torch) has them dropped.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn as nn

__all__ = ["ParserWeightsError", "read_state_dict", "expected_layout", "identify_parser", "read_parser_weights"]

_IGNORED_MISSING = ("num_batches_tracked",)
_SHOW = 8  # keys listed per category in an error


class ParserWeightsError(ValueError):
    """A parser weights file is unreadable, belongs to another parser, or has wrong keys."""


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read ``path`` (CPU) -> {key without 'module.': tensor}. Raises ParserWeightsError."""
    if not os.path.isfile(path):
        raise ParserWeightsError(f"parser weights not found: {path} (where to get it: docs/parsing.md)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
        raise ParserWeightsError(f"{path} is not a PyTorch checkpoint readable with weights_only=True "
                                 f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ParserWeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    sd = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue
        k = str(k)
        if k.endswith(_IGNORED_MISSING):
            continue
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    if not sd:
        raise ParserWeightsError(f"{path} holds no tensors (keys: {sorted(map(str, obj))[:_SHOW]})")
    return sd


def expected_layout(build: Callable[[], nn.Module]) -> dict[str, tuple]:
    """{key: shape} of the state dict of ``build()``, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = build()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _compare(layout: dict[str, tuple], sd: dict[str, torch.Tensor]):
    missing = [k for k in layout if k not in sd and not k.endswith(_IGNORED_MISSING)]
    unexpected = [k for k in sd if k not in layout]
    misshaped = [(k, tuple(sd[k].shape), layout[k]) for k in layout if k in sd and tuple(sd[k].shape) != layout[k]]
    return missing, unexpected, misshaped


def identify_parser(sd: dict[str, torch.Tensor], layouts: dict[str, dict[str, tuple]]) -> str | None:
    """The parser whose layout ``sd`` matches exactly (no missing / unexpected / mis-shaped key), else None."""
    for name, layout in layouts.items():
        if not any(_compare(layout, sd)):
            return name
    return None


def _fmt(keys, what):
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return f"{len(keys)} {what}: " + ", ".join(map(str, keys[:_SHOW])) + more


def read_parser_weights(path: str, name: str, layout: dict[str, tuple],
                        other_layouts: dict | Callable[[], dict] | None = None) -> dict[str, torch.Tensor]:
    """Read ``path`` and check it against parser ``name``'s ``layout`` ({key: shape}).

    Args:
        other_layouts: {parser name: layout} of the other parsers (or a function returning it,
            called only for a file that does not match), to name the parser a foreign checkpoint
            belongs to.
    Returns:
        the state dict (keys without 'module.'), ready for ``model.load_state_dict(sd, strict=False)``
        (only ``num_batches_tracked`` entries may be absent).
    Raises:
        ParserWeightsError naming ``path`` (see the module docstring).
    """
    sd = read_state_dict(path)
    missing, unexpected, misshaped = _compare(layout, sd)
    if not (missing or unexpected or misshaped):
        return sd
    if callable(other_layouts):
        other_layouts = other_layouts()
    other = identify_parser(sd, {k: v for k, v in (other_layouts or {}).items() if k != name})
    if other is not None:
        raise ParserWeightsError(f"{path} looks like {other} weights, not {name}: use --parser {other} "
                                 f"or the {name} checkpoint")
    if len(layout) == len(missing) + sum(k.endswith(_IGNORED_MISSING) for k in layout):
        raise ParserWeightsError(f"{path} is not a {name} checkpoint: none of its {len(layout)} keys is there "
                                 f"(the file has {len(sd)} tensors, e.g. {', '.join(list(sd)[:3])})")
    parts = []
    if missing:
        parts.append(_fmt(missing, "missing keys"))
    if unexpected:
        parts.append(_fmt(unexpected, "unexpected keys"))
    if misshaped:
        parts.append(_fmt([f"{k} {s} (expected {e})" for k, s, e in misshaped], "mis-shaped keys"))
    raise ParserWeightsError(f"{path} does not match the {name} network: " + "; ".join(parts))
