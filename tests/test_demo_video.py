"""demo.py on photos and videos (issue 29): the crossing video from the embedded default through
--boxes and a stub detector (frame count, fps, npz rows, 0 identity switches), smoothing, the
offline no-weights case and the front door's bad inputs (one line, exit 2, no traceback)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import demo
from conftest import free_body_cfg
from dsr.inference import IoUTracker, TrackSmoother, run_on_frames
from dsr.inference.crossing_video import evaluate_rows, make_crossing_video
from dsr.inference.video import VideoReader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T, FPS, W, H = 24, 8.0, 320, 240


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random resnet18 HMR at 64 px (SPIN-format checkpoint + config) and a 3 s crossing video."""
    from dsr.models import HMR

    d = tmp_path_factory.mktemp("video")
    cfg = free_body_cfg("resnet18")
    cfg.DATASET.IMG_RES = 64
    cfg_file = d / "demo.cfg"
    cfg_file.write_text(cfg.dump())
    torch.manual_seed(0)
    model = HMR(cfg)
    flat = {k.split(".", 1)[1]: v for k, v in model.state_dict().items() if not k.startswith("body.")}
    ckpt = d / "model.pt"
    torch.save({"model": flat}, ckpt)
    truth = make_crossing_video(str(d), seconds=T / FPS, fps=FPS, size=(W, H), seed=1, progress=False)
    return dict(dir=d, ckpt=str(ckpt), cfg=str(cfg_file), model=model.eval(), truth=truth,
                video=str(d / "crossing.mp4"), boxes=str(d / "crossing_boxes.json"))


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_crossing_video_truth(setup):
    """The generator's boxes are the projections of its own meshes, and scoring the truth as if it
    were a prediction gives PVE 0 and no switch (the scorer itself)."""
    tr = setup["truth"]
    assert tr["pose"].shape == (T, 2, 72) and tr["boxes"].shape == (T, 2, 4)
    assert float(tr["focal_length"]) == pytest.approx(400.0)  # sqrt(320^2 + 240^2)
    # people cross: person 0 starts left of person 1 and ends right of it, boxes overlap mid-way
    cx = tr["boxes"][:, :, 0] + tr["boxes"][:, :, 2] / 2
    assert cx[0, 0] < cx[0, 1] and cx[-1, 0] > cx[-1, 1]
    with open(setup["boxes"]) as f:
        jb = json.load(f)
    assert len(jb) == T
    np.testing.assert_allclose(np.array(jb[5]), tr["boxes"][5][tr["order"][5]], atol=0.01)
    rows = dict(frame=np.repeat(np.arange(T), 2), track_id=np.tile([7, 9], T), bbox=tr["boxes"].reshape(-1, 4),
                pose=tr["pose"].reshape(-1, 72), betas=np.tile(tr["betas"], (T, 1)))
    res = evaluate_rows(rows, tr, setup["model"].body)
    assert res["id_switches"] == 0 and res["unmatched_rows"] == 0 and res["pve_mm"] == pytest.approx(0.0, abs=1e-3)
    # independently of the generator's own projection: frame t's truth meshes, posed here and projected
    # with dsr.geometry.perspective_projection (focal sqrt(W^2 + H^2), principal point at the centre),
    # have the truth boxes as their bounding boxes (float32 rounding: < 1e-3 px)
    from dsr.geometry import batch_rodrigues, perspective_projection

    t = 11
    rot = batch_rodrigues(torch.from_numpy(tr["pose"][t]).reshape(-1, 3)).reshape(2, 24, 3, 3)
    verts = setup["model"].body(global_orient=rot[:, :1], body_pose=rot[:, 1:],
                                betas=torch.from_numpy(tr["betas"])).vertices.detach()
    uv = perspective_projection(verts, torch.from_numpy(tr["cam_t"][t]), torch.full((2,), math.hypot(W, H)),
                                torch.tensor([[W / 2, H / 2]]).expand(2, 2)).numpy()
    lo, hi = uv.min(1), uv.max(1)
    np.testing.assert_allclose(tr["boxes"][t], np.concatenate([lo, hi - lo], 1), atol=1e-3)


