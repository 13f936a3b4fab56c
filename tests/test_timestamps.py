"""Timestamps from sources whose own are wrong: old DivX AVIs with packed B-frames, variable frame rate.

The reference is what FFmpeg's tools say (ffprobe's best_effort_timestamp), and the
promise is docs/inputs-outputs.md's: the output keeps the input's duration within one frame, and
its sound stays in sync within one frame.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from streamdream.app import run_pipeline
from streamdream.config import parse_config
from streamdream.sources.timestamps import BestEffortTimestamps, FrameTimer
from tests.fixtures.media import write_clip, write_packed_avi

needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe (scripts/install-system-deps.sh)")


def cheap_config(model: Path, source: Path, output: Path):
    """A real but cheap dream: the tiny seeded model at 96 px, one step."""
    return parse_config(
        {
            "source": str(source),
            "outputs": [str(output)],
            "model": {"name": str(model), "layers": "conv2"},
            "dream": {"octaves": 1, "steps": 1, "width": 96, "seed": 0},
            "coherence": {"mode": "independent"},
            "pipeline": {"progress": False},
        }
    )


def ffprobe_video_times(path: Path, fps: float) -> list[float]:
    """FFmpeg's best-effort presentation time of every video frame (one frame after the
    previous where it has none: ffprobe 5 gives the last, flushed frame of a packed AVI none)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    times: list[float] = []
    for frame in json.loads(out)["frames"]:
        stated = frame.get("best_effort_timestamp_time")
        times.append(float(stated) if stated not in (None, "N/A") else times[-1] + 1 / fps)
    return times


def video_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(f.pts * stream.time_base) for f in container.decode(stream)]


def audio_span(path: Path) -> tuple[float, float]:
    """First and end time (seconds) of the audio packets."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.pts is not None]
        return (
            min(float(p.pts * stream.time_base) for p in packets),
            max(float((p.pts + p.duration) * stream.time_base) for p in packets),
        )


def test_best_effort_is_ffmpeg_s_choice_and_the_timer_fixes_the_frames_before_it():
    labels = [(1, 1), (3, 2), (2, 3), (5, 4), (4, 5), (7, 6), (6, 7)]  # packed B-frames: pts swapped in pairs
    ffmpeg = BestEffortTimestamps()
    # FFmpeg decides frame by frame: the second frame keeps its wrong pts, the rest follow dts
    assert [ffmpeg.guess(p, d) for p, d in labels] == [1, 3, 3, 4, 5, 6, 7]
    timer: FrameTimer[int] = FrameTimer(Fraction(1, 30), Fraction(30), lookahead=4)
    timed = [t for i, (p, d) in enumerate(labels) for t in timer.push(i, p, d)] + timer.flush()
    assert [round(s * 30, 6) for _, s in timed] == [1, 2, 3, 4, 5, 6, 7]
    assert timer.placed_by_rate == 0
    # a variable frame rate is kept as it is
    timer = FrameTimer(Fraction(1, 1000), Fraction(30))
    assert [s for _, s in (timer.push(0, 0, None) + timer.push(1, 100, None) + timer.push(2, 1100, None))] == [0.0, 0.1, 1.1]
    # no time at all, or one that repeats: the frame rate places the frame after the previous one
    timer = FrameTimer(Fraction(1, 1000), Fraction(25))
    stamps = [timer.push(i, p, None)[0][1] for i, p in enumerate([None, None, 40, 40, 200])]
    assert stamps == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.2]) and timer.placed_by_rate == 3


@needs_ffprobe
@pytest.mark.parametrize("audio", ["ac3", "libmp3lame"])
def test_packed_b_frame_avi_keeps_its_duration_and_its_sound_in_sync(tiny_model_path, tmp_path, audio, workers):
    fps = 30
    frame = 1 / fps
    clip = write_packed_avi(tmp_path / "divx.avi", frames=60, fps=fps, audio=audio)
    with av.open(str(clip)) as container:
        labelled = [f.pts for f in container.decode(video=0)]
    assert labelled != sorted(labelled)  # the defect: decoded frames' pts come out of order

    out = tmp_path / "dreamed.mp4"
    result = run_pipeline(cheap_config(tiny_model_path, clip, out), workers)
    assert result.error is None and result.frames_out == 60

    reference = ffprobe_video_times(clip, fps)
    times = video_times(out)
    assert len(times) == len(reference) == 60
    assert times == pytest.approx(reference, abs=1e-3)  # every frame where ffprobe puts it
    duration_in = reference[-1] + frame - reference[0]
    duration_out = times[-1] + frame - times[0]
    assert duration_out == pytest.approx(duration_in, abs=frame)  # was 1.6 times as long
    a_in, a_out = audio_span(clip), audio_span(out)
    # in sync: audio starts and ends at the same place relative to the picture
    assert a_out[0] - times[0] == pytest.approx(a_in[0] - reference[0], abs=frame)
    assert a_out[1] - (times[-1] + frame) == pytest.approx(a_in[1] - (reference[-1] + frame), abs=frame)


@needs_ffprobe
def test_variable_frame_rate_clip_keeps_every_timestamp_and_the_sound(tiny_model_path, tmp_path, workers):
    stamps = [0, 33, 66, 166, 200, 233, 433, 466, 500, 533, 600, 633, 666, 700, 900, 933, 966, 1000, 1033, 1066]
    clip = write_clip(tmp_path / "vfr.mkv", fps=30, frames=len(stamps), pts=stamps, time_base=Fraction(1, 1000), audio=True)
    out = tmp_path / "dreamed.mkv"
    result = run_pipeline(cheap_config(tiny_model_path, clip, out), workers)
    assert result.error is None and result.frames_out == len(stamps)
    reference = ffprobe_video_times(clip, 30)
    assert reference == pytest.approx([s / 1000 for s in stamps], abs=1e-3)
    assert video_times(out) == pytest.approx(reference, abs=1e-3)
    a_in, a_out = audio_span(clip), audio_span(out)
    assert a_out[0] == pytest.approx(a_in[0], abs=1 / 30)
    assert a_out[1] == pytest.approx(min(a_in[1], reference[-1] + 1 / 30), abs=1 / 30)


def test_the_cluster_scan_times_a_packed_b_frame_avi_as_a_single_process_run_does(tmp_path, workers):
    """``run --workers`` writes the frames at the times its scan found: ffprobe's, in order."""
    from streamdream.cluster.plan import scan_input

    fps = 30
    clip = write_packed_avi(tmp_path / "divx.avi", frames=60, fps=fps, audio=None)
    scan = scan_input(clip)
    times = [float(p * scan.time_base) for p in scan.pts]
    assert times == pytest.approx(ffprobe_video_times(clip, fps), abs=1e-3)
