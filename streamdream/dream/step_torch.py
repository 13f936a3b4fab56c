"""The gradient loop on Keras' PyTorch backend (CUDA, Apple's MPS, or CPU).

Eager PyTorch: each step asks ``torch.autograd.grad`` for the gradient of the objective
with respect to the picture alone (the network's weights are frozen, so no weight
gradient is ever computed), conditions it with ``conditioning`` and moves the picture.
Keras puts tensors on the backend's device (CUDA or MPS when there is one), and the
picture follows. The random transforms are drawn on the host, as for JAX, and sent to the
device once per ``ascend``; nothing in the step loop comes back to the host (no ``.item()``,
no numpy), so the GPU runs ahead of Python. ``ascend_tensor`` leaves the picture on the
device, so a whole dream's octaves stay there (``octaves.dream_octaves``).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import torch

from ..config import EngineConfig
from .conditioning import (
    Conditioning,
    color_preconditioner,
    condition,
    random_transforms,
    tile_bounds,
    transformed_gradient,
)
from .objective import Objective, loss_scale


class TorchStep:
    """``steps`` conditioned gradient steps on one picture, on PyTorch."""

    def __init__(self, objective: Objective, conditioning: Conditioning, engine: EngineConfig, seed: int | None) -> None:
        self.objective = objective
        self.conditioning = conditioning
        self.trace_count = 0  # eager: nothing is ever traced
        self.device_resident = True  # every stage is a torch op on Keras' device
        self._loss_scale = loss_scale(engine.precision)
        self._colors = keras.ops.convert_to_tensor(color_preconditioner(conditioning.decorrelate).T)  # on the device once
        self._rng = np.random.default_rng(seed)
        objective.model.extractor.trainable = False  # gradients for the picture only

    def _gradient(self, view: torch.Tensor) -> torch.Tensor:
        view = view.detach().requires_grad_(True)
        loss = self.objective(view)
        if self._loss_scale != 1.0:
            loss = loss * self._loss_scale
        return torch.autograd.grad(loss, view)[0]

    def _gradient_of(self, tiles: list[tuple[int, int, int, int]]):
        if len(tiles) == 1:
            return self._gradient

        def tiled(view: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(view)
            for y0, y1, x0, x1 in tiles:
                out[y0:y1, x0:x1] = self._gradient(view[y0:y1, x0:x1])
            return out

        return tiled

    def ascend(self, image: np.ndarray, steps: int, step_size: float, jitter: int, tile: int) -> np.ndarray:
        return keras.ops.convert_to_numpy(self.ascend_tensor(keras.ops.convert_to_tensor(image), steps, step_size,
                                                             jitter, tile))

    def ascend_tensor(self, image: Any, steps: int, step_size: float, jitter: int, tile: int) -> Any:
        height, width = int(image.shape[0]), int(image.shape[1])
        # drawn on the host (reseed repeats them exactly), sent to the device once per call
        transforms = keras.ops.convert_to_tensor(random_transforms(self._rng, steps, height, width, jitter, self.conditioning))
        gradient_of = self._gradient_of(tile_bounds(height, width, tile))
        current = image
        for pair in transforms:
            grad = transformed_gradient(current, pair, gradient_of)
            with torch.no_grad():
                current = torch.clamp(current + step_size * condition(grad, self.conditioning, colors=self._colors), 0.0, 255.0)
        return current

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def objective_value(self, image: np.ndarray) -> float:
        with torch.no_grad():
            return float(self.objective(keras.ops.convert_to_tensor(image)))


__all__ = ["TorchStep"]