def test_demo_video_with_boxes(setup, tmp_path):
    out = tmp_path / "o"
    rc = demo.main(["--checkpoint", setup["ckpt"], "--cfg", setup["cfg"], "--video", setup["video"],
                    "--boxes", setup["boxes"], "--outfile_folder", str(out), "--save_params", "--min-hits", "1"])
    assert rc == 0
    r = VideoReader(str(out / "crossing_result.mp4"))
    n = sum(1 for _ in r)
    assert (n, r.fps, r.width, r.height) == (T, FPS, W, H)
    p = dict(np.load(out / "crossing.npz"))
    assert p["pose"].shape == (2 * T, 72) and p["betas"].shape == (2 * T, 10) and p["cam_t"].shape == (2 * T, 3)
    assert p["bbox"].shape == (2 * T, 4) and p["img_size"].tolist() == [W, H] and float(p["fps"]) == FPS
    np.testing.assert_allclose(p["focal_length"], 400.0)
    assert sorted(set(p["track_id"].tolist())) == [0, 1] and np.bincount(p["frame"]).tolist() == [2] * T
    res = evaluate_rows(p, setup["truth"], setup["model"].body)
    assert res["id_switches"] == 0 and res["unmatched_rows"] == 0


def test_stub_detector_every_third_frame(setup):
    """A stub detector returning the true boxes (shuffled) on frames 0, 3, 6, ...; the tracker
    predicts the boxes in between and keeps both identities."""
    tr = setup["truth"]
    calls = []

    def stub(frames):
        out = []
        for _ in frames:
            t = len(calls) * 3
            calls.append(t)
            rows = np.concatenate([tr["boxes"][t][tr["order"][t]], np.full((2, 1), 0.9)], 1)
            out.append(rows)
        return out

    reader = VideoReader(setup["video"])
    results = list(run_on_frames(setup["model"], reader, detector=stub, tracker=IoUTracker(min_hits=1),
                                 det_every=3, fps=FPS, batch_size=16, chunk=5))
    assert calls == list(range(0, T, 3))
    assert [len(fr.people) for fr in results] == [2] * T
    from scipy.optimize import linear_sum_assignment

    from dsr.inference.tracker import count_id_switches

    ids, who, err = [], [], []
    for fr in results:  # each reported box -> the true person of the nearest centre
        c = np.stack([p.bbox[:2] + p.bbox[2:] / 2 for p in fr.people])
        g = tr["boxes"][fr.index][:, :2] + tr["boxes"][fr.index][:, 2:] / 2
        d = np.linalg.norm(c[:, None] - g[None], axis=-1)
        r, k = linear_sum_assignment(d)
        ids.append(np.array([fr.people[i].track_id for i in r]))
        who.append(k)
        if fr.index >= 3 and fr.index % 3:  # predicted frames, once two detections gave a velocity
            last = tr["boxes"][fr.index - fr.index % 3]
            hold = np.linalg.norm(last[:, :2] + last[:, 2:] / 2 - g, axis=-1)  # keeping the last box
            err.append((d[r, k].mean(), hold.mean()))
    assert count_id_switches(ids, who) == 0
    # between detections the predicted box follows the person (~10 px per frame here): its centre
    # error is well below that of keeping the last detected box
    err = np.array(err)
    assert err[:, 0].mean() < 0.5 * err[:, 1].mean()


def test_track_smoother_rotations_and_betas():
    from scipy.spatial.transform import Rotation

    sm = TrackSmoother(fps=25.0, min_cutoff=1.0, beta=0.5)
    rng = np.random.default_rng(0)
    raw_betas = rng.normal(size=(10, 10))
    for t in range(10):
        pose = Rotation.random(24, random_state=t).as_matrix()
        p, b, c = sm.params(3, t, pose, raw_betas[t], np.array([0.1, 0.2, 5.0]) + 0.01 * t)
        np.testing.assert_allclose(p @ np.swapaxes(p, 1, 2), np.broadcast_to(np.eye(3), (24, 3, 3)), atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(p), 1.0, atol=1e-9)
        np.testing.assert_allclose(b, raw_betas[:t + 1].mean(0), atol=1e-12)
        if t == 0:
            np.testing.assert_allclose(p, pose, atol=1e-9)  # the first sample passes unchanged


