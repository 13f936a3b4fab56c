"""The `streamdream` command: argument parsing, signals -> one stop event, exit codes.

Exit codes: 0 done; 1 runtime failure; 2 bad config or arguments; 3 model; 4 input;
5 output; 6 control; 130 stopped by Ctrl-C before finishing a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

from . import __version__
from .config import Config, load_config, with_overrides
from .errors import ConfigError, SinkError, StreamdreamError
from .log import redact_url, setup_logging

log = logging.getLogger("streamdream")


# --- arguments -------------------------------------------------------------------------------


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and dream")
    g.add_argument("--config", help="YAML config file (see configs/)")
    g.add_argument("--model", help="model name (see `streamdream models`) or a .keras/.h5 file")
    g.add_argument("--weights", help="local weights file for a Keras applications model")
    layers = g.add_mutually_exclusive_group()
    layers.add_argument("--preset", help="layer preset: shallow, mid, deep")
    layers.add_argument("--layers", help="comma-separated layer names, e.g. mixed3,mixed5")
    g.add_argument("--octaves", type=int, help="number of octaves")
    g.add_argument("--octave-scale", type=float, help="size ratio between octaves")
    g.add_argument("--steps", type=int, help="gradient steps per octave")
    g.add_argument("--step-size", type=float, help="pixel levels moved per step")
    g.add_argument("--strength", type=float, help="how much dream shows (default 1.0: the same for every model and preset)")
    g.add_argument("--width", type=int, help="dream at this width (output keeps the input size)")
    g.add_argument("--guide", help="dream toward this image's features")
    g.add_argument("--blend-with", help="dream a blend of the input and this image")
    g.add_argument("--blend", type=float, help="share of --blend-with in the blend, 0..1")
    g.add_argument("--seed", type=int, help="seed for the jitter")


def _cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="dream on a local Ray instance with N workers (pip install 'streamdream[cluster]')")
    g.add_argument("--cluster", nargs="?", const="", metavar="ADDRESS", help="dream on a Ray cluster (default: RAY_ADDRESS)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamdream", description="Live DeepDream video.")
    parser.add_argument("--version", action="version", version=f"streamdream {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--tf-verbose", action="store_true", help="show TensorFlow's own log messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("image", help="dream a still image")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    _model_args(p)

    p = sub.add_parser("zoom", help="the classic dream-zoom video from a still")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--zoom", type=float, default=1.04, help="zoom factor per frame")
    p.add_argument("--fps", type=int, default=25)
    _model_args(p)

    p = sub.add_parser("gallery", help="a labelled contact sheet of models x presets on your picture")
    p.add_argument("input", help="your picture (PNG, JPEG, ...)")
    p.add_argument("-o", "--output", required=True, help="the sheet (.png or .jpg)")
    p.add_argument("--models", help="comma-separated models (default: every model whose weights are here)")
    p.add_argument("--presets", help="comma-separated presets (default: every preset of each model)")
    p.add_argument("--width", type=int, default=360, help="width of each dream on the sheet (default 360)")
    p.add_argument("--config", help="YAML config whose dream settings to use")
    p.add_argument("--strength", type=float, help="how much dream shows (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="seed for the jitter (default 0)")

    p = sub.add_parser("run", help="dream a video source into outputs (default: demo -> dream.mp4)")
    p.add_argument("--input", help="file, webcam[:N], /dev/videoN, rtsp://..., http(s)://..., demo, lavfi:GRAPH")
    p.add_argument("--output", action="append", help="output (repeatable): file, window, virtualcam, rtsp://, preview:HOST:PORT, null")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--coherence", choices=["independent", "blend", "flow"])
    p.add_argument("--metrics", nargs="?", const="127.0.0.1:9108", help="serve Prometheus metrics on HOST:PORT")
    p.add_argument("--no-progress", action="store_true")
    _cluster_args(p)
    _model_args(p)

    p = sub.add_parser("batch", help="dream every video of a folder into another folder, with its audio")
    p.add_argument("in_dir")
    p.add_argument("out_dir")
    p.add_argument("--coherence", choices=["independent", "blend", "flow"])
    p.add_argument("--no-progress", action="store_true")
    _cluster_args(p)
    _model_args(p)

    p = sub.add_parser("serve", help="run as an installation daemon (metrics, health, reload, control)")
    p.add_argument("--config", required=True)

    p = sub.add_parser("bench", help="measure dream speed (and with --soak, memory over time)")
    p.add_argument("--models", help="comma-separated models (default: every available one)")
    p.add_argument("--sizes", default="320x240,640x480")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--file", help="video for the end-to-end measurement (default: bigbuckbunny if installed)")
    p.add_argument("--frames", type=int, default=24, help="frames for the end-to-end measurement")
    p.add_argument("--soak", type=float, metavar="MINUTES", help="run the live demo this long and report memory")
    p.add_argument("--measures", default="all", help="engine settings to compare with the baseline step, by words "
                   "of their names (e.g. onednn,threads,jax), 'all' or 'none'")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("evaluate", help="temporal consistency and dream strength of an output")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("validate-config", help="check a config file; exit 0 if valid")
    p.add_argument("file")

    sub.add_parser("models", help="list models, their weights and whether they are available here")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The config file (or defaults) with command-line options laid over it."""
    config = load_config(args.config) if getattr(args, "config", None) else Config()
    model: dict[str, Any] = {"name": args.model, "weights": args.weights, "preset": args.preset, "layers": args.layers}
    if args.layers:
        model["preset"] = None
    dream = {
        "octaves": args.octaves,
        "octave_scale": args.octave_scale,
        "steps": args.steps,
        "step_size": args.step_size,
        "strength": args.strength,
        "width": args.width,
        "guide": args.guide,
        "blend_with": args.blend_with,
        "blend": args.blend,
        "seed": args.seed,
    }
    if args.blend_with and args.blend is None:
        dream["blend"] = 0.5
    sections: dict[str, Any] = {"model": model, "dream": dream}
    if args.command == "batch":
        sections["coherence"] = {"mode": args.coherence}
        sections["pipeline"] = {"progress": False if args.no_progress else None}
    if args.command == "run":
        if args.input:
            sections["source"] = {"uri": args.input}
        if args.output:
            sections["outputs"] = [{"uri": o} for o in args.output]
        sections["pipeline"] = {"max_frames": args.max_frames, "progress": False if args.no_progress else None}
        sections["coherence"] = {"mode": args.coherence}
        if args.metrics:
            from .service.http import parse_listen_address

            host, port = parse_listen_address(args.metrics)
            sections["metrics"] = {"enabled": True, "host": host, "port": port}
    return with_overrides(config, **sections)


