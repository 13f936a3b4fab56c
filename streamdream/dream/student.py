"""The student: a small feed-forward network that dreams a frame in one pass.

Distilled (``dream/distill.py``) from a teacher, the engine's full dream: it learns the
detail the teacher's octaves of gradient ascent add to a picture. Built for two CPU cores:

1. a stride-2 stem (1/2 resolution) and a stride-2 separable convolution (1/4);
2. a context branch at 1/16 (average-pooled, residual blocks, upsampled and added): the
   teacher's small octaves see broad shapes, so the student sees them too;
3. residual blocks at 1/4: a depthwise 3x3 with growing dilation (1, 2, 4, ...: a wide
   receptive field for the price of a 3x3) and two pointwise convolutions;
4. a head at 1/2: the 1/4 features upsampled beside the stem's, one separable convolution
   to 3 channels, upsampled bilinearly to the picture: a smooth detail, no pixel grain.

``StudentEngine`` stands in for ``DreamEngine`` wherever a picture is dreamed (``image``,
``zoom``, ``run``, ``serve``): its detail is levelled to ``detail_level`` x ``strength`` and
shown with the tone keeper exactly as a full dream's, so the strength control, tone keeping
and crossfades work alike. It has no gradient steps: ``ascend`` returns the picture.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import keras
import numpy as np

from ..config import DreamConfig, EngineConfig, ModelConfig
from ..images import read_image
from ..models.student_file import PRESET_FIELDS, StudentFile
from .engine import resize
from .tone import ToneKeeper

log = logging.getLogger(__name__)

MULTIPLE = 16  # the network's largest stride: pictures are padded to a multiple of it
DETAIL_SCALE = 32.0  # the head's output times this is the detail in levels of 255
MIN_GAIN, MAX_GAIN = 0.5, 3.0  # as DreamEngine.level_detail
SMOOTH_SIGMA = 1.0  # px: the network's detail is smoothed by this (its finest band is upsampling's)
SHIFT_SOFTNESS = 2.0  # px: sigma of the luminance the student's tone shift is taken out along
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
LEVEL_WIDTH = 320  # the detail's level is measured on a copy at most this wide: a full-size tone pass costs more than the network


@dataclass(frozen=True)
class StudentArch:
    """The student's shape: what the file's ``arch`` records."""

    channels: int = 32  # features at 1/4 resolution
    blocks: int = 5  # residual blocks at 1/4
    context_blocks: int = 2  # residual blocks at 1/16
    fine_channels: int = 16  # features at 1/2 (stem and head)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StudentArch:
        return cls(**{k: int(v) for k, v in values.items() if k in cls.__dataclass_fields__})


class Upsample(keras.layers.Layer):
    """Bilinear upsampling by an integer ``factor`` for pictures of any size (Keras'
    ``UpSampling2D`` needs a known size in a TensorFlow graph)."""

    def __init__(self, factor: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x: Any) -> Any:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf  # noqa: PLC0415 - TensorFlow: the backend Keras already loaded

            return tf.image.resize(x, tf.shape(x)[1:3] * self.factor, method="bilinear")
        height, width = x.shape[1], x.shape[2]
        return keras.ops.image.resize(x, (height * self.factor, width * self.factor), interpolation="bilinear")

    def compute_output_shape(self, shape: tuple) -> tuple:
        grow = lambda n: None if n is None else n * self.factor  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


def _block(x: Any, channels: int, dilation: int, name: str) -> Any:
    layers = keras.layers
    y = layers.DepthwiseConv2D(3, padding="same", dilation_rate=dilation, name=f"{name}_dw")(x)
    y = layers.Conv2D(channels, 1, activation="relu", name=f"{name}_expand")(y)
    y = layers.Conv2D(channels, 1, name=f"{name}_project")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def build_network(arch: StudentArch) -> Any:
    """The student as a Keras model: (N, H, W, 3) RGB 0-255, H and W multiples of 16 -> detail in levels."""
    layers = keras.layers
    picture = keras.Input((None, None, 3), name="picture")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(picture)
    half = layers.Conv2D(arch.fine_channels, 3, strides=2, padding="same", activation="relu", name="stem")(x)
    x = layers.SeparableConv2D(arch.channels, 3, strides=2, padding="same", activation="relu", name="down")(half)
    context = layers.AveragePooling2D(4, name="context_pool")(x)
    for i in range(arch.context_blocks):
        context = _block(context, arch.channels, 1 + i, f"context{i}")
    x = layers.Add(name="context_add")([x, Upsample(4, name="context_up")(context)])
    for i in range(arch.blocks):
        x = _block(x, arch.channels, (1, 2, 4, 8)[i % 4], f"block{i}")
    x = Upsample(2, name="head_up")(x)
    x = layers.Concatenate(name="head_join")([x, half])
    x = layers.SeparableConv2D(3, 3, padding="same", name="head")(x)
    x = Upsample(2, name="detail_up")(x)
    detail = layers.Rescaling(DETAIL_SCALE, name="detail")(x)
    return keras.Model(picture, detail, name="student")


def pad_to_multiple(image: np.ndarray, multiple: int = MULTIPLE) -> np.ndarray:
    height, width = image.shape[:2]
    bottom, right = -height % multiple, -width % multiple
    if not bottom and not right:
        return image
    return cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_REFLECT_101)


class StudentNetwork:
    """The network with its weights, and a compiled call that no new frame size retraces."""

    def __init__(self, arch: StudentArch, weights: list[np.ndarray] | None = None) -> None:
        self.arch = arch
        self.model = build_network(arch)
        if weights is not None:
            self.model.set_weights(weights)
        self._call = self._compile()

    def _compile(self) -> Callable[[np.ndarray], np.ndarray]:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf  # noqa: PLC0415 - TensorFlow: the backend Keras already loaded

            @tf.function(input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32)], reduce_retracing=True)
            def call(batch: Any) -> Any:
                return self.model(batch, training=False)

            return lambda batch: call(batch).numpy()
        return lambda batch: keras.ops.convert_to_numpy(self.model(batch, training=False))

    def detail(self, image: np.ndarray) -> np.ndarray:
        """The student's detail for ``image`` (HxWx3 float32 0-255), HxWx3 float32."""
        height, width = image.shape[:2]
        padded = pad_to_multiple(np.asarray(image, np.float32))
        return self._call(padded[None])[0, :height, :width]


