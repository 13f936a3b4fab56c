"""The three ways to dream a video, one ``FrameProcessor`` each, sharing one DreamEngine.

A frame's path through every mode:
1. ``downscale``: the input frame at the dream width (aspect kept), float32 0-255.
2. ``dream_detail``: the mode's own step; returns the *detail* at the dream resolution,
   i.e. the dreamed picture minus the downscaled frame it was dreamed from.
3. ``compose``: the detail, upsampled, added to the full-resolution frame. Dreaming at
   320 px and showing 1080p costs little more than 320 px, and the frame stays sharp.

Modes:
* ``independent``: a full multi-octave dream of every frame. Flickers: each dream
  invents its patterns afresh.
* ``blend`` (DeepDreamVideo): dream a blend of the frame and the previous dream. Patterns
  persist a little, but ghost behind moving things and still change every frame.
* ``flow`` (default): the previous frame's detail, moved along the optical flow onto the
  new frame (occluded and newly revealed pixels get none), faded by ``carry``, then a
  few gradient steps on the smallest octave(s) only. Pixels the flow cannot carry
  (revealed at an edge, disoccluded, failing a check) are dreamed at once in the same
  frame (``reveal.py``): a local dream of their bounding box at half the dream resolution,
  brought to the full dream's level and feathered in. Full dreams only on the first
  frame, on scene cuts and, optionally, every ``full_every`` frames.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..config import CoherenceConfig
from ..dream.engine import DreamEngine, octave_sizes, resize, resolved
from ..dream.tone import ToneKeeper
from ..frames import Frame, freeze
from ..runtime.observer import PipelineObserver
from .adaptive import Quality, QualityController
from .carry import FlowWarper
from .flow import FlowEstimator, to_gray
from .reveal import AGE_SETTLED, RevealDreamer
from .reveal import SMOOTH as REVEAL_SMOOTH
from .scenecut import SceneCutDetector

log = logging.getLogger(__name__)

OPENED_UP = 1.5  # flow mode: a full dream when this many times more of the picture can show one
REGAIN = 1.04  # flow mode: most a frame's carried detail is raised towards the full dream's level (a pan or zoom drops 2-4% a frame)


def dream_size(width: int, height: int, dream_width: int | None) -> tuple[int, int]:
    """The dream resolution for a frame: ``dream_width`` wide, aspect kept; never upscaled."""
    if dream_width is None or dream_width >= width:
        return width, height
    return dream_width, max(1, round(height * dream_width / width))


def compose(image: np.ndarray, detail: np.ndarray, *, tone: ToneKeeper) -> np.ndarray:
    """A read-only uint8 frame: ``image`` (uint8, full size) plus ``detail`` upsampled to it,
    faded where ``image`` is near black or white (``tone``) so blacks and whites are kept."""
    height, width = image.shape[:2]
    detail = tone.apply(detail, image)
    if detail.shape[:2] != (height, width):
        detail = cv2.resize(detail, (width, height), interpolation=cv2.INTER_LINEAR)
    # one pass: OpenCV adds uint8 + float32 and rounds and saturates into uint8
    return freeze(cv2.add(image, detail, dtype=cv2.CV_8U))


def shown_level(engine: DreamEngine, detail: np.ndarray, small: np.ndarray) -> float:
    """Mean |detail| as it shows on ``small``, tones kept: the visible amount of dream."""
    return float(np.abs(engine.tone.apply(detail, small)).mean())


@dataclass(frozen=True)
class Dreamed:
    """One frame's dream, at the dream resolution."""

    detail: np.ndarray  # float32 HxWx3, read-only: dreamed picture minus its source
    steps: int  # gradient steps it took
    full: bool  # a full multi-octave dream (not a warm-started refinement)