# --- commands --------------------------------------------------------------------------------


def cmd_image(args: argparse.Namespace, stop: threading.Event) -> int:
    from .app import build_engine, to_uint8
    from .images import read_image, write_image

    config = config_from_args(args)
    engine = build_engine(config)
    picture = read_image(args.input)
    dreamed = engine.dream(picture)
    write_image(args.output, to_uint8(dreamed))
    log.info("wrote %s (%d gradient steps)", args.output, engine.steps_total)
    return 0


def cmd_gallery(args: argparse.Namespace, stop: threading.Event) -> int:
    from tqdm import tqdm

    from .gallery import contact_sheet
    from .images import read_rgb8, write_image
    from .models.registry import REGISTRY, get_entry

    if not 32 <= args.width <= 4096:
        raise ConfigError(f"--width: must be 32-4096, got {args.width}")
    config = load_config(args.config) if args.config else Config()
    config = with_overrides(config, dream={"strength": args.strength, "seed": args.seed})
    models = [m.strip() for m in args.models.split(",")] if args.models else list(REGISTRY)
    presets = [p.strip() for p in args.presets.split(",")] if args.presets else None
    entries = [get_entry(m) for m in models]  # an unknown name fails here, before any dreaming
    picture = read_rgb8(args.input)
    total = sum(len(presets or e.presets) for e in entries if e.available()[0])
    with tqdm(total=total, unit="dream", desc="gallery", disable=None) as progress:
        sheet = contact_sheet(config, picture, models, presets, args.width, stop, progress)
    write_image(args.output, sheet)
    log.info("wrote %s (%dx%d)", args.output, sheet.shape[1], sheet.shape[0])
    return 0


def cmd_zoom(args: argparse.Namespace, stop: threading.Event) -> int:
    from .zoom import dream_zoom

    if args.frames < 1:
        raise StreamdreamError(f"--frames must be >= 1, got {args.frames}")
    config = config_from_args(args)
    written = dream_zoom(config, args.input, args.output, frames=args.frames, zoom=args.zoom, fps=args.fps, stop=stop)
    log.info("wrote %s (%d frames)", args.output, written)
    return 0 if written == args.frames else 130


def cmd_run(args: argparse.Namespace, stop: threading.Event) -> int:
    from .app import run_pipeline

    config = config_from_args(args)
    if args.workers is not None or args.cluster is not None:
        from .cluster.command import run_command

        return run_command(config, stop, workers=args.workers, cluster=args.cluster)
    observer, server = None, None
    if config.metrics.enabled:
        from .service.metrics import start_metrics

        observer, server = start_metrics(config.metrics, model=config.model.name)
    try:
        result = run_pipeline(config, stop, observer=observer)
    finally:
        if server is not None:
            server.shutdown()
    outputs = ", ".join(redact_url(o.uri) for o in config.outputs)
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(result.dropped.items())) or "none"
    log.info("%d frames in, %d out, dropped: %s -> %s", result.frames_in, result.frames_out, dropped, outputs)
    if result.error is not None:
        raise result.error
    if result.outputs_down:  # finalized as far as they got; the run itself went on
        down = result.outputs_down[0]
        raise SinkError(f"output {down.uri} failed and did not recover: {down.error}")
    return 130 if result.stopped and not (result.info and result.info.live) else 0


def cmd_batch(args: argparse.Namespace, stop: threading.Event) -> int:
    from .cluster.batch import batch_command

    return batch_command(config_from_args(args), args.in_dir, args.out_dir, stop, workers=args.workers, cluster=args.cluster)


def cmd_serve(args: argparse.Namespace, stop: threading.Event) -> int:
    from .service import daemon

    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.serve(args.config, stop)


def cmd_bench(args: argparse.Namespace, stop: threading.Event) -> int:
    from . import bench

    if args.soak:
        from .service.soak import format_soak, soak

        report = soak(args.soak, stop=stop)
        print(json.dumps(report, indent=2) if args.json else format_soak(report))
        return 0
    report = bench.run(args, stop)
    print(json.dumps(report, indent=2) if args.json else bench.format_report(report))
    return 0


def cmd_evaluate(args: argparse.Namespace, stop: threading.Event) -> int:
    from .coherence.evaluate import evaluate, format_evaluation

    result = evaluate(args.input, args.output, max_frames=args.max_frames)
    print(json.dumps(result, indent=2) if args.json else format_evaluation(result))
    return 0


def cmd_validate_config(args: argparse.Namespace, stop: threading.Event) -> int:
    config = load_config(args.file)
    print(f"{args.file}: valid ({len(config.outputs)} output(s), model {config.model.name}, source {redact_url(config.source.uri)})")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.tf_verbose)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        _install_signals(stop)
    try:
        return COMMANDS[args.command](args, stop)
    except StreamdreamError as exc:
        log.error("%s", redact_url(str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()

