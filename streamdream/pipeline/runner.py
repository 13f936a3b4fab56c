"""The frame pipeline: capture -> dream -> write, each in its own thread.

A frame's path, top to bottom:
1. ``_capture`` reads the source and puts frames on the ``capture`` queue. Files use
   the WAIT policy (nothing lost); live sources DROP_OLDEST, so the dreamer always
   gets the freshest frame and every stale one is counted.
2. ``_dream`` takes a frame, runs the processor (the dream and its temporal coherence)
   and puts the result on the ``output`` queue.
3. ``_write`` hands each output frame to every sink, in order, and closes them all at
   the end: an MP4 is finalized whatever happened upstream.
Each worker puts an ``EndOfStream`` marker in ``finally`` so no reader hangs; one stop
event ends everything; every wait has a timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import StreamdreamError
from ..frames import EndOfStream, Frame, SourceInfo
from .observer import PipelineObserver
from .queues import FrameQueue, QueueClosed, QueuePolicy

if TYPE_CHECKING:  # the protocols only; importing the packages would load every sink and source
    from ..sinks.base import Sink
    from ..sources.base import Source

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between checks of the stop event while waiting


class FrameProcessor(Protocol):
    """Turns an input frame into the output frame (same index, pts and capture time)."""

    def process(self, frame: Frame) -> Frame: ...


@dataclass
class PipelineResult:
    info: SourceInfo | None = None
    frames_in: int = 0
    frames_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    error: BaseException | None = None
    stopped: bool = False  # ended by the stop event (Ctrl-C, SIGTERM, q in a window)


class Pipeline:
    def __init__(
        self,
        source: Source,
        make_processor: Callable[[SourceInfo], FrameProcessor],
        sinks: Sequence[Sink],
        *,
        queue_size: int = 4,
        max_frames: int | None = None,
        stop: threading.Event | None = None,
        observer: PipelineObserver | None = None,
        progress: Callable[[SourceInfo], object] | None = None,
        opened: SourceInfo | None = None,
    ) -> None:
        self.source = source
        self._make_processor = make_processor
        self.processor: FrameProcessor | None = None  # built once the source says if it is live; swappable
        self.sinks = list(sinks)
        self.queue_size = queue_size
        self.max_frames = max_frames
        self.stop = stop or threading.Event()
        self.observer = observer or PipelineObserver()
        self._make_progress = progress
        self._opened = opened  # the caller opened the source already (to fail fast) and got this
        self.result = PipelineResult()
        self._lock = threading.Lock()

    # --- bookkeeping shared by the workers ----------------------------------------------------

    def _dropped(self, stage: str, reason: str) -> None:
        with self._lock:
            self.result.dropped[reason] += 1
        self.observer.frame_dropped(stage, reason)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self.result.error is None:
                self.result.error = error
        self.stop.set()

    # --- workers ------------------------------------------------------------------------------

    def _capture(self, out: FrameQueue) -> None:
        try:
            for frame in self.source.frames():
                if self.stop.is_set():
                    break
                self.result.frames_in += 1
                self.observer.frame_done("capture")
                while not out.put(frame, timeout=POLL):  # WAIT policy: retry until room or stop
                    if self.stop.is_set():
                        return
                self.observer.queue_depth(out.name, len(out))
                if self.max_frames and self.result.frames_in >= self.max_frames:
                    break
        except BaseException as exc:  # reported, never swallowed: ends the run with this error
            log.debug("capture failed", exc_info=True)
            self._fail(exc)
        finally:
            out.put(EndOfStream("capture"), force=True)

    def _dream(self, inbox: FrameQueue, out: FrameQueue) -> None:
        try:
            while True:
                try:
                    item = inbox.get(timeout=POLL)
                except TimeoutError:
                    continue
                if isinstance(item, EndOfStream):
                    break
                if self.stop.is_set():
                    self._dropped("dream", "shutdown")
                    continue
                started = time.monotonic()
                result = self.processor.process(item)  # type: ignore[union-attr]
                self.observer.stage_time("dream", time.monotonic() - started)
                self.observer.frame_done("dream")
                while not out.put(result, timeout=POLL):
                    if self.stop.is_set() and out.policy is QueuePolicy.WAIT:
                        self._dropped("dream", "shutdown")
                        break
                self.observer.queue_depth(inbox.name, len(inbox))
        except BaseException as exc:
            log.debug("dream failed", exc_info=True)
            self._fail(exc)
        finally:
            out.put(EndOfStream("dream"), force=True)

    def _write(self, inbox: FrameQueue, progress: object) -> None:
        try:
            while True:
                try:
                    item = inbox.get(timeout=POLL)
                except TimeoutError:
                    continue
                if isinstance(item, EndOfStream):
                    break
                started = time.monotonic()
                for sink in self.sinks:
                    sink.write(item)
                    quit_event = getattr(sink, "quit_event", None)
                    if quit_event is not None and quit_event.is_set():
                        log.info("%s asked to quit", sink.name)
                        self.result.stopped = True
                        self.stop.set()
                self.result.frames_out += 1
                self.observer.stage_time("write", time.monotonic() - started)
                self.observer.frame_done("write")
                self.observer.latency(time.monotonic() - item.captured_at)
                self.observer.queue_depth(inbox.name, len(inbox))
                if progress is not None:
                    progress.update(1)  # type: ignore[attr-defined]
        except BaseException as exc:
            log.debug("write failed", exc_info=True)
            self._fail(exc)
        finally:
            self._close_sinks()

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # one sink failing to close must not leave the others open
                log.error("closing output %s failed: %s", sink.name, exc)
                self._fail(exc)

    # --- the run ------------------------------------------------------------------------------

    def _open(self) -> SourceInfo:
        info = self._opened or self.source.open()
        opened: list[Sink] = []
        try:
            for sink in self.sinks:
                sink.open(info)
                opened.append(sink)
        except BaseException:
            for sink in opened:
                sink.close()
            self.source.close()
            raise
        return info

    def run(self) -> PipelineResult:
        """Run until the source ends, an error, or the stop event; outputs always finalized."""
        info = self._open()
        self.result.info = info
        try:
            self.processor = self._make_processor(info)
        except BaseException:
            self.source.close()
            self._close_sinks()
            raise
        policy = QueuePolicy.DROP_OLDEST if info.live else QueuePolicy.WAIT
        capture_q: FrameQueue = FrameQueue("capture", self.queue_size, policy, self._dropped)
        output_q: FrameQueue = FrameQueue("output", self.queue_size, policy, self._dropped)
        progress = self._make_progress(info) if self._make_progress else None
        workers = [
            threading.Thread(target=self._capture, args=(capture_q,), name="capture", daemon=True),
            threading.Thread(target=self._dream, args=(capture_q, output_q), name="dream", daemon=True),
            threading.Thread(target=self._write, args=(output_q, progress), name="write", daemon=True),
        ]
        for worker in workers:
            worker.start()
        try:
            self._wait(workers)
        finally:
            if self.stop.is_set() and self.result.error is None:
                self.result.stopped = True
            self.stop.set()
            self.source.close()  # interrupts a capture blocked in a read
            for worker in workers:
                worker.join(timeout=30)
            close = getattr(self.processor, "close", None)
            if close is not None:
                close()
            if progress is not None:
                progress.close()  # type: ignore[attr-defined]
        error = self.result.error
        if error is not None and not isinstance(error, (StreamdreamError, QueueClosed)):
            log.error("pipeline failed: %s", error, exc_info=error)
        return self.result

    def _wait(self, workers: list[threading.Thread]) -> None:
        writer = workers[-1]
        while writer.is_alive():
            writer.join(timeout=POLL)
            if self.stop.is_set():
                # the writer drains what is already dreamed, then finalizes
                self.source.close()
