"""dsr.data.preprocess.common: the box rule, the atomic npz write, the closing table, the pickle reader."""
import os

import numpy as np
import pytest

from dsr.data.preprocess.common import (PreprocessError, Summary, bbox_to_center_scale, read_pickle_dict,
                                        require_dir, require_file, save_npz_atomic)


def test_bbox_rule_by_hand():
    # box x 10..50 (40 wide), y 20..120 (100 high): centre (30, 70), scale 1.2 * 100 / 200 = 0.6
    c, s = bbox_to_center_scale(10, 20, 50, 120, 1.2)
    np.testing.assert_allclose(c, [30.0, 70.0])
    assert s == pytest.approx(0.6)
    # wider than high: the longer side is the width (80), factor 0.9 -> 0.36
    c, s = bbox_to_center_scale(0, 0, 80, 10, 0.9)
    np.testing.assert_allclose(c, [40.0, 5.0])
    assert s == pytest.approx(0.36)


def test_save_npz_atomic_round_trip_and_no_leftovers(tmp_path):
    out = tmp_path / "sub" / "x.npz"
    save_npz_atomic(str(out), imgname=np.array(["a.jpg", "b.jpg"]), scale=np.array([1.0, 2.0]))
    d = np.load(out)
    assert list(d["imgname"]) == ["a.jpg", "b.jpg"]
    np.testing.assert_array_equal(d["scale"], [1.0, 2.0])
    assert os.listdir(out.parent) == ["x.npz"]


def test_save_npz_atomic_failure_keeps_the_old_file(tmp_path):
    out = tmp_path / "x.npz"
    save_npz_atomic(str(out), a=np.arange(3))

    class Boom:
        def __array__(self, *a, **k):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_npz_atomic(str(out), a=Boom())
    np.testing.assert_array_equal(np.load(out)["a"], [0, 1, 2])
    assert os.listdir(tmp_path) == ["x.npz"]


def test_read_pickle_dict_round_trip_and_errors(tmp_path):
    import pickle

    ok = tmp_path / "ok.pkl"
    with open(ok, "wb") as f:
        pickle.dump({"poses": [np.arange(6.0).reshape(2, 3)], "sequence": "s"}, f, protocol=2)
    d = read_pickle_dict(str(ok), "a test pickle")
    assert d["sequence"] == "s" and np.array_equal(d["poses"][0], np.arange(6.0).reshape(2, 3))
    lst = tmp_path / "list.pkl"
    with open(lst, "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(PreprocessError, match=rf"list.pkl: expected a dict \(a test pickle\), got list"):
        read_pickle_dict(str(lst), "a test pickle")
    (tmp_path / "cut.pkl").write_bytes(ok.read_bytes()[:20])
    with pytest.raises(PreprocessError, match=r"cut.pkl: not a readable pickle .*\(a test pickle\)$"):
        read_pickle_dict(str(tmp_path / "cut.pkl"), "a test pickle")
    with pytest.raises(PreprocessError, match=r"nothing.pkl: cannot read a test pickle \(FileNotFoundError"):
        read_pickle_dict(str(tmp_path / "nothing.pkl"), "a test pickle")
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"x": Summary("x")}, f)
    with pytest.raises(PreprocessError, match=r"evil.pkl: refusing to unpickle class .*Summary.*\(a test pickle\)"):
        read_pickle_dict(str(evil), "a test pickle")


def test_summary_save_records_path_and_rows(tmp_path):
    s = Summary("x")
    s.skip("bad", 2)
    path = str(tmp_path / "out" / "x.npz")
    assert s.save(path, {"imgname": np.array(["a", "b", "c"]), "scale": np.ones(3)}) is s
    assert (s.path, s.written, s.skipped["bad"]) == (path, 3, 2)
    assert np.load(path)["imgname"].tolist() == ["a", "b", "c"]


def test_frame_folders_default_and_error(tmp_path):
    import argparse

    from dsr.data.preprocess.common import add_frame_arguments, frame_folders

    p = argparse.ArgumentParser()
    p.add_argument("--root")
    p.add_argument("--out")
    add_frame_arguments(p, "extract", "frames/")
    a = p.parse_args(["--root", str(tmp_path), "--out", "o"])
    assert frame_folders(a, "X") == (str(tmp_path), str(tmp_path), os.path.join("o", "dataset_extras"))
    assert (a.extract_frames, a.fits) == (False, None)
    a = p.parse_args(["--root", str(tmp_path), "--out", "o", "--images", "im", "--extract-frames"])
    assert frame_folders(a, "X")[1] == "im" and a.extract_frames
    a.root = str(tmp_path / "nothing")
    with pytest.raises(PreprocessError, match=r"missing X root \(--root\): .*nothing is not a folder"):
        frame_folders(a, "X")


def test_require_names_the_path(tmp_path):
    with pytest.raises(PreprocessError, match="missing sequence file: .*nope.pkl"):
        require_file(str(tmp_path / "nope.pkl"), "sequence file")
    with pytest.raises(PreprocessError, match="is not a folder"):
        require_dir(str(tmp_path / "nodir"), "3DPW root")


def test_summary_table_lists_every_reason():
    s = Summary("3dpw test", path="out/3dpw_test.npz")
    s.written = 7
    s.skip("invalid camera pose", 3)
    s.skip("no visible keypoint")
    t = s.table()
    assert "out/3dpw_test.npz" in t
    lines = t.splitlines()
    assert lines[1].split()[-1] == "7"
    assert [ln.split()[-1] for ln in lines[2:]] == ["3", "1"]
