"""Show frames in an OpenCV window (``window`` or ``window:fullscreen``).

Esc or q (or closing the window) sets ``quit_event``, which the pipeline reads to stop.
HighGUI calls must all come from one thread (on macOS the main thread), so the pipeline
calls this sink's methods from the thread that owns the display.

The PyPI package ``opencv-python-headless`` has no GUI; ``open`` detects that, and a
missing display on Linux, and says what to install or set.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from ..config import OutputConfig
from ..errors import SinkError
from ..frames import Frame, SourceInfo
from .base import Sink
from .kind import CheckContext, OpenContext, SinkKind, prefixed
from .uri import ParsedOutput

log = logging.getLogger(__name__)

QUIT_KEYS = frozenset({27, ord("q"), ord("Q")})  # Esc, q, Q
TITLE = "streamdream"

HEADLESS_HELP = (
    "the installed OpenCV has no GUI support (opencv-python-headless?): "
    "run `pip uninstall opencv-python-headless && pip install opencv-python` to show a window, "
    "or use another output (preview, a file, virtualcam)"
)
DISPLAY_HELP = (
    "no display: DISPLAY and WAYLAND_DISPLAY are not set. Run streamdream in a desktop session "
    "(or with X forwarding, or under Xvfb), or use the `preview` output and open it in a browser"
)


def is_quit_key(code: int) -> bool:
    """True for the key codes (as returned by cv2.waitKey/waitKeyEx) that stop the pipeline."""
    return code >= 0 and (code & 0xFF) in QUIT_KEYS


def opencv_has_gui() -> bool:
    """False for headless OpenCV builds (build information says 'GUI: NONE')."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return True  # unknown layout: let the real call decide


def display_problem(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str | None:
    """Why no window can be shown on this platform, or None."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform.startswith("linux") and not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return DISPLAY_HELP
    return None


class WindowSink:
    """An OpenCV window; ``quit_event`` is set on Esc/q or when the user closes the window.

    ``gui`` is the HighGUI module (``cv2``); tests pass a stand-in to check the key logic.
    """

    def __init__(self, fullscreen: bool = False, title: str = TITLE, gui: Any = None) -> None:
        self.fullscreen = fullscreen
        self.title = title
        self.name = "window:fullscreen" if fullscreen else "window"
        self.quit_event = threading.Event()
        self.frames_written = 0
        self._gui = gui if gui is not None else cv2
        self._opened = False

    @property
    def quit_requested(self) -> bool:
        return self.quit_event.is_set()

    def open(self, info: SourceInfo) -> None:
        if self._gui is cv2:
            problems = [p for p in (None if opencv_has_gui() else HEADLESS_HELP, display_problem()) if p]
            if problems:
                raise SinkError("cannot open a window: " + "; and ".join(problems))
        try:
            self._gui.namedWindow(self.title, cv2.WINDOW_NORMAL)
            if self.fullscreen:
                self._gui.setWindowProperty(self.title, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
            else:
                self._gui.resizeWindow(self.title, info.width, info.height)
        except cv2.error as exc:
            raise SinkError(f"cannot open a window: {self._explain(exc)}") from exc
        self._opened = True
        log.info("showing frames in a %swindow; press Esc or q to stop", "fullscreen " if self.fullscreen else "")

    def write(self, frame: Frame) -> None:
        if not self._opened:
            raise SinkError("window: write() before open() or after close()")
        try:
            self._gui.imshow(self.title, cv2.cvtColor(np.asarray(frame.image), cv2.COLOR_RGB2BGR))
            key = int(self._gui.waitKey(1))
            closed = self._gui.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error as exc:
            raise SinkError(f"window: {self._explain(exc)}") from exc
        self.frames_written += 1
        if is_quit_key(key) or closed:
            if not self.quit_event.is_set():
                log.info("window: %s; stopping", "window closed" if closed else "quit key pressed")
            self.quit_event.set()

    def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        try:
            self._gui.destroyWindow(self.title)
            self._gui.waitKey(1)  # lets HighGUI process the destroy event
        except cv2.error as exc:
            log.debug("window: closing: %s", exc)

    @staticmethod
    def _explain(exc: cv2.error) -> str:
        text = str(exc)
        if "not implemented" in text.lower():
            return HEADLESS_HELP
        return text.strip().splitlines()[-1] if text.strip() else repr(exc)


def open_window(parsed: ParsedOutput, config: OutputConfig, context: OpenContext) -> Sink:
    if parsed.rest not in ("", "fullscreen"):
        raise SinkError(f"output {parsed.display!r}: use 'window' or 'window:fullscreen', got window:{parsed.rest}")
    return WindowSink(fullscreen=parsed.rest == "fullscreen")


def check_window(parsed: ParsedOutput, config: OutputConfig, context: CheckContext) -> None:
    """OpenCV was built with a GUI and there is a display to show it on."""
    problems = [p for p in (None if opencv_has_gui() else HEADLESS_HELP, display_problem()) if p]
    if problems:
        raise SinkError(f"output {parsed.display}: cannot open a window: " + "; and ".join(problems))


KIND = SinkKind(
    name="window", forms="window, window:fullscreen", parse=prefixed("window", live=True), open=open_window,
    check=check_window, exclusive=lambda parsed: "window",
)  # fmt: skip
