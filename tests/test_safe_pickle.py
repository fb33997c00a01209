"""dsr.safe_pickle: data pickles of numpy arrays and plain containers load; anything else is refused."""
from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest

from dsr.safe_pickle import UnsafePickleError, load_npz, load_pickle, restricted_loads


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo hacked > /dev/null",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_round_trips(tmp_path, protocol):
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": "P0_09", "flag": True, "n": 7,
            "nested": [np.zeros(2, np.int64), ("x", 1.5)], "od": collections.OrderedDict(k=np.float64(2.0)),
            "b": b"\x00\x01", "set": {1, 2}}
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    got = load_pickle(str(path))
    np.testing.assert_array_equal(got["a"], data["a"])
    assert got["a"].dtype == np.float32 and got["s"] == "P0_09" and got["nested"][1] == ("x", 1.5)
    assert got["od"]["k"] == 2.0 and got["b"] == b"\x00\x01" and got["set"] == {1, 2}


def test_code_is_refused_naming_file_and_class(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"gender": _Evil()}))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl: refusing to unpickle class (posix|os|nt)\.system"):
        load_pickle(str(path))
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        restricted_loads(b"not a pickle", "x.pkl")


def test_npz_object_members_go_through_the_same_unpickler(tmp_path):
    np.savez(tmp_path / "ok.npz", fnames=np.array(["a.png", "b.png"], dtype=object), x=np.ones(3))
    d = load_npz(str(tmp_path / "ok.npz"))
    assert list(d["fnames"]) == ["a.png", "b.png"] and d["x"].tolist() == [1.0, 1.0, 1.0]
    np.savez(tmp_path / "bad.npz", fnames=np.array([_Evil()], dtype=object))
    with pytest.raises(UnsafePickleError, match=r"bad\.npz\[fnames\]: refusing"):
        load_npz(str(tmp_path / "bad.npz"))


def test_3dpw_sequence_file_with_code_is_a_preprocess_error(tmp_path):
    from dsr.data.preprocess.common import PreprocessError
    from dsr.data.preprocess.pw3d import load_sequence

    path = tmp_path / "courtyard_evil_00.pkl"
    path.write_bytes(pickle.dumps({"sequence": "x", "poses": [_Evil()]}, protocol=2))
    with pytest.raises(PreprocessError, match="courtyard_evil_00.pkl: refusing to unpickle class .*3DPW sequence pickle"):
        load_sequence(str(path), with_camera=False)
