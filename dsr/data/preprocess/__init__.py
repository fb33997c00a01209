"""Raw dataset downloads → the SPIN-format npz files of ``dsr_data/dataset_extras/``.

Offline steps: nothing in training imports this package. Run
``python -m dsr.data.preprocess DATASET --root RAW_DIR --out dsr_data [options]``; see
``python -m dsr.data.preprocess --help`` and docs/data.md, "Real datasets from their raw downloads".

Each dataset module exposes ``add_arguments(parser)`` (its own options) and ``run(args) ->
list[Summary]`` (one Summary per npz written).
"""
DATASETS = {
    "3dpw": "dsr.data.preprocess.pw3d",
    "mpi-inf-3dhp": "dsr.data.preprocess.mpi_inf_3dhp",
    "h36m": "dsr.data.preprocess.h36m",
    "coco": "dsr.data.preprocess.coco",
    "emdb": "dsr.data.preprocess.emdb",
    "ssp-3d": "dsr.data.preprocess.ssp3d",
}

__all__ = ["DATASETS"]
