"""What every backend's gradient loop offers the engine: the ``Step`` protocol.

``step_tf.TFStep``, ``step_jax.JaxStep`` and ``step_torch.TorchStep`` satisfy it (mypy
checks ``make_step``'s returns against it); ``engine.make_step`` picks the one for the
backend Keras runs on.

``ascend`` takes and gives numpy (one copy to the device and one back per call);
``ascend_tensor`` takes and gives the backend's own tensor, so the engine can keep a frame
on the device across all its octaves (``octaves.dream_octaves``) where ``device_resident``
says the step's work is on the device.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .conditioning import Conditioning
from .objective import Objective


class Step(Protocol):
    """``steps`` conditioned gradient steps on one picture, numpy in and numpy out."""

    objective: Objective
    conditioning: Conditioning
    trace_count: int  # compilations so far (a new frame size must not add one on TensorFlow)
    device_resident: bool  # every stage runs on the backend's device: keep frames there between octaves

    def ascend(self, image: np.ndarray, steps: int, step_size: float, jitter: int, tile: int) -> np.ndarray:
        """``image`` (HxWx3 float32, 0-255) after ``steps`` steps of ``step_size`` levels."""
        ...

    def ascend_tensor(self, image: Any, steps: int, step_size: float, jitter: int, tile: int) -> Any:
        """The same on a backend tensor (HxWx3 float32, on the device), a backend tensor back."""
        ...

    def reseed(self, seed: int) -> None:
        """Repeat the random transforms from ``seed`` (a steady jitter across frames)."""
        ...

    def objective_value(self, image: np.ndarray) -> float:
        """What the steps maximise, on ``image``."""
        ...


__all__ = ["Step"]
