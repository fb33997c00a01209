"""Test / benchmark meshes: an ico-sphere, and the "body-sized mesh" (free body model if present).

``icosphere(level)`` -> vertices (V, 3) float64 on the unit sphere, faces (F, 3) long
(level 0: 12 / 20, each level x4 faces). ``body_mesh()`` -> (vertices (V, 3) metres, faces
(F, 3), name): the free body's rest template, centred and turned 180 deg about x (upright in the
OpenCV camera), (``dsr/assets/free_body/smpl/SMPL_NEUTRAL.npz``,
keys ``v_template``, ``f``) when it exists, else an ellipsoid of body-like extent
(semi-axes 0.25 / 0.8 / 0.15 m, ico-sphere level 5: 20,480 faces).
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

FREE_BODY_NPZ = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "free_body", "smpl",
                             "SMPL_NEUTRAL.npz")


def icosphere(level: int = 0):
    t = (1.0 + math.sqrt(5.0)) / 2.0
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
         (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
         (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
         (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in v]
    faces = f
    for _ in range(level):
        cache = {}

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return torch.tensor(np.stack(verts)), torch.tensor(faces, dtype=torch.long)


def body_mesh(dtype=torch.float32, path: str | None = None):
    """(vertices (V, 3), faces (F, 3), name) of an SMPL-sized mesh (module docstring).

    ``path``: an SMPL-format npz to use instead (keys v_template, f); the environment variable
    ``DSR_BENCH_BODY_NPZ`` does the same (benchmarks against a fixed copy of the free body)."""
    path = path or os.environ.get("DSR_BENCH_BODY_NPZ") or FREE_BODY_NPZ
    if os.path.exists(path):
        d = np.load(path, allow_pickle=False)
        v = torch.tensor(np.asarray(d["v_template"]), dtype=dtype)
        f = torch.tensor(np.asarray(d["f"]).astype(np.int64))
        v = v - v.mean(0)  # centre it (the crop camera looks at the origin)
        v = v * torch.tensor([1.0, -1.0, -1.0], dtype=dtype)  # SMPL y-up -> upright in the OpenCV camera
        return v, f, "free body" if path == FREE_BODY_NPZ else f"body {path}"
    v, f = icosphere(5)
    v = (v * torch.tensor([0.25, 0.8, 0.15], dtype=torch.float64)).to(dtype)
    return v, f, "ellipsoid (ico-sphere level 5)"
