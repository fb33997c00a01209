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


@pytest.mark.parametrize("name,val_ds,family", [("emdb1_eval.cfg", "emdb-1", "emdb"), ("ssp3d_eval.cfg", "ssp-3d", "ssp-3d"),
                                                ("dsr_eval.cfg", "3dpw", "spin")])
def test_eval_configs_pick_their_protocol(name, val_ds, family):
    """configs/emdb1_eval.cfg and ssp3d_eval.cfg are the release evaluation config with another
    VAL_DS (and EXP_NAME); each VAL_DS resolves to its protocol family."""
    import os

    from dsr.config import load_config
    from dsr.evaluation.protocols import protocol_class

    cfg = load_config(os.path.join(pc.REPO, "configs", name))
    ref = load_config(os.path.join(pc.REPO, "configs", "dsr_eval.cfg"))
    assert cfg.DATASET.VAL_DS == val_ds and protocol_class(val_ds).name == family
    cfg.defrost()
    cfg.DATASET.VAL_DS, cfg.EXP_NAME = ref.DATASET.VAL_DS, ref.EXP_NAME
    assert cfg.dump() == ref.dump()
    with pytest.raises(ValueError, match="unknown evaluation dataset 'emdb-3'"):
        protocol_class("emdb-3")
