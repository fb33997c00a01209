"""Tests of dsr.geometry against references written here (Gram-Schmidt, Rodrigues, pinhole)."""
import math

import numpy as np
import pytest
import torch

from dsr.geometry import (
    batch_rodrigues,
    convert_weak_perspective_to_perspective,
    perspective_projection,
    rot6d_to_rotmat,
    rotmat_to_axis_angle,
    rotmat_to_rot6d,
)


@pytest.fixture(autouse=True)
def _float64():
    """Work in float64 within this module only (restored afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def gram_schmidt_reference(six):
    """One joint, plain numpy: 6 numbers -> 3x2 row-major -> Gram-Schmidt on columns."""
    m = np.asarray(six, dtype=np.float64).reshape(3, 2)
    a1, a2 = m[:, 0], m[:, 1]
    b1 = a1 / np.linalg.norm(a1)
    u = a2 - np.dot(b1, a2) * b1
    b2 = u / np.linalg.norm(u)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=1)


def rodrigues_reference(v):
    """Textbook Rodrigues formula, numpy."""
    v = np.asarray(v, dtype=np.float64)
    th = np.linalg.norm(v)
    if th < 1e-12:
        return np.eye(3)
    k = v / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K


def test_identity_6d():
    R = rot6d_to_rotmat(torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]]))
    assert torch.allclose(R[0], torch.eye(3))
    assert torch.allclose(rotmat_to_rot6d(torch.eye(3)[None]), torch.tensor([[1.0, 0, 0, 1, 0, 0]]))


def test_rot6d_element_order_against_gram_schmidt():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6 * 24, generator=g)  # (B, 6J) as the head outputs
    R = rot6d_to_rotmat(x)
    assert R.shape == (4 * 24, 3, 3)
    xs = x.reshape(-1, 6).numpy()
    for i in range(0, xs.shape[0], 7):
        np.testing.assert_allclose(R[i].numpy(), gram_schmidt_reference(xs[i]), atol=1e-10)


def test_rot6d_order_is_row_major_not_column_major():
    # [a, b, c, d, e, f] -> columns (a, c, e) and (b, d, f). A 90 deg rotation about z has
    # first column (0,1,0) and second column (-1,0,0): row-major 6D = [0,-1, 1,0, 0,0].
    R = rot6d_to_rotmat(torch.tensor([[0.0, -1.0, 1.0, 0.0, 0.0, 0.0]]))[0]
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(R, expected)


def test_rot6d_roundtrip_on_rotations():
    g = torch.Generator().manual_seed(1)
    aa = torch.randn(50, 3, generator=g)
    R = batch_rodrigues(aa)
    assert torch.allclose(rot6d_to_rotmat(rotmat_to_rot6d(R)), R, atol=1e-10)


def test_rodrigues_against_textbook():
    g = torch.Generator().manual_seed(2)
    aa = torch.randn(30, 3, generator=g) * 2
    aa[0] = 0.0
    aa[1] = torch.tensor([1e-7, -2e-7, 0.5e-7])
    R = batch_rodrigues(aa)
    for i in range(aa.shape[0]):
        np.testing.assert_allclose(R[i].numpy(), rodrigues_reference(aa[i].numpy()), atol=1e-10)


@pytest.mark.parametrize("angle", [0.0, 1e-8, 1e-4, 0.3, 1.5, 3.0, math.pi - 1e-3, math.pi - 1e-6])
def test_axis_angle_roundtrip(angle):
    g = torch.Generator().manual_seed(3)
    axes = torch.nn.functional.normalize(torch.randn(20, 3, generator=g), dim=-1)
    aa = axes * angle
    R = torch.from_numpy(np.stack([rodrigues_reference(v) for v in aa.numpy()]))
    back = rotmat_to_axis_angle(R)
    # Angle recovered; matrix recovered (axis sign is ambiguous only at exactly pi).
    np.testing.assert_allclose(back.norm(dim=-1).numpy(), angle, atol=1e-7)
    np.testing.assert_allclose(batch_rodrigues(back).numpy(), R.numpy(), atol=1e-9)
    if angle < math.pi - 1e-5:
        np.testing.assert_allclose(back.numpy(), aa.numpy(), atol=1e-6)


def test_axis_angle_exact_half_turn():
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))[None]  # pi about x
    aa = rotmat_to_axis_angle(R)[0]
    assert abs(abs(aa[0].item()) - math.pi) < 1e-9 and aa[1:].abs().max() < 1e-9


def test_weak_to_perspective_by_hand():
    cam = torch.tensor([[0.9, 0.1, -0.2], [1.2, 0.0, 0.3]])
    t = convert_weak_perspective_to_perspective(cam, focal_length=5000.0, img_res=224)
    assert torch.allclose(t[0], torch.tensor([0.1, -0.2, 2 * 5000.0 / (224 * 0.9 + 1e-9)]))
    assert torch.allclose(t[1], torch.tensor([0.0, 0.3, 10000.0 / (224 * 1.2 + 1e-9)]))
    t2 = convert_weak_perspective_to_perspective(cam, focal_length=1000.0, img_res=256)
    assert torch.allclose(t2[0, 2], torch.tensor(2000.0 / (256 * 0.9 + 1e-9)))


def test_projection_of_known_point():
    # X = (0.1, -0.2, 0) + t (0, 0, 10) -> (0.1, -0.2, 10); u = 5000*0.01 + 112 = 162, v = -100+112.
    pts = torch.tensor([[[0.1, -0.2, 0.0], [0.0, 0.0, 0.0]]])
    uv = perspective_projection(pts, torch.tensor([[0.0, 0.0, 10.0]]), 5000.0, torch.tensor([[112.0, 112.0]]))
    assert torch.allclose(uv, torch.tensor([[[162.0, 12.0], [112.0, 112.0]]]))
    # Per-sample focal (B,) and a rotation of 90 deg about z: (x, y) -> (-y, x).
    Rz = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    uv = perspective_projection(pts, torch.tensor([[0.0, 0.0, 10.0]]), torch.tensor([1000.0]),
                                torch.zeros(1, 2), rotation=Rz)
    assert torch.allclose(uv[0, 0], torch.tensor([20.0, 10.0]))


def test_weak_perspective_consistency_with_projection():
    # With cam_t from the weak camera, a point at depth 0 near the origin projects (in [-1,1]
    # crop coords) to s * (x + tx) -- the defining property of the conversion.
    cam = torch.tensor([[0.8, 0.05, -0.1]])
    t = convert_weak_perspective_to_perspective(cam)
    p = torch.tensor([[[0.2, 0.3, 0.0]]])
    uv = perspective_projection(p, t, 5000.0, torch.zeros(1, 2)) / 112.0
    assert torch.allclose(uv[0, 0], 0.8 * (p[0, 0, :2] + cam[0, 1:]), atol=1e-6)


def test_gradients_finite_at_identity_and_half_turn():
    R = torch.stack([torch.eye(3), torch.diag(torch.tensor([1.0, -1.0, -1.0]))]).requires_grad_()
    rotmat_to_axis_angle(R).sum().backward()
    assert torch.isfinite(R.grad).all()
    v = torch.zeros(3, 3, requires_grad=True)
    batch_rodrigues(v).sum().backward()
    assert torch.isfinite(v.grad).all()
