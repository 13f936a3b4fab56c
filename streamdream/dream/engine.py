"""The dream: gradient ascent on layer activations, over octaves, tiled and jittered.

Images are float32 RGB in [0, 255], HxWx3, numpy in and out. Everything here is
backend-neutral; the gradient loop itself is one small class per Keras backend
(``step_tf``, ``step_jax``, ``step_torch``), chosen by the backend Keras runs on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..config import DreamConfig, EngineConfig
from ..images import read_image
from ..models.loader import DreamModel
from ..models.registry import Look
from .conditioning import Conditioning
from .objective import Objective
from .octaves import dream_octaves
from .step import Step
from .tone import ToneKeeper

log = logging.getLogger(__name__)

MIN_OCTAVE_SIDE = 48  # below this the network sees too little to dream anything
STEADY_SEED = 0x5EED  # the jitter flow mode's refinement repeats every frame (``repeat_jitter``)
MIN_GAIN, MAX_GAIN = 0.5, 3.0  # how far level_detail may scale a dream's detail

#: settings for layers that come without a preset (``layers:`` or your own model file)
DEFAULT_LOOK = Look((), "your own layers", octaves=4, octave_scale=1.4, steps=10, step_size=2.0)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def octave_sizes(width: int, height: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes from the smallest octave up to (width, height), skipping ones too small to dream."""
    sizes = []
    for k in range(octaves - 1, -1, -1):
        w, h = round(width / scale**k), round(height / scale**k)
        if min(w, h) >= MIN_OCTAVE_SIDE or k == 0:
            sizes.append((w, h))
    return sizes


def resolve_settings(config: DreamConfig, look: Look | None) -> DreamConfig:
    """``config`` with the fields it leaves open (None) taken from the preset's look."""
    look = look or DEFAULT_LOOK
    fields = ("octaves", "octave_scale", "steps", "step_size")
    return config.model_copy(update={f: getattr(look, f) for f in fields if getattr(config, f) is None})


@dataclass(frozen=True)
class Resolved:
    """The dream fields a preset's look fills (``resolve_settings``; a student's teacher),
    typed as set: what an engine's config holds."""

    octaves: int
    octave_scale: float
    steps: int
    step_size: float


def resolved(config: DreamConfig) -> Resolved:
    """``config``'s look-filled fields; an engine's config always has them (its constructor resolves them)."""
    octaves, scale, steps, size = config.octaves, config.octave_scale, config.steps, config.step_size
    assert octaves is not None and scale is not None and steps is not None and size is not None, f"unresolved: {config!r}"
    return Resolved(octaves, scale, steps, size)


#: the dream settings the compiled step depends on; the others (strength, steps, octaves, step
#: size, detail level, tones, tiles) are read at each call, so engines that differ only there
#: can share one step and its traced graph (``DreamEngine(..., step=...)``)
STEP_FIELDS = ("guide", "seed", "transform_scale", "transform_rotate", "gradient_blur", "laplacian_levels",
               "fine_gain", "decorrelate")


def step_key(config: DreamConfig) -> tuple:
    """What two dream configs must share for their engines to share a compiled step."""
    return tuple(getattr(config, name) for name in STEP_FIELDS)


def conditioning_of(config: DreamConfig) -> Conditioning:
    return Conditioning(
        scale=config.transform_scale,
        rotate=config.transform_rotate,
        blur=config.gradient_blur,
        laplacian_levels=config.laplacian_levels,
        fine_gain=config.fine_gain,
        decorrelate=config.decorrelate,
    )


