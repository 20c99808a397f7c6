"""``jitgrad.save`` / ``jitgrad.load``: checkpoints of state dicts in a NumPy-based format.

Format (``"jitgrad.save"``, version 1): an uncompressed ``.npz`` archive (``numpy.savez``)
holding

* ``tensor_<n>`` (``n = 0, 1, ...``): each tensor's elements as a NumPy array of its dtype and
  shape (C order), stored once even when the same tensor object occurs several times;
* ``structure``: a ``uint8`` array with the UTF-8 bytes of one JSON document
  ``{"format": "jitgrad.save", "version": 1, "root": NODE}``, where a NODE is

  - ``null``, ``true``/``false``, an integer, a string, a finite float, or a JSON array of
    NODEs (a Python list);
  - ``{"type": "float", "value": "nan" | "inf" | "-inf"}`` for non-finite floats;
  - ``{"type": "tuple", "items": [NODE, ...]}``;
  - ``{"type": "dict" | "OrderedDict", "items": [[KEY_NODE, NODE], ...]}`` (keys keep their
    type, e.g. the integer parameter indices of an optimizer's state, and their order);
  - ``{"type": "tensor", "key": "tensor_3", "dtype": "float32", "shape": [2, 3]}``;
  - ``{"type": "ndarray", ...}`` (same fields) for a NumPy array, loaded back as one;
  - ``{"type": "dtype", "name": "float32"}`` for a ``jitgrad.dtype``.

Nothing is pickled: ``load`` reads with ``allow_pickle=False``, so loading a file runs no code
from it, and any NumPy (``np.load(path)``) or JSON reader can inspect a checkpoint. NumPy scalars
are saved as Python numbers. Loaded tensors are plain tensors (``requires_grad`` False) with the
saved dtype and shape; ``Parameter``s are saved as their values.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import OrderedDict
from typing import IO, Any

import numpy as np

from . import dtypes
from .factories import from_numpy
from .tensor import Tensor

FORMAT = "jitgrad.save"
VERSION = 1
STRUCTURE_KEY = "structure"

__all__ = ["save", "load"]

_FileLike = str | os.PathLike | IO[bytes]
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._keys: dict[int, str] = {}  # id(tensor or array) -> its array's key
        self._keep: list = []  # holds encoded objects so their ids stay unique meanwhile
        self._open: set[int] = set()  # containers being encoded (to refuse cycles)

    def _array(self, obj, arr: np.ndarray, kind: str) -> dict:
        key = self._keys.get(id(obj))
        if key is None:
            key = f"tensor_{len(self.arrays)}"
            # C order (np.ascontiguousarray would turn a 0-d array into a 1-d one)
            self.arrays[key] = arr if arr.flags.c_contiguous else np.array(arr, order="C")
            self._keys[id(obj)] = key
            self._keep.append(obj)
        return {"type": kind, "key": key, "dtype": arr.dtype.name, "shape": list(arr.shape)}

    def encode(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            if math.isfinite(obj):
                return float(obj)  # a plain float (np.float64 is a subclass)
            return {"type": "float", "value": "nan" if math.isnan(obj) else repr(obj)}
        if isinstance(obj, Tensor):
            arr = obj.detach().numpy()
            dtypes.from_numpy_dtype(arr.dtype)
            return self._array(obj, arr, "tensor")
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise TypeError("jitgrad.save cannot store NumPy arrays of Python objects")
            return self._array(obj, obj, "ndarray")
        if isinstance(obj, np.generic):
            return self.encode(obj.item())
        if isinstance(obj, dtypes.dtype):
            return {"type": "dtype", "name": obj.name}
        if isinstance(obj, (list, tuple, dict)):
            if id(obj) in self._open:
                raise ValueError("jitgrad.save cannot store a structure that contains itself")
            self._open.add(id(obj))
            try:
                return self._container(obj)
            finally:
                self._open.discard(id(obj))
        hint = " save its state_dict() instead;" if hasattr(obj, "state_dict") else ""
        raise TypeError(
            f"jitgrad.save cannot store an object of type {type(obj).__name__};{hint} the format "
            "holds tensors, NumPy arrays, numbers, strings, None, dtypes and lists, tuples and "
            "dicts of them."
        )

    def _container(self, obj) -> Any:
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        if isinstance(obj, tuple):
            return {"type": "tuple", "items": [self.encode(v) for v in obj]}
        for k in obj:
            if isinstance(k, (Tensor, np.ndarray)):
                raise TypeError("jitgrad.save cannot store dicts keyed by tensors or arrays")
        kind = "OrderedDict" if isinstance(obj, OrderedDict) else "dict"
        return {"type": kind, "items": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}


def save(obj: Any, f: _FileLike) -> None:
    """Write ``obj`` (a state dict, or nested dicts/lists/tuples of tensors, numbers, strings
    and None) to ``f``, a path or a binary file object, in the format described above.

    A path is written exactly as given (no ``.npz`` suffix is added).
    """
    enc = _Encoder()
    root = enc.encode(obj)
    doc = json.dumps({"format": FORMAT, "version": VERSION, "root": root}, allow_nan=False)
    arrays = dict(enc.arrays)
    arrays[STRUCTURE_KEY] = np.frombuffer(doc.encode("utf-8"), dtype=np.uint8)
    if isinstance(f, (str, os.PathLike)):
        _write_whole(os.fspath(f), arrays)
    else:
        np.savez(f, **arrays)


def _write_whole(path: str, arrays: dict) -> None:
    """Write ``path`` so that it is never seen half written: into a temporary file beside it,
    then renamed over it (a process killed while saving, such as one rank of a training job,
    leaves the previous checkpoint intact). Special files and symlinks are written in place."""
    # an open file, because np.savez would append ".npz" to a path without that suffix
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isfile(path)):
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class _Decoder:
    def __init__(self, npz) -> None:
        self.npz = npz
        self._loaded: dict[str, Any] = {}  # one object per key, so shared tensors stay shared

    def _array(self, node: dict):
        key = node["key"]
        if key in self._loaded:
            return self._loaded[key]
        if key not in self.npz.files:
            raise RuntimeError(f"jitgrad.load: the checkpoint lacks the array {key!r}")
        arr = self.npz[key]
        if node["dtype"] == "bfloat16" and arr.dtype == np.dtype("V2"):
            arr = arr.view(dtypes.BFLOAT16_NP)  # (.npy keeps ml_dtypes' bfloat16 as raw bytes)
        if arr.dtype.name != node["dtype"] or list(arr.shape) != node["shape"]:
            raise RuntimeError(
                f"jitgrad.load: array {key!r} is {arr.dtype.name}{list(arr.shape)} but the "
                f"structure says {node['dtype']}{node['shape']}; the file is damaged."
            )
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.array(arr)
        out = from_numpy(arr) if node["type"] == "tensor" else arr
        self._loaded[key] = out
        return out

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        kind = node.get("type")
        if kind in ("tensor", "ndarray"):
            return self._array(node)
        if kind == "tuple":
            return tuple(self.decode(v) for v in node["items"])
        if kind in ("dict", "OrderedDict"):
            pairs = [(self.decode(k), self.decode(v)) for k, v in node["items"]]
            return OrderedDict(pairs) if kind == "OrderedDict" else dict(pairs)
        if kind == "float":
            return _NONFINITE[node["value"]]
        if kind == "dtype":
            return dtypes.as_dtype(node["name"])
        raise RuntimeError(f"jitgrad.load: unknown entry type {kind!r} in the checkpoint")


def load(f: _FileLike, map_location=None, *, weights_only: bool = True) -> Any:
    """Read what ``jitgrad.save`` wrote to ``f`` (a path or a binary file object).

    ``map_location`` may be None or ``"cpu"``; ``weights_only`` is accepted for signature
    compatibility: loading never unpickles, whatever its value.
    """
    if map_location is not None and dtypes.device(map_location).type != "cpu":
        raise ValueError(
            f"jitgrad.load: map_location={map_location!r} is not supported; load on the CPU "
            "and move the tensors afterwards."
        )
    if isinstance(f, (bytes, bytearray)):
        f = io.BytesIO(f)
    try:
        npz = np.load(f, allow_pickle=False)
    except ValueError as exc:
        raise RuntimeError(
            f"jitgrad.load: {f!r} is not a jitgrad checkpoint (NumPy could not read it as an "
            f".npz archive without unpickling: {exc})"
        ) from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise RuntimeError(
            f"jitgrad.load: {f!r} holds a single NumPy array, not a jitgrad checkpoint; read it "
            "with np.load."
        )
    with npz:
        if STRUCTURE_KEY not in npz.files:
            raise RuntimeError(
                f"jitgrad.load: {f!r} is an .npz archive without a {STRUCTURE_KEY!r} entry, so "
                "it was not written by jitgrad.save; read its arrays with np.load."
            )
        meta = json.loads(npz[STRUCTURE_KEY].tobytes().decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise RuntimeError(
                f"jitgrad.load: unknown checkpoint format {meta.get('format')!r} "
                f"(expected {FORMAT!r})"
            )
        if meta.get("version") != VERSION:
            raise RuntimeError(
                f"jitgrad.load: checkpoint format version {meta.get('version')!r} is not "
                f"supported by this jitgrad (it reads version {VERSION}); upgrade jitgrad."
            )
        return _Decoder(npz).decode(meta["root"])
