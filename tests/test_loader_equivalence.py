"""Issue 25: the faster item path gives the items of the previous whole-frame path.

The reference is ``tests/_reference_loader.py`` (the loader before the change, verbatim). Frames of
1000 x 1000 and 2048 x 2048 (JPEG 90) with palette masks (as the parsing tool writes them) and
colour masks (as the original's Graphonomy), some masks missing, boxes crossing the frame edge
(``benchmarks/loader_fixtures.py``); SPIN augmentation draws with the rotation forced on for every
other item. Each item: image max |diff| <= 1e-5 (normalised units), every other field equal. The
new path's float scratch is filled with NaN before each use, so a warp reading a pixel outside the
box it converted would show. The default run checks 44 items; ``--runslow`` checks 256 more. Where
a libturbojpeg >= 3 is found (or named by DSR_TEST_TURBOJPEG) the new path decodes only the JPEG
region the crop reads, so these tests cover that route too.
"""
import os
import re
import struct
import sys
import zlib

import cv2
import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))

from _reference_loader import ReferenceDataset, reference_crop_cv2  # noqa: E402
from loader_fixtures import loader_cfg, make_loader_dataset  # noqa: E402

from dsr.constants import GRAPHONOMY_PALETTE  # noqa: E402
from dsr.data import BaseDataset  # noqa: E402
from dsr.data.frame_io import FrameReadError, read_mask  # noqa: E402
from dsr.data.image_utils import ScratchBuffer, crop_region_cv2, sample_augmentation  # noqa: E402

# name -> (size (H, W), mask format, frames, missing_every)
SETS = {
    "p1000": ((1000, 1000), "palette", 4, 4),
    "c1000": ((1000, 1000), "colour", 3, 3),
    "p2048": ((2048, 2048), "palette", 3, 3),
    "c2048": ((2048, 2048), "colour", 2, 2),
}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("loader_eq")
    out = {}
    for k, (name, (size, fmt, n, miss)) in enumerate(SETS.items()):
        root = str(base / name)
        data = make_loader_dataset(root, os.path.join(root, "train.npz"), size, n, fmt, seed=10 + k,
                                   outside=0.5, missing_every=miss)
        out[name] = (root, data)
    return out


def _cfg(root, loss="DistM", nearest=False, swap=False):
    cfg = loader_cfg(root, loss, nearest, swap)
    cfg.DATASET.MAX_MISSING_MASK_FRACTION = 0.5
    # the JPEG region decode where a libturbojpeg >= 3 is found or named (tests/test_jpeg_region.py)
    cfg.DATASET.JPEG_REGION_DECODE = os.environ.get("DSR_TEST_TURBOJPEG", "auto")
    return cfg


def _compare(a: dict, b: dict, where: str) -> float:
    assert a.keys() == b.keys(), where
    diff = 0.0
    for key in a:
        x, y = a[key], b[key]
        if key == "img":
            assert x.shape == y.shape and x.dtype == y.dtype == torch.float32, where
            assert torch.isfinite(x).all(), f"{where}: NaN/inf in the image (a read outside the converted box)"
            diff = float((x - y).abs().max())
            assert diff <= 1e-5, f"{where}: image max |diff| {diff}"
        elif isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), f"{where}: {key} differs"
        else:
            assert type(x) is type(y) and x == y, f"{where}: {key} {x!r} != {y!r}"
    return diff


@pytest.fixture
def poisoned(monkeypatch):
    """The process's crop scratch NaN-filled before each warp (outside what each warp was given)."""
    from dsr.data import base_dataset

    monkeypatch.setattr(base_dataset._SCRATCH, "poison", True)


