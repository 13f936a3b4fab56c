"""The frame pipeline, top to bottom, for every mode (``run`` and ``serve``, files and live):

1. ``Capture`` (worker ``capture``) reads the source onto the ``capture`` queue. Files
   WAIT (nothing lost); live sources DROP_OLDEST: the dream always gets the freshest
   frame and every stale one is counted.
2. ``Dream`` (worker ``dream``) takes each frame through the ``LookSwitch``:
   * a file: the look's processor dreams it whole (the dream and its temporal coherence);
   * a live source: the frame is offered to the look's one-frame slot and leaves at once
     with the latest dream carried onto it, while
3. ``LiveDreamWorker`` (worker ``dream-refresh``, live only) dreams the slot's freshest
   frame and publishes the new dream state (``live.py``).
4. The dream worker hands every output frame to the ``OutputSet``: one worker and one
   bounded queue per output (``outputs.py``), so a failing output is retried alone.

Workers come from one owner (``workers.py``): one stop token, a timeout on every wait, an
end marker in ``finally``. The counts are owned by the worker that makes them and read
as a frozen ``PipelineResult``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import StreamdreamError
from ..frames import EndOfStream, Frame, SourceInfo
from ..runtime.interrupts import DREAM_STEP_WAIT, signalled, stop_watched
from ..runtime.observer import ObserverGroup, PipelineObserver
from ..runtime.queues import FrameQueue, QueueClosed, QueuePolicy
from ..runtime.workers import JOIN_TIMEOUT, POLL, Consumer, Worker, Workers
from .live import LiveDreamWorker
from .outputs import OutputSet, OutputState

if TYPE_CHECKING:  # the protocols only; importing the packages would load every sink and source
    from ..sinks.base import Sink
    from ..sources.base import Source

log = logging.getLogger(__name__)


class Dreamer(Protocol):
    """Turns an input frame into the output frame (same index, pts and capture time)."""

    def process(self, frame: Frame) -> Frame | None:
        """The dreamed frame; None for a frame dreamed only for what it carries to the next."""


@dataclass(frozen=True)
class PipelineResult:
    info: SourceInfo | None = None
    frames_in: int = 0
    frames_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # by reason
    error: BaseException | None = None
    stopped: bool = False  # ended by the stop event (Ctrl-C, SIGTERM, q in a window)
    outputs: tuple[OutputState, ...] = ()

    @property
    def outputs_down(self) -> list[OutputState]:
        return [o for o in self.outputs if o.error is not None and not o.up]


class DropTally(PipelineObserver):
    """Drops by reason, from any thread; every change replaces a read-only mapping."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: MappingProxyType[str, int] = MappingProxyType({})

    def frame_dropped(self, stage: str, reason: str) -> None:
        with self._lock:
            self.counts = MappingProxyType({**self.counts, reason: self.counts.get(reason, 0) + 1})


class Capture(Worker):
    def __init__(self, pipeline: Pipeline, out: FrameQueue) -> None:
        super().__init__("capture")
        self.p, self.out = pipeline, out
        self.frames_in = 0
        self._frames: Iterator[Frame] | None = None

    def step(self) -> bool:
        if self._frames is None:
            self._frames = iter(self.p.source.frames())
        frame = next(self._frames, None)
        if frame is None or self.stop.is_set():
            return False
        self.frames_in += 1
        self.p.observer.frame_done("capture")
        while not self.out.put(frame, timeout=POLL):  # WAIT policy: retry until room or stop
            if self.stop.is_set():
                return False
        self.p.observer.queue_depth(self.out.name, len(self.out))
        return not (self.p.max_frames and self.frames_in >= self.p.max_frames)

    def failed(self, error: BaseException) -> None:
        self.p.fail(error)

    def end(self) -> None:
        if self._frames is not None and hasattr(self._frames, "close"):
            self._frames.close()  # the generator's finally, on this thread
        self.out.put(EndOfStream("capture"), force=True)


