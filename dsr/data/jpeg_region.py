"""Decoding only the part of a JPEG frame that a training crop reads (issue 25), optional.

The JPEG decode is the largest cost of a training item on real-size frames (a 1000 x 1000 frame:
~4 ms of ~8). libjpeg-turbo 3's TurboJPEG API can decode a region (``tj3SetCroppingRegion``): rows
above it are entropy-decoded only, rows below it not at all, columns outside it skip the inverse
DCT and the colour conversion. OpenCV and Pillow do not expose this, and no permissively licensed
wheel ships the library, so this module uses a ``libturbojpeg`` (>= 3.0) that is already on the
machine (conda-forge's ``libjpeg-turbo``, Fedora, Arch, Homebrew; Debian 12 and Ubuntu 24.04 ship
2.1, which lacks the call), through ctypes. Without one, the loader decodes the whole frame with
OpenCV as before.

The pixels are those of ``cv2.imdecode(data, cv2.IMREAD_COLOR)`` (the same libjpeg-turbo decode:
accurate integer IDCT, fancy upsampling), with one exception that the region is grown to avoid:
horizontal fancy upsampling treats the region's first and last columns as image edges. The region
is therefore grown by one iMCU on every side (its left edge on an iMCU boundary, as the call
requires) and cut back. ``tests/test_jpeg_region.py`` compares hundreds of random regions with
OpenCV's whole-frame decode; in each process the first region decoded for each chroma subsampling
is also compared with OpenCV's, and a library that disagrees is dropped with a warning.

Frames this does not handle fall back to OpenCV: anything but 8-bit YCbCr (grey, CMYK, RGB,
12-bit, lossless), and files with EXIF data (OpenCV applies the EXIF orientation).

``DATASET.JPEG_REGION_DECODE``: ``auto`` (default: a libturbojpeg >= 3 found by the system's
library search or in ``<sys.prefix>/lib``, else OpenCV), ``off`` (OpenCV), or the path of the
library (an error if it cannot be used).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys

import cv2
import numpy as np
from loguru import logger

__all__ = ["RegionDecoder", "TurboJpegError", "get_region_decoder", "jpeg_has_exif"]

# TurboJPEG 3 constants (turbojpeg.h)
_TJINIT_DECOMPRESS = 1
_TJPARAM_SUBSAMP, _TJPARAM_JPEGWIDTH, _TJPARAM_JPEGHEIGHT = 4, 5, 6
_TJPARAM_PRECISION, _TJPARAM_COLORSPACE, _TJPARAM_LOSSLESS = 7, 8, 15
_TJCS_YCBCR = 1
_TJPF_BGR = 1
_MCU_W = (8, 16, 16, 8, 8, 32, 8)  # iMCU size per TJSAMP (444, 422, 420, GRAY, 440, 411, 441)
_MCU_H = (8, 8, 16, 8, 16, 8, 32)


class TurboJpegError(RuntimeError):
    """DATASET.JPEG_REGION_DECODE names a library that cannot be used."""


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


def jpeg_has_exif(data: bytes) -> bool:
    """True if the JPEG's header segments (before the first scan) hold an APP1 EXIF block."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return False  # not a marker where one must be: let the decoder judge the file
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image: no EXIF before it
            return False
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            return True
        pos += 2 + length
    return False


