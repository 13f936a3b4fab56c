"""A second input blended into the first before the dream: ``dream.blend_with``.

``blend_with`` is any input URI ``--input`` takes (a video file, looped by default; a
camera; a network stream; ``demo``; ``lavfi:``; ``image:``) or a picture file. A picture is
read once. Anything else is read by a ``SecondSource``: its own reader thread (a worker of
the runtime's ``Workers`` tree), its own reconnect (``reconnect.initial`` doubling up to
``reconnect.max``, forever) and its own loop (a clip that ends is opened again, so a file
removed meanwhile is noticed at its next pass). Two ways to hand frames over:

* ``synced`` (the first input is a file: ``run`` dreams every frame, slower or faster than
  real time): a bounded WAIT queue, read by the first input's timestamps, so frame ``t`` of
  the first is blended with the second's frame at ``t`` (modulo its length when it loops);
  the same file run gives the same video every time;
* live (a camera, a stream, ``serve``): the reader plays a file at its own rate and keeps
  its latest frame; each frame of the first takes the latest of the second.

If the second input fails, the first goes on alone: ``picture`` answers None until it is
back, and the fault is reported (``PipelineObserver.blend_source_up``, the daemon's state).
``fit_to`` brings a picture to the first input's frame (cover, contain, stretch);
``blend_images`` combines two pictures (mix, screen, multiply, difference).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ..config import Config, DreamConfig, ReconnectConfig, SourceConfig
from ..errors import SourceError
from ..frames import Frame, freeze
from ..images import MAX_PIXELS_8K
from ..log import redact_url
from ..runtime.observer import PipelineObserver
from ..runtime.queues import FrameQueue, QueueClosed, QueuePolicy
from ..runtime.workers import POLL, Backoff, Workers
from . import KINDS, parse_uri
from .base import Source
from .image import read_image, split_image_target
from .kind import OpenContext

log = logging.getLogger(__name__)

STILL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
SYNC_QUEUE = 4  # frames the synced reader decodes ahead
FIRST_FRAME_WAIT = 15.0  # seconds a synced read waits for a (re)opening second input's frame
MAX_READERS = 3  # second inputs kept open (the ones shown, and the last ones shown, for a quick switch back)
MODES = ("mix", "screen", "multiply", "difference")
FITS = ("cover", "contain", "stretch")
BLEND_FIELDS = ("blend_with", "blend", "blend_mode", "blend_fit", "blend_loop")


# --- pictures ---------------------------------------------------------------------------------


def fit_to(image: np.ndarray, width: int, height: int, fit: str = "cover") -> np.ndarray:
    """``image`` brought to ``width`` x ``height``: cover (fill, centre cropped), contain (whole, black
    bars) or stretch (aspect not kept). Same dtype as ``image``."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if fit == "stretch":
        return _resized(image, width, height)
    scale = max(width / w, height / h) if fit == "cover" else min(width / w, height / h)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = _resized(image, sw, sh)
    if fit == "cover":
        x0, y0 = (sw - width) // 2, (sh - height) // 2
        return np.ascontiguousarray(scaled[y0:y0 + height, x0:x0 + width])
    out = np.zeros((height, width, *image.shape[2:]), image.dtype)
    x0, y0 = (width - sw) // 2, (height - sh) // 2
    out[y0:y0 + sh, x0:x0 + sw] = scaled[:height, :width]
    return out


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def blend_images(first: np.ndarray, second: np.ndarray, ratio: float, mode: str = "mix") -> np.ndarray:
    """``first`` and ``second`` (same size, levels 0-255) combined by ``mode``, ``ratio`` of the way
    from ``first`` to the combination; float32. mix at 0.5 is the plain average."""
    a = np.asarray(first, np.float32)
    b = np.asarray(second, np.float32)
    combined: np.ndarray
    if mode == "mix":
        combined = b
    elif mode == "screen":
        combined = 255.0 - (255.0 - a) * (255.0 - b) / 255.0
    elif mode == "multiply":
        combined = a * b / 255.0
    elif mode == "difference":
        combined = np.abs(a - b)
    else:
        raise ValueError(f"blend mode must be one of {', '.join(MODES)}, got {mode!r}")
    return (1.0 - ratio) * a + ratio * combined


