"""Configuration: strict pydantic models, one per YAML section.

Unknown keys are rejected, every number has bounds, and an error names the key path,
the value received and the line of the YAML file it came from, e.g.
``demo.yaml:7: dream.octaves: must be >= 1, got 0``.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from .config_file import check_yaml_budget, read_regular_file
from .errors import ConfigError


class Section(BaseModel):
    """Base for every section: unknown keys forbidden, values immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# The shorthands a field's "before" validator reads besides the field's own type, declared as its
# ``json_schema_input_type``: json_schema() offers both forms to editors, so `rotate: 1h` or
# `source: demo` is not flagged there.
DURATION_TEXT = Annotated[str, Field(title="duration (90s, 30m, 1h, 7d)", pattern=r"^\s*\d+(\.\d+)?\s*[smhdSMHD]?\s*$")]  # 90s, 30m, 1h, 7d
PERCENT_TEXT = Annotated[str, Field(title="percentage (10%)", pattern=r"^\s*\d+(\.\d+)?\s*%?\s*$")]  # 10%


class LayerSpec(Section):
    """One layer objective: maximise ``weight`` x mean activation (of ``channels``, if given)."""

    name: str = Field(description="Layer name in the model (see `streamdream models`).")
    weight: float = Field(1.0, ge=-100.0, le=100.0, description="Weight of this layer's objective (negative: suppress it).")
    channels: tuple[int, ...] | None = Field(None, description="Only these channels, e.g. [12, 40].")


class ModelConfig(Section):
    """Which network dreams, and which of its layers (``streamdream models`` lists them)."""

    name: str = Field("efficientnet_lite0", description="Registry name or a path to a .keras/.h5 file.")
    weights: Path | None = Field(None, description="Local weights file instead of a download.")
    preset: str | None = Field(None, description="Named layer set: shallow, mid or deep.")
    layers: tuple[LayerSpec, ...] | None = Field(None, description="Explicit layers; overrides preset.")
    preprocess: Literal["tf", "caffe", "torch", "raw"] | None = Field(
        None, description="Input scaling for your own model file: tf [-1,1], caffe, torch, raw 0-255."
    )

    # "mixed3,mixed5" or [mixed3, {name: mixed5, weight: 2}]
    @field_validator("layers", mode="before", json_schema_input_type=str | list[str | LayerSpec])
    @classmethod
    def _names_to_specs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value


class DreamConfig(Section):
    """How a picture is dreamed. Fields left at None take the model preset's calibrated value."""

    strength: float = Field(1.0, gt=0.0, le=10.0, description="How much dream shows: 1.0 is the same visible amount "
                            "for every model, preset and size; it scales the step size and the detail level.")
    detail_level: float = Field(16.0, ge=0.0, le=128.0, description="Mean |detail| (levels of 255) a full dream is "
                                "brought to at strength 1, as it shows with tones kept (within 0.5x-3x of what it reached); 0: off.")
    octaves: int | None = Field(None, ge=1, le=12, description="Number of scales dreamed, smallest first (None: the preset's).")
    octave_scale: float | None = Field(None, gt=1.0, le=4.0, description="Size ratio between octaves (None: the preset's).")
    steps: int | None = Field(None, ge=0, le=1000, description="Gradient steps per octave (None: the preset's).")
    step_size: float | None = Field(None, gt=0.0, le=64.0, description="Pixel levels (0-255) moved per step at "
                                    "strength 1 (None: the preset's).")
    jitter: int = Field(32, ge=0, le=1024, description="Max random shift in pixels per step.")
    transform_scale: float = Field(0.05, ge=0.0, le=0.5, description="Random scale per step within 1 +- this.")
    transform_rotate: float = Field(5.0, ge=0.0, le=45.0, description="Random rotation per step within +- degrees.")
    laplacian_levels: int = Field(4, ge=0, le=8, description="Laplacian pyramid levels the gradient is normalised over; 0: off.")
    fine_gain: float = Field(0.1, ge=0.0, le=1.0, description="Weight of the gradient's finest band (periods of 2-4 px); "
                             "low values keep pixel grain out.")
    gradient_blur: int = Field(0, ge=0, le=8, description="Passes of a [1,2,1] filter smoothing the gradient (sigma ~0.7 px each); 0: off.")
    decorrelate: float = Field(1.0, ge=0.0, le=1.0, description="Step in a decorrelated colour space: 1 natural "
                               "colours, 0 plain RGB (more rainbow noise).")
    detail_smooth: float = Field(0.8, ge=0.0, le=8.0, description="Gaussian sigma (px) over the finished detail, so "
                                 "tone keeping, which follows the picture's finest structure, adds no grain; 0: off.")
    protect_shadows: float = Field(32.0, ge=0.0, le=255.0, description="Detail fades out below this luminance, so "
                                   "blacks stay black; 0: off.")
    protect_highlights: float = Field(24.0, ge=0.0, le=255.0, description="Detail fades out this close to white, so "
                                      "whites don't burn; 0: off.")
    tile_size: int = Field(1024, ge=64, le=8192, description="Gradients are computed in tiles this big.")
    width: int | None = Field(None, ge=32, le=8192, description="Dream at this width (None: frame width).")
    guide: Path | None = Field(None, description="Dream toward this image's features.")
    blend_with: str | None = Field(
        None, description="A second input blended into the first before the dream: any URI --input takes (a video "
        "file, looped by default; webcam; rtsp:// and other streams; demo; lavfi:...; image:PATH) or a picture file.")
    blend: float = Field(0.0, ge=0.0, le=1.0, description="Share of blend_with in the blend (0: the first input alone).")
    blend_mode: Literal["mix", "screen", "multiply", "difference"] = Field(
        "mix", description="How the two inputs combine: mix (a cross-dissolve), screen (lightens), multiply (darkens), "
        "difference; blend is the share of the combined picture.")
    blend_fit: Literal["cover", "contain", "stretch"] = Field(
        "cover", description="How blend_with is brought to the first input's frame: cover (scaled to fill, cropped), "
        "contain (scaled to fit, black bars), stretch (scaled to the frame, aspect not kept).")
    blend_loop: bool = Field(True, description="Start blend_with again at its end (a file, a finite demo); false: "
                             "the first input goes on alone once it ended.")

    @field_validator("blend_with", mode="before", json_schema_input_type=str | None)
    @classmethod
    def _uri_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value
    seed: int | None = Field(None, description="Seed for jitter; None for random.")
    engine: Literal["gradient", "student"] = Field(
        "gradient", description="gradient: the full dream, gradient ascent over octaves; student: a distilled "
        "feed-forward network (`streamdream distill`) that dreams each frame in one pass.")
    student: str | None = Field(None, description="engine student: a student file (.student.npz) or the name of a "
                                "shipped one (efficientnet_lite0-mid); None: the one shipped for model and preset.")


