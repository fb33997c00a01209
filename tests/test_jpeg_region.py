"""Issue 25: the optional region decode of JPEG frames (dsr/data/jpeg_region.py) gives OpenCV's pixels.

The tests marked ``needs_tj`` run where a libturbojpeg >= 3 is found (DATASET.JPEG_REGION_DECODE
'auto') or named by the environment variable DSR_TEST_TURBOJPEG; elsewhere they are skipped (the
loader then decodes with OpenCV, which the rest of the suite covers). Each compares against
``cv2.imdecode`` of the whole frame: hundreds of random regions (edges, single rows and columns,
odd frame sizes) for 4:2:0, 4:2:2 and 4:4:4 chroma subsampling and progressive files.
"""
import ctypes.util
import os
import struct

import cv2
import numpy as np
import pytest

from dsr.data import jpeg_region as JR

TJ_SETTING = os.environ.get("DSR_TEST_TURBOJPEG", "auto")
DEC = JR.get_region_decoder(TJ_SETTING)
needs_tj = pytest.mark.skipif(DEC is None, reason="no libturbojpeg >= 3 here (DSR_TEST_TURBOJPEG=<path> names one)")

SAMPLING = {"420": 0x221111, "422": 0x211111, "444": 0x111111}


def _frame(h, w, seed):
    """A photograph-like (h, w, 3) uint8 BGR frame: smooth colour fields + noise + sharp edges."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(30, 225, size=(max(2, h // 40), max(2, w // 40), 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 8, (h, w, 3))
    for _ in range(6):  # hard colour edges, where chroma upsampling matters most
        x0, y0 = int(rng.integers(0, w - 2)), int(rng.integers(0, h - 2))
        img[y0:y0 + int(rng.integers(1, h // 3)), x0:x0 + int(rng.integers(1, w // 3))] = rng.uniform(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(img, sampling="420", progressive=False, quality=90):
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, SAMPLING[sampling],
              cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    ok, enc = cv2.imencode(".jpg", img, params)
    assert ok
    return enc.tobytes()


def _with_app1(data: bytes, payload: bytes) -> bytes:
    """The JPEG with an APP1 segment holding ``payload`` right after its SOI marker."""
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


_EXIF = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + b"\x00\x00"  # a TIFF header with no entries


# ----------------------------------------------------------------------------- without the library
def test_exif_detection():
    plain = _jpeg(_frame(64, 80, 0))
    assert not JR.jpeg_has_exif(plain)
    assert JR.jpeg_has_exif(_with_app1(plain, _EXIF))
    assert not JR.jpeg_has_exif(_with_app1(plain, b"http://ns.adobe.com/xap/1.0/\x00<x/>"))  # XMP, not EXIF
    # an EXIF block behind another header segment and a fill byte is still found
    later = plain[:2] + b"\xff\xfe\x00\x05abc" + b"\xff" + _with_app1(b"\xff\xd8", _EXIF)[2:] + plain[2:]
    assert JR.jpeg_has_exif(later)
    # one after the start of the scan is not a header segment
    sos = plain.index(b"\xff\xda")
    assert not JR.jpeg_has_exif(plain[:sos] + plain[sos:sos + 2] + b"\x00\x02" + _with_app1(b"\xff\xd8", _EXIF)[2:])


def test_off_and_unusable_libraries(tmp_path):
    assert JR.get_region_decoder("off") is None
    missing = str(tmp_path / "libturbojpeg.so.0")
    with pytest.raises(JR.TurboJpegError, match="DATASET.JPEG_REGION_DECODE"):
        JR.get_region_decoder(missing)
    libz = ctypes.util.find_library("z")
    if libz:  # a real shared library without the TurboJPEG 3 calls
        with pytest.raises(JR.TurboJpegError, match="not libturbojpeg >= 3.0"):
            JR.RegionDecoder(libz)


def test_a_bad_library_path_fails_at_dataset_construction(tmp_path):
    from dsr.config import get_cfg_defaults
    from dsr.data import BaseDataset

    cfg = get_cfg_defaults()
    cfg.DATASET.JPEG_REGION_DECODE = str(tmp_path / "nope.so")
    with pytest.raises(JR.TurboJpegError, match="nope.so"):
        BaseDataset(cfg, "synthetic", is_train=True)


# ----------------------------------------------------------------------------- with the library
def _random_regions(rng, h, w, n):
    out = [(0, 0, w, h), (0, 0, 1, 1), (w - 1, h - 1, w, h), (0, h - 1, w, h), (w - 1, 0, w, h)]
    while len(out) < n:
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.2:  # a single row or column
            x1, y1 = (x0 + 1, int(rng.integers(y0 + 1, h + 1))) if rng.random() < 0.5 else \
                (int(rng.integers(x0 + 1, w + 1)), y0 + 1)
        else:
            x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
        out.append((x0, y0, x1, y1))
    return out


@needs_tj
@pytest.mark.parametrize("sampling,progressive", [("420", False), ("422", False), ("444", False), ("420", True)])
@pytest.mark.parametrize("size", [(1000, 1000), (997, 1003), (480, 640)])
def test_regions_equal_opencv_whole_frame(sampling, progressive, size):
    h, w = size
    data = _jpeg(_frame(h, w, seed=h + w), sampling, progressive)
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    header = DEC.header(data)
    assert header is not None and header[:2] == (h, w)
    rng = np.random.default_rng(h * 7 + w)
    for x0, y0, x1, y1 in _random_regions(rng, h, w, 60):
        got = DEC.decode(data, header, x0, y0, x1, y1)
        assert got is not None
        pixels, rx, ry = got
        assert rx <= x0 and ry <= y0 and rx + pixels.shape[1] >= x1 and ry + pixels.shape[0] >= y1
        assert np.array_equal(pixels[y0 - ry:y1 - ry, x0 - rx:x1 - rx], ref[y0:y1, x0:x1]), (x0, y0, x1, y1)


@needs_tj
def test_the_margin_is_needed():
    """Without the one-iMCU margin the region's edge columns differ from the whole-frame decode
    (so the test above would catch a margin dropped from decode())."""
    h, w = 480, 640
    data = _jpeg(_frame(h, w, 3), "420")
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    header = DEC.header(data)
    lib, hdl = DEC._lib, DEC._h()
    buf = np.frombuffer(data, np.uint8)
    diffs = 0
    for x0, y0 in [(64, 48), (160, 100), (320, 200)]:
        x1, y1 = x0 + 96, y0 + 80
        assert lib.tj3DecompressHeader(hdl, buf.ctypes.data, buf.size) == 0
        assert lib.tj3SetCroppingRegion(hdl, JR._Region(x0, y0, x1 - x0, y1 - y0)) == 0
        out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        assert lib.tj3Decompress8(hdl, buf.ctypes.data, buf.size, out.ctypes.data, 0, JR._TJPF_BGR) == 0
        diffs += int((out != ref[y0:y1, x0:x1]).any())
    assert diffs > 0
    assert DEC.header(data) == header


@needs_tj
def test_refused_frames_fall_back():
    img = _frame(96, 128, 5)
    assert DEC.header(_with_app1(_jpeg(img), _EXIF)) is None  # OpenCV applies the EXIF orientation
    ok, grey = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    assert DEC.header(grey.tobytes()) is None
    ok, png = cv2.imencode(".png", img)
    assert DEC.header(png.tobytes()) is None
    assert DEC.header(b"\xff\xd8 not a jpeg") is None


@needs_tj
def test_corrupt_data_is_refused_or_identical():
    data = bytearray(_jpeg(_frame(480, 640, 9)))
    sos = data.index(b"\xff\xda")
    rng = np.random.default_rng(0)
    for k in range(20):
        bad = bytearray(data)
        for pos in rng.integers(sos + 20, len(bad) - 4, size=3):
            bad[pos] = (bad[pos] + 1 + k) % 255  # never creates an 0xFF marker byte
        bad = bytes(bad)
        header = DEC.header(bad)
        ref = cv2.imdecode(np.frombuffer(bad, np.uint8), cv2.IMREAD_COLOR)
        if header is None or ref is None:
            continue
        got = DEC.decode(bad, header, 100, 50, 400, 300)
        if got is not None:  # no warning from libjpeg: the same decoder, the same pixels
            pixels, rx, ry = got
            assert np.array_equal(pixels[50 - ry:300 - ry, 100 - rx:400 - rx], ref[50:300, 100:400])


@needs_tj
def test_a_library_that_disagrees_is_dropped(monkeypatch):
    dec = JR.RegionDecoder(DEC.path)
    data = _jpeg(_frame(200, 240, 11))
    header = dec.header(data)
    real = cv2.imdecode

    def shifted(buf, flags):
        return real(buf, flags) ^ np.uint8(1)  # a "different decoder"

    monkeypatch.setattr(JR.cv2, "imdecode", shifted)
    assert dec.decode(data, header, 10, 10, 100, 100) is None
    assert dec.disabled and dec.header(data) is None
    monkeypatch.setattr(JR.cv2, "imdecode", real)
    fresh = JR.RegionDecoder(DEC.path)
    assert fresh.decode(data, fresh.header(data), 10, 10, 100, 100) is not None and 2 in fresh.checked


@needs_tj
def test_the_loader_decodes_regions(tmp_path, monkeypatch):
    """With the library the training item decodes a region, never the whole frame with OpenCV."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from loader_fixtures import loader_cfg, make_loader_dataset

    from dsr.data import BaseDataset
    from dsr.data import base_dataset as B

    root = str(tmp_path / "d")
    make_loader_dataset(root, os.path.join(root, "train.npz"), (600, 800), 3, "palette", seed=1)
    cfg = loader_cfg(root, "nIOU")
    cfg.DATASET.JPEG_REGION_DECODE = TJ_SETTING
    ds = BaseDataset(cfg, "h36m")
    calls = {"region": 0, "whole": 0}
    real_decode, real_whole = JR.RegionDecoder.decode, B.BaseDataset._decode_bgr

    def count_region(self, *a):
        calls["region"] += 1
        return real_decode(self, *a)

    def count_whole(self, *a):
        calls["whole"] += 1
        return real_whole(self, *a)

    monkeypatch.setattr(JR.RegionDecoder, "decode", count_region)
    monkeypatch.setattr(B.BaseDataset, "_decode_bgr", count_whole)
    ds.augm_params = lambda: (0, np.ones(3), 0.0, 1.0)
    for i in range(len(ds)):
        ds[i]
    assert calls == {"region": len(ds), "whole": 0}