def is_still(uri: str) -> bool:
    """``blend_with`` names one picture (read once): a picture file, or ``image:PATH`` without a length."""
    text = uri.strip()
    if text.lower().startswith("image:"):
        return split_image_target(text[6:])[1] is None
    return "://" not in text and Path(text).suffix.lower() in STILL_SUFFIXES


def still_path(uri: str) -> str:
    text = uri.strip()
    return text[6:] if text.lower().startswith("image:") else text


def still_blend(config: DreamConfig, max_pixels: int = MAX_PIXELS_8K) -> Callable[[np.ndarray], np.ndarray] | None:
    """For one picture dreamed (`image`, `zoom`, a cluster's segments): the blend with a still
    ``blend_with``, as a function of the picture (float32 out); None when there is none."""
    if config.blend_with is None or config.blend <= 0:
        return None
    if not is_still(config.blend_with):
        raise SourceError(f"dream.blend_with {redact_url(config.blend_with)}: only a picture can be blended here, "
                          "not a moving input; give a picture file (a moving one works with `run` and `serve`)")
    other = read_image(still_path(config.blend_with), max_pixels=max_pixels)

    def blend(picture: np.ndarray) -> np.ndarray:
        fitted = fit_to(other, picture.shape[1], picture.shape[0], config.blend_fit)
        return blend_images(picture, fitted, config.blend, config.blend_mode)

    return blend


def unblended(config: DreamConfig) -> DreamConfig:
    """``config`` without its blend settings: what the dream engine depends on (the blend happens before it)."""
    return config.model_copy(update={name: DreamConfig.model_fields[name].default for name in BLEND_FIELDS})


def only_blend_differs(a: Config, b: Config) -> bool:
    """``a`` and ``b`` differ at most in the blend's share, mode and fit: the same look, its blend
    changed at once (the same second input, no new look to build)."""
    live = ("blend", "blend_mode", "blend_fit")
    keep = {name: getattr(a.dream, name) for name in live}
    return a == b.model_copy(update={"dream": b.dream.model_copy(update=keep)})


# --- the second input ------------------------------------------------------------------------


@dataclass(frozen=True)
class SecondState:
    """What the daemon shows of a second input (replaced whole by its reader)."""

    uri: str  # redacted
    up: bool = False
    reconnects: int = 0
    error: str | None = None
    ended: bool = False

    def as_dict(self) -> dict:
        return {"uri": self.uri, "up": self.up, "reconnects": self.reconnects, "error": self.error, "ended": self.ended}


class StillInput:
    """A picture as a second input: read once, always up."""

    def __init__(self, uri: str, max_pixels: int) -> None:
        path = still_path(uri)
        self.state = SecondState(redact_url(path), up=True)
        self._image = freeze(read_image(path, redact_url(path), max_pixels))

    def picture(self, frame: Frame) -> np.ndarray | None:
        return self._image

    def close(self, wait: bool = True) -> None:
        pass


