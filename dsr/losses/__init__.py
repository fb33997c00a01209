"""Losses: SPIN/HMR terms (hmr_terms.py), DSR-MC / DistM / DSR-C (dsr_terms.py), and the
``DSRLoss`` module that combines them with the config weights and DSR gating (dsr_loss.py)."""
from .dsr_loss import LOSS_NAMES, DSRLoss, HMRLoss
from .dsr_terms import dsr_c_loss, dsr_mc_dist_loss, dsr_mc_loss
from .hmr_terms import camera_loss, keypoint_3d_loss, keypoint_loss, shape_loss, smpl_losses

__all__ = ["LOSS_NAMES", "DSRLoss", "HMRLoss", "camera_loss", "dsr_c_loss", "dsr_mc_dist_loss", "dsr_mc_loss",
           "keypoint_3d_loss", "keypoint_loss", "shape_loss", "smpl_losses"]
