"""The gradient loop on Keras' JAX backend.

One ``jax.jit`` per frame size and step count: a ``lax.scan`` over the steps' random
transforms (drawn on the host, see ``conditioning.random_transforms``), each step the
network's gradient by ``jax.grad`` through ``stateless_call`` (the weights are arguments,
not constants baked into the compiled program). Shapes are static inside ``jit``, so
tiles are cut by plain Python. Per ``ascend`` the picture and the steps' transforms go to
the device once and the picture comes back once; ``ascend_tensor`` leaves it there, so a
whole dream's octaves stay on the device (``octaves.dream_octaves``). On CPU, XLA's depthwise-convolution backprop is far
slower than TensorFlow's kernels (``streamdream bench`` shows by how much); JAX is here
for GPUs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..config import EngineConfig
from .conditioning import (
    Conditioning,
    condition,
    random_transforms,
    tile_bounds,
    transformed_gradient,
)
from .objective import Objective, loss_scale


class JaxStep:
    """``steps`` conditioned gradient steps on one picture, on JAX."""

    def __init__(self, objective: Objective, conditioning: Conditioning, engine: EngineConfig, seed: int | None) -> None:
        self.objective = objective
        self.conditioning = conditioning
        self.trace_count = 0
        self.device_resident = True  # every stage is in the compiled program, on JAX's device
        self._loss_scale = loss_scale(engine.precision)
        self._rng = np.random.default_rng(seed)
        extractor = objective.model.extractor
        self._weights = ([v.value for v in extractor.trainable_variables], [v.value for v in extractor.non_trainable_variables])
        self._ascend = jax.jit(self._ascend_traced, static_argnames=("tile",))
        self._value = jax.jit(self._objective)

    def _objective(self, view: jax.Array, weights: tuple) -> jax.Array:
        trainable, non_trainable = weights
        extract = self.objective.model.extractor

        def call(inputs: jax.Array):
            return extract.stateless_call(trainable, non_trainable, inputs, training=False)[0]

        return self.objective(view, call)

    def _ascend_traced(self, image: jax.Array, transforms: jax.Array, step_size: jax.Array, weights: tuple,
                       tile: int) -> jax.Array:
        self.trace_count += 1  # runs only while tracing
        scale = self._loss_scale
        gradient = jax.grad(self._objective if scale == 1.0 else lambda view, weights: self._objective(view, weights) * scale)
        height, width = image.shape[0], image.shape[1]
        tiles = tile_bounds(height, width, tile)

        def gradient_of(view: jax.Array) -> jax.Array:
            if len(tiles) == 1:
                return gradient(view, weights)
            out = jnp.zeros_like(view)
            for y0, y1, x0, x1 in tiles:
                out = out.at[y0:y1, x0:x1].set(gradient(view[y0:y1, x0:x1], weights))
            return out

        def step(current: jax.Array, pair: jax.Array) -> tuple[jax.Array, None]:
            grad = condition(transformed_gradient(current, pair, gradient_of), self.conditioning)
            return jnp.clip(current + step_size * grad, 0.0, 255.0), None

        image, _ = jax.lax.scan(step, image, transforms)
        return image

    def ascend(self, image: np.ndarray, steps: int, step_size: float, jitter: int, tile: int) -> np.ndarray:
        return np.asarray(self.ascend_tensor(jnp.asarray(image), steps, step_size, jitter, tile))

    def ascend_tensor(self, image: Any, steps: int, step_size: float, jitter: int, tile: int) -> Any:
        height, width = int(image.shape[0]), int(image.shape[1])
        # drawn on the host (reseed repeats them exactly), sent to the device once per call
        transforms = jnp.asarray(random_transforms(self._rng, steps, height, width, jitter, self.conditioning))
        return self._ascend(image, transforms, jnp.float32(step_size), self._weights, tile=tile)

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def objective_value(self, image: np.ndarray) -> float:
        return float(self._value(jnp.asarray(image), self._weights))


__all__ = ["JaxStep"]