class SecondSource:
    """One moving second input, read by its own reader thread (see the module docstring)."""

    def __init__(self, config: SourceConfig, *, loop: bool, synced: bool, reconnect: ReconnectConfig, workers: Workers,
                 observer: PipelineObserver | None = None) -> None:  # fmt: skip
        self.config = config
        self.loop = loop
        self.synced = synced
        self.reconnect = reconnect
        self.observer = observer or PipelineObserver()
        self.display = redact_url(config.uri)
        self.state = SecondState(self.display)
        self._parsed = parse_uri(config.uri)
        self._workers = workers.group("blend")
        self._lock = threading.Lock()
        self._inner: Source | None = None
        self._latest: Frame | None = None  # live: the newest frame; replaced whole
        self._queue: FrameQueue[Frame] = FrameQueue("blend", SYNC_QUEUE, QueuePolicy.WAIT)
        self._current: Frame | None = None  # synced: the frame shown now, and the one after it
        self._next: Frame | None = None
        self._opening = True
        self._workers.spawn("blend-source", self._read_forever)

    # --- the consumer (the dream worker) ------------------------------------------------------

    def picture(self, frame: Frame) -> np.ndarray | None:
        """The second input's picture for ``frame`` of the first; None while it is down or ended."""
        if not self.synced:
            latest = self._latest
            return latest.image if latest is not None and self.state.up else None
        t = frame.pts if frame.pts is not None else 0.0
        deadline = time.monotonic() + FIRST_FRAME_WAIT
        while not self._workers.stop.is_set():
            if self._next is None:
                try:
                    self._next = self._queue.get(timeout=POLL)
                except TimeoutError:
                    if self._opening and time.monotonic() < deadline:
                        continue  # opening, or opening again after a loop: its frames come in a moment
                    return self._current.image if self._current is not None and self.state.up else None
                except QueueClosed:
                    return None
            assert self._next is not None
            if self._next.pts is not None and self._next.pts > t + 1e-6 and self._current is not None:
                break
            self._current, self._next = self._next, None
        return self._current.image if self._current is not None else None

    # --- the reader ---------------------------------------------------------------------------

    def _read_forever(self) -> None:
        backoff = Backoff(self.reconnect.initial, self.reconnect.max)
        offset = 0.0  # seconds the passes before this one lasted: a looped clip's times go on
        stop = self._workers.stop
        while not stop.is_set():
            self._opening = True
            try:
                inner = KINDS[self._parsed.kind].open(self._parsed, self.config, OpenContext(workers=self._workers))
                with self._lock:
                    self._inner = inner
                info = inner.open()
            except SourceError as exc:
                self._down(redact_url(str(exc)), backoff)
                continue
            self._set(up=True, error=None)
            reason, last = self._pump(inner, info, offset, backoff)
            inner.close()
            with self._lock:
                self._inner = None
            if stop.is_set():
                break
            if reason is None:  # the clip ended
                if last is None:
                    self._down("it gave no frame", backoff)
                    continue
                if not self.loop:
                    log.info("second input %s ended; the first goes on alone", self.display)
                    self._set(up=False, ended=True)
                    self._opening = False
                    self._queue.close()
                    return
                period = 1.0 / float(info.fps) if info.fps else 0.04
                offset = last + period
                continue
            self._down(reason, backoff)
        self._opening = False

    def _pump(self, inner, info, offset: float, backoff: Backoff) -> tuple[str | None, float | None]:
        """Copy frames until the input ends (None) or fails (why); also the last frame's time."""
        pace = None if self.synced or info.live else 1.0 / float(info.fps or 25)
        stop = self._workers.stop
        deadline = time.monotonic()
        first_pts: float | None = None
        last: float | None = None
        try:
            for frame in inner.frames():
                if stop.is_set():
                    return "closed", last
                if first_pts is None:
                    first_pts = frame.pts or 0.0
                    backoff.reset()
                t = offset + (frame.pts - first_pts if frame.pts is not None else frame.index * (pace or 0.04))
                last = t
                frame = replace(frame, pts=t)
                if self.synced:
                    self._opening = False
                    while not self._queue.put(frame, timeout=POLL):
                        if stop.is_set():
                            return "closed", last
                    continue
                if pace is not None:  # a file plays at its own rate, as a live input would
                    deadline = max(deadline + pace, time.monotonic() - pace)
                    if stop.wait(max(0.0, deadline - time.monotonic())):
                        return "closed", last
                self._latest = frame
            return None, last
        except QueueClosed:
            return "closed", last
        except SourceError as exc:
            return redact_url(str(exc)), last
        except Exception as exc:  # a bug, not an outage: said whole, then retried like any loss
            log.error("reading second input %s failed unexpectedly: %s", self.display, redact_url(repr(exc)))
            return redact_url(f"unexpected error {exc!r}"), last

    def _down(self, reason: str, backoff: Backoff) -> None:
        backoff.initial, backoff.maximum = self.reconnect.initial, self.reconnect.max
        delay = backoff.next_delay()
        was_up = self.state.up
        self._set(up=False, error=reason, reconnects=self.state.reconnects + 1)
        self._opening = False
        self._latest = None
        level = logging.WARNING if was_up or backoff.attempt == 1 else logging.INFO
        log.log(level, "second input %s lost: %s; the first goes on alone; next try in %.1f s", self.display, reason, delay)
        self.observer.blend_source_reconnect()
        self._workers.stop.wait(delay)

    def _set(self, **changes) -> None:
        before = self.state
        self.state = replace(before, **changes)
        if self.state.up != before.up:
            self.observer.blend_source_up(self.state.up)
        if self.state.up and not before.up and before.reconnects:
            log.info("second input %s is back: blended again", self.display)

    def close(self, wait: bool = True) -> None:
        """Stop the reader; ``wait``: until it ended (else it ends on its own, joined by the owner)."""
        self._workers.stop.set()
        with self._lock:
            inner = self._inner
        if inner is not None:
            inner.close()  # interrupts a blocked read
        self._queue.close()
        if wait:
            self._workers.join(5.0)


