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


def test_results_csv_upgrades_an_old_header(tmp_path):
    """A results.csv written before the protocol column keeps its rows under the new header."""
    from dsr.lightning_module import RESULTS_FIELDS, append_results_csv

    path = tmp_path / "results.csv"
    path.write_text("run,dataset,epoch,step,num_samples,mpjpe,pa_mpjpe,pve,pck,auc\r\n"
                    "r1,3dpw,3,100,35515,85.700,51.700,99.500,,\r\n")
    append_results_csv(str(path), {"run": "r2", "dataset": "ssp-3d", "protocol": "ssp-3d", "epoch": 0, "step": 0,
                                   "num_samples": 311, "pve_t_sc": "15.000", "iou": "0.7000"})
    import csv

    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == RESULTS_FIELDS
    assert rows[0]["run"] == "r1" and rows[0]["pa_mpjpe"] == "51.700" and rows[0]["protocol"] == ""
    assert rows[1]["dataset"] == "ssp-3d" and rows[1]["iou"] == "0.7000" and rows[1]["mpjpe"] == ""


def test_the_module_knows_no_dataset_by_name():
    """Protocol choice lives in dsr/evaluation: lightning_module.py names no evaluation set."""
    import os

    from dsr import constants

    src = open(os.path.join(pc.REPO, "dsr", "lightning_module.py")).read()
    named = [ds for ds in constants.EVAL_DATASETS if f'"{ds}"' in src or f"'{ds}'" in src]
    assert named == []
