"""``DSRLoss``: every training loss of DSR (reference §4) with the DSR gating of §3.8.

    total = LOSS_WEIGHT * [ KP * L_2D + KP * L_3D + POSE * L_pose + BETA * L_betas + SHAPE * L_vert
                            + L_cam + MC * L_dsr_mc + C * L_dsr_c ]

The returned dict holds the *weighted* terms (before the global x LOSS_WEIGHT) under the names of
§10 and ``'loss/total_loss'`` (after it), plus ``'stats/dsr_nonfinite_samples'`` (a count, not a
loss term).

DSR terms (§3.8): computed only when ``start_dsr`` is True and at least one DSR weight is > 0
(otherwise nothing is rendered and both are 0). Samples without any valid MC label count as 0
(and are not rendered); each term is the mean over the whole batch. A sample whose DSR-MC or
DSR-C loss is NaN/Inf gets 0 in *both* terms (the original's rule; it contributes no gradient) and
is counted once: ``self.nonfinite_count`` accumulates over calls and a loguru warning is emitted.
Both terms are computed whenever one weight is > 0 (a zero-weighted one without gradient), as the
original did, so a NaN in the unused term also zeroes the used one.

Rendering: the predicted vertices ``smpl_vertices`` (B, V, 3) at ``pred_cam_t`` (B, 3), 9 feature
channels per face from the semantic prior (``semantic_prior_features``: [MC, C0..C7]), one
:class:`~dsr.rendering.SemanticRenderer` pass. The MC render is channel 0, the C logits channels
1..8 (the original's mean over 3 identical RGB channels equals that channel).

Inputs of ``forward(pred, batch, start_dsr)``:
    pred: pred_pose (B, 24, 3, 3), pred_shape (B, 10), pred_cam (B, 3), pred_cam_t (B, 3),
          smpl_vertices (B, V, 3), smpl_joints3d (B, 49, 3), smpl_joints2d (B, 49, 2) in [-1, 1]
    batch: keypoints (B, 49, 3), pose_3d (B, 24, 4), pose (B, 72) axis-angle, betas (B, 10),
           has_smpl (B,), has_pose_3d (B,), gt_vertices (B, V, 3) [needed when SHAPE > 0],
           DSR: grph_dsr_mc_label (B, H, W) float, grph_dsr_mc_dist_mat (B, H, W) [DistM only],
           grph_dsr_c_label (B, H, W) long, dsr_c_class_weight (B, 8), valid_labels_dsr_mc (B, 5)
"""
from __future__ import annotations

import torch
from loguru import logger
from torch import nn

from dsr.geometry import batch_rodrigues
from dsr.rendering import SemanticRenderer, semantic_prior_features
from dsr.rendering.prior import prior_per_face

from .dsr_terms import dsr_c_loss, dsr_mc_dist_loss, dsr_mc_loss
from .hmr_terms import camera_loss, keypoint_3d_loss, keypoint_loss, shape_loss, smpl_losses

LOSS_NAMES = ("loss/loss_keypoints", "loss/loss_keypoints_3d", "loss/loss_regr_pose", "loss/loss_regr_betas",
              "loss/loss_shape", "loss/loss_cam", "loss/loss_dsr_mc", "loss/loss_dsr_c", "loss/total_loss")
MC_LOSS_TYPES = ("nIOU", "DistM")


def _zero_nonfinite_samples(terms):
    """terms: [(fn, args, grad)], fn(*args) -> (B,) per-sample loss, args batch first.

    The original's rule (§3.8): a sample whose value is NaN/Inf in *any* term gets 0 in *every*
    term. Terms with ``grad`` False are computed under no_grad (a zero-weighted term: the original
    computes it all the same, and its NaN zeroes the other term). Bad samples are recomputed out
    of the graph, so no NaN reaches the backward pass.

    Returns ([values (B,) per term], number of samples zeroed)."""
    def run(rows=None):
        outs = []
        for fn, args, grad in terms:
            a = args if rows is None else tuple(x[rows] for x in args)
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                outs.append(fn(*a))
        return outs

    outs = run()
    finite = torch.stack([torch.isfinite(o) for o in outs]).all(0)
    n_bad = int((~finite).sum())
    if n_bad == 0:
        return outs, 0
    good = finite.nonzero().squeeze(1)
    zeroed = [torch.zeros_like(o.detach()) for o in outs]
    if good.numel():
        zeroed = [z.index_put((good,), v) for z, v in zip(zeroed, run(good))]
    return zeroed, n_bad


