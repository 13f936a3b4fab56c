"""What the dream maximises: a weighted sum of layer objectives.

Without a guide, a layer's objective is its mean activation (over the chosen channels).
With a guide image, it is Google's original guided objective: every position is pulled
toward the guide feature it already matches best (sum over positions of the best dot
product with any guide feature).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..models.loader import DreamModel

MAX_GUIDE_FEATURES = 1024  # guide positions kept per layer; bounds the match matrix


class Objective:
    def __init__(self, model: DreamModel, guide: np.ndarray | None = None) -> None:
        self.model = model
        self.weights = [float(spec.weight) for spec in model.layers]
        self.channels = [tf.constant(spec.channels, tf.int32) if spec.channels else None for spec in model.layers]
        self.guide_features = None if guide is None else self._guide_features(guide)

    def activations(self, image: tf.Tensor) -> list[tf.Tensor]:
        batch = self.model.preprocess(tf.expand_dims(image, 0))
        outputs = self.model.extractor(batch, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return [out if ch is None else tf.gather(out, ch, axis=-1) for out, ch in zip(outputs, self.channels)]

    def _guide_features(self, guide: np.ndarray) -> list[tf.Tensor]:
        features = []
        rng = np.random.default_rng(0)
        for act in self.activations(tf.convert_to_tensor(guide, tf.float32)):
            flat = tf.reshape(act, [-1, act.shape[-1]]).numpy()
            if len(flat) > MAX_GUIDE_FEATURES:
                flat = flat[rng.choice(len(flat), MAX_GUIDE_FEATURES, replace=False)]
            features.append(tf.constant(flat))
        return features

    def __call__(self, image: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for i, act in enumerate(self.activations(image)):
            if self.guide_features is None:
                value = tf.reduce_mean(act)
            else:
                flat = tf.reshape(act, [-1, tf.shape(act)[-1]])
                match = tf.matmul(flat, self.guide_features[i], transpose_b=True)
                value = tf.reduce_mean(tf.reduce_max(match, axis=1))
            total += self.weights[i] * value
        return total
