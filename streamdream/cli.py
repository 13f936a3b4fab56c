"""The `streamdream` command: the commands, signals -> one stop event, exit codes.

Every command first checks what it can without the model (``preflight.py`` for configs,
``preflight_commands.py`` for the files named on the command line), so a
mistake fails in about a second, before TensorFlow is imported. The grammar (options,
help, "did you mean") is in ``arguments.py``; the exit codes in ``errors.EXIT_CODES``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
from typing import Any

from . import preflight, preflight_commands
from .arguments import build_parser, config_from_args
from .config import Config, OutputConfig, load_config, with_overrides
from .errors import SinkError, StreamdreamError
from .log import redact_url, setup_logging

log = logging.getLogger("streamdream")

SERVE_SECTIONS = ("playlist", "control", "health", "reconnect", "idle")


def stop_summary(result: Any, outputs: str) -> str:
    """'38 in, 33 out, 4 dropped (stale 4), 1 in flight -> out.mp4': in = out + dropped + in flight."""
    dropped = sum(result.dropped.values())
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(result.dropped.items()))
    in_flight = result.frames_in - result.frames_out - dropped
    text = f"{result.frames_in} frames in, {result.frames_out} out, {dropped} dropped"
    text += f" ({reasons})" if reasons else ""
    text += f", {in_flight} in flight when stopped" if in_flight else ""
    return f"{text} -> {outputs}"


# --- commands --------------------------------------------------------------------------------


def cmd_image(args: argparse.Namespace, stop: threading.Event) -> int:
    config = config_from_args(args)
    preflight_commands.check_image_job(config, args.input, args.output, args.overwrite)

    from .app import build_engine, to_uint8
    from .images import read_image, write_image
    from .progress import progress_bar
    from .stills import dream_at_width, dream_size, total_steps

    picture = read_image(args.input)
    engine = build_engine(config)
    height, width = picture.shape[:2]
    log.info("dreaming %s (%dx%d) at %dx%d", args.input, width, height, *dream_size(width, height, config.dream.width))
    steps = total_steps(engine.config, width, height)
    bar = progress_bar(steps, unit="step", desc="dreaming", enabled=not args.no_progress)

    def on_step(octave: int, step: int) -> None:
        bar.set_description_str(f"octave {octave + 1}", refresh=False)
        bar.update(1)

    try:
        dreamed = dream_at_width(engine, picture, config.dream.width, on_step=on_step)
    finally:
        bar.close()
    write_image(args.output, to_uint8(dreamed), overwrite=args.overwrite)
    log.info("wrote %s (%d gradient steps)", args.output, engine.steps_total)
    return 0


def cmd_gallery(args: argparse.Namespace, stop: threading.Event) -> int:
    config = load_config(args.config) if args.config else Config()
    config = with_overrides(config, dream={"strength": args.strength, "seed": args.seed})
    from .models.registry import REGISTRY  # names only: no TensorFlow

    models = [m.strip() for m in args.models.split(",")] if args.models else list(REGISTRY)
    presets = [p.strip() for p in args.presets.split(",")] if args.presets else None
    preflight_commands.check_gallery_job(config, args.input, args.output, args.overwrite, models, presets, args.width)

    from tqdm import tqdm

    from .gallery import contact_sheet
    from .images import read_rgb8, write_image

    picture = read_rgb8(args.input)
    total = sum(len(presets or REGISTRY[m].presets) for m in models if REGISTRY[m].available()[0])
    with tqdm(total=total, unit="dream", desc="gallery", disable=True if args.no_progress else None) as progress:
        sheet = contact_sheet(config, picture, models, presets, args.width, stop, progress)
    write_image(args.output, sheet, overwrite=args.overwrite)
    log.info("wrote %s (%dx%d)", args.output, sheet.shape[1], sheet.shape[0])
    return 0


def cmd_zoom(args: argparse.Namespace, stop: threading.Event) -> int:
    config = config_from_args(args)
    output = OutputConfig(uri=args.output, overwrite=args.overwrite)
    preflight_commands.check_zoom_job(config, args.input, output, args.frames, args.fps, args.zoom)

    from .zoom import dream_zoom

    written = dream_zoom(
        config, args.input, output, frames=args.frames, zoom=args.zoom, fps=args.fps, stop=stop, progress=not args.no_progress
    )
    log.info("wrote %s (%d frames)", args.output, written)
    return 0 if written == args.frames else 130


def cmd_run(args: argparse.Namespace, stop: threading.Event) -> int:
    config = config_from_args(args)
    if args.workers is not None or args.cluster is not None:
        from .cluster.command import resuming, run_command

        config = resuming(config)  # a stopped run's partial output is replaced when it resumes, not refused
        preflight.check_config(config, "run")
        return run_command(config, stop, workers=args.workers, cluster=args.cluster, resources=dict(args.worker_resource or ()))
    preflight.check_config(config, "run")

    from .app import run_pipeline

    observer, server = None, None
    if config.metrics.enabled:
        from .service.metrics import start_metrics

        observer, server = start_metrics(config.metrics, model=config.model.name)
    try:
        result = run_pipeline(config, stop, observer=observer)
    finally:
        if server is not None:
            server.shutdown()
    log.info("%s", stop_summary(result, ", ".join(redact_url(o.uri) for o in config.outputs)))
    if result.error is not None:
        raise result.error
    if result.outputs_down:  # finalized as far as they got; the run itself went on
        down = result.outputs_down[0]
        raise SinkError(f"output {down.uri} failed and did not recover: {down.error}")
    return 130 if result.stopped and not (result.info and result.info.live) else 0


def cmd_batch(args: argparse.Namespace, stop: threading.Event) -> int:
    config = config_from_args(args)
    problems = preflight.Problems()
    preflight.check_dream(config, problems)  # the folders are batch's own to check
    problems.raise_first()

    from .cluster.batch import batch_command

    return batch_command(config, args.in_dir, args.out_dir, stop, workers=args.workers, cluster=args.cluster,
                         resources=dict(args.worker_resource or ()))  # fmt: skip


def cmd_serve(args: argparse.Namespace, stop: threading.Event) -> int:
    preflight.check_config(load_config(args.config), "serve")

    from .service import daemon

    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.serve(args.config, stop)


def cmd_bench(args: argparse.Namespace, stop: threading.Event) -> int:
    if args.soak:
        from .service.soak import format_soak, soak

        report = soak(args.soak, stop=stop)
        print(json.dumps(report, indent=2) if args.json else format_soak(report))
        return 0
    preflight_commands.check_bench_job(args.models.split(",") if args.models else [], args.sizes, args.file)

    from . import bench

    report = bench.run(args, stop)
    print(json.dumps(report, indent=2) if args.json else bench.format_report(report))
    return 0


def cmd_evaluate(args: argparse.Namespace, stop: threading.Event) -> int:
    preflight_commands.check_videos(args.input, args.output)

    from .coherence.evaluate import evaluate, format_evaluation, frame_count
    from .progress import progress_iter

    def progress(frames):
        total = frame_count(args.input)
        total = min(total, args.max_frames) if total and args.max_frames else total or args.max_frames
        return progress_iter(frames, total, unit="frame", desc="evaluating", enabled=not args.no_progress)

    result = evaluate(args.input, args.output, max_frames=args.max_frames, progress=progress)
    print(json.dumps(result, indent=2) if args.json else format_evaluation(result))
    return 0


def cmd_validate_config(args: argparse.Namespace, stop: threading.Event) -> int:
    config = load_config(args.file)
    command = args.for_command or ("serve" if config.model_fields_set & set(SERVE_SECTIONS) else "run")
    # ports are left out: the daemon this config belongs to may be running and holding them
    preflight.check_config(config, command, ports=False)
    print(
        f"{args.file}: valid for `streamdream {command} --config` ({len(config.outputs)} output(s), "
        f"model {config.model.name}, source {redact_url(config.source.uri)})"
    )
    return 0


def cmd_models(args: argparse.Namespace, stop: threading.Event) -> int:
    from .models.registry import REGISTRY

    for entry in REGISTRY.values():
        ok, where = entry.available()
        print(f"{entry.name:<20} {'available' if ok else 'not available':<14} {entry.description}")
        print(f"{'':<20} weights: {entry.weights_source}; {where}")
        for name, look in entry.presets.items():
            layers = ",".join(look.layer_names) + (" (animal classes)" if look.layers[0].channels else "")
            print(f"{'':<20} preset {name:<8} {look.description}: {layers}")
    print("also: any .keras/.h5 model file, with --layers")
    return 0


COMMANDS = {
    "image": cmd_image,
    "zoom": cmd_zoom,
    "gallery": cmd_gallery,
    "run": cmd_run,
    "batch": cmd_batch,
    "serve": cmd_serve,
    "bench": cmd_bench,
    "evaluate": cmd_evaluate,
    "validate-config": cmd_validate_config,
    "models": cmd_models,
}


def _install_signals(stop: threading.Event) -> None:
    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: give up waiting
            raise KeyboardInterrupt
        log.info("%s received: stopping, finalizing outputs", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def resume_command(argv: list[str]) -> str:
    """The command line that runs ``argv`` again, from this directory, as the user started it."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if program in ("cli.py", "__main__.py", "-m"):  # python -m streamdream.cli
        start = [sys.executable, "-m", "streamdream.cli"]
    else:
        start = ["streamdream"]
    return f"cd {shlex.quote(os.getcwd())} && {shlex.join([*start, *argv])}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.tf_verbose)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        _install_signals(stop)
    try:
        return COMMANDS[args.command](args, stop)
    except StreamdreamError as exc:
        log.error("%s", redact_url(str(exc)))
        if getattr(exc, "resumable", False):
            log.error("the finished segments are kept; to resume, run: %s", redact_url(resume_command(argv)))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
