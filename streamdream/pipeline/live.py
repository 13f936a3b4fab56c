"""The live dream stage: every input frame goes out at once; the dream catches up beside it.

For a live source the pipeline's dream worker does not dream: it *shows*. Per look
(``LiveDream``), a frame's path:

1. ``offer`` (dream worker): the processor's own scene-cut detector compares the frame
   with the previous input frame (only this side sees every frame, so only it can tell a
   cut from motion); the frame, tagged with its shot number, goes into a one-frame slot,
   a ``FrameQueue`` of size 1 with DROP_OLDEST. A frame the dreamer never started is
   replaced and counted as a drop (stage ``dream``, reason ``superseded``): it is still
   output, with the latest dream carried onto it, but never dreamed itself.
2. ``show`` (dream worker): the latest published ``DreamState``'s detail, moved along the
   optical flow from the frame it was dreamed on straight to this frame, is added: a few
   milliseconds, whatever the dream costs. What entered at the picture's edge since that
   dream (a panning webcam's new side) shows the dream mirrored at the edge until the next
   refresh dreams it. A dream of an earlier shot is not shown.
3. ``refresh`` (the ``dream-refresh`` worker, ``LiveDreamWorker``): takes the slot's
   frame, runs the processor's ``downscale`` and ``dream_detail`` (a full dream when the
   shot changed), feeds the processor's adaptive quality (``observe_time``, the same path
   files use) and publishes a new frozen ``DreamState`` by replacing the reference.

The processors hold no threads: one ``dream-refresh`` worker refreshes every look that is
showing (two during a crossfade). The observer hears of each refresh as
``stage_time("dream_refresh", s)`` and ``dream_steps(n)``, and of each output frame's
detail age as ``stage_time("dream_age", s)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..coherence.carry import FlowWarper
from ..coherence.flow import FlowEstimator, FlowMethod, FlowPreset, to_gray
from ..frames import Frame, freeze
from ..runtime.observer import PipelineObserver
from ..runtime.queues import FrameQueue, QueuePolicy
from ..runtime.workers import POLL, Worker

if TYPE_CHECKING:  # TensorFlow comes with the processors; this module must not import it
    from ..coherence.processors import DreamProcessor

log = logging.getLogger(__name__)

REFRESH_STAGE = "dream_refresh"
AGE_STAGE = "dream_age"
# The shown warp is redone from the dreamed frame for every output frame, never
# accumulated, and must fit in a frame interval beside the dreamer: the fastest DIS.
DISPLAY_FLOW: tuple[FlowMethod, FlowPreset] = ("dis", "ultrafast")
WARM_SHOT = -1  # a warm-up on a made-up picture: never shown, and the first real frame dreams in full


@dataclass(frozen=True)
class DreamJob:
    frame: Frame
    shot: int  # scene cuts seen before this frame


@dataclass(frozen=True)
class DreamState:
    """The latest finished dream of one look; replaced whole, never changed."""

    detail: np.ndarray  # float32 at the dream resolution, read-only
    gray: np.ndarray  # the dreamed frame, grey, at the same resolution, read-only
    index: int
    shot: int
    captured_at: float
    finished_at: float
    steps: int


class LiveDream:
    """One look's live dream: its slot, its dream step and its published state."""

    def __init__(self, processor: DreamProcessor, observer: PipelineObserver | None = None) -> None:
        from ..coherence.processors import compose  # noqa: PLC0415 - loads Keras and its backend (loaded already with the processor)
        from ..dream.engine import resize  # noqa: PLC0415 - loads Keras and its backend

        self._compose, self._resize = compose, resize
        self.processor = processor
        self.observer = observer or PipelineObserver()
        self.slot: FrameQueue[DreamJob] = FrameQueue("dream", 1, QueuePolicy.DROP_OLDEST, self._superseded)
        self.warper = FlowWarper(FlowEstimator(*DISPLAY_FLOW))  # the showing side only
        self.shot = 0  # the showing side only
        self.detail_age = 0.0  # of the dream shown in the last output frame (showing side)
        self.state: DreamState | None = None  # written by the refreshing side only
        self.refreshes = 0  # refreshing side only
        self._dreamed_shot: int | None = None  # refreshing side only

    def _superseded(self, queue: str, reason: str) -> None:
        self.observer.frame_dropped("dream", "superseded")

    # --- the showing side (the pipeline's dream worker) ---------------------------------------

    def offer(self, frame: Frame) -> None:
        if self.processor.cuts(frame.image):
            self.shot += 1
        self.slot.put(DreamJob(frame, self.shot))

    def show(self, frame: Frame, gain: float = 1.0) -> np.ndarray:
        """``frame``'s picture with the latest dream of its shot carried onto it (or bare);
        ``gain`` scales the dream's detail shown (audio-reactive strength), not the one kept."""
        state = self.state
        if state is None or state.shot != self.shot:
            return frame.image
        height, width = state.detail.shape[:2]
        if frame.index == state.index:
            detail = state.detail
        else:
            gray = to_gray(self._resize(frame.image, width, height))
            # the side a pan brings in since the dream gets the dream mirrored at that edge
            # until the next refresh dreams it: not a bare strip that follows the camera
            detail = self.warper.carry(state.detail, state.gray, gray, mirror_edges=True).values
        self.detail_age = max(0.0, frame.captured_at - state.captured_at)
        self.observer.stage_time(AGE_STAGE, self.detail_age)
        return self._compose(frame.image, detail if gain == 1.0 else detail * np.float32(gain), tone=self.processor.engine.tone)

    # --- the refreshing side (the dream-refresh worker; the builder before hand-over) ---------

    def refresh(self, timeout: float) -> bool:
        """Dream the slot's frame if one comes within ``timeout``; True if it did."""
        try:
            job = self.slot.get(timeout=timeout)
        except TimeoutError:
            return False
        self._dream(job, adapt=True)
        return True

    def warm_up(self, frame: Frame, shown: bool) -> None:
        """Trace and check the look at the real frame size before it is handed over.

        ``shown``: ``frame`` is a real input frame, and its dream is published so a
        crossfade starts from a dream; otherwise (a made-up picture at start) the dream is
        thrown away and the first real frame gets a full dream.
        """
        self._dream(DreamJob(frame, 0 if shown else WARM_SHOT), adapt=False)
        if not shown:
            self.state = None
            self.refreshes = 0

    def _dream(self, job: DreamJob, adapt: bool) -> None:
        frame = job.frame
        started = time.monotonic()
        small = self.processor.downscale(frame.image)
        cut = self._dreamed_shot is not None and job.shot != self._dreamed_shot
        dreamed = self.processor.dream_detail(small, cut=cut)
        self._dreamed_shot = job.shot
        finished = time.monotonic()
        gray = freeze(to_gray(small))
        self.state = DreamState(dreamed.detail, gray, frame.index, job.shot, frame.captured_at, finished, dreamed.steps)
        self.refreshes += 1
        self.observer.stage_time(REFRESH_STAGE, finished - started)
        self.observer.dream_steps(dreamed.steps)
        if adapt:  # live sources: adaptive quality targets the refresh rate
            self.processor.observe_time(finished - started, dreamed, frame.width)

class LiveDreamWorker(Worker):
    """Refreshes the dream of every look that is showing, freshest frame first."""

    def __init__(self, dreams: Callable[[], Sequence[LiveDream]], on_error: Callable[[BaseException], None]) -> None:
        super().__init__("dream-refresh")
        self._dreams = dreams
        self._on_error = on_error

    def step(self) -> bool:
        dreams = self._dreams()
        if not dreams:
            self.stop.wait(POLL)
            return True
        for dream in dreams:  # two looks while crossfading: they take turns
            dream.refresh(POLL / len(dreams))
        return True

    def failed(self, error: BaseException) -> None:
        self._on_error(error)


__all__ = ["AGE_STAGE", "DreamJob", "DreamState", "LiveDream", "LiveDreamWorker", "REFRESH_STAGE"]