def _run(sets, name, n_items, seed, **cfg_kw):
    root, data = sets[name]
    cfg = _cfg(root, **cfg_kw)
    new, ref = BaseDataset(cfg, "h36m"), ReferenceDataset(cfg, "h36m")
    assert new._scratch.poison  # the tests calling this take the `poisoned` fixture
    rng = np.random.default_rng(seed)
    seen = {"flip": 0, "rot": 0, "missing": 0, "outside": 0}
    h, w = SETS[name][0]
    for k in range(n_items):
        flip, pn, rot, sc = sample_augmentation(rng, 0.4, 30.0, 0.25)
        if k % 2:
            rot = float(rng.uniform(-60.0, 60.0))
        params = (flip, pn, rot, sc)
        new.augm_params = ref.augm_params = (lambda p=params: p)
        i = k % len(new)
        _compare(new[i], ref[i], f"{name} item {k} (frame {i}, flip {flip}, rot {rot:.1f}, sc {sc:.3f})")
        half = 100.0 * sc * data["scale"][i] * (1.0 + 0.42 * (rot != 0))
        cx, cy = data["center"][i]
        seen["flip"] += flip
        seen["rot"] += rot != 0
        seen["missing"] += not os.path.isfile(os.path.join(root, "grph_sequences", "images", f"f{i:04d}.png"))
        seen["outside"] += cx - half < 0 or cy - half < 0 or cx + half > w or cy + half > h
    # the items covered what the test claims
    assert seen["flip"] and seen["rot"] and seen["missing"] and seen["outside"], seen
    assert seen["flip"] < n_items and seen["rot"] < n_items and seen["missing"] < n_items


FAST = [("p1000", 16, {}), ("c1000", 8, {}), ("p2048", 8, {}), ("c2048", 4, {}),
        ("p1000", 8, {"loss": "nIOU", "nearest": True, "swap": True})]
SLOW = [("p1000", 80, {}), ("c1000", 48, {}), ("p2048", 48, {}), ("c2048", 32, {}),
        ("p1000", 24, {"loss": "nIOU"}), ("c1000", 24, {"nearest": True, "swap": True})]


@pytest.mark.parametrize("name,n,kw", FAST)
def test_items_identical_to_the_whole_frame_path(sets, poisoned, name, n, kw):
    _run(sets, name, n, seed=zlib.crc32(f"{name}-{n}".encode()) % 1000, **kw)  # not hash(): salted per process


@pytest.mark.slow
@pytest.mark.parametrize("name,n,kw", SLOW)
def test_items_identical_to_the_whole_frame_path_256(sets, poisoned, name, n, kw):
    _run(sets, name, n, seed=n + 7, **kw)


def test_slow_set_has_at_least_200_items():
    assert sum(n for _, n, _ in SLOW) >= 200 and sum(n for _, n, _ in FAST) >= 40


# ----------------------------------------------------------------------------- crop_region_cv2
def _frame_fill_buffer(rng, h, w):
    """A random (h, w, 3) uint8 frame, the ``fill`` callback crop_region_cv2 reads it through,
    and a NaN-poisoned scratch buffer."""
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = ScratchBuffer()
    buf.poison = True

    def fill(dst, x0, y0, x1, y1):
        dst[...] = img[y0:y1, x0:x1]

    return img, fill, buf


@pytest.mark.parametrize("nearest", [False, True])
def test_crop_region_equals_whole_frame_crop(nearest):
    rng = np.random.default_rng(3)
    img, fill, buf = _frame_fill_buffer(rng, 300, 420)
    for _ in range(60):
        center = rng.uniform(-150, 570, 2)  # some crops wholly outside the frame
        scale, rot = rng.uniform(0.2, 2.5), rng.uniform(-90, 90) * (rng.uniform() < 0.7)
        want = reference_crop_cv2(img.astype(np.float32), center, scale, 224, rot=rot, nearest=nearest)
        got = crop_region_cv2(img.shape, fill, center, scale, 224, rot=rot, nearest=nearest, buf=buf)
        assert np.array_equal(got, want)


