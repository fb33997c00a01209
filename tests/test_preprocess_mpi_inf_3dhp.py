"""dsr.data.preprocess.mpi_inf_3dhp on a fabricated MPI-INF-3DHP download: the test set's v7.3
annot_data.mat (h5py, MATLAB's transposed layout) with JPEGs of two sizes, the training set's v5
annot.mat (scipy) and .avi videos whose frames encode their index. Checked by hand: joint order,
univ_annot3, valid_frame and inside-the-image filters, the global every-10th counter, pairing by
frame number, resume, fits, errors, and the test file through the dataset and the protocol."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import scipy.io
import torch

from dsr.data.preprocess.__main__ import build_parser
from dsr.data.preprocess.common import PreprocessError
from test_preprocess_h36m import code_frame, decode_frame
from video_fixtures import matlab_v73, write_frames

# test-set image size (W, H) per sequence: TS1-4 square, TS5-6 landscape (as 2048^2 / 1920x1080)
TS_SIZE = {1: (40, 40), 2: (40, 40), 3: (40, 40), 4: (40, 40), 5: (48, 27), 6: (48, 27)}
TS_FRAMES = 5
# GT-24 index <- joint of the 17 test-set joints, by name (0 head top, 1 neck, 2-4 R arm,
# 5-7 L arm, 8-10 R leg, 11-13 L leg, 14 pelvis, 15 spine, 16 head)
GT_FROM_TEST = {0: 10, 1: 9, 2: 8, 3: 11, 4: 12, 5: 13, 6: 4, 7: 3, 8: 2, 9: 5, 10: 6, 11: 7,
                12: 1, 14: 14, 16: 15, 17: 16, 18: 0}
# GT-24 index <- joint of the 28 training joints, by name (3 spine, 4 pelvis, 5 neck, 6 head,
# 7 head top, 9-11 L arm, 14-16 R arm, 18-20 L leg, 23-25 R leg)
GT_FROM_TRAIN = {0: 25, 1: 24, 2: 23, 3: 18, 4: 19, 5: 20, 6: 16, 7: 15, 8: 14, 9: 9, 10: 10, 11: 11,
                 12: 5, 14: 4, 16: 3, 17: 6, 18: 7}
TRAIN_CAMS = (0, 1, 2, 4, 5, 6, 7, 8)
N_ANNOT = 12
# video frame counts that differ from the annotation rows
VIDEO_FRAMES = {(1, 1, 1): 10, (1, 1, 2): 13}


def ts_annotations(ts):
    """(annot2 (N, 17, 2), univ (N, 17, 3), annot3 (N, 17, 3), valid (N,)) of sequence ts."""
    w, h = TS_SIZE[ts]
    rng = np.random.default_rng(ts)
    a2 = rng.uniform(0, min(w, h) - 1, size=(TS_FRAMES, 17, 2))
    if ts == 1:
        a2[3, 7, 0] = 40.0  # on the right border: outside (x < W fails)
        a2[4, 7, 0] = 39.99  # inside
    if ts == 5:
        a2[2, 0, 1] = 30.0  # outside a 27-high image (inside a 40-high one)
    if ts == 6:
        a2[0, 3, 0] = -0.001
    univ = rng.uniform(-800, 800, size=(TS_FRAMES, 17, 3))
    valid = np.ones(TS_FRAMES)
    valid[1] = 0
    return a2, univ, univ * 1.1, valid  # annot3: the unnormalised skeleton, a different size


def train_annotations(u, s):
    """annot2 (14 cams, n, 56), annot3 (14, n, 84): 2D in [0, 2048) except some frames."""
    rng = np.random.default_rng(1000 + 10 * u + s)
    a2 = rng.uniform(0, 2047, size=(14, N_ANNOT, 28, 2))
    for c in range(14):
        for r in range(N_ANNOT):
            if (u + s + c + r) % 4 == 0:
                a2[c, r, 25, 0] = 2048.0  # right ankle outside
            if (u + s + c + r) % 7 == 0:
                a2[c, r, 7, 1] = 2047.99  # head top inside
            if (u * s + c + r) % 9 == 0:
                a2[c, r, 12, 1] = -1.0  # a joint SPIN does not check (left hand): no effect
    a3 = rng.uniform(-900, 900, size=(14, N_ANNOT, 28, 3))
    return a2.reshape(14, N_ANNOT, 56), a3.reshape(14, N_ANNOT, 84)


def write_calibration(path):
    """camera.calibration of 14 cameras in the download's text layout (header, then 7 lines per
    camera; not read by the preprocessing, which, as SPIN's output, uses nothing from it)."""
    lines = ["Skeletool Camera Calibration File V1.0"]
    for c in range(14):
        lines += [f"name          {c}", "  sensor      10 10", "  size        2048 2048", "  animated    0",
                  "  intrinsic   1500 0 1024 0 0 1500 1024 0 0 0 1 0 0 0 0 1 ",
                  f"  extrinsic   1 0 0 {100 * c} 0 1 0 0 0 0 1 4000 0 0 0 1 ", "  radial      0"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def make_tree(root):
    for ts in TS_SIZE:
        d = os.path.join(root, "mpi_inf_3dhp_test_set", f"TS{ts}")
        os.makedirs(os.path.join(d, "imageSequence"))
        a2, univ, a3, valid = ts_annotations(ts)

        def build(f, a2=a2, univ=univ, a3=a3, valid=valid):
            # MATLAB arrays 2x17x1xN (etc.) are stored column-major: h5py reads them as N x 1 x 17 x 2
            for name, arr in (("annot2", a2), ("univ_annot3", univ), ("annot3", a3)):
                matlab = arr[:, None].transpose(3, 2, 1, 0)  # (2|3, 17, 1, N) as MATLAB sees it
                f.create_dataset(name, data=matlab.T)
            f.create_dataset("valid_frame", data=valid.reshape(1, -1).T)  # MATLAB 1 x N
        matlab_v73(os.path.join(d, "annot_data.mat"), build)
        w, h = TS_SIZE[ts]
        for i in range(TS_FRAMES):
            cv2.imwrite(os.path.join(d, "imageSequence", f"img_{i + 1:06d}.jpg"), np.full((h, w, 3), 90, np.uint8))
    for u in range(1, 9):
        for s in (1, 2):
            d = os.path.join(root, f"S{u}", f"Seq{s}")
            os.makedirs(os.path.join(d, "imageSequence"))
            a2, a3 = train_annotations(u, s)
            cell2 = np.empty((14, 1), dtype=object)
            cell3 = np.empty((14, 1), dtype=object)
            for c in range(14):
                cell2[c, 0], cell3[c, 0] = a2[c], a3[c]
            write_calibration(os.path.join(d, "camera.calibration"))
            scipy.io.savemat(os.path.join(d, "annot.mat"), {"annot2": cell2, "annot3": cell3,
                                                            "frames": np.arange(N_ANNOT)[:, None]})
            for c in TRAIN_CAMS:
                n = VIDEO_FRAMES.get((u, s, c), N_ANNOT)
                write_frames(os.path.join(d, "imageSequence", f"video_{c}.avi"), (code_frame(k) for k in range(n)),
                             (64, 64), "MJPG", fps=25)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpi_raw")
    make_tree(str(root))
    return str(root)


def run_cli(*argv):
    args = build_parser("mpi-inf-3dhp").parse_args(list(argv))
    return {s.name: s for s in args._module.run(args)}


def expected_test_rows():
    """By hand: valid frames whose 17 joints lie in [0, W) x [0, H) of their sequence's images."""
    rows = []
    for ts in TS_SIZE:
        a2, univ, _, valid = ts_annotations(ts)
        w, h = TS_SIZE[ts]
        for i in range(TS_FRAMES):
            inside = all(0 <= x < w and 0 <= y < h for x, y in a2[i])
            if valid[i] != 0 and inside:
                rows.append((ts, i))
    return rows


def expected_train_rows():
    """SPIN's loop, frame by frame: frames 1..min(video, annotations) of each camera in order; a
    frame with one of the 17 joints outside 2048x2048 does not count; keep counter % 10 == 1."""
    rows, counter = [], 0
    idx17 = [GT_FROM_TRAIN[g] for g in GT_FROM_TRAIN]
    for u in range(1, 9):
        for s in (1, 2):
            a2, _ = train_annotations(u, s)
            for c in TRAIN_CAMS:
                for k in range(1, min(VIDEO_FRAMES.get((u, s, c), N_ANNOT), N_ANNOT) + 1):
                    j = a2[c, k - 1].reshape(28, 2)[idx17]
                    if not np.all((j >= 0) & (j < 2048)):
                        continue
                    counter += 1
                    if counter % 10 == 1:
                        rows.append((u, s, c, k))
    return rows


def test_test_set_filters_joint_order_and_univ_annot3(tree, tmp_path):
    out = tmp_path / "out"
    sums = run_cli("--root", tree, "--out", str(out), "--split", "test")
    d = np.load(out / "dataset_extras" / "mpi_inf_3dhp_valid.npz")
    rows = expected_test_rows()
    # 6 x 5 frames, 6 with valid_frame 0, 3 with a joint outside (TS1 #3, TS5 #2, TS6 #0)
    assert len(rows) == 30 - 6 - 3
    assert list(d["imgname"]) == [f"mpi_inf_3dhp_test_set/TS{ts}/imageSequence/img_{i + 1:06d}.jpg" for ts, i in rows]
    assert set(d.files) == {"imgname", "center", "scale", "part", "S"}
    for j, (ts, i) in enumerate(rows):
        a2, univ, _, _ = ts_annotations(ts)
        x0, y0 = a2[i].min(axis=0)
        x1, y1 = a2[i].max(axis=0)
        np.testing.assert_allclose(d["center"][j], [(x0 + x1) / 2, (y0 + y1) / 2])
        assert d["scale"][j] == pytest.approx(1.2 * max(x1 - x0, y1 - y0) / 200)
        for gt, m in GT_FROM_TEST.items():
            np.testing.assert_allclose(d["part"][j, gt], [*a2[i, m], 1.0])
            # univ_annot3 (not annot3, 1.1x larger in the fixture), metres, minus the pelvis
            np.testing.assert_allclose(d["S"][j, gt], [*(univ[i, m] - univ[i, 14]) / 1000, 1.0], atol=1e-12)
        others = [g for g in range(24) if g not in GT_FROM_TEST]
        assert np.all(d["part"][j, others] == 0) and np.all(d["S"][j, others] == 0)
    s = sums["mpi-inf-3dhp test"]
    assert s.written == 21 and s.skipped["valid_frame = 0"] == 6 and s.skipped["a joint outside the image"] == 3


def check_train(d, rows):
    assert list(d["imgname"]) == [f"S{u}/Seq{s}/imageFrames/video_{c}/frame_{k:06d}.jpg" for u, s, c, k in rows]
    for j, (u, s, c, k) in enumerate(rows):
        a2, a3 = train_annotations(u, s)
        p2 = a2[c, k - 1].reshape(28, 2)  # frame k <-> annotation row k - 1
        p3 = a3[c, k - 1].reshape(28, 3) / 1000
        j17 = np.stack([p2[GT_FROM_TRAIN[g]] for g in GT_FROM_TRAIN])
        x0, y0 = j17.min(axis=0)
        x1, y1 = j17.max(axis=0)
        np.testing.assert_allclose(d["center"][j], [(x0 + x1) / 2, (y0 + y1) / 2])
        assert d["scale"][j] == pytest.approx(1.2 * max(x1 - x0, y1 - y0) / 200)
        for gt, m in GT_FROM_TRAIN.items():
            np.testing.assert_allclose(d["part"][j, gt], [*p2[m], 1.0])
            np.testing.assert_allclose(d["S"][j, gt], [*(p3[m] - p3[4]), 1.0], atol=1e-12)


def test_train_every_10th_visible_frame_paired_by_number(tree, tmp_path):
    out, images = tmp_path / "out", tmp_path / "img"
    sums = run_cli("--root", tree, "--out", str(out), "--split", "train", "--extract-frames", "--images", str(images))
    d = np.load(out / "dataset_extras" / "mpi_inf_3dhp_train.npz")
    rows = expected_train_rows()
    assert 50 < len(rows) < 150
    check_train(d, rows)
    assert set(d.files) == {"imgname", "center", "scale", "part", "S"}
    for name in d["imgname"]:  # frame_k.jpg is video frame k - 1
        assert decode_frame(cv2.imread(str(images / name))) == int(name[-10:-4]) - 1
    s = sums["mpi-inf-3dhp train"]
    assert s.written == len(rows)
    assert s.skipped["annotation row without video frame"] == 2
    assert s.skipped["video frame without annotation row"] == 1
    assert sums["mpi-inf-3dhp train frames"].written == len(rows)  # only the kept frames are written
    assert len([f for f in os.listdir(images / "S1/Seq1/imageFrames/video_0") if f.endswith(".jpg")]) == \
        sum(1 for r in rows if r[:3] == (1, 1, 0))


def test_spin_extracted_frames_in_any_listing_order(tree, tmp_path, monkeypatch):
    """Frames extracted by SPIN's script (every frame, no record) are paired by number, whatever
    order the folder lists them in (SPIN pairs the i-th listed file with row i)."""
    images = tmp_path / "img"
    for u in range(1, 9):
        for s in (1, 2):
            for c in TRAIN_CAMS:
                cap = cv2.VideoCapture(os.path.join(tree, f"S{u}", f"Seq{s}", "imageSequence", f"video_{c}.avi"))
                folder = images / f"S{u}" / f"Seq{s}" / "imageFrames" / f"video_{c}"
                os.makedirs(folder)
                k = 0
                while True:
                    ok, img = cap.read()
                    if not ok:
                        break
                    k += 1
                    cv2.imwrite(str(folder / f"frame_{k:06d}.jpg"), img)
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p=".": sorted(listdir(p), reverse=True))
    out = tmp_path / "out"
    run_cli("--root", tree, "--out", str(out), "--split", "train", "--images", str(images))
    check_train(np.load(out / "dataset_extras" / "mpi_inf_3dhp_train.npz"), expected_train_rows())