class DSRLoss(nn.Module):
    """All DSR / SPIN losses (module docstring). Keyword arguments mirror the config keys.

    Args:
        faces: (F, 3) body-model faces; semantic_prior: (F, 20) per-face prior (or (V, 20)).
        keypoint_loss_weight .. beta_loss_weight, shape_loss_weight, openpose_train_weight,
        gt_train_weight, loss_weight: the SPIN block (cfg.DSR.*).
        dsr_mc_loss_weight, dsr_c_loss_weight: DSR weights (0 = term off).
        dsr_mc_loss_type: 'nIOU' | 'DistM'; mc_iou_mode: 'row' (original) | 'image'.
        start_dsr: START_DSR (use :meth:`dsr_active` to turn the epoch into the forward's flag).
        sigma, gamma, faces_per_pixel, render_backend, img_res, focal_length, compile_kernels:
            renderer settings (see SemanticRenderer).
    """

    def __init__(self, faces=None, semantic_prior=None, *, keypoint_loss_weight=5.0, pose_loss_weight=1.0,
                 beta_loss_weight=0.001, shape_loss_weight=0.0, openpose_train_weight=0.0, gt_train_weight=1.0,
                 loss_weight=60.0, dsr_mc_loss_weight=0.1, dsr_c_loss_weight=0.1, dsr_mc_loss_type="nIOU",
                 mc_iou_mode="row", start_dsr=-1, sigma=1e-5, gamma=0.1, faces_per_pixel=64,
                 render_backend="auto", img_res=224, focal_length=5000.0, compile_kernels=False):
        super().__init__()
        if dsr_mc_loss_type not in MC_LOSS_TYPES:
            raise ValueError(f"DSR.DSR_MC_LOSS_TYPE must be one of {MC_LOSS_TYPES}, got {dsr_mc_loss_type!r}")
        if mc_iou_mode not in ("row", "image"):
            raise ValueError(f"DSR.MC_IOU_MODE must be 'row' or 'image', got {mc_iou_mode!r}")
        self.keypoint_loss_weight = float(keypoint_loss_weight)
        self.pose_loss_weight = float(pose_loss_weight)
        self.beta_loss_weight = float(beta_loss_weight)
        self.shape_loss_weight = float(shape_loss_weight)
        self.openpose_train_weight = float(openpose_train_weight)
        self.gt_train_weight = float(gt_train_weight)
        self.loss_weight = float(loss_weight)
        self.dsr_mc_loss_weight = float(dsr_mc_loss_weight)
        self.dsr_c_loss_weight = float(dsr_c_loss_weight)
        self.dsr_mc_loss_type = dsr_mc_loss_type
        self.mc_iou_mode = mc_iou_mode
        self.start_dsr = int(start_dsr)
        self.nonfinite_count = 0
        self.renderer = None
        if self.uses_dsr:
            if faces is None or semantic_prior is None:
                raise ValueError("DSRLoss with DSR weights > 0 needs the body faces and the semantic prior "
                                 "(config PATHS.SEMANTIC_PRIOR)")
            faces = torch.as_tensor(faces).long()
            prior = torch.as_tensor(semantic_prior, dtype=torch.float32)
            if prior.dim() != 2 or prior.shape[1] != 20:
                raise ValueError(f"semantic prior must be (F, 20), got {tuple(prior.shape)}")
            prior = prior_per_face(prior, faces)  # a per-vertex prior becomes per face once, here
            self.register_buffer("semantic_prior", prior, persistent=False)
            self.register_buffer("faces", faces, persistent=False)
            self.renderer = SemanticRenderer(faces, image_size=img_res, focal_length=focal_length, sigma=sigma,
                                             gamma=gamma, faces_per_pixel=faces_per_pixel, backend=render_backend,
                                             compile_kernels=compile_kernels)

    @property
    def uses_dsr(self) -> bool:
        return self.dsr_mc_loss_weight > 0 or self.dsr_c_loss_weight > 0

    def dsr_active(self, current_epoch: int) -> bool:
        """The original's gate: always when START_DSR == -1, else current_epoch > START_DSR."""
        return self.start_dsr < 0 or current_epoch > self.start_dsr

    @classmethod
    def from_cfg(cls, cfg, faces=None, semantic_prior=None, method=None):
        """Build from a yacs config: the DSR block for METHOD 'dsr', the SPIN block (no DSR terms)
        for 'spin'."""
        method = method or cfg.METHOD
        if method not in ("dsr", "spin"):
            raise ValueError(f"METHOD must be 'dsr' or 'spin', got {method!r}")
        blk = cfg.DSR if method == "dsr" else cfg.SPIN
        kw = dict(keypoint_loss_weight=blk.KEYPOINT_LOSS_WEIGHT, pose_loss_weight=blk.POSE_LOSS_WEIGHT,
                  beta_loss_weight=blk.BETA_LOSS_WEIGHT, shape_loss_weight=blk.SHAPE_LOSS_WEIGHT,
                  openpose_train_weight=blk.OPENPOSE_TRAIN_WEIGHT, gt_train_weight=blk.GT_TRAIN_WEIGHT,
                  loss_weight=blk.LOSS_WEIGHT, img_res=cfg.DATASET.IMG_RES, focal_length=cfg.DATASET.FOCAL_LENGTH)
        if method == "dsr":
            d = cfg.DSR
            kw.update(dsr_mc_loss_weight=d.DSR_MC_LOSS_WEIGHT, dsr_c_loss_weight=d.DSR_C_LOSS_WEIGHT,
                      dsr_mc_loss_type=d.DSR_MC_LOSS_TYPE, mc_iou_mode=d.MC_IOU_MODE, start_dsr=d.START_DSR,
                      sigma=d.SIGMA_VAL, gamma=d.GAMMA_VAL, faces_per_pixel=d.FACES_PER_PIXEL,
                      render_backend=d.RENDER_BACKEND)
        else:
            kw.update(dsr_mc_loss_weight=0.0, dsr_c_loss_weight=0.0)
        return cls(faces, semantic_prior, **kw)

    def dsr_losses(self, pred: dict, batch: dict):
        """(L_MC (B,), L_C (B,), n_nonfinite): per-sample unweighted DSR losses, 0 for samples without
        MC labels and for the n_nonfinite samples where either is NaN/Inf.

        Rendered and reduced in float32 whatever the autocast (16-mixed / bf16-mixed) context."""
        verts, cam_t = pred["smpl_vertices"], pred["pred_cam_t"]
        with torch.autocast(device_type=verts.device.type, enabled=False):
            return self._dsr_losses_fp32(verts.float(), cam_t.float(), batch)

    def _dsr_losses_fp32(self, verts: torch.Tensor, cam_t: torch.Tensor, batch: dict):
        B = verts.shape[0]
        mc_valid = batch["valid_labels_dsr_mc"]
        l_mc = verts.new_zeros(B)
        l_c = verts.new_zeros(B)
        sel = (mc_valid.sum(1) > 0).nonzero().squeeze(1)
        if sel.numel() == 0:
            return l_mc, l_c, 0
        feats = semantic_prior_features(self.semantic_prior, mc_valid[sel], None).to(verts.dtype)
        render, _ = self.renderer(verts[sel], cam_t[sel], feats)  # (n, 9, H, W)
        if self.dsr_mc_loss_type == "nIOU":
            mode = self.mc_iou_mode
            mc_term = (lambda r, t: dsr_mc_loss(r, t, mode), (render[:, 0], batch["grph_dsr_mc_label"][sel]))
        else:
            if "grph_dsr_mc_dist_mat" not in batch:
                raise KeyError("DSR_MC_LOSS_TYPE 'DistM' needs batch['grph_dsr_mc_dist_mat'] (B, H, W)")
            mc_term = (dsr_mc_dist_loss, (render[:, 0], batch["grph_dsr_mc_dist_mat"][sel]))
        c_term = (dsr_c_loss, (render[:, 1:9], batch["grph_dsr_c_label"][sel], batch["dsr_c_class_weight"][sel]))
        (vals_mc, vals_c), n_bad = _zero_nonfinite_samples(
            [mc_term + (self.dsr_mc_loss_weight > 0,), c_term + (self.dsr_c_loss_weight > 0,)])
        return l_mc.index_put((sel,), vals_mc), l_c.index_put((sel,), vals_c), n_bad

    def forward(self, pred: dict, batch: dict, start_dsr: bool = True):
        """-> (total loss (scalar), dict of weighted terms; see module docstring)."""
        pred_rotmat = pred["pred_pose"]
        B = pred_rotmat.shape[0]
        gt_rotmat = batch_rodrigues(batch["pose"].reshape(-1, 3)).reshape(B, -1, 3, 3)
        l_kp = keypoint_loss(pred["smpl_joints2d"], batch["keypoints"], self.openpose_train_weight,
                             self.gt_train_weight)
        l_kp3d = keypoint_3d_loss(pred["smpl_joints3d"], batch["pose_3d"], batch["has_pose_3d"])
        l_pose, l_betas = smpl_losses(pred_rotmat, pred["pred_shape"], gt_rotmat, batch["betas"], batch["has_smpl"])
        if "gt_vertices" in batch:
            l_shape = shape_loss(pred["smpl_vertices"], batch["gt_vertices"], batch["has_smpl"])
        elif self.shape_loss_weight > 0:
            raise KeyError("SHAPE_LOSS_WEIGHT > 0 needs batch['gt_vertices'] (B, V, 3)")
        else:
            l_shape = pred["smpl_vertices"].sum() * 0.0
        l_cam = camera_loss(pred["pred_cam"])
        zero = l_cam * 0.0
        l_mc, l_c, n_bad = zero, zero, 0
        if start_dsr and self.uses_dsr:
            mc_vec, c_vec, n_bad = self.dsr_losses(pred, batch)
            l_mc, l_c = mc_vec.mean(), c_vec.mean()
            if n_bad:
                self.nonfinite_count += n_bad
                logger.warning(f"DSRLoss: {n_bad} sample(s) with a non-finite DSR loss, both terms set to 0 "
                               f"({self.nonfinite_count} so far)")
        terms = {
            "loss/loss_keypoints": self.keypoint_loss_weight * l_kp,
            "loss/loss_keypoints_3d": self.keypoint_loss_weight * l_kp3d,
            "loss/loss_regr_pose": self.pose_loss_weight * l_pose,
            "loss/loss_regr_betas": self.beta_loss_weight * l_betas,
            "loss/loss_shape": self.shape_loss_weight * l_shape,
            "loss/loss_cam": l_cam,
            "loss/loss_dsr_mc": self.dsr_mc_loss_weight * l_mc,
            "loss/loss_dsr_c": self.dsr_c_loss_weight * l_c,
        }
        total = self.loss_weight * sum(terms.values())
        terms["loss/total_loss"] = total
        terms["stats/dsr_nonfinite_samples"] = torch.tensor(float(n_bad), device=total.device)
        return total, terms


class HMRLoss(DSRLoss):
    """The SPIN baseline (METHOD 'spin'): DSRLoss without the two DSR terms."""

    def __init__(self, **kwargs):
        kwargs.update(dsr_mc_loss_weight=0.0, dsr_c_loss_weight=0.0)
        super().__init__(None, None, **kwargs)

    @classmethod
    def from_cfg(cls, cfg, faces=None, semantic_prior=None, method="spin"):
        obj = DSRLoss.from_cfg(cfg, None, None, method="spin")
        obj.__class__ = cls
        return obj
