"""Scale-out on a real local Ray instance (loopback only, 2 workers): output, killed workers, resume.

One Ray instance serves the module (it takes seconds to start); one pool of two workers
serves the tests that don't start their own.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time

import numpy as np
import pytest

from streamdream.app import run_pipeline
from streamdream.cluster.command import StoppedError, dream_files
from streamdream.cluster.plan import SegmentPolicy
from streamdream.cluster.pool import WorkerPool, connect
from streamdream.config import parse_config
from streamdream.media import read_frames
from streamdream.runtime.workers import StopToken
from streamdream.service.metrics import PrometheusObserver
from tests.fixtures.cluster import assert_same_frames_as, board_snapshot, output
from tests.fixtures.shots import write_shots
from tests.test_pipeline import audio_duration, video_timestamps

if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed (pip install 'streamdream[cluster]')", allow_module_level=True)

TINY_DREAM = {"octaves": 1, "steps": 6, "width": 128, "seed": 0}
SHORT_SEGMENTS = SegmentPolicy(min_seconds=1.0, max_seconds=2.0, handover_frames=4)


@pytest.fixture(scope="module")
def local_ray():
    assert connect(None, object_store_mb=100)  # the code path `--workers` takes: loopback, no dashboard
    import ray  # after connect(): imported first, Ray would pick a non-loopback address

    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def config(tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    return parse_config({
        "outputs": [str(folder / "unused.mp4")],
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": TINY_DREAM,
        "pipeline": {"progress": False},
    })  # fmt: skip


@pytest.fixture(scope="module")
def pool(local_ray, config):
    pool = WorkerPool.start(config, 2, cpus_per_worker=0.5)
    yield pool
    pool.close()


def test_local_ray_listens_on_loopback_only(local_ray):
    assert {n["NodeManagerAddress"] for n in local_ray.nodes()} == {"127.0.0.1"}


def test_run_with_two_workers_matches_a_single_process_run(local_ray, tiny_model_path, tmp_path, workers):
    from streamdream.cli import main

    clip = write_shots(tmp_path / "in.mp4", (20, 20, 20), fps=10)  # 3 shots of 2 s: 3 segments
    single, out = tmp_path / "single.mp4", tmp_path / "out.mp4"
    dream = ["--model", str(tiny_model_path), "--layers", "conv2", "--octaves", "1", "--steps", "6", "--width", "128", "--seed", "0"]
    config = parse_config({"source": str(clip), "outputs": [str(single)], "model": {"name": str(tiny_model_path), "layers": "conv2"},
                           "dream": TINY_DREAM, "pipeline": {"progress": False}})  # fmt: skip
    assert run_pipeline(config, workers).frames_out == 60
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        code = main(["run", "--input", str(clip), "--output", str(out), "--workers", "2", "--no-progress", *dream])
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert code == 0
    assert video_timestamps(out) == video_timestamps(single) == pytest.approx(video_timestamps(clip), abs=1e-3)
    assert audio_duration(out) == pytest.approx(audio_duration(single), abs=1e-3)
    assert not (tmp_path / "out.mp4.parts").exists()  # the work folder goes once the output is whole
    dreamed, original = list(read_frames(out)), list(read_frames(clip))
    assert np.abs(dreamed[30].astype(int) - original[30].astype(int)).mean() > 1


def test_killed_worker_has_its_segment_retried_and_nothing_lost_or_doubled(pool, config, tmp_path):
    clip = write_shots(tmp_path / "in.mp4", (40, 40), fps=10)  # 2 segments of 40 frames
    out = tmp_path / "out.mp4"
    stop, results = StopToken(), {}
    job = threading.Thread(target=lambda: results.update(r=dream_files(config, [(str(clip), output(config, out))], stop, pool=pool)))
    job.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and job.is_alive():
        snapshot = board_snapshot(pool)
        for key, done in snapshot["frames"].items():
            if str(out) in key and 2 <= done <= 20:  # mid-segment
                killed = key
                os.kill(int(snapshot["workers"][key][-1].rsplit(":", 1)[1]), signal.SIGKILL)
                break
        time.sleep(0.05)
    job.join(timeout=300)
    assert killed is not None, "no segment was seen mid-way"
    [result] = results["r"]
    assert result.ok, result.error
    assert board_snapshot(pool)["attempts"][killed] == 2  # retried once, on the restarted worker
    assert_same_frames_as(out, clip)  # every frame once, in order


def test_a_stopped_job_resumes_without_redoing_finished_segments(pool, config, tmp_path):
    clip = write_shots(tmp_path / "in.mp4", (20, 20, 20, 20), fps=10)  # 4 segments
    out = tmp_path / "out.mp4"
    parts = tmp_path / "out.mp4.parts"
    stop = StopToken()

    def stop_after_first_piece():
        deadline = time.monotonic() + 120
        while not list(parts.glob("piece-*.mp4")) and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()

    watcher = threading.Thread(target=stop_after_first_piece)
    watcher.start()
    [first] = dream_files(config, [(str(clip), output(config, out))], stop, pool=pool)
    watcher.join()
    assert isinstance(first.error, StoppedError)
    kept = {int(p.stem.split("-")[1]) for p in parts.glob("piece-*.mp4")}
    assert 1 <= len(kept) < 4
    before = set(board_snapshot(pool)["attempts"])
    [second] = dream_files(config, [(str(clip), output(config, out))], StopToken(), pool=pool)
    assert second.ok and second.reused == len(kept)
    redone = {int(key.rsplit("#", 1)[1]) for key in set(board_snapshot(pool)["attempts"]) - before}
    assert redone == {0, 1, 2, 3} - kept  # only the missing segments were dreamed again
    assert_same_frames_as(out, clip)
    assert not parts.exists()


def test_files_share_the_pool_and_a_bad_one_is_reported_not_fatal(pool, config, tmp_path):
    a = write_shots(tmp_path / "a.mp4", (20, 20), fps=10)
    b = write_shots(tmp_path / "b.mkv", (25,), fps=10)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    pairs = [(str(a), output(config, tmp_path / "a-out.mp4")), (str(bad), output(config, tmp_path / "bad-out.mp4")),
             (str(b), output(config, tmp_path / "b-out.mkv"))]  # fmt: skip
    metrics = PrometheusObserver(model="tiny")
    results = dream_files(config, pairs, StopToken(), pool=pool, policy=SHORT_SEGMENTS, observer=metrics)
    assert [r.ok for r in results] == [True, False, True]
    exported = metrics.exposition().decode()  # the metrics `run --metrics` exports, counted across the workers
    assert 'streamdream_frames_total{stage="write"} 65.0' in exported
    assert 'streamdream_frames_total{stage="dream"} 65.0' in exported
    assert "bad.mp4" in str(results[1].error)
    assert not (tmp_path / "bad-out.mp4").exists()
    assert_same_frames_as(tmp_path / "a-out.mp4", a)
    assert_same_frames_as(tmp_path / "b-out.mkv", b)
