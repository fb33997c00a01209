"""Reading SMPL-format body model files without chumpy.

Two formats are read:

* the original ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` (Python-2 pickles holding chumpy ``Ch`` arrays,
  numpy arrays and a scipy sparse ``J_regressor``). A restricted unpickler rebuilds chumpy arrays
  as plain numpy arrays from their pickled state (``x``) and refuses every class outside a short
  allow-list (numpy arrays/dtypes/scalars, scipy sparse matrices, chumpy ``Ch``, a few builtins),
  so no code from the file is run and chumpy need not be installed. Other chumpy classes
  (expressions) become inert placeholders: an error only if the model needs that array;
* smplx-style ``.npz`` files (plain arrays; object members such as a pickled sparse
  ``J_regressor`` are read through the same restricted unpickler).

``load_smpl_data(path) -> dict`` returns the arrays under their SMPL names
(``v_template`` (V,3), ``shapedirs`` (V,3,S), ``posedirs`` (V,3,P) or (P,3V), ``J_regressor``
(J,V) dense or sparse, ``weights`` (V,J), ``kintree_table`` (2,J), ``f`` (F,3)).
``find_model_file(model_dir, gender)`` resolves the file of one gender in a model folder.
Every failure raises :class:`BodyModelError` naming the path, the expected file names and where
SMPL is obtained.
"""
from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import scipy.sparse

from dsr.safe_pickle import RestrictedUnpickler, UnsafePickleError, load_npz

__all__ = ["BodyModelError", "load_smpl_data", "find_model_file", "normalise_gender", "SMPL_SOURCE_HINT"]

SMPL_SOURCE_HINT = (
    "Expected SMPL_NEUTRAL, SMPL_MALE and SMPL_FEMALE as .pkl (original SMPL, e.g. "
    "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl renamed) or smplx-style .npz. SMPL is obtained "
    "from https://smpl.is.tue.mpg.de (registration required) or from the dsr_data zip of the "
    "original DSR repository; the embedded free model lives in dsr/assets/free_body/smpl."
)

_GENDERS = {"neutral": "NEUTRAL", "n": "NEUTRAL", "male": "MALE", "m": "MALE", "female": "FEMALE", "f": "FEMALE"}


class BodyModelError(RuntimeError):
    """A body model file (or folder) is missing or malformed; the message names the path."""


def normalise_gender(gender: str) -> str:
    """'neutral'|'male'|'female' (or 'n'|'m'|'f', any case) -> 'NEUTRAL'|'MALE'|'FEMALE'."""
    g = str(gender).strip().lower()
    if g not in _GENDERS:
        raise ValueError(f"unknown gender {gender!r}; expected one of neutral, male, female (or n, m, f)")
    return _GENDERS[g]


def find_model_file(model_dir: str, gender: str = "neutral") -> str:
    """Path of ``SMPL_<GENDER>.npz`` (preferred) or ``.pkl`` in ``model_dir``.

    ``model_dir`` may also be the model file itself.
    """
    G = normalise_gender(gender)
    if os.path.isfile(model_dir):
        return model_dir
    if not os.path.isdir(model_dir):
        raise BodyModelError(f"SMPL model folder not found: {model_dir!r}. {SMPL_SOURCE_HINT}")
    for ext in ("npz", "pkl"):
        p = os.path.join(model_dir, f"SMPL_{G}.{ext}")
        if os.path.isfile(p):
            return p
    raise BodyModelError(
        f"no SMPL_{G}.npz or SMPL_{G}.pkl in {model_dir!r} (found: {sorted(os.listdir(model_dir))[:10]}). "
        f"{SMPL_SOURCE_HINT}"
    )


# ----------------------------------------------------------------------------- restricted unpickling
class _ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch`` during unpickling: keeps the pickled state only."""

    chumpy_class = "chumpy.ch.Ch"

    def __setstate__(self, state):
        self.state = state


_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}


class _RestrictedUnpickler(RestrictedUnpickler):
    """dsr.safe_pickle's allow-list + scipy.sparse matrices and chumpy arrays (SMPL model files)."""

    def extra_class(self, module: str, name: str) -> Any:
        if module.startswith("scipy.sparse") and name in _SPARSE_NAMES:
            return getattr(scipy.sparse, name)
        if module == "chumpy.ch" and name == "Ch":
            return _ChumpyArray
        if module.startswith("chumpy"):
            # Other chumpy classes (expressions): kept as inert data; an error is raised only if
            # a key the body model needs holds one (see _dechumpy).
            return type(name, (_ChumpyArray,), {"chumpy_class": f"{module}.{name}"})
        return None

    def refuse_message(self, module: str, name: str) -> str:
        return (f"{self._path}: refusing to unpickle class {module}.{name} (only numpy, scipy.sparse and "
                f"chumpy arrays are allowed in an SMPL model file). {SMPL_SOURCE_HINT}")


class _UnreadableChumpy:
    """A chumpy expression (not a plain array) found in the file; unusable without chumpy."""

    def __init__(self, cls: str):
        self.cls = cls


