"""Reading the training loader's files: the JPEG truncation check and Graphonomy masks (issue 25).

* ``truncated_jpeg(data)``: the check that the loader (and the parsing tool) make before decoding.
* ``read_mask(path)``: a ``MaskPixels`` of a Graphonomy mask PNG, giving the BGR values that
  ``cv2.imread(path, cv2.IMREAD_COLOR)`` gives, by one of three routes:
  1. an 8-bit, non-interlaced palette PNG whose rows are stored unfiltered, as the parsing tool
     writes it (``dsr.parsing.masks.write_mask_png``, PIL): the chunks are read and checked (CRC)
     here, and the zlib stream is inflated only down to the last row a crop reads; colours are
     looked up only in the box the crop reads (``MaskPixels.fill``);
  2. another palette PNG whose chunks' CRCs check: PIL decodes its (H, W) palette indices (a third
     of the bytes of the colour image);
  3. anything else (24-bit colour, as the original's Graphonomy wrote, grey, 16-bit, with
     transparency or EXIF data, an unknown critical chunk, a bad CRC, a palette index beyond the
     palette): ``cv2.imread`` as before (and its errors).
"""
from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

try:  # zlib-ng inflates a parsing mask's long runs ~20x faster than CPython's zlib (same bytes out)
    from zlib_ng import zlib_ng as _inflate_lib
except ImportError:  # not installed (e.g. a sealed GPU machine): the standard library's, slower
    _inflate_lib = zlib

__all__ = ["FrameReadError", "MaskPixels", "read_mask", "truncated_jpeg"]


class FrameReadError(ValueError):
    """A frame or mask file is missing or cannot be decoded (the message says why, not where)."""


def truncated_jpeg(data: bytes) -> bool:
    """True for the bytes of a JPEG file cut short: libjpeg (so cv2) decodes such a file without an
    error, filling the missing rows with grey. A complete JPEG has an EOI marker (FF D9) after the
    start of its last scan (FF DA); entropy-coded data cannot hold either byte pair (FF is stuffed
    as FF 00). "A scan starts after the last EOI" is searched forward from that EOI (the last scan
    start sits near the front of the file: searching backwards for it reads the whole file)."""
    if data[:2] != b"\xff\xd8":  # not a JPEG: other decoders fail on truncation themselves
        return False
    return data.find(b"\xff\xda", data.rfind(b"\xff\xd9") + 1) != -1


