"""``save`` / ``load``: checkpoints as ``.npz`` files, without pickle.

A checkpoint is usually a nested structure, e.g.
``{'model': model.state_dict(), 'optimizer': opt.state_dict(), 'epoch': 3}``. ``save`` walks
it once: every tensor or array becomes one entry of the ``.npz`` archive (``a0``, ``a1``, ...)
and everything else (dicts, lists, numbers, strings) becomes a JSON description of the
structure that points at those entries. ``load`` reverses the walk. Since nothing is pickled,
loading a checkpoint cannot run code, and the file opens with plain ``numpy.load``.

Writes are atomic: the archive goes to a temporary file in the same directory, which then
replaces the target with ``os.replace``. A crash mid-write leaves the previous checkpoint
intact, and the temporary file is removed.
"""
from __future__ import annotations

import json
import os
import uuid
import zipfile
from collections import Counter, OrderedDict

import numpy as np

from . import backend
from .tensor import Tensor

__all__ = ["save", "load"]

_FORMAT = "tinynet-checkpoint"
_VERSION = 1
_HEADER = "__tinynet__"  # the archive entry holding the JSON description
# Dict types that come back as themselves (Counter: MultiStepLR's milestones); other dict
# subclasses come back as plain dicts.
_DICT_TYPES = {"dict": dict, "odict": OrderedDict, "counter": Counter}


