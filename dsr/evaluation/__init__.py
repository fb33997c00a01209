"""Evaluation: metrics (MPJPE, PA-MPJPE, PVE, PCK, AUC) and per-dataset protocols (reference §6)."""
from dsr.evaluation.metrics import auc, mpjpe, pa_mpjpe, pck, pve, similarity_procrustes

__all__ = ["mpjpe", "pa_mpjpe", "pve", "pck", "auc", "similarity_procrustes"]
