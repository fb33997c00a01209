"""SSP-3D's evaluation protocol (Sengupta et al., BMVC 2020; akashsengupta1997/SSP-3D
``metrics.py``; silhouette IoU as the same author's HierarchicalProbabilistic3DHuman
``metrics/eval_metrics_tracker.py``), for ``ssp-3d``.

* **PVE-T-SC** (``pve_t_sc`` (B,) metres): T-pose meshes (zero pose, zero translation) of the
  predicted and the GT betas, **both through the GT gender's model** (``gender`` 0 male, 1
  female); the prediction moved onto the GT mesh's mean and scaled to its RMS distance from that
  mean (no rotation); mean vertex error.
* **Silhouette IoU**: the predicted posed mesh rendered (hard rasterization, pixel centres) with
  the regressor's own camera (focal DATASET.FOCAL_LENGTH, principal point at the crop centre,
  ``pred_cam_t``) into the evaluation crop (DATASET.IMG_RES), against the GT silhouette cropped
  the same way as the image (nearest neighbour; any nonzero pixel is foreground). Per sample:
  ``tp`` / ``fp`` / ``fn`` pixel counts and ``iou`` = TP / (TP + FP + FN) (NaN if all three are 0).
  Summary: ``iou`` pooled ΣTP / Σ(TP + FP + FN) (the author's figure) and ``iou_mean`` (mean
  per-image IoU), both fractions in [0, 1]; ``pve_t_sc`` in mm.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.evaluation import metrics
from dsr.evaluation.protocols import Protocol, split_by_gender
from dsr.rendering.semantic_renderer import rasterize

__all__ = ["Ssp3dProtocol", "tpose_vertices", "pve_t_sc"]

GENDERS = {0: "male", 1: "female"}


def tpose_vertices(body, betas: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) vertices of ``betas`` (B, S) in the zero pose, no translation."""
    B = betas.shape[0]
    eye = torch.eye(3, dtype=torch.float32, device=betas.device)
    with torch.autocast(device_type=betas.device.type, enabled=False):
        return body(global_orient=eye.expand(B, 1, 3, 3), body_pose=eye.expand(B, body.num_joints - 1, 3, 3),
                    betas=betas.float()).vertices


def pve_t_sc(body, pred_betas: torch.Tensor, gt_betas: torch.Tensor) -> torch.Tensor:
    """PVE-T-SC (B,) metres of predicted vs GT betas through one body model."""
    p = tpose_vertices(body, pred_betas).double()
    g = tpose_vertices(body, gt_betas).double()
    return (metrics.scale_translation_align(p, g) - g).norm(dim=-1).mean(dim=-1)


class Ssp3dProtocol(Protocol):
    name = "ssp-3d"
    datasets = ("ssp-3d",)

    def score(self, batch, pred):
        codes = batch["gender"].reshape(-1).to(pred["pred_shape"].device)
        err = torch.empty(codes.shape[0], dtype=torch.float64, device=codes.device)
        for m, g in split_by_gender(codes, GENDERS,
                                    "ssp-3d: gender codes {unknown}; SSP-3D labels every person 'm' or 'f'"):
            err[m] = pve_t_sc(self.body_of(g), pred["pred_shape"][m], batch["betas"][m].to(codes.device))
        body = self.body_of("neutral")
        raster = rasterize(pred["smpl_vertices"].float(), pred["pred_cam_t"].float(), body.faces, self.img_res,
                           focal_length=self.focal_length)
        tp, fp, fn = metrics.silhouette_counts(raster.pix_to_face >= 0, batch["silhouette"])
        union = (tp + fp + fn).double()
        iou = torch.where(union > 0, tp.double() / union.clamp_min(1), torch.full_like(union, float("nan")))
        return {"pve_t_sc": err, "tp": tp, "fp": fp, "fn": fn, "iou": iou}

    @staticmethod
    def summarise(res):
        tp, fp, fn = (np.asarray(res[k], dtype=np.float64) for k in ("tp", "fp", "fn"))
        total = (tp + fp + fn).sum()
        return {
            "pve_t_sc": float(np.mean(res["pve_t_sc"]) * 1000),
            "iou": float(tp.sum() / total) if total > 0 else float("nan"),
            "iou_mean": float(np.nanmean(res["iou"])) if np.isfinite(res["iou"]).any() else float("nan"),
            "num_samples": int(len(res["pve_t_sc"])),
        }

    def dump(self, res):
        return {k: res[k] for k in ("pve_t_sc", "iou", "tp", "fp", "fn")}

    def val_loss(self, summary):
        return summary["pve_t_sc"]

    def selection_score(self, summary):
        return summary["pve_t_sc"]

    def log_line(self, summary):
        return (f"PVE-T-SC {summary['pve_t_sc']:.2f} (mm)  IoU {summary['iou']:.4f} (pooled)  "
                f"{summary['iou_mean']:.4f} (mean per image)")
