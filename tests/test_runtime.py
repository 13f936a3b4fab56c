"""The runtime that runs for weeks, on real encoders and files: reconnect bursts, isolated outputs,
rotation and pruning, the one owner of every thread. No model: the dream is not the point here.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from streamdream.config import IdleConfig, OutputConfig, ReconnectConfig
from streamdream.errors import SinkError, SourceLostError
from streamdream.frames import Frame, SourceInfo, freeze
from streamdream.pipeline.outputs import OutputSet
from streamdream.pipeline.runner import Pipeline
from streamdream.runtime.observer import PipelineObserver
from streamdream.runtime.workers import StopToken, Workers
from streamdream.service.idle import IdleAnimator
from streamdream.service.reconnect import ReconnectingSource
from streamdream.sinks.rotation import RecordingNames, prune
from tests.fixtures.media import test_pattern
from tests.helpers import wait_for

W, H, FPS = 64, 48, 25


class Passthrough:
    """The dream stage without a model."""

    def process(self, frame: Frame) -> Frame:
        return frame


class Events(PipelineObserver):
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._lock = threading.Lock()

    def _add(self, *event) -> None:
        with self._lock:
            self.events.append(event)

    def count(self, *event) -> int:
        with self._lock:
            return self.events.count(event)

    def output_up(self, output, up):
        self._add("up", output, up)

    def output_reconnect(self, output):
        self._add("reconnect", output)

    def output_written(self, output):
        self._add("written", output)

    def frame_dropped(self, stage, reason):
        self._add("dropped", stage, reason)

    def source_reconnect(self):
        self._add("source_reconnect")

    def recording_rotated(self, output):
        self._add("rotated", output)


class BurstySource:
    """A network input that, like a real one after a reconnect, hands over what it buffered in one
    burst (frames microseconds apart), then a few paced frames, then drops the connection."""

    def __init__(self, connections: list[int], burst: int = 8, paced: int = 4) -> None:
        self.connections, self.burst, self.paced = connections, burst, paced
        self.info = SourceInfo(uri="fake", width=W, height=H, fps=Fraction(FPS), live=True, kind="network")
        self.closed = threading.Event()

    def open(self) -> SourceInfo:
        self.connections.append(1)
        return self.info

    def frames(self):
        for i in range(self.burst + self.paced):
            if self.closed.is_set():
                return
            if i >= self.burst:
                time.sleep(1 / FPS)
            yield Frame(image=freeze(test_pattern(i, W, H)), index=i, pts=i / FPS)
        raise SourceLostError("fake: the server closed the connection")

    def close(self) -> None:
        self.closed.set()


def mkv_timestamps(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(f.pts * stream.time_base) for f in container.decode(stream)]


def test_recording_timestamps_strictly_increase_across_ten_reconnects(tmp_path, workers):
    connections: list[int] = []
    events = Events()
    source = ReconnectingSource(
        lambda: BurstySource(connections), display="fake", reconnect=ReconnectConfig(initial=0.05, max=0.05),
        idle=IdleAnimator(IdleConfig(fps=FPS)), observer=events, size=(W, H), fps=FPS, workers=workers
    )  # fmt: skip
    out = tmp_path / "recording.mkv"
    run = workers.group("run")
    pipeline = Pipeline(source, Passthrough(), OutputSet([OutputConfig(uri=str(out))], observer=events), workers=run)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        wait_for(lambda: len(connections) > 10, 60, "10 reconnects")
    finally:
        run.stop.set()
        runner.join(timeout=60)
    written = events.count("written", "recording.mkv")
    stamps = mkv_timestamps(out)
    assert written > 40 and len(stamps) == written  # bursts squeezed by the live queues: fewer than sent
    steps = np.diff(stamps)
    assert (steps > 0).all(), f"{int((steps <= 0).sum())} timestamps did not increase"


# --- outputs: isolated, retried, rotated -------------------------------------------------------


class FakeSink:
    """A sink whose ``world`` decides whether it can open and how many frames it takes before it breaks."""

    def __init__(self, name: str, world: dict) -> None:
        self.name, self.world = name, world
        self.frames = 0
        self.opened = self.closed = False

    def open(self, info: SourceInfo) -> None:
        if not self.world.get("up", True):
            raise SinkError(f"cannot publish to {self.name}: connection refused")
        self.opened = True

    def write(self, frame: Frame) -> None:
        if self.world.get("break_after") is not None and self.frames >= self.world["break_after"]:
            self.world["break_after"] = None
            self.world["up"] = False
            raise SinkError(f"lost the connection to {self.name}: Broken pipe")
        self.frames += 1
        self.world["written"] = self.world.get("written", 0) + 1

    def close(self) -> None:
        self.closed = True


LIVE = SourceInfo(uri="test", width=W, height=H, fps=Fraction(FPS), live=True)


def fake_outputs(worlds: dict[str, dict], **options) -> OutputSet:
    def opener(config: OutputConfig, workers: Workers) -> FakeSink:
        return FakeSink(config.uri, worlds[config.uri])

    return OutputSet([OutputConfig(uri=u) for u in worlds], opener=opener, reconnect=ReconnectConfig(initial=0.05, max=0.1), **options)


def feed(outputs: OutputSet, frames: int, stop: Workers) -> None:
    for i in range(frames):
        outputs.deliver(Frame(image=freeze(test_pattern(i, W, H)), index=i, pts=i / FPS), stop.stop)
        time.sleep(0.005)


def test_a_failing_output_is_retried_alone_and_the_others_keep_every_frame():
    worlds = {"rtmp://127.0.0.1:1/live/key": {"break_after": 10}, "null": {}}
    events = Events()
    outputs = fake_outputs(worlds, observer=events, retry_first_open=True)
    workers = Workers()
    outputs.start(LIVE, workers)
    feed(outputs, 60, workers)
    worlds["rtmp://127.0.0.1:1/live/key"]["up"] = True  # the server is back
    feed(outputs, 200, workers)
    outputs.close()
    assert worlds["null"]["written"] == 260  # WAIT for a sink that keeps up: nothing lost
    publish = worlds["rtmp://127.0.0.1:1/live/key"]
    assert 10 < publish["written"] < 260
    label = "rtmp://127.0.0.1:1"  # no stream key in the metric label
    assert events.count("up", label, False) >= 1 and events.count("reconnect", label) >= 1
    assert [e for e in events.events if e[:2] == ("up", label)][-2] == ("up", label, True)  # back up before the end
    assert events.count("dropped", "output", "output_down") > 0
    assert workers.join(10) == []


def test_run_fails_at_start_when_an_output_cannot_open_and_serve_retries_it():
    worlds = {"rtsp://127.0.0.1:1/x": {"up": False}, "null": {}}
    with pytest.raises(SinkError, match="connection refused"):
        fake_outputs(worlds).start(LIVE, Workers())
    events = Events()
    outputs = fake_outputs(worlds, observer=events, retry_first_open=True)
    workers = Workers()
    outputs.start(LIVE, workers)  # serve: the start goes on
    feed(outputs, 20, workers)
    worlds["rtsp://127.0.0.1:1/x"]["up"] = True
    wait_for(lambda: events.count("up", "rtsp://127.0.0.1:1", True), 10, "the output to open")
    feed(outputs, 20, workers)
    outputs.close()
    assert worlds["null"]["written"] == 40 and worlds["rtsp://127.0.0.1:1/x"]["written"] > 0


def test_a_recording_rotates_into_new_playable_files_and_old_ones_are_pruned(tmp_path):
    events = Events()
    template = str(tmp_path / "rec" / "dream-%H%M%S.mkv")
    old = tmp_path / "rec" / "dream-000000.mkv"
    old.parent.mkdir()
    old.write_bytes(b"an old recording")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    unrelated = tmp_path / "rec" / "notes.mkv"
    unrelated.write_bytes(b"not ours")
    # model_construct: a rotation every 0.6 s (the config allows 10 s at least) keeps the test short
    config = OutputConfig.model_construct(uri=template, rotate=0.6, max_age=3600.0, keep_free=None, crf=None, bitrate=None, codec=None, audio=True)
    outputs = OutputSet([config], observer=events)
    workers = Workers()
    outputs.start(LIVE, workers)
    started = time.monotonic()
    i = 0
    while events.count("rotated", "dream-%H%M%S.mkv") < 2 and time.monotonic() - started < 30:
        outputs.deliver(Frame(image=freeze(test_pattern(i, W, H)), index=i, pts=i / FPS), workers.stop)
        i += 1
        time.sleep(1 / FPS)
    outputs.close()
    files = sorted(p for p in (tmp_path / "rec").glob("dream-*.mkv"))
    assert not old.exists() and unrelated.exists()  # pruned by age: only this output's own recordings
    assert len(files) >= 3  # each rotation a new file, none overwritten
    assert sum(len(mkv_timestamps(f)) for f in files) == i  # every frame in exactly one playable file


def test_recording_names_never_overwrite_and_prune_frees_space(tmp_path, monkeypatch):
    names = RecordingNames(str(tmp_path / "out.mkv") + "?preset=ultrafast")
    first = names.next_uri(fresh=False)
    assert first == str(tmp_path / "out.mkv") + "?preset=ultrafast"
    (tmp_path / "out.mkv").write_bytes(b"1")
    second = names.next_uri(fresh=True).partition("?")[0]
    assert second != str(tmp_path / "out.mkv") and second.endswith(".mkv")
    Path(second).write_bytes(b"2")
    third = names.next_uri(fresh=True).partition("?")[0]
    assert third not in (second, str(tmp_path / "out.mkv"))
    Path(third).write_bytes(b"3")
    for k, path in enumerate([tmp_path / "out.mkv", Path(second), Path(third)]):
        os.utime(path, (1000 + k, 1000 + k))
    disk = {"free": 5}

    def usage(directory):
        return (100, 100 - disk["free"], disk["free"])

    real_remove = os.remove

    def remove(path):  # deleting a recording frees 10 % of this pretend disk
        real_remove(path)
        disk["free"] += 10

    monkeypatch.setattr(os, "remove", remove)
    deleted = prune(names, Path(third), max_age=None, keep_free=20.0, usage=usage)
    assert [reason for _, reason in deleted] == ["space", "space"] and Path(third).exists()  # never the current file


# --- the one owner of every thread -------------------------------------------------------------


def test_workers_have_unique_names_one_stop_and_an_end_marker_even_when_they_fail(caplog):
    from streamdream.runtime.queues import FrameQueue, QueuePolicy
    from streamdream.runtime.workers import Worker

    class Producer(Worker):
        def __init__(self, out: FrameQueue, fail: bool) -> None:
            super().__init__("producer")
            self.out, self.fail = out, fail

        def step(self) -> bool:
            if self.fail:
                raise RuntimeError("broken producer")
            self.out.put("item", timeout=0.2)
            self.stop.wait(0.05)
            return True

        def end(self) -> None:
            self.out.put("END", force=True)

    stop = StopToken()
    root = Workers(stop)
    queues = [FrameQueue(f"q{i}", 100, QueuePolicy.DROP_OLDEST) for i in range(3)]
    group = root.group("pipeline")
    a, b = group.start(Producer(queues[0], False)), group.start(Producer(queues[1], False))
    c = root.start(Producer(queues[2], True))
    c.thread.join(5)
    assert isinstance(c.error, RuntimeError) and "broken producer" in caplog.text
    assert queues[2].drain()[-1] == "END"  # a failed worker still ends its queue
    names = root.threads()
    assert len(names) == len(set(names)) == 2 and a.thread.name != b.thread.name
    group.stop.set()  # the group alone
    assert group.join(5) == [] and root.threads() == []
    assert not stop.is_set()
    d = root.start(Producer(queues[0], False))
    stop.set()  # the one stop event ends everyone
    assert root.join(5) == [] and not d.alive
    assert queues[0].drain()[-1] == queues[1].drain()[-1] == "END"


def test_the_http_loops_blocking_calls_run_on_workers_the_owner_lists_and_joins():
    """asyncio's default executor started threads nobody listed; WorkerExecutor's are the owner's."""
    import asyncio

    from streamdream.runtime.executor import WorkerExecutor

    owner = Workers(name="root")
    executor = WorkerExecutor(owner, "http-call", max_workers=2)
    assert len(owner.threads()) == 2 and all(name.startswith("http-call") for name in owner.threads())

    async def calls():
        loop = asyncio.get_running_loop()
        names = await asyncio.gather(*(loop.run_in_executor(executor, lambda: threading.current_thread().name) for _ in range(6)))
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(executor, lambda: 1 / 0)
        return names

    names = asyncio.run(calls())
    assert set(names) <= set(owner.threads())  # every call ran on one of the owner's workers
    executor.shutdown(wait=True)
    assert owner.threads() == [] and owner.join(1.0) == []
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(print)


