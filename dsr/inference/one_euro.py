"""One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) on arrays, and rotation smoothing on SO(3).

For samples x_k at times t_k (seconds) the filter keeps a smoothed value x^ and derivative dx^:

    a(fc, dt) = 1 / (1 + 1 / (2 pi fc dt))          (exponential smoothing factor of cut-off fc Hz)
    dx_k  = (x_k - x^_{k-1}) / dt,   dx^_k = a(d_cutoff, dt) dx_k + (1 - a) dx^_{k-1}
    fc_k  = min_cutoff + beta |dx^_k|               (per element)
    x^_k  = a(fc_k, dt) x_k + (1 - a) x^_{k-1}

``min_cutoff`` (Hz) sets the smoothing of a still signal (lower: smoother, more lag), ``beta``
how fast the cut-off opens with speed (higher: less lag on fast motion). The first sample passes
unchanged. Arrays of any shape are filtered element-wise.

:func:`project_to_so3` returns smoothed rotation matrices to SO(3) (nearest rotation, SVD):
filtering the 9 entries of a rotation matrix and projecting back smooths rotations as rotations
(no axis-angle wrap-around, no quaternion sign flips).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["OneEuroFilter", "smoothing_factor", "project_to_so3", "DEFAULT_MIN_CUTOFF", "DEFAULT_BETA"]

DEFAULT_MIN_CUTOFF = 1.0  # Hz
DEFAULT_BETA = 0.5  # 1 / (unit of the signal)


def smoothing_factor(cutoff, dt: float):
    """a = 1 / (1 + tau / dt), tau = 1 / (2 pi cutoff)  (cutoff a float or an array)."""
    r = 2.0 * math.pi * np.asarray(cutoff, dtype=np.float64) * dt
    return r / (r + 1.0)


class OneEuroFilter:
    """Element-wise One-Euro filter; call ``f(x, t)`` (t in seconds, increasing) or ``f(x)`` with
    ``dt`` fixed at construction (1 / fps)."""

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA, d_cutoff: float = 1.0,
                 dt: float | None = None):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"OneEuroFilter: min_cutoff and d_cutoff must be > 0 and beta >= 0, got "
                             f"{min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff, self.dt = float(min_cutoff), float(beta), float(d_cutoff), dt
        self.x = self.dx = self.t = None

    def __call__(self, x, t: float | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            self.t = 0.0 if t is None else float(t)
            return x.copy()
        if t is None:
            if self.dt is None:
                raise ValueError("OneEuroFilter: give t, or dt at construction")
            t = self.t + self.dt
        dt = float(t) - self.t
        if dt <= 0:
            raise ValueError(f"OneEuroFilter: time must increase, got {t} after {self.t}")
        a_d = smoothing_factor(self.d_cutoff, dt)
        self.dx = a_d * (x - self.x) / dt + (1.0 - a_d) * self.dx
        a = smoothing_factor(self.min_cutoff + self.beta * np.abs(self.dx), dt)
        self.x = a * x + (1.0 - a) * self.x
        self.t = float(t)
        return self.x.copy()


def project_to_so3(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) matrices -> the nearest rotations (Frobenius norm): U diag(1, 1, det(U V^T)) V^T."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    u = u.copy()
    u[..., :, 2] *= d[..., None]
    return u @ vt