class DreamEngine:
    """Dreams pictures with one model and one set of dream settings."""

    def __init__(self, model: DreamModel, config: DreamConfig, engine: EngineConfig | None = None, *,
                 step: Any = None) -> None:
        """``step``: the compiled step of an engine on the same model and engine settings whose
        config has the same ``step_key``: reused, so this engine needs no new trace (a live
        strength fader then costs no compile). Its caller checks the key."""
        self.model = model
        config = resolve_settings(config, model.look)
        self.config = config  # every field set: the preset's look fills what the config leaves open
        self.engine = engine or EngineConfig()
        self.tone = ToneKeeper(config.protect_shadows, config.protect_highlights, smooth=config.detail_smooth)
        self.steps_total = 0
        # fixed without a seed too: workers dreaming one video's segments must repeat alike
        self._steady_seed = config.seed if config.seed is not None else STEADY_SEED
        if step is not None:
            self.step = step
        else:
            guide = read_image(config.guide) if config.guide else None
            self.step = make_step(Objective(model, guide), conditioning_of(config), self.engine, config.seed)
        self.objective, self.conditioning = self.step.objective, self.step.conditioning

    @property
    def trace_count(self) -> int:
        """How often the step was compiled (the tests prove a new frame size needs none)."""
        return self.step.trace_count

    # --- the numpy-facing API ----------------------------------------------------------------

    def ascend(self, image: np.ndarray, steps: int, step_size: float | None = None) -> np.ndarray:
        """``steps`` gradient steps at the image's own size (one octave)."""
        if steps <= 0:
            return image
        cfg = self.config
        size = step_size if step_size is not None else self.step_size
        out = self.step.ascend(np.asarray(image, np.float32), steps, size, cfg.jitter, cfg.tile_size)
        self.steps_total += steps
        return out

    def reseed(self, seed: int) -> None:
        """Restart the random transforms from ``seed``: two engines (two cluster workers)
        then dream the same frame alike."""
        self.step.reseed(seed)

    def repeat_jitter(self) -> None:
        """Make the next steps draw the same random transforms as the steps after the last
        call: a video's refinement steps then push every frame the same way, so a still
        part of the picture stays still instead of shimmering with fresh jitter."""
        self.step.reseed(self._steady_seed)

    @property
    def step_size(self) -> float:
        """Levels per step: the look's step size times ``strength``."""
        return resolved(self.config).step_size * self.config.strength

    def dream_detail(
        self,
        image: np.ndarray,
        *,
        steps: int | None = None,
        octaves: int | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """A full dream of ``image`` (float32 RGB 0-255) over octaves: the detail to add to it.

        Follows Google's original: each octave dreams its own downscaled copy of the source
        plus the upsampled detail found so far, so the source stays sharp. The detail is
        then brought to ``detail_level`` x ``strength`` (see ``level_detail``) and kept
        within the picture's range. Tones are not kept here: ``ToneKeeper.apply`` does that
        when the detail is shown, so detail carried to other frames stays whole.
        ``on_step(octave, step)`` is called after every step (for a progress bar); the steps
        then run one call each, which gives the same result (the same random draws, in order).
        Where the step's work is on the device (``Step.device_resident``: JAX, PyTorch, and
        TensorFlow with its own warp), the octaves run there too (``octaves.dream_octaves``):
        the frame crosses to the device once and its detail comes back once.
        """
        cfg, settings = self.config, resolved(self.config)
        steps = settings.steps if steps is None else steps
        octaves = settings.octaves if octaves is None else octaves
        if octaves < 1:
            raise ValueError(f"octaves must be >= 1, got {octaves}")
        image = np.asarray(image, np.float32)
        source = image  # a second input (dream.blend_with) is blended in before: sources/blend.py
        if steps <= 0:
            return source - image
        height, width = source.shape[:2]
        sizes = octave_sizes(width, height, octaves, settings.octave_scale)
        if self.step.device_resident and on_step is None:
            detail = dream_octaves(self.step, source, sizes, steps, self.step_size, cfg.jitter, cfg.tile_size)
            self.steps_total += steps * len(sizes)
            return self._finish(detail, source, image)
        detail = np.zeros((sizes[0][1], sizes[0][0], 3), np.float32)
        for octave, (w, h) in enumerate(sizes):
            base = resize(source, w, h)
            dreamed = np.clip(base + resize(detail, w, h), 0, 255)
            if on_step is None:
                dreamed = self.ascend(dreamed, steps)
            else:
                for step in range(steps):
                    dreamed = self.ascend(dreamed, 1)
                    on_step(octave, step)
            detail = dreamed - base
        return self._finish(detail, source, image)

    def _finish(self, detail: np.ndarray, source: np.ndarray, image: np.ndarray) -> np.ndarray:
        detail = self.level_detail(detail, source)
        return np.clip(source + detail, 0, 255) - image

    def level_detail(self, detail: np.ndarray, source: np.ndarray) -> np.ndarray:
        """``detail`` scaled so that what shows of it (tones kept) averages ``detail_level`` x
        ``strength`` levels: one strength looks alike across models, presets and sizes. The
        gain stays within 0.5-3x, so a nearly black frame is not blown up into noise."""
        target = self.config.detail_level * self.config.strength
        if target <= 0:
            return detail
        shown = float(np.abs(self.tone.apply(detail, source)).mean())
        gain = float(np.clip(target / max(shown, 1e-6), MIN_GAIN, MAX_GAIN))
        return detail * gain

    def dream(
        self,
        image: np.ndarray,
        *,
        steps: int | None = None,
        octaves: int | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Dream ``image`` (float32 RGB 0-255); returns the dreamed picture, tones kept."""
        image = np.asarray(image, np.float32)
        if (resolved(self.config).steps if steps is None else steps) <= 0:
            return image
        detail = self.dream_detail(image, steps=steps, octaves=octaves, on_step=on_step)
        return np.clip(image + self.tone.apply(detail, image), 0, 255)

    def layer_activation(self, image: np.ndarray) -> float:
        """The objective's value on ``image``: what the dream maximises."""
        return self.step.objective_value(np.asarray(image, np.float32))


def make_step(objective: Objective, conditioning: Conditioning, engine: EngineConfig, seed: int | None) -> Step:
    """The gradient loop for the backend Keras runs on in this process."""
    import keras  # noqa: PLC0415 - loads Keras and its backend

    backend = keras.backend.backend()
    if backend == "tensorflow":
        from .step_tf import TFStep  # noqa: PLC0415 - loads Keras and its backend

        return TFStep(objective, conditioning, engine, seed)
    if backend == "jax":
        from .step_jax import JaxStep  # noqa: PLC0415 - loads JAX (the jax extra)

        return JaxStep(objective, conditioning, engine, seed)
    if backend == "torch":
        from .step_torch import TorchStep  # noqa: PLC0415 - loads PyTorch (the torch extra)

        return TorchStep(objective, conditioning, engine, seed)
    raise ValueError(f"Keras runs on {backend!r}; streamdream dreams on tensorflow, jax or torch")


def zoom_frame(image: np.ndarray, zoom: float) -> np.ndarray:
    """Crop the centre by ``zoom`` and scale back up: one step of the dream-zoom animation."""
    h, w = image.shape[:2]
    cw, ch = w / zoom, h / zoom
    x0, y0 = (w - cw) / 2, (h - ch) / 2
    matrix = np.array([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom]], np.float32)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


__all__ = ["DEFAULT_LOOK", "STEP_FIELDS", "DreamEngine", "Resolved", "make_step", "octave_sizes", "resize", "resolve_settings", "resolved", "step_key",
           "zoom_frame"]
