"""The student file: a distilled dreamer's weights, its shape and the teacher it learned from.

One ``.npz`` file, read with ``allow_pickle=False`` (never unpickled): the arrays
``w000``, ``w001``, ... are the network's weights in Keras' order, and ``meta`` is a JSON
document (as bytes) with

* ``format``: this module's ``FORMAT``;
* ``arch``: the network's shape (``dream/student.py`` builds it from these numbers);
* ``teacher``: the teacher's identity (model, preset, layers and the dream settings that
  shape its look), and ``teacher_key``, its sha256;
* ``weights_sha256``: the hash of every weight array (shape, dtype and bytes, in order);
* ``training``: what it was trained on and for how long (for the record only).

Loading checks, before any network is built: the file reads whole (a truncated or damaged
zip fails its CRC or its directory), the format is known, the weights match their hash, and
the teacher is the one the config dreams with (``check_teacher``): a student distilled from
another model, preset or dream settings would show another look under this config's name.
Numpy only: the preflight checks a student without loading TensorFlow.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DreamConfig, ModelConfig
from ..errors import StudentError
from .registry import REGISTRY

FORMAT = 1
SUFFIX = ".student.npz"
SHIPPED_DIR = Path(__file__).resolve().parent / "students"
#: the students in the package, by name, with the sha256 of their weights: a shipped file that
#: was changed or swapped is refused like a damaged weights download
SHIPPED: dict[str, str] = {
    "efficientnet_lite0-mid": "268f605c79532c2140c6755fbba175c1946d606cad0eeaed8044b78365020cdf",
}
#: dream settings that shape the teacher's look; the others (strength, detail level, tones, width,
#: tiles, seed) are applied when the detail is shown, for teacher and student alike
LOOK_FIELDS = ("octaves", "octave_scale", "steps", "step_size", "jitter", "transform_scale", "transform_rotate",
               "laplacian_levels", "fine_gain", "gradient_blur", "decorrelate")
PRESET_FIELDS = ("octaves", "octave_scale", "steps", "step_size")


def teacher_identity(model: ModelConfig, dream: DreamConfig) -> dict[str, Any]:
    """What a student must have learned from to stand in for ``model`` + ``dream``'s full dream."""
    entry = REGISTRY.get(model.name)
    preset = None if model.layers else (model.preset or (entry.default_preset if entry else None))
    look = entry.presets.get(preset) if entry is not None and preset is not None else None
    if model.layers or look is None:
        specs = model.layers or ()
        layers = [[s.name, s.weight, list(s.channels) if s.channels else None] for s in specs]
    else:
        layers = [[s.name, s.weight, list(s.channels) if s.channels else None] for s in look.layers]
    settings: dict[str, Any] = {}
    for name in LOOK_FIELDS:
        value = getattr(dream, name)
        if value is None and name in PRESET_FIELDS:
            value = getattr(look, name) if look is not None else {"octaves": 4, "octave_scale": 1.4, "steps": 10,
                                                                    "step_size": 2.0}[name]
        settings[name] = value
    return {
        "model": model.name,
        "weights": model.weights.name if model.weights else None,
        "preset": preset,
        "layers": layers,
        "guide": str(dream.guide) if dream.guide else None,
        "settings": settings,
    }


def identity_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def describe(identity: dict[str, Any]) -> str:
    """``efficientnet_lite0 preset mid (octaves 4, steps 10, ...)``: a teacher, for messages."""
    what = f"preset {identity['preset']}" if identity.get("preset") else "layers " + ",".join(layer[0] for layer in identity["layers"])
    settings = ", ".join(f"{k} {v}" for k, v in identity["settings"].items())
    return f"{identity['model']} {what} ({settings})"


