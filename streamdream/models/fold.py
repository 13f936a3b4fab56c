"""Batch normalisation folded into the convolution before it (``engine.fold_batchnorm``).

A network used for inference computes ``BN(conv(x))`` with fixed statistics, which is the
same affine map as one convolution with scaled kernels and a bias. Folding it leaves the
dream's numbers equal to float32 rounding (``test_engine_speed.py`` checks 1e-4) and takes
two elementwise passes, and their gradients, off every convolution: on EfficientNet-Lite0
that was a third of the step's time (``streamdream bench``).

Works on any functional Keras model: a ``BatchNormalization`` on the last axis whose only
input is a ``Conv2D`` or ``DepthwiseConv2D`` that feeds nothing else is folded; every other
layer is copied as it is. The folded batch normalisations become ``Identity`` layers of the
same name, so a preset or a user's ``layers:`` naming one still finds it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _foldable(model: Any) -> dict[str, Any]:
    """BatchNormalization name -> the convolution it folds into."""
    import keras  # noqa: PLC0415 - loads Keras and its backend

    convs = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    consumers: Counter[str] = Counter()
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                consumers[tensor._keras_history.operation.name] += 1
    for output in model.outputs:  # an output read directly counts as a consumer too
        consumers[output._keras_history.operation.name] += 1
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0] if len(layer.axis) == 1 else None
        inputs = layer._inbound_nodes[0].input_tensors
        if axis not in (-1, len(inputs[0].shape) - 1) or len(inputs) != 1:
            continue
        conv = inputs[0]._keras_history.operation
        if (type(conv) in convs and len(conv._inbound_nodes) == 1 and consumers[conv.name] == 1
                and conv.data_format == "channels_last"):
            pairs[layer.name] = conv
    return pairs


def _folded_weights(conv: Any, bn: Any) -> list[np.ndarray]:
    """The convolution's kernel and bias with ``bn`` folded in."""
    import keras  # noqa: PLC0415 - loads Keras and its backend

    weights = {w.path.rsplit("/", 1)[-1]: np.asarray(keras.ops.convert_to_numpy(w), np.float64) for w in bn.weights}
    mean, variance = weights["moving_mean"], weights["moving_variance"]
    gamma = weights.get("gamma", np.ones_like(mean))
    beta = weights.get("beta", np.zeros_like(mean))
    scale = gamma / np.sqrt(variance + bn.epsilon)
    kernel = np.asarray(keras.ops.convert_to_numpy(conv.kernel), np.float64)
    bias = np.asarray(keras.ops.convert_to_numpy(conv.bias), np.float64) if conv.use_bias else 0.0
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # (kh, kw, in, multiplier): out = in * multiplier + m
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # (kh, kw, in / groups, out)
        kernel = kernel * scale
    return [kernel.astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)]


def fold_batchnorm(model: Any) -> Any:
    """``model`` with every foldable batch normalisation folded; ``model`` itself if none is."""
    import keras  # noqa: PLC0415 - loads Keras and its backend
    from keras.src.models.functional import Functional  # noqa: PLC0415 - loads Keras and its backend

    if not isinstance(model, Functional):  # a subclassed model has no graph to rewrite
        return model
    pairs = _foldable(model)
    if not pairs:
        return model
    folded_convs = {conv.name: bn_name for bn_name, conv in pairs.items()}

    def clone(layer: Any) -> Any:
        if layer.name in pairs:
            return keras.layers.Identity(name=layer.name)
        config = layer.get_config()
        if layer.name in folded_convs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        # an Identity takes no ``training`` or ``mask``, which the BatchNormalization had
        return layer(args[0]) if layer.name in pairs else layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in model.layers:
        if layer.name in pairs or not layer.weights:
            continue
        target = folded.get_layer(layer.name)
        if layer.name in folded_convs:
            target.set_weights(_folded_weights(layer, model.get_layer(folded_convs[layer.name])))
        else:
            target.set_weights(layer.get_weights())
    log.info("folded %d batch normalisations into their convolutions", len(pairs))
    return folded


__all__ = ["fold_batchnorm"]
