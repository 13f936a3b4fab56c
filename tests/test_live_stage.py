"""The live dream stage: every frame out at once, the dream beside it in one worker, no processor threads.

Dreams use the tiny seeded two-conv model (the look is not the point here); the slow
dreamer is the same engine behind a gate the test opens.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from skimage import data

from streamdream.coherence.processors import FlowProcessor
from streamdream.config import CoherenceConfig, DreamConfig, ModelConfig, parse_config
from streamdream.dream.engine import DreamEngine
from streamdream.frames import Frame, freeze
from streamdream.models.loader import load_dream_model
from streamdream.pipeline.live import LiveDream, LiveDreamWorker
from streamdream.pipeline.looks import Look, LookSwitch
from streamdream.runtime.observer import PipelineObserver
from streamdream.runtime.workers import Workers

PHOTO = data.astronaut()


def picture(x0: int) -> np.ndarray:
    """A 192x144 crop of a real photo; moving ``x0`` pans the camera."""
    return freeze(np.ascontiguousarray(PHOTO[120:264, x0 : x0 + 192]))


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path):
    return load_dream_model(ModelConfig(name=str(tiny_model_path), layers=["conv2"], preprocess="tf"))


class GatedEngine(DreamEngine):
    """The tiny model's engine, whose gradient steps wait for a gate: a dreamer as slow as we like."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def ascend(self, image, steps, step_size=None):
        if not self.gate.wait(timeout=30):
            raise TimeoutError("test gate never opened")
        return super().ascend(image, steps, step_size)


class Drops(PipelineObserver):
    def __init__(self) -> None:
        self.drops: list[tuple[str, str]] = []

    def frame_dropped(self, stage: str, reason: str) -> None:
        self.drops.append((stage, reason))


def live_switch(engine: DreamEngine, observer: PipelineObserver | None = None, **coherence) -> LookSwitch:
    processor = FlowProcessor(engine, CoherenceConfig(**coherence))
    return LookSwitch(Look("test", parse_config({}), engine, processor, LiveDream(processor, observer)))


def wait_until(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_every_frame_goes_out_at_once_while_the_dreamer_is_slower(tiny_model) -> None:
    engine = GatedEngine(tiny_model, DreamConfig(seed=0, octaves=2, steps=4))
    observer = Drops()
    switch = live_switch(engine, observer)
    dream = switch.current.live
    workers = Workers()
    workers.start(LiveDreamWorker(switch.live_dreams, on_error=lambda exc: None))
    frames = [Frame(picture(100 + i), i, i / 25, captured_at=100.0 + i / 25) for i in range(40)]
    try:
        before = [switch.process(frame) for frame in frames[:20]]  # the dreamer is stuck in its first dream
        assert [f.index for f in before] == list(range(20))
        assert all(np.array_equal(f.image, frame.image) for f, frame in zip(before, frames))  # no dream yet: bare
        assert dream.refreshes == 0
        # the dreamer took frame 0; of the rest, each was replaced in the slot by the next: counted
        assert observer.drops.count(("dream", "superseded")) >= 18

        engine.gate.set()
        assert wait_until(lambda: dream.refreshes >= 1)
        after = [switch.process(frame) for frame in frames[20:]]
        assert [f.index for f in after] == list(range(20, 40))
        assert [f.captured_at for f in after] == [f.captured_at for f in frames[20:]]
        assert np.abs(after[-1].image.astype(int) - frames[-1].image).mean() > 0.5  # the carried dream shows
        assert dream.state is not None and not dream.state.detail.flags.writeable
    finally:
        workers.stop.set()
        assert workers.join(30) == []
    # the processor itself runs no thread: only the stage's one worker ran, and it is gone
    assert not [t for t in threading.enumerate() if t.name.startswith("dream-refresh") and t.is_alive()]


def test_a_scene_cut_hides_the_old_dream_and_dreams_afresh(tiny_model) -> None:
    engine = DreamEngine(tiny_model, DreamConfig(seed=0, octaves=2, steps=4))
    switch = live_switch(engine)
    dream = switch.current.live
    shot_b = freeze(cv2.resize(data.coffee(), (192, 144), interpolation=cv2.INTER_AREA))
    dream.offer(Frame(picture(100), 0))
    assert dream.refresh(timeout=5)  # the dream worker's step, run here
    shown = switch.process(Frame(picture(101), 1))
    assert np.abs(shown.image.astype(int) - picture(101)).mean() > 0.5
    out = switch.process(Frame(shot_b, 2))  # a cut: shot A's dream must not be painted on shot B
    assert np.array_equal(out.image, shot_b) and dream.shot == 1
    assert dream.refresh(timeout=5)
    assert dream.state.shot == 1 and dream.state.steps == engine.config.steps * 2  # a full dream of both octaves


def test_a_failing_dream_reaches_the_pipeline(tiny_model) -> None:
    class Broken(DreamEngine):
        def dream_detail(self, *args, **kwargs):
            raise RuntimeError("boom")

    switch = live_switch(Broken(tiny_model, DreamConfig(seed=0)))
    errors: list[BaseException] = []
    workers = Workers()
    worker = workers.start(LiveDreamWorker(switch.live_dreams, on_error=errors.append))
    switch.process(Frame(picture(100), 0))
    worker.thread.join(timeout=30)
    assert not worker.alive and isinstance(errors[0], RuntimeError) and "boom" in str(errors[0])


def test_live_adaptive_quality_is_the_processors_own(tiny_model) -> None:
    """One adaptive path: the live stage feeds the processor's controller with each refresh's time."""
    engine = DreamEngine(tiny_model, DreamConfig(seed=0, octaves=1, steps=2, width=128))
    processor = FlowProcessor(engine, CoherenceConfig(adaptive=True, target_fps=240.0, min_width=64, max_width=128, min_steps=1))
    dream = LiveDream(processor)
    for i in range(12):
        dream.offer(Frame(picture(100 + i), i))
        dream.refresh(timeout=5)
    assert processor.controller is not None  # built by the processor's observe_time
    assert (processor.width, processor.steps) != (128, 3)  # far over budget: quality went down