class Dream(Consumer):
    """Dreams (files) or shows (live) every frame, then hands it to the outputs."""

    drains = True  # to the capture worker's end marker: then the outputs get theirs

    def __init__(self, pipeline: Pipeline, inbox: FrameQueue, progress: Any) -> None:
        super().__init__("dream")
        self.p, self.inbox, self.progress = pipeline, inbox, progress
        self.frames_out = 0

    def handle(self, item: Frame) -> bool:
        p = self.p
        if self.stop.is_set():
            p.observer.frame_dropped("dream", "shutdown")
            return True
        started = time.monotonic()
        out = p.dreamer.process(item)
        p.observer.stage_time("dream", time.monotonic() - started)
        p.observer.frame_done("dream")
        if out is None:  # dreamed for what it carries, not shown (a cluster segment's warm-up)
            return True
        p.outputs.deliver(out, self.stop)
        self.frames_out += 1
        p.observer.frame_done("write")
        p.observer.latency(time.monotonic() - item.captured_at)
        p.observer.queue_depth(self.inbox.name, len(self.inbox))
        if self.progress is not None:
            self.progress.update(1)
        return True

    def failed(self, error: BaseException) -> None:
        self.p.fail(error)

    def end(self) -> None:
        self.p.outputs.finish(complete=not self.p.stopped_early())