def test_demo_photo_with_boxes(setup, tmp_path):
    """A synthetic-dataset frame with two boxes (one with a score): full-frame overlay of the
    input's size, one npz row per box, one obj per person."""
    img = os.path.join(REPO, "docs", "demo", "synthetic_3.jpg")
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps([[24.6, 6.4, 162.4, 162.4, 0.8], [200, 40, 100, 200]]))
    rc = demo.main(["--checkpoint", setup["ckpt"], "--cfg", setup["cfg"], "--img", img, "--boxes", str(boxes),
                    "--outfile_folder", str(tmp_path), "--save_params", "--save_obj"])
    assert rc == 0
    res = cv2.imread(str(tmp_path / "synthetic_3_result.png"))
    assert res.shape == (288, 384, 3)
    p = np.load(tmp_path / "synthetic_3.npz")
    assert p["track_id"].tolist() == [-1, -1] and p["frame"].tolist() == [0, 0]
    np.testing.assert_allclose(p["bbox"][1], [200, 40, 100, 200])
    np.testing.assert_allclose(p["score"], [0.8, 1.0], rtol=1e-6)
    np.testing.assert_allclose(p["focal_length"], 480.0)  # sqrt(384^2 + 288^2)
    assert os.path.isfile(tmp_path / "synthetic_3_0.obj") and os.path.isfile(tmp_path / "synthetic_3_1.obj")