def weights_sha256(weights: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in weights:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class StudentFile:
    """A student as read from disk and checked: its weights and what ``meta`` says about them."""

    path: Path
    weights: list[np.ndarray]
    meta: dict[str, Any]

    @property
    def arch(self) -> dict[str, Any]:
        return self.meta["arch"]

    @property
    def teacher(self) -> dict[str, Any]:
        return self.meta["teacher"]

    @property
    def sha256(self) -> str:
        return self.meta["weights_sha256"]


def save_student(path: Path, weights: list[np.ndarray], arch: dict[str, Any], teacher: dict[str, Any],
                 training: dict[str, Any] | None = None) -> StudentFile:
    """Write a student whole or not at all (a temporary file renamed into place)."""
    weights = [np.asarray(w, np.float32) for w in weights]
    meta = {
        "format": FORMAT,
        "arch": arch,
        "teacher": teacher,
        "teacher_key": identity_key(teacher),
        "weights_sha256": weights_sha256(weights),
        "training": training or {},
    }
    arrays: dict[str, Any] = {f"w{i:03d}": w for i, w in enumerate(weights)}  # savez's keywords: names to arrays
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return StudentFile(path, weights, meta)


def shipped_path(name: str) -> Path | None:
    """The file of the shipped student ``name`` (e.g. ``efficientnet_lite0-mid``), if there is one."""
    path = SHIPPED_DIR / f"{name}{SUFFIX}"
    return path if name in SHIPPED and path.is_file() else None


def resolve_student(value: str | None, model: ModelConfig) -> Path:
    """``dream.student``: a file, the name of a shipped student, or None for the shipped one of
    the config's model and preset."""
    if value is None:
        entry = REGISTRY.get(model.name)
        name = f"{model.name}-{model.preset or (entry.default_preset if entry else '')}"
        path = shipped_path(name)
        if path is None:
            shipped = ", ".join(SHIPPED) or "none"
            raise StudentError(f"dream.engine is student but dream.student is not set, and no student ships for "
                               f"{name} (shipped: {shipped}); distill one: streamdream distill -o my{SUFFIX}")
        return path
    return shipped_path(value) or Path(value)


def load_student(path: Path) -> StudentFile:
    """Read and check a student file (see the module docstring); ``StudentError`` says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise StudentError(f"student file {path} does not exist (shipped students: {', '.join(SHIPPED) or 'none'})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}  # reads every member: CRCs checked
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise StudentError(f"student file {path} is truncated or damaged ({exc}); distill it again") from None
    try:
        meta = json.loads(arrays.pop("meta").tobytes())
    except (KeyError, ValueError) as exc:
        raise StudentError(f"student file {path} has no readable meta record ({exc}); is it a {SUFFIX} file?") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StudentError(f"student file {path} has format {meta.get('format') if isinstance(meta, dict) else None!r}; "
                           f"this streamdream reads format {FORMAT}")
    weights = [arrays[name] for name in sorted(arrays)]
    actual = weights_sha256(weights)
    if actual != meta.get("weights_sha256"):
        raise StudentError(f"student file {path}: its weights do not match their recorded sha256 (damaged or "
                           f"altered); distill it again")
    for name, expected in SHIPPED.items():
        if path.resolve() == (SHIPPED_DIR / f"{name}{SUFFIX}").resolve() and actual != expected:
            raise StudentError(f"shipped student {name} ({path}) does not match its sha256 {expected[:12]}...: "
                               f"reinstall streamdream")
    return StudentFile(path, weights, meta)


def check_teacher(student: StudentFile, model: ModelConfig, dream: DreamConfig) -> None:
    """Refuse a student whose teacher is not the full dream ``model`` + ``dream`` describe."""
    wanted = teacher_identity(model, dream)
    if student.meta.get("teacher_key") == identity_key(wanted) and identity_key(student.teacher) == identity_key(wanted):
        return
    differs = [key for key in ("model", "weights", "preset", "layers", "guide") if student.teacher.get(key) != wanted.get(key)]
    differs += [f"dream.{k}" for k, v in wanted["settings"].items() if student.teacher.get("settings", {}).get(k) != v]
    raise StudentError(
        f"student {student.path} was distilled from another teacher: {describe(student.teacher)}; this config "
        f"dreams with {describe(wanted)} (differs in: {', '.join(differs) or 'its record'}). Use the student's "
        f"model and preset, or distill one for this config: streamdream distill --config YOUR.yaml -o NEW{SUFFIX}"
    )


__all__ = ["FORMAT", "LOOK_FIELDS", "SHIPPED", "SUFFIX", "StudentFile", "check_teacher", "describe", "identity_key",
           "load_student", "resolve_student", "save_student", "shipped_path", "teacher_identity"]
