"""HMR regressor head with iterative error feedback (reference §2.2, SPIN's regressor).

features (B, C, h, w) -> global average pool -> x (B, C);
for 3 iterations: h = drop(fc2(drop(fc1([x, pose, shape, cam])))) (no ReLU),
pose += decpose(h), shape += decshape(h), cam += deccam(h);
start from the buffers ``init_pose`` (1, 6J), ``init_shape`` (1, S), ``init_cam`` (1, 3) read from
``smpl_mean_params.npz`` (keys ``pose`` (6J,) in the 6D order of :func:`dsr.geometry.rot6d_to_rotmat`,
``shape`` (S,), ``cam`` (3,)). Decoders are Xavier-uniform with gain 0.01 (biases: PyTorch default).
With C = 2048 (ResNet-50), J = 24, S = 10 the MLP input is 2048 + 144 + 10 + 3 = 2205; with
HRNet-W32 (C = 480) it is 637, with HRNet-W48 (C = 720) 877.

Outputs: ``pred_pose`` (B, J, 3, 3) rotation matrices, ``pred_pose_6d`` (B, 6J), ``pred_shape``
(B, S), ``pred_cam`` (B, 3) weak perspective ``[s, tx, ty]``.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from loguru import logger

from dsr.geometry import rot6d_to_rotmat

__all__ = ["HMRHead", "load_mean_params"]


def load_mean_params(path: Optional[str], num_joints: int = 24, num_betas: int = 10) -> dict:
    """Read SPIN's ``smpl_mean_params.npz`` -> {'pose': (6J,), 'shape': (S,), 'cam': (3,)} float32.

    ``None`` gives identity rotations, zero shape and cam (0.9, 0, 0), with a warning.
    """
    if path is None or path == "":
        logger.warning("HMR head: no smpl_mean_params.npz given; starting from identity pose, zero shape")
        return {"pose": np.tile(np.array([1, 0, 0, 1, 0, 0], np.float32), num_joints),
                "shape": np.zeros(num_betas, np.float32), "cam": np.array([0.9, 0.0, 0.0], np.float32)}
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SMPL mean parameters not found: {path!r} (PATHS.SMPL_MEAN_PARAMS; SPIN's smpl_mean_params.npz from "
            f"the dsr_data zip, or dsr/assets/free_body/smpl_mean_params.npz)"
        )
    try:
        with np.load(path, allow_pickle=False) as d:
            out = {k: np.asarray(d[k], dtype=np.float32).reshape(-1) for k in ("pose", "shape", "cam")}
    except KeyError as e:
        raise ValueError(f"{path}: smpl_mean_params.npz lacks key {e} (needs pose, shape, cam)") from e
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable smpl_mean_params.npz ({e})") from e
    want = {"pose": 6 * num_joints, "shape": None, "cam": 3}
    for k, n in want.items():
        if n is not None and out[k].size != n:
            raise ValueError(f"{path}: '{k}' has {out[k].size} values, expected {n}")
    if out["shape"].size < num_betas:
        raise ValueError(f"{path}: 'shape' has {out['shape'].size} values, expected {num_betas}")
    out["shape"] = out["shape"][:num_betas]
    return out


class HMRHead(nn.Module):
    """Iterative regressor: features (B, C, h, w) -> pose (B,J,3,3), shape (B,S), cam (B,3)."""

    # PARE's HMR head (the HRNet HMRs) registers three strided convs it never calls: dropped from checkpoints
    dropped_keys = ("downsample_module.",)

    def __init__(self, in_channels: int = 2048, mean_params: Optional[str] = None, num_joints: int = 24,
                 num_betas: int = 10, n_iter: int = 3, hidden: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.num_joints, self.num_betas, self.n_iter = num_joints, num_betas, n_iter
        npose = 6 * num_joints
        # AvgPool2d(7, stride 1) of the original on a 7x7 map == global average pooling.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(in_channels + npose + num_betas + 3, hidden)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop2 = nn.Dropout(dropout)
        self.decpose = nn.Linear(hidden, npose)
        self.decshape = nn.Linear(hidden, num_betas)
        self.deccam = nn.Linear(hidden, 3)
        for dec in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(dec.weight, gain=0.01)
        mp = load_mean_params(mean_params, num_joints, num_betas)
        self.register_buffer("init_pose", torch.from_numpy(mp["pose"])[None])
        self.register_buffer("init_shape", torch.from_numpy(mp["shape"])[None])
        self.register_buffer("init_cam", torch.from_numpy(mp["cam"])[None])

    def forward(self, features: torch.Tensor, init_pose=None, init_shape=None, init_cam=None,
                n_iter: Optional[int] = None) -> dict:
        B = features.shape[0]
        x = self.avgpool(features).flatten(1)
        pose = self.init_pose.expand(B, -1) if init_pose is None else init_pose
        shape = self.init_shape.expand(B, -1) if init_shape is None else init_shape
        cam = self.init_cam.expand(B, -1) if init_cam is None else init_cam
        for _ in range(self.n_iter if n_iter is None else n_iter):
            h = self.drop1(self.fc1(torch.cat([x, pose, shape, cam], dim=1)))
            h = self.drop2(self.fc2(h))
            pose = pose + self.decpose(h)
            shape = shape + self.decshape(h)
            cam = cam + self.deccam(h)
        return {
            "pred_pose": rot6d_to_rotmat(pose).reshape(B, self.num_joints, 3, 3),
            "pred_pose_6d": pose,
            "pred_shape": shape,
            "pred_cam": cam,
        }