def test_whatever_starts_threads_takes_its_owner_from_the_caller():
    """No default owner: a source, a sink or a server built without one is refused at the call,
    so no thread can run outside the tree that `run` and `serve` stop and join."""
    from streamdream.config import SourceConfig
    from streamdream.sinks import open_sink
    from streamdream.sinks.publish import SocketWatchdog
    from streamdream.sources import open_source
    from streamdream.sources.av_source import AvSource
    from streamdream.sources.uri import file_open_args
    from streamdream.web.server import WebServer

    with pytest.raises(TypeError, match="workers"):
        open_source(SourceConfig(uri="demo"))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="workers"):
        AvSource(file_open_args("clip.mp4"), kind="file", display="clip.mp4", live=False)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="workers"):
        ReconnectingSource(lambda: None, display="x", reconnect=ReconnectConfig(), idle=IdleAnimator(IdleConfig()))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="workers"):
        open_sink(OutputConfig(uri="null"))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="workers"):
        SocketWatchdog("127.0.0.1", 9, timeout=1.0)  # type: ignore[call-arg]
    server = WebServer([], "127.0.0.1", 0, name="test")
    try:
        with pytest.raises(TypeError, match="workers"):
            server.start()  # type: ignore[call-arg]
    finally:
        server.stop()
    with pytest.raises(TypeError):
        Workers(threading.Event())  # type: ignore[arg-type]  # one stop type: a StopToken, not an Event


