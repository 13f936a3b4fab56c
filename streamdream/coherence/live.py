"""Live sources: every input frame goes out at once; the dream catches up in its own thread.

A frame's path:
1. ``process`` (the caller's thread) looks for a scene cut against the previous input
   frame (the dreamer skips frames, so only this thread can tell a cut from motion)
   and drops the frame, tagged with its shot number, into a one-slot mailbox (a newer
   frame replaces an older one the dreamer has not started: the dreamer always works
   on the freshest frame, and nothing queues up behind it).
2. It takes the latest finished dream (an immutable ``DreamState``), moves its detail
   along the optical flow from the frame the dream was computed on straight to this
   frame, and adds it: a few milliseconds, whatever the dream costs. A dream of an
   earlier shot is not shown.
3. The dreamer thread takes the mailbox's frame, runs the mode's ``dream_detail`` (a
   flow-carried warm start by default; a full dream when the shot changed) and
   publishes a new ``DreamState``.

So the output keeps the source's frame rate and the dream refreshes as fast as it can.
``dream_refreshes``, ``refresh_rate`` and ``detail_age`` (how old the dreamed frame is,
in seconds of capture time) say how well it keeps up. The observer hears of each
refresh as ``stage_time("dream_refresh", seconds)`` and ``dream_steps(steps)``, and of
each output frame's detail age as ``stage_time("dream_age", seconds)``; the pipeline's
own ``dream`` stage times ``process``, i.e. the per-frame warp, which is the latency
this wrapper adds.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..config import CoherenceConfig
from ..dream.engine import resize
from ..frames import Frame, freeze
from ..pipeline.observer import PipelineObserver
from .adaptive import QualityController
from .carry import FlowWarper
from .flow import FlowEstimator, to_gray
from .processors import DreamProcessor, compose, dream_size
from .scenecut import SceneCutDetector

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between checks of the stop event
JOIN_TIMEOUT = 30.0  # a dream step in flight is let finish, up to this long
REFRESH_STAGE = "dream_refresh"
AGE_STAGE = "dream_age"
RATE_WINDOW = 16  # refreshes the refresh rate is measured over
# The caller's warp is redone from the dreamed frame for every output frame, never
# accumulated, and must fit in a frame interval beside the dreamer: the fastest DIS.
DISPLAY_FLOW = ("dis", "ultrafast")


@dataclass(frozen=True)
class DreamJob:
    frame: Frame
    shot: int  # scene cuts seen before this frame


class LatestMailbox:
    """A one-slot box: ``put`` replaces what is there; ``take`` waits (with a timeout) and empties it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: DreamJob | None = None
        self.replaced = 0  # frames the dreamer never saw (they were still output)

    def put(self, item: DreamJob) -> None:
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> DreamJob | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


@dataclass(frozen=True)
class DreamState:
    """The latest finished dream, shared read-only between the two threads."""

    detail: np.ndarray  # float32 at the dream resolution, read-only
    gray: np.ndarray  # the dreamed frame, grey, at the same resolution, read-only
    index: int
    shot: int
    captured_at: float
    finished_at: float
    steps: int


