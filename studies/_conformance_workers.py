"""The two checks of studies/conformance_emdb_ssp3d.py, each run in its own process with the
official code of ``<work>`` importable (see that script). Not a user entry point."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import tempfile

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL_M, TOL_DEG, TOL_REL = 1e-6, 1e-4, 1e-6
EMDB_LAYOUT = [  # subject, folder, gender, frames, EMDB-1, masked frames, good frames with an empty box (none)
    ("P0", "09_outdoor_walk", "male", 40, True, (2, 3, 17), ()),
    ("P0", "10_indoor_dance", "female", 12, False, (), ()),
    ("P3", "27_indoor_walk_off_mvs", "female", 30, True, (0, 29), ()),
    ("P7", "55_outdoor_walk", "neutral", 25, True, (), ()),
]


def _quiet(fn, *a, **k):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*a, **k)


def run_emdb(work: str, near: bool) -> int:
    sys.path[:0] = [os.path.join(work, "stubs"), os.path.join(work, "emdb")]
    import emdb_fixtures as fx
    import evaluation_engine as EE
    import evaluation_metrics as EM

    from dsr.data.preprocess.__main__ import main as preprocess_main
    from dsr.evaluation.emdb import EmdbProtocol
    from dsr.geometry import batch_rodrigues

    fx.EMDB_LAYOUT = EMDB_LAYOUT
    tmp = tempfile.mkdtemp(dir=work)
    root, out = os.path.join(tmp, "emdb"), os.path.join(tmp, "out")
    seqs = fx.make_emdb_tree(root, seed=5, images=False)
    assert _quiet(preprocess_main, ["emdb", "--root", root, "--out", out, "--smpl-dir", fx.SMPL_DIR]) == 0
    d = dict(np.load(os.path.join(out, "dataset_extras", "emdb1_test.npz")))
    rng = np.random.default_rng(11)
    preds = {}
    for name, s in seqs.items():  # every frame of every sequence: axis-angle (camera-frame root), betas, trans
        n = s["n_frames"]
        pose, betas = rng.normal(scale=0.4, size=(n, 72)), rng.normal(size=(n, 10))
        if near:
            rows = np.flatnonzero(d["sequence"] == name)
            pose[d["frame"][rows]] = d["pose"][rows] + rng.normal(scale=0.03, size=(len(rows), 72))
            betas[:] = s["smpl"]["betas"] + rng.normal(scale=0.1, size=(n, 10))
        preds[name] = (pose, betas, rng.normal(size=(n, 3)))
    # ours
    proto = EmdbProtocol("emdb-1", fx.body_cache())
    N = len(d["imgname"])
    pp = np.stack([preds[s][0][f] for s, f in zip(d["sequence"], d["frame"])])
    pb = np.stack([preds[s][1][f] for s, f in zip(d["sequence"], d["frame"])])
    rot = batch_rodrigues(torch.from_numpy(pp).float().reshape(-1, 3)).reshape(N, 24, 3, 3)
    batch = {"pose": torch.from_numpy(d["pose"]), "betas": torch.from_numpy(d["shape"]).float(),
             "gender": torch.tensor([{"m": 0, "f": 1, "n": 2}[g] for g in d["gender"]]),
             "frame": torch.from_numpy(d["frame"]), "sequence": list(d["sequence"])}
    with torch.no_grad():
        res = proto.score(batch, {"pred_pose": rot, "pred_shape": torch.from_numpy(pb).float()})
    res = {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in res.items()}
    ours_jit = proto.jitter_per_sequence(res)
    # official: the engine per sequence, the prediction through the neutral model (as for HybrIK)

    def load(result_dir, force):
        subj, seq = result_dir.split(os.sep)[-3:-1]
        return preds[f"{subj}_{seq}"]

    EE.METHOD_TO_LOAD_FUNCTION[EE.HYBRIK] = load
    eng = EE.EvaluationEngine(EM.compute_metrics)
    diff = {k: 0.0 for k in ("MPJPE (m)", "PA-MPJPE (m)", "PVE (m)", "MPJAE (deg)", "PA-MPJAE (deg)", "jitter (rel)")}
    print(f"EMDB, predictions {'GT + noise' if near else 'unrelated to the GT'}:")
    for name, s in seqs.items():
        if not s["emdb1"]:
            continue
        subj = name.split("_")[0]
        seq_root = os.path.join(root, subj, name[len(subj) + 1:])
        m, mx, _ = _quiet(eng.compare2method, *eng.load_emdb_gt(seq_root), seq_root, root, EE.HYBRIK)
        rows = np.flatnonzero(d["sequence"] == name)
        assert (d["frame"][rows] == np.flatnonzero(s["good_frames_mask"])).all()
        pairs = {"MPJPE (m)": (res["mpjpe_joints"][rows].mean(1), mx["mpjpe_all"] / 1000),
                 "PA-MPJPE (m)": (res["pampjpe_joints"][rows].mean(1), mx["mpjpe_pa_all"] / 1000),
                 "PVE (m)": (res["v2v"][rows], mx["mve_all"] / 1000),
                 "MPJAE (deg)": (res["mpjae"][rows], mx["mpjae_all"].mean(-1)),
                 "PA-MPJAE (deg)": (res["pampjae"][rows], mx["mpjae_pa_all"].mean(-1)),
                 "jitter (rel)": (np.array([ours_jit[name]]), np.array([mx["jitter_pd"]]))}
        for k, (a, b) in pairs.items():
            e = np.abs(a - b).max() / (abs(b[0]) if k == "jitter (rel)" else 1.0)
            diff[k] = max(diff[k], float(e))
        print(f"  {name} ({len(rows)} good frames) official | ours: MPJPE {m['MPJPE [mm]']:.3f} | "
              f"{res['mpjpe_joints'][rows].mean() * 1000:.3f} mm, PA-MPJPE {m['MPJPE_PA [mm]']:.3f} | "
              f"{res['pampjpe_joints'][rows].mean() * 1000:.3f}, PVE {m['MVE [mm]']:.3f} | "
              f"{res['v2v'][rows].mean() * 1000:.3f}, MPJAE {m['MPJAE [deg]']:.4f} | {res['mpjae'][rows].mean():.4f} deg, "
              f"PA-MPJAE {m['MPJAE_PA [deg]']:.4f} | {res['pampjae'][rows].mean():.4f}, jitter {mx['jitter_pd']:.4f} | "
              f"{ours_jit[name]:.4f} (10 m/s^3)")
    print("  largest per-frame difference: " + ", ".join(f"{k} {v:.2g}" for k, v in diff.items()))
    tol = {k: (TOL_DEG if "deg" in k else TOL_REL if "rel" in k else TOL_M) for k in diff}
    return int(any(diff[k] > tol[k] for k in diff))


def run_ssp3d(work: str) -> int:
    sys.path[:0] = [os.path.join(work, "hp"), os.path.join(work, "ssp3d")]
    spec = importlib.util.spec_from_file_location("ssp3d_metrics", os.path.join(work, "ssp3d", "metrics.py"))
    SSP = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(SSP)
    from metrics.eval_metrics_tracker import EvalMetricsTracker

    import emdb_fixtures as fx

    from dsr.data.loader import build_val_dataset
    from dsr.data.preprocess.__main__ import main as preprocess_main
    from dsr.evaluation.ssp3d import Ssp3dProtocol
    from dsr.geometry import batch_rodrigues
    from dsr.rendering.semantic_renderer import rasterize

    smpl_cls = SSP.SMPL

    class NumpySMPL:  # their arithmetic is numpy (np.mean(..., keepdims)): hand it numpy vertices
        def __init__(self, *a, **k):
            self.m = smpl_cls(*a, **k)

        def __call__(self, **k):
            with torch.no_grad():
                o = self.m(**k)
            o.vertices = o.vertices.numpy()
            return o

    SSP.SMPL = NumpySMPL
    tmp = tempfile.mkdtemp(dir=work)
    root, out, N = os.path.join(tmp, "ssp"), os.path.join(tmp, "out"), 8
    labels = fx.make_ssp3d_tree(root, n=N, seed=3, size=512)  # the real images' size
    assert _quiet(preprocess_main, ["ssp-3d", "--root", root, "--out", out]) == 0
    cfg = fx.eval_cfg("ssp-3d", root, os.path.join(out, "dataset_extras"), os.path.join(tmp, "run"))
    items = [it for it in build_val_dataset(cfg)]
    body_of = fx.body_cache()
    proto = Ssp3dProtocol("ssp-3d", body_of, focal_length=5000.0, img_res=224)
    rng = np.random.default_rng(4)
    pred_betas = torch.from_numpy(labels["shapes"] + rng.normal(scale=0.5, size=(N, 10))).float()
    pose = rng.normal(scale=0.2, size=(N, 72))
    pose[:, :3] = [np.pi, 0, 0]
    rot = batch_rodrigues(torch.from_numpy(pose).float().reshape(-1, 3)).reshape(N, 24, 3, 3)
    with torch.no_grad():
        verts = body_of("neutral")(rot[:, :1], rot[:, 1:], pred_betas).vertices
    cam_t = torch.tensor([[0.0, 0.2, 20.0]]).repeat(N, 1) + torch.from_numpy(
        rng.normal(scale=[0.1, 0.1, 3], size=(N, 3))).float()
    batch = {"betas": torch.stack([it["betas"] for it in items]), "gender": torch.tensor([it["gender"] for it in items]),
             "silhouette": torch.stack([it["silhouette"] for it in items])}
    with torch.no_grad():
        res = proto.score(batch, {"pred_shape": pred_betas, "smpl_vertices": verts, "pred_cam_t": cam_t})
        pred_sil = (rasterize(verts, cam_t, body_of("neutral").faces, 224, focal_length=5000.0).pix_to_face >= 0).numpy()
    summary = proto.summarise({k: v.numpy() for k, v in res.items()})
    off = np.array([np.asarray(_quiet(SSP.compute_pve_neutral_pose_scale_corrected, pred_betas[i:i + 1],
                                      torch.from_numpy(labels["shapes"][i:i + 1]).float(), str(labels["genders"][i]))).mean()
                    for i in range(N)])
    tr = _quiet(EvalMetricsTracker, ["silhouette-IOU"], img_wh=224)
    tr.initialise_metric_sums()
    tr.initialise_per_frame_metric_lists()
    _, pf = tr.update_per_batch({"silhouettes": pred_sil}, {"silhouettes": batch["silhouette"].numpy()}, N,
                                return_per_frame_metrics=True)
    ms = tr.metric_sums
    pooled = ms["num_true_positives"] / (ms["num_true_positives"] + ms["num_false_negatives"] + ms["num_false_positives"])
    from utils.image_utils import batch_crop_opencv_affine  # the author's crop (HierProb3D)

    import cv2

    theirs = []
    for i, f in enumerate(labels["fnames"]):
        sil = cv2.imread(os.path.join(root, "silhouettes", f), 0)
        theirs.append(batch_crop_opencv_affine(output_wh=(224, 224), num_to_crop=1, seg=sil[None],
                                               bbox_centres=labels["bbox_centres"][i][None],
                                               bbox_whs=[labels["bbox_whs"][i]], orig_scale_factor=1.2)["seg"][0] > 0)
    ours_gt = batch["silhouette"].numpy() > 0
    crop_iou = [(a & b).sum() / (a | b).sum() for a, b in zip(theirs, ours_gt)]
    d_pve = float(np.abs(off - res["pve_t_sc"].numpy()).max())
    d_iou = float(np.abs(pf["silhouette-IOU"] - res["iou"].numpy()).max())
    print(f"SSP-3D, {N} people: PVE-T-SC official | ours (mm) "
          + ", ".join(f"{a * 1000:.3f} | {b * 1000:.3f}" for a, b in zip(off, res["pve_t_sc"].numpy())))
    print(f"  pooled IoU tracker {pooled:.6f} | ours {summary['iou']:.6f}; mean per-image IoU (ours) {summary['iou_mean']:.6f}")
    print(f"  largest difference: PVE-T-SC {d_pve:.2g} m, per-image IoU {d_iou:.2g}, pooled IoU {abs(pooled - summary['iou']):.2g}")
    print(f"  GT silhouette crops, the author's vs ours at 224 px (IoU of the two crops): min {min(crop_iou):.4f}, "
          f"mean {np.mean(crop_iou):.4f} (ours rounds the box centre and side to whole pixels, as every crop here)")
    return int(d_pve > TOL_M or d_iou > 1e-12 or abs(pooled - summary["iou"]) > 1e-12)


def run(worker: str, work: str, near: bool) -> int:
    sys.path[:0] = [os.path.join(REPO, "tests"), REPO]
    torch.set_num_threads(1)
    from loguru import logger

    logger.remove()
    return run_emdb(work, near) if worker == "emdb" else run_ssp3d(work)
