"""The daemon's outputs as one Sink whose members can change while it runs.

A reloaded ``outputs`` section keeps every output whose settings did not change (a
recording goes on in the same file), opens the new ones and closes the removed ones:
only those stages restart. File paths may hold ``strftime`` fields
(``recordings/dream-%Y%m%d-%H%M%S.mkv``), filled in when the file is opened, so a
restarted daemon never overwrites the previous recording.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import OutputConfig
from ..frames import Frame, SourceInfo
from ..log import redact_url
from ..sinks.base import Sink

log = logging.getLogger(__name__)

_NOT_FILES = ("null", "window", "virtualcam", "preview")


def is_file_output(uri: str) -> bool:
    head = uri.split(":", 1)[0].lower()
    return "://" not in uri and head not in _NOT_FILES


def expand_output(config: OutputConfig) -> OutputConfig:
    """Fill strftime fields of a file path and create its folder."""
    if not is_file_output(config.uri):
        return config
    uri = time.strftime(config.uri) if "%" in config.uri else config.uri
    path = Path(uri[5:] if uri.startswith("file:") else uri.split("?", 1)[0])
    if path.parent != Path("."):
        path.parent.mkdir(parents=True, exist_ok=True)
    return config.model_copy(update={"uri": uri})


def default_opener(config: OutputConfig) -> Sink:
    from ..sinks import open_sink

    return open_sink(expand_output(config), audio_source=None)  # a live, reconnecting input carries no audio


class SinkSet:
    """A Sink that writes every frame to each member, in order."""

    name = "outputs"

    def __init__(self, configs: Sequence[OutputConfig], opener: Callable[[OutputConfig], Sink] = default_opener) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self._members: list[tuple[OutputConfig, Sink]] = [(c, opener(c)) for c in configs]
        self.info: SourceInfo | None = None

    @property
    def configs(self) -> tuple[OutputConfig, ...]:
        return tuple(c for c, _ in self._members)

    @property
    def sinks(self) -> list[Sink]:
        return [s for _, s in self._members]

    @property
    def quit_event(self) -> threading.Event | None:
        """A window's Esc/q, passed on to the pipeline."""
        for sink in self.sinks:
            event = getattr(sink, "quit_event", None)
            if event is not None and event.is_set():
                return event
        return None

    def open(self, info: SourceInfo) -> None:
        self.info = info
        opened: list[Sink] = []
        try:
            for _, sink in self._members:
                sink.open(info)
                opened.append(sink)
                log.info("output %s open", redact_url(sink.name))
        except BaseException:
            for sink in opened:
                sink.close()
            raise

    def write(self, frame: Frame) -> None:
        with self._lock:
            for _, sink in self._members:
                sink.write(frame)

    def update(self, configs: Sequence[OutputConfig]) -> None:
        """Keep unchanged outputs, open new ones, close removed ones; SinkError leaves all as they were."""
        current = dict(self._members)  # OutputConfig is frozen and hashable
        added = [c for c in configs if c not in current]
        fresh: list[tuple[OutputConfig, Sink]] = []
        try:
            for config in added:
                sink = self._opener(config)
                if self.info is not None:
                    sink.open(self.info)
                fresh.append((config, sink))
        except BaseException:
            for _, sink in fresh:
                sink.close()
            raise
        made = dict(fresh)
        with self._lock:
            members = [(c, current.get(c) or made[c]) for c in configs]
            removed = [(c, s) for c, s in self._members if c not in made and all(s is not m for _, m in members)]
            self._members = members
        for config, sink in removed:
            sink.close()
            log.info("output %s closed (removed from the config)", redact_url(config.uri))
        for config in added:
            log.info("output %s added", redact_url(config.uri))

    def close(self) -> None:
        with self._lock:
            members = list(self._members)
        errors = []
        for _, sink in members:
            try:
                sink.close()
            except Exception as exc:  # every output gets its close, even if one fails
                errors.append(exc)
                log.error("closing output %s failed: %s", redact_url(sink.name), exc)
        if errors:
            raise errors[0]