def _dechumpy(obj, path: str, key: str):
    """Replace chumpy stand-ins by numpy arrays (recursively in dicts/lists)."""
    if isinstance(obj, _ChumpyArray):
        state = getattr(obj, "state", None)
        if obj.chumpy_class != "chumpy.ch.Ch" or not isinstance(state, dict) or "x" not in state:
            return _UnreadableChumpy(obj.chumpy_class)
        return np.asarray(_dechumpy(state["x"], path, key))
    if isinstance(obj, dict):
        return {k: _dechumpy(v, path, k if isinstance(k, str) else key) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_dechumpy(v, path, key) for v in obj)
    return obj


def _restricted_load(fileobj, path: str):
    try:
        return _RestrictedUnpickler(fileobj, path).load()
    except pickle.UnpicklingError as e:
        if path in str(e):
            raise BodyModelError(str(e)) from e
        raise BodyModelError(f"{path}: not a readable SMPL pickle ({e}). {SMPL_SOURCE_HINT}") from e
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise BodyModelError(f"{path}: not a readable SMPL pickle ({type(e).__name__}: {e}). {SMPL_SOURCE_HINT}") from e


def _load_pkl(path: str) -> dict:
    with open(path, "rb") as f:
        data = _restricted_load(f, path)
    if not isinstance(data, dict):
        raise BodyModelError(f"{path}: expected a dict of SMPL arrays, got {type(data).__name__}. {SMPL_SOURCE_HINT}")
    return _dechumpy(data, path, "")


def _load_npz(path: str) -> dict:
    """Read an .npz member by member (dsr.safe_pickle.load_npz); object members go through the
    SMPL unpickler and lose their chumpy arrays; a 0-d object array becomes its item."""
    try:
        data = load_npz(path, unpickle=lambda fileobj, _name: _restricted_load(fileobj, path))
    except UnsafePickleError as e:  # the archive or a member header (an object member raises BodyModelError)
        raise BodyModelError(f"{e}. {SMPL_SOURCE_HINT}") from e
    out = {}
    for key, obj in data.items():
        obj = _dechumpy(obj, path, key)
        if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
            obj = obj.item()
        out[key] = _dechumpy(obj, path, key)
    return out


_REQUIRED = ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f")


def load_smpl_data(path: str) -> dict:
    """Read an SMPL-format model file (.pkl or .npz) into a dict of numpy / scipy-sparse arrays.

    Checks that the required keys exist and that their shapes agree (V vertices, J joints).
    """
    if not os.path.isfile(path):
        raise BodyModelError(f"SMPL model file not found: {path!r}. {SMPL_SOURCE_HINT}")
    if path.endswith(".npz"):
        data = _load_npz(path)
    elif path.endswith(".pkl"):
        data = _load_pkl(path)
    else:
        raise BodyModelError(f"{path}: unknown SMPL model file type (expected .pkl or .npz). {SMPL_SOURCE_HINT}")
    unreadable = {k: data[k].cls for k in list(_REQUIRED) + ["posedirs"] if isinstance(data.get(k), _UnreadableChumpy)}
    if unreadable:
        raise BodyModelError(
            f"{path}: arrays {unreadable} are chumpy expressions, not plain chumpy arrays; convert the file to "
            f".npz with chumpy installed. {SMPL_SOURCE_HINT}"
        )
    data = {k: v for k, v in data.items() if not isinstance(v, _UnreadableChumpy)}
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise BodyModelError(f"{path}: missing SMPL arrays {missing} (has {sorted(data)}). {SMPL_SOURCE_HINT}")
    _check_shapes(data, path)
    return data


def _check_shapes(d: dict, path: str) -> None:
    def bad(msg):
        raise BodyModelError(f"{path}: malformed SMPL model: {msg}. {SMPL_SOURCE_HINT}")

    vt = np.asarray(d["v_template"])
    if vt.ndim != 2 or vt.shape[1] != 3:
        bad(f"v_template has shape {vt.shape}, expected (V, 3)")
    V = vt.shape[0]
    kt = np.asarray(d["kintree_table"])
    if kt.ndim != 2 or kt.shape[0] != 2:
        bad(f"kintree_table has shape {kt.shape}, expected (2, J)")
    J = kt.shape[1]
    sd = np.asarray(d["shapedirs"])
    if sd.ndim != 3 or sd.shape[:2] != (V, 3):
        bad(f"shapedirs has shape {sd.shape}, expected ({V}, 3, S)")
    jr = d["J_regressor"]
    if tuple(jr.shape) != (J, V):
        bad(f"J_regressor has shape {tuple(jr.shape)}, expected ({J}, {V})")
    w = np.asarray(d["weights"])
    if w.shape != (V, J):
        bad(f"weights has shape {w.shape}, expected ({V}, {J})")
    f = np.asarray(d["f"])
    if f.ndim != 2 or f.shape[1] != 3 or f.size == 0 or f.min() < 0 or f.max() >= V:
        bad(f"f has shape {f.shape} or indices outside [0, {V})")
    if "posedirs" in d and d["posedirs"] is not None:
        pd = np.asarray(d["posedirs"])
        P = 9 * (J - 1)
        if not (pd.shape == (V, 3, P) or pd.shape == (P, 3 * V)):
            bad(f"posedirs has shape {pd.shape}, expected ({V}, 3, {P}) or ({P}, {3 * V})")
