"""Restricted unpickling: read pickled data files without running code from them.

A pickle can name any importable callable, so ``pickle.load`` of a file from the web may run
arbitrary code. :class:`RestrictedUnpickler` resolves only an allow-list: numpy arrays, dtypes
and scalars, plain containers (dict, list, tuple, set, OrderedDict, ...), and the helpers pickles
of those use (``copyreg._reconstructor``, ``_codecs.encode`` for bytes written by Python 2);
every other class raises ``pickle.UnpicklingError`` naming the file and the class. Subclasses
extend the list through :meth:`RestrictedUnpickler.extra_class` (the SMPL reader adds
scipy.sparse matrices and chumpy arrays, dsr.body.smpl_io).

``load_pickle(path)`` reads a data file (EMDB sequence pkls, 3DPW sequence files) with
``encoding='latin1'`` (Python-2 pickles of numpy arrays) and raises :class:`UnsafePickleError`
(a ValueError) naming the file on a refused class or an unreadable file. ``load_npz(path)`` reads
an .npz whose object members (old string lists) go through the same unpickler (or the one the
caller passes).
"""
from __future__ import annotations

import pickle
from typing import Any, Callable

import numpy as np

__all__ = ["RestrictedUnpickler", "UnsafePickleError", "load_npz", "load_pickle", "restricted_loads"]

_NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}
_NUMPY_MODULES = {
    "numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
    "numpy._core.numeric", "numpy.core", "numpy._core",
}
_BUILTINS = {"object", "set", "frozenset", "dict", "list", "tuple", "slice", "complex", "bytearray", "bool",
             "int", "float", "str", "bytes"}


class UnsafePickleError(ValueError):
    """A pickle names a class outside the allow-list, or is not a readable pickle."""


def _numpy_internal(name: str):
    try:
        import numpy._core.multiarray as ma
        import numpy._core.numeric as nu
    except ImportError:  # numpy < 2
        import numpy.core.multiarray as ma
        import numpy.core.numeric as nu
    return getattr(nu, name) if name == "_frombuffer" else getattr(ma, name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves numpy data types and plain containers only (module docstring)."""

    allowed = "numpy arrays and plain containers"

    def __init__(self, file, path: str, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self._path = path

    def extra_class(self, module: str, name: str) -> Any:
        """A class a subclass allows besides the base list, or None."""
        return None

    def refuse_message(self, module: str, name: str) -> str:
        return f"{self._path}: refusing to unpickle class {module}.{name} (only {self.allowed} are allowed)"

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MODULES and name in _NUMPY_NAMES:
            if name in ("_reconstruct", "scalar", "_frombuffer"):
                return _numpy_internal(name)
            return getattr(np, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            import numpy.dtypes as npd

            return getattr(npd, name)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            import copyreg

            return copyreg._reconstructor
        if module in ("__builtin__", "builtins") and name in _BUILTINS:
            import builtins

            return getattr(builtins, name)
        if module == "_codecs" and name == "encode":  # bytes in protocol < 3 pickles from Python 3
            import codecs

            return codecs.encode
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        found = self.extra_class(module, name)
        if found is not None:
            return found
        raise pickle.UnpicklingError(self.refuse_message(module, name))


def restricted_loads(data: bytes, path: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (UnsafePickleError on failure)."""
    import io

    return _load(io.BytesIO(data), path)


def _load(fileobj, path: str) -> Any:
    try:
        return RestrictedUnpickler(fileobj, path).load()
    except pickle.UnpicklingError as e:
        msg = str(e)
        raise UnsafePickleError(msg if path in msg else f"{path}: not a readable pickle ({msg})") from e
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError) as e:
        raise UnsafePickleError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e


def load_pickle(path: str) -> Any:
    """Read the pickle at ``path`` through :class:`RestrictedUnpickler` (latin-1 strings)."""
    with open(path, "rb") as f:
        return _load(f, path)


def load_npz(path: str, unpickle: Callable[[Any, str], Any] | None = None) -> dict:
    """Read an .npz member by member: plain arrays with ``allow_pickle=False``, object arrays
    (e.g. lists of strings saved by an old numpy) through :class:`RestrictedUnpickler`.
    Raises UnsafePickleError naming the file on an unreadable archive or a refused class.

    ``unpickle(fileobj, name)`` replaces the reader of object members (``name`` is
    ``path[member]``); the SMPL reader passes its own allow-list and error type this way."""
    import io
    import zipfile

    out = {}
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UnsafePickleError(f"{path}: not a valid .npz archive ({e})") from e
    with zf:
        for member in zf.namelist():
            if not member.endswith(".npy"):
                continue
            key = member[: -len(".npy")]
            with zf.open(member) as fm:
                buf = io.BytesIO(fm.read())
            try:
                version = np.lib.format.read_magic(buf)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                _, _, dtype = header(buf)
            except ValueError as e:
                raise UnsafePickleError(f"{path}: member '{key}' is not a .npy array ({e})") from e
            if dtype.hasobject:
                out[key] = (unpickle or _load)(buf, f"{path}[{key}]")
            else:
                buf.seek(0)
                out[key] = np.lib.format.read_array(buf, allow_pickle=False)
    return out