class LiveDreamer:
    """A ``FrameProcessor`` for live sources, wrapping a mode's ``DreamProcessor``."""

    def __init__(
        self,
        processor: DreamProcessor,
        coherence: CoherenceConfig | None = None,
        *,
        observer: PipelineObserver | None = None,
    ) -> None:
        self.processor = processor
        self.coherence = coherence or processor.coherence
        self.observer = observer or PipelineObserver()
        self.warper = FlowWarper(FlowEstimator(*DISPLAY_FLOW))  # caller's thread only
        self.mailbox = LatestMailbox()
        self.cuts = SceneCutDetector(self.coherence.scene_cut)  # caller's thread only
        self.shot = 0
        self._dreamed_shot: int | None = None  # dreamer's thread only
        self.controller: QualityController | None = None
        self.dream_refreshes = 0
        self.frames_out = 0
        self.detail_age = 0.0  # capture-time age of the dream shown in the last output frame
        self._state: DreamState | None = None
        self._finished_times: collections.deque[float] = collections.deque(maxlen=RATE_WINDOW)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- the caller's side --------------------------------------------------------------------

    def process(self, frame: Frame) -> Frame:
        if self._error is not None:
            raise self._error
        self._start()
        if self.cuts(frame.image):
            self.shot += 1
        self.mailbox.put(DreamJob(frame, self.shot))
        state = self._state
        image = frame.image if state is None or state.shot != self.shot else self._show(frame, state)
        self.frames_out += 1
        return Frame(image, frame.index, frame.pts, frame.captured_at)

    def _show(self, frame: Frame, state: DreamState) -> np.ndarray:
        height, width = state.detail.shape[:2]
        if frame.index == state.index:
            detail = state.detail
        else:
            gray = to_gray(resize(frame.image, width, height))
            detail = self.warper.carry(state.detail, state.gray, gray).values
        self.detail_age = max(0.0, frame.captured_at - state.captured_at)
        self.observer.stage_time(AGE_STAGE, self.detail_age)
        return compose(frame.image, detail, tone=self.processor.engine.tone)

    @property
    def refresh_rate(self) -> float:
        """Dream refreshes per second over the last few refreshes (0 until there are two)."""
        times = list(self._finished_times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    @property
    def state(self) -> DreamState | None:
        return self._state

    def wait_for_refresh(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Wait until ``count`` dreams have finished (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.dream_refreshes < count and self._error is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return self.dream_refreshes >= count

    # --- the dreamer's side -------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="live-dreamer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                job = self.mailbox.take(timeout=POLL)
                if job is None or self._stop.is_set():
                    continue
                self._refresh(job)
        except BaseException as exc:  # handed to the caller's next process(), never swallowed
            log.error("live dreamer failed: %s", exc, exc_info=True)
            self._error = exc
        finally:
            self._stop.set()
            log.debug("live dreamer ended after %d refreshes", self.dream_refreshes)

    def _refresh(self, job: DreamJob) -> None:
        frame = job.frame
        started = time.monotonic()
        small = self.processor.downscale(frame.image)
        cut = self._dreamed_shot is not None and job.shot != self._dreamed_shot
        dreamed = self.processor.dream_detail(small, cut=cut)
        self._dreamed_shot = job.shot
        finished = time.monotonic()
        gray = freeze(to_gray(small))
        self._state = DreamState(dreamed.detail, gray, frame.index, job.shot, frame.captured_at, finished, dreamed.steps)
        self.dream_refreshes += 1
        self._finished_times.append(finished)
        self.observer.stage_time(REFRESH_STAGE, finished - started)
        self.observer.dream_steps(dreamed.steps)
        self._adapt(finished - started, dreamed.full, frame.width)

    def _adapt(self, seconds: float, full: bool, frame_width: int) -> None:
        """Adaptive quality for live sources targets the refresh rate (``target_fps``)."""
        if not self.coherence.adaptive or (full and self.processor.mode == "flow"):
            return
        if self.controller is None:
            width = dream_size(frame_width, 1, self.processor.width)[0]
            self.controller = QualityController.from_config(self.coherence, width, self.processor.steps)
            self.processor.set_quality(self.controller.quality)
        change = self.controller.observe(seconds)
        if change is not None:
            log.info("live dream: width %d, %d steps per refresh (%.0f ms per refresh)", change.width, change.steps, seconds * 1e3)
            self.processor.set_quality(change)

    def close(self) -> None:
        """Stop the dreamer and wait for it (a step in flight finishes first)."""
        self._stop.set()
        self.mailbox.wake()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=JOIN_TIMEOUT)
            if thread.is_alive():
                log.warning("live dreamer still busy after %.0f s; left to end on its own", JOIN_TIMEOUT)


__all__ = ["AGE_STAGE", "DreamJob", "DreamState", "LatestMailbox", "LiveDreamer", "REFRESH_STAGE"]
