"""Rotation and camera geometry in SPIN's conventions (reference §2.2, §2.3).

Rotations
  * 6D representation: the 6 numbers of one joint, read as a 3x2 matrix in row-major order
    (column 1 = elements 0, 2, 4; column 2 = elements 1, 3, 5), Gram-Schmidt on the two columns,
    third column = cross product. Released checkpoints and ``smpl_mean_params.npz`` depend on
    exactly this element order.
  * axis-angle ("rotation vector") <-> rotation matrix, stable near 0 and near pi (via roma).

Camera (OpenCV: x right, y down, z forward)
  * weak perspective ``[s, tx, ty]`` of a ``img_res`` crop -> translation
    ``[tx, ty, 2 f / (img_res s + 1e-9)]``.
  * full perspective projection with intrinsics ``[[f, 0, cx], [0, f, cy], [0, 0, 1]]``.

All functions are batch first and differentiable.
"""
from __future__ import annotations

import roma
import torch
import torch.nn.functional as F

__all__ = [
    "rot6d_to_rotmat",
    "rotmat_to_rot6d",
    "batch_rodrigues",
    "rotmat_to_axis_angle",
    "axis_angle_to_rotmat",
    "convert_weak_perspective_to_perspective",
    "perspective_projection",
]


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D rotation representation -> rotation matrices.

    Args:
        x: (B, 6*J) or (N, 6) (any shape whose element count is a multiple of 6; the last
           dimension groups joints of 6 numbers each).
    Returns:
        (N, 3, 3) rotation matrices, N = x.numel() // 6, columns [b1, b2, b1 x b2].
    """
    if x.shape[-1] % 6 != 0:
        raise ValueError(f"rot6d_to_rotmat: last dimension must be a multiple of 6, got shape {tuple(x.shape)}")
    m = x.reshape(-1, 3, 2)  # row-major 3x2 per joint
    a1, a2 = m[:, :, 0], m[:, :, 1]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def rotmat_to_rot6d(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices -> 6D representation (inverse of :func:`rot6d_to_rotmat` on rotations).

    Args:
        rotmat: (N, 3, 3) (or (..., 3, 3)).
    Returns:
        (N, 6): the first two columns as a 3x2 matrix flattened row-major.
    """
    if rotmat.shape[-2:] != (3, 3):
        raise ValueError(f"rotmat_to_rot6d: expected (..., 3, 3), got {tuple(rotmat.shape)}")
    return rotmat.reshape(-1, 3, 3)[:, :, :2].reshape(-1, 6)


def batch_rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle (rotation vector, angle = norm in radians) -> rotation matrices.

    Args:
        axis_angle: (N, 3) (or (..., 3); flattened to N).
    Returns:
        (N, 3, 3). Exact identity (and finite gradients) at the zero vector.
    """
    if axis_angle.shape[-1] != 3:
        raise ValueError(f"batch_rodrigues: expected (..., 3), got {tuple(axis_angle.shape)}")
    return roma.rotvec_to_rotmat(axis_angle.reshape(-1, 3))


axis_angle_to_rotmat = batch_rodrigues


def rotmat_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices -> axis-angle, angle in [0, pi].

    Goes through a unit quaternion chosen by the largest-component rule (roma), which is
    stable both near the identity and near a half turn.

    Args:
        rotmat: (N, 3, 3) (or (..., 3, 3); flattened to N).
    Returns:
        (N, 3).
    """
    if rotmat.shape[-2:] != (3, 3):
        raise ValueError(f"rotmat_to_axis_angle: expected (..., 3, 3), got {tuple(rotmat.shape)}")
    return roma.rotmat_to_rotvec(rotmat.reshape(-1, 3, 3))


def convert_weak_perspective_to_perspective(
    cam: torch.Tensor, focal_length: float = 5000.0, img_res: int = 224
) -> torch.Tensor:
    """Weak-perspective camera of a square crop -> camera translation.

    Args:
        cam: (B, 3) ``[s, tx, ty]`` (s scales [-1, 1] crop coordinates).
    Returns:
        (B, 3) ``[tx, ty, 2 * focal_length / (img_res * s + 1e-9)]`` in metres.
    """
    if cam.shape[-1] != 3:
        raise ValueError(f"convert_weak_perspective_to_perspective: expected (B, 3), got {tuple(cam.shape)}")
    s, tx, ty = cam[..., 0], cam[..., 1], cam[..., 2]
    tz = 2.0 * focal_length / (img_res * s + 1e-9)
    return torch.stack((tx, ty, tz), dim=-1)


def perspective_projection(
    points: torch.Tensor,
    translation: torch.Tensor,
    focal_length,
    camera_center: torch.Tensor,
    rotation: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pinhole projection ``K (R X + t)`` followed by division by depth.

    Args:
        points: (B, N, 3) in the body frame.
        translation: (B, 3) camera translation.
        focal_length: float, or tensor (B,) / (B, 2) (fx, fy).
        camera_center: (B, 2) principal point in pixels (or (2,), broadcast).
        rotation: (B, 3, 3) or None (identity).
    Returns:
        (B, N, 2) pixel coordinates.
    """
    B = points.shape[0]
    if rotation is not None:
        points = torch.einsum("bij,bnj->bni", rotation, points)
    points = points + translation[:, None, :]
    if not torch.is_tensor(focal_length):
        focal_length = torch.tensor(focal_length, dtype=points.dtype, device=points.device)
    focal_length = focal_length.to(points)
    if focal_length.dim() == 0:
        f = focal_length.expand(B, 2)
    elif focal_length.dim() == 1:
        f = focal_length[:, None].expand(B, 2)
    else:
        f = focal_length
    camera_center = torch.as_tensor(camera_center).to(points)
    if camera_center.dim() == 1:
        camera_center = camera_center.expand(B, 2)
    xy = points[..., :2] / points[..., 2:3]
    return xy * f[:, None, :] + camera_center[:, None, :]
