"""SMPL body model wrapper: smplx.SMPL driven by rotation matrices, plus DSR's 49 joints.

``build_body_model(model_dir, gender, extra_regressor_path, h36m_regressor_path)`` builds a
:class:`BodyModel` from an SMPL-format file (original ``.pkl`` read without chumpy, or smplx
``.npz``; see :mod:`dsr.body.smpl_io`). Joint pipeline (reference §2.3):

1. smplx gives the J skeleton joints (``J_regressor`` applied to the shaped mesh and posed by the
   kinematic tree) followed by 21 vertex joints (nose, eyes, ears, 6 feet points, 10 finger tips;
   vertex indices from ``vertex_ids.json`` in the model folder, else smplx's SMPL indices);
2. the 9 rows of ``J_regressor_extra`` applied to the posed vertices are appended (R hip, L hip,
   neck (LSP), head top (LSP), pelvis (MPII), thorax (MPII), spine (H36M), jaw (H36M), head (H36M));
3. ``dsr.constants.JOINT_IDS`` selects the 49 training joints (25 OpenPose + 24 GT).

For SMPL (J = 24) the extended set has 24 + 21 + 9 = 54 joints and the indices of reference §2.3
apply unchanged. Nothing here assumes V, F or J: they are read from the model file.

Shapes: ``global_orient`` (B,1,3,3), ``body_pose`` (B,J-1,3,3), ``betas`` (B,S) ->
``vertices`` (B,V,3), ``joints`` (B,49,3), ``smpl_joints`` (B,J,3), metres, model frame.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse
import smplx
import torch
import torch.nn as nn
from loguru import logger

from dsr import constants
from dsr.body.smpl_io import BodyModelError, find_model_file, load_smpl_data, normalise_gender
from dsr.geometry import batch_rodrigues

__all__ = ["BodyModel", "BodyOutput", "build_body_model", "VERTEX_JOINT_NAMES"]

# smplx's vertex joints, in the order smplx appends them for SMPL (face, feet, finger tips).
VERTEX_JOINT_NAMES = [
    "nose", "reye", "leye", "rear", "lear",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky",
    "rthumb", "rindex", "rmiddle", "rring", "rpinky",
]


@dataclass
class BodyOutput:
    """Output of :meth:`BodyModel.forward`.

    vertices: (B, V, 3); joints: (B, 49, 3) training joints (None without an extra regressor);
    smpl_joints: (B, J, 3) skeleton joints; extended_joints: (B, J+21[+9], 3) before selection.
    """

    vertices: torch.Tensor
    joints: Optional[torch.Tensor]
    smpl_joints: torch.Tensor
    extended_joints: torch.Tensor


def _dense(a) -> np.ndarray:
    if scipy.sparse.issparse(a):
        a = a.toarray()
    return np.asarray(a, dtype=np.float64)


def _load_regressor(path: str, num_vertices: int, expected_rows: Optional[int], what: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise BodyModelError(
            f"{what} regressor not found: {path!r} (expected a ({expected_rows or 'K'}, {num_vertices}) .npy, "
            f"from the dsr_data zip or dsr/assets/free_body)"
        )
    try:
        reg = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise BodyModelError(f"{path}: not a readable .npy {what} regressor ({e})") from e
    if reg.ndim != 2 or reg.shape[1] != num_vertices or (expected_rows is not None and reg.shape[0] != expected_rows):
        raise BodyModelError(
            f"{path}: {what} regressor has shape {reg.shape}, expected ({expected_rows or 'K'}, {num_vertices}) "
            f"for a body model with {num_vertices} vertices"
        )
    return reg.astype(np.float64)


class BodyModel(nn.Module):
    """SMPL-format body model with rotation-matrix input and the 49 DSR training joints.

    Attributes: ``faces`` (F,3) long buffer, ``num_vertices``, ``num_faces``, ``num_joints`` (J),
    ``num_betas``, ``gender``, ``smpl`` (the wrapped ``smplx.SMPL``, no trainable parameters).
    """

    def __init__(
        self,
        data: dict,
        gender: str = "neutral",
        vertex_ids: Optional[dict] = None,
        extra_regressor: Optional[np.ndarray] = None,
        h36m_regressor: Optional[np.ndarray] = None,
        num_betas: int = 10,
        dtype: torch.dtype = torch.float32,
        source: str = "<memory>",
    ):
        super().__init__()
        v_template = np.asarray(data["v_template"], dtype=np.float64)
        V = v_template.shape[0]
        J = int(np.asarray(data["kintree_table"]).shape[1])
        S = int(np.asarray(data["shapedirs"]).shape[-1])
        if S < num_betas:
            raise BodyModelError(f"{source}: the model has {S} shape components, {num_betas} betas were requested")
        posedirs = data.get("posedirs")
        if posedirs is None:
            posedirs = np.zeros((V, 3, 9 * (J - 1)))
        posedirs = np.asarray(posedirs, dtype=np.float64)
        if posedirs.ndim == 2:  # (P, 3V) -> (V, 3, P)
            posedirs = posedirs.T.reshape(V, 3, -1)
        if vertex_ids is None:
            vertex_ids = dict(smplx.vertex_ids.vertex_ids["smplh"])
        missing = [n for n in VERTEX_JOINT_NAMES if n not in vertex_ids]
        if missing:
            raise BodyModelError(f"{source}: vertex_ids lacks {missing}")
        bad = {n: vertex_ids[n] for n in VERTEX_JOINT_NAMES if not 0 <= int(vertex_ids[n]) < V}
        if bad:
            raise BodyModelError(
                f"{source}: vertex joint ids {bad} are outside [0, {V}); a model with a non-SMPL topology needs "
                f"a vertex_ids.json beside it"
            )
        struct = smplx.utils.Struct(
            v_template=v_template,
            shapedirs=np.asarray(data["shapedirs"], dtype=np.float64),
            posedirs=posedirs,
            J_regressor=_dense(data["J_regressor"]),
            weights=np.asarray(data["weights"], dtype=np.float64),
            kintree_table=np.asarray(data["kintree_table"]).astype(np.int64),
            f=np.asarray(data["f"]).astype(np.int64),
        )
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 betas
            self.smpl = smplx.SMPL(
                model_path="",
                data_struct=struct,
                num_betas=num_betas,
                gender=gender,
                vertex_ids={n: int(vertex_ids[n]) for n in VERTEX_JOINT_NAMES},
                create_betas=False,
                create_global_orient=False,
                create_body_pose=False,
                create_transl=False,
                dtype=dtype,
            )
        # smplx fixes 23 body joints as a class attribute; follow the file's kinematic tree.
        self.smpl.NUM_BODY_JOINTS = J - 1
        self.smpl.NUM_JOINTS = J - 1
        # smplx casts through float32; store the arrays at the requested precision.
        for name, arr in (("v_template", v_template), ("shapedirs", struct.shapedirs[:, :, :num_betas]),
                          ("J_regressor", struct.J_regressor), ("lbs_weights", struct.weights),
                          ("posedirs", posedirs.reshape(-1, posedirs.shape[-1]).T)):
            getattr(self.smpl, name).data = torch.as_tensor(np.ascontiguousarray(arr), dtype=dtype)

        self.gender = gender
        self.num_vertices = V
        self.num_faces = int(struct.f.shape[0])
        self.num_joints = J
        self.num_betas = num_betas
        self.register_buffer("faces", torch.as_tensor(struct.f, dtype=torch.long))

        n_ext = J + len(VERTEX_JOINT_NAMES)
        if extra_regressor is not None:
            self.register_buffer("J_regressor_extra", torch.as_tensor(extra_regressor, dtype=dtype))
            n_ext += extra_regressor.shape[0]
            ids = np.asarray(constants.JOINT_IDS, dtype=np.int64)
            if ids.max() >= n_ext:
                raise BodyModelError(f"{source}: joint map needs {ids.max() + 1} extended joints, model gives {n_ext}")
            self.register_buffer("joint_ids", torch.as_tensor(ids))
        else:
            self.J_regressor_extra = None
            self.joint_ids = None
        if h36m_regressor is not None:
            self.register_buffer("J_regressor_h36m", torch.as_tensor(h36m_regressor, dtype=dtype))
        else:
            self.J_regressor_h36m = None

    def forward(
        self,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        betas: torch.Tensor,
        transl: Optional[torch.Tensor] = None,
        pose2rot: bool = False,
    ) -> BodyOutput:
        """Pose and shape the body.

        Args:
            global_orient: (B,1,3,3) rotation matrices (or (B,3) axis-angle with ``pose2rot``).
            body_pose: (B,J-1,3,3) rotation matrices (or (B,3(J-1)) axis-angle with ``pose2rot``).
            betas: (B, num_betas).
            transl: optional (B,3) added to vertices and joints.
        """
        B = betas.shape[0]
        if pose2rot:
            global_orient = batch_rodrigues(global_orient.reshape(-1, 3)).reshape(B, 1, 3, 3)
            body_pose = batch_rodrigues(body_pose.reshape(-1, 3)).reshape(B, -1, 3, 3)
        if body_pose.shape[1:] != (self.num_joints - 1, 3, 3) or global_orient.reshape(B, -1, 3, 3).shape[1] != 1:
            raise ValueError(
                f"BodyModel.forward: expected global_orient (B,1,3,3) and body_pose (B,{self.num_joints - 1},3,3), "
                f"got {tuple(global_orient.shape)} and {tuple(body_pose.shape)}"
            )
        out = self.smpl(
            betas=betas,
            global_orient=global_orient.reshape(B, 1, 3, 3),
            body_pose=body_pose,
            transl=transl,
            pose2rot=False,
        )
        vertices, ext = out.vertices, out.joints
        smpl_joints = ext[:, : self.num_joints]
        joints = None
        if self.J_regressor_extra is not None:
            extra = torch.einsum("kv,bvc->bkc", self.J_regressor_extra, vertices)
            ext = torch.cat([ext, extra], dim=1)
            joints = ext[:, self.joint_ids]
        return BodyOutput(vertices=vertices, joints=joints, smpl_joints=smpl_joints, extended_joints=ext)

    def regress_h36m_joints(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) vertices -> (B, 17, 3) Human3.6M joints (needs ``h36m_regressor_path``)."""
        if self.J_regressor_h36m is None:
            raise RuntimeError("regress_h36m_joints: the body model was built without h36m_regressor_path")
        return torch.einsum("kv,bvc->bkc", self.J_regressor_h36m.to(vertices.dtype), vertices)

    def extra_repr(self) -> str:
        return (f"gender={self.gender}, vertices={self.num_vertices}, faces={self.num_faces}, "
                f"joints={self.num_joints}, betas={self.num_betas}")


