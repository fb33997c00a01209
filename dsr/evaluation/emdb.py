"""EMDB's official evaluation protocol (Kaufmann et al., ICCV 2023; eth-ait/emdb
``evaluation_metrics.py`` / ``evaluation_engine.py``), for ``emdb-1`` (and ``emdb-2``).

Per frame (the rows of ``emdb1_test.npz``: the good frames of the EMDB-1 sequences):

* ground truth = the sequence's own-gender body model (``gender`` 0 male, 1 female, 2 neutral) on
  the full parameters in the camera frame (``pose`` (72,) with the root rotated into the camera;
  the translation does not matter after centring); prediction = our **neutral** model's mesh
  (the official code evaluates methods that predict no gender with the GT gender's model; a
  regressor has the neutral one);
* joints = the J (24 for SMPL) skeleton joints of each model's own ``J_regressor`` (smplx's
  first J joints, posed through the kinematic tree) — not the H36M regressor of 3DPW;
* both joints and vertices centred on the **mean of the hips (joints 1 and 2)**, not joint 0;
* ``mpjpe_joints`` / ``pampjpe_joints`` (B, J) metres: per-joint error, and after a per-frame
  similarity Procrustes of the predicted joints onto the GT joints; ``v2v`` (B,) metres: mean
  vertex error; ``mpjae`` / ``pampjae`` (B,) degrees: mean over joints 0, 1, 2, 4, 5, 16, 17, 18,
  19 of the geodesic angle between the predicted and the GT global joint rotations (PA: the
  predicted ones turned by the Procrustes rotation first);
* jitter (per sequence, in the summary): the predicted skeleton joints with the translation zeroed
  (our model's output frame), frames in order (the good frames joined across the gaps, as the
  official code does), mean jerk norm at 30 fps with joints 0, 7, 8, 10, 11, 20–23 zeroed, in
  10 m/s³; averaged over sequences.

Summary: MPJPE / PA-MPJPE / PVE in mm, MPJAE / PA-MPJAE in degrees, jitter in 10 m/s³ — the
official tables' units; the pkl keeps metres and degrees.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.evaluation import metrics
from dsr.evaluation.protocols import Protocol, gendered_mesh
from dsr.geometry import batch_rodrigues

__all__ = ["EmdbProtocol", "global_rotations", "positional_errors", "angle_errors", "ANGLE_JOINTS", "JITTER_IGNORED",
           "FPS"]

ANGLE_JOINTS = (0, 1, 2, 4, 5, 16, 17, 18, 19)  # EMDB's SMPL_OR_JOINTS
JITTER_IGNORED = (0, 7, 8, 10, 11, 20, 21, 22, 23)
FPS = 30.0
HIPS = (1, 2)
GENDERS = {0: "male", 1: "female", 2: "neutral"}


def global_rotations(local: torch.Tensor, parents) -> torch.Tensor:
    """Local joint rotations (B, J, 3, 3) -> global ones (B, J, 3, 3) down the kinematic tree
    (``parents[j]`` < j, the root's < 0)."""
    out = [None] * local.shape[1]
    for j in range(local.shape[1]):
        p = int(parents[j])
        out[j] = local[:, j] if p < 0 else out[p] @ local[:, j]
    return torch.stack(out, dim=1)


def _hip_centre(joints: torch.Tensor) -> torch.Tensor:
    return (joints[:, HIPS[0]] + joints[:, HIPS[1]])[:, None] / 2.0


def positional_errors(pred_joints, pred_verts, gt_joints, gt_verts) -> dict[str, torch.Tensor]:
    """EMDB's positional errors, float64, inputs in metres: joints (B, J, 3), vertices (B, V, 3).

    Both sides centred on their hip mean (joints 1 and 2) -> ``mpjpe_joints`` (B, J),
    ``pampjpe_joints`` (B, J) (per-frame similarity Procrustes of the joints), ``v2v`` (B,), and
    ``procrustes_R`` (B, 3, 3), the rotation of that alignment (for PA-MPJAE).
    """
    pj, pv, gj, gv = (x.to(torch.float64) for x in (pred_joints, pred_verts, gt_joints, gt_verts))
    pc, gc = _hip_centre(pj), _hip_centre(gj)
    pj, pv, gj, gv = pj - pc, pv - pc, gj - gc, gv - gc
    scale, r_proc, mu_p, mu_g = metrics.similarity_transform(pj, gj)
    aligned = scale[:, None, None] * ((pj - mu_p) @ r_proc.transpose(1, 2)) + mu_g
    return {"mpjpe_joints": (pj - gj).norm(dim=-1), "pampjpe_joints": (aligned - gj).norm(dim=-1),
            "v2v": (pv - gv).norm(dim=-1).mean(dim=-1), "procrustes_R": r_proc}


def angle_errors(pred_local, gt_local, parents, r_proc) -> tuple[torch.Tensor, torch.Tensor]:
    """(MPJAE, PA-MPJAE) (B,) degrees from local joint rotations (B, J, 3, 3) of prediction and
    ground truth (camera-frame roots): mean over ANGLE_JOINTS of the geodesic angle between the
    global rotations, the predicted ones turned by ``r_proc`` (B, 3, 3) for PA-MPJAE."""
    joints = list(ANGLE_JOINTS)
    g_pred = global_rotations(pred_local.to(torch.float64), parents)[:, joints]
    g_gt = global_rotations(gt_local.to(torch.float64), parents)[:, joints]
    return (metrics.rotation_angle_deg(g_pred, g_gt).mean(dim=-1),
            metrics.rotation_angle_deg(r_proc.to(torch.float64)[:, None] @ g_pred, g_gt).mean(dim=-1))


class EmdbProtocol(Protocol):
    name = "emdb"
    datasets = ("emdb-1", "emdb-2")

    def score(self, batch, pred):
        body = self.body_of("neutral")
        rot = pred["pred_pose"].float()
        with torch.autocast(device_type=rot.device.type, enabled=False):
            out = body(global_orient=rot[:, :1], body_pose=rot[:, 1:], betas=pred["pred_shape"].float())
        gt_v, gt_j = gendered_mesh(self.body_of, batch["pose"], batch["betas"], batch["gender"], GENDERS)
        res = positional_errors(out.smpl_joints, out.vertices, gt_j, gt_v)
        r_proc = res.pop("procrustes_R")
        B = rot.shape[0]
        gt_local = batch_rodrigues(batch["pose"].double().reshape(-1, 3)).reshape(B, -1, 3, 3)
        res["mpjae"], res["pampjae"] = angle_errors(rot, gt_local, body.smpl.parents.tolist(), r_proc)
        res["jitter_joints"] = out.smpl_joints.double()  # translation zeroed: the model's own frame
        res["frame"] = torch.as_tensor(batch["frame"]).reshape(-1).to(rot.device)
        res["sequence"] = list(batch["sequence"])
        return res

    @staticmethod
    def jitter_per_sequence(res) -> dict[str, float]:
        """{sequence: jitter (10 m/s³)} over each sequence's frames in frame order (a frame seen
        twice, e.g. the padding of a distributed sampler, counts once)."""
        seq = np.asarray(res["sequence"])
        frame = np.asarray(res["frame"])
        out = {}
        for s in sorted(set(seq.tolist())):
            idx = np.flatnonzero(seq == s)
            _, first = np.unique(frame[idx], return_index=True)  # sorted by frame, duplicates dropped
            out[s] = metrics.jitter(res["jitter_joints"][idx[first]], fps=FPS, ignored_joints=JITTER_IGNORED)
        return out

    @classmethod
    def summarise(cls, res):
        jit = [v for v in cls.jitter_per_sequence(res).values() if np.isfinite(v)]
        return {
            "mpjpe": float(res["mpjpe_joints"].mean(axis=1).mean() * 1000),
            "pa_mpjpe": float(res["pampjpe_joints"].mean(axis=1).mean() * 1000),
            "pve": float(res["v2v"].mean() * 1000),
            "mpjae": float(res["mpjae"].mean()),
            "pa_mpjae": float(res["pampjae"].mean()),
            "jitter": float(np.mean(jit)) if jit else float("nan"),
            "num_samples": int(res["mpjpe_joints"].shape[0]),
        }

    def dump(self, res):
        return {"mpjpe": res["mpjpe_joints"], "pampjpe": res["pampjpe_joints"], "v2v": res["v2v"],
                "mpjae": res["mpjae"], "pampjae": res["pampjae"], "sequence": np.array(res["sequence"]),
                "frame": np.asarray(res["frame"]), "jitter_per_sequence": self.jitter_per_sequence(res)}

    def log_line(self, summary):
        return (f"MPJPE {summary['mpjpe']:.2f}  PA-MPJPE {summary['pa_mpjpe']:.2f}  PVE {summary['pve']:.2f} (mm)  "
                f"MPJAE {summary['mpjae']:.2f}  PA-MPJAE {summary['pa_mpjae']:.2f} (deg)  "
                f"jitter {summary['jitter']:.2f} (10 m/s^3)")