class Pipeline:
    """``run()`` until the source ends, an error, or the stop token; outputs always finalized.

    ``dreamer``: what turns frames into dreamed frames (a ``LookSwitch``, or any object with
    ``process``; ``live_dreams()`` if it dreams beside the frames), or a function of the
    opened source's ``SourceInfo`` that makes one. ``outputs``: an ``OutputSet`` or sinks.
    ``workers``: the caller's owner (there is no default): the pipeline's threads are a group of
    it, stopped alone by ``stop()`` and by the caller's stop, joined by ``finish()`` and the caller.
    """

    def __init__(
        self,
        source: Source,
        dreamer: Dreamer | Callable[[SourceInfo], Dreamer],
        outputs: OutputSet | Sequence[Sink],
        *,
        queue_size: int = 4,
        max_frames: int | None = None,
        workers: Workers,
        observer: PipelineObserver | None = None,
        progress: Callable[[SourceInfo], object] | None = None,
        opened: SourceInfo | None = None,
    ) -> None:
        self.source = source
        self._make_dreamer = dreamer if callable(dreamer) and not hasattr(dreamer, "process") else (lambda info: dreamer)
        self.dreamer: Any = None  # built once the source says if it is live
        self.drops = DropTally()
        self.observer = ObserverGroup(observer or PipelineObserver(), self.drops)
        self.outputs = outputs if isinstance(outputs, OutputSet) else OutputSet.of_sinks(outputs, self.observer)
        self.outputs.observer = ObserverGroup(self.outputs.observer, self.drops)
        self.outputs.on_quit = self._quit
        self.queue_size = queue_size
        self.max_frames = max_frames
        self.workers = workers.group("pipeline")  # the caller's owner: run's, serve's, a segment's
        self._make_progress = progress
        self._opened = opened  # the caller opened the source already (to fail fast) and got this
        self.info: SourceInfo | None = None
        self._error: BaseException | None = None
        self._quit_asked = False
        self._error_lock = threading.Lock()
        self._capture: Capture | None = None
        self._dream: Dream | None = None
        self._progress: Any = None
        self._ended_by_stop = False

    # --- reported from any worker -------------------------------------------------------------

    def fail(self, error: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = error
        self.workers.stop.set()

    def _quit(self) -> None:
        self._quit_asked = True
        self.workers.stop.set()

    def stopped_early(self) -> bool:
        """Stopped (Ctrl-C, an error, a window's q) before a file input's end: its outputs are
        then not complete. A live input has no end: stopping is how it ends."""
        return self.workers.stop.is_set() and not (self.info is not None and self.info.live)

    def stop(self) -> None:
        """End this pipeline alone (the watchdog's rebuild); outputs are finalized."""
        self.workers.stop.set()

    @property
    def result(self) -> PipelineResult:
        """The counts so far, as a frozen snapshot."""
        return PipelineResult(
            info=self.info,
            frames_in=self._capture.frames_in if self._capture else 0,
            frames_out=self._dream.frames_out if self._dream else 0,
            dropped=dict(self.drops.counts),
            error=self._error,
            stopped=(self._quit_asked or self._ended_by_stop) and self._error is None,
            outputs=tuple(self.outputs.states()),
        )

    @property
    def alive(self) -> bool:
        return self._dream is not None and self._dream.alive

    # --- the run ------------------------------------------------------------------------------

    def start(self) -> None:
        info = self.info = self._opened or self.source.open()
        try:
            self.dreamer = self._make_dreamer(info)
            self.outputs.start(info, self.workers)
        except BaseException:
            self.workers.stop.set()
            self.outputs.close(timeout=JOIN_TIMEOUT / 10, complete=False)  # files opened so far: removed, nothing was written
            self.source.close()
            raise
        policy = QueuePolicy.DROP_OLDEST if info.live else QueuePolicy.WAIT
        capture_q: FrameQueue = FrameQueue("capture", self.queue_size, policy, self.observer.frame_dropped)
        progress = self._make_progress(info) if self._make_progress else None
        self._capture = Capture(self, capture_q)
        self._dream = Dream(self, capture_q, progress)
        self.workers.start(self._capture)
        self.workers.start(self._dream)
        if info.live and hasattr(self.dreamer, "live_dreams"):
            self.workers.start(LiveDreamWorker(self.dreamer.live_dreams, self.fail))
        self._progress = progress

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end (True) or ``timeout`` (False); the source is closed once stopping."""
        deadline = None if timeout is None else time.monotonic() + timeout
        stopping_since = None
        with stop_watched():
            while self.alive:
                assert self._dream is not None and self._dream.thread is not None
                self._dream.thread.join(POLL)
                if self.workers.stop.is_set():
                    self.source.close()  # interrupts a capture blocked in a read
                    stopping_since = stopping_since or time.monotonic()
                    if signalled() and time.monotonic() - stopping_since > DREAM_STEP_WAIT:
                        break  # the process is ending: finish() finalizes the outputs without that frame
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        return True

    def finish(self, join_timeout: float = JOIN_TIMEOUT) -> PipelineResult:
        """Stop everything and join it; returns the result (errors are in it, not raised).

        A worker still busy after ``join_timeout`` (a hung dream) is left to end on its own,
        logged: the outputs are finalized by their own workers either way.
        """
        self._ended_by_stop = self.workers.stop.is_set()
        complete = not self.stopped_early()
        self.workers.stop.set()
        self.source.close()
        self.outputs.finish(complete)  # if the dream worker hung, the outputs still finalize
        if signalled():  # the process is ending: wait for the files, not for a dream step in flight
            self.outputs.close(join_timeout, complete)
            join_timeout = POLL
        stragglers = self.workers.join(join_timeout)
        if stragglers and not signalled():
            log.warning("pipeline threads still busy after %.0f s, left to end on their own: %s", join_timeout, ", ".join(stragglers))
        if self._progress is not None:
            self._progress.close()
        result = self.result
        error = result.error
        if error is not None and not isinstance(error, (StreamdreamError, QueueClosed)):
            log.error("pipeline failed: %s", error, exc_info=error)
        return result

    def run(self) -> PipelineResult:
        try:
            self.start()
            self.wait()
        finally:  # also after a Ctrl-C during start(): what was opened is closed
            result = self.finish()
        return result


__all__ = ["Dreamer", "Pipeline", "PipelineResult"]