def test_a_source_opened_under_an_owner_leaves_no_thread_once_the_owner_is_stopped_and_joined(tmp_path):
    from streamdream.config import SourceConfig
    from streamdream.sources import open_source
    from tests.fixtures.media import write_clip

    clip = write_clip(tmp_path / "clip.mp4", frames=50)
    before = set(threading.enumerate())
    owner = Workers(name="run")
    source = open_source(SourceConfig(uri=str(clip)), owner)
    source.open()
    frames = source.frames()
    assert next(frames).index == 0 and next(frames).index == 1  # its reader runs, mid-file
    started = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert started and {t.name for t in started} <= set(owner.threads())  # every new thread is the owner's
    assert owner.close(10.0) == [] and owner.threads() == []
    assert not [t.name for t in started if t.is_alive()]
    frames.close()
    source.close()


# --- every thread in the tree that `run` and `serve` join ----------------------------------------


class ThreadCensus:
    """Every Python thread that begins to run inside the ``with``, with whether the owner tree
    (``tree()``: its top) listed it as it began: a profile hook sees each new thread's first call."""

    def __init__(self, tree: Callable[[], Workers | None]) -> None:
        self.tree = tree
        self.seen: list[tuple[threading.Thread, bool]] = []
        self._lock = threading.Lock()

    def _first_call(self, frame: object, event: str, arg: object) -> None:
        sys.setprofile(None)  # once per thread: the hook only counts it
        thread, tree = threading.current_thread(), self.tree()
        listed = tree is not None and thread.name in tree.threads()
        with self._lock:
            self.seen.append((thread, listed))

    def unlisted(self, *ours: threading.Thread) -> list[str]:
        """The threads the tree did not list (the test's own ``ours`` aside)."""
        with self._lock:
            return [t.name for t, listed in self.seen if not listed and t not in ours]

    def names(self) -> list[str]:
        with self._lock:
            return [t.name for t, _ in self.seen]

    def __enter__(self) -> ThreadCensus:
        self.before = set(threading.enumerate())
        threading.setprofile(self._first_call)
        return self

    def __exit__(self, *exc: object) -> None:
        threading.setprofile(None)

    def left(self) -> list[str]:
        """Threads alive now that were not before the ``with``."""
        return [t.name for t in threading.enumerate() if t not in self.before and t.is_alive()]


