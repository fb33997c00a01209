"""dsr.data.preprocess.h36m on a fabricated Human3.6M download (CDF poses written with cdflib,
v7.3 box masks written with h5py in MATLAB's transposed layout, mp4 videos whose frames encode
their index): rows, boxes, joint order, subsampling, protocol-2 camera, the one-frame lag, resume,
errors, and the written protocol-2 file through the dataset and the evaluation protocol."""
from __future__ import annotations

import os
import shutil

import cv2
import h5py
import numpy as np
import pytest
import torch

from dsr.data.preprocess.__main__ import build_parser
from dsr.data.preprocess.common import PreprocessError
from video_fixtures import matlab_v73, write_frames

cdfwrite = pytest.importorskip("cdflib.cdfwrite")

SIZE = 64  # video frames are SIZE x SIZE
# GT-24 index -> Human3.6M 32-joint index, by joint name (pelvis = 11 as SPIN): R ankle = RFoot 3,
# R knee 2, R hip 1, L hip 6, L knee 7, L ankle 8, R wrist 27, R elbow 26, R shoulder 25,
# L shoulder 17, L elbow 18, L wrist 19, neck 24, pelvis 11, spine 12, jaw 14, head 15
GT_FROM_32 = {0: 3, 1: 2, 2: 1, 3: 6, 4: 7, 5: 8, 6: 27, 7: 26, 8: 25, 9: 17, 10: 18, 11: 19,
              12: 24, 14: 11, 16: 12, 17: 14, 18: 15}

# (subject, cdf stem, pose frames, video frames (None = undecodable file), video stem if different)
EVAL_SEQS = [
    (9, "Directions 1.54138969", 11, 12, None),
    (9, "Directions 1.60457274", 11, 11, None),
    (9, "Photo.60457274", 6, 7, "TakingPhoto.60457274"),  # video under the other spelling
    (11, "Directions.54138969", 8, None, None),  # the broken S11 video
    (11, "Directions.60457274", 8, 9, None),
]
TRAIN_SEQS = [
    (1, "TakingPhoto.54138969", 6, 6, None),
    (5, "Directions.55011271", 11, 11, None),
    (6, "Walking.58860488", 5, 5, None),
    (7, "Walking 1.60457274", 5, 5, None),
    (8, "Eating.54138969", 5, 5, None),
]
EMPTY_MASK = (11, "Directions.60457274", 5)  # (subject, stem, frame) with an empty mask


def code_frame(v: int) -> np.ndarray:
    """A frame whose 8 horizontal bands spell v in binary (band b white = bit b)."""
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    for b in range(8):
        if (v >> b) & 1:
            img[8 * b:8 * b + 8] = 255
    return img


def decode_frame(img: np.ndarray) -> int:
    g = img.mean(axis=2)
    return sum(1 << b for b in range(8) if g[8 * b + 2:8 * b + 6, 8:56].mean() > 127)


def write_video(path, n, fourcc="mp4v"):
    """n frames spelling 0..n-1 (None: 4000 random bytes, an undecodable file)."""
    if n is None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(np.random.default_rng(0).bytes(4000))
        return
    write_frames(path, (code_frame(k) for k in range(n)), (SIZE, SIZE), fourcc)