class DreamProcessor:
    """Base of the modes: frame in, dreamed frame out, same index, pts and capture time."""

    mode = "base"

    def __init__(
        self,
        engine: DreamEngine,
        coherence: CoherenceConfig | None = None,
        *,
        width: int | None = None,
        observer: PipelineObserver | None = None,
        adaptive: bool | None = None,
    ) -> None:
        self.engine = engine
        self.coherence = coherence or CoherenceConfig()
        self.width = engine.config.width if width is None else width
        self.steps = resolved(engine.config).steps  # the adaptive knob; flow mode: refine steps
        self.observer = observer or PipelineObserver()
        self.adaptive = self.coherence.adaptive if adaptive is None else adaptive
        self.controller: QualityController | None = None
        self.cuts = SceneCutDetector(self.coherence.scene_cut)
        self.frames = 0
        self.steps_run = 0
        self.full_dreams = 0

    # --- stages ---------------------------------------------------------------------------

    def downscale(self, image: np.ndarray) -> np.ndarray:
        """Stage 1: the frame at the dream resolution, float32."""
        w, h = dream_size(image.shape[1], image.shape[0], self.width)
        return resize(image, w, h).astype(np.float32)

    def dream_detail(self, small: np.ndarray, cut: bool | None = None) -> Dreamed:
        """Stage 2: the mode's dream of the downscaled frame.

        ``cut``: whether a scene cut separates this frame from the previous one dreamed;
        None lets the processor decide from the two pictures (right when it sees every
        frame; the live dreamer, which skips frames, decides on the full sequence).
        """
        raise NotImplementedError

    def process(self, frame: Frame, gain: float = 1.0) -> Frame:
        """The dreamed frame; ``gain`` scales the detail shown (audio-reactive strength), not the one
        carried to the next frame, so it never accumulates."""
        started = time.monotonic()
        small = self.downscale(frame.image)
        dreamed = self.dream_detail(small)
        image = compose(frame.image, dreamed.detail if gain == 1.0 else dreamed.detail * np.float32(gain), tone=self.engine.tone)
        self.frames += 1
        self.steps_run += dreamed.steps
        self.full_dreams += dreamed.full
        self.observer.dream_steps(dreamed.steps)
        self.observe_time(time.monotonic() - started, dreamed, frame.width)
        return Frame(image, frame.index, frame.pts, frame.captured_at)

    # --- adaptive quality -----------------------------------------------------------------

    def observe_time(self, seconds: float, dreamed: Dreamed, frame_width: int) -> None:
        """Feed the adaptive controller one frame's time (rare full dreams of flow mode excluded)."""
        if not self.adaptive or (dreamed.full and self.mode == "flow"):
            return
        if self.controller is None:
            width = dream_size(frame_width, 1, self.width)[0]
            self.controller = QualityController.from_config(self.coherence, width, self.steps)
            self.set_quality(self.controller.quality)
        change = self.controller.observe(seconds)
        if change is not None:
            log.info("%s mode: dream width %d, %d steps per frame (%.0f ms per frame)", self.mode, change.width, change.steps, seconds * 1e3)
            self.set_quality(change)

    def set_quality(self, quality: Quality) -> None:
        self.width, self.steps = quality.width, quality.steps

    @property
    def steps_per_frame(self) -> float:
        return self.steps_run / self.frames if self.frames else 0.0

    def close(self) -> None:
        """Nothing to release; here so every processor can be closed alike."""

    def _dream(self, source: np.ndarray) -> tuple[np.ndarray, int]:
        """A full dream of ``source``: its detail, and the steps it took."""
        before = self.engine.steps_total
        detail = self.engine.dream_detail(source, steps=self.steps)
        return detail, self.engine.steps_total - before


class IndependentProcessor(DreamProcessor):
    """Every frame dreamed from scratch: full octaves and steps."""

    mode = "independent"

    def dream_detail(self, small: np.ndarray, cut: bool | None = None) -> Dreamed:
        detail, steps = self._dream(small)
        return Dreamed(freeze(detail), steps, True)


class BlendProcessor(DreamProcessor):
    """DeepDreamVideo's way: dream ``blend_ratio`` x previous dream + the rest x frame.

    The previous dream is not blended in across a scene cut or a change of size.
    """

    mode = "blend"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._previous: np.ndarray | None = None

    def dream_detail(self, small: np.ndarray, cut: bool | None = None) -> Dreamed:
        ratio = self.coherence.blend_ratio
        cut = self.cuts(small) if cut is None else cut
        source = small
        if self._previous is not None and self._previous.shape == small.shape and not cut:
            source = ratio * self._previous + (1.0 - ratio) * small
        detail, steps = self._dream(source)
        dreamed = source + detail
        self._previous = dreamed
        return Dreamed(freeze(dreamed - small), steps, True)


