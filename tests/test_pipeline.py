"""The whole pipeline on real media: frames, timestamps and audio kept; bad input; stopping; live bounds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest

from streamdream.app import run_pipeline
from streamdream.config import parse_config
from streamdream.errors import SourceError
from streamdream.pipeline.runner import Pipeline
from streamdream.runtime.observer import PipelineObserver
from streamdream.runtime.queues import FrameQueue, QueueClosed, QueuePolicy
from streamdream.sinks import open_sink
from streamdream.sources import open_source
from tests.fixtures.media import write_clip


def fast_config(tiny_model_path, source, outputs, **extra):
    """A real but cheap dream: the tiny seeded model at 96 px, one step, one octave."""
    data = {
        "source": source,
        "outputs": outputs,
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 1, "width": 96, "seed": 0},
        "coherence": {"mode": "independent"},
        "pipeline": {"progress": False},
    }
    for key, value in extra.items():
        data.setdefault(key, {}).update(value) if isinstance(value, dict) else data.__setitem__(key, value)
    return parse_config(data)


def video_timestamps(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(f.pts * stream.time_base) for f in container.decode(stream)]


def audio_duration(path):
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        last = max(float((p.pts + p.duration) * stream.time_base) for p in container.demux(stream) if p.pts is not None)
        return last - float((stream.start_time or 0) * stream.time_base)


def test_bigbuckbunny_keeps_every_frame_timestamp_and_the_audio(tiny_model_path, bbb_path, tmp_path, workers):
    out = tmp_path / "bbb.mp4"
    result = run_pipeline(fast_config(tiny_model_path, str(bbb_path), [str(out)]), workers)
    assert result.error is None and result.frames_out == 132
    assert video_timestamps(out) == pytest.approx(video_timestamps(bbb_path), abs=1e-3)
    assert audio_duration(out) == pytest.approx(audio_duration(bbb_path), abs=1 / 25)
    with av.open(str(out)) as container:
        assert container.streams.video[0].width == 1280  # dreamed at 96 px, output at full size
        assert container.streams.audio[0].codec_context.name == "aac"


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_pyav_clip_with_audio_round_trips(tiny_model_path, tmp_path, suffix, workers):
    clip = write_clip(tmp_path / f"in{suffix}", width=176, height=144, fps=30, frames=45, audio=True)
    out = tmp_path / f"out{suffix}"
    result = run_pipeline(fast_config(tiny_model_path, str(clip), [str(out)]), workers)
    assert result.frames_out == 45
    assert video_timestamps(out) == pytest.approx(video_timestamps(clip), abs=1e-3)
    assert audio_duration(out) == pytest.approx(audio_duration(clip), abs=1 / 30)


def test_dream_changes_pixels_and_several_outputs_get_the_same_frames(tiny_model_path, tmp_path, workers):
    clip = write_clip(tmp_path / "in.mp4", width=160, height=120, frames=10)
    outs = [tmp_path / "a.mp4", tmp_path / "b.mkv"]
    config = fast_config(tiny_model_path, str(clip), [str(o) for o in outs] + ["null"], dream={"steps": 4, "step_size": 6.0})
    result = run_pipeline(config, workers)
    assert result.frames_out == 10
    with av.open(str(clip)) as a, av.open(str(outs[0])) as b:
        src = [f.to_ndarray(format="rgb24").astype(float) for f in a.decode(video=0)]
        dst = [f.to_ndarray(format="rgb24").astype(float) for f in b.decode(video=0)]
    assert np.mean([np.abs(s - d).mean() for s, d in zip(src, dst)]) > 2.0
    assert len(video_timestamps(outs[1])) == 10


def test_truncated_file_gives_a_playable_output_of_the_readable_frames(tiny_model_path, tmp_path, caplog, workers):
    clip = write_clip(tmp_path / "whole.mp4", width=160, height=120, frames=60, options={"movflags": "+faststart"})
    cut = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out.mp4"
    result = run_pipeline(fast_config(tiny_model_path, str(cut), [str(out)]), workers)
    assert result.error is None
    assert 0 < result.frames_out < 60
    assert len(video_timestamps(out)) == result.frames_out


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 20])
def test_empty_or_non_video_file_is_a_clear_error(tiny_model_path, tmp_path, content, workers):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(SourceError, match="bad.mp4"):
        run_pipeline(fast_config(tiny_model_path, str(bad), [str(tmp_path / "out.mp4")]), workers)


def test_cli_bad_inputs_exit_non_zero_without_a_traceback(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = [
        (["run", "--input", str(tmp_path / "missing.mp4"), "--output", "null"], "missing.mp4"),
        (["run", "--input", str(empty), "--output", "null"], "empty.mp4"),
        (["run", "--input", "rtsp://admin:hunter2@127.0.0.1:9/cam", "--output", "null"], "rtsp://admin:***@127.0.0.1:9/cam"),
    ]
    for args, expected in cases:
        proc = subprocess.run([sys.executable, "-m", "streamdream.cli", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0, args
        assert expected in proc.stderr
        assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr + proc.stdout


def test_sigterm_finalizes_a_playable_mp4(tiny_model_path, bbb_path, tmp_path):
    out = tmp_path / "stopped.mp4"
    cmd = [sys.executable, "-m", "streamdream.cli", "run", "--input", str(bbb_path), "--output", str(out),
           "--model", str(tiny_model_path), "--layers", "conv2", "--width", "96", "--octaves", "1", "--steps", "30",
           "--coherence", "independent"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stderr:  # wait until frames are flowing (the progress bar counts them)
            if re.search(r"dreaming:.*\b[1-9]\d*/\d+", line):
                break
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130  # stopped before the input's end
    assert "SIGTERM received" in rest and "Traceback" not in rest
    assert not out.exists()  # a stopped run's file is named as partial, beside where the finished one would be
    partial = tmp_path / "stopped.partial.mp4"
    assert partial.exists(), rest
    frames = video_timestamps(partial)
    assert 0 < len(frames) < 132


class SlowProcessor:
    """Stands in for a dreamer slower than the camera (a GPU-less machine): 120 ms a frame."""

    def __init__(self):
        self.seen = []

    def process(self, frame):
        time.sleep(0.12)
        self.seen.append(frame.index)
        return frame


class QueueWatcher(PipelineObserver):
    """The deepest each queue got, and every drop the pipeline reported."""

    def __init__(self):
        self.deepest = {}
        self.drops = []

    def queue_depth(self, queue, depth):
        self.deepest[queue] = max(depth, self.deepest.get(queue, 0))

    def frame_dropped(self, stage, reason):
        self.drops.append(reason)


def assert_every_frame_accounted_for(result):
    """What holds under any load: every frame in is out or dropped with a reason."""
    assert set(result.dropped) <= {"stale", "shutdown"}, result.dropped
    assert result.frames_in == result.frames_out + sum(result.dropped.values()), (result.frames_in, result.frames_out, result.dropped)


def test_live_source_faster_than_the_dreamer_stays_bounded_and_counts_drops(tmp_path, workers):
    # No frame counts over a time window: on a busy machine the camera, too, slows down.
    source = open_source(parse_config({"source": "demo?live=1&width=320&height=240&fps=30"}).source, workers=workers)
    sink = open_sink(parse_config({"outputs": ["null"]}).outputs[0], workers=workers)
    written = []
    sink_write = sink.write

    def write(frame):
        written.append(frame.index)
        sink_write(frame)

    sink.write = write
    run = workers.group("run")  # the pipeline's part of the test's tree, stopped alone
    processor, watcher = SlowProcessor(), QueueWatcher()
    pipeline = Pipeline(source, lambda info: processor, [sink], queue_size=2, workers=run, observer=watcher)
    threading.Timer(4.0, run.stop.set).start()
    result = pipeline.run()
    assert result.info.live
    assert_every_frame_accounted_for(result)
    assert 0 < result.frames_out == len(processor.seen) <= result.frames_in
    assert processor.seen == sorted(processor.seen) and written == processor.seen  # every output in order
    # bounded: no queue ever held more than its 2 frames (+ the end marker, which is never refused),
    # so the dreamer is never further behind
    assert watcher.deepest and max(watcher.deepest.values()) <= 2 + 1, watcher.deepest
    reported = [reason for reason, count in result.dropped.items() for _ in range(count)]
    assert sorted(watcher.drops) == sorted(reported)  # every drop reported as it happened


def test_live_memory_stays_flat(tmp_path, workers):
    import resource

    config = parse_config({"source": "demo?live=1&width=640&height=480&fps=30"})

    def run_for(seconds):
        run = workers.group("run")
        pipeline = Pipeline(open_source(config.source, workers=workers), lambda info: SlowProcessor(), [open_sink(parse_config({"outputs": ["null"]}).outputs[0], workers=workers)], queue_size=3, workers=run)
        threading.Timer(seconds, run.stop.set).start()
        return pipeline.run()

    run_for(1.5)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_for(4.0)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert_every_frame_accounted_for(result)
    assert grown_mib < 50, grown_mib


def test_queue_policies():
    drops = []
    q = FrameQueue("q", 2, QueuePolicy.DROP_OLDEST, lambda name, reason: drops.append(reason))
    for i in range(5):
        q.put(i)
    assert len(q) == 2 and q.get() == 3 and drops == ["stale"] * 3
    w = FrameQueue("w", 1, QueuePolicy.WAIT)
    assert w.put("a") and not w.put("b", timeout=0.05)  # full: the producer waits, nothing lost
    threading.Timer(0.1, w.close).start()
    assert w.get() == "a"
    with pytest.raises(QueueClosed):
        w.get(timeout=2)


def test_processor_failure_still_finalizes_the_output(tmp_path, workers):
    clip = write_clip(tmp_path / "in.mp4", frames=20)
    out = tmp_path / "out.mp4"

    class Breaks:
        def process(self, frame):
            if frame.index == 8:
                raise RuntimeError("dream failed")
            return frame

    source = open_source(parse_config({"source": str(clip)}).source, workers=workers)
    sink = open_sink(parse_config({"outputs": [str(out)]}).outputs[0], workers=workers)
    result = Pipeline(source, lambda info: Breaks(), [sink], workers=workers).run()
    assert isinstance(result.error, RuntimeError)
    # finalized, and named as what it is: the run did not reach the input's end
    assert not out.exists() and len(video_timestamps(tmp_path / "out.partial.mp4")) == 8


def test_rtsp_stream_into_a_file(tiny_model_path, rtsp_server, tmp_path, workers):
    out = tmp_path / "from_rtsp.mkv"
    config = fast_config(tiny_model_path, rtsp_server.live_url, [str(out)], pipeline={"max_frames": 30})
    result = run_pipeline(config, workers)
    assert result.error is None and result.info.live
    # a live source drops stale frames when the dreamer falls behind (a busy machine): counted, never lost
    assert result.frames_in == 30
    assert_every_frame_accounted_for(result)
    stamps = video_timestamps(out)
    assert 0 < len(stamps) == result.frames_out and stamps == sorted(stamps)