def write_cdf(path, pose):
    """pose (N, D) as one record of an (N, D) zVariable 'Pose' (the layout of the H36M files)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    c = cdfwrite.CDF(path)
    c.write_var({"Variable": "Pose", "Data_Type": cdfwrite.CDF.CDF_DOUBLE, "Num_Elements": 1,
                 "Rec_Vary": True, "Dim_Sizes": list(pose.shape)}, var_data=pose[None])
    c.close()


def mask_rect(k: int, i: int) -> tuple[int, int, int, int]:
    """Rows r0..r1, cols c0..c1 (inclusive) of the box mask of sequence k, frame i."""
    return 3 + i, 40 + i, 5 + 2 * i + k, 20 + 3 * i + k


def write_masks(path, n, k, empty=()):
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def build(f):
        refs = f.create_group("#refs#")
        r = np.empty((n, 1), dtype=h5py.ref_dtype)
        for i in range(n):
            m = np.zeros((SIZE, SIZE + 6), np.uint8)  # H x W (non-square: catches a missing .T)
            if i not in empty:
                r0, r1, c0, c1 = mask_rect(k, i)
                m[r0:r1 + 1, c0:c1 + 1] = 1
            ds = refs.create_dataset(f"m{i}", data=m.T)  # MATLAB stores column-major: (W, H)
            r[i, 0] = ds.ref
        f.create_dataset("Masks", data=r)
    matlab_v73(path, build)


def pose3d(k, n):
    return np.random.default_rng(100 + k).uniform(-900, 900, size=(n, 96)) + 4000


def pose2d(k, n):
    return np.random.default_rng(200 + k).uniform(0, SIZE, size=(n, 64))


def make_tree(root, seqs=EVAL_SEQS + TRAIN_SEQS):
    for k, (subj, stem, n, nv, vstem) in enumerate(seqs):
        s = os.path.join(root, f"S{subj}")
        write_cdf(os.path.join(s, "MyPoseFeatures", "D3_Positions_mono", stem + ".cdf"), pose3d(k, n))
        write_cdf(os.path.join(s, "MyPoseFeatures", "D2_Positions", stem + ".cdf"), pose2d(k, n))
        empty = [EMPTY_MASK[2]] if (subj, stem) == EMPTY_MASK[:2] else []
        write_masks(os.path.join(s, "MySegmentsMat", "ground_truth_bb", stem + ".mat"), n, k, empty)
        write_video(os.path.join(s, "Videos", (vstem or stem) + ".mp4"), nv)
    # an _ALL file (skipped, as SPIN) in S9
    write_cdf(os.path.join(root, "S9", "MyPoseFeatures", "D3_Positions_mono", "_ALL.54138969.cdf"), pose3d(99, 3))


def run_cli(*argv):
    args = build_parser("h36m").parse_args(list(argv))
    return {s.name: s for s in args._module.run(args)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m_raw")
    make_tree(str(root))
    return str(root)


def expected_rows(seqs, lag, protocol=1, offset=0):
    """By hand: every 5th pose frame i with a non-empty mask whose video has frame i + lag
    (protocol 2: camera 60457274 only, video not looked at). Returns [(k, subj, stem, i)] in
    SPIN's order (subjects, sorted names)."""
    rows = []
    order = sorted(range(len(seqs)), key=lambda k: (seqs[k][0], seqs[k][1] + ".cdf"))
    subj_order = {s: j for j, s in enumerate(dict.fromkeys(s[0] for s in seqs))}
    order = sorted(order, key=lambda k: subj_order[seqs[k][0]])
    for k in order:
        subj, stem, n, nv, _ = seqs[k]
        if protocol == 2 and not stem.endswith(".60457274"):
            continue
        for i in range(0, n, 5):
            if protocol == 1 and (nv is None or i + lag >= nv):
                continue
            if (subj, stem, i) == EMPTY_MASK:
                continue
            rows.append((k + offset, subj, stem, i))
    return rows


def check_rows(d, rows, seqs_all, with_part=False):
    names = [f"images/S{subj}_{stem.split('.')[0].replace(' ', '_')}.{stem.split('.')[1]}_{i + 1:06d}.jpg"
             for _, subj, stem, i in rows]
    assert list(d["imgname"]) == names
    for j, (k, subj, stem, i) in enumerate(rows):
        r0, r1, c0, c1 = mask_rect(k, i)
        # box [c0, c1 + 1) x [r0, r1 + 1): centre, 0.9 x longer side / 200
        np.testing.assert_allclose(d["center"][j], [(c0 + c1 + 1) / 2, (r0 + r1 + 1) / 2])
        assert d["scale"][j] == pytest.approx(0.9 * max(c1 + 1 - c0, r1 + 1 - r0) / 200)
        p = pose3d(k, seqs_all[k][2])[i].reshape(32, 3) / 1000
        for gt, h in GT_FROM_32.items():
            np.testing.assert_allclose(d["S"][j, gt, :3], p[h] - p[11], atol=1e-12)
            assert d["S"][j, gt, 3] == 1
        others = [g for g in range(24) if g not in GT_FROM_32]
        assert np.all(d["S"][j, others] == 0)
        if with_part:
            q = pose2d(k, seqs_all[k][2])[i].reshape(32, 2)
            for gt, h in GT_FROM_32.items():
                np.testing.assert_allclose(d["part"][j, gt], [*q[h], 1.0])
            assert np.all(d["part"][j, others] == 0)