class FlowProcessor(DreamProcessor):
    """Flow-carried warm start: move the last detail along the flow, then refine it a little.

    Refinement runs on the *smallest* ``refine_octaves`` octaves (with the default 1: the
    smallest octave only). Small octaves are cheap, and steps there change broad shapes
    that the next frames carry well; fine detail comes from the full dreams and is
    carried. Refining at full resolution costs ~4x more per step and adds fine,
    jittered changes each frame: exactly the flicker the warping error measures.
    """

    mode = "flow"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.coherence
        self.steps = cfg.refine_steps
        self.warper = FlowWarper(FlowEstimator(cfg.flow, cfg.flow_preset), color_tolerance=cfg.ghost_tolerance,
                                 still_flow=cfg.still_flow)
        self._detail: np.ndarray | None = None
        self._gray: np.ndarray | None = None
        self._reference_level = 0.0  # what showed of the last full dream's detail (mean |.|)
        self._reference_share = 0.0  # the share of that frame where tones let detail show
        self._since_full = 0
        self._age: np.ndarray | None = None  # per pixel: frames since it was revealed (None: all settled)
        self.visible_fraction = 1.0  # of the last carried frame, for diagnostics
        self.reveal = RevealDreamer(self.engine, cfg.reveal_steps, cfg.reveal_frames, cfg.reveal_margin, cfg.reveal_budget)

    def dream_detail(self, small: np.ndarray, cut: bool | None = None) -> Dreamed:
        cfg = self.coherence
        gray = to_gray(small)
        cut = self.cuts(small) if cut is None else cut
        due = cfg.full_every > 0 and self._since_full >= cfg.full_every
        due = due or self._opened_up(small)
        if self._detail is None or cut or due:
            if cut:
                log.debug("scene cut (thumbnail difference %.1f): full dream", self.cuts.last_score)
            dreamed, steps = self._dream_full(small)
            self._since_full = 1
            full = True
        else:
            dreamed, steps = self._warm_start(small, gray)
            self._since_full += 1
            full = False
        self._detail = freeze(dreamed)
        self._gray = freeze(gray)
        return Dreamed(self._detail, steps, full)

    def _opened_up(self, small: np.ndarray) -> bool:
        """Whether far more of the picture can show a dream than when the last full dream ran:
        a fade-in from black, or the lights going on. Carried detail from a dark frame holds
        almost nothing, so such a frame gets a full dream of its own."""
        if self._detail is None:
            return False
        share = float(self.engine.tone.mask(small).mean())
        return share > OPENED_UP * self._reference_share + 0.05

    def _dream_full(self, small: np.ndarray) -> tuple[np.ndarray, int]:
        before = self.engine.steps_total
        detail = self.engine.dream_detail(small)  # the configured octaves and steps
        self._reference_level = shown_level(self.engine, detail, small)
        self._reference_share = float(self.engine.tone.mask(small).mean())
        self._age = None  # every pixel dreamed in full: settled
        return detail, self.engine.steps_total - before

    def _warm_start(self, small: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, int]:
        cfg = self.coherence
        height, width = small.shape[:2]
        previous, previous_gray = self._detail, self._gray
        assert previous is not None and previous_gray is not None  # a full dream came first
        if previous.shape[:2] != (height, width):  # the adaptive controller moved the width
            previous, previous_gray = resize(previous, width, height), resize(previous_gray, width, height)
        # 1. carry: the last detail, and each pixel's age (frames since it was revealed), moved
        # onto this frame; occluded and revealed pixels get no detail and age 0
        age = self._age
        if age is None or age.shape != (height, width):  # all settled (a full dream), or resized
            age = np.full((height, width), AGE_SETTLED, np.float32)
        carried = self.warper.carry(np.dstack([previous, age]), previous_gray, gray)
        self.visible_fraction = carried.visible_fraction
        detail = np.ascontiguousarray(carried.values[..., :3])
        age = np.where(carried.visible, np.clip(np.round(carried.values[..., 3]) + 1.0, 0.0, AGE_SETTLED), 0.0).astype(np.float32)
        detail *= cfg.carry
        # 2. refine: a few steps on the smallest octave(s), their change added at full size
        before = self.engine.steps_total
        step_size = cfg.refine_step_size * self.engine.config.strength if cfg.refine_step_size else self.engine.step_size
        settings = resolved(self.engine.config)
        sizes = octave_sizes(width, height, settings.octaves, settings.octave_scale)
        if cfg.steady_jitter:
            self.engine.repeat_jitter()
        # where detail was carried, only part of the refinement is taken (it would otherwise
        # move every frame's patterns a little: flicker); where it was dropped, all of it, and
        # so it is for the frames after, while the revealed content is dreamed (step 3)
        young = age < (cfg.reveal_frames if cfg.reveal_steps > 0 else 1)
        if cfg.reveal_steps > 0:  # smooth: a young region's edge moves each frame, and must leave no line
            fresh = cv2.GaussianBlur(young.astype(np.float32), (0, 0), REVEAL_SMOOTH)
        else:
            fresh = cv2.blur((~carried.visible).astype(np.float32), (5, 5))
        weight = (cfg.refine_carried + (1.0 - cfg.refine_carried) * fresh)[..., None]
        # a frame that reveals content spends the steps of its revealed-content dream (step 3)
        # here instead, so it costs about what a still frame does
        steps = self.steps
        if self.steps > 0 and self.reveal.due(age):
            steps = max(1, self.steps - cfg.reveal_steps)
        for w, h in sizes[: cfg.refine_octaves]:
            current = np.clip(resize(small, w, h) + resize(detail, w, h), 0.0, 255.0)
            change = self.engine.ascend(current, steps, step_size) - current
            detail += resize(change, width, height) * weight
        # 3. reveal: what the flow could not carry gets a dream of its own now, at full level
        if self.steps > 0:  # refine_steps 0: the carry alone, revealed pixels left bare too
            detail = self.reveal(small, detail, age, self._reference_level, self._reference_share)
        self._age = freeze(age)
        # 4. level: what shows of the detail is held at what the last full dream showed, so a
        # long shot's dream neither grows nor fades where motion keeps dropping detail; it is
        # raised by at most REGAIN a frame, so the change is never a visible jump
        detail = np.clip(small + detail, 0.0, 255.0) - small
        limit = cfg.max_detail_gain * self._reference_level
        level = shown_level(self.engine, detail, small)
        if limit > 0 and level > 0:
            detail *= min(limit / level, REGAIN)
        return detail, self.engine.steps_total - before


