"""The SPIN-style protocols (3DPW, synthetic-test, H36M P1/P2, MPI-INF-3DHP) keep their numbers.

``tests/data/protocol_golden.npz`` holds the arrays of ``evaluation_results_<VAL_DS>.pkl`` (and the
logged summary) that the code before the protocols moved into ``dsr/evaluation/`` wrote for the
fabricated batches of ``tests/protocol_cases.py`` (made by running that script at commit 59064e1).
The code of today must write the same arrays, bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

import protocol_cases as pc


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(pc.GOLDEN))


@pytest.mark.parametrize("ds,gender_eval", pc.CASES)
def test_pkl_arrays_identical_to_the_code_before_the_move(golden, ds, gender_eval):
    dump = pc.run_case(ds, gender_eval)
    want = {k.split("|", 2)[2]: v for k, v in golden.items() if k.startswith(f"{ds}|{int(gender_eval)}|")}
    assert want, "no stored arrays for this case"
    for name, value in want.items():
        assert name in dump, f"{name} missing from the pkl / summary"
        got = np.asarray(dump[name])
        assert got.shape == value.shape, name
        if value.dtype.kind == "U":
            assert got.tolist() == value.tolist(), name
        else:
            np.testing.assert_array_equal(got, value, err_msg=name)