MAX_PIXELS_8K = 7680 * 4320


class EngineConfig(Section):
    """How the dream step runs: the Keras backend and the CPU speed switches (``streamdream
    bench`` measures each against the step as it was; the defaults are the measured best).
    Process-wide settings (backend, oneDNN, threads) take effect only before the backend
    is imported, so they are applied when a command starts."""

    backend: Literal["tensorflow", "jax", "torch"] | None = Field(
        None, description="Keras backend (None: $KERAS_BACKEND, else tensorflow). jax and torch need "
        "'pip install streamdream[jax]' / '[torch]'.")
    jit_compile: bool = Field(False, description="tensorflow: XLA-compile the network's gradient (measured much "
                              "slower on CPU: XLA's depthwise convolution backprop; try it on GPUs).")
    onednn: bool = Field(True, description="tensorflow: oneDNN kernels (TF_ENABLE_ONEDNN_OPTS) for the convolutions.")
    intra_op_threads: int = Field(0, ge=0, le=256, description="Threads inside one operation (0: one per core).")
    inter_op_threads: int = Field(0, ge=0, le=256, description="Operations run at once (0: the backend's choice).")
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Network arithmetic: bfloat16 pays off only where the CPU or GPU has it natively "
        "(recent Intel CPUs, NVIDIA Ampere and later, Apple M2 and later); float16 for GPUs without bfloat16 "
        "(older NVIDIA cards, Apple M1), with a fixed loss scale. Weights, the picture and the conditioning "
        "stay float32.")
    batch_tiles: bool = Field(False, description="tensorflow: a tiled frame's tiles as one batch (faster on "
                              "many cores or a GPU, needs all tiles' activations at once).")
    fold_batchnorm: bool = Field(True, description="Fold each batch normalisation into the convolution before it "
                                 "(same output to float32 rounding, a third fewer passes over the activations).")
    transform: Literal["auto", "opencv", "tensorflow"] = Field(
        "auto", description="tensorflow: who warps the step's random transform. opencv: on the host (fastest on "
        "a CPU); tensorflow: ImageProjectiveTransformV3 in the graph, on the device (no host round trip per "
        "step on a GPU); auto: tensorflow when TensorFlow sees a GPU, else opencv.")
    remapper: bool = Field(False, description="tensorflow: Grappler's remapper, which fuses convolution + bias + "
                           "activation into one oneDNN kernel (measured 2x slower for the dream's gradient on CPU).")