def student_config(config: DreamConfig, student: StudentFile) -> DreamConfig:
    """``config`` with the fields it leaves open taken from the student's teacher."""
    settings = student.teacher["settings"]
    return config.model_copy(update={f: settings[f] for f in PRESET_FIELDS if getattr(config, f) is None})


class StudentEngine:
    """Dreams pictures in one pass of a student; the parts of ``DreamEngine`` that callers use."""

    one_pass = True

    def __init__(self, student: StudentFile, config: DreamConfig, model: ModelConfig | None = None,
                 engine: EngineConfig | None = None, *, network: StudentNetwork | None = None) -> None:
        """``network``: the compiled network of an engine on the same student file, shared."""
        self.student = student
        self.config = student_config(config, student)
        self.model_config = model or ModelConfig()
        self.engine = engine or EngineConfig()
        self.network = network or StudentNetwork(StudentArch.from_dict(student.arch), student.weights)
        self.tone = ToneKeeper(config.protect_shadows, config.protect_highlights, smooth=config.detail_smooth)
        self.steps_total = 0  # a student takes no gradient steps
        self.passes = 0
        self._blend_image = read_image(config.blend_with) if config.blend_with else None
        log.info("student %s (teacher %s %s, %d parameters)", student.path.name, student.teacher["model"],
                 student.teacher.get("preset") or "layers", sum(int(w.size) for w in student.weights))

    @property
    def trace_count(self) -> int:
        return 0

    @property
    def step_size(self) -> float:
        return float(self.config.step_size or 0.0) * self.config.strength

    def ascend(self, image: np.ndarray, steps: int, step_size: float | None = None) -> np.ndarray:
        """A student has no gradient steps: the picture as it is."""
        return np.asarray(image, np.float32)

    def reseed(self, seed: int) -> None:
        """Nothing random in a student: here so it stands in for a DreamEngine."""

    def repeat_jitter(self) -> None:
        """Nothing random in a student: here so it stands in for a DreamEngine."""

    def blend_source(self, image: np.ndarray) -> np.ndarray:
        if self._blend_image is None or self.config.blend <= 0:
            return image
        other = resize(self._blend_image, image.shape[1], image.shape[0])
        return (1.0 - self.config.blend) * image + self.config.blend * other

    def level_detail(self, detail: np.ndarray, source: np.ndarray) -> np.ndarray:
        """As ``DreamEngine.level_detail``: what shows averages ``detail_level`` x ``strength``."""
        target = self.config.detail_level * self.config.strength
        if target <= 0:
            return detail
        small_detail, small_source = detail, source
        while small_detail.shape[1] > LEVEL_WIDTH:  # the mean of a smooth detail barely changes at half size
            half = (small_detail.shape[1] // 2, small_detail.shape[0] // 2)
            small_detail = cv2.resize(small_detail, half, interpolation=cv2.INTER_AREA)
            small_source = cv2.resize(np.asarray(small_source, np.float32), half, interpolation=cv2.INTER_AREA)
        shown = float(np.abs(self.tone.apply(small_detail, small_source)).mean())
        return detail * float(np.clip(target / max(shown, 1e-6), MIN_GAIN, MAX_GAIN))

    def detail_of(self, source: np.ndarray) -> np.ndarray:
        """The network's detail, smoothed, with its tone shift taken out along the picture's
        *smoothed* luminance. A student learns some of the teacher's detail as a local contrast
        change, which the tone keeper (following each pixel's own luminance) would take out
        pixel by pixel, tracing the picture's finest texture into the detail as grain; taken
        out here, smoothly, it leaves the tone keeper almost nothing to do."""
        detail = cv2.GaussianBlur(self.network.detail(source), (0, 0), SMOOTH_SIGMA)
        height, width = detail.shape[:2]
        # the shift is smooth (a function of the smoothed luminance): found at half size, where
        # it costs a quarter, and applied at full size
        half = (max(1, width // 2), max(1, height // 2))
        small_detail = cv2.resize(detail, half, interpolation=cv2.INTER_AREA)
        luma = cv2.GaussianBlur(cv2.resize(np.asarray(source, np.float32), half, interpolation=cv2.INTER_AREA) @ LUMA,
                                (0, 0), SHIFT_SOFTNESS / 2)
        shift = cv2.resize(self.tone.tone_shift(small_detail, luma), (width, height), interpolation=cv2.INTER_LINEAR)
        return detail - shift[..., None]

    def dream_detail(self, image: np.ndarray, *, steps: int | None = None, octaves: int | None = None,
                     on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
        """The student's dream of ``image``: the detail to add to it (levelled, within range)."""
        image = np.asarray(image, np.float32)
        source = self.blend_source(image)
        detail = self.level_detail(self.detail_of(source), source)
        self.passes += 1
        if on_step is not None:
            on_step(0, 0)
        return np.clip(source + detail, 0, 255) - image

    def dream(self, image: np.ndarray, *, steps: int | None = None, octaves: int | None = None,
              on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
        image = np.asarray(image, np.float32)
        detail = self.dream_detail(image, on_step=on_step)
        return np.clip(image + self.tone.apply(detail, image), 0, 255)

    def layer_activation(self, image: np.ndarray) -> float:
        raise NotImplementedError("a student has no objective; measure with its teacher's DreamEngine")


__all__ = ["DETAIL_SCALE", "StudentArch", "StudentEngine", "StudentNetwork", "build_network", "pad_to_multiple",
           "student_config"]
