"""dsr/inference pieces, each alone (issue 29): One-Euro filter, SO(3) projection, crop-to-full
camera, IoU tracker, full-frame renderer, detector loading (local file only), run_on_frames."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from dsr.inference import (InputError, IoUTracker, OneEuroFilter, PersonDetector, count_id_switches,
                           crop_to_full_camera, full_image_focal, iou_matrix, project_to_so3, render_people)
from dsr.inference.detector import default_weights_path


# ---------------------------------------------------------------- One-Euro filter
def _ema_response(a: float, omega: float):
    """Gain and lag (samples) of y_k = a x_k + (1 - a) y_{k-1} at angular frequency omega (rad/sample):
    H = a / (1 - (1 - a) e^{-i omega})."""
    h = a / (1 - (1 - a) * complex(math.cos(omega), -math.sin(omega)))
    return abs(h), -math.atan2(h.imag, h.real) / omega


def test_one_euro_on_a_noisy_sinusoid():
    fps, f0, sigma, fc = 100.0, 0.5, 0.05, 1.0
    dt = 1 / fps
    t = np.arange(2000) * dt
    clean = np.sin(2 * np.pi * f0 * t)
    noise = np.random.default_rng(0).normal(0, sigma, len(t))
    # beta = 0: a fixed first-order low-pass, a = r / (r + 1), r = 2 pi fc dt
    a = 2 * math.pi * fc * dt / (2 * math.pi * fc * dt + 1)
    gain, lag = _ema_response(a, 2 * math.pi * f0 * dt)
    filt = OneEuroFilter(min_cutoff=fc, beta=0.0, dt=dt)
    y = np.array([filt(v) for v in clean + noise])
    k = np.arange(500, len(t))  # past the transient (time constant 1 / (2 pi fc) = 0.16 s)
    expected = gain * np.sin(2 * np.pi * f0 * (t[k] - lag * dt))
    # the noise left: white noise through the EMA has variance sigma^2 a / (2 - a)
    resid = y[k] - expected
    assert resid.std() == pytest.approx(sigma * math.sqrt(a / (2 - a)), rel=0.15)
    assert abs(resid.mean()) < 3 * sigma * math.sqrt(a / (2 - a)) / math.sqrt(len(k) / 50)
    # measured lag (cross-correlation peak against the clean signal) = the hand value
    lags = np.arange(0, 30)
    corr = [np.dot(y[k], clean[k - L]) for L in lags]
    assert abs(lags[int(np.argmax(corr))] - lag) <= 1.0
    assert 13.0 < lag < 16.0  # ~ the time constant 1 / (2 pi fc) = 15.9 samples at this low frequency
    # beta > 0 opens the cut-off with speed: less lag, more noise than beta = 0
    f2 = OneEuroFilter(min_cutoff=fc, beta=2.0, dt=dt)
    y2 = np.array([f2(v) for v in clean + noise])
    corr2 = [np.dot(y2[k], clean[k - L]) for L in lags]
    assert lags[int(np.argmax(corr2))] < lags[int(np.argmax(corr))]
    assert np.abs(y2[k] - clean[k]).mean() < np.abs(y[k] - clean[k]).mean()  # here the lag dominates the error
    assert np.abs(np.diff(y2[k], 2)).mean() > np.abs(np.diff(y[k], 2)).mean()  # and beta = 0 is the smoother


def test_one_euro_first_sample_and_errors():
    f = OneEuroFilter(1.0, 0.1, dt=0.1)
    x0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(f(x0), x0)
    with pytest.raises(ValueError):
        OneEuroFilter(0.0, 0.1)
    g = OneEuroFilter(1.0, 0.0)
    g(1.0, t=1.0)
    with pytest.raises(ValueError):
        g(2.0, t=1.0)


def test_project_to_so3():
    from scipy.spatial.transform import Rotation

    R = Rotation.random(5, random_state=1).as_matrix()
    np.testing.assert_allclose(project_to_so3(R), R, atol=1e-12)
    # R S with S symmetric positive definite: the nearest rotation is R (polar decomposition)
    A = np.random.default_rng(2).normal(size=(5, 3, 3)) * 0.1
    S = np.eye(3) + A @ np.swapaxes(A, 1, 2)
    np.testing.assert_allclose(project_to_so3(R @ S), R, atol=1e-10)
    # the mean of two rotation matrices (not a rotation) goes back to SO(3): the mid rotation
    a, b = Rotation.from_rotvec([0, 0, 0.2]).as_matrix(), Rotation.from_rotvec([0, 0, 0.6]).as_matrix()
    np.testing.assert_allclose(project_to_so3((a + b) / 2), Rotation.from_rotvec([0, 0, 0.4]).as_matrix(), atol=1e-12)


# ---------------------------------------------------------------- crop -> full camera
def test_crop_to_full_camera_against_a_projection_by_hand():
    W, H = 640, 480
    assert full_image_focal(W, H) == pytest.approx(800.0)
    cam = torch.tensor([[0.9, 0.05, -0.1], [1.2, -0.2, 0.15]], dtype=torch.float64)
    center = torch.tensor([[150.0, 300.0], [500.0, 200.0]], dtype=torch.float64)
    b = torch.tensor([180.0, 240.0], dtype=torch.float64)
    cam_t = crop_to_full_camera(cam, center, b, W, H)
    f = 800.0
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.uniform(-0.5, 0.5, (50, 2)), np.zeros((50, 1))], 1)  # body points at depth 0
    for i in range(2):
        s, tx, ty = cam[i].tolist()
        # the crop's weak-perspective pixel: crop coordinate s (X + t) in [-1, 1] -> centre + b/2 * that
        u_crop = center[i, 0].item() + b[i].item() / 2 * s * (X[:, 0] + tx)
        v_crop = center[i, 1].item() + b[i].item() / 2 * s * (X[:, 1] + ty)
        P = X + cam_t[i].numpy()
        u = f * P[:, 0] / P[:, 2] + W / 2
        v = f * P[:, 1] / P[:, 2] + H / 2
        np.testing.assert_allclose(u, u_crop, atol=1e-6)
        np.testing.assert_allclose(v, v_crop, atol=1e-6)
        assert cam_t[i, 2].item() == pytest.approx(2 * f / (b[i].item() * s))


# ---------------------------------------------------------------- tracker
def test_iou_by_hand():
    iou = iou_matrix([[0, 0, 2, 2]], [[1, 1, 2, 2], [5, 5, 1, 1], [0, 0, 2, 2]])
    np.testing.assert_allclose(iou, [[1 / 7, 0.0, 1.0]])


def _crossing_boxes(T=40):
    """Two boxes crossing head-on at frame 20, the second smaller (further away), as in the
    crossing video; at frame 20 one box lies inside the other (IoU 0.56)."""
    out = []
    for t in range(T):
        out.append([[10 + 10 * t, 50, 60, 120], [417.5 - 10 * t, 65, 45, 90]])
    return np.array(out, np.float64)


def test_tracker_keeps_identities_through_a_crossing_and_gaps():
    boxes = _crossing_boxes()
    tr = IoUTracker(iou_threshold=0.1, min_hits=3, max_age=5)
    rng = np.random.default_rng(0)
    ids, truth = [], []
    for t in range(len(boxes)):
        order = rng.permutation(2)
        keep = order if not 24 <= t < 27 else order[order == 0]  # person 1 missed for 3 frames
        ids.append(tr.update(boxes[t][keep]))
        truth.append(keep)
    assert count_id_switches(ids, truth) == 0
    assert tr.next_id == 2  # no track was born twice
    # a gap longer than max_age: the person gets a new id (no reuse of the old one)
    tr2 = IoUTracker(min_hits=1, max_age=2)
    tr2.update([[0, 0, 10, 10]])
    for _ in range(3):
        tr2.update(np.zeros((0, 4)))
    assert tr2.update([[0, 0, 10, 10]]).tolist() == [1]


def test_tracker_min_hits_and_prediction():
    tr = IoUTracker(min_hits=3, max_age=10)
    for t in range(5):  # frames 0..4: one person moving 4 px per frame
        ids = tr.update([[100 + 4 * t, 50, 40, 80]])
    assert ids.tolist() == [0] and tr.reported(0)
    # a one-frame false positive at frame 5 is tentative (born after the first min_hits frames)
    ids = tr.update([[104 + 16, 50, 40, 80], [400, 300, 30, 30]])
    assert ids.tolist() == [0, 1] and not tr.reported(1)
    # frames without detection: the track moves on with its velocity (4 px / frame)
    pred = tr.predict_only()
    assert [t.id for t in pred] == [0]
    np.testing.assert_allclose(pred[0].box, [124, 50, 40, 80], atol=1e-9)


# ---------------------------------------------------------------- full-frame renderer
def _square(z, half, x0=0.0):
    v = np.array([[x0 - half, -half, z], [x0 + half, -half, z], [x0 + half, half, z], [x0 - half, half, z]], np.float32)
    return v


def test_render_people_depth_order_and_projection():
    H, W, f = 60, 80, 100.0
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    near, far = _square(2.0, 0.3, x0=0.2), _square(4.0, 1.0)  # near listed second: depth decides, not order
    img = np.full((H, W, 3), 10, np.uint8)
    out, who = render_people(img, np.stack([far, near]), faces, f, colors=[(255, 0, 0), (0, 0, 255)], backend="window")
    # by hand: the near square spans u in W/2 + f [0.2 - 0.3, 0.2 + 0.3] / 2 = [35, 65], v in 30 -+ 15 = [15, 45]
    cols = np.nonzero((who == 1).any(0))[0]
    rows = np.nonzero((who == 1).any(1))[0]
    assert (cols.min(), cols.max() + 1, rows.min(), rows.max() + 1) == (35, 65, 15, 45)
    # the far square spans [15, 65] x [5, 55]: visible around the near one, hidden under it
    assert who[30, 20] == 0 and who[30, 50] == 1 and who[2, 2] == -1
    assert (out[who == -1] == 10).all()  # untouched background
    assert (out[who == 1][:, 2] > out[who == 1][:, 0]).all() and (out[who == 0][:, 0] > out[who == 0][:, 2]).all()


# ---------------------------------------------------------------- detector: local file only
@pytest.fixture()
def no_download(monkeypatch):
    import urllib.request

    def boom(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    monkeypatch.setattr(urllib.request, "urlopen", boom)


def test_detector_loads_a_local_file_and_never_downloads(tmp_path, monkeypatch, no_download):
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    torch.manual_seed(0)
    net = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    path = tmp_path / "det.pth"
    torch.save(net.state_dict(), path)
    det = PersonDetector("fasterrcnn_mobilenet_v3", str(path), threshold=0.0, max_people=3)
    for k, v in net.state_dict().items():
        assert torch.equal(det.net.state_dict()[k], v), k
    frames = [np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)]
    (rows,) = det(frames)
    assert rows.shape[1] == 5 and len(rows) <= 3
    area = rows[:, 2] * rows[:, 3]
    assert (np.diff(area) <= 0).all()  # largest first
    # the same file found in torchvision's cache ($TORCH_HOME/hub/checkpoints/<its file name>)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    cached = default_weights_path("fasterrcnn_mobilenet_v3")
    assert cached == str(tmp_path / "th" / "hub" / "checkpoints" / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth")
    os.makedirs(os.path.dirname(cached))
    os.symlink(path, cached)
    assert PersonDetector("fasterrcnn_mobilenet_v3").path == cached


def test_detector_errors_name_the_file(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(InputError, match=r"fasterrcnn_resnet50_fpn_coco-258fb6c6\.pth.*--det-weights"):
        PersonDetector("fasterrcnn_resnet50")
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match=f"{bad}: not the weights of torchvision's fasterrcnn_mobilenet_v3_large_fpn"):
        PersonDetector("fasterrcnn_mobilenet_v3", str(bad))
    with pytest.raises(InputError, match="nowhere.pth: detector weights file not found"):
        PersonDetector("keypointrcnn", str(tmp_path / "nowhere.pth"))


def test_keypoint_box_by_the_openpose_rule():
    from dsr.inference.detector import box_from_keypoints, sort_boxes

    kp = np.array([[0.0, 0.0], [10.0, 20.0], [20.0, 10.0], [100.0, 100.0]])
    vis = np.array([True, True, True, False])
    # centre = mean of the visible (10, 10); side = 1.2 x the largest extent (20) = 24
    np.testing.assert_allclose(box_from_keypoints(kp, vis), [-2.0, -2.0, 24.0, 24.0])
    assert box_from_keypoints(kp, np.array([True, False, False, False])) is None
    rows = np.array([[0, 0, 10, 10, 0.9], [0, 0, 30, 5, 0.5], [0, 0, 20, 20, 0.7]], float)
    np.testing.assert_array_equal(sort_boxes(rows, 2)[:, 4], [0.7, 0.5])  # areas 400, 150 (100 dropped)


def test_keypointrcnn_box_gets_the_1_2_factor_once():
    """keypointrcnn's keypoint box is tight (side = extent); crop_person's box_scale 1.2 then makes
    the crop 1.2 x the keypoint extent, the OpenPose rule (not 1.2 x 1.2 = 1.44 x)."""
    from dsr.inference.pipeline import crop_person

    kp = torch.zeros(1, 17, 3)
    kp[0, :, 0] = torch.linspace(40, 90, 17)  # x extent 50
    kp[0, :, 1] = torch.linspace(20, 100, 17)  # y extent 80 (the largest)
    scores = torch.full((1, 17), 1.0)
    scores[0, 16] = -1.0  # not visible: the visible y extent is 75 (20 .. 95)

    class StubNet:
        def __call__(self, x):
            return [dict(labels=torch.tensor([1]), scores=torch.tensor([0.9]), boxes=torch.tensor([[0.0, 0, 10, 10]]),
                         keypoints=kp, keypoints_scores=scores)]

    det = PersonDetector.__new__(PersonDetector)
    det.net, det.device, det.threshold, det.max_people = StubNet(), "cpu", 0.5, 10
    (rows,) = det([np.zeros((120, 160, 3), np.uint8)])
    assert rows.shape == (1, 5)
    side = 75.0
    centre = kp[0, :16, :2].numpy().mean(0)
    np.testing.assert_allclose(rows[0, :4], [centre[0] - side / 2, centre[1] - side / 2, side, side], rtol=1e-6)
    _, _, crop_side = crop_person(np.zeros((120, 160, 3), np.uint8), rows[0], 32, box_scale=1.2)
    assert crop_side == round(1.2 * side)  # 90, not 108