class SourceConfig(Section):
    """The input: a file, a camera, a network stream or a generated scene (``--input``)."""

    uri: str = Field("demo", description="file path, webcam[:N], /dev/videoN, rtsp://, http(s)://, demo, image:PATH")
    width: int | None = Field(None, ge=16, le=8192, description="Frame width asked of a camera; frames of a live "
                              "source are scaled to it (None: the source's own).")
    height: int | None = Field(None, ge=16, le=8192, description="Frame height, as width (None: the source's own).")
    fps: float | None = Field(None, gt=0.0, le=1000.0, description="Frame rate asked of a camera or set on a live "
                              "source (None: the source's own).")
    input_format: str | None = Field(None, description="Device pixel format, e.g. mjpeg, yuyv422.")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport (rtsp://, rtsps://).")
    open_timeout: float = Field(10.0, gt=0.0, le=600.0, description="Seconds to wait for a source to open.")
    read_timeout: float = Field(10.0, gt=0.0, le=600.0, description="Seconds without data before a read fails.")
    loop: bool = Field(False, description="Start a file again at its end.")
    max_pixels: int = Field(
        MAX_PIXELS_8K, ge=16 * 16, le=1 << 30,
        description="Largest frame or picture (width x height) accepted, checked from the stream or image header "
        "before anything that size is allocated; default 8K UHD (7680x4320).",
    )


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> Any:
    """``90``, ``"90s"``, ``"30m"``, ``"1h"``, ``"7d"`` -> seconds; anything else is left for pydantic to refuse."""
    if isinstance(value, str):
        text = value.strip().lower()
        unit = _DURATION_UNITS.get(text[-1:]) if text else None
        number = text[:-1] if unit else text
        try:
            return float(number) * (unit or 1.0)
        except ValueError:
            raise PydanticCustomError("duration", "must be seconds or a duration like 90s, 30m, 1h, 7d") from None
    return value


class OutputConfig(Section):
    """One output (``--output``, repeatable): a file, a window, a virtual camera, a publish, a preview, NDI."""

    uri: str = Field(description="file path (.mp4/.mkv/.webm/.ts), window, virtualcam, rtsp://, rtmp://, preview:HOST:PORT, webrtc:, null")
    crf: int | None = Field(None, ge=0, le=63, description="Constant quality (lower is better).")
    bitrate: str | None = Field(None, pattern=r"^\d+(\.\d+)?[kKmM]?$", description="e.g. 4M; overrides crf (webrtc: its video bitrate, 1.5M by default).")
    codec: str | None = Field(None, description="Encoder name, e.g. libx264, libvpx-vp9.")
    audio: bool = Field(True, description="Carry the source's audio into file outputs and webrtc:.")
    overwrite: bool = Field(False, description="Replace an existing file (otherwise refused; --overwrite/-y sets it).")
    rotate: float | None = Field(
        None, ge=10.0, le=366 * 86400.0, description="Files: start a new file this often, e.g. 1h (None: one file)."
    )
    max_age: float | None = Field(
        None, ge=60.0, description="Files: delete this output's recordings older than this, e.g. 7d (None: keep)."
    )
    keep_free: float | None = Field(
        None, ge=0.0, le=90.0, description="Files: delete this output's oldest recordings while the disk has less "
        "than this share free, e.g. 10% (None: never for space)."
    )

    @field_validator("rotate", "max_age", mode="before", json_schema_input_type=DURATION_TEXT)
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("keep_free", mode="before", json_schema_input_type=PERCENT_TEXT)
    @classmethod
    def _percent(cls, value: Any) -> Any:
        return value.strip().rstrip("%") if isinstance(value, str) else value


class PipelineConfig(Section):
    """The frames' path from the source to the outputs."""

    queue_size: int = Field(4, ge=1, le=256, description="Frames each queue holds.")
    max_frames: int | None = Field(None, ge=1, description="Stop after this many frames.")
    progress: bool = Field(True, description="Progress bar for files, status line for live sources.")


class CoherenceConfig(Section):
    """How consecutive frames' dreams relate (see streamdream/coherence/)."""

    mode: Literal["independent", "blend", "flow"] = Field(
        "flow", description="independent: dream every frame from scratch; blend: dream a blend with the previous "
        "dream (DeepDreamVideo); flow: carry the previous dream along the optical flow and refine it."
    )
    blend_ratio: float = Field(0.5, ge=0.0, lt=1.0, description="blend mode: share of the previous dream in the blend.")
    carry: float = Field(1.0, gt=0.0, le=1.0, description="flow mode: factor on the carried detail each frame (< 1 fades old detail).")
    refine_steps: int = Field(3, ge=0, le=100, description="flow mode: gradient steps per frame on the carried dream "
                              "(0: the carry alone; revealed pixels then stay bare too).")
    refine_carried: float = Field(0.25, ge=0.0, le=1.0, description="flow mode: share of the refinement taken where "
                                  "detail was carried (all of it is taken where detail was dropped or revealed).")
    refine_octaves: int = Field(1, ge=1, le=12, description="flow mode: refine this many of the smallest octaves.")
    refine_step_size: float | None = Field(None, gt=0.0, le=64.0, description="flow mode: step size of refinement steps (None: dream.step_size).")
    ghost_tolerance: float = Field(24.0, ge=0.0, le=255.0, description="flow mode: grey levels by which a pixel may differ "
                                   "from where the flow says it came from before its carried detail is dropped (no ghosts); 0: off.")
    still_flow: float = Field(0.5, ge=0.0, le=10.0, description="flow mode: flow (px/frame) under which an unchanged pixel "
                              "keeps its detail exactly (no shimmer on still parts); 0: off.")
    steady_jitter: bool = Field(True, description="flow mode: refine every frame with the same random transforms, so still "
                                "parts stay still instead of shimmering.")
    max_detail_gain: float = Field(1.0, gt=0.0, le=10.0, description="flow mode: cap on how much of the carried detail shows (mean |detail|), relative to the last full dream's.")
    student_carry: float = Field(0.5, ge=0.0, lt=1.0, description="flow mode with a student (dream.engine: student): "
                                 "share of the previous frame's detail, carried along the flow, mixed into each frame's own "
                                 "one-pass dream; 0: every frame's dream alone.")
    passes: int = Field(1, ge=1, le=2, description="flow mode, file input (`run`): 2 adds a second pass backward in time "
                        "over the first pass's dreams (Ruder et al.), so content dreamed late lends its dream to the frames before "
                        "it; the input is read twice and every frame's detail kept on disk until the end.")
    full_every: int = Field(0, ge=0, le=100000, description="flow mode: a full dream every N frames (0: only first frame and scene cuts).")
    reveal_steps: int = Field(2, ge=0, le=100, description="flow mode: gradient steps per frame, at half the dream resolution, "
                              "on pixels the flow could not carry (revealed at an edge, uncovered, failing a check), their level then raised "
                              "to the full dream's; the frame's refine_steps give way to them (at least 1 left); 0: off.")
    reveal_frames: int = Field(1, ge=1, le=30, description="flow mode: a revealed pixel is dreamed in this many frames, "
                               "from the one it appears in (the newest take all the steps, older ones less); its level is "
                               "raised to the full dream's in the first.")
    reveal_margin: int = Field(16, ge=0, le=256, description="flow mode: pixels (at the dream resolution) around revealed ones "
                               "dreamed with them as context: the network sees the carried patterns the new ones continue.")
    reveal_budget: float = Field(0.25, gt=0.0, le=1.0, description="flow mode: most of the picture's pixels the revealed region "
                                 "is dreamed at; a larger region (a zoom out) is dreamed smaller and scaled up.")
    scene_cut: float = Field(30.0, ge=0.0, le=255.0, description="Grey-thumbnail mean difference (0-255) that starts a new shot; 0: off.")
    flow: Literal["dis", "farneback"] = Field("dis", description="Optical flow method.")
    flow_preset: Literal["ultrafast", "fast", "medium"] = Field("medium", description="DIS preset (speed vs accuracy): "
                                                                 "medium lowers flow mode's warping error on moving shots by a third "
                                                                 "against fast, for about 12 ms more per frame at 320x240.")
    adaptive: bool = Field(False, description="Adjust dream width and steps to meet target_fps.")
    target_fps: float = Field(4.0, gt=0.0, le=240.0, description="Adaptive target: output frames/s for files, dream refreshes/s for live sources.")
    min_width: int = Field(128, ge=32, le=8192, description="Adaptive: smallest dream width.")
    max_width: int = Field(640, ge=32, le=8192, description="Adaptive: largest dream width.")
    min_steps: int = Field(1, ge=1, le=1000, description="Adaptive: fewest steps per frame (refine steps in flow mode).")
    max_steps: int = Field(10, ge=1, le=1000, description="Adaptive: most steps per frame (refine steps in flow mode).")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> CoherenceConfig:
        if self.min_width > self.max_width:
            raise ValueError(f"min_width ({self.min_width}) must be <= max_width ({self.max_width})")
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) must be <= max_steps ({self.max_steps})")
        return self