def _read_vertex_ids(model_file: str) -> Optional[dict]:
    path = os.path.join(os.path.dirname(os.path.abspath(model_file)), "vertex_ids.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            ids = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise BodyModelError(f"{path}: not a readable vertex_ids.json ({e})") from e
    if not isinstance(ids, dict):
        raise BodyModelError(f"{path}: expected a JSON object {{name: vertex index}}")
    missing = [n for n in VERTEX_JOINT_NAMES if n not in ids]
    if missing:
        raise BodyModelError(f"{path}: missing vertex ids {missing}")
    return {k: int(v) for k, v in ids.items()}


def build_body_model(
    model_dir: str,
    gender: str = "neutral",
    extra_regressor_path: Optional[str] = None,
    h36m_regressor_path: Optional[str] = None,
    num_betas: int = 10,
    dtype: torch.dtype = torch.float32,
) -> BodyModel:
    """Build a :class:`BodyModel` from ``<model_dir>/SMPL_<GENDER>.{npz,pkl}``.

    Args:
        model_dir: folder with the SMPL files (or one model file).
        gender: 'neutral' | 'male' | 'female' (or 'n' | 'm' | 'f').
        extra_regressor_path: ``J_regressor_extra.npy`` (9, V); without it ``.joints`` is None.
        h36m_regressor_path: ``J_regressor_h36m.npy`` (17, V) for :meth:`BodyModel.regress_h36m_joints`.
    """
    G = normalise_gender(gender)
    path = find_model_file(model_dir, G)
    data = load_smpl_data(path)
    V = np.asarray(data["v_template"]).shape[0]
    n_extra = len(constants.EXTRA_JOINT_NAMES)
    extra = _load_regressor(extra_regressor_path, V, n_extra, "extra joint") if extra_regressor_path else None
    h36m = _load_regressor(h36m_regressor_path, V, 17, "H36M joint") if h36m_regressor_path else None
    model = BodyModel(
        data,
        gender=G.lower(),
        vertex_ids=_read_vertex_ids(path),
        extra_regressor=extra,
        h36m_regressor=h36m,
        num_betas=num_betas,
        dtype=dtype,
        source=path,
    )
    logger.debug(f"body model {path}: {model.extra_repr()}")
    return model