def test_train_resume_records_and_fits(tree, tmp_path, monkeypatch):
    out, images = tmp_path / "out", tmp_path / "img"
    argv = ("--root", tree, "--out", str(out), "--split", "train", "--images", str(images))
    with pytest.raises(PreprocessError, match="run with --extract-frames"):
        run_cli(*argv)
    real = cv2.imencode
    calls = {"n": 0}

    def dying(ext, img, *a):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt
        return real(ext, img, *a)

    monkeypatch.setattr(cv2, "imencode", dying)
    with pytest.raises(KeyboardInterrupt):
        run_cli(*argv, "--extract-frames")
    monkeypatch.setattr(cv2, "imencode", real)
    rows = expected_train_rows()
    sums = run_cli(*argv, "--extract-frames")
    assert sums["mpi-inf-3dhp train frames"].written == len(rows) - 7
    assert sums["mpi-inf-3dhp train frames"].skipped["already on disk (resume)"] == 7
    check_train(np.load(out / "dataset_extras" / "mpi_inf_3dhp_train.npz"), rows)
    # then without extraction: the records give every video's frame count, no video is opened
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: pytest.fail("a video was opened"))
    n = len(rows)
    np.savez(tmp_path / "fits.npz", pose=np.arange(n * 72.0).reshape(n, 72), shape=np.ones((n, 10)),
             has_smpl=np.arange(n) % 2)
    run_cli(*argv, "--fits", str(tmp_path / "fits.npz"))
    d = np.load(out / "dataset_extras" / "mpi_inf_3dhp_train.npz")
    check_train(d, rows)
    np.testing.assert_array_equal(d["pose"], np.arange(n * 72.0).reshape(n, 72))
    np.testing.assert_array_equal(d["has_smpl"], np.arange(n) % 2)