def test_offline_without_detector_weights_one_line_exit_2(setup, tmp_path):
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "empty_cache"), PYTHONPATH=REPO)
    img = os.path.join(REPO, "docs", "demo", "synthetic_3.jpg")
    r = subprocess.run([sys.executable, os.path.join(REPO, "demo.py"), "--checkpoint", setup["ckpt"], "--cfg",
                        setup["cfg"], "--img", img, "--outfile_folder", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth" in line and "--det-weights" in line


def test_demo_bad_inputs_one_line_exit_2(setup, tmp_path, capsys):
    ck, cfg = setup["ckpt"], setup["cfg"]
    base = ["--checkpoint", ck, "--cfg", cfg, "--outfile_folder", str(tmp_path / "o")]
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    short = tmp_path / "short.json"
    short.write_text(json.dumps([[[10, 10, 50, 100]]] * 3))
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps([[10, 10, 50, 100]]))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[[1, 2")
    neg = tmp_path / "neg.json"
    neg.write_text(json.dumps([[10, 10, -5, 100]]))
    broken_ckpt = tmp_path / "broken.ckpt"
    broken_ckpt.write_bytes(b"PK\x03\x04 garbage")
    img = os.path.join(REPO, "docs", "demo", "synthetic_3.jpg")
    cases = [
        (["--video", str(tmp_path / "none.mp4")], "none.mp4: video not found"),
        (["--video", str(bad_video)], "broken.mp4: cannot decode the video"),
        (["--video", setup["video"], "--boxes", str(short)], f"{short}: 3 entries for a video of {T} frames"),
        (["--video", setup["video"], "--boxes", str(flat)], f"{flat}: entry 0 is not a list of"),
        (["--video", setup["video"], "--boxes", str(tmp_path / "nob.json")], "nob.json: boxes file not found"),
        (["--img", img, "--boxes", str(bad_json)], f"{bad_json}: malformed boxes json"),
        (["--img", img, "--boxes", str(neg)], "non-positive width or height"),
        (["--img", str(tmp_path / "no.jpg")], "no.jpg: image not found"),
    ]
    for args, msg in cases:
        assert demo.main(base + args) == 2, args
        assert msg in _one_error_line(capsys.readouterr().err)
    for ckpt, msg in [(str(tmp_path / "missing.ckpt"), "missing.ckpt: checkpoint not found"),
                      (str(broken_ckpt), "broken.ckpt: cannot read the checkpoint")]:
        assert demo.main(["--checkpoint", ckpt, "--video", setup["video"], "--outfile_folder", str(tmp_path)]) == 2
        assert msg in _one_error_line(capsys.readouterr().err)


def test_demo_det_weights_flag_loads_a_local_detector(setup, tmp_path, monkeypatch):
    """A random-initialised torchvision detector saved to a file and given by --det-weights: the
    demo's real loading path, with every download route made to fail."""
    import urllib.request

    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    def boom(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    monkeypatch.setattr(urllib.request, "urlopen", boom)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_cache"))
    torch.manual_seed(0)
    weights = tmp_path / "det.pth"
    torch.save(fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).state_dict(), weights)
    img = os.path.join(REPO, "docs", "demo", "synthetic_3.jpg")
    rc = demo.main(["--checkpoint", setup["ckpt"], "--cfg", setup["cfg"], "--img", img, "--det-weights", str(weights),
                    "--det-thresh", "0", "--max-people", "2", "--det-size", "288", "--outfile_folder", str(tmp_path),
                    "--save_params"])
    assert rc == 0
    p = np.load(tmp_path / "synthetic_3.npz")
    assert len(p["bbox"]) <= 2 and p["track_id"].tolist() == [-1] * len(p["bbox"])
    area = p["bbox"][:, 2] * p["bbox"][:, 3]
    assert (np.diff(area) <= 0).all()  # largest first
    assert cv2.imread(str(tmp_path / "synthetic_3_result.png")).shape == (288, 384, 3)


def test_demo_public_domain_photo(setup, tmp_path):
    """A real photograph in the public domain (tests/data/astronaut.jpg: NASA's portrait of Eileen
    Collins, as scikit-image ships it, 256 x 256) with one box around the person: a full-frame
    overlay of the photo's size that draws the body inside the box and leaves the far corner as read,
    and one npz row in the full image's camera (focal = sqrt(W^2 + H^2))."""
    img = os.path.join(REPO, "tests", "data", "astronaut.jpg")
    box = [10, 5, 175, 251]
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps([box]))
    rc = demo.main(["--checkpoint", setup["ckpt"], "--cfg", setup["cfg"], "--img", img, "--boxes", str(boxes),
                    "--outfile_folder", str(tmp_path), "--save_params"])
    assert rc == 0
    src = cv2.imread(img).astype(int)
    res = cv2.imread(str(tmp_path / "astronaut_result.png")).astype(int)
    assert res.shape == src.shape == (256, 256, 3)
    changed = np.abs(res - src).max(axis=2) > 0
    x, y, w, h = box
    assert changed[y:y + h, x:x + w].mean() > 0.02  # the body is drawn over the person
    assert not changed[:20, 236:].any()  # the top-right corner, outside the box, is the photo as read
    p = np.load(tmp_path / "astronaut.npz")
    assert p["pose"].shape == (1, 72) and p["betas"].shape == (1, 10) and p["track_id"].tolist() == [-1]
    np.testing.assert_allclose(p["bbox"][0], box)
    np.testing.assert_allclose(p["focal_length"], 256 * np.sqrt(2), rtol=1e-6)


def test_no_detector_crops_the_whole_frame_by_the_original_rule(setup):
    """--video --detector none: the whole-frame box goes through crop_person (x box_scale), so it is
    emitted at max(H, W) / box_scale: the crop is the original's, centre (W // 2, H // 2) and scale
    max(H, W) / 200 (a 640 x 427 frame: centre (320, 213), side 640), for any box_scale."""
    from dsr import constants
    from dsr.data.image_utils import crop_cv2
    from dsr.inference.pipeline import crop_person

    img = np.random.default_rng(0).integers(0, 255, (427, 640, 3), dtype=np.uint8)
    model = setup["model"]
    res = int(model.img_res)
    want = crop_cv2(img, np.array([320, 213]), 640 / 200.0, res).astype(np.float32) / 255.0
    want = ((want - np.array(constants.IMG_NORM_MEAN, np.float32)) / np.array(constants.IMG_NORM_STD, np.float32))
    for box_scale in (1.2, 1.0, 1.5):
        (fr,) = run_on_frames(model, [img], tracker=IoUTracker(min_hits=1), fps=FPS, box_scale=box_scale)
        (p,) = fr.people
        assert p.center.tolist() == [320, 213] and p.box_size == 640.0
        z, _, _ = crop_person(img, p.bbox, res, box_scale)
        np.testing.assert_array_equal(z, want.transpose(2, 0, 1))


def test_boxes_take_precedence_over_detector_none(setup, tmp_path):
    """--img X --boxes B.json --detector none: the boxes are used (full-frame overlay, one npz row
    per box), not the single-person mode's whole-image three-panel picture."""
    img = os.path.join(REPO, "docs", "demo", "synthetic_3.jpg")
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps([[24.6, 6.4, 162.4, 162.4], [200, 40, 100, 200]]))
    rc = demo.main(["--checkpoint", setup["ckpt"], "--cfg", setup["cfg"], "--img", img, "--boxes", str(boxes),
                    "--detector", "none", "--outfile_folder", str(tmp_path), "--save_params"])
    assert rc == 0
    assert cv2.imread(str(tmp_path / "synthetic_3_result.png")).shape == (288, 384, 3)
    p = np.load(tmp_path / "synthetic_3.npz")
    assert p["track_id"].tolist() == [-1, -1]
    np.testing.assert_allclose(p["bbox"], [[24.6, 6.4, 162.4, 162.4], [200, 40, 100, 200]], rtol=1e-6)
