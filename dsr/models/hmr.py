"""HMR: backbone + iterative regressor + SMPL body model (reference §2.1-§2.3).

``HMR(cfg)`` reads ``cfg.METHOD`` ('dsr' -> ``cfg.DSR``, else ``cfg.SPIN``) for ``BACKBONE`` and ``HEAD_DROPOUT``;
``cfg.PATHS.BACKBONE_WEIGHTS[<backbone without -conv/-interp>]`` (initial weights: ImageNet for ResNets,
COCO pose-HRNet for HRNets; '' = random), ``cfg.PATHS.SMPL_MODEL_DIR``,
``cfg.PATHS.SMPL_MEAN_PARAMS``, ``cfg.PATHS.JOINT_REGRESSOR_TRAIN_EXTRA``,
``cfg.PATHS.JOINT_REGRESSOR_H36M`` ('' = none; evaluation needs it), ``cfg.DATASET.FOCAL_LENGTH``,
``cfg.DATASET.IMG_RES``; and loads ``cfg.TRAINING.PRETRAINED`` when set (``load_pretrained=True``).
Explicit keyword arguments build the same model without a config.

``forward(images (B,3,R,R))`` -> dict:
  ``pred_pose`` (B,J,3,3), ``pred_pose_6d`` (B,6J), ``pred_shape`` (B,S), ``pred_cam`` (B,3) weak
  perspective ``[s,tx,ty]``, ``pred_cam_t`` (B,3) = ``[tx, ty, 2f/(R s + 1e-9)]``,
  ``smpl_vertices`` (B,V,3), ``smpl_joints3d`` (B,49,3) (model frame, metres),
  ``smpl_joints2d`` (B,49,2): perspective projection with focal f, identity rotation, principal
  point 0, divided by R/2 -> crop coordinates in [-1, 1].
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from dsr.body import build_body_model
from dsr.geometry import convert_weak_perspective_to_perspective, perspective_projection, rot6d_to_rotmat
from dsr.models.backbone import build_backbone, weights_key
from dsr.models.checkpoint import LoadReport, load_hmr_checkpoint
from dsr.models.head import HMRHead

__all__ = ["HMR"]


class HMR(nn.Module):
    def __init__(
        self,
        cfg=None,
        *,
        backbone: str = "resnet50",
        backbone_weights: Optional[str] = None,
        smpl_model_dir: Optional[str] = None,
        mean_params: Optional[str] = None,
        extra_regressor: Optional[str] = None,
        h36m_regressor: Optional[str] = None,
        focal_length: float = 5000.0,
        img_res: int = 224,
        num_betas: int = 10,
        head_dropout: float = 0.5,
        pretrained: Optional[str] = None,
        load_pretrained: bool = True,
    ):
        super().__init__()
        if cfg is not None:
            block = cfg.DSR if str(cfg.METHOD).lower() == "dsr" else cfg.SPIN
            backbone = block.BACKBONE
            backbone_weights = cfg.PATHS.BACKBONE_WEIGHTS.get(weights_key(backbone), "")
            smpl_model_dir = cfg.PATHS.SMPL_MODEL_DIR
            mean_params = cfg.PATHS.SMPL_MEAN_PARAMS
            extra_regressor = cfg.PATHS.JOINT_REGRESSOR_TRAIN_EXTRA
            h36m_regressor = cfg.PATHS.JOINT_REGRESSOR_H36M or None
            focal_length = float(cfg.DATASET.FOCAL_LENGTH)
            img_res = int(cfg.DATASET.IMG_RES)
            pretrained = cfg.TRAINING.PRETRAINED
            head_dropout = float(block.HEAD_DROPOUT)
        if smpl_model_dir is None:
            raise ValueError("HMR: smpl_model_dir is required (PATHS.SMPL_MODEL_DIR)")
        if not extra_regressor:
            raise ValueError("HMR: extra_regressor is required for the 49 joints (PATHS.JOINT_REGRESSOR_TRAIN_EXTRA)")
        self.focal_length = focal_length
        self.img_res = img_res
        self.body = build_body_model(smpl_model_dir, "neutral", extra_regressor, h36m_regressor, num_betas=num_betas)
        self.backbone = build_backbone(backbone, backbone_weights)
        self.head = HMRHead(self.backbone.out_channels, mean_params, num_joints=self.body.num_joints,
                            num_betas=num_betas, dropout=head_dropout)
        self.load_report: Optional[LoadReport] = None
        if pretrained and load_pretrained:
            self.load_report = self.load_pretrained(pretrained)

    def load_pretrained(self, path: str, allow_unsafe: bool = True) -> LoadReport:
        """Load SPIN/DSR, Lightning or raw weights (reference §2.4); returns the key report."""
        return load_hmr_checkpoint(self, path, allow_unsafe=allow_unsafe)

    def forward(self, images: torch.Tensor) -> dict:
        return self.decode(self.head(self.backbone(images)))

    def decode(self, out: dict, body_model: Optional[nn.Module] = None) -> dict:
        """Head output (pred_pose, pred_shape, pred_cam, ...) -> + body mesh, joints, cam_t, 2D joints.

        ``body_model`` (default: the model's neutral body) can be another body with the same
        joints, e.g. a gendered one."""
        pose = out["pred_pose"]
        B = pose.shape[0]
        body_model = self.body if body_model is None else body_model
        body = body_model(global_orient=pose[:, :1], body_pose=pose[:, 1:], betas=out["pred_shape"])
        cam_t = convert_weak_perspective_to_perspective(out["pred_cam"], self.focal_length, self.img_res)
        joints2d = perspective_projection(
            body.joints, cam_t, self.focal_length, torch.zeros(B, 2, device=pose.device, dtype=cam_t.dtype)
        ) / (self.img_res / 2.0)
        out.update(pred_cam_t=cam_t, smpl_vertices=body.vertices, smpl_joints3d=body.joints, smpl_joints2d=joints2d)
        return out

    def mean_prediction(self, batch_size: int) -> dict:
        """The prediction made of the head's starting point alone (``smpl_mean_params.npz``: mean
        pose, shape and camera), for every item: the baseline any trained model must beat."""
        h = self.head
        pose6d = h.init_pose.expand(batch_size, -1)
        out = {
            "pred_pose": rot6d_to_rotmat(pose6d).reshape(batch_size, -1, 3, 3),
            "pred_pose_6d": pose6d,
            "pred_shape": h.init_shape.expand(batch_size, -1),
            "pred_cam": h.init_cam.expand(batch_size, -1),
        }
        return self.decode(out)