def test_poison_detects_a_box_one_pixel_too_small(monkeypatch):
    """The NaN fill is a real check: with the box shrunk by 1 pixel past the interpolation support
    (margin -1), some crops read NaN."""
    from dsr.data import image_utils as IU

    orig = IU.warp_source_box
    monkeypatch.setattr(IU, "warp_source_box", lambda *a, **k: orig(*a, **{**k, "margin": -1}))
    rng = np.random.default_rng(4)
    img, fill, buf = _frame_fill_buffer(rng, 300, 300)
    bad = sum(not np.isfinite(IU.crop_region_cv2(img.shape, fill, (150, 150), rng.uniform(0.5, 1.2), 224,
                                                 rot=rng.uniform(-40, 40), buf=buf)).all() for _ in range(10))
    assert bad > 0


# ----------------------------------------------------------------------------- read_mask
def _png(path, w, h, colour_type, rows: bytes, plte: bytes = b"", extra=(), crc_ok=True):
    """Write a PNG by hand: IHDR, [PLTE], extra chunks, one IDAT of ``rows`` (filter bytes included)."""
    def chunk(typ, body, good=True):
        crc = zlib.crc32(typ + body) ^ (0 if good else 1)
        return struct.pack(">I", len(body)) + typ + body + struct.pack(">I", crc)

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
    if plte:
        data += chunk(b"PLTE", plte)
    for typ, body in extra:
        data += chunk(typ, body)
    data += chunk(b"IDAT", zlib.compress(rows), crc_ok) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def _labels(h=40, w=50, n=20, seed=0):
    lab = np.zeros((h, w), np.uint8)
    lab[5:30, 10:40] = np.random.default_rng(seed).integers(0, n, (25, 30))
    return lab


def _full(m):
    return m.to_bgr()


def test_read_mask_palette_written_by_the_parsing_tool(tmp_path):
    from dsr.parsing.masks import write_mask_png

    lab = _labels()
    p = str(tmp_path / "m.png")
    write_mask_png(p, lab)
    m = read_mask(p)
    assert m.idat is not None  # the raw route
    assert np.array_equal(_full(m), cv2.imread(p, cv2.IMREAD_COLOR))
    assert m.idat is not None and m.index is None and m.bgr is None  # ... and no fallback on the way
    assert np.array_equal(_full(m), GRAPHONOMY_PALETTE[lab][:, :, ::-1])


@pytest.mark.parametrize("inflate", ["zlib-ng", "zlib"])
def test_read_mask_palette_with_either_inflater(tmp_path, monkeypatch, inflate):
    """zlib-ng (the default) and the standard library's zlib (the fallback where zlib-ng is not
    installed) give the same rows, all of them and a box's."""
    from dsr.data import frame_io
    from dsr.parsing.masks import write_mask_png

    if inflate == "zlib":
        monkeypatch.setattr(frame_io, "_inflate_lib", zlib)
    else:
        assert frame_io._inflate_lib.__name__.startswith("zlib_ng")  # installed by requirements.txt
    lab = _labels(300, 260, seed=4)
    p = str(tmp_path / "m.png")
    write_mask_png(p, lab)
    want = GRAPHONOMY_PALETTE[lab][:, :, ::-1]
    assert np.array_equal(_full(read_mask(p)), want)
    dst = np.zeros((40, 30, 3), np.float32)
    read_mask(p).fill(dst, 100, 200, 130, 240)
    assert np.array_equal(dst, want[200:240, 100:130])