def test_input_errors_name_the_file(tree, tmp_path):
    with pytest.raises(PreprocessError, match=r"mpi_inf_3dhp_test_set.*is not a folder"):
        run_cli("--root", str(tmp_path), "--out", str(tmp_path / "o"), "--split", "test")
    root = tmp_path / "raw"
    os.makedirs(root / "mpi_inf_3dhp_test_set" / "TS1")
    bad = root / "mpi_inf_3dhp_test_set" / "TS1" / "annot_data.mat"
    matlab_v73(str(bad), lambda f: f.create_dataset("annot3", data=np.zeros((2, 1, 17, 3))))
    with pytest.raises(PreprocessError, match=r"TS1/annot_data.mat: no 'annot2'"):
        run_cli("--root", str(root), "--out", str(tmp_path / "o"), "--split", "test")
    scipy.io.savemat(str(bad), {"annot2": np.zeros((3, 17, 2))})
    with pytest.raises(PreprocessError, match=r"annot_data.mat: not a MATLAB v7.3"):
        run_cli("--root", str(root), "--out", str(tmp_path / "o"), "--split", "test")
    os.makedirs(root / "S1" / "Seq1")
    scipy.io.savemat(str(root / "S1" / "Seq1" / "annot.mat"), {"annot3": np.zeros((14, 1))})
    with pytest.raises(PreprocessError, match=r"S1/Seq1/annot.mat: no 'annot2'"):
        run_cli("--root", str(root), "--out", str(tmp_path / "o"), "--split", "train")
    # a valid frame whose image is missing
    img = os.path.join(tree, "mpi_inf_3dhp_test_set", "TS3", "imageSequence", "img_000003.jpg")
    os.rename(img, img + ".bak")
    try:
        with pytest.raises(PreprocessError, match=r"missing MPI-INF-3DHP test image: .*TS3/imageSequence/img_000003.jpg"):
            run_cli("--root", tree, "--out", str(tmp_path / "o"), "--split", "test")
    finally:
        os.rename(img + ".bak", img)


