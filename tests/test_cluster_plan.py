"""Scale-out without Ray: cutting a clip into segments, dreaming them apart, joining the pieces."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest

from streamdream.app import run_pipeline
from streamdream.cluster.join import frame_duration, join_pieces
from streamdream.cluster.plan import Segment, SegmentPolicy, plan_segments, scan_input
from streamdream.cluster.worker import SegmentDreamer, SegmentTask
from streamdream.coherence.evaluate import evaluate_frames
from streamdream.config import parse_config
from streamdream.frames import SourceInfo
from streamdream.media import read_frames
from tests.fixtures.shots import write_shots
from tests.test_pipeline import audio_duration, video_timestamps


def tiny_config(tiny_model_path, clip, out, **dream):
    return parse_config({
        "source": str(clip),
        "outputs": [str(out)],
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 2, "width": 96, "seed": 0, **dream},
        "pipeline": {"progress": False},
    })  # fmt: skip


def dream_apart(config, clip, segments, scan, tmp_path, name="piece"):
    """Each segment dreamed by the worker code (no Ray), the pieces joined like the scheduler does."""
    dreamer = SegmentDreamer(config)
    info = SourceInfo(uri=str(clip), width=scan.width, height=scan.height, fps=scan.fps, live=False, frame_count=scan.frame_count)
    pieces = []
    for seg in segments:
        task = SegmentTask("job", str(clip), config.outputs[0], info, seg, scan.pts[seg.first : seg.end], scan.time_base, 0)
        result = dreamer.dream(task)
        assert result.frames == seg.frames and result.warmup == seg.warmup
        pieces.append(tmp_path / f"{name}-{seg.index}{clip.suffix}")
        pieces[-1].write_bytes(result.data)
    return pieces


def test_scan_finds_the_shots_and_keyframes(tmp_path):
    clip = write_shots(tmp_path / "shots.mp4", (20, 45, 20), gop=10)
    scan = scan_input(clip)
    assert scan.frame_count == 85 and scan.cuts == (20, 65) and scan.has_audio
    assert scan.keyframes == tuple(range(0, 85, 10))
    assert [round(scan.seconds(i), 3) for i in (0, 1, 84)] == [0.0, 0.04, 3.36]


def test_segments_start_at_cuts_group_short_shots_and_split_long_ones_at_keyframes(tmp_path):
    scan = scan_input(write_shots(tmp_path / "shots.mp4", (20, 45, 20), gop=10))
    # defaults (2-10 s): the short first shot is grouped with the next; every segment starts at a cut
    assert plan_segments(scan) == [Segment(0, 0, 65), Segment(1, 65, 85)]
    # 0.4-0.8 s (10-20 frames): the 45-frame shot is split at keyframes 40 and 50, with handovers
    segments = plan_segments(scan, SegmentPolicy(min_seconds=0.4, max_seconds=0.8, handover_frames=6))
    assert [(s.start, s.end, s.warmup, s.handover) for s in segments] == [
        (0, 20, 0, 0), (20, 40, 0, 6), (40, 50, 6, 6), (50, 65, 6, 0), (65, 85, 0, 0)
    ]  # fmt: skip
    assert all(s.frames <= 20 for s in segments)
    # no keyframe in reach (one every 100 frames): split at the bound itself
    long = scan_input(write_shots(tmp_path / "long.mp4", (60,), gop=100))
    assert [(s.start, s.end) for s in plan_segments(long, SegmentPolicy(min_seconds=0.4, max_seconds=0.8))] == [
        (0, 20), (20, 40), (40, 60)
    ]  # fmt: skip


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_pieces_joined_equal_a_single_process_run_in_frames_timestamps_and_audio(tiny_model_path, tmp_path, suffix, workers):
    clip = write_shots(tmp_path / f"in{suffix}", (20, 30, 20))
    single = tmp_path / f"single{suffix}"
    config = tiny_config(tiny_model_path, clip, single)
    assert run_pipeline(config, workers).frames_out == 70
    scan = scan_input(clip)
    segments = plan_segments(scan, SegmentPolicy(min_seconds=0.4, max_seconds=0.8, handover_frames=4))
    assert len(segments) == 4  # the middle shot is split inside: a handover
    pieces = dream_apart(config, clip, segments, scan, tmp_path)
    joined = tmp_path / f"joined{suffix}"
    join_pieces(pieces, config.outputs[0].model_copy(update={"uri": str(joined)}), joined, audio_source=str(clip),
                end_seconds=scan.seconds(69) + frame_duration(scan.fps))  # fmt: skip
    assert video_timestamps(joined) == video_timestamps(single) == pytest.approx(video_timestamps(clip), abs=1e-3)
    assert audio_duration(joined) == pytest.approx(audio_duration(single), abs=1e-3)
    ffmpeg = subprocess.run(["ffmpeg", "-v", "error", "-i", str(joined), "-f", "null", "-"], capture_output=True, text=True)
    assert ffmpeg.returncode == 0 and ffmpeg.stderr == ""  # decodes cleanly across the seams
    dreamed, original = list(read_frames(joined)), list(read_frames(clip))
    assert np.abs(dreamed[35].astype(int) - original[35].astype(int)).mean() > 1  # the pictures were dreamed


def test_handover_hides_the_seam_inside_a_shot(tiny_model_path, tmp_path):
    """The warping error across a seam inside a shot: about an interior pair's with a handover, many times it without."""
    clip = write_shots(tmp_path / "one.mp4", (60,), width=200, height=112)
    config = tiny_config(tiny_model_path, clip, tmp_path / "x.mp4", octaves=2, steps=6, step_size=4.0, width=160)
    scan = scan_input(clip)
    inputs = list(read_frames(clip))
    ratios = {}
    for handover in (0, 12):
        segments = plan_segments(scan, SegmentPolicy(min_seconds=0.8, max_seconds=0.8, handover_frames=handover))
        assert [s.start for s in segments] == [0, 20, 40]
        pieces = dream_apart(config, clip, segments, scan, tmp_path, name=f"h{handover}")
        joined = tmp_path / f"h{handover}.mp4"
        join_pieces(pieces, config.outputs[0].model_copy(update={"uri": str(joined)}), joined, audio_source=None, end_seconds=9)
        frames = list(read_frames(joined))
        errors = np.array([
            evaluate_frames(inputs[t - 1 : t + 1], [frames[t - 1 : t + 1]])[0]["warp_error_output"] for t in range(1, 60)
        ])  # fmt: skip
        seams = [19, 39]  # pairs (19, 20) and (39, 40)
        ratios[handover] = errors[seams].max() / np.delete(errors, seams).mean()
    assert ratios[12] < 3.0 < 5 * ratios[12] < ratios[0]


