"""Camera conventions of the renderers (reference §3.4, §3.10).

The project camera is OpenCV's pinhole camera: x right, y down, z forward, a point X (metres, in
the body frame) is seen at ``X + cam_t`` and projects to pixel coordinates

    u = f * X_c / Z_c + c_x,   v = f * Y_c / Z_c + c_y,

with the principal point at the image centre by default (112, 112 for the 224 crop). Pixel
(row r, column c) is the unit square whose centre is at (u, v) = (c + 0.5, r + 0.5): this is
where SoftRas samples the DSR camera, and where PyTorch3D samples the camera returned by
:func:`opencv_to_pytorch3d_cameras` (checked in tests/test_rendering.py).

SoftRas measures distances in NDC where the image's shorter side spans [-1, 1], i.e. one pixel
is ``2 / min(H, W)`` NDC units (2/224 for the crop); :func:`ndc_per_pixel` gives that factor.
"""
from __future__ import annotations

import torch


def image_hw(image_size) -> tuple[int, int]:
    """``int`` or ``(H, W)`` -> ``(H, W)``; raises on anything else."""
    if isinstance(image_size, int):
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        return image_size, image_size
    try:
        h, w = (int(s) for s in image_size)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}") from exc
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return h, w


def ndc_per_pixel(image_size) -> float:
    """NDC units per pixel: ``2 / min(H, W)`` (SoftRas and PyTorch3D alike)."""
    h, w = image_hw(image_size)
    return 2.0 / min(h, w)


def default_camera_center(image_size, batch_size: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(B, 2) principal point ``(W/2, H/2)`` in pixels."""
    h, w = image_hw(image_size)
    return torch.tensor([w / 2.0, h / 2.0], dtype=dtype, device=device).expand(batch_size, 2)


def project_to_pixels(
    vertices: torch.Tensor,
    cam_t: torch.Tensor,
    focal_length,
    camera_center: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pinhole projection of body-frame vertices.

    Args:
        vertices: (B, V, 3) metres, body frame.
        cam_t: (B, 3) camera translation (metres).
        focal_length: float or (B,) tensor, pixels.
        camera_center: (B, 2) principal point (pixels).
    Returns:
        u (B, V), v (B, V) pixel coordinates and z (B, V) camera depth (metres).
    """
    pc = vertices + cam_t[:, None, :]
    z = pc[..., 2]
    f = focal_length
    if torch.is_tensor(f) and f.dim() == 1:
        f = f[:, None]
    u = f * pc[..., 0] / z + camera_center[:, 0:1]
    v = f * pc[..., 1] / z + camera_center[:, 1:2]
    return u, v, z


def opencv_to_pytorch3d_cameras(
    cam_t: torch.Tensor,
    focal_length,
    image_size,
    camera_center: torch.Tensor | None = None,
):
    """The OpenCV crop camera as PyTorch3D ``PerspectiveCameras`` (the one conversion point).

    Uses ``pytorch3d.utils.cameras_from_opencv_projection`` with R = I, tvec = cam_t and
    K = [[f, 0, c_x], [0, f, c_y], [0, 0, 1]] (c = image centre unless given); PyTorch3D then
    flips x and y internally so that pixel (r, c) of its raster is centred at u = c + 0.5,
    v = r + 0.5 of the OpenCV image.

    Args:
        cam_t: (B, 3); focal_length: float or (B,); image_size: int or (H, W);
        camera_center: (B, 2) pixels or None.
    """
    from pytorch3d.utils import cameras_from_opencv_projection

    h, w = image_hw(image_size)
    B = cam_t.shape[0]
    dtype, device = cam_t.dtype, cam_t.device
    if camera_center is None:
        camera_center = default_camera_center((h, w), B, dtype, device)
    f = focal_length if torch.is_tensor(focal_length) else torch.tensor(float(focal_length))
    f = f.to(dtype=dtype, device=device).expand(B)
    K = torch.zeros(B, 3, 3, dtype=dtype, device=device)
    K[:, 0, 0] = f
    K[:, 1, 1] = f
    K[:, 0, 2] = camera_center[:, 0]
    K[:, 1, 2] = camera_center[:, 1]
    K[:, 2, 2] = 1.0
    R = torch.eye(3, dtype=dtype, device=device).expand(B, 3, 3)
    size = torch.tensor([[h, w]], dtype=dtype, device=device).expand(B, 2)
    return cameras_from_opencv_projection(R=R, tvec=cam_t, camera_matrix=K, image_size=size)