def test_test_file_through_dataset_and_protocol(tree, tmp_path):
    """mpi_inf_3dhp_valid.npz read by BaseDataset and reduced by the protocol: 17 GT joints =
    univ_annot3 at R/L legs and arms, neck, head top (GT 'head'), pelvis, spine, head (GT 'jaw')."""
    from dsr.config import get_cfg_defaults
    from dsr.constants import J24_TO_J17
    from dsr.data import BaseDataset
    from dsr.evaluation.protocols import gt_from_s

    run_cli("--root", tree, "--out", str(tmp_path), "--split", "test")
    cfg = get_cfg_defaults()
    cfg.PATHS.DATASET_NPZ_PATH = str(tmp_path / "dataset_extras")
    cfg.PATHS.DATASET_FOLDERS["mpi-inf-3dhp"] = tree
    ds = BaseDataset(cfg, "mpi-inf-3dhp", is_train=False)
    rows = expected_test_rows()
    assert len(ds) == len(rows)
    for j, (ts, i) in enumerate(rows):
        item = ds[j]
        w, h = TS_SIZE[ts]
        assert tuple(item["orig_shape"]) == (h, w)
        gt = gt_from_s(torch.as_tensor(item["pose_3d"])[None], "mpi-inf-3dhp")[0].numpy()
        _, univ, _, _ = ts_annotations(ts)
        want = np.stack([(univ[i, GT_FROM_TEST[g]] - univ[i, 14]) / 1000 for g in J24_TO_J17])
        assert gt.shape == (17, 3)
        np.testing.assert_allclose(gt, want, atol=1e-6)
