"""Turn a ``model:`` config section into a DreamModel: a network cut at the chosen layers."""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import LayerSpec, ModelConfig
from ..errors import ModelError
from ..log import import_tensorflow
from .fold import fold_batchnorm as fold
from .registry import REGISTRY, Look, get_entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DreamModel:
    """A feature extractor from preprocessed images to the dream layers' activations."""

    name: str
    extractor: Any  # keras.Model: (1, H, W, 3) network input -> list of activations
    preprocess: Callable[[Any], Any]  # tf tensor 0-255 RGB -> network input, differentiable
    layers: tuple[LayerSpec, ...]
    look: Look | None = None  # the preset dreamed, with its calibrated settings; None for explicit layers


def make_preprocess(mode: str) -> Callable[[Any], Any]:
    """A differentiable 0-255 RGB -> network input mapping (keras' own ImageNet conventions)."""
    if mode == "lite":
        from .efficientnet_lite import preprocess  # noqa: PLC0415 - loads Keras and its backend

        return preprocess
    if mode == "raw":
        return lambda x: x
    from keras.applications import imagenet_utils  # noqa: PLC0415 - loads Keras and its backend

    return lambda x: imagenet_utils.preprocess_input(x, mode=mode)


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # at byte 0, 512, 1024, 2048... of an .h5 file


def keras_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a .keras (zip) or .h5 (HDF5) model file, or None; its first bytes only."""
    try:
        if path.suffix == ".keras":
            return None if zipfile.is_zipfile(path) else "a .keras file is a zip archive; this one is not"
        if path.suffix == ".h5":
            with open(path, "rb") as file:
                head = file.read(2048 + len(HDF5_SIGNATURE))
            if not any(head[offset : offset + 8] == HDF5_SIGNATURE for offset in (0, 512, 1024, 2048)):
                return "an .h5 file is an HDF5 file; this one is not"
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    return None


def _custom_model(path: Path) -> Any:
    import keras  # noqa: PLC0415 - loads Keras and its backend

    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    problem = keras_file_problem(path)
    if problem is not None:  # Keras itself would say "File not found" of a file that is there
        raise ModelError(f"model file {path} is not a Keras model file ({problem})")
    try:
        # safe_mode refuses lambda layers and other code stored in the file
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelError(f"cannot load model file {path}: {exc}") from None


def resolve_look(config: ModelConfig, presets: dict[str, Look], default: str | None) -> tuple[tuple[LayerSpec, ...], Look | None]:
    """The layers to dream and, when they come from a preset, the preset's look."""
    if config.layers:
        return config.layers, None
    preset = config.preset or default
    if preset is None:
        raise ModelError(f"model {config.name}: give `layers` (your own model has no presets)")
    if preset not in presets:
        raise ModelError(f"model {config.name}: unknown preset {preset!r}; choose one of {', '.join(presets)}")
    return presets[preset].layers, presets[preset]


def load_dream_model(config: ModelConfig, precision: str = "float32", fold_batchnorm: bool = True) -> DreamModel:
    """The network cut at the dream layers; ``precision`` "bfloat16" or "float16" builds it to
    compute in that type (weights and gradients stay float32: Keras' mixed_bfloat16 and
    mixed_float16 policies; the steps scale float16's loss, ``objective.LOSS_SCALE``);
    ``fold_batchnorm`` folds batch normalisations into their convolutions (``models/fold.py``)."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import_tensorflow()  # quietly, before keras pulls it in
    import keras  # noqa: PLC0415 - loads Keras and its backend

    if config.name in REGISTRY:
        entry = get_entry(config.name)
        base = entry.build(str(config.weights) if config.weights else None)
        layers, look = resolve_look(config, entry.presets, entry.default_preset)
        mode = config.preprocess or entry.preprocess_mode
    elif config.name.endswith((".keras", ".h5")):
        base = _custom_model(Path(config.name))
        layers, look = resolve_look(config, {}, None)
        mode = config.preprocess or "raw"
    else:
        get_entry(config.name)  # raises the error listing the choices
    if fold_batchnorm:
        base = fold(base)
    if precision in ("bfloat16", "float16"):
        policy = keras.dtype_policies.get(f"mixed_{precision}")
        for layer in base.layers:  # a built or loaded network alike; the weights stay float32
            if not isinstance(layer, keras.layers.InputLayer):
                layer.dtype_policy = policy
    names = {layer.name for layer in base.layers}
    outputs = []
    for spec in layers:
        if spec.name not in names:
            sample = ", ".join(sorted(names)[:40])
            raise ModelError(f"model {config.name} has no layer {spec.name!r}; its layers include: {sample}")
        out = base.get_layer(spec.name).output
        channels = int(out.shape[-1])
        bad = [c for c in spec.channels or () if not 0 <= c < channels]
        if bad:
            raise ModelError(f"layer {spec.name} has {channels} channels; channel(s) {bad} out of range 0..{channels - 1}")
        outputs.append(out)
    # a functional model on the chosen outputs keeps only the layers they depend on
    extractor = keras.Model(base.inputs, outputs, name=f"{base.name}_dream")
    log.info("model %s, layers %s", config.name, ", ".join(s.name for s in layers))
    return DreamModel(config.name, extractor, make_preprocess(mode), tuple(layers), look)