class MetricsConfig(Section):
    """The HTTP server for /metrics, /healthz and the control API (always on under `serve`)."""

    enabled: bool = Field(False, description="Serve metrics during `streamdream run` too.")
    host: str = Field("127.0.0.1", min_length=1, description="Address to bind; a non-loopback one needs control.token.")
    port: int = Field(9108, ge=0, le=65535, description="TCP port (0: any free port).")
    path: str = Field("/metrics", pattern=r"^/[A-Za-z0-9_./-]*$", description="Where Prometheus scrapes.")
    allowed_hosts: tuple[str, ...] = Field(
        (), max_length=64, description="More host names the server answers to (the Host header), besides its address, "
        "localhost and 127.0.0.1 (and, bound beyond loopback, IP addresses and this machine's name): DNS rebinding protection.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]+\]", name):
                raise ValueError(f"allowed_hosts: {name!r} is not a host name (letters, digits, '.', '-')")
        return value


# --- service (`streamdream serve`) sections ----------------------------------------------------



class HealthConfig(Section):
    """When /healthz turns 503."""

    source_down_after: float = Field(30.0, gt=0.0, le=86400.0, description="Seconds the source may be down.")
    stuck_after: float = Field(
        30.0, gt=0.0, le=86400.0, description="Seconds without an output frame: /healthz says stuck and the "
        "watchdog rebuilds the pipeline."
    )
    stall_after: float = Field(
        10.0, gt=0.0, le=86400.0, description="Seconds without a frame from a connected source: the watchdog reopens it."
    )
    output_down_after: float = Field(60.0, gt=0.0, le=86400.0, description="Seconds an output may be down (retrying).")


class ReconnectConfig(Section):
    """Capped exponential backoff for a lost network or camera source (forever under `serve`)."""

    initial: float = Field(1.0, gt=0.0, le=3600.0, description="First wait before reconnecting, seconds.")
    max: float = Field(30.0, gt=0.0, le=3600.0, description="Longest wait; the wait doubles up to this.")

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> ReconnectConfig:
        if self.max < self.initial:
            raise PydanticCustomError("backoff", "max ({high}) must be >= initial ({low})", {"high": self.max, "low": self.initial})
        return self


