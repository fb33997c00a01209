"""Inference-only human parsers -> CIHP label maps, the pseudo ground truth of DSR-MC / DSR-C.

An offline step (``tools/make_parsing_masks.py``); nothing in training imports this package.

Parsers (``PARSERS``), each a plain ``nn.Module`` whose state-dict layout is its released
checkpoint's, and whose ``forward(x)`` maps one normalised batch (B, 3, H, W) to CIHP logits
(B, 20, h, w) (one scale, no flip):

* ``graphonomy``: Graphonomy's demo network (``inference.pth``), the one DSR's authors used;
* ``graphonomy-universal``: Graphonomy's universal model, CIHP branch (``universal_trained.pth``);
* ``schp-lip``: Self-Correction Human Parsing, LIP model (``exp-schp-201908261155-lip.pth``).

API:

* ``build_parser(name, weights=None)`` -> the network in eval mode (random init without
  ``weights``; with a path: loaded through :mod:`dsr.parsing.weights`, every key checked).
* ``parse_images(model, name, images_rgb_uint8, scales=None, flip=True)`` -> labels with the
  parser's own full test-time procedure at each image's size: a (B, H, W) int64 array when all
  images share one size, else a list of B (H_i, W_i) int64 arrays.
* ``parser_layout(name)`` -> {state-dict key: shape} of the released checkpoint.

The Graphonomy module is imported only when a Graphonomy parser is asked for.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch.nn as nn
from loguru import logger

from dsr.parsing.schp import SCHP_PARSERS
from dsr.parsing.weights import ParserWeightsError, expected_layout, read_parser_weights

__all__ = ["PARSERS", "build_parser", "parse_images", "parser_layout", "ParserWeightsError"]

_GRAPHONOMY_NAMES = ("graphonomy", "graphonomy-universal")  # = graphonomy.GRAPHONOMY_PARSERS (tested)
PARSERS = _GRAPHONOMY_NAMES + SCHP_PARSERS


def _procedures(name: str):
    """-> (build(name) -> nn.Module, parse(model, images, scales, flip) -> list of labels)."""
    if name in SCHP_PARSERS:
        from dsr.parsing.schp import build_schp, schp_parse

        return build_schp, schp_parse
    if name in _GRAPHONOMY_NAMES:
        from dsr.parsing.graphonomy import build_graphonomy, graphonomy_parse

        return build_graphonomy, graphonomy_parse
    raise ValueError(f"unknown parser {name!r}; choose one of {PARSERS}")


def parser_layout(name: str) -> dict[str, tuple]:
    """{state-dict key: shape} of parser ``name``'s checkpoint (built on the meta device)."""
    build, _ = _procedures(name)
    return expected_layout(lambda: build(name))


def _other_layouts(name: str) -> dict[str, dict[str, tuple]]:
    layouts = {}
    for other in PARSERS:
        if other == name:
            continue
        try:
            layouts[other] = parser_layout(other)
        except Exception as e:  # noqa: BLE001 - only used to name a foreign checkpoint's parser
            logger.debug(f"parser {other} unavailable for identifying weights: {e}")
    return layouts


def build_parser(name: str, weights: str | None = None) -> nn.Module:
    """The network of parser ``name`` in eval mode; ``weights``: a local checkpoint file.

    The file is checked before the network is built (ParserWeightsError naming it: unreadable,
    another parser's weights, or missing / unexpected / mis-shaped keys).
    """
    build, _ = _procedures(name)
    sd = None
    if weights:
        sd = read_parser_weights(weights, name, parser_layout(name), lambda: _other_layouts(name))
    model = build(name)
    if sd is not None:
        model.load_state_dict(sd, strict=False)  # checked: only num_batches_tracked may be absent
    return model.eval()


def parse_images(model: nn.Module, name: str, images_rgb_uint8: Sequence[np.ndarray], scales=None,
                 flip: bool = True):
    """Parse RGB uint8 images (H_i, W_i, 3) with parser ``name``'s full test-time procedure.

    Args:
        scales: the parser's input scales (None = its default: Graphonomy's six, SCHP's one);
        flip: also parse the mirrored image and average (left/right channels swapped back).
    Returns:
        (B, H, W) int64 CIHP labels when all images have one size, else a list of (H_i, W_i) int64.
    """
    _, parse = _procedures(name)
    labels = parse(model, images_rgb_uint8, scales=scales, flip=flip)
    if labels and all(lab.shape == labels[0].shape for lab in labels):
        return np.stack(labels)
    return labels