def test_a_run_starts_every_thread_in_its_owner_tree_and_leaves_none_once_it_is_joined(tmp_path, workers):
    """`run`'s parts (the input opened on the main thread, its reader, the dream, a file output,
    the metrics server on the HTTP loop) in the run's owner, as ``commands/run.py`` builds them."""
    from streamdream.config import MetricsConfig, SourceConfig
    from streamdream.service.http import start_metrics
    from streamdream.sources import open_source
    from tests.fixtures.media import write_clip

    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    out = tmp_path / "out.mkv"
    with ThreadCensus(lambda: workers) as census:
        observer, server = start_metrics(MetricsConfig(enabled=True, port=0), workers)
        try:
            source = open_source(SourceConfig(uri=str(clip)), workers=workers)
            result = Pipeline(source, Passthrough(), OutputSet([OutputConfig(uri=str(out))]), workers=workers, observer=observer).run()
        finally:
            server.shutdown()
        assert workers.close(10.0) == []
    assert result.error is None and len(mkv_timestamps(out)) == 30
    started = census.names()
    for expected in ("source-open", "source-decode", "http", "http-call"):  # the opener too: not a thread of its own
        assert any(name.startswith(expected) for name in started), f"no {expected} thread among {started}"
    assert census.unlisted() == []
    assert census.left() == []


