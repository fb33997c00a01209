"""Per-dataset evaluation protocols (reference §6).

``eval_joints(dataset, ...)`` returns the (prediction, ground truth) joint sets that a dataset's
protocol compares, both pelvis-centred, in metres:

* ``3dpw`` and ``synthetic-test``: ground truth = mesh of the (gendered, with GENDER_EVAL) body
  model from GT pose/betas; both meshes go through the H36M regressor, are centred on its pelvis
  (joint 0) and reduced to 14 joints (``H36M_TO_J14``). PVE compares the meshes with no alignment.
* ``h36m-p1`` / ``h36m-p2``: ground truth = ``S`` (already root-centred) at ``J24_TO_J14``.
* ``mpi-inf-3dhp``: ground truth = ``S`` at ``J24_TO_J17``, predictions at ``H36M_TO_J17``;
  PCK at 150 mm and AUC over 0–150 mm are reported besides MPJPE / PA-MPJPE.
"""
from __future__ import annotations

import torch

from dsr import constants

MESH_GT_DATASETS = ("3dpw", "synthetic-test")
S_GT_DATASETS = ("h36m-p1", "h36m-p2", "mpi-inf-3dhp")
PCK_DATASETS = ("mpi-inf-3dhp",)

__all__ = ["MESH_GT_DATASETS", "S_GT_DATASETS", "PCK_DATASETS", "joint_map", "centre_and_select"]


def joint_map(dataset: str) -> tuple[list[int], list[int]]:
    """(H36M-regressor indices for predictions, 24-joint indices for ``S`` ground truth)."""
    if dataset in PCK_DATASETS:
        return constants.H36M_TO_J17, constants.J24_TO_J17
    if dataset in MESH_GT_DATASETS or dataset in S_GT_DATASETS:
        return constants.H36M_TO_J14, constants.J24_TO_J14
    raise ValueError(f"unknown evaluation dataset '{dataset}'; expected one of {constants.EVAL_DATASETS}")


def centre_and_select(h36m_joints: torch.Tensor, dataset: str) -> torch.Tensor:
    """(B,17,3) regressed H36M joints -> pelvis-centred (B,14|17,3) joints of the protocol."""
    pred_ids, _ = joint_map(dataset)
    pelvis = h36m_joints[:, :1, :]
    return (h36m_joints - pelvis)[:, pred_ids, :]


def gt_from_s(pose_3d: torch.Tensor, dataset: str) -> torch.Tensor:
    """(B,24,4) root-centred ``S`` -> (B,14|17,3) ground-truth joints of the protocol."""
    _, gt_ids = joint_map(dataset)
    return pose_3d[:, gt_ids, :3]