class MaskPixels:
    """A mask: ``shape`` (H, W, 3) of its BGR image and ``fill(dst, x0, y0, x1, y1)``, which writes
    the float32 BGR values of [y0:y1, x0:x1] into ``dst`` (for ``crop_region_cv2``).

    Holds one of: ``bgr`` (H, W, 3) uint8; ``index`` (H, W) uint8 palette indices; or ``idat``, the
    zlib stream of an unfiltered 8-bit palette PNG, inflated on demand down to the rows needed.
    With a palette, ``lut`` (256, 3) uint8 BGR colours (the box is expanded with one ``cv2.LUT``
    per channel: numpy's fancy indexing of a (256, 3) table is ~10x slower) and ``n_colours``."""

    def __init__(self, bgr=None, index=None, lut=None, n_colours=256, idat=None, size=None, path=None):
        self.bgr, self.index, self.lut, self.idat, self.path = bgr, index, lut, idat, path
        self.n_colours = n_colours
        if bgr is not None:
            self.shape = (bgr.shape[0], bgr.shape[1], 3)
        elif index is not None:
            self.shape = (index.shape[0], index.shape[1], 3)
        else:
            self.shape = (size[0], size[1], 3)
        if lut is not None:
            self._luts = [np.ascontiguousarray(lut[:, c], dtype=np.uint8) for c in range(3)]

    def _rows(self, y0: int, y1: int) -> np.ndarray | None:
        """Palette indices of rows y0..y1 (all columns), or None if they cannot be read here."""
        if self.index is not None:
            return self.index[y0:y1]
        h, w = self.shape[:2]
        try:
            raw = _inflate_lib.decompressobj().decompress(self.idat, y1 * (w + 1))
        except _inflate_lib.error:
            return None
        if len(raw) != y1 * (w + 1):
            return None
        rows = np.frombuffer(raw, np.uint8).reshape(y1, w + 1)[y0:]
        if rows[:, 0].any():  # a filtered row (PNG filter type != 0): leave it to a full decoder
            return None
        return rows[:, 1:]

    def _full_decode(self) -> None:
        """Fall back to a full decode (PIL indices, else OpenCV colours) of ``path``."""
        self.idat = None
        m = _pil_palette_mask(self.path) if self.path else None
        if m is not None and m.shape == self.shape:
            self.index, self.lut, self._luts, self.n_colours = m.index, m.lut, m._luts, m.n_colours
            return
        bgr = cv2.imread(self.path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise FrameReadError("cannot decode")
        self.bgr, self.index = bgr, None

    def fill(self, dst: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
        if self.bgr is None:
            rows = self._rows(y0, y1)
            if rows is not None:
                box = np.ascontiguousarray(rows[:, x0:x1])
                if int(box.max(initial=0)) < self.n_colours:
                    dst[...] = cv2.merge([cv2.LUT(box, t) for t in self._luts])
                    return
            self._full_decode()
            if self.bgr is None:
                return self.fill(dst, x0, y0, x1, y1)
        dst[...] = self.bgr[y0:y1, x0:x1]

    def to_bgr(self) -> np.ndarray:
        """(H, W, 3) uint8 BGR of the whole mask (tests)."""
        if self.bgr is not None:
            return self.bgr
        out = np.zeros(self.shape, dtype=np.float32)
        self.fill(out, 0, 0, self.shape[1], self.shape[0])
        return out.astype(np.uint8)


_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_HARMLESS_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tEXt", b"zTXt", b"iTXt", b"pHYs", b"tIME"}


def _png_chunks(data: bytes):
    """[(type, body)] of a whole PNG whose chunk CRCs all check (up to IEND), else None (not a PNG,
    truncated, a bad CRC: OpenCV's libpng refuses those, PIL does not check the IDAT CRCs)."""
    if data[:8] != _PNG_SIG:
        return None
    pos, chunks = 8, []
    while pos + 12 <= len(data):
        ln, typ = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + ln > len(data):
            return None
        body = data[pos + 8:pos + 8 + ln]
        if zlib.crc32(typ + body) != struct.unpack(">I", data[pos + 8 + ln:pos + 12 + ln])[0]:
            return None
        chunks.append((typ, body))
        pos += 12 + ln
        if typ == b"IEND":
            return chunks
    return None


def _raw_palette_mask(path: str, chunks) -> MaskPixels | None:
    """Route 1 of the module docstring, or None."""
    if any(typ not in _HARMLESS_CHUNKS for typ, _ in chunks):
        return None
    ihdr = [b for t, b in chunks if t == b"IHDR"]
    plte = [b for t, b in chunks if t == b"PLTE"]
    idat = [b for t, b in chunks if t == b"IDAT"]
    if len(ihdr) != 1 or len(ihdr[0]) != 13 or len(plte) != 1 or not idat:
        return None
    plte = plte[0]
    if len(plte) % 3 or not 0 < len(plte) <= 768:
        return None
    w, h, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", ihdr[0])
    if (depth, colour, comp, filt, interlace) != (8, 3, 0, 0, 0) or w == 0 or h == 0:
        return None
    n = len(plte) // 3
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:n] = np.frombuffer(plte, np.uint8).reshape(n, 3)[:, ::-1]  # RGB -> BGR
    return MaskPixels(lut=lut, n_colours=n, idat=b"".join(idat), size=(h, w), path=path)


def _pil_palette_mask(path: str) -> MaskPixels | None:
    """Route 2 of the module docstring, or None."""
    try:
        with Image.open(path) as im:
            if im.format != "PNG" or im.mode != "P" or "transparency" in im.info or "exif" in im.info:
                return None
            index = np.asarray(im)
            palette = im.getpalette() or []
    except Exception:  # noqa: BLE001 - unreadable for PIL: OpenCV decides (and reports) as before
        return None
    n = len(palette) // 3
    if index.dtype != np.uint8 or index.ndim != 2 or n == 0 or int(index.max()) >= n:
        return None
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:n] = np.asarray(palette[:3 * n], dtype=np.uint8).reshape(n, 3)[:, ::-1]  # RGB -> BGR
    return MaskPixels(index=index, lut=lut, n_colours=n, path=path)


def read_mask(path: str) -> MaskPixels:
    """The pixels of a Graphonomy mask PNG (see the module docstring); FrameReadError if undecodable.
    (Route 1 decodes lazily: a stream that turns out unreadable falls back to routes 2 and 3.)"""
    if not os.path.isfile(path):
        raise FrameReadError("missing")
    with open(path, "rb") as f:
        data = f.read()
    chunks = _png_chunks(data)
    if chunks is not None:  # a whole PNG with good CRCs: routes 1 and 2 may read it
        fast = _raw_palette_mask(path, chunks) or _pil_palette_mask(path)
        if fast is not None:
            return fast
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameReadError("cannot decode")
    return MaskPixels(bgr=bgr, path=path)
