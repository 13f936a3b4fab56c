"""Preflight for the commands that take files on the command line rather than a config:
``image``, ``zoom``, ``gallery``, ``evaluate`` and ``bench``.

The same promise as ``preflight.py``: every mistake that can be found without the model
is found here, before TensorFlow is imported, with the exit code of its kind.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from ..config import Config, OutputConfig
from ..errors import ConfigError, ModelError, SinkError, SourceError
from ..images import check_picture
from ..models.registry import REGISTRY
from ..preflight import Problems, check_dream, check_model, check_output, did_you_mean
from ..safe_write import check_target
from ..sources.file import probe_video_file

VIDEO_HINT = "; for a video: streamdream run --input {path}"


def check_still_output(path: str, overwrite: bool, inputs: tuple[str, ...]) -> None:
    if not cv2.haveImageWriter(path):
        suffix = Path(path).suffix or "(none)"
        raise SinkError(f"cannot write {path}: unknown image type {suffix!r}; use .png, .jpg, .webp, .bmp or .tif")
    check_target(Path(path), overwrite=overwrite, inputs=inputs)


def check_image_job(config: Config, picture: str, output: str, overwrite: bool) -> None:
    """`image`: the model, the picture, the output file."""
    problems = Problems()
    check_dream(config, problems)
    problems.check(check_picture, picture, "input", SourceError, VIDEO_HINT.format(path=picture))
    problems.check(check_still_output, output, overwrite, (picture,))
    problems.raise_first()


def check_zoom_job(config: Config, picture: str, output: OutputConfig, frames: int, fps: int, zoom: float) -> None:
    """`zoom`: the numbers, the model, the picture, the output."""
    problems = Problems()
    for name, value, low in (("--frames", frames, 1), ("--fps", fps, 1)):
        if value < low:
            problems.errors.append(ConfigError(f"{name} must be >= {low}, got {value}"))
    if not 0 < zoom <= 4:
        problems.errors.append(ConfigError(f"--zoom must be in (0, 4], got {zoom}"))
    check_dream(config, problems)
    problems.check(check_picture, picture, "input", SourceError, VIDEO_HINT.format(path=picture))
    problems.check(check_output, output, "run", (picture,))
    problems.raise_first()


def check_gallery_job(
    config: Config, picture: str, output: str, overwrite: bool, models: list[str], presets: list[str] | None, width: int
) -> None:  # fmt: skip
    """`gallery`: the width, the models and presets named, the picture, the sheet's file.

    A model whose weights are not here is left off the sheet, not an error; a preset named
    with ``--presets`` must exist in every model named, as the sheet asks each for it.
    """

    problems = Problems()
    if not 32 <= width <= 4096:
        problems.errors.append(ConfigError(f"--width: must be 32-4096, got {width}"))
    for name in models:
        if name not in REGISTRY:
            problems.errors.append(
                ModelError(f"--models: unknown model {name!r}{did_you_mean(name, REGISTRY)}; choose from {', '.join(REGISTRY)}")
            )
            continue
        for preset in presets or ():
            if preset not in REGISTRY[name].presets:
                choices = REGISTRY[name].presets
                problems.errors.append(
                    ModelError(f"--presets: model {name} has no preset {preset!r}{did_you_mean(preset, choices)}; "
                               f"choose one of {', '.join(choices)}")
                )  # fmt: skip
    problems.check(check_picture, config.dream.guide, "dream.guide", max_pixels=config.source.max_pixels)
    problems.check(check_picture, picture, "input", SourceError, VIDEO_HINT.format(path=picture), max_pixels=config.source.max_pixels)
    problems.check(check_still_output, output, overwrite, (picture,))
    problems.raise_first()


def check_videos(*paths: str) -> None:
    """`evaluate`: each path is a video file."""
    problems = Problems()
    for path in paths:
        problems.check(probe_video_file, path, path)
    problems.raise_first()


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'320x240,640x480' -> [(320, 240), (640, 480)]; ConfigError naming a bad one."""
    sizes = []
    for part in text.split(","):
        width, sep, height = part.strip().lower().partition("x")
        if not (sep and width.isdigit() and height.isdigit() and 32 <= int(width) <= 8192 and 32 <= int(height) <= 8192):
            raise ConfigError(f"--sizes: {part!r} is not WIDTHxHEIGHT with sides of 32-8192, e.g. 320x240")
        sizes.append((int(width), int(height)))
    return sizes


def check_bench_job(models: list[str], sizes: str, video: str | None) -> None:
    """`bench`: the models, the sizes, the video."""
    problems = Problems()
    for name in models:
        problems.check(check_model, name)
    problems.check(parse_sizes, sizes)
    if video:
        problems.check(probe_video_file, video, video)
    problems.raise_first()
