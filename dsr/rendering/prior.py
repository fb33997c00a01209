"""Semantic prior -> per-face render features (reference §3.3).

``semantic_prior_features(prior, mc_valid)`` builds the 9 channels DSR renders per sample:
channel 0 (MC) = per face, the sum of the prior columns of the sample's *valid* minimal-clothing
labels ``DSR_MC_LABELS = [18 leftShoe, 19 rightShoe, 14 leftArm, 15 rightArm, 13 face]`` (in that
order, matching ``valid_labels_dsr_mc``); channels 1..8 (C0..C7) = the sums of the prior columns
of the 8 merged classes of §3.2 (``DSR_C_GROUPS``).

A per-vertex prior (V, 20) is accepted when ``faces`` is given: each face then takes the mean of
its three vertices' distributions (still rows summing to 1). The original's prior is per face.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.constants import DSR_C_GROUPS, DSR_MC_LABELS


def _merge_matrix(dtype, device) -> torch.Tensor:
    m = torch.zeros(20, len(DSR_C_GROUPS), dtype=dtype, device=device)
    for k, group in enumerate(DSR_C_GROUPS):
        m[group, k] = 1.0
    return m


def prior_per_face(prior: torch.Tensor, faces) -> torch.Tensor:
    """(F, 20) per-face prior unchanged, or (V, 20) per-vertex prior -> mean over each face's vertices."""
    faces = torch.as_tensor(faces, device=prior.device).long()
    if prior.shape[0] == faces.shape[0]:
        return prior
    if prior.shape[0] <= int(faces.max()):
        raise ValueError(f"semantic prior has {prior.shape[0]} rows: neither F={faces.shape[0]} faces nor "
                         f">= {int(faces.max()) + 1} vertices")
    return prior[faces].mean(1)


def semantic_prior_features(prior, mc_valid, faces=None) -> torch.Tensor:
    """prior (F, 20) per face [or (V, 20) per vertex with faces (F, 3)], mc_valid (B, 5) -> (B, F, 9)."""
    prior = torch.as_tensor(np.asarray(prior) if not torch.is_tensor(prior) else prior)
    mc_valid = torch.as_tensor(mc_valid)
    if prior.dim() != 2 or prior.shape[1] != 20:
        raise ValueError(f"semantic prior must be (F, 20) or (V, 20), got {tuple(prior.shape)}")
    if mc_valid.dim() != 2 or mc_valid.shape[1] != len(DSR_MC_LABELS):
        raise ValueError(f"mc_valid must be (B, {len(DSR_MC_LABELS)}), got {tuple(mc_valid.shape)}")
    if not prior.is_floating_point():
        prior = prior.float()
    if faces is not None:
        prior = prior_per_face(prior, faces)
    mc_valid = mc_valid.to(device=prior.device, dtype=prior.dtype)
    mc = mc_valid @ prior[:, DSR_MC_LABELS].T  # (B, F)
    c = prior @ _merge_matrix(prior.dtype, prior.device)  # (F, 8)
    return torch.cat((mc[..., None], c[None].expand(mc.shape[0], -1, -1)), dim=-1)