def test_valid_protocols_rows_boxes_joints_and_lagged_frames(tree, tmp_path):
    out = tmp_path / "out"
    images = tmp_path / "img"
    sums = run_cli("--root", tree, "--out", str(out), "--split", "valid", "--extract-frames",
                   "--images", str(images))
    p1 = np.load(out / "dataset_extras" / "h36m_valid_protocol1.npz")
    p2 = np.load(out / "dataset_extras" / "h36m_valid_protocol2.npz")
    rows1 = expected_rows(EVAL_SEQS, lag=1)
    rows2 = expected_rows(EVAL_SEQS, lag=1, protocol=2)
    # 5 sequences: S9 Dir1.5413 (0, 5, 10), Dir1.6045 (0, 5: frame 10 needs video frame 11; in
    # protocol 2 also 10), Photo.6045 (0, 5), S11 Dir.5413 (broken video: none), Dir.6045 (0;
    # 5 has an empty mask)
    assert len(rows1) == 8 and len(rows2) == 6
    check_rows(p1, rows1, EVAL_SEQS)
    check_rows(p2, rows2, EVAL_SEQS)
    assert set(p1.files) == {"imgname", "center", "scale", "S"}
    # SPIN's lag: the image named frame k (1-based) holds video frame k (0-based), i.e. pose frame k
    for name in p1["imgname"]:
        k = int(name[-10:-4])
        assert decode_frame(cv2.imread(str(images / name))) == k
    s1 = sums["h36m-p1"]
    assert s1.written == 8
    assert s1.skipped["no video frame (the video ends before it)"] == 1 + 2
    assert s1.skipped["empty box mask"] == 1
    assert s1.skipped["sequence _ALL (all actions, not a sequence)"] == 1
    assert s1.skipped["not every 5th frame"] == sum(n - len(range(0, n, 5)) for _, _, n, _, _ in EVAL_SEQS)
    s2 = sums["h36m-p2"]
    assert s2.written == 6
    assert s2.skipped["camera other than 60457274 (protocol 2)"] == 11 + 8
    assert s2.skipped["no video frame (the video ends before it)"] == 0
    # every 5th frame's next video frame where the video has it: 3 + 2 + 2 + 0 + 2 (the image of
    # the empty-mask frame is written; its row is not)
    assert sums["h36m valid frames"].written == 9


def test_fix_frame_offset(tree, tmp_path):
    out, images = tmp_path / "out", tmp_path / "img"
    run_cli("--root", tree, "--out", str(out), "--split", "valid", "--extract-frames", "--images",
            str(images), "--fix-frame-offset")
    p1 = np.load(out / "dataset_extras" / "h36m_valid_protocol1.npz")
    rows = expected_rows(EVAL_SEQS, lag=0)
    assert len(rows) == 9  # Dir1.6045 frame 10 is back
    check_rows(p1, rows, EVAL_SEQS)
    for name in p1["imgname"]:
        assert decode_frame(cv2.imread(str(images / name))) == int(name[-10:-4]) - 1


def test_train_all_cameras_2d_and_fits(tree, tmp_path):
    out, images = tmp_path / "out", tmp_path / "img"
    sums = run_cli("--root", tree, "--out", str(out), "--split", "train", "--extract-frames", "--images", str(images))
    d = np.load(out / "dataset_extras" / "h36m_train.npz")
    rows = expected_rows(TRAIN_SEQS, lag=0, offset=len(EVAL_SEQS))
    assert len(rows) == 2 + 3 + 1 + 1 + 1
    check_rows(d, rows, EVAL_SEQS + TRAIN_SEQS, with_part=True)
    assert "pose" not in d.files
    for name in d["imgname"]:  # no lag in the training script
        assert decode_frame(cv2.imread(str(images / name))) == int(name[-10:-4]) - 1
    assert sums["h36m train"].written == len(rows)
    # fits matched by name (given in reverse order), then by row
    n = len(rows)
    pose = np.arange(n * 72, dtype=float).reshape(n, 72)
    np.savez(tmp_path / "fits.npz", imgname=d["imgname"][::-1], pose=pose[::-1], shape=np.ones((n, 10)),
             has_smpl=np.arange(n)[::-1] % 2)
    run_cli("--root", tree, "--out", str(out), "--split", "train", "--images", str(images),
            "--fits", str(tmp_path / "fits.npz"))
    d = np.load(out / "dataset_extras" / "h36m_train.npz")
    np.testing.assert_array_equal(d["pose"], pose)
    np.testing.assert_array_equal(d["has_smpl"], np.arange(n) % 2)
    np.savez(tmp_path / "short.npz", pose=pose[:-1], shape=np.ones((n - 1, 10)))
    with pytest.raises(PreprocessError, match="fits for"):
        run_cli("--root", tree, "--out", str(out), "--split", "train", "--images", str(images),
                "--fits", str(tmp_path / "short.npz"))


