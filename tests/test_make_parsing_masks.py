"""tools/make_parsing_masks.py and dsr.parsing.masks: palette PNGs, crop / paste-back geometry,
end to end with the real SCHP network (random weights) on synthetic training images, resume after
a kill, failures.csv, foreign weights, DDP on two CPU processes, and a short DSR training run that
reads the masks."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dsr.constants import GRAPHONOMY_PALETTE
from dsr.data.graphonomy import decode_colour_mask, mask_path
from dsr.parsing.masks import mask_file, paste_crops, person_box, read_image_rgb, write_mask_png, ImageReadError
from conftest import load_script  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREE = os.path.join(REPO, "dsr", "assets", "free_body")
FAST = ["--parser", "schp-lip", "--random-weights", "--scales", "0.25", "--no-flip", "--num-workers", "0",
        "--accelerator", "cpu", "--batch-size", "2"]


def _script():
    mod = load_script("tools/make_parsing_masks.py")
    return mod


# ----------------------------------------------------------------------------- masks.py units
def test_palette_png_round_trip(tmp_path):
    labels = np.arange(20).repeat(3).reshape(6, 10) % 20
    path = str(tmp_path / "a" / "b.png")
    write_mask_png(path, labels)
    assert os.listdir(tmp_path / "a") == ["b.png"]  # no temporary file left
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)  # how the training loader reads it
    assert bgr.shape == (6, 10, 3)
    assert (decode_colour_mask(np.ascontiguousarray(bgr[:, :, ::-1])) == labels).all()
    with Image.open(path) as im:
        assert im.mode == "P" and (np.asarray(im) == labels).all()
        pal = np.asarray(im.getpalette()[:60]).reshape(20, 3)
    assert (pal == GRAPHONOMY_PALETTE).all()
    with pytest.raises(ValueError):
        write_mask_png(path, np.full((2, 2), 20))


def test_mask_file_is_where_the_loader_looks():
    root = "/data/h36m"
    for name in ("images/S1_Directions_1.54138969_000001.jpg", "grph/x.png", "a/b/c.jpeg"):
        assert mask_file(os.path.join(root, "grph_sequences"), name) == mask_path(root, name)


def test_person_box_by_hand():
    # side = 200 * 0.3 * 1.5 = 90: x 50 +- 45 -> [5, 95), y 40 +- 45 -> [-5, 85) clipped to [0, 85)
    assert person_box((50.0, 40.0), 0.3, 1.5, 100, 120) == (5, 0, 95, 85)
    # rounding: 10.3 +- 10 -> [0.3, 20.3) -> floor(x + 0.5) -> [0, 20)
    assert person_box((10.3, 10.7), 0.1, 1.0, 50, 50) == (0, 1, 20, 21)
    assert person_box((500.0, 40.0), 0.3, 1.0, 100, 120) is None  # entirely right of the image


def test_paste_crops_nearest_centre_by_hand():
    a = np.full((10, 12), 1)
    b = np.full((10, 12), 2)
    out = paste_crops(10, 25, [(0, 0, 12, 10), (8, 0, 20, 10)], [(4, 5), (15, 5)], [a, b])
    # overlap columns 8..11: |x - 4| < |x - 15| for x <= 9
    expected = np.zeros((10, 25), np.int64)
    expected[:, :10] = 1
    expected[:, 10:20] = 2
    assert (out == expected).all()
    with pytest.raises(ValueError):
        paste_crops(10, 25, [(0, 0, 12, 10)], [(4, 5)], [np.ones((3, 3))])


def test_read_image_reasons(tmp_path, synthetic_small):
    src = os.path.join(synthetic_small[0], "images", "train", "000000.jpg")
    data = open(src, "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert read_image_rgb(src).shape == cv2.imread(src).shape
    # channel order: a pixel written as BGR (10, 20, 200) reads back as RGB (200, 20, 10)
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[1, 2] = (10, 20, 200)
    cv2.imwrite(str(tmp_path / "colour.png"), bgr)
    assert read_image_rgb(str(tmp_path / "colour.png"))[1, 2].tolist() == [200, 20, 10]
    for name, reason in (("cut.jpg", "truncated JPEG"), ("junk.jpg", "cannot decode"), ("none.jpg", "missing")):
        with pytest.raises(ImageReadError, match=reason):
            read_image_rgb(str(tmp_path / name))


# ----------------------------------------------------------------------------- end to end
def _dataset(tmp_path, synth, n=4, duplicate=True):
    """n synthetic training images under <tmp>/root/images/train and an npz of their rows (+ a
    second row on the first image, as a second person)."""
    root = tmp_path / "root"
    os.makedirs(root / "images" / "train")
    synth_dir, synth_npz = synth
    d = dict(np.load(synth_npz))
    rows = {k: v[:n] for k, v in d.items()}
    for name in rows["imgname"]:
        shutil.copy(os.path.join(synth_dir, str(name)), root / str(name))
    if duplicate:
        extra = {k: v[:1].copy() for k, v in rows.items()}
        extra["center"] = extra["center"] + 20.0
        rows = {k: np.concatenate([rows[k], extra[k]]) for k in rows}
    os.makedirs(tmp_path / "extras", exist_ok=True)
    npz = tmp_path / "extras" / "synthetic_train.npz"
    np.savez(npz, **rows)
    return root, npz, rows


def _snapshot(folder):
    out = {}
    for dp, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dp, f)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


@pytest.fixture(scope="module")
def parsed(tmp_path_factory, synthetic_small):
    """One run of the script on 4 synthetic images (5 rows) with the default --out."""
    tmp = tmp_path_factory.mktemp("masks")
    root, npz, rows = _dataset(tmp, synthetic_small)
    mod = _script()
    summary = mod.run(mod.parse_args(FAST + ["--npz", str(npz), "--img-dir", str(root)]))
    return tmp, root, npz, rows, summary


def test_end_to_end_masks_where_the_loader_looks(parsed):
    tmp, root, npz, rows, summary = parsed
    names = sorted(set(map(str, rows["imgname"])))
    assert summary["written"] == 4 and summary["failures"] == [] and summary["skipped"] == 0
    for name in names:
        p = mask_path(str(root), name)
        assert os.path.isfile(p), p
        with Image.open(p) as im:
            assert im.mode == "P"
            assert im.size == Image.open(root / name).size
            assert int(np.asarray(im).max()) < 20
        bgr = cv2.imread(p, cv2.IMREAD_COLOR)
        _, known = decode_colour_mask(np.ascontiguousarray(bgr[:, :, ::-1]), return_known=True)
        assert known.all()  # palette colours only
    with open(root / "grph_sequences" / "failures.csv") as f:
        assert list(csv.reader(f)) == [["imgname", "path", "reason"]]


def test_resume_after_a_kill(parsed, tmp_path):
    _, root0, _, rows, _ = parsed
    root = tmp_path / "root"
    shutil.copytree(root0, root)
    npz = tmp_path / "t.npz"
    np.savez(npz, **rows)
    before = _snapshot(root / "grph_sequences")
    victim = mask_path(str(root), str(rows["imgname"][2]))
    os.remove(victim)  # killed before this mask was renamed into place ...
    with open(victim + ".part", "wb") as f:
        f.write(b"\x89PNG half written")  # ... with its temporary file half written
    mod = _script()
    s = mod.run(mod.parse_args(FAST + ["--npz", str(npz), "--img-dir", str(root)]))
    assert s["written"] == 1 and s["skipped"] == 3
    assert _snapshot(root / "grph_sequences") == before  # same files, same bytes, no temporary left


def test_failures_are_listed_and_the_run_goes_on(tmp_path, synthetic_small):
    root, _, rows = _dataset(tmp_path, synthetic_small, n=2, duplicate=False)
    src = os.path.join(synthetic_small[0], "images", "train", "000005.jpg")
    data = open(src, "rb").read()
    (root / "images" / "train" / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    (root / "images" / "train" / "junk.jpg").write_bytes(b"not an image")
    names = list(map(str, rows["imgname"])) + ["images/train/cut.jpg", "images/train/junk.jpg", "images/train/gone.jpg"]
    n = len(names)
    npz = tmp_path / "f.npz"
    np.savez(npz, imgname=np.array(names), center=np.full((n, 2), 150.0), scale=np.ones(n))
    out = tmp_path / "out"
    mod = _script()
    s = mod.run(mod.parse_args(FAST + ["--npz", str(npz), "--img-dir", str(root), "--out", str(out)]))
    assert s["written"] == 2
    with open(out / "failures.csv") as f:
        table = list(csv.DictReader(f))
    reasons = {r["imgname"]: r["reason"] for r in table}
    assert set(reasons) == {"images/train/cut.jpg", "images/train/junk.jpg", "images/train/gone.jpg"}
    assert reasons["images/train/cut.jpg"].startswith("truncated JPEG")
    assert reasons["images/train/junk.jpg"] == "cannot decode"
    assert reasons["images/train/gone.jpg"] == "missing"
    assert all(r["path"] == str(root / r["imgname"]) for r in table)
    assert sorted(os.listdir(out / "images" / "train")) == ["000000.png", "000001.png"]


def test_foreign_weights_stop_before_any_work(tmp_path, capsys, synthetic_small):
    root, npz, _ = _dataset(tmp_path, synthetic_small, n=1, duplicate=False)
    w = tmp_path / "w.pth"
    torch.save({"backbone.fc.weight": torch.zeros(2, 2)}, w)
    mod = _script()
    rc = mod.main(["--parser", "schp-lip", "--weights", str(w), "--npz", str(npz), "--img-dir", str(root)])
    assert rc == 2
    assert f"{w} is not a schp-lip checkpoint" in capsys.readouterr().err
    assert not os.path.exists(root / "grph_sequences")


def test_crop_mode_pastes_people_back_into_a_full_size_mask(tmp_path, synthetic_small, monkeypatch):
    root, npz, rows = _dataset(tmp_path, synthetic_small, n=2)  # image 0 has two people
    out = tmp_path / "out"
    mod = _script()
    crop_shapes = []

    def stub_parser(model, parser, images, scales=None, flip=True):  # every crop pixel is label 5
        crop_shapes.extend(img.shape[:2] for img in images)
        return [np.full(img.shape[:2], 5, np.int64) for img in images]

    monkeypatch.setattr(mod, "parse_images", stub_parser)
    s = mod.run(mod.parse_args(FAST + ["--npz", str(npz), "--img-dir", str(root), "--out", str(out),
                                       "--crop-margin", "0.6"]))
    assert s["written"] == 2
    for name in sorted(set(map(str, rows["imgname"]))):
        img = cv2.imread(str(root / name))
        h, w = img.shape[:2]
        lab = np.asarray(Image.open(mask_file(str(out), name)))
        assert lab.shape == (h, w)
        covered = np.zeros((h, w), bool)
        for c, sc, nm in zip(rows["center"], rows["scale"], rows["imgname"]):
            if str(nm) == name:  # the box by hand: side 200 * scale * 0.6, rounded, clipped
                half = 60.0 * sc
                x0, x1 = (int(np.clip(np.floor(c[0] + d + 0.5), 0, w)) for d in (-half, half))
                y0, y1 = (int(np.clip(np.floor(c[1] + d + 0.5), 0, h)) for d in (-half, half))
                covered[y0:y1, x0:x1] = True
        assert (~covered).any() and (lab[~covered] == 0).all()  # background outside every crop
        assert covered.any() and (lab[covered] == 5).all()  # the parsed crops are pasted back inside the boxes
    assert len(crop_shapes) == len(rows["imgname"])  # one parsed crop per person row


def test_usage_errors(tmp_path, capsys):
    mod = _script()
    with pytest.raises(SystemExit):
        mod.parse_args(["--parser", "schp-lip", "--random-weights", "--img-folder", str(tmp_path)])  # no --out
    with pytest.raises(SystemExit):
        mod.parse_args(["--parser", "schp-lip", "--random-weights", "--img-folder", str(tmp_path), "--out",
                        str(tmp_path), "--crop-margin", "1.5"])  # crops need the npz rows
    rc = mod.main(["--parser", "schp-lip", "--random-weights", "--npz", str(tmp_path / "no.npz"), "--img-dir",
                   str(tmp_path)])
    assert rc == 2 and "no.npz" in capsys.readouterr().err


def test_image_folder_mode(tmp_path, synthetic_small):
    src = tmp_path / "photos"
    os.makedirs(src / "sub")
    shutil.copy(os.path.join(synthetic_small[0], "images", "train", "000003.jpg"), src / "a.jpg")
    shutil.copy(os.path.join(synthetic_small[0], "images", "train", "000004.jpg"), src / "sub" / "b.JPG")
    (src / "notes.txt").write_text("skip me")
    mod = _script()
    s = mod.run(mod.parse_args(FAST + ["--img-folder", str(src), "--out", str(tmp_path / "o")]))
    assert s["written"] == 2
    assert os.path.isfile(tmp_path / "o" / "a.png") and os.path.isfile(tmp_path / "o" / "sub" / "b.png")


@pytest.mark.slow
def test_ddp_two_cpu_processes_write_each_share(tmp_path, synthetic_small):
    root, npz, rows = _dataset(tmp_path, synthetic_small, n=3)
    env = dict(os.environ, PL_DISABLE_FORK="1", PYTHONPATH=REPO)
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_parsing_masks.py"), *FAST,
                          "--devices", "2", "--npz", str(npz), "--img-dir", str(root)],
                         capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "done: 3 masks written, 0 skipped" in res.stdout
    for name in set(map(str, rows["imgname"])):
        assert os.path.isfile(mask_path(str(root), name))


def test_a_short_dsr_training_reads_the_masks(parsed, tmp_path):
    import pathlib

    from dsr.data.base_dataset import BaseDataset
    from dsr.lightning_module import DSRModule
    from dsr.runner import build_trainer
    from test_training import make_cfg

    tmp, root, npz, rows, _ = parsed
    cfg = make_cfg(pathlib.Path(FREE), tmp_path, **{  # the free body's files, the parsed tree's images
        "PATHS.DATASET_NPZ_PATH": str(os.path.dirname(npz)), "PATHS.DATASET_FOLDERS.synthetic": str(root),
        "PATHS.DATASET_FOLDERS.synthetic-test": str(root), "PATHS.TEST_FILES.synthetic-test": os.path.basename(npz),
        "METHOD": "dsr", "DATASET.MAX_MISSING_MASK_FRACTION": 0.0,  # a missing mask would be an error
        "TRAINING.CHECK_VAL_EVERY_N_EPOCH": 100, "DSR.START_DSR": -1})
    ds = BaseDataset(cfg, "synthetic", is_train=True, use_augmentation=False)
    assert ds.missing_masks == 0
    item = ds[0]
    assert item["grph_dsr_c_label"].shape == (224, 224) and item["grph_dsr_mc_label"].shape == (224, 224)
    trainer = build_trainer(cfg)
    trainer.fit(DSRModule(cfg))
    assert trainer.global_step == 2


def test_bench_parsing_reports_one_row_per_size(capsys):
    mod = load_script("benchmarks/bench_parsing.py")
    rows = mod.bench("schp-lip", [40, 64], [0.25], flip=False, batch_size=2, repeat=1, device="cpu")
    assert [r["size"] for r in rows] == [40, 64]
    for r in rows:
        assert r["s_per_image"] > 0 and r["cpu_s_per_image"] > 0 and r["peak_mib"] is None
        assert r["images_per_s"] == pytest.approx(1 / r["s_per_image"])
