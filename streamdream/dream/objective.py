"""What the dream maximises: a weighted sum of layer objectives.

Without a guide, a layer's objective is its mean activation (over the chosen channels).
With a guide image, it is Google's original guided objective: every position is pulled
toward the guide feature it already matches best (sum over positions of the best dot
product with any guide feature).

Written in ``keras.ops``, so one objective serves every backend; ``extract`` lets a
backend's step call the network its own way (JAX: ``stateless_call`` inside ``jit``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from ..models.loader import DreamModel

MAX_GUIDE_FEATURES = 1024  # guide positions kept per layer; bounds the match matrix
#: float16 (engine.precision) flushes the backward pass's smallest gradients to zero: a mean
#: over a tile's activations gives each one 1/N, ~1e-5, under float16's smallest normal number
#: (6e-5). The steps differentiate the loss times this scale instead; the conditioning scales
#: every gradient to unit size anyway, so the step is the same. bfloat16 has float32's range.
LOSS_SCALES = {"float16": 4096.0}


def loss_scale(precision: str) -> float:
    """What a step multiplies the objective by before differentiating it, for ``precision``."""
    return LOSS_SCALES.get(precision, 1.0)


class Objective:
    def __init__(self, model: DreamModel, guide: np.ndarray | None = None) -> None:
        self.model = model
        self.weights = [float(spec.weight) for spec in model.layers]
        self.channels = [np.asarray(spec.channels, np.int32) if spec.channels else None for spec in model.layers]
        self.guide_features = None if guide is None else self._guide_features(guide)

    def activations(self, batch: Any, extract: Callable[[Any], Any] | None = None) -> list[Any]:
        """The dream layers' activations of a (N, H, W, 3) batch of 0-255 RGB pictures, float32."""
        inputs = self.model.preprocess(batch)
        outputs = extract(inputs) if extract else self.model.extractor(inputs, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        # float32 whatever the network computed in (engine.precision)
        outputs = [ops.cast(out, "float32") for out in outputs]
        return [out if ch is None else ops.take(out, ch, axis=-1) for out, ch in zip(outputs, self.channels)]

    def _guide_features(self, guide: np.ndarray) -> list[np.ndarray]:
        features = []
        rng = np.random.default_rng(0)
        for act in self.activations(np.asarray(guide, np.float32)[None]):
            flat = keras.ops.convert_to_numpy(act).reshape(-1, act.shape[-1])
            if len(flat) > MAX_GUIDE_FEATURES:
                flat = flat[rng.choice(len(flat), MAX_GUIDE_FEATURES, replace=False)]
            features.append(flat)
        return features

    def of_batch(self, batch: Any, extract: Callable[[Any], Any] | None = None) -> Any:
        """The objective of a (N, H, W, 3) batch: its layers' weighted means over all N."""
        total = 0.0
        for i, act in enumerate(self.activations(batch, extract)):
            if self.guide_features is None:
                value = ops.mean(act)
            else:
                flat = ops.reshape(act, (-1, act.shape[-1]))
                match = ops.matmul(flat, ops.transpose(ops.convert_to_tensor(self.guide_features[i])))
                value = ops.mean(ops.max(match, axis=1))
            total = total + self.weights[i] * value
        return total

    def __call__(self, image: Any, extract: Callable[[Any], Any] | None = None) -> Any:
        """The objective of one HxWx3 picture."""
        return self.of_batch(ops.expand_dims(image, 0), extract)
