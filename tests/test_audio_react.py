"""Audio-reactive dreaming: the dream's measured strength follows loud bursts in the soundtrack.

The clip is written here by PyAV: a moving pattern with AAC audio that is quiet hiss except
for noise bursts at known times. The dream's strength is *measured* from the pictures: the
mean absolute difference between each output frame and the input frame it was dreamed on.
"""

from __future__ import annotations

import time
from fractions import Fraction

import av
import numpy as np
import pytest

from streamdream.app import run_pipeline
from streamdream.audio import RATE, AudioReact, LoudnessFollower
from streamdream.config import AudioReactConfig, parse_config
from streamdream.errors import SourceLostError
from streamdream.sources.av_source import AvSource
from streamdream.sources.uri import file_open_args
from tests.fixtures.sound import burst_signal, write_burst_clip

BURSTS = [(0.6, 1.0), (1.8, 2.1), (3.0, 3.5)]


def in_bursts(t: np.ndarray) -> np.ndarray:
    return np.array([any(a <= x < b for a, b in BURSTS) for x in t], np.float32)


def video_frames(path) -> tuple[np.ndarray, list[np.ndarray]]:
    with av.open(str(path)) as container:
        decoded = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24").astype(np.float32)) for f in container.decode(video=0)]
    return np.array([t for t, _ in decoded]), [image for _, image in decoded]