def test_resume_after_a_killed_extraction(tree, tmp_path, monkeypatch):
    out, images = tmp_path / "out", tmp_path / "img"
    argv = ("--root", tree, "--out", str(out), "--split", "valid", "--extract-frames", "--images", str(images))
    real = cv2.imencode
    calls = {"n": 0}

    def dying(ext, img, *a):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt  # killed during the 5th image
        return real(ext, img, *a)

    monkeypatch.setattr(cv2, "imencode", dying)
    with pytest.raises(KeyboardInterrupt):
        run_cli(*argv)
    monkeypatch.setattr(cv2, "imencode", real)
    assert not (out / "dataset_extras" / "h36m_valid_protocol1.npz").exists()
    done = sorted(os.listdir(images / "images"))
    assert len([f for f in done if f.endswith(".jpg")]) == 4 and not [f for f in done if f.startswith(".tmp")]
    # an image already on disk is kept as it is (not rewritten)
    first = images / "images" / "S9_Directions_1.54138969_000001.jpg"
    first.write_bytes(first.read_bytes() + b"\0")
    stamp = first.read_bytes()
    sums = run_cli(*argv)
    assert first.read_bytes() == stamp
    assert sums["h36m valid frames"].written == 9 - 4
    assert sums["h36m valid frames"].skipped["already on disk (resume)"] == 4
    p1 = np.load(out / "dataset_extras" / "h36m_valid_protocol1.npz")
    check_rows(p1, expected_rows(EVAL_SEQS, lag=1), EVAL_SEQS)
    for name in p1["imgname"]:
        assert decode_frame(cv2.imread(str(images / name))) == int(name[-10:-4])
    # a third run decodes nothing: every video's record and every image are there
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: pytest.fail("a video was opened"))
    assert run_cli(*argv)["h36m valid frames"].written == 0


def test_without_extraction_records_then_images_on_disk(tree, tmp_path):
    out, images = tmp_path / "out", tmp_path / "img"
    base = ("--root", tree, "--out", str(out), "--split", "valid", "--images", str(images))
    with pytest.raises(PreprocessError, match="run with --extract-frames"):
        run_cli(*base)
    run_cli(*base, "--extract-frames")
    ref = dict(np.load(out / "dataset_extras" / "h36m_valid_protocol1.npz"))
    run_cli(*base)  # frame counts from the records
    d = np.load(out / "dataset_extras" / "h36m_valid_protocol1.npz")
    assert list(d["imgname"]) == list(ref["imgname"])
    shutil.rmtree(images / "images" / ".frames")  # frames extracted elsewhere: rows = images present
    run_cli(*base)
    d = np.load(out / "dataset_extras" / "h36m_valid_protocol1.npz")
    for k in ref:
        np.testing.assert_array_equal(d[k], ref[k])