class StudentFlowProcessor(DreamProcessor):
    """Flow mode with a student (``dream.engine: student``): every frame gets its own one-pass
    dream, and the previous frame's detail, carried along the optical flow, is mixed into it
    (``coherence.student_carry``) where the flow is trusted, so patterns hold still where the
    picture does. A student's dream is a function of its frame, so its steadiness follows the
    source's; the carry smooths what the student itself jitters between similar frames."""

    mode = "flow"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.coherence
        self.warper = FlowWarper(FlowEstimator(cfg.flow, cfg.flow_preset), color_tolerance=cfg.ghost_tolerance,
                                 still_flow=cfg.still_flow)
        self._detail: np.ndarray | None = None
        self._gray: np.ndarray | None = None

    def dream_detail(self, small: np.ndarray, cut: bool | None = None) -> Dreamed:
        fresh, steps = self._dream(small)
        gray = to_gray(small)
        cut = self.cuts(small) if cut is None else cut
        share = self.coherence.student_carry
        previous, previous_gray = self._detail, self._gray
        detail = fresh
        if previous is not None and share > 0 and not cut:
            assert previous_gray is not None, "kept with the detail"
            height, width = small.shape[:2]
            if previous.shape[:2] != (height, width):
                previous, previous_gray = resize(previous, width, height), resize(previous_gray, width, height)
            carried = self.warper.carry(previous, previous_gray, gray)
            weight = (share * carried.visible.astype(np.float32))[..., None]
            detail = fresh * (1.0 - weight) + carried.values * weight
        self._detail, self._gray = freeze(detail), freeze(gray)
        return Dreamed(self._detail, steps, True)


PROCESSORS: dict[str, type[DreamProcessor]] = {
    cls.mode: cls for cls in (IndependentProcessor, BlendProcessor, FlowProcessor)
}


def processor_class(mode: str, engine: object) -> type[DreamProcessor]:
    """The processor for ``mode``; a student (an engine with ``one_pass``) has its own flow mode."""
    if mode == "flow" and getattr(engine, "one_pass", False):
        return StudentFlowProcessor
    return PROCESSORS[mode]

__all__ = [
    "PROCESSORS",
    "StudentFlowProcessor",
    "processor_class",
    "BlendProcessor",
    "DreamProcessor",
    "Dreamed",
    "FlowProcessor",
    "IndependentProcessor",
    "compose",
    "dream_size",
]