def test_cli_workers_without_ray_says_how_to_get_it(tmp_path):
    clip = write_shots(tmp_path / "in.mp4", (10,))
    code = (
        "import sys; sys.modules['ray'] = None; from streamdream.cli import main; "
        f"sys.exit(main(['run', '--input', {str(clip)!r}, '--output', {str(tmp_path / 'out.mp4')!r}, '--workers', '2']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'streamdream[cluster]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_cli_workers_rejects_a_live_input_or_a_non_file_output(tmp_path):
    from streamdream.cli import main

    clip = write_shots(tmp_path / "in.mp4", (10,))
    assert main(["run", "--input", "demo", "--output", str(tmp_path / "o.mp4"), "--workers", "2"]) == 2
    assert main(["run", "--input", str(clip), "--output", "null", "--workers", "2"]) == 2
    assert main(["run", "--input", str(tmp_path / "missing.mp4"), "--output", str(tmp_path / "o.mp4"), "--workers", "2"]) == 4
    with av.open(str(clip)) as container:  # nothing was written onto the input
        assert container.streams.video[0].frames == 10


def test_batch_dreams_a_folder_skips_done_files_and_reports_a_bad_one(tiny_model_path, tmp_path):
    from streamdream.cli import main

    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    target.mkdir()
    write_shots(source / "a.mp4", (12,), fps=10)
    write_shots(source / "b.mkv", (8,), fps=10)
    write_shots(source / "done.mp4", (6,), fps=10)
    (source / "bad.mp4").write_bytes(b"\x00not a video" * 100)
    (source / "notes.txt").write_text("not a video, not looked at")
    (target / "done.mp4").write_bytes(b"finished earlier")
    code = main(["batch", str(source), str(target), "--model", str(tiny_model_path), "--layers", "conv2", "--octaves", "1",
                 "--steps", "1", "--width", "96", "--no-progress"])  # fmt: skip
    assert code == 1  # one file failed; the others were dreamed
    assert sorted(p.name for p in target.iterdir()) == ["a.mp4", "b.mkv", "done.mp4"]
    assert (target / "done.mp4").read_bytes() == b"finished earlier"  # done: skipped, untouched
    for name in ("a.mp4", "b.mkv"):
        assert video_timestamps(target / name) == pytest.approx(video_timestamps(source / name), abs=1e-3)
        assert audio_duration(target / name) == pytest.approx(audio_duration(source / name), abs=0.05)
    assert main(["batch", str(source), str(target), "--model", str(tiny_model_path), "--layers", "conv2", "--no-progress"]) == 1
    assert (target / "a.mp4").stat().st_size > 0  # a second batch finds them done (only bad.mp4 fails again)