class BlendInputs:
    """The second inputs of the looks shown, one reader per input, opened on first use.

    Owned by the pipeline's ``LookSwitch``; a look names its input by ``dream.blend_with``, so
    two presets with the same one share it, and a switch back finds it still open."""

    def __init__(self, source: SourceConfig, *, synced: bool, reconnect: ReconnectConfig, workers: Workers,
                 observer: PipelineObserver | None = None) -> None:  # fmt: skip
        self.source = source
        self.synced = synced
        self.reconnect = reconnect
        self.workers = workers
        self.observer = observer or PipelineObserver()
        self._inputs: dict[tuple[str, bool], StillInput | SecondSource] = {}  # in order of last use
        self._failed: dict[str, str] = {}  # a still that cannot be read: said once
        self._lock = threading.Lock()
        self._closed = False

    def get(self, config: DreamConfig) -> StillInput | SecondSource | None:
        """The input ``config.blend_with`` names, opened now if it is not yet."""
        uri = config.blend_with
        if uri is None:
            return None
        key = (uri, config.blend_loop)
        with self._lock:
            found = self._inputs.pop(key, None)
            if found is None and not self._closed:
                found = self._open(uri, config.blend_loop)
            if found is not None:
                self._inputs[key] = found
            evicted = list(self._inputs.values())[:-MAX_READERS] if len(self._inputs) > MAX_READERS else []
            for old in evicted:
                self._inputs = {k: v for k, v in self._inputs.items() if v is not old}
        for old in evicted:
            old.close(wait=False)  # on the dream's or the director's thread: not waited for
        return found

    def _open(self, uri: str, loop: bool) -> StillInput | SecondSource | None:
        if is_still(uri):
            try:
                return StillInput(uri, self.source.max_pixels)
            except SourceError as exc:
                if uri not in self._failed:
                    self._failed[uri] = str(exc)
                    log.error("dream.blend_with: %s; the first input goes on alone", exc)
                return None
        config = self.source.model_copy(update={"uri": uri, "loop": False})  # the reader loops by opening it again
        return SecondSource(config, loop=loop, synced=self.synced, reconnect=self.reconnect, workers=self.workers,
                            observer=self.observer)  # fmt: skip

    def picture(self, config: DreamConfig, frame: Frame) -> np.ndarray | None:
        found = self.get(config)
        return found.picture(frame) if found is not None else None

    def states(self) -> list[dict]:
        with self._lock:
            return [found.state.as_dict() for found in self._inputs.values()]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            inputs, self._inputs = list(self._inputs.values()), {}
        for found in inputs:
            found.close()


__all__ = ["BlendInputs", "SecondSource", "SecondState", "StillInput", "blend_images", "fit_to", "is_still", "only_blend_differs", "still_blend",
           "unblended"]