def test_a_serve_daemon_starts_every_thread_in_its_owner_tree_and_leaves_none_once_it_stops(tmp_path, monkeypatch):
    from streamdream.pipeline.looks import Look
    from streamdream.service.daemon import Service
    from tests.test_service_daemon import TOKEN, Running, write

    config = write(tmp_path / "serve.yaml", {
        "source": {"uri": "demo?live=1", "width": 160, "height": 120, "fps": 15},
        "outputs": ["null", str(tmp_path / "serve.mkv")], "metrics": {"port": 0}, "control": {"token": TOKEN},
    })  # fmt: skip
    owners: list[Workers] = []  # the daemon's owner, as soon as it exists
    built = Service.__init__

    def init(self: Service, *args: Any, **kwargs: Any) -> None:
        built(self, *args, **kwargs)
        owners.append(self.workers)

    monkeypatch.setattr(Service, "__init__", init)
    with ThreadCensus(lambda: owners[0] if owners else None) as census:
        running = Running(config, build=lambda preset, cfg, warm_on: Look(preset, cfg, None, Passthrough()))  # no model needed
        try:
            wait_for(lambda: running.metrics().get("streamdream_output_frames_total,output=serve.mkv", 0) >= 10, 60, "frames written")
            during = owners[0].threads()
        finally:
            assert running.close() == 0
    for expected in ("http", "http-call", "source-reconnect"):
        assert any(name.startswith(expected) for name in during), f"no {expected} thread among {during}"
    assert census.unlisted(running.thread) == []  # the test's thread that runs the daemon aside
    assert census.left() == []


def test_each_owner_tree_holds_its_own_http_loop_and_its_last_server_ends_it():
    """Two trees in one process (a test's module fixture and its own): neither holds a loop the
    other's server uses, and a tree whose servers stopped is joined at once, nothing left."""
    from aiohttp import web

    from streamdream.web.server import WebServer, run_blocking, text_response
    from tests.fixtures.servers import http_request

    async def who(request: web.Request) -> web.Response:
        return text_response(200, await run_blocking(lambda: threading.current_thread().name))

    first, second = Workers(name="first"), Workers(name="second")
    a = WebServer([web.get("/who", who)], "127.0.0.1", 0, name="a")
    b = WebServer([web.get("/who", who)], "127.0.0.1", 0, name="b")
    a.start(first)
    b.start(second.group("preview"))
    try:
        for server, tree in ((a, first), (b, second)):
            status, name = http_request(server.url + "/who")
            assert status == 200 and name.strip() in tree.threads()  # its blocking calls ran on its own tree's workers
            assert any(n.startswith("http") and not n.startswith("http-call") for n in tree.threads())  # its loop, listed
        a.stop()
        assert first.close(5.0) == [] and first.threads() == []  # ended by its last server, nothing left
        assert http_request(b.url + "/who")[0] == 200  # the other tree's server goes on
    finally:
        a.stop()
        b.stop()
    assert second.close(5.0) == [] and second.threads() == []
