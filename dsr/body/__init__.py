"""Body model: chumpy-free SMPL loading, the smplx wrapper with DSR's 49 joints (reference §2.3).

The free body model builder (``free_body*.py``) and its outfit model (``outfits.py``) live beside.
"""
from dsr.body.smpl import VERTEX_JOINT_NAMES, BodyModel, BodyOutput, build_body_model
from dsr.body.smpl_io import BodyModelError, find_model_file, load_smpl_data

__all__ = [
    "BodyModel",
    "BodyOutput",
    "BodyModelError",
    "VERTEX_JOINT_NAMES",
    "build_body_model",
    "find_model_file",
    "load_smpl_data",
]