# ---------------------------------------------------------------------------------------------
# Structure <-> JSON. Containers and arrays become {"type": ...} objects; JSON scalars (int,
# float, bool, None, str) stand for themselves.
class _Encoder:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self._tensor_names: dict[int, str] = {}  # id(tensor) -> entry, so shared tensors stay shared

    def _add_array(self, array) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = np.asarray(backend.to_device(array, "cpu"))
        return name

    def encode(self, obj, path: str):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, Tensor):
            from .nn.parameter import Parameter  # here: nn imports this package's modules
            if id(obj) not in self._tensor_names:
                self._tensor_names[id(obj)] = self._add_array(obj.data)
            return {"type": "parameter" if isinstance(obj, Parameter) else "tensor",
                    "array": self._tensor_names[id(obj)], "requires_grad": obj.requires_grad}
        if isinstance(obj, np.generic):
            return {"type": "scalar", "array": self._add_array(np.asarray(obj))}
        if isinstance(obj, np.ndarray) or backend.get_array_module(obj) is not np:
            if obj.dtype.kind not in "biufc":
                raise TypeError(f"save: cannot save an array of dtype {obj.dtype} at {path}")
            return {"type": "ndarray", "array": self._add_array(obj)}
        if isinstance(obj, dict):
            kind = next((k for k, t in _DICT_TYPES.items() if type(obj) is t), "dict")
            return {"type": kind,
                    "keys": [self._encode_key(k, path) for k in obj],
                    "values": [self.encode(v, f"{path}[{k!r}]") for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            return {"type": "tuple" if isinstance(obj, tuple) else "list",
                    "items": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]}
        raise TypeError(f"save: cannot save an object of type {type(obj).__name__} at {path}; checkpoints hold "
                        "tensors, arrays, numbers, strings, None, and dicts/lists/tuples of them")

    def _encode_key(self, key, path: str):
        if isinstance(key, np.generic):
            key = key.item()
        if key is None or isinstance(key, (bool, int, float, str)):
            return key
        if isinstance(key, tuple):
            return {"type": "tuple", "items": [self._encode_key(k, path) for k in key]}
        raise TypeError(f"save: dict key {key!r} at {path} has type {type(key).__name__}; "
                        "keys must be strings, numbers, None or tuples of them")


def _decode(node, archive, device, tensors: dict):
    if not isinstance(node, dict):
        return node
    kind = node["type"]
    if kind in _DICT_TYPES:
        pairs = ((_decode_key(k), _decode(v, archive, device, tensors)) for k, v in zip(node["keys"], node["values"]))
        return _DICT_TYPES[kind](dict(pairs))
    if kind in ("list", "tuple"):
        items = [_decode(v, archive, device, tensors) for v in node["items"]]
        return tuple(items) if kind == "tuple" else items
    array = archive[node["array"]]
    if kind == "scalar":
        return array[()]
    if kind == "ndarray":
        return array
    if node["array"] not in tensors:
        from .nn.parameter import Parameter
        data = backend.to_device(array, device)
        cls = Parameter if kind == "parameter" else Tensor
        tensors[node["array"]] = cls(data, requires_grad=node["requires_grad"])
    return tensors[node["array"]]


def _decode_key(key):
    if isinstance(key, dict):
        return tuple(_decode_key(k) for k in key["items"])
    return key


# ---------------------------------------------------------------------------------------------
def _write_npz(file, arrays: dict) -> None:
    """Write the archive (a function of its own so that tests can make it fail mid-write)."""
    np.savez(file, allow_pickle=False, **arrays)


def save(obj, f) -> None:
    """Save ``obj`` (a state_dict, or a nested dict/list of tensors, arrays, numbers, strings
    and None) to ``f``, a path or a binary file object, as a ``.npz`` archive.

    The name is used as given (no ``.npz`` is appended). Writing to a path is atomic: the
    previous file at ``f`` stays intact if anything fails.

    Example::

        >>> tinynet.save({'model': model.state_dict(), 'epoch': 3}, 'checkpoint.npz')
    """
    encoder = _Encoder()
    root = encoder.encode(obj, "checkpoint")
    header = json.dumps({"format": _FORMAT, "version": _VERSION, "root": root})
    arrays = {_HEADER: np.frombuffer(header.encode("utf-8"), dtype=np.uint8), **encoder.arrays}

    if hasattr(f, "write"):
        _write_npz(f, arrays)
        return
    path = os.fspath(f)
    directory = os.path.dirname(os.path.abspath(path))
    tmp_path = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with mode 0o666 lets the umask decide permissions, as for any new file.
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as tmp:
            _write_npz(tmp, arrays)
            tmp.flush()
            os.fsync(tmp.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.remove(tmp_path)
        except FileNotFoundError:
            pass
        raise


def _read_header(archive) -> dict | None:
    """The checkpoint's JSON description, or None if the archive is not a tinynet checkpoint."""
    try:
        raw = archive[_HEADER] if _HEADER in archive.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8:
        return None
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        return None
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        return None
    return header


def load(f, map_location=None, *, weights_only: bool = True):
    """Load what :func:`save` wrote to ``f`` (a path or a binary file object).

    Args:
        map_location: device for the tensors (``'cpu'``, ``'cuda'``, ``'cuda:1'``, a Device).
            Default: cpu. (``model.load_state_dict`` then copies them to the model's device.)
        weights_only: accepted for PyTorch compatibility; tinynet checkpoints never contain
            pickled code, so loading is always weights-only.

    Returns:
        The saved structure: tensors come back as tinynet Tensors (Parameters as
        Parameters), arrays as NumPy arrays, dicts, lists and tuples as they were.

    Raises:
        RuntimeError: if ``f`` is not a tinynet checkpoint.
    """
    if map_location is not None and not isinstance(map_location, (str, backend.Device)):
        raise TypeError(f"load: map_location must be a device such as 'cpu' or 'cuda:0', got "
                        f"{type(map_location).__name__}")
    device = backend.device(map_location) if map_location is not None else backend.CPU
    name = repr(getattr(f, "name", f) if hasattr(f, "read") else os.fspath(f))
    not_a_checkpoint = f"load: {name} is not a tinynet checkpoint (expected an .npz archive written by tinynet.save)"
    try:
        archive = np.load(f, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise RuntimeError(not_a_checkpoint) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise RuntimeError(not_a_checkpoint)
    with archive:
        header = _read_header(archive)
        if header is None:
            raise RuntimeError(not_a_checkpoint)
        if header.get("version", 0) > _VERSION:
            raise RuntimeError(f"load: {name} was written by a newer tinynet (checkpoint format version "
                               f"{header['version']}, this tinynet reads up to {_VERSION})")
        try:
            arrays = {key: archive[key] for key in archive.files if key != _HEADER}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise RuntimeError(f"load: {name} is a damaged tinynet checkpoint: {exc}") from exc
    return _decode(header["root"], arrays, device, {})
