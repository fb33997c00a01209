"""Builder of the free, SMPL-format body model derived from Anny (Apache-2.0).

This is the embedded default that lets the project run with no licensed file. The output folder
has the ``dsr_data/`` layout, so a config can point at it instead of the original data::

    smpl/SMPL_{NEUTRAL,MALE,FEMALE}.npz   smplx npz keys: v_template (V,3) f32, shapedirs (V,3,10),
                                          posedirs (V,3,207) zeros (compressed), J_regressor (24,V),
                                          weights (V,24), kintree_table (2,24), f (F,3)
    smpl/vertex_ids.json                  smplx vertex joints (nose, eyes, ears, toes, heels, tips)
    J_regressor_extra.npy (9,V)           R hip, L hip, Neck(LSP), Head-top(LSP), Pelvis(MPII),
                                          Thorax(MPII), Spine(H36M), Jaw(H36M), Head(H36M)
    J_regressor_h36m.npy (17,V)           H36M joint order (0 pelvis, 1-3 L leg, 4-6 R leg, ...)
    smpl_mean_params.npz                  SPIN format: pose (144,) 24x6D, shape (10,), cam (3,)
    face_parts.npy (F,) int16             outfit-model part id per face (dsr.body.outfits)
    semantic_prior.npy (F,20) f32         exact marginal of the outfit model (neutral mix)
    build_info.json                       the build settings and summary figures

Route (all numbers are produced by :func:`build_free_body`, seeded):

1. Anny ``rig='anny'``, ``topology='anny-noeyes-notongue'`` (13348 V, one watertight genus-0 shell
   with UVs), float64, pure-torch LBS. Adults are sampled with Anny's WHO-calibrated
   ``SimpleShapeDistribution`` (morphological age U[18, 65] years); the male set has gender 0,
   the female set gender 1, the neutral set gender U[0, 1]; bodies with a BMI (volume x 980 kg/m3
   / height^2) outside [16.5, 38] are rejected.
2. Anny's 104 bones are merged onto SMPL's 24 joints (table ``SMPL_FROM_ANNY``); the skinning
   weights are summed accordingly, ``W24 = W104 @ A``. SMPL joint positions are the rest heads of
   the first bone of each group (foot / hand: the mean head of the toe/finger bases).
3. T-pose: Anny's rest pose is an A-pose. Each sample is re-posed with our own LBS on the merged
   24-joint rig: minimal rotations at the shoulders, elbows and wrists lay upper arm, forearm and
   hand along the +-x axis (arms horizontal, SMPL-like). Frame change to SMPL's (y up, +z forward,
   +x = the person's left): ``(x, y, z)_anny -> (x, z, -y)``; every sample is translated so that
   its pelvis joint is at the origin.
4. Topology: SMPL's size exactly, 6890 vertices / 13776 triangles (a closed genus-0 surface),
   because the render cost grows with the face count, DSR's per-face prior is defined at this size
   and SMPL-sized meshes keep every figure comparable with the original; no Anny topology is near
   it (the closest, ``notoes``, has 12272 V and no UVs). Anny spends 71% of its triangles on the
   head, hands and feet (8356 / 2 x 3196 / 2 x 2144) and only 7656 on torso, arms and legs, and a
   global quadric decimation keeps that imbalance (measured: 29% head, 24% hands, 18% feet). So
   the mesh is decimated per UV region with the region borders preserved: the body region is kept
   at full resolution, head -> 2600, each hand -> 1000, each foot -> 760 triangles (quadric
   decimation, ``fast-simplification``, a build-time-only dependency), i.e. 56% body, 19% head,
   15% hands, 11% feet. The collapses are replayed without moving the surviving vertices, so every
   kept vertex is an Anny vertex and every per-vertex quantity of every sample (positions, weights)
   is carried over exactly by indexing.
5. Shape space: per set, PCA of the decimated T-posed samples; ``v_template`` = the mean,
   ``shapedirs[..., k] = sd_k * pc_k`` so that betas ~ N(0, 1); PC signs are fixed (PC 0 = taller
   for positive beta, others: largest entry positive).
6. Joints: ``J_regressor`` row j = non-negative weights on <= 32 nearby vertices summing to 1 (NNLS
   over the 600 nearest vertices, then refit on the top 32) fitted to the T-posed joints of all
   samples. Extra and H36M joints are fixed sparse combinations of those rows and two surface
   vertices (nose, head top): pelvis = mean of the hips, thorax = mean of the collars, spine = mean
   of pelvis and thorax, jaw = mean of the head joint and the nose, head = mean of the head joint
   and the head top, LSP neck = SMPL neck, LSP head top = the head-top vertex.
7. Part labels: Anny's UV body-part segmentation (head / hands / feet / cavities / body; each
   kept face inherits the region it was decimated in), the dominant W24 joint and a few geometric
   rules (hairline, waist line, sleeve and trouser lengths) give one of ``outfits.PART_NAMES`` per
   face; the outfit model maps parts to Graphonomy labels.
8. Mean parameters: the 6D (SPIN order) of global orient = 180 deg about x (upright, facing an
   OpenCV camera), shoulders lowered 60 deg (a relaxed standing pose), every other joint identity;
   shape zeros; cam [0.9, 0, 0].
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.optimize
from scipy.spatial import cKDTree

from dsr.body import outfits
from dsr.constants import SMPL_JOINT_NAMES, SMPL_PARENTS

# ----------------------------------------------------------------------------- SMPL rig

_TOES = [f"toe{i}-{k}" for i in range(1, 6) for k in range(1, 4) if not (i == 1 and k == 3)]
_FINGERS = [f"finger{i}-{k}" for i in range(1, 6) for k in range(1, 4)]


def _sided(names: Sequence[str], side: str) -> List[str]:
    return [f"{n}.{side}" for n in names]


# SMPL joint -> Anny bones merged into it (the first bone's head is the joint position).
SMPL_FROM_ANNY: Dict[str, List[str]] = {
    "pelvis": ["root", "pelvis.L", "pelvis.R", "spine05"],
    "spine1": ["spine04"],
    "spine2": ["spine03"],
    "spine3": ["spine02", "spine01"],
    "neck": ["neck01", "neck02", "neck03"],
    "head": ["head", "eye.L", "eye.R"],
}
for _s, _side in (("left", "L"), ("right", "R")):
    SMPL_FROM_ANNY[f"{_s}_hip"] = _sided(["upperleg01", "upperleg02"], _side)
    SMPL_FROM_ANNY[f"{_s}_knee"] = _sided(["lowerleg01", "lowerleg02"], _side)
    SMPL_FROM_ANNY[f"{_s}_ankle"] = _sided(["foot"], _side)
    SMPL_FROM_ANNY[f"{_s}_foot"] = _sided(_TOES, _side)
    SMPL_FROM_ANNY[f"{_s}_collar"] = _sided(["clavicle", "shoulder01"], _side)
    SMPL_FROM_ANNY[f"{_s}_shoulder"] = _sided(["upperarm01", "upperarm02"], _side)
    SMPL_FROM_ANNY[f"{_s}_elbow"] = _sided(["lowerarm01", "lowerarm02"], _side)
    SMPL_FROM_ANNY[f"{_s}_wrist"] = _sided(["wrist"] + [f"metacarpal{i}" for i in range(1, 5)], _side)
    SMPL_FROM_ANNY[f"{_s}_hand"] = _sided(_FINGERS, _side)

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}

EXTRA_JOINTS = ["rhip", "lhip", "neck_lsp", "headtop_lsp", "pelvis_mpii", "thorax_mpii",
                "spine_h36m", "jaw_h36m", "head_h36m"]
H36M_JOINTS = ["pelvis", "lhip", "lknee", "lankle", "rhip", "rknee", "rankle", "spine", "thorax",
               "jaw", "head", "lshoulder", "lelbow", "lwrist", "rshoulder", "relbow", "rwrist"]


@dataclass
class BuildSettings:
    """Everything that determines the assets (recorded in build_info.json)."""

    seed: int = 0
    samples_per_set: int = 800
    min_age_years: float = 18.0
    max_age_years: float = 65.0
    bmi_range: Tuple[float, float] = (16.5, 38.0)
    num_betas: int = 10
    # triangle budgets of the decimated regions (Anny's body region, 7656 triangles, is kept):
    # 7656 + 2600 + 2 x 1000 + 2 x 760 = 13776 triangles = 6890 vertices on a closed surface
    decimation_targets: Tuple[Tuple[str, int], ...] = (
        ("head", 2600), ("hand.L", 1000), ("hand.R", 1000), ("foot.L", 760), ("foot.R", 760))
    regressor_candidates: int = 600
    regressor_keep: int = 32
    regressor_fit_samples: int = 300
    mean_pose_shoulder_deg: float = 60.0
    topology: str = "anny-noeyes-notongue"


# ----------------------------------------------------------------------------- small maths
def anny_to_smpl_frame(x: np.ndarray) -> np.ndarray:
    """(..., 3) Anny frame (z up, -y forward, +x left) -> SMPL frame (y up, +z forward, +x left)."""
    return np.stack([x[..., 0], x[..., 2], -x[..., 1]], axis=-1)


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """(N, 3) axis-angle -> (N, 3, 3) rotation matrices (float64)."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)
    k = aa / np.maximum(theta, 1e-12)
    K = np.zeros(aa.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -k[..., 2], k[..., 1]
    K[..., 1, 0], K[..., 1, 2] = k[..., 2], -k[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -k[..., 1], k[..., 0]
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def align_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minimal rotations (N, 3, 3) taking directions a (N, 3) onto directions b (N, 3)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    axis = np.cross(a, b)
    s = np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(s, np.sum(a * b, axis=-1, keepdims=True))
    return rodrigues(axis / np.maximum(s, 1e-12) * angle)


def rotmat_to_6d_spin(R: np.ndarray) -> np.ndarray:
    """(N, 3, 3) -> (N, 6): first two columns as a 3x2 matrix read row-major (SPIN's order)."""
    return np.asarray(R)[:, :, :2].reshape(-1, 6)


def forward_kinematics(joints: np.ndarray, rotations: np.ndarray, parents: Sequence[int]):
    """World transforms of a rig posed by local rotations about its rest joints.

    joints (N, J, 3) rest positions, rotations (N, J, 3, 3) local rotations (SMPL convention).
    Returns (Rw (N, J, 3, 3), tw (N, J, 3)) with x_posed = Rw x_rest + tw for a rigid point of joint j.
    """
    N, nj = joints.shape[:2]
    Rw = np.zeros((N, nj, 3, 3))
    tw = np.zeros((N, nj, 3))
    for j in range(nj):
        Rl, c = rotations[:, j], joints[:, j]
        tl = c - np.einsum("nij,nj->ni", Rl, c)  # rotation about the rest joint c
        p = parents[j]
        if p < 0:
            Rw[:, j], tw[:, j] = Rl, tl
        else:
            Rw[:, j] = Rw[:, p] @ Rl
            tw[:, j] = np.einsum("nij,nj->ni", Rw[:, p], tl) + tw[:, p]
    return Rw, tw


def linear_blend_skinning(verts: np.ndarray, weights: np.ndarray, Rw: np.ndarray, tw: np.ndarray):
    """verts (N, V, 3), weights (V, J), transforms from :func:`forward_kinematics` -> (N, V, 3)."""
    Rv = np.einsum("vj,njab->nvab", weights, Rw)
    tv = np.einsum("vj,nja->nva", weights, tw)
    return np.einsum("nvab,nvb->nva", Rv, verts) + tv


def decimate_by_region(verts: np.ndarray, faces: np.ndarray, region: np.ndarray,
                       targets: Dict[str, int]):
    """Quadric decimation of each face region to its own triangle budget, borders kept.

    verts (V, 3), faces (F, 3), region (F,) str labels, targets {label: triangle count}; a region
    without a target (or with a budget >= its size) is kept as is. Each region is decimated with
    its border preserved, so the pieces still share their seams and the union stays closed; every
    kept vertex is an original vertex (collapses replayed without moving the survivor).
    Returns (kept original vertex ids (V',), faces (F', 3) into them, region (F',) per new face).
    """
    import fast_simplification  # build-time dependency only

    out_faces, out_region = [], []
    for r in np.unique(region):
        fr = faces[region == r]
        t = targets.get(r, len(fr))
        if t < len(fr):
            loc, inv = np.unique(fr, return_inverse=True)
            fl = inv.reshape(-1, 3).astype(np.int32)
            _, _, col = fast_simplification.simplify(verts[loc], fl, target_count=t,
                                                     return_collapses=True, preserve_border=True)
            _, new_f, mapping = fast_simplification.replay_simplification(verts[loc], fl, col)
            surv = np.setdiff1d(np.arange(len(loc)), col[:, 1])
            sel = np.empty(len(surv), dtype=np.int64)
            sel[mapping[surv]] = surv
            fr = loc[sel[np.asarray(new_f, dtype=np.int64)]]
        out_faces.append(fr)
        out_region.append(np.full(len(fr), r))
    allf = np.concatenate(out_faces)
    keep, newf = np.unique(allf, return_inverse=True)
    return keep, newf.reshape(-1, 3).astype(np.int64), np.concatenate(out_region)


def mesh_volume(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Signed volumes (N,) of closed meshes verts (N, V, 3)."""
    a, b, c = (verts[:, faces[:, i]] for i in range(3))
    return np.einsum("nfi,nfi->n", a, np.cross(b, c)) / 6.0


def fit_sparse_regressor(samples: np.ndarray, targets: np.ndarray, center: np.ndarray,
                         rest_verts: np.ndarray, n_candidates: int, n_keep: int,
                         penalty: float = 10.0) -> Tuple[np.ndarray, np.ndarray]:
    """Non-negative vertex weights summing to 1 whose combination reproduces a target point.

    samples (N, V, 3) vertices, targets (N, 3); candidates = the n_candidates vertices of
    rest_verts (V, 3) nearest to center (3,). NNLS (sum-to-1 enforced by a weighted row),
    then a refit on the n_keep largest weights. Returns (vertex indices (K,), weights (K,)).
    """
    _, cand = cKDTree(rest_verts).query(center, k=n_candidates)
    cand = np.sort(cand)

    def solve(idx):
        A = samples[:, idx, :].transpose(0, 2, 1).reshape(-1, len(idx))  # (3N, K)
        b = targets.reshape(-1)
        scale = penalty * np.sqrt(len(b))
        A = np.vstack([A, np.full((1, len(idx)), scale)])
        b = np.concatenate([b, [scale]])
        w, _ = scipy.optimize.nnls(A, b, maxiter=50 * len(idx))
        return w

    w = solve(cand)
    top = np.sort(cand[np.argsort(-w, kind="stable")[:n_keep]])
    w = solve(top)
    keep = w > 0
    idx, w = top[keep], w[keep]
    return idx, w / w.sum()


# ----------------------------------------------------------------------------- Anny access
def load_anny(topology: str = "anny-noeyes-notongue"):
    """The Anny model (float64, pure-torch LBS) with ANNY_CACHE_DIR defaulting to a scratch dir."""
    os.environ.setdefault("ANNY_CACHE_DIR", os.path.join("/tmp", "anny_cache"))
    import anny  # build-time dependency only

    return anny.Anny(rig="anny", topology=topology, skinning_method="lbs")


class _Constant:
    """A torch-distribution-like object that samples a constant (gender of the male/female sets)."""

    def __init__(self, value):
        self.value = value

    def sample(self, shape):
        import torch

        return torch.full(tuple(shape), float(self.value), dtype=torch.float64)


def sample_adults(model, n: int, gender: Optional[float], settings: BuildSettings,
                  faces: np.ndarray, batch: int = 100) -> Dict[str, np.ndarray]:
    """Rest (A-pose) vertices and bone heads of n adults in the Anny frame, BMI-filtered.

    gender: 0 (male), 1 (female) or None (U[0, 1]). Uses torch's global RNG (seeded by the caller).
    Returns dict verts (n, V, 3), heads (n, B, 3), gender (n,), height (n,), bmi (n,).
    """
    import torch
    from anny.shape_distribution import SimpleShapeDistribution

    age = torch.distributions.Uniform(torch.tensor(settings.min_age_years, dtype=torch.float64),
                                      torch.tensor(settings.max_age_years, dtype=torch.float64))
    dist = SimpleShapeDistribution(model, morphological_age_distribution=age,
                                   gender_distribution=None if gender is None else _Constant(gender))
    out = {k: [] for k in ("verts", "heads", "gender", "height", "bmi")}
    got = 0
    while got < n:
        _, phen = dist.sample(batch)
        with torch.no_grad():
            res = model(pose_parameters=None, phenotype_kwargs=phen)
        v = res["rest_vertices"].numpy()
        h = res["rest_bone_heads"].numpy()
        height = v[..., 2].max(1) - v[..., 2].min(1)
        bmi = 980.0 * mesh_volume(v, faces) / height**2
        ok = (bmi >= settings.bmi_range[0]) & (bmi <= settings.bmi_range[1])
        for k, a in (("verts", v), ("heads", h), ("gender", phen["gender"].numpy()),
                     ("height", height), ("bmi", bmi)):
            out[k].append(a[ok])
        got += int(ok.sum())
    return {k: np.concatenate(a)[:n] for k, a in out.items()}


def merge_matrix(bone_labels: Sequence[str]) -> np.ndarray:
    """(B, 24) 0/1 matrix: Anny bone -> SMPL joint."""
    A = np.zeros((len(bone_labels), len(SMPL_JOINT_NAMES)))
    for j, name in enumerate(SMPL_JOINT_NAMES):
        for b in SMPL_FROM_ANNY[name]:
            A[bone_labels.index(b), j] = 1.0
    if not np.allclose(A.sum(1), 1.0):
        missing = [b for b, s in zip(bone_labels, A.sum(1)) if s != 1]
        raise ValueError(f"Anny bones not merged exactly once: {missing}")
    return A


def smpl_joints_from_heads(heads: np.ndarray, bone_labels: Sequence[str]) -> np.ndarray:
    """(N, B, 3) Anny rest bone heads -> (N, 24, 3) SMPL joint positions (same frame)."""
    idx = {b: i for i, b in enumerate(bone_labels)}
    out = np.zeros(heads.shape[:1] + (24, 3))
    for j, name in enumerate(SMPL_JOINT_NAMES):
        if name.endswith("_foot"):
            s = "L" if name.startswith("left") else "R"
            out[:, j] = heads[:, [idx[f"toe{i}-1.{s}"] for i in range(1, 6)]].mean(1)
        elif name.endswith("_hand"):
            s = "L" if name.startswith("left") else "R"
            out[:, j] = heads[:, [idx[f"finger{i}-1.{s}"] for i in range(2, 6)]].mean(1)
        else:
            out[:, j] = heads[:, idx[SMPL_FROM_ANNY[name][0]]]
    return out


def t_pose(verts: np.ndarray, joints: np.ndarray, weights: np.ndarray):
    """Re-pose SMPL-frame A-pose samples into SMPL's T-pose with the merged 24-joint rig.

    verts (N, V, 3), joints (N, 24, 3), weights (V, 24). Arms: upper arm, forearm and hand laid
    along +x (left) / -x (right) by minimal rotations. Returns (verts, joints, Rw, tw).
    """
    N = len(verts)
    R = np.tile(np.eye(3), (N, 24, 1, 1))
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        target = np.tile([sgn, 0.0, 0.0], (N, 1))
        chain = [J[f"{side}_shoulder"], J[f"{side}_elbow"], J[f"{side}_wrist"], J[f"{side}_hand"]]
        world_parent = np.tile(np.eye(3), (N, 1, 1))
        for a, b in zip(chain[:-1], chain[1:]):
            Qw = align_rotation(joints[:, b] - joints[:, a], target)
            R[:, a] = np.swapaxes(world_parent, 1, 2) @ Qw
            world_parent = Qw
    Rw, tw = forward_kinematics(joints, R, SMPL_PARENTS)
    v = linear_blend_skinning(verts, weights, Rw, tw)
    j = np.einsum("njab,njb->nja", Rw, joints) + tw
    return v, j, Rw, tw


# ----------------------------------------------------------------------------- build
def _pca(X: np.ndarray, k: int):
    """X (N, V, 3) -> mean (V, 3), dirs (V, 3, k) scaled to unit-variance betas, explained var."""
    N = len(X)
    flat = X.reshape(N, -1)
    mean = flat.mean(0)
    U, S, Vt = np.linalg.svd(flat - mean, full_matrices=False)
    sd = S / np.sqrt(N - 1)
    dirs = Vt[:k] * sd[:k, None]
    # sign: largest-magnitude entry positive (PC 0 re-signed below for height)
    big = np.argmax(np.abs(dirs), axis=1)
    dirs *= np.sign(dirs[np.arange(k), big])[:, None]
    mean = mean.reshape(-1, 3)
    dirs = dirs.reshape(k, -1, 3)
    if np.ptp(mean[:, 1] + dirs[0, :, 1]) < np.ptp(mean[:, 1]):
        dirs[0] *= -1
    explained = float((S[:k] ** 2).sum() / (S**2).sum())
    return mean, np.ascontiguousarray(np.transpose(dirs, (1, 2, 0))), explained


def _face_parts(verts, faces, uv_part, w24, joints, eyes):
    """Outfit-model part id per face (see outfits.PART_NAMES) from labels + geometry.

    verts (V, 3) neutral mean T-pose, faces (F, 3), uv_part (F,) str array of Anny UV labels,
    w24 (V, 24), joints (24, 3), eyes (2, 3) eyeball centres.
    """
    P = {n: i for i, n in enumerate(outfits.PART_NAMES)}
    c = verts[faces].mean(1)
    dom = np.argmax(w24[faces].sum(1), axis=1)
    F = len(faces)
    part = np.full(F, -1, dtype=np.int64)
    e = eyes.mean(0)
    head_j, neck_j = joints[J["head"]], joints[J["neck"]]
    is_head = np.isin(uv_part, ["head", "eye_cavity.L", "eye_cavity.R", "mouth_cavity"])
    # hairline rule on head faces (heights relative to the eyes, depth relative to the head joint)
    scalp = is_head & (
        (c[:, 1] > e[1] + 0.05)
        | ((c[:, 2] < head_j[2] - 0.015) & (c[:, 1] > e[1] - 0.065))
        | ((c[:, 2] < head_j[2] + 0.035) & (c[:, 1] > e[1] + 0.015))
    )
    crown = scalp & (c[:, 1] > e[1] + 0.085)
    part[is_head] = P["face"]
    part[scalp] = P["scalp"]
    part[crown] = P["scalp_crown"]
    body = part < 0
    # neck: front = face skin, back = nape
    neckish = body & np.isin(dom, [J["neck"], J["head"]])
    part[neckish & (c[:, 2] >= neck_j[2])] = P["face"]
    part[neckish & (c[:, 2] < neck_j[2])] = P["nape"]
    # torso
    torso = body & np.isin(dom, [J["pelvis"], J["spine1"], J["spine2"], J["spine3"],
                                 J["left_collar"], J["right_collar"]])
    waist_y = joints[J["spine1"]][1] - 0.02
    part[torso & (c[:, 1] < waist_y)] = P["waist"]
    part[torso & (c[:, 1] >= waist_y)] = P["chest"]
    upper_back = (torso & (c[:, 1] >= neck_j[1] - 0.22) & (c[:, 2] < joints[J["spine3"]][2])
                  & (np.abs(c[:, 0]) < 0.12))
    part[upper_back] = P["upper_back"]
    def limb(side, s, root, mid, t, cut, upper, lower, end):
        """Faces dominated by the root joint split at t = cut into upper prox/dist; the distal
        joints' faces are ``lower``; the UV end part (hand/foot) wins last."""
        up = body & (dom == J[f"{side}_{root}"])
        part[up & (t < cut)] = P[f"{upper}_prox.{s}"]
        part[up & (t >= cut)] = P[f"{upper}_dist.{s}"]
        part[body & np.isin(dom, [J[f"{side}_{m}"] for m in mid])] = P[f"{lower}.{s}"]
        part[uv_part == f"{end}.{s}"] = P[f"{end}.{s}"]

    for side, s in (("left", "L"), ("right", "R")):
        sh, el = joints[J[f"{side}_shoulder"]], joints[J[f"{side}_elbow"]]
        hip, kn = joints[J[f"{side}_hip"]], joints[J[f"{side}_knee"]]
        limb(side, s, "shoulder", ("elbow", "wrist", "hand"), (c[:, 0] - sh[0]) / (el[0] - sh[0]), 0.45,
             "upper_arm", "forearm", "hand")
        limb(side, s, "hip", ("knee", "ankle", "foot"), (hip[1] - c[:, 1]) / (hip[1] - kn[1]), 0.5,
             "thigh", "shin", "foot")
    if (part < 0).any():
        raise RuntimeError(f"{int((part < 0).sum())} faces got no part")
    return part


def _vertex_ids(verts, faces, face_part, eyes, finger_heads, finger_verts):
    """smplx vertex-joint ids on the neutral template (SMPL frame).

    finger_heads {(side, k): (head of phalanx 2, head of phalanx 3)}, finger_verts {(side, k):
    vertex ids whose dominant Anny bone is phalanx 3 of finger k}; tips = furthest along it.
    """
    P = {n: i for i, n in enumerate(outfits.PART_NAMES)}
    part_verts = lambda names: np.unique(faces[np.isin(face_part, [P[n] for n in names])])  # noqa
    ids = {}
    e = eyes.mean(0)
    head = part_verts(["face", "scalp", "scalp_crown"])
    hv = verts[head]
    m = (np.abs(hv[:, 0]) < 0.012) & (hv[:, 1] < e[1]) & (hv[:, 1] > e[1] - 0.07)
    ids["nose"] = int(head[m][np.argmax(hv[m, 2])])
    tree = cKDTree(verts[head])
    for name, eye in (("leye", eyes[0]), ("reye", eyes[1])):
        ids[name] = int(head[tree.query(eye + np.array([0, 0, 0.012]))[1]])
    band = (hv[:, 1] > e[1] - 0.05) & (hv[:, 1] < e[1] + 0.02)
    ids["lear"] = int(head[band][np.argmax(hv[band, 0])])
    ids["rear"] = int(head[band][np.argmin(hv[band, 0])])
    for s, side, med in (("L", "left", -1.0), ("R", "right", 1.0)):
        fv = part_verts([f"foot.{s}"])
        p = verts[fv]
        xm = np.median(p[:, 0])
        medial = (p[:, 0] - xm) * med > 0  # towards the body midline
        ids[f"{s}BigToe"] = int(fv[medial][np.argmax(p[medial, 2])])
        lat = (p[:, 0] - xm) * med < -np.quantile(np.abs(p[:, 0] - xm), 0.5)
        ids[f"{s}SmallToe"] = int(fv[lat][np.argmax(p[lat, 2])])
        low = p[:, 1] < p[:, 1].min() + 0.03
        ids[f"{s}Heel"] = int(fv[low][np.argmin(p[low, 2])])
        for k, tip in enumerate(["thumb", "index", "middle", "ring", "pinky"]):
            cand = finger_verts[(side, k)]  # vertices skinned mostly to the last phalanx
            base, last = finger_heads[(side, k)]
            d = (last - base) / np.linalg.norm(last - base)
            ids[f"{s.lower()}{tip}"] = int(cand[np.argmax((verts[cand] - last) @ d)])
    names = ["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
             "RSmallToe", "RHeel", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb",
             "rindex", "rmiddle", "rring", "rpinky"]
    return {n: ids[n] for n in names}


def _sparse_rows_to_dense(rows: List[Dict[int, float]], V: int) -> np.ndarray:
    M = np.zeros((len(rows), V), dtype=np.float64)
    for r, row in enumerate(rows):
        for k, w in row.items():
            M[r, k] += w
    return M


def build_free_body(out_dir: str, settings: Optional[BuildSettings] = None, log=print) -> dict:
    """Build every asset of the free body model into out_dir (see the module docstring)."""
    import torch
    from anny.face_segmentation import get_face_segmentation_mask

    s = settings or BuildSettings()
    t0 = time.time()
    torch.set_num_threads(2)
    torch.manual_seed(s.seed)
    model = load_anny(s.topology)
    faces_full = model.faces.numpy().astype(np.int64)
    labels = list(model.bone_labels)
    A = merge_matrix(labels)
    W24_full = model.dense_vertex_bone_weights.numpy() @ A  # (V_full, 104) @ (104, 24)
    uv_names = ["body", "head", "hand.L", "hand.R", "foot.L", "foot.R", "eye_cavity.L",
                "eye_cavity.R", "mouth_cavity"]
    uv_part_full = np.full(len(faces_full), "", dtype=object)
    for n in uv_names:
        uv_part_full[get_face_segmentation_mask(model, [n]).numpy()] = n
    if (uv_part_full == "").any():
        raise RuntimeError("faces without an Anny UV body-part label")
    log(f"anny loaded ({time.time() - t0:.0f}s): V={len(W24_full)} F={len(faces_full)}")

    # --- samples per set (full resolution, SMPL frame, T-posed, pelvis at the origin)
    sets = {}
    for name, g in (("neutral", None), ("male", 0.0), ("female", 1.0)):
        smp = sample_adults(model, s.samples_per_set, g, s, faces_full)
        v = anny_to_smpl_frame(smp["verts"])
        heads = anny_to_smpl_frame(smp["heads"])
        jts = smpl_joints_from_heads(heads, labels)
        v, jts, Rw, tw = t_pose(v, jts, W24_full)
        grp = A.argmax(1)  # bone -> SMPL joint (rigid transform of the group)
        heads = np.einsum("nbij,nbj->nbi", Rw[:, grp], heads) + tw[:, grp]
        off = jts[:, :1].copy()
        sets[name] = dict(verts=v - off, joints=jts - off, heads=heads - off,
                          height=smp["height"], bmi=smp["bmi"])
        log(f"{name}: {len(v)} adults, height {smp['height'].mean():.3f}+-{smp['height'].std():.3f}"
            f" m, BMI {smp['bmi'].mean():.1f} ({time.time() - t0:.0f}s)")

    # --- region-wise decimation of the neutral mean; the kept vertices are Anny vertices
    mean_full = sets["neutral"]["verts"].mean(0)
    region_full = np.where(np.isin(uv_part_full, ["eye_cavity.L", "eye_cavity.R", "mouth_cavity"]),
                           "head", uv_part_full).astype(str)
    keep, df, region = decimate_by_region(mean_full, faces_full, region_full,
                                          dict(s.decimation_targets))
    V, F = len(keep), len(df)
    log(f"decimated: V={V} F={F} ({', '.join(f'{r} {(region == r).sum()}' for r in np.unique(region))})")
    W24 = W24_full[keep]
    for d in sets.values():
        d["verts"] = d["verts"][:, keep]

    # --- shape spaces
    models = {}
    for name, d in sets.items():
        mean, dirs, expl = _pca(d["verts"], s.num_betas)
        models[name] = dict(v_template=mean, shapedirs=dirs, explained=expl)
        log(f"PCA {name}: {100 * expl:.3f}% variance in {s.num_betas} components")

    # --- joint regressor (NNLS on samples of all three sets)
    rng = np.random.default_rng(s.seed)
    fit_v, fit_j = [], []
    for d in sets.values():
        n_fit = min(len(d["verts"]), s.regressor_fit_samples // 3)
        pick = np.sort(rng.choice(len(d["verts"]), n_fit, replace=False))
        fit_v.append(d["verts"][pick])
        fit_j.append(d["joints"][pick])
    fit_v, fit_j = np.concatenate(fit_v), np.concatenate(fit_j)
    tmpl = models["neutral"]["v_template"]
    Jreg_rows = []
    for j in range(24):
        idx, w = fit_sparse_regressor(fit_v, fit_j[:, j], fit_j[:, j].mean(0), tmpl,
                                      s.regressor_candidates, s.regressor_keep)
        Jreg_rows.append(dict(zip(idx.tolist(), w.tolist())))
    Jreg = _sparse_rows_to_dense(Jreg_rows, V)
    err = np.linalg.norm(np.einsum("jv,nvk->njk", Jreg, fit_v) - fit_j, axis=-1)
    log(f"J_regressor fit error: mean {1000 * err.mean():.2f} mm, max {1000 * err.max():.2f} mm")

    # --- part labels and semantic prior
    nj = sets["neutral"]["joints"].mean(0)
    nheads = sets["neutral"]["heads"].mean(0)
    eyes = nheads[[labels.index("eye.L"), labels.index("eye.R")]]
    uv_part = region
    face_part = _face_parts(tmpl, df, uv_part, W24, nj, eyes)
    fh, fv = {}, {}
    dom_bone = np.argmax(model.dense_vertex_bone_weights.numpy()[keep], axis=1)
    for side, sl in (("left", "L"), ("right", "R")):
        for k in range(5):
            fh[(side, k)] = (nheads[labels.index(f"finger{k + 1}-2.{sl}")],
                             nheads[labels.index(f"finger{k + 1}-3.{sl}")])
            fv[(side, k)] = np.flatnonzero(dom_bone == labels.index(f"finger{k + 1}-3.{sl}"))
    vids = _vertex_ids(tmpl, df, face_part, eyes, fh, fv)
    head_top = int(np.argmax(tmpl[:, 1]))

    # --- extra / H36M regressors as sparse combinations of joint rows and vertices
    def row(j):
        return dict(Jreg_rows[j])

    def mix(*terms):
        out: Dict[int, float] = {}
        for coef, r in terms:
            for k, w in r.items():
                out[k] = out.get(k, 0.0) + coef * w
        return out

    vert = lambda i: {int(i): 1.0}  # noqa: E731
    pelvis = mix((0.5, row(J["left_hip"])), (0.5, row(J["right_hip"])))
    thorax = mix((0.5, row(J["left_collar"])), (0.5, row(J["right_collar"])))
    spine = mix((0.5, pelvis), (0.5, thorax))
    jaw = mix((0.5, row(J["head"])), (0.5, vert(vids["nose"])))
    headj = mix((0.5, row(J["head"])), (0.5, vert(head_top)))
    extra = [row(J["right_hip"]), row(J["left_hip"]), row(J["neck"]), vert(head_top), pelvis,
             thorax, spine, jaw, headj]
    h36m = [pelvis, row(J["left_hip"]), row(J["left_knee"]), row(J["left_ankle"]),
            row(J["right_hip"]), row(J["right_knee"]), row(J["right_ankle"]), spine, thorax, jaw,
            headj, row(J["left_shoulder"]), row(J["left_elbow"]), row(J["left_wrist"]),
            row(J["right_shoulder"]), row(J["right_elbow"]), row(J["right_wrist"])]
    Jextra = _sparse_rows_to_dense(extra, V).astype(np.float32)
    Jh36m = _sparse_rows_to_dense(h36m, V).astype(np.float32)

    # --- write
    os.makedirs(os.path.join(out_dir, "smpl"), exist_ok=True)
    kintree = np.array([[p if p >= 0 else 4294967295 for p in SMPL_PARENTS], list(range(24))],
                       dtype=np.int64)  # SMPL stores the root's parent as uint32(-1)
    for name, m in models.items():
        np.savez_compressed(
            os.path.join(out_dir, "smpl", f"SMPL_{name.upper()}.npz"),
            v_template=m["v_template"].astype(np.float32),
            shapedirs=m["shapedirs"].astype(np.float32),
            posedirs=np.zeros((V, 3, 207), dtype=np.float32),
            J_regressor=Jreg.astype(np.float32),
            weights=W24.astype(np.float32),
            kintree_table=kintree,
            f=df.astype(np.int32),
        )
    with open(os.path.join(out_dir, "smpl", "vertex_ids.json"), "w") as fh_:
        json.dump(vids, fh_, indent=1)
    np.save(os.path.join(out_dir, "J_regressor_extra.npy"), Jextra)
    np.save(os.path.join(out_dir, "J_regressor_h36m.npy"), Jh36m)
    pose = np.tile(np.eye(3), (24, 1, 1))
    pose[0] = rodrigues(np.array([[np.pi, 0.0, 0.0]]))[0]
    ang = np.deg2rad(s.mean_pose_shoulder_deg)
    pose[J["left_shoulder"]] = rodrigues(np.array([[0.0, 0.0, -ang]]))[0]
    pose[J["right_shoulder"]] = rodrigues(np.array([[0.0, 0.0, ang]]))[0]
    np.savez(os.path.join(out_dir, "smpl_mean_params.npz"),
             pose=rotmat_to_6d_spin(pose).reshape(-1).astype(np.float64),
             shape=np.zeros(s.num_betas, dtype=np.float64),
             cam=np.array([0.9, 0.0, 0.0], dtype=np.float64))
    np.save(os.path.join(out_dir, "face_parts.npy"), face_part.astype(np.int16))
    prior = outfits.semantic_prior(face_part, gender="neutral")
    np.save(os.path.join(out_dir, "semantic_prior.npy"), prior.astype(np.float32))
    elapsed = time.time() - t0
    info = dict(
        settings=asdict(s),
        num_vertices=V, num_faces=F,
        explained_variance={k: m["explained"] for k, m in models.items()},
        height_m={k: [float(d["height"].mean()), float(d["height"].std())] for k, d in sets.items()},
        j_regressor_error_mm=[float(1000 * err.mean()), float(1000 * err.max())],
        faces_per_region={r: int((region == r).sum()) for r in np.unique(region)},
        head_top_vertex=head_top,
    )  # no timings here: the folder must be reproducible bit for bit
    with open(os.path.join(out_dir, "build_info.json"), "w") as fh_:
        json.dump(info, fh_, indent=1)
    log(f"done in {elapsed:.0f}s -> {out_dir}")
    return info
