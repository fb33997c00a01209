"""SSP-3D: the converter on a fabricated raw tree ((row, col) centres), PVE-T-SC and the
silhouette IoU against hand computations, and ``DATASET.VAL_DS ssp-3d`` end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import emdb_fixtures as fx
from dsr.data.preprocess.__main__ import main as preprocess_main
from dsr.data.preprocess.ssp3d import center_scale
from dsr.evaluation.metrics import silhouette_counts
from dsr.evaluation.ssp3d import Ssp3dProtocol


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssp3d_raw")
    labels = fx.make_ssp3d_tree(str(root))
    out = tmp_path_factory.mktemp("ssp3d_out")
    assert preprocess_main(["ssp-3d", "--root", str(root), "--out", str(out)]) == 0
    return root, out, labels, dict(np.load(out / "dataset_extras" / "ssp3d_test.npz"))


def test_row_col_swap():
    c, s = center_scale(np.array([[100.0, 300.0]]), np.array([50.0]))  # row 100, col 300
    np.testing.assert_allclose(c, [[300.0, 100.0]])  # (x, y)
    np.testing.assert_allclose(s, [1.2 * 50 / 200])


def test_converter_rows(tree):
    _, _, labels, d = tree
    assert d["imgname"].tolist() == [f"images/{f}" for f in labels["fnames"]]
    assert d["silhouette"].tolist() == [f"silhouettes/{f}" for f in labels["fnames"]]
    np.testing.assert_allclose(d["center"], labels["bbox_centres"][:, ::-1])
    assert d["gender"].tolist() == labels["genders"].tolist()
    np.testing.assert_allclose(d["shape"], labels["shapes"])


def test_silhouette_is_cropped_like_the_image(tree):
    """The cropped silhouette of a person lies where the crop puts their box: the rectangle
    (20 x 10 px around the stored centre) lands at the middle of the crop, scaled by res / box."""
    from protocol_cases import make_cfg

    from dsr.data.loader import build_val_dataset

    root, out, labels, _ = tree
    cfg = make_cfg("ssp-3d", True, "/tmp/unused")
    cfg.PATHS.DATASET_NPZ_PATH = str(out / "dataset_extras")
    cfg.PATHS.DATASET_FOLDERS["ssp-3d"] = str(root)
    ds = build_val_dataset(cfg)
    item = ds[0]
    sil = item["silhouette"].numpy()
    assert sil.shape == (224, 224) and set(np.unique(sil)) <= {0, 1}
    box = int(round(1.2 * labels["bbox_whs"][0]))  # crop side in pixels (scale * 200)
    k = 224 / box
    ys, xs = np.nonzero(sil)
    r, c = int(labels["bbox_centres"][0, 0]), int(labels["bbox_centres"][0, 1])
    cx, cy = int(round(labels["bbox_centres"][0, 1])), int(round(labels["bbox_centres"][0, 0]))
    # rectangle rows r-10 .. r+9, cols c-5 .. c+4 in the image; crop centre = (cx, cy)
    assert abs(ys.mean() - (112 + k * (r - 0.5 - cy))) < 2 * k
    assert abs(xs.mean() - (112 + k * (c - 0.5 - cx))) < 2 * k
    assert len(ys) == pytest.approx(200 * k * k, rel=0.25)


def test_pooled_vs_mean_iou_on_two_hand_made_silhouettes():
    pred = np.zeros((2, 6, 6), np.uint8)
    gt = np.zeros((2, 6, 6), np.uint8)
    pred[0, 0, 0:4] = 1      # 4 px
    gt[0, 0, 2:6] = 255      # 4 px, 2 shared -> TP 2, FP 2, FN 2, IoU 1/3
    pred[1, 2:4, 0:5] = 1    # 10 px
    gt[1, 2:4, 0:5] = 7      # the same 10 px (any nonzero value is foreground) -> IoU 1
    tp, fp, fn = silhouette_counts(torch.from_numpy(pred), torch.from_numpy(gt))
    assert tp.tolist() == [2, 10] and fp.tolist() == [2, 0] and fn.tolist() == [2, 0]
    res = {"tp": tp.numpy(), "fp": fp.numpy(), "fn": fn.numpy(), "iou": np.array([1 / 3, 1.0]),
           "pve_t_sc": np.zeros(2)}
    s = Ssp3dProtocol.summarise(res)
    assert s["iou"] == pytest.approx(12 / 16)  # pooled: (2 + 10) / (6 + 10)
    assert s["iou_mean"] == pytest.approx((1 / 3 + 1) / 2)


def _tpose(body, betas):
    out = body(torch.eye(3).expand(1, 1, 3, 3), torch.eye(3).expand(1, 23, 3, 3), torch.from_numpy(betas[None]).float())
    return out.vertices[0].double().numpy()


def test_pve_t_sc_gender_choice_and_scale_correction():
    """Both meshes through the GT gender's model; the prediction moved to the GT mean and scaled
    to its RMS radius (hand-written here with numpy)."""
    from dsr.evaluation.ssp3d import pve_t_sc

    body_of = fx.body_cache()
    rng = np.random.default_rng(2)
    gt_b, pr_b = rng.normal(size=(2, 10)), rng.normal(size=(2, 10))

    for i, g in enumerate(("male", "female")):
        P, T = _tpose(body_of(g), pr_b[i]), _tpose(body_of(g), gt_b[i])
        Pn = (P - P.mean(0)) / np.sqrt(((P - P.mean(0)) ** 2).sum() / len(P))
        Pt = Pn * np.sqrt(((T - T.mean(0)) ** 2).sum() / len(T)) + T.mean(0)
        want = np.linalg.norm(Pt - T, axis=1).mean()
        got = pve_t_sc(body_of(g), torch.from_numpy(pr_b[i:i + 1]).float(), torch.from_numpy(gt_b[i:i + 1]).float())
        assert float(got) == pytest.approx(want, rel=1e-6)
        other = pve_t_sc(body_of("female" if g == "male" else "male"), torch.from_numpy(pr_b[i:i + 1]).float(),
                         torch.from_numpy(gt_b[i:i + 1]).float())
        assert abs(float(other) - want) > 1e-6  # the gender matters
    # the same betas, scaled shape aside: a prediction equal to the GT scores 0
    err = pve_t_sc(body_of("male"), torch.from_numpy(gt_b[:1]).float(), torch.from_numpy(gt_b[:1]).float())
    assert float(err) < 1e-7


def test_ssp3d_evaluation_end_to_end(tree, tmp_path):
    root, out, _, d = tree
    module, dump = fx.evaluate("ssp-3d", str(root), str(out / "dataset_extras"), str(tmp_path / "exp" / "run"), 2)
    n = len(d["imgname"])
    for k in ("pve_t_sc", "iou", "tp", "fp", "fn"):
        assert dump[k].shape == (n,)
    res = module.last_eval
    assert res["protocol"] == "ssp-3d"
    assert 1000 * dump["pve_t_sc"].mean() == pytest.approx(res["pve_t_sc"], rel=1e-9)
    tp, fp, fn = dump["tp"].sum(), dump["fp"].sum(), dump["fn"].sum()
    assert res["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert (dump["tp"] + dump["fn"] > 0).all()  # every GT silhouette reached the crop


@pytest.mark.cuda
def test_silhouette_of_the_gpu_rasterizer_matches_the_cpu_one():
    """On CUDA the IoU's silhouette comes from PyTorch3D, on CPU from the window rasterizer: the
    same mesh and camera give the same foreground up to pixels whose centre lies on an edge."""
    from dsr.geometry import batch_rodrigues
    from dsr.rendering.semantic_renderer import rasterize

    body = fx.body_cache()("neutral")
    rng = np.random.default_rng(5)
    pose = rng.normal(scale=0.2, size=(2, 72))
    pose[:, :3] = [np.pi, 0, 0]
    rot = batch_rodrigues(torch.from_numpy(pose).float().reshape(-1, 3)).reshape(2, 24, 3, 3)
    with torch.no_grad():
        verts = body(rot[:, :1], rot[:, 1:], torch.zeros(2, 10)).vertices
    cam_t = torch.tensor([[0.0, 0.2, 45.0], [0.1, 0.0, 60.0]])
    cpu = rasterize(verts, cam_t, body.faces, 224, backend="window").pix_to_face >= 0
    gpu = rasterize(verts.cuda(), cam_t.cuda(), body.faces.cuda(), 224, backend="pytorch3d").pix_to_face.cpu() >= 0
    assert cpu.sum() > 1000
    assert (cpu ^ gpu).sum() <= 0.01 * (cpu | gpu).sum()
