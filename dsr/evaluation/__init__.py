"""Evaluation: metrics (MPJPE, PA-MPJPE, PVE, PCK, AUC, joint angles, jitter, PVE-T-SC, silhouette
IoU) and the protocol objects of each evaluation set (reference §6; docs/evaluation.md):
``dsr.evaluation.protocols`` (SPIN-style 3DPW / H36M / MPI-INF-3DHP / synthetic-test, and
``build_protocol``), ``dsr.evaluation.emdb`` (EMDB-1/2), ``dsr.evaluation.ssp3d`` (SSP-3D)."""
from dsr.evaluation.metrics import auc, mpjpe, pa_mpjpe, pck, pve, similarity_procrustes

__all__ = ["mpjpe", "pa_mpjpe", "pve", "pck", "auc", "similarity_procrustes"]
