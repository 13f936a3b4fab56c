"""A source that never ends: it reconnects a lost input and shows idle frames meanwhile.

``ReconnectingSource`` wraps a factory of real sources. A reader thread owns the inner
source: it opens it, copies its frames into a small DROP_OLDEST queue, and when the input
is lost (``SourceLostError``, any ``SourceError``, or a file that ended) it closes it and
tries again after a capped exponential backoff (``reconnect.initial`` doubling up to
``reconnect.max``), forever. ``frames()`` yields the real frames while they flow and,
whenever none came for a moment, ``IdleFrame``s at the idle frame rate, so the outputs
keep moving and the pipeline never sees an end.

To the pipeline it is one steady live source: frames are renumbered, re-timed from one
clock (so a reconnect that restarts the stream's timestamps at 0 does not send the
outputs back in time) and resized to the size announced at ``open()``.

A stall (connected, but no frame for a while: a frozen server) is not an outage the
input itself reports at once; the daemon's watchdog sees ``stalled_for()`` and calls
``reopen()``. A rebuilt pipeline reads through a new ``view()``: the reader goes on.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from fractions import Fraction

import cv2

from ..config import ReconnectConfig
from ..errors import SourceError
from ..frames import Frame, IdleFrame, SourceInfo, freeze
from ..log import redact_url
from ..runtime.observer import PipelineObserver
from ..runtime.queues import FrameQueue, QueueClosed, QueuePolicy
from ..runtime.workers import POLL, Backoff, Worker, Workers
from ..sources.base import Source
from .idle import IdleAnimator

log = logging.getLogger(__name__)

DEFAULT_SIZE = (640, 360)
DEFAULT_FPS = Fraction(25)


def _log_unexpected(what: str, exc: BaseException) -> None:
    """A bug, not an outage: say so, with the traceback, but never a credential (a library's
    exception may quote the URL it was given, and the log filter sees only the message)."""
    log.error("%s failed unexpectedly: %s", what, redact_url(repr(exc)))
    log.debug("%s", redact_url("".join(traceback.format_exception(exc))))


class ReconnectingSource:
    """A Source that survives its input. ``retry_first_open``: a network or camera input that
    is down at start is waited for (idle frames meanwhile); a file that cannot be opened at
    start is an error (it will not get better by waiting)."""

    def __init__(
        self,
        factory: Callable[[], Source],
        *,
        display: str,
        reconnect: ReconnectConfig,
        idle: IdleAnimator,
        observer: PipelineObserver | None = None,
        retry_first_open: bool = True,
        size: tuple[int | None, int | None] = (None, None),
        fps: float | None = None,
        workers: Workers,
    ) -> None:
        self._factory = factory
        self._workers = workers
        self.display = display  # redacted
        self.reconnect = reconnect
        self.idle = idle
        self.observer = observer or PipelineObserver()
        self.retry_first_open = retry_first_open
        self._size = size
        self._fps = fps
        self.info: SourceInfo | None = None
        self.up = False
        self.reconnects = 0
        self._inner: Source | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._switch = threading.Event()  # the factory was replaced: reconnect now
        self._frames: FrameQueue = FrameQueue("source", 2, QueuePolicy.DROP_OLDEST, self._dropped)
        self._reader: Worker | None = None
        self._last_frame_at = 0.0  # reader thread: when the input last gave a frame (or connected)

    # --- Source protocol ----------------------------------------------------------------------

    def open(self) -> SourceInfo:
        """Connect (one try) and start the reader; a second call returns the same description."""
        if self.info is not None:
            return self.info
        opened = self._factory()  # a bad URI fails here, at start, whatever the kind
        inner: Source | None = opened  # None: not connected (yet)
        inner_info: SourceInfo | None = None
        try:
            inner_info = opened.open()
        except SourceError as exc:
            opened.close()
            if not self.retry_first_open:
                raise
            log.warning("input %s is not available (%s); showing idle frames until it is", self.display, exc)
            inner = None
        width = self._size[0] or (inner_info.width if inner_info else DEFAULT_SIZE[0])
        height = self._size[1] or (inner_info.height if inner_info else DEFAULT_SIZE[1])
        fps = Fraction(self._fps).limit_denominator(1001) if self._fps else (inner_info.fps if inner_info and inner_info.fps else DEFAULT_FPS)
        self.info = SourceInfo(
            uri=self.display, width=width, height=height, fps=fps, live=True,
            kind=inner_info.kind if inner_info else "network",
        )
        self.idle.start(width, height)
        self._inner = inner
        self._last_frame_at = time.monotonic()
        self._set_up(inner is not None)
        self._reader = self._workers.spawn("source-reconnect", self._read_forever)
        return self.info

    def frames(self) -> Iterator[Frame]:
        return self._frames_until(self._closed)

    def view(self) -> SourceView:
        """A Source over this one for one pipeline: closing it ends its frames, not the input."""
        return SourceView(self)

    def _frames_until(self, closed: threading.Event) -> Iterator[Frame]:
        if self.info is None:
            raise SourceError(f"{self.display}: not open (call open() first)")
        t0 = time.monotonic()
        last_real = t0
        index = 0
        next_idle = t0
        while not closed.is_set() and not self._closed.is_set():
            period = 1.0 / (self.idle.config.fps or float(self.info.fps or DEFAULT_FPS))
            gap = max(1.0, 3.0 * period)  # this long without a real frame and idle frames begin
            now = time.monotonic()
            idle_now = now - last_real > gap
            wait = max(0.0, next_idle - now) if idle_now else POLL
            try:
                frame = self._frames.get(timeout=wait)
            except QueueClosed:
                return
            except TimeoutError:
                frame = None
            now = time.monotonic()
            if frame is not None:
                last_real = now
                self.idle.remember_input(frame.image)
                yield Frame(image=self._fit(frame.image), index=index, pts=now - t0, captured_at=frame.captured_at)
                index += 1
            elif now - last_real > gap and now >= next_idle:
                next_idle = max(next_idle + period, now)
                image = self.idle.next_image()
                self.observer.frame_done("idle")
                yield IdleFrame(image=image, index=index, pts=now - t0, captured_at=now)
                index += 1

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            inner = self._inner
        if inner is not None:
            inner.close()  # interrupts a blocked read
        self._frames.close()
        reader = self._reader.thread if self._reader is not None else None
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=10)

    # --- reconfiguration ----------------------------------------------------------------------

    def replace(self, factory: Callable[[], Source], display: str) -> None:
        """Switch to another input (a reloaded ``source`` section): idle frames bridge the gap."""
        log.info("switching input %s -> %s", self.display, display)
        self._factory = factory
        self.display = display
        self._switch.set()
        with self._lock:
            inner = self._inner
        if inner is not None:
            inner.close()

    def stalled_for(self) -> float | None:
        """Seconds the connected input has given no frame; None while it is down."""
        if not self.up or self._closed.is_set():
            return None
        return time.monotonic() - self._last_frame_at

    def reopen(self, reason: str) -> None:
        """The watchdog found the input stalled: drop the connection; the reader connects again."""
        log.warning("input %s stalled: %s; reopening it", self.display, reason)
        with self._lock:
            inner = self._inner
        if inner is not None:
            inner.close()  # the reader's read returns; it reconnects after the backoff

    # --- the reader thread --------------------------------------------------------------------

    def _read_forever(self) -> None:
        backoff = Backoff(self.reconnect.initial, self.reconnect.max)
        inner, delay = self._inner, 0.0
        try:
            while not self._closed.is_set():
                if inner is None:
                    if self._sleep(delay):
                        break
                    self._switch.clear()
                    inner, error = self._connect()
                    if inner is None and not self._closed.is_set():
                        backoff.initial, backoff.maximum = self.reconnect.initial, self.reconnect.max
                        delay = backoff.next_delay()
                        level = logging.WARNING if backoff.attempt == 1 else logging.INFO
                        log.log(level, "reconnect to %s failed (attempt %d): %s; next try in %.1f s",
                                self.display, backoff.attempt, error, delay)
                        continue
                if inner is None:
                    break
                reason = self._pump(inner, backoff)
                with self._lock:
                    self._inner = None
                inner.close()
                inner = None
                if self._closed.is_set():
                    break
                self._set_up(False)
                if self._switch.is_set():
                    delay = 0.0
                else:
                    delay = backoff.next_delay()
                    log.warning("input %s lost: %s; reconnecting in %.1f s", self.display, reason, delay)
        finally:
            self._set_up(False)

    def _connect(self) -> tuple[Source | None, str]:
        self.reconnects += 1
        self.observer.source_reconnect()
        try:
            inner = self._factory()
            inner.open()
        except SourceError as exc:
            return None, redact_url(str(exc))
        except Exception as exc:  # an unexpected failure must not end the retries: log it whole
            _log_unexpected(f"reconnect to {self.display}", exc)
            return None, redact_url(repr(exc))
        with self._lock:
            if self._closed.is_set():
                inner.close()
                return None, "closed"
            self._inner = inner
        log.info("input %s is back", self.display)
        self._last_frame_at = time.monotonic()
        self._set_up(True)
        return inner, ""

    def _pump(self, inner: Source, backoff: Backoff) -> str:
        """Copy frames until the input ends or fails; returns why it stopped."""
        info = getattr(inner, "info", None)
        pace = None if info is None or info.live else 1.0 / float(info.fps or DEFAULT_FPS)
        deadline = time.monotonic()
        first = True
        try:
            for frame in inner.frames():
                if self._closed.is_set() or self._switch.is_set():
                    return "closed"
                if first:
                    backoff.reset()
                    first = False
                self._last_frame_at = time.monotonic()
                if pace is not None:  # a file plays at its own rate, as a live input would
                    deadline = max(deadline + pace, time.monotonic() - pace)
                    if self._closed.wait(max(0.0, deadline - time.monotonic())):
                        return "closed"
                self._frames.put(frame)
            return "the input ended"
        except QueueClosed:
            return "closed"
        except SourceError as exc:
            return redact_url(str(exc))
        except Exception as exc:  # reported with its traceback, then retried like any loss
            _log_unexpected(f"reading {self.display}", exc)
            return redact_url(f"unexpected error {exc!r}")

    # --- helpers ------------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> bool:
        """Wait, cut short by close() or replace(); True if closed."""
        end = time.monotonic() + seconds
        while not self._switch.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            if self._closed.wait(min(POLL, remaining)):
                return True
        return self._closed.is_set()

    def _set_up(self, up: bool) -> None:
        self.up = up
        self.observer.source_up(up)

    def _dropped(self, queue: str, reason: str) -> None:
        self.observer.frame_dropped("capture", reason)

    def _fit(self, image):
        info = self.info
        assert info is not None, "frames flow only after open() described the input"
        if image.shape[1] == info.width and image.shape[0] == info.height:
            return image
        return freeze(cv2.resize(image, (info.width, info.height), interpolation=cv2.INTER_AREA))


class SourceView:
    """One pipeline's way into a ``ReconnectingSource``: its ``close`` ends only this view."""

    def __init__(self, source: ReconnectingSource) -> None:
        self._source = source
        self._closed = threading.Event()

    @property
    def info(self) -> SourceInfo | None:
        return self._source.info

    def open(self) -> SourceInfo:
        return self._source.open()

    def frames(self) -> Iterator[Frame]:
        return self._source._frames_until(self._closed)

    def close(self) -> None:
        self._closed.set()


__all__ = ["Backoff", "IdleFrame", "ReconnectingSource", "SourceView"]
