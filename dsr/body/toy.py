"""A tiny random SMPL-format body model for tests (not a body: a skeleton of vertex clusters).

``make_toy_smpl_data(seed, verts_per_joint=8)`` -> dict of SMPL arrays with SMPL's 24-joint tree
(``dsr.constants.SMPL_PARENTS``): each joint owns a cluster of vertices around it, skinned to that
joint only (one-hot weights), ``J_regressor`` = mean of the joint's cluster; random faces,
10 shape directions, random (or zero) pose correctives.
``write_toy_model(folder, seed)`` writes the dsr_data layout used by the tests:
``smpl/SMPL_{NEUTRAL,MALE,FEMALE}.npz``, ``smpl/vertex_ids.json``, ``J_regressor_extra.npy``
(9, V), ``J_regressor_h36m.npy`` (17, V) and ``smpl_mean_params.npz`` (pose (144,), shape (10,),
cam (3,)).
"""
from __future__ import annotations

import json
import os

import numpy as np

from dsr import constants

__all__ = ["make_toy_smpl_data", "write_toy_model"]


def make_toy_smpl_data(seed: int = 0, verts_per_joint: int = 8, zero_posedirs: bool = False,
                       num_shape: int = 10) -> dict:
    rng = np.random.default_rng(seed)
    parents = np.asarray(constants.SMPL_PARENTS)
    J = len(parents)
    joints = np.zeros((J, 3))
    for j in range(1, J):
        joints[j] = joints[parents[j]] + rng.normal(0, 0.15, 3)
    owner = np.repeat(np.arange(J), verts_per_joint)
    V = owner.size
    v_template = joints[owner] + rng.normal(0, 0.03, (V, 3))
    weights = np.zeros((V, J))
    weights[np.arange(V), owner] = 1.0
    J_regressor = np.zeros((J, V))
    for j in range(J):
        J_regressor[j, owner == j] = 1.0 / verts_per_joint
    F = 2 * V
    f = np.stack([rng.choice(V, 3, replace=False) for _ in range(F)]).astype(np.int64)
    kintree = np.stack([parents, np.arange(J)]).astype(np.int64)
    kintree[0, 0] = 4294967295  # as in the original SMPL files
    return {
        "v_template": v_template,
        "shapedirs": rng.normal(0, 0.01, (V, 3, num_shape)),
        "posedirs": np.zeros((V, 3, 9 * (J - 1))) if zero_posedirs else rng.normal(0, 0.01, (V, 3, 9 * (J - 1))),
        "J_regressor": J_regressor,
        "weights": weights,
        "kintree_table": kintree,
        "f": f,
    }


def write_toy_model(folder: str, seed: int = 0, verts_per_joint: int = 8) -> dict:
    """Write the toy model in the dsr_data layout; returns {name: path}."""
    rng = np.random.default_rng(seed + 1000)
    smpl_dir = os.path.join(folder, "smpl")
    os.makedirs(smpl_dir, exist_ok=True)
    for k, g in enumerate(("NEUTRAL", "MALE", "FEMALE")):
        np.savez(os.path.join(smpl_dir, f"SMPL_{g}.npz"), **make_toy_smpl_data(seed + k, verts_per_joint))
    V = verts_per_joint * len(constants.SMPL_PARENTS)
    names = ["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe",
             "RHeel", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle", "rring",
             "rpinky"]
    ids = {n: int(i) for n, i in zip(names, rng.choice(V, len(names), replace=False))}
    with open(os.path.join(smpl_dir, "vertex_ids.json"), "w") as fh:
        json.dump(ids, fh)

    def sparse_regressor(rows):
        R = np.zeros((rows, V))
        for r in range(rows):
            idx = rng.choice(V, 4, replace=False)
            w = rng.uniform(0.1, 1.0, 4)
            R[r, idx] = w / w.sum()
        return R

    paths = {
        "model_dir": smpl_dir,
        "extra": os.path.join(folder, "J_regressor_extra.npy"),
        "h36m": os.path.join(folder, "J_regressor_h36m.npy"),
        "mean_params": os.path.join(folder, "smpl_mean_params.npz"),
    }
    np.save(paths["extra"], sparse_regressor(len(constants.EXTRA_JOINT_NAMES)))
    np.save(paths["h36m"], sparse_regressor(17))
    J = len(constants.SMPL_PARENTS)
    pose6d = np.tile(np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]), J) + rng.normal(0, 0.05, 6 * J)
    np.savez(paths["mean_params"], pose=pose6d, shape=rng.normal(0, 0.1, 10), cam=np.array([0.9, 0.0, 0.0]))
    return paths