def test_input_errors_name_the_file(tmp_path):
    root = tmp_path / "raw"
    with pytest.raises(PreprocessError, match=r"S9.*is not a folder"):
        run_cli("--root", str(tmp_path), "--out", str(tmp_path / "o"), "--split", "valid")
    seqs = [(9, "Walking.60457274", 5, 5, None), (11, "Walking.60457274", 5, 5, None)]
    make_tree(str(root), seqs)
    bad = root / "S11" / "MyPoseFeatures" / "D3_Positions_mono" / "Walking.60457274.cdf"
    os.remove(bad)
    c = cdfwrite.CDF(str(bad))
    c.write_var({"Variable": "Positions", "Data_Type": cdfwrite.CDF.CDF_DOUBLE, "Num_Elements": 1,
                 "Rec_Vary": True, "Dim_Sizes": [5, 96]}, var_data=np.zeros((1, 5, 96)))
    c.close()
    with pytest.raises(PreprocessError, match=r"Walking.60457274.cdf: no 'Pose' variable"):
        run_cli("--root", str(root), "--out", str(tmp_path / "o"), "--split", "valid", "--extract-frames")
    write_cdf(str(bad), pose3d(0, 5))
    m = root / "S9" / "MySegmentsMat" / "ground_truth_bb" / "Walking.60457274.mat"
    matlab_v73(str(m), lambda f: f.create_dataset("Boxes", data=np.zeros((5, 4))))
    with pytest.raises(PreprocessError, match=r"Walking.60457274.mat: no 'Masks'"):
        run_cli("--root", str(root), "--out", str(tmp_path / "o"), "--split", "valid", "--extract-frames")
    os.remove(m)
    with pytest.raises(PreprocessError, match=r"missing ground-truth box mask: .*S9.*Walking.60457274.mat"):
        run_cli("--root", str(root), "--out", str(tmp_path / "o"), "--split", "valid", "--extract-frames")


def test_protocol2_file_through_dataset_and_evaluation(tree, tmp_path):
    """The written h36m-p2 file read by BaseDataset (images from the extraction) and scored by
    the evaluation protocol: GT joints = the 14 joints of the CDF, pelvis-centred; the whole
    evaluation loop runs on it."""
    from tests.test_training import copy_free_body, make_cfg

    from dsr.constants import J24_TO_J14
    from dsr.data import BaseDataset
    from dsr.evaluation.protocols import gt_from_s
    from dsr.lightning_module import DSRModule
    from dsr.runner import build_trainer

    root = tmp_path / "dsr_data"
    copy_free_body(root)
    h36m_dir = root / "dataset_folders" / "h36m"
    # (without the lag every protocol-2 row has its image in these videos)
    run_cli("--root", tree, "--out", str(root), "--split", "valid", "--extract-frames", "--images", str(h36m_dir),
            "--fix-frame-offset")
    cfg = make_cfg(root, tmp_path, **{"DATASET.VAL_DS": "h36m-p2", "RUN_TEST": True,
                                      "TRAINING.LIMIT_VAL_BATCHES": 1.0})
    ds = BaseDataset(cfg, "h36m-p2", is_train=False)
    rows = expected_rows(EVAL_SEQS, lag=1, protocol=2)
    assert len(ds) == len(rows)
    for j, (k, subj, stem, i) in enumerate(rows):
        item = ds[j]
        assert tuple(item["orig_shape"]) == (SIZE, SIZE) and item["img"].shape == (3, 224, 224)
        gt = gt_from_s(torch.as_tensor(item["pose_3d"])[None], "h36m-p2")[0].numpy()
        p = pose3d(k, EVAL_SEQS[k][2])[i].reshape(32, 3) / 1000
        # the 14 protocol joints: GT 0..11 (limbs), 12 neck (H36M 24), 13 head (H36M 15)
        want = np.stack([p[GT_FROM_32[g]] - p[11] for g in J24_TO_J14[:12]] + [p[24] - p[11], p[15] - p[11]])
        np.testing.assert_allclose(gt, want, atol=1e-6)
    module = DSRModule(cfg)
    build_trainer(cfg).test(module)
    res = module.last_eval
    assert res["num_samples"] == len(rows)
    assert np.isfinite(res["mpjpe"]) and np.isfinite(res["pa_mpjpe"])


def test_workers_give_the_same_files(tree, tmp_path):
    outs = []
    for w in ("1", "2"):
        out, images = tmp_path / f"out{w}", tmp_path / f"img{w}"
        run_cli("--root", tree, "--out", str(out), "--split", "all", "--extract-frames", "--images", str(images),
                "--workers", w)
        outs.append((out, images))
    for name in ("h36m_valid_protocol1.npz", "h36m_valid_protocol2.npz", "h36m_train.npz"):
        a, b = (np.load(o / "dataset_extras" / name) for o, _ in outs)
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    (o1, i1), (o2, i2) = outs
    names = sorted(os.listdir(i1 / "images"))
    assert names == sorted(os.listdir(i2 / "images"))
    for n in names:
        if n.endswith(".jpg"):
            assert (i1 / "images" / n).read_bytes() == (i2 / "images" / n).read_bytes()