class IdleConfig(Section):
    """What the outputs show while the source is down (the dream goes on over it)."""

    mode: Literal["zoom", "still", "pattern"] = Field(
        "zoom", description="zoom: the last output, slowly zooming in and out; still: the last output, the dream "
        "working on over it; pattern: a slowly drifting generated picture."
    )
    zoom: float = Field(1.3, ge=1.0, le=4.0, description="mode zoom: the deepest zoom reached.")
    period: float = Field(40.0, ge=2.0, le=3600.0, description="mode zoom: seconds for one zoom in and out.")
    fps: float | None = Field(None, gt=0.0, le=120.0, description="Idle frames per second (None: the source's rate, else 25).")


class ControlConfig(Section):
    """The control API (/api/...) on the metrics server."""

    enabled: bool = Field(True, description="Serve the control API and the control page.")
    token: SecretStr | None = Field(
        None, description="Bearer token (8-512 characters); required when metrics.host is not loopback. "
        "The environment variable STREAMDREAM_CONTROL_TOKEN sets it too."
    )

    @model_validator(mode="before")
    @classmethod
    def _token_shape(cls, data: Any) -> Any:
        # checked on the whole section so that an error message never echoes the token
        token = data.get("token") if isinstance(data, dict) else None
        if token is not None and not isinstance(token, SecretStr):
            if not isinstance(token, str) or not 8 <= len(token) <= 512:
                raise PydanticCustomError("token", "token: must be a string of 8-512 characters (value not shown)")
        return data


_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class PresetConfig(Section):
    """A named look, laid over the `model`, `dream` and `coherence` sections."""

    model: str | None = Field(None, description="Model name or file (None: model.name).")
    preset: str | None = Field(None, description="Layer preset of the model: shallow, mid, deep.")
    layers: tuple[LayerSpec, ...] | None = Field(None, description="Explicit layers; override preset.")
    strength: float = Field(1.0, gt=0.0, le=10.0, description="Multiplies dream.strength.")
    steps: int | None = Field(None, ge=0, le=1000, description="Gradient steps per octave (None: dream.steps).")
    octaves: int | None = Field(None, ge=1, le=12, description="Number of octaves (None: dream.octaves).")
    coherence: Literal["independent", "blend", "flow"] | None = Field(None, description="Coherence mode (None: coherence.mode).")
    blend_with: str | None = Field(None, description="This preset's second input (None: dream.blend_with); "
                                   "switching presets crossfades from one to the other.")
    blend: float | None = Field(None, ge=0.0, le=1.0, description="This preset's share of the second input "
                                "(None: dream.blend, or the blend control's value).")
    blend_mode: Literal["mix", "screen", "multiply", "difference"] | None = Field(
        None, description="This preset's blend mode (None: dream.blend_mode).")

    @field_validator("layers", mode="before", json_schema_input_type=str | list[str | LayerSpec])
    @classmethod
    def _names_to_specs(cls, value: Any) -> Any:
        return ModelConfig._names_to_specs(value)


