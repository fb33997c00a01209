"""tools/masks_to_palette.py: colour masks rewritten as palette PNGs read back to the same colours."""
import importlib.util
import os

import cv2
import numpy as np

from dsr.constants import GRAPHONOMY_PALETTE
from dsr.data.frame_io import read_mask
from dsr.parsing.masks import write_mask_png

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "masks_to_palette.py")


_spec = importlib.util.spec_from_file_location("masks_to_palette", TOOL)
_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tool)


class _Result:
    def __init__(self, code, out, err):
        self.returncode, self.stdout, self.stderr = code, out, err


def _run(capsys, *args):
    code = _tool.main(list(args))
    out = capsys.readouterr()
    return _Result(code, out.out, out.err)


def test_convert_check_and_rerun(tmp_path, capsys):
    lab = np.zeros((30, 40), np.int64)
    lab[5:25, 10:30] = np.random.default_rng(0).integers(0, 20, (20, 20))
    colour = GRAPHONOMY_PALETTE[lab].astype(np.uint8)[:, :, ::-1]
    sub = tmp_path / "images" / "s1"
    sub.mkdir(parents=True)
    cv2.imwrite(str(sub / "a.png"), colour)
    write_mask_png(str(tmp_path / "b.png"), lab)
    foreign = colour.copy()
    foreign[3, 3] = (1, 2, 3)
    cv2.imwrite(str(tmp_path / "c.png"), foreign)
    (tmp_path / "d.png").write_bytes(b"junk")

    r = _run(capsys, str(tmp_path), "--check")
    assert r.returncode == 1 and "4 masks: 1 to convert, 1 already palette, 2 left" in r.stdout
    assert read_mask(str(sub / "a.png")).idat is None  # --check wrote nothing

    r = _run(capsys, str(tmp_path))
    assert r.returncode == 1 and "1 converted, 1 already palette, 2 left" in r.stdout
    assert "c.png: 1 pixels of colours outside the CIHP palette" in r.stdout and "d.png: cannot decode" in r.stdout
    m = read_mask(str(sub / "a.png"))
    assert m.idat is not None  # now the fast route
    assert np.array_equal(m.to_bgr(), colour) and np.array_equal(cv2.imread(str(sub / "a.png")), colour)
    assert m.idat is not None and m.index is None and m.bgr is None  # read without a fallback decode
    assert np.array_equal(cv2.imread(str(tmp_path / "c.png")), foreign)  # left as it was

    os.remove(tmp_path / "c.png")
    os.remove(tmp_path / "d.png")
    r = _run(capsys, str(tmp_path))
    assert r.returncode == 0 and "2 masks: 0 converted, 2 already palette, 0 left" in r.stdout


def test_bad_folder(tmp_path, capsys):
    r = _run(capsys, str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a folder" in r.stderr and "Traceback" not in r.stderr