class RegionDecoder:
    """A libturbojpeg >= 3 loaded through ctypes; one decompressor handle per process.

    ``header(data)`` -> (H, W, subsamp) of a frame it decodes exactly as OpenCV, else None;
    ``decode(data, header, x0, y0, x1, y1)`` -> (pixels, rx0, ry0): BGR uint8 pixels of a region
    containing [y0:y1, x0:x1] whose top-left corner is (rx0, ry0), or None if the decode failed.
    """

    def __init__(self, path: str):
        self.path = path
        lib = ctypes.CDLL(path)
        try:
            lib.tj3SetCroppingRegion  # noqa: B018 - absent from TurboJPEG 2 (libjpeg-turbo < 3)
        except AttributeError as e:
            raise TurboJpegError(f"{path} is not libturbojpeg >= 3.0 (no tj3SetCroppingRegion)") from e
        vp, c_int, size_t = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        lib.tj3Init.restype, lib.tj3Init.argtypes = vp, [c_int]
        lib.tj3Destroy.restype, lib.tj3Destroy.argtypes = None, [vp]
        lib.tj3Get.restype, lib.tj3Get.argtypes = c_int, [vp, c_int]
        lib.tj3DecompressHeader.restype, lib.tj3DecompressHeader.argtypes = c_int, [vp, vp, size_t]
        lib.tj3SetCroppingRegion.restype, lib.tj3SetCroppingRegion.argtypes = c_int, [vp, _Region]
        lib.tj3Decompress8.restype, lib.tj3Decompress8.argtypes = c_int, [vp, vp, size_t, vp, c_int, c_int]
        self._lib = lib
        self._handle = None
        self._pid = None
        self.checked: set[int] = set()  # subsamplings whose first region matched OpenCV (this process)
        self.disabled = False

    def _h(self):
        if self._pid != os.getpid():  # a forked worker must not share its parent's handle
            self._handle = self._lib.tj3Init(_TJINIT_DECOMPRESS)
            self._pid = os.getpid()
            self.checked = set()
            if not self._handle:
                raise TurboJpegError(f"{self.path}: tj3Init failed")
        return self._handle

    def header(self, data: bytes):
        if self.disabled or data[:2] != b"\xff\xd8" or jpeg_has_exif(data):
            return None
        h = self._h()
        buf = np.frombuffer(data, np.uint8)
        if self._lib.tj3DecompressHeader(h, buf.ctypes.data, buf.size) != 0:
            return None
        get = self._lib.tj3Get
        sub = get(h, _TJPARAM_SUBSAMP)
        if (get(h, _TJPARAM_COLORSPACE) != _TJCS_YCBCR or get(h, _TJPARAM_PRECISION) != 8
                or get(h, _TJPARAM_LOSSLESS) != 0 or not 0 <= sub < len(_MCU_W)):
            return None
        return get(h, _TJPARAM_JPEGHEIGHT), get(h, _TJPARAM_JPEGWIDTH), sub

    def decode(self, data: bytes, header, x0: int, y0: int, x1: int, y1: int):
        hgt, wid, sub = header
        mw, mh = _MCU_W[sub], _MCU_H[sub]
        rx0, ry0 = max(0, (x0 // mw - 1) * mw), max(0, (y0 // mh - 1) * mh)
        rx1, ry1 = min(wid, x1 + mw), min(hgt, y1 + mh)
        h = self._h()
        buf = np.frombuffer(data, np.uint8)
        if self._lib.tj3DecompressHeader(h, buf.ctypes.data, buf.size) != 0:
            return None
        if self._lib.tj3SetCroppingRegion(h, _Region(rx0, ry0, rx1 - rx0, ry1 - ry0)) != 0:
            return None
        out = np.empty((ry1 - ry0, rx1 - rx0, 3), dtype=np.uint8)
        if self._lib.tj3Decompress8(h, buf.ctypes.data, buf.size, out.ctypes.data, 0, _TJPF_BGR) != 0:
            return None  # an error or a warning (corrupt data): OpenCV decides, as before
        if sub not in self.checked:
            ref = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if ref is None or not np.array_equal(ref[y0:y1, x0:x1], out[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0]):
                logger.warning(f"{self.path}: its region decode differs from OpenCV's decode; "
                               "the whole frame is decoded with OpenCV from now on")
                self.disabled = True
                return None
            self.checked.add(sub)
        return out, rx0, ry0


def _candidates():
    name = ctypes.util.find_library("turbojpeg")
    if name:
        yield name
    for d in (os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib")):
        yield from sorted(glob.glob(os.path.join(d, "libturbojpeg.so*")) + glob.glob(os.path.join(d, "libturbojpeg*.dylib")))


_CACHE: dict[str, RegionDecoder | None] = {}


def get_region_decoder(setting: str) -> RegionDecoder | None:
    """The decoder for DATASET.JPEG_REGION_DECODE (cached per process); None = OpenCV's whole-frame
    decode. A path that cannot be used raises TurboJpegError."""
    setting = str(setting)
    if setting in _CACHE:
        return _CACHE[setting]
    dec = None
    if setting.lower() == "off":
        pass
    elif setting.lower() == "auto":
        for path in _candidates():
            try:
                dec = RegionDecoder(path)
                break
            except (OSError, TurboJpegError):
                continue
        logger.info("JPEG frames: " + (f"region decode through {dec.path}" if dec else
                                       "whole-frame decode (OpenCV; no libturbojpeg >= 3 found)"))
    else:
        try:
            dec = RegionDecoder(setting)
        except OSError as e:
            raise TurboJpegError(f"DATASET.JPEG_REGION_DECODE = {setting}: cannot load it ({e})") from e
        logger.info(f"JPEG frames: region decode through {dec.path}")
    _CACHE[setting] = dec
    return dec