class ScheduleEntry(Section):
    """From this time of day on, this preset."""

    at: str = Field(description="Local time of day, HH:MM (24 h).")
    preset: str = Field(description="A preset named in playlist.presets.")

    @field_validator("at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise PydanticCustomError("time_of_day", "must be a time of day HH:MM from 00:00 to 23:59")
        return value


class PlaylistConfig(Section):
    """Presets, and when to switch between them (every `interval` seconds and/or by time of day)."""

    presets: dict[str, PresetConfig] = Field({}, description="Named looks: 1-64 letters, digits, '_', '.' or '-' each.")
    cycle: tuple[str, ...] | None = Field(None, description="Order for `next` and `interval` (None: all, as written).")
    interval: float | None = Field(None, ge=1.0, le=7 * 86400.0, description="Seconds per preset (None: no cycling).")
    crossfade: float = Field(3.0, ge=0.0, le=60.0, description="Seconds a switch blends old and new.")
    schedule: tuple[ScheduleEntry, ...] = Field((), description="Switches by time of day, e.g. [{at: '22:00', preset: night}].")
    start: str | None = Field(None, description="Preset at start (None: the schedule's current one, else the first).")

    @model_validator(mode="after")
    def _names_exist(self) -> PlaylistConfig:
        defined = list(self.presets)
        for name in defined:
            if not re.match(_NAME, name):
                raise PydanticCustomError("preset_name", f"presets: name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        known = ", ".join(defined) or "none"
        refs = [(f"cycle[{i}]", n) for i, n in enumerate(self.cycle or ())]
        refs += [(f"schedule[{i}].preset", e.preset) for i, e in enumerate(self.schedule)]
        refs += [("start", self.start)] if self.start else []
        for where, name in refs:
            if name not in self.presets:
                raise PydanticCustomError("unknown_preset", f"{where}: unknown preset {name!r} (defined: {known})")
        if self.cycle is not None and not self.cycle:
            raise PydanticCustomError("empty_cycle", "cycle: give at least one preset, or leave it out to cycle through all")
        return self

    @property
    def order(self) -> tuple[str, ...]:
        return self.cycle if self.cycle is not None else tuple(self.presets)


class OscConfig(Section):
    """OSC control over UDP (python-osc): off unless ``port`` is set. Addresses: docs/installations.md, "OSC"."""

    host: str = Field("127.0.0.1", min_length=1, description="Address to bind; a non-loopback one needs `allow`.")
    port: int | None = Field(None, ge=0, le=65535, description="UDP port, e.g. 9000 (None: OSC off; 0: any free port).")
    allow: tuple[str, ...] = Field(
        (), max_length=256, description="Client addresses or networks accepted when bound beyond loopback, "
        "e.g. [192.168.1.20, 10.0.0.0/24]; messages from others are dropped and counted.",
    )

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"allow: {entry[:64]!r} is not an IP address or network like 192.168.1.0/24") from None
        return value


class AudioReactConfig(Section):
    """The dream's strength follows the input's soundtrack: loudness (attack, release) and onsets."""

    source: Literal["input"] = Field("input", description="input: the input's own audio (a file's track, a live stream's).")
    strength: tuple[float, float] = Field(
        (0.6, 1.6), description="Dream strength factor in silence and at full loudness, e.g. [0.6, 1.6]; "
        "it multiplies the look's strength, per frame.",
    )
    attack: float = Field(0.02, ge=0.001, le=10.0, description="Seconds the level takes to rise (63 %).")
    release: float = Field(0.3, ge=0.001, le=30.0, description="Seconds the level takes to fall (63 %).")
    floor_db: float = Field(-50.0, ge=-120.0, lt=0.0, description="Loudness (dBFS RMS) at or below which the level is 0.")
    ceiling_db: float = Field(-10.0, ge=-120.0, le=0.0, description="Loudness (dBFS RMS) at or above which the level is 1.")
    blend: tuple[float, float] | None = Field(
        None, description="Factor on the share of dream.blend_with in silence and at full loudness, e.g. [0, 1]: "
        "the second input shows with the sound (None: the blend does not follow the sound).")
    onsets: float = Field(0.3, ge=0.0, le=1.0, description="Level an onset (a sudden rise) adds, fading with `release`; 0: off.")
    onset_db: float = Field(9.0, ge=1.0, le=60.0, description="Rise in dB within 50 ms that counts as an onset.")

    @field_validator("strength")
    @classmethod
    def _factors(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= v <= 10.0 for v in value):
            raise ValueError(f"strength: both factors must be within 0..10, got {list(value)}")
        return value

    @field_validator("blend")
    @classmethod
    def _blend_factors(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not all(0.0 <= v <= 10.0 for v in value):
            raise ValueError(f"blend: both factors must be within 0..10, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _range(self) -> AudioReactConfig:
        if self.floor_db >= self.ceiling_db:
            raise ValueError(f"floor_db ({self.floor_db:g}) must be below ceiling_db ({self.ceiling_db:g})")
        return self


MIDI_VERBS = ("strength", "step_size", "carry", "layer", "crossfade", "blend", "preset", "next", "previous")


class MidiBinding(Section):
    """One control change or note mapped to a control verb (the verbs of the HTTP API and OSC)."""

    cc: int | None = Field(None, ge=0, le=127, description="Control change number (a knob or fader).")
    note: int | None = Field(None, ge=0, le=127, description="Note number (a pad or key); its velocity is the value.")
    verb: Literal["strength", "step_size", "carry", "layer", "crossfade", "blend", "preset", "next", "previous"] = Field(
        description="What it drives: strength, step_size, carry, layer, crossfade, blend (scaled from 0-127); "
        "preset, next, previous (on a press: a note, or a control change crossing 64).")
    layer: str | None = Field(None, min_length=1, max_length=200, description="verb layer: the layer whose weight it sets.")
    preset: str | None = Field(None, min_length=1, max_length=64, description="verb preset: the preset it switches to.")
    min: float | None = Field(None, ge=-100.0, le=100.0, description="Value at 0 (None: the verb's, see docs/installations.md, MIDI).")
    max: float | None = Field(None, ge=-100.0, le=100.0, description="Value at 127 (None: the verb's).")

    @model_validator(mode="after")
    def _complete(self) -> MidiBinding:
        if (self.cc is None) == (self.note is None):
            raise ValueError("give either cc or note (0-127)")
        if self.verb == "layer" and not self.layer:
            raise ValueError("verb layer needs layer: NAME")
        if self.verb == "preset" and not self.preset:
            raise ValueError("verb preset needs preset: NAME")
        return self


class MidiConfig(Section):
    """MIDI input (mido with python-rtmidi): a controller's knobs and pads, and its clock. Off unless ``port`` is set."""

    port: str | None = Field(None, min_length=1, max_length=200, description="Input port: its name or a part of it "
                             "(`streamdream midi-ports` lists them); None: MIDI off.")
    backend: str | None = Field(None, min_length=1, max_length=200, description="mido backend module, e.g. "
                                "mido.backends.rtmidi/UNIX_JACK (None: $MIDO_BACKEND, else rtmidi).")
    channel: int | None = Field(None, ge=1, le=16, description="Only this channel, 1-16 (None: every channel).")
    controls: tuple[MidiBinding, ...] = Field((), max_length=512, description="The mapping: [{cc: 1, verb: strength}, "
                                              "{note: 36, verb: preset, preset: calm}, ...].")
    learned: Path | None = Field(None, description="File the control page's learn mode saves bindings to "
                                 "(None: beside the config, CONFIG.midi.json); its bindings win over `controls`.")
    clock: bool = Field(False, description="Follow MIDI clock (24 per beat) and start/stop/continue: tempo, beats, bars.")
    beats_per_bar: int = Field(4, ge=1, le=32, description="Clock: beats in a bar.")
    switch_every: float | None = Field(None, ge=0.25, le=4096.0, description="Clock: next preset every this many "
                                       "`switch_unit`s while the transport runs, instead of playlist.interval (None: off).")
    switch_unit: Literal["bars", "beats"] = Field("bars", description="Clock: the unit of switch_every.")
    pulse: tuple[float, float] | None = Field(None, description="Clock: dream strength factor between beats and on "
                                              "the beat, e.g. [1.0, 1.6] (None: no pulse).")
    pulse_decay: float = Field(0.15, ge=0.01, le=4.0, description="Clock: seconds a beat's pulse takes to fall (63 %).")

    @field_validator("pulse")
    @classmethod
    def _factors(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not all(0.0 <= v <= 10.0 for v in value):
            raise ValueError(f"pulse: both factors must be within 0..10, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _clock_needed(self) -> MidiConfig:
        if not self.clock and (self.switch_every is not None or self.pulse is not None):
            raise ValueError("switch_every and pulse follow the MIDI clock: set clock: true")
        beats = None if self.switch_every is None else self.switch_every * (self.beats_per_bar if self.switch_unit == "bars" else 1)
        if beats is not None and beats != int(beats):
            raise ValueError(f"switch_every: must come to whole beats ({self.beats_per_bar} a bar), got {self.switch_every:g} {self.switch_unit}")
        return self


class Config(Section):
    """A whole configuration file: one key per section, each optional (built-in defaults)."""

    source: SourceConfig = Field(SourceConfig(), description="The input; a URI alone is short for {uri: ...}.")
    outputs: tuple[OutputConfig, ...] = Field(
        (OutputConfig(uri="dream.mp4"),), description="The outputs, at least one; a URI alone is short for [{uri: ...}]."
    )
    model: ModelConfig = Field(ModelConfig(), description="The network and its layers.")
    dream: DreamConfig = Field(DreamConfig(), description="How a picture is dreamed.")
    engine: EngineConfig = Field(EngineConfig(), description="How the dream step runs: backend and speed switches.")
    coherence: CoherenceConfig = Field(CoherenceConfig(), description="How consecutive frames' dreams relate.")
    pipeline: PipelineConfig = Field(PipelineConfig(), description="Queues, frame limit, progress.")
    metrics: MetricsConfig = Field(MetricsConfig(), description="The HTTP server: /metrics, /healthz, /api, the control page.")
    health: HealthConfig = Field(HealthConfig(), description="serve: when /healthz turns 503 and the watchdog acts.")
    reconnect: ReconnectConfig = Field(ReconnectConfig(), description="Backoff for a lost source or output.")
    idle: IdleConfig = Field(IdleConfig(), description="serve: what the outputs show while the source is down.")
    control: ControlConfig = Field(ControlConfig(), description="The control API and its token.")
    playlist: PlaylistConfig = Field(PlaylistConfig(), description="serve: presets and when to switch between them.")
    osc: OscConfig = Field(OscConfig(), description="OSC control over UDP (off unless osc.port is set).")
    audio_react: AudioReactConfig | None = Field(None, description="The dream's strength follows the soundtrack (None: off).")
    midi: MidiConfig = Field(MidiConfig(), description="MIDI controllers and clock (off unless midi.port is set).")

    @field_validator("source", mode="before", json_schema_input_type=str)
    @classmethod
    def _uri_as_source(cls, value: Any) -> Any:
        return {"uri": value} if isinstance(value, str) else value

    @field_validator("outputs", mode="before", json_schema_input_type=str | OutputConfig | list[str | OutputConfig])
    @classmethod
    def _uris_as_outputs(cls, value: Any) -> Any:
        if isinstance(value, (str, dict)):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [{"uri": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _at_least_one_output(self) -> Config:
        if not self.outputs:
            raise ValueError("outputs: give at least one output (a file path, window, null, ...)")
        if self.midi.switch_every is not None and self.playlist.interval is not None:
            raise ValueError("midi.switch_every and playlist.interval both switch presets: keep one")
        for i, binding in enumerate(self.midi.controls):
            if binding.preset is not None and binding.preset not in self.playlist.presets:
                known = ", ".join(self.playlist.presets) or "none"
                raise ValueError(f"midi.controls[{i}].preset: unknown preset {binding.preset!r} (defined: {known})")
        return self


# --- the JSON Schema --------------------------------------------------------------------------


class _WithShorthands(GenerateJsonSchema):
    """A field's own schema, or its validator's shorthand (``json_schema_input_type``), not only the latter."""

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        own = self.generate_inner(schema["schema"])
        shorthand = schema.get("json_schema_input_schema")
        if self.mode != "validation" or shorthand is None:
            return own
        extra = self.generate_inner(shorthand)
        if not extra:  # Any: no shorthand declared
            return own
        branches: list[JsonSchemaValue] = []
        for part in (extra, own):
            for branch in part["anyOf"] if set(part) == {"anyOf"} else [part]:
                if branch not in branches:
                    branches.append(branch)
        return {"anyOf": branches}


def _as_draft7(node: Any) -> Any:
    """pydantic's 2020-12 keywords in their draft-07 spelling ($defs, prefixItems), for the YAML
    language server, which validates by draft 7."""
    if isinstance(node, list):
        return [_as_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    renamed = {"$defs": "definitions", "prefixItems": "items"}
    out = {renamed.get(key, key): _as_draft7(value) for key, value in node.items()}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace("#/$defs/", "#/definitions/")
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file (draft 7), for editors and the YAML language server."""
    schema = _as_draft7(Config.model_json_schema(schema_generator=_WithShorthands))
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema, "title": "streamdream configuration"}


# --- loading -------------------------------------------------------------------------------

_BOUND_WORDS = {
    "greater_than_equal": ">= {ge}",
    "greater_than": "> {gt}",
    "less_than_equal": "<= {le}",
    "less_than": "< {lt}",
}


def _line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path in a YAML document to its 1-based line number."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = path + (key.value,)
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def _model_in(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The section model inside a field's type, and whether a list index or dict key comes first."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found[0], found[1] or get_origin(annotation) in (tuple, list, dict)
    return None


def known_keys(path: tuple[Any, ...]) -> list[str]:
    """The keys a config accepts at ``path`` (e.g. ('dream',) -> octaves, ...); [] if unknown."""
    model: type[BaseModel] = Config
    skip = False
    for part in path:
        if skip:  # a list index or a dict key (a preset's name)
            skip = False
            continue
        field = model.model_fields.get(part) if isinstance(part, str) else None
        found = _model_in(field.annotation) if field is not None else None
        if found is None:
            return []
        model, skip = found
    return list(model.model_fields)


def _unknown_key(loc: tuple[Any, ...]) -> str:
    keys = known_keys(loc[:-1])
    if not keys:
        return "unknown key (check the spelling)"
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    what = "section" if len(loc) == 1 else "key"
    where = "the top level" if len(loc) == 1 else ".".join(str(p) for p in loc[:-1])
    return f"unknown {what}{hint}; {where} takes: {', '.join(keys)}"


def _describe(error: Mapping[str, Any], loc: tuple[Any, ...] = ()) -> str:
    kind = error["type"]
    if kind in _BOUND_WORDS:
        return f"must be {_BOUND_WORDS[kind].format(**error.get('ctx', {}))}"
    if kind == "extra_forbidden":
        return _unknown_key(loc) if loc else "unknown key (check the spelling)"
    if kind == "missing":
        return "required key is missing"
    return error["msg"][0].lower() + error["msg"][1:]


def _short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def format_validation_error(exc: ValidationError, source: str = "", text: str | None = None) -> str:
    lines = _line_index(text) if text else {}
    out = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        where = source
        # walk up the path until a key with a known line is found
        for depth in range(len(loc), -1, -1):
            if loc[:depth] in lines:
                where = f"{source}:{lines[loc[:depth]]}"
                break
        value = error.get("input")
        got = "" if error["type"] in ("missing",) or isinstance(value, dict) else f", got {_short_repr(value)}"
        prefix = f"{where}: " if where else ""
        got = "" if error["type"] == "extra_forbidden" else got  # the value of a misspelled key says nothing
        out.append(f"{prefix}{dotted}: {_describe(error, loc)}{got}")
    return "\n".join(out)


def parse_config(data: dict[str, Any] | None, source: str = "", text: str | None = None) -> Config:
    try:
        return Config.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, text)) from None


def _yaml_error(path: str | Path, exc: yaml.YAMLError) -> ConfigError:
    """The parser's problem and where, never its snippet: the quoted line may hold a password."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    context = getattr(exc, "context", None)
    return ConfigError(f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else ""))


def load_config(path: str | Path, *, complete: bool = False) -> Config:
    """Read and validate a YAML config file; raise ConfigError naming key, value and line.

    The file must be a regular file within the bounds of ``config_file`` (size, nesting,
    aliases), checked before anything is built from it. ``complete`` (a reload): an empty,
    ``null`` or comments-only file is refused rather than read as "every default", which
    would replace the running source and outputs with the demo and ``dream.mp4``.
    """
    text = read_regular_file(path)
    try:
        check_yaml_budget(text, str(path))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    if data is None and complete:
        raise ConfigError(
            f"{path}: the file is empty (no sections: only comments, blank lines or null); "
            "a reload needs the complete config (was it read half-way through a save?)"
        )
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return parse_config(data, str(path), text)


def with_overrides(config: Config, **sections: dict[str, Any] | list[Any] | None) -> Config:
    """Return a copy with some fields of some sections replaced, validated again."""
    data = config.model_dump(mode="python")
    for name, fields in sections.items():
        if isinstance(fields, dict) and isinstance(data.get(name), dict):
            data[name].update({k: v for k, v in fields.items() if v is not None})
        elif fields is not None:
            data[name] = fields
    return parse_config(data, "command line")