def loud_starts(path, threshold_db: float = -20.0) -> list[float]:
    """Where the audio turns loud: the first 10 ms window above ``threshold_db`` after a quiet one."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        first = None
        pieces = []
        for frame in container.decode(stream):
            first = float(frame.pts * frame.time_base) if first is None else first
            pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    samples = np.concatenate(pieces)
    hop = RATE // 100
    rms = np.sqrt(np.mean(samples[: samples.size // hop * hop].reshape(-1, hop) ** 2, axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-9)) > threshold_db
    return [first + i / 100 for i in range(1, loud.size) if loud[i] and not loud[i - 1]]


def test_dream_strength_follows_the_bursts_and_audio_stays_in_sync(tiny_model_path, tmp_path, workers):
    clip = write_burst_clip(tmp_path / "bursts.mp4", BURSTS)
    out = tmp_path / "dreamed.mkv"
    config = parse_config({
        "source": str(clip), "outputs": [{"uri": str(out), "crf": 10}],
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 2, "width": 96, "seed": 0, "step_size": 6},
        "audio_react": {"strength": [0.6, 1.6]}, "pipeline": {"progress": False},
    })  # fmt: skip
    result = run_pipeline(config, workers)
    assert result.error is None and result.frames_out == 100
    times_in, frames_in = video_frames(clip)
    times_out, frames_out = video_frames(out)
    # 1. the dream's strength, measured on every output frame, follows the bursts
    strength = np.array([np.abs(b - a).mean() for a, b in zip(frames_in, frames_out)])
    correlation = float(np.corrcoef(strength, in_bursts(times_in))[0, 1])
    assert correlation >= 0.7, (correlation, strength.round(1).tolist())
    for start, _ in BURSTS:  # it rises at the burst's first frame, not a frame later
        k = int(np.searchsorted(times_in, start))
        assert strength[k] > strength[k - 1] * 1.5, (start, strength[k - 2:k + 2])
    # 2. audio/video sync unchanged: same frame times, same loud moments in the audio
    np.testing.assert_allclose(times_out, times_in, atol=1e-6)
    starts_in, starts_out = loud_starts(clip), loud_starts(out)
    assert len(starts_in) == len(BURSTS) and len(starts_out) == len(BURSTS)
    np.testing.assert_allclose(starts_out, starts_in, atol=0.012)
    np.testing.assert_allclose(starts_in, [start for start, _ in BURSTS], atol=0.03)


def test_live_source_hears_its_own_audio_track(tmp_path, workers):
    """The live path: the source's reader decodes the same stream's audio for the tap."""
    clip = write_burst_clip(tmp_path / "bursts.mp4", BURSTS)
    react = AudioReact(AudioReactConfig(strength=(0.5, 2.0)), live=True)
    source = AvSource(file_open_args(str(clip)), kind="file", display="bursts.mp4", live=True, audio=react.tap, workers=workers)
    info = source.open()
    assert info.has_audio
    factors, pts = [], []
    started = time.monotonic()
    with pytest.raises(SourceLostError, match="ended after 100 frames"):  # a live input never ends well
        for frame in source.frames():  # paced like a live input: one frame every 40 ms
            time.sleep(max(0.0, started + (frame.index + 1) * 0.04 - time.monotonic()))
            factors.append(react.strength(frame))
            pts.append(frame.pts)
    source.close()
    assert len(factors) == 100
    correlation = float(np.corrcoef(factors, in_bursts(np.array(pts)))[0, 1])
    assert correlation >= 0.7, (correlation, np.round(factors, 2).tolist())
    assert react.state()["onsets"] >= len(BURSTS)


def test_follower_attack_release_and_onsets():
    config = AudioReactConfig(attack=0.01, release=0.2, onsets=0.3)
    follower = LoudnessFollower(config)
    t = np.arange(3 * RATE) / RATE
    levels = follower.feed(burst_signal(t, [(1.0, 2.0)]), start=0.0)
    assert levels is not None and levels.start == 0.0 and levels.values.size == 300
    values = levels.values
    assert values[:95].max() < 0.05  # hiss at -60 dBFS is below the floor's reach
    assert values[103] > 0.9  # up within 30 ms of the burst (attack 10 ms)
    assert 0.25 < values[220] < 0.45  # 200 ms after the end: about 37 % left (release 200 ms)
    assert values[290] < 0.05
    assert levels.onsets == 1  # the burst's start; its end is no onset


def test_daemon_dreams_to_the_sound_of_its_input(tiny_model_path, tmp_path):
    """`serve` on a file: its reader hears the track; the level and onsets reach /metrics and /api/state."""
    from tests.test_service_daemon import Running, fast, wait_for, write

    clip = write_burst_clip(tmp_path / "bursts.mp4", BURSTS)
    config = write(tmp_path / "serve.yaml", fast(tiny_model_path, source={"uri": str(clip)}, audio_react={"strength": [0.5, 2.0]}))
    running = Running(config)
    try:
        wait_for(lambda: running.metrics()["streamdream_audio_onsets_total"] >= 2, 30, "onsets heard by the daemon")
        wait_for(lambda: running.metrics()["streamdream_audio_strength"] > 1.5, 30, "a loud frame's strength")
        state = running.state()["audio_react"]
        assert state["range"] == [0.5, 2.0] and state["onsets"] >= 2
    finally:
        running.close()


def test_live_tap_gives_a_late_frame_its_own_sound_and_survives_a_restarted_stream_clock():
    """Live frames are matched to the sound by the stream's clock, not by when they arrived."""
    from streamdream.frames import Frame

    react = AudioReact(AudioReactConfig(strength=(0.5, 2.0), attack=0.01, release=0.05, onsets=0), live=True)
    tap = react.tap
    image = np.zeros((8, 8, 3), np.uint8)

    def stream(t0: float, arrival0: float, loud: tuple[float, float], late: dict[float, float]) -> dict[float, float]:
        """Two seconds of a 25 fps stream starting at stream time ``t0``; returns {stream s: arrival}."""
        arrivals = {}
        for k in range(50):
            s = round(t0 + k * 0.04, 2)
            arrivals[s] = arrival0 + (s - t0) + late.get(s, 0.0)
            tap.video(s, arrivals[s])
            t = s + np.arange(640) / RATE
            samples = burst_signal(t - t0, [loud]).astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, round(s * RATE), Fraction(1, RATE)
            tap.audio(frame)
        return arrivals

    def factor(arrival: float) -> float:
        return react.strength(Frame(image=image, index=0, pts=0.0, captured_at=arrival))

    # a quiet first second, a loud second one; the frame at 1.2 s arrives 0.5 s late, the
    # one at 0.8 s arrives 0.3 s late (when the sound was already loud)
    first = stream(10.0, 100.0, (1.0, 2.0), {11.2: 0.5, 10.8: 0.3})
    assert factor(first[11.2]) > 1.7 and factor(first[11.6]) > 1.7  # loud, late or not
    assert factor(first[10.8]) < 0.55 and factor(first[10.4]) < 0.55  # quiet, though it arrived in the loud part
    # a reconnect: the stream's clock starts again at 0, loud for its first half second
    second = stream(0.0, 103.0, (0.0, 0.5), {})
    assert factor(second[0.2]) > 1.7 and factor(second[1.6]) < 0.55
    assert factor(first[11.6]) > 1.7  # the first stretch is still there (within the levels kept)
