#!/usr/bin/env python
"""Rewrite 24-bit colour Graphonomy masks as 8-bit palette PNGs (the loader's fast format).

    python tools/masks_to_palette.py dsr_data/dataset_folders/h36m/grph_sequences [--check]

Every ``*.png`` under the folder (recursively) that is not already an 8-bit palette PNG is read
with OpenCV, its colours are matched exactly against the CIHP palette
(``dsr.constants.GRAPHONOMY_PALETTE``), and it is written back in place as the parsing tool writes
masks (``dsr.parsing.masks.write_mask_png``: same colours, indices 0..19), atomically. The training
loader gives the same items from either file (the colours it reads are the same) and reads the
palette file about 2-3x faster (docs/loader.md). A mask holding a colour outside the palette (a
blended or foreign mask) is left as it is and listed; unreadable files are listed too. Running it
again skips the masks already converted. ``--check`` only counts what would be converted.
Exit status: 0, or 1 when some masks were listed, 2 for a bad folder.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
from tqdm import tqdm  # noqa: E402

from dsr.data import graphonomy as G  # noqa: E402
from dsr.data.frame_io import _png_chunks, _raw_palette_mask  # noqa: E402
from dsr.parsing.masks import write_mask_png  # noqa: E402


def is_palette_png(path: str) -> bool:
    with open(path, "rb") as f:
        chunks = _png_chunks(f.read())
    return chunks is not None and _raw_palette_mask(path, chunks) is not None


def convert(path: str, check: bool = False) -> str:
    """'palette' (already), 'converted' (or would be, with check), or the reason it was left."""
    if is_palette_png(path):
        return "palette"
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        return "cannot decode"
    labels, known = G.decode_colour_mask(bgr[:, :, ::-1], return_known=True)
    if not known.all():
        return f"{int((~known).sum())} pixels of colours outside the CIHP palette"
    if not check:
        write_mask_png(path, labels)
    return "converted"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a grph_sequences folder (or any folder of mask PNGs)")
    p.add_argument("--check", action="store_true", help="count only, write nothing")
    args = p.parse_args(argv)
    if not os.path.isdir(args.folder):
        print(f"error: not a folder: {args.folder}", file=sys.stderr)
        return 2
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(args.folder) for f in files
                   if f.lower().endswith(".png"))
    counts = {"palette": 0, "converted": 0}
    left = []
    for path in tqdm(paths, desc="masks", unit="mask", disable=not sys.stderr.isatty()):
        why = convert(path, args.check)
        if why in counts:
            counts[why] += 1
        else:
            left.append((path, why))
    verb = "to convert" if args.check else "converted"
    print(f"{len(paths)} masks: {counts['converted']} {verb}, {counts['palette']} already palette, "
          f"{len(left)} left as they are")
    for path, why in left[:20]:
        print(f"  {path}: {why}")
    if len(left) > 20:
        print(f"  ... and {len(left) - 20} more")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