@pytest.mark.parametrize("case", ["filtered", "index_out_of_palette", "transparency", "bad_crc", "rgb", "grey"])
def test_read_mask_other_pngs_as_opencv(tmp_path, case):
    lab = _labels()
    h, w = lab.shape
    plte = GRAPHONOMY_PALETTE.astype(np.uint8).tobytes()
    p = str(tmp_path / f"{case}.png")
    rows = b"".join(b"\x00" + r.tobytes() for r in lab)
    if case == "filtered":  # filter type 2 (Up) on every row but the first
        up = [b"\x00" + lab[0].tobytes()] + [b"\x02" + ((lab[i].astype(int) - lab[i - 1]) % 256).astype(np.uint8)
                                            .tobytes() for i in range(1, h)]
        _png(p, w, h, 3, b"".join(up), plte)
    elif case == "index_out_of_palette":
        lab2 = lab.copy()
        lab2[20, 20] = 25  # beyond the 20 colours
        _png(p, w, h, 3, b"".join(b"\x00" + r.tobytes() for r in lab2), plte)
    elif case == "transparency":
        _png(p, w, h, 3, rows, plte, extra=[(b"tRNS", bytes([0] + [255] * 19))])
    elif case == "bad_crc":
        _png(p, w, h, 3, rows, plte, crc_ok=False)
    elif case == "rgb":
        cv2.imwrite(p, GRAPHONOMY_PALETTE[lab].astype(np.uint8)[:, :, ::-1])
    else:
        cv2.imwrite(p, lab * 12)
    want = cv2.imread(p, cv2.IMREAD_COLOR)
    if want is None:
        with pytest.raises(FrameReadError):
            _full(read_mask(p))
    else:
        m = read_mask(p)
        assert m.shape == want.shape
        assert np.array_equal(_full(m), want)
        if case == "filtered":  # a box through the raw route's fallback
            dst = np.zeros((10, 12, 3), np.float32)
            read_mask(p).fill(dst, 5, 20, 17, 30)
            assert np.array_equal(dst, want[20:30, 5:17])


def test_read_mask_missing_and_junk(tmp_path):
    with pytest.raises(FrameReadError, match="missing"):
        read_mask(str(tmp_path / "none.png"))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(FrameReadError, match="cannot decode"):
        read_mask(str(junk))


def test_unreadable_palette_stream_named_by_the_dataset(sets, tmp_path):
    """A palette mask whose chunks check but whose zlib stream is not deflate data: OpenCV refuses
    it (the previous path raised), and so does the new one, when it inflates the rows, naming the file."""
    import shutil

    from dsr.data.base_dataset import DatasetError

    root = str(tmp_path / "bad")
    shutil.copytree(sets["p1000"][0], root)
    mpath = os.path.join(root, "grph_sequences", "images", "f0000.png")
    plte = GRAPHONOMY_PALETTE.astype(np.uint8).tobytes()
    _png(mpath, 1000, 1000, 3, b"", plte)  # then replace the IDAT body by junk with a good CRC
    data = open(mpath, "rb").read()
    i = data.index(b"IDAT")
    junk = b"\x78\x9c" + bytes(range(7, 107))
    body = struct.pack(">I", len(junk)) + b"IDAT" + junk + struct.pack(">I", zlib.crc32(b"IDAT" + junk))
    with open(mpath, "wb") as f:
        f.write(data[:i - 4] + body + data[data.index(b"IEND") - 4:])
    assert cv2.imread(mpath) is None
    assert read_mask(mpath).idat is not None  # chunks and CRCs fine: route 1, which inflates lazily
    ds = BaseDataset(_cfg(root), "h36m")
    ds.augm_params = lambda: (0, np.ones(3), 0.0, 1.0)
    with pytest.raises(DatasetError, match=f"cannot decode Graphonomy mask {re.escape(mpath)}"):
        ds[0]


@pytest.mark.parametrize("name", ["p1000", "c2048"])
def test_evaluation_items_identical(sets, poisoned, name):
    """Evaluation items (no augmentation, no DSR targets) through the same crop."""
    root, _ = sets[name]
    cfg = _cfg(root)
    cfg.PATHS.DATASET_FOLDERS["h36m-p1"] = root
    cfg.PATHS.TEST_FILES["h36m-p1"] = "train.npz"
    new, ref = BaseDataset(cfg, "h36m-p1", is_train=False), ReferenceDataset(cfg, "h36m-p1", is_train=False)
    assert new._scratch.poison
    assert not new.with_dsr_targets and len(new) == len(ref) > 0
    for i in range(len(new)):
        assert _compare(new[i], ref[i], f"{name} eval item {i}") == 0.0
