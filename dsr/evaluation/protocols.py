"""Evaluation protocols, one object per family (reference §6; docs/evaluation.md).

A protocol owns what a benchmark compares: its ground truth, joint set, alignment, metrics,
summary and the arrays of ``evaluation_results_<VAL_DS>.pkl``. :class:`dsr.lightning_module.DSRModule`
asks :func:`build_protocol` for the one of ``DATASET.VAL_DS`` and knows no dataset by name.

* :class:`SpinProtocol` — ``3dpw``, ``synthetic-test``, ``h36m-p1``, ``h36m-p2``, ``mpi-inf-3dhp``
  (SPIN / PARE / DSR's protocol):

  - ``3dpw`` and ``synthetic-test``: ground truth = mesh of the (gendered, with GENDER_EVAL) body
    model from GT pose/betas; both meshes go through the H36M regressor, are centred on its pelvis
    (H36M joint 0) and reduced to 14 LSP joints (``H36M_TO_J14``). PVE compares the meshes with no
    alignment;
  - ``h36m-p1`` / ``h36m-p2``: ground truth = ``S`` (already root-centred) at ``J24_TO_J14``;
  - ``mpi-inf-3dhp``: ground truth = ``S`` at ``J24_TO_J17``, predictions at ``H36M_TO_J17``; PCK
    at 150 mm and AUC over 0–150 mm besides MPJPE / PA-MPJPE.

* :class:`dsr.evaluation.emdb.EmdbProtocol` — ``emdb-1`` / ``emdb-2`` (EMDB's official protocol).
* :class:`dsr.evaluation.ssp3d.Ssp3dProtocol` — ``ssp-3d`` (PVE-T-SC, silhouette IoU).

Interface (every protocol): ``score(batch, pred) -> dict`` of per-sample tensors (B, ...) and
lists; ``summarise(res) -> dict`` of floats (reported units) and ``num_samples``; ``dump(res) ->
dict`` of the pkl arrays (metres, degrees, pixel counts); ``val_loss(summary)`` (the value
``val_loss`` logs); ``selection_score(summary)`` (lower = better epoch, the one whose pkl is kept);
``log_line(summary)``; ``name`` (the protocol column of ``results.csv``). ``res`` is the
concatenation over batches (numpy arrays, lists) of what ``score`` returned.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from dsr import constants
from dsr.evaluation import metrics
from dsr.geometry import batch_rodrigues

MESH_GT_DATASETS = ("3dpw", "synthetic-test")
S_GT_DATASETS = ("h36m-p1", "h36m-p2", "mpi-inf-3dhp")
PCK_DATASETS = ("mpi-inf-3dhp",)

__all__ = ["MESH_GT_DATASETS", "S_GT_DATASETS", "PCK_DATASETS", "Protocol", "SpinProtocol", "build_protocol",
           "protocol_class", "joint_map", "centre_and_select", "gt_from_s", "gt_mesh", "gendered_mesh", "split_by_gender",
           "SUMMARY_FIELDS"]

# every summary key any protocol reports, in the column order of results.csv
SUMMARY_FIELDS = ("mpjpe", "pa_mpjpe", "pve", "pck", "auc", "mpjae", "pa_mpjae", "jitter", "pve_t_sc", "iou",
                  "iou_mean")

BodyOf = Callable[[str], torch.nn.Module]  # 'neutral' | 'male' | 'female' -> BodyModel on the right device


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


def gt_mesh(body, pose: torch.Tensor, betas: torch.Tensor):
    """Body output for axis-angle ``pose`` (B, 72) and ``betas`` (B, 10) in float32, whatever the
    autocast context (mixed precision); no translation."""
    B = pose.shape[0]
    with torch.autocast(device_type=pose.device.type, enabled=False):
        rotmat = batch_rodrigues(pose.float().reshape(-1, 3)).reshape(B, -1, 3, 3)
        return body(global_orient=rotmat[:, :1], body_pose=rotmat[:, 1:], betas=betas.float())


def split_by_gender(codes: torch.Tensor, genders: dict[int, str],
                    error: str = "gender codes {unknown} have no body model (known: {genders})"):
    """[(mask (B,) bool, gender name)] for each code of ``genders`` present in ``codes`` (B,); a code
    outside ``genders`` raises ValueError(``error`` formatted with ``unknown`` and ``genders``)."""
    codes = codes.reshape(-1)
    unknown = sorted(set(codes.tolist()) - set(genders))
    if unknown:
        raise ValueError(error.format(unknown=unknown, genders=genders))
    return [(codes == code, g) for code, g in genders.items() if (codes == code).any()]


def gendered_mesh(body_of: BodyOf, pose, betas, codes: torch.Tensor, genders: dict[int, str]):
    """(vertices (B, V, 3), skeleton joints (B, J, 3)) of each sample's own model: ``codes`` (B,)
    ints, ``genders`` {code: 'male' | 'female' | 'neutral'}; a code outside it is an error."""
    ref = body_of("neutral")
    verts = torch.empty(pose.shape[0], ref.num_vertices, 3, device=pose.device)
    joints = torch.empty(pose.shape[0], ref.num_joints, 3, device=pose.device)
    for mask, g in split_by_gender(codes.to(pose.device), genders):
        out = gt_mesh(body_of(g), pose[mask], betas[mask])
        verts[mask] = out.vertices
        joints[mask] = out.smpl_joints
    return verts, joints


class Protocol:
    """Base of the protocol objects (see the module docstring for the interface)."""

    name = "base"
    datasets: tuple[str, ...] = ()

    def __init__(self, dataset: str, body_of: BodyOf, gender_eval: bool = True, focal_length: float = 5000.0,
                 img_res: int = 224):
        self.dataset = dataset
        self.body_of = body_of
        self.gender_eval = bool(gender_eval)
        self.focal_length = float(focal_length)
        self.img_res = int(img_res)

    def score(self, batch: dict, pred: dict) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def summarise(res: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def dump(self, res: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def val_loss(self, summary: dict) -> float:
        return summary["pa_mpjpe"]

    def selection_score(self, summary: dict) -> float:
        return 1.5 * summary["pa_mpjpe"] + summary["mpjpe"]

    def log_line(self, summary: dict) -> str:
        return (f"MPJPE {summary['mpjpe']:.2f}  PA-MPJPE {summary['pa_mpjpe']:.2f}  V2V (mm) {summary['pve']:.2f}")


class SpinProtocol(Protocol):
    """3DPW / synthetic-test / H36M P1, P2 / MPI-INF-3DHP: 14 (17) LSP joints from the H36M
    regressor, pelvis = H36M joint 0 (see the module docstring)."""

    name = "spin"
    datasets = MESH_GT_DATASETS + S_GT_DATASETS

    def score(self, batch, pred):
        ds = self.dataset
        body = self.body_of("neutral")
        pred_verts = pred["smpl_vertices"]
        pred_j = centre_and_select(body.regress_h36m_joints(pred_verts), ds)
        out: dict[str, Any] = {}
        if ds in MESH_GT_DATASETS:
            gt_verts = self.gt_vertices(batch)
            gt_j = centre_and_select(body.regress_h36m_joints(gt_verts), ds)
            out["v2v"] = metrics.pve(pred_verts, gt_verts)
        else:
            gt_j = gt_from_s(batch["pose_3d"].to(pred_j.dtype), ds)
            out["v2v"] = torch.zeros(pred_j.shape[0], dtype=torch.float64, device=pred_j.device)
        pred_j64, gt_j64 = pred_j.double(), gt_j.double()
        out["mpjpe_joints"] = (pred_j64 - gt_j64).norm(dim=-1)
        out["pampjpe_joints"] = (metrics.similarity_procrustes(pred_j64, gt_j64) - gt_j64).norm(dim=-1)
        if ds in PCK_DATASETS:
            out["pck"] = metrics.pck(pred_j64, gt_j64, threshold=0.15)
            out["auc"] = metrics.auc(pred_j64, gt_j64, max_threshold=0.15)
        return out

    def gt_vertices(self, batch) -> torch.Tensor:
        """GT vertices (B, V, 3): the gendered model (male if gender == 0 else female, the original)
        with GENDER_EVAL and a ``gender`` in the batch, else the neutral one."""
        pose, betas = batch["pose"], batch["betas"]
        if not self.gender_eval or "gender" not in batch:
            return gt_mesh(self.body_of("neutral"), pose, betas).vertices
        female = (batch["gender"] != 0).long()  # the original: male if gender == 0 else female (§6)
        return gendered_mesh(self.body_of, pose, betas, female, {0: "male", 1: "female"})[0]

    @staticmethod
    def summarise(res):
        """Per-sample results (numpy, metres) -> mean MPJPE / PA-MPJPE / PVE in mm (+ PCK@150 /
        AUC in % when present) and ``num_samples``."""
        summary = {
            "mpjpe": float(res["mpjpe_joints"].mean(axis=1).mean() * 1000),
            "pa_mpjpe": float(res["pampjpe_joints"].mean(axis=1).mean() * 1000),
            "pve": float(res["v2v"].mean() * 1000),
        }
        if "pck" in res:
            summary["pck"] = float(res["pck"].mean() * 100)
            summary["auc"] = float(res["auc"].mean() * 100)
        summary["num_samples"] = int(res["mpjpe_joints"].shape[0])
        return summary

    def dump(self, res):
        # the original's file: metres, the first 14 joints
        out = {"mpjpe": res["mpjpe_joints"][:, :14], "pampjpe": res["pampjpe_joints"][:, :14], "v2v": res["v2v"]}
        for k in ("pck", "auc"):
            if k in res:
                out[k] = res[k]
        return out

    def log_line(self, summary):
        return super().log_line(summary) + (
            f"  PCK@150 {summary['pck']:.2f}  AUC {summary['auc']:.2f}" if "pck" in summary else "")


def protocol_class(dataset: str) -> type[Protocol]:
    """The protocol family of an evaluation dataset key (DATASET.VAL_DS)."""
    from dsr.evaluation.emdb import EmdbProtocol
    from dsr.evaluation.ssp3d import Ssp3dProtocol

    for cls in (SpinProtocol, EmdbProtocol, Ssp3dProtocol):
        if dataset in cls.datasets:
            return cls
    raise ValueError(f"unknown evaluation dataset '{dataset}'; expected one of {constants.EVAL_DATASETS}")


def build_protocol(cfg, body_of: BodyOf) -> Protocol:
    """The protocol of ``cfg.DATASET.VAL_DS`` (GENDER_EVAL, FOCAL_LENGTH, IMG_RES from the config)."""
    ds = cfg.DATASET.VAL_DS
    return protocol_class(ds)(ds, body_of, gender_eval=cfg.DATASET.GENDER_EVAL,
                              focal_length=cfg.DATASET.FOCAL_LENGTH, img_res=cfg.DATASET.IMG_RES)
