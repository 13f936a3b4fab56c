"""The daemon's parts, one by one, with fakes where a model or a server would only slow things down."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamdream.config import (
    ControlConfig,
    HealthConfig,
    IdleConfig,
    MetricsConfig,
    PlaylistConfig,
    ReconnectConfig,
    load_config,
    parse_config,
)
from streamdream.errors import ConfigError, ControlError, SourceError, SourceLostError
from streamdream.frames import Frame, SourceInfo, freeze
from streamdream.pipeline.looks import Look, LookSwitch
from streamdream.runtime.observer import PipelineObserver
from streamdream.service.health import HealthMonitor
from streamdream.service.http import ServiceServer
from streamdream.service.idle import IdleAnimator, IdleFrame
from streamdream.service.metrics import PrometheusObserver
from streamdream.service.playlist import Playlist, apply_preset
from streamdream.service.reconnect import Backoff, ReconnectingSource
from streamdream.service.reload import ConfigWatcher, plan_reload
from tests.fixtures.servers import http_request

# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        ({"playlist": {"presets": {"a": {}}, "cycle": ["b"]}}, "playlist: cycle[0]: unknown preset 'b' (defined: a)"),
        ({"playlist": {"schedule": [{"at": "24:00", "preset": "a"}]}}, "playlist.schedule.0.at: must be a time of day HH:MM"),
        ({"reconnect": {"initial": 5, "max": 1}}, "reconnect: max (1.0) must be >= initial (5.0)"),
        ({"playlist": {"presets": {"a": {"strength": -1}}}}, "playlist.presets.a.strength: must be > 0"),
        ({"idle": {"mode": "black"}}, "idle.mode: input should be 'zoom', 'still' or 'pattern'"),
        ({"health": {"stuck_after": 0}}, "health.stuck_after: must be > 0"),
    ],
)
def test_service_sections_report_key_and_problem(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "x.yaml")
    assert message in str(err.value)


def test_a_bad_token_is_rejected_without_echoing_it():
    with pytest.raises(ConfigError) as err:
        parse_config({"control": {"token": "tiny7"}}, "x.yaml")
    assert "tiny7" not in str(err.value) and "8-512 characters" in str(err.value)
    config = parse_config({"control": {"token": "a-long-secret"}})
    assert "a-long-secret" not in repr(config)


# --- presets and playlist ----------------------------------------------------------------------


def test_preset_lays_over_model_dream_and_coherence():
    config = parse_config(
        {
            "model": {"name": "efficientnet_lite0", "preset": "mid"},
            "dream": {"step_size": 2.0, "steps": 5},
            "playlist": {"presets": {"deep": {"preset": "deep", "strength": 1.5, "octaves": 2, "coherence": "blend"},
                                     "mine": {"layers": "block_4,block_6"}}},
        }
    )
    deep = apply_preset(config, config.playlist.presets["deep"], strength=2.0)
    fields = (deep.model.preset, deep.dream.strength, deep.dream.step_size, deep.dream.steps, deep.dream.octaves)
    assert fields == ("deep", 3.0, 2.0, 5, 2)  # strength: 1.5 (the preset's) x 2.0 (the runtime's)
    assert deep.coherence.mode == "blend" and deep.source == config.source
    mine = apply_preset(config, config.playlist.presets["mine"])
    assert [s.name for s in mine.model.layers] == ["block_4", "block_6"]
    assert apply_preset(config, None) == config


def test_playlist_schedule_interval_and_next():
    config = PlaylistConfig(
        presets={"day": {}, "evening": {}, "night": {}},
        cycle=("day", "evening"),
        interval=60,
        schedule=({"at": "08:00", "preset": "day"}, {"at": "18:00", "preset": "evening"}, {"at": "23:30", "preset": "night"}),
    )
    wall = [dt.datetime(2024, 5, 1, 7, 59, 30)]
    clock = [0.0]
    playlist = Playlist(config, clock=lambda: clock[0], wall=lambda: wall[0])
    assert playlist.initial() == "night"  # before 08:00: yesterday's last entry
    assert playlist.due("night") is None
    wall[0] = dt.datetime(2024, 5, 1, 8, 0, 10)  # crossed 08:00
    assert playlist.due("night") == "day"
    playlist.switched()
    clock[0] = 30.0
    assert playlist.due("day") is None and playlist.seconds_to_next() == pytest.approx(30)
    clock[0] = 61.0
    assert playlist.due("day") == "evening"
    assert playlist.next_after("evening") == "day" and playlist.next_after("night") == "day"
    clock[0] = 500.0
    assert playlist.due("night") is None  # outside the cycle: the interval leaves it alone
    wall[0] = dt.datetime(2024, 5, 2, 0, 0, 5)  # across midnight: 23:30 was crossed
    wall_before = dt.datetime(2024, 5, 1, 23, 29)
    playlist._last_check = wall_before
    assert playlist.due("evening") == "night"


# --- backoff, health, metrics ------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_resets():
    backoff = Backoff(0.5, 4.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_health_turns_503_when_source_down_or_stuck():
    now = [100.0]
    health = HealthMonitor(HealthConfig(source_down_after=10, stuck_after=5), clock=lambda: now[0])
    health.frame_done("write")
    assert health.status().ok
    health.source_up(False)
    now[0] += 4
    health.frame_done("write")  # idle frames keep the output going
    status = health.status()
    assert status.ok and "showing idle frames" in status.reason
    now[0] += 7
    health.frame_done("write")
    status = health.status()
    assert not status.ok and "source down for 11 s" in status.reason
    health.source_up(True)
    assert health.status().ok
    now[0] += 6
    status = health.status()
    assert not status.ok and "no output frame for 6 s" in status.reason


def test_health_names_a_failing_output_and_turns_503_when_it_stays_down():
    now = [100.0]
    health = HealthMonitor(HealthConfig(output_down_after=60, stuck_after=1000), clock=lambda: now[0])
    health.frame_done("write")
    health.output_up("rtmp://cdn:1935", True)
    health.output_up("rtmp://cdn:1935", False)
    now[0] += 30
    status = health.status()
    assert status.ok and "output rtmp://cdn:1935 down for 30 s, retrying" in status.reason
    now[0] += 31
    status = health.status()
    assert not status.ok and "output rtmp://cdn:1935 failing for 61 s" in status.reason
    health.output_up("rtmp://cdn:1935", True)
    assert health.status().reason == "ok"


class FakeController:
    def __init__(self):
        self.calls = []

    def state(self):
        return {"preset": "a"}

    def next_preset(self):
        self.calls.append("next")
        return {"preset": "b"}

    def set_preset(self, name):
        if name != "b":
            raise ControlError(f"unknown preset {name!r}")
        self.calls.append(name)
        return {"preset": name}

    def set_strength(self, value):
        self.calls.append(value)
        return {"strength": value}


@pytest.fixture
def metrics_server(workers):
    metrics = PrometheusObserver(model="efficientnet_lite0")
    health = HealthMonitor(HealthConfig(stuck_after=60))
    controller = FakeController()
    server = ServiceServer(
        MetricsConfig(port=0), metrics=metrics, health=health, controller=controller,
        control=ControlConfig(token="correct-horse-battery"),
    )  # fmt: skip
    server.start(workers)
    yield server, metrics, health, controller
    server.shutdown()


def test_metrics_scrape_parses_and_passes_promtool(metrics_server):
    server, metrics, health, _ = metrics_server
    for _ in range(7):
        metrics.frame_done("capture")
    metrics.frame_done("idle")
    metrics.frame_dropped("capture", "stale")
    metrics.stage_time("dream", 0.03)
    metrics.latency(0.2)
    metrics.queue_depth("capture", 2)
    metrics.dream_steps(12)
    metrics.source_up(True)
    metrics.source_reconnect()
    status, text = http_request(server.url + "/metrics")
    assert status == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("streamdream_frames_total", (("stage", "capture"),))] == 7
    assert samples[("streamdream_frames_total", (("stage", "idle"),))] == 1
    assert samples[("streamdream_frames_dropped_total", (("reason", "stale"), ("stage", "capture")))] == 1
    assert samples[("streamdream_stage_seconds_count", (("stage", "dream"),))] == 1
    assert samples[("streamdream_latency_seconds_bucket", (("le", "0.25"),))] == 1
    assert samples[("streamdream_queue_depth", (("queue", "capture"),))] == 2
    assert samples[("streamdream_dream_steps_total", ())] == 12
    assert samples[("streamdream_source_up", ())] == 1
    assert samples[("streamdream_source_reconnects_total", ())] == 1
    assert samples[("streamdream_build_info", (("model", "efficientnet_lite0"), ("version", "0.1.0")))] == 1
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_healthz_says_why(metrics_server):
    server, metrics, health, _ = metrics_server
    health.frame_done("write")
    assert http_request(server.url + "/healthz") == (200, "ok\n")
    health.configure(HealthConfig(source_down_after=0.01))
    health.source_up(False)
    time.sleep(0.05)
    status, body = http_request(server.url + "/healthz")
    assert status == 503 and body.startswith("source down for")


def test_control_api_needs_the_token(metrics_server, caplog):
    server, *_, controller = metrics_server
    assert http_request(server.url + "/api/state")[0] == 401
    assert http_request(server.url + "/api/preset/next", method="POST", body={})[0] == 401
    assert http_request(server.url + "/api/preset/next", token="wrong-token-here", method="POST", body={})[0] == 401
    assert controller.calls == []
    assert "refused GET /api/state: no token from 127.0.0.1" in caplog.text and "correct-horse" not in caplog.text
    assert caplog.text.count("control API:") == 1  # one line per burst of refusals, not one per try
    token = "correct-horse-battery"
    status, body = http_request(server.url + "/api/state", token=token)
    assert status == 200 and json.loads(body)["preset"] == "a" and "health" in json.loads(body)
    assert http_request(server.url + "/api/preset/next", token=token, method="POST")[0] == 200
    assert http_request(server.url + "/api/preset", token=token, method="POST", body={"name": "b"})[0] == 200
    status, body = http_request(server.url + "/api/preset", token=token, method="POST", body={"name": "zzz"})
    assert status == 400 and "unknown preset 'zzz'" in body
    assert http_request(server.url + "/api/strength", token=token, method="POST", body={"value": 1.5})[0] == 200
    status, body = http_request(server.url + "/api/strength", token=token, method="POST", body={"value": "loud"})
    assert status == 400 and "NUMBER" in body
    assert controller.calls == ["next", "b", 1.5]


def test_control_api_on_the_network_needs_a_token(monkeypatch):
    monkeypatch.delenv("STREAMDREAM_CONTROL_TOKEN", raising=False)
    metrics, health = PrometheusObserver(), HealthMonitor(HealthConfig())
    with pytest.raises(ControlError, match=r"0.0.0.0 \(not loopback\) without a token"):
        ServiceServer(MetricsConfig(host="0.0.0.0", port=0), metrics=metrics, health=health,
                      controller=FakeController(), control=ControlConfig())
    monkeypatch.setenv("STREAMDREAM_CONTROL_TOKEN", "from-the-environment")
    server = ServiceServer(MetricsConfig(host="0.0.0.0", port=0), metrics=metrics, health=health,
                           controller=FakeController(), control=ControlConfig())
    try:
        assert server.token == "from-the-environment"
    finally:
        server.shutdown()


# --- the reconnecting source -------------------------------------------------------------------


class FlakySource:
    """Frames while ``world['up']``; lost (SourceLostError) when it goes down; cannot open while down."""

    def __init__(self, world):
        self.world = world
        self.closed = threading.Event()
        self.info = SourceInfo(uri="fake", width=32, height=24, fps=Fraction(50), live=True, kind="network")

    def open(self):
        self.world["opens"] += 1
        if not self.world["up"]:
            raise SourceError("fake: connection refused")
        return self.info

    def frames(self):
        index = 0
        while not self.closed.is_set():
            if not self.world["up"]:
                raise SourceLostError("fake: connection lost")
            image = np.zeros((24, 32, 3), np.uint8)  # another size than announced: gets resized
            image[:, :, 0] = np.arange(32, dtype=np.uint8)[None, :] * 8
            image[:, :, 1] = np.arange(24, dtype=np.uint8)[:, None] * 10
            yield Frame(image=freeze(image), index=index, pts=index / 50)
            index += 1
            time.sleep(0.02)

    def close(self):
        self.closed.set()


class Recorder(PipelineObserver):
    def __init__(self):
        self.events = []

    def source_up(self, up):
        self.events.append(("up", up))

    def source_reconnect(self):
        self.events.append(("reconnect",))

    def frame_done(self, stage):
        self.events.append(("done", stage))


def test_reconnecting_source_bridges_an_outage_with_idle_frames(workers):
    world = {"up": True, "opens": 0}
    observer = Recorder()
    source = ReconnectingSource(
        lambda: FlakySource(world), display="fake", reconnect=ReconnectConfig(initial=0.05, max=0.2),
        idle=IdleAnimator(IdleConfig(fps=50, zoom=1.5, period=2)), observer=observer, size=(40, 30), workers=workers
    )  # fmt: skip
    info = source.open()
    assert (info.width, info.height, info.live) == (40, 30, True)
    seen = []
    deadline = time.monotonic() + 20
    for frame in source.frames():
        seen.append(frame)
        real = [f for f in seen if not isinstance(f, IdleFrame)]
        idle = [f for f in seen if isinstance(f, IdleFrame)]
        if len(real) == 10 and world["up"] and world["opens"] == 1:  # down once, not again while 10 are seen
            world["up"] = False
        if len(idle) == 60 and not world["up"]:
            world["up"] = True
            back_at = len(seen)
        if not world["up"] or len(seen) < 80 or len(real) < 20:
            assert time.monotonic() < deadline
            continue
        break
    source.close()
    assert [f.index for f in seen] == list(range(len(seen)))  # one numbering across the outage
    pts = [f.pts for f in seen]
    assert pts == sorted(pts)
    assert all(f.image.shape == (30, 40, 3) for f in seen)
    # once the source is back, its frames follow, and no idle frame after them (how many idle
    # frames bridge the next reconnect try depends on the machine's load: not counted)
    first_real = next(i for i in range(back_at, len(seen)) if not isinstance(seen[i], IdleFrame))
    assert not any(isinstance(f, IdleFrame) for f in seen[first_real:])
    assert ("up", False) in observer.events and observer.events.count(("reconnect",)) >= 2
    assert observer.events[-1] == ("up", False) and ("up", True) in observer.events[observer.events.index(("up", False)):]
    assert observer.events.count(("done", "idle")) == sum(isinstance(f, IdleFrame) for f in seen)
    # idle frames move (a slow zoom of the last picture), they are not one frozen frame
    idle_images = [f.image for f in seen if isinstance(f, IdleFrame)]
    assert len({img.tobytes() for img in idle_images}) > 10


def test_a_file_that_cannot_open_fails_at_start(workers):
    world = {"up": False, "opens": 0}
    source = ReconnectingSource(
        lambda: FlakySource(world), display="clip.mp4", reconnect=ReconnectConfig(),
        idle=IdleAnimator(IdleConfig()), retry_first_open=False, workers=workers
    )  # fmt: skip
    with pytest.raises(SourceError, match="connection refused"):
        source.open()


def test_a_network_source_down_at_start_is_waited_for(workers):
    world = {"up": False, "opens": 0}
    source = ReconnectingSource(
        lambda: FlakySource(world), display="rtsp://cam", reconnect=ReconnectConfig(initial=0.05, max=0.1),
        idle=IdleAnimator(IdleConfig(mode="pattern", fps=100)), fps=100, workers=workers
    )  # fmt: skip
    info = source.open()
    assert (info.width, info.height) == (640, 360)  # nothing known yet: the defaults
    frames = source.frames()
    first = [next(frames) for _ in range(5)]
    assert all(isinstance(f, IdleFrame) for f in first) and not source.up
    world["up"] = True
    for frame in frames:
        if not isinstance(frame, IdleFrame):
            break
    assert source.up and world["opens"] >= 2
    source.close()


# --- crossfade, outputs, reload planning -------------------------------------------------------


class ConstantProcessor:
    def __init__(self, value):
        self.value, self.closed = value, False

    def process(self, frame):
        return Frame(image=freeze(np.full_like(frame.image, self.value)), index=frame.index, pts=frame.pts)

    def close(self):
        self.closed = True


def test_switcher_crossfades_then_retires_the_old_look():
    config = parse_config({})
    old, new = ConstantProcessor(0), ConstantProcessor(200)
    switcher = LookSwitch(Look("a", config, None, old))
    frame = Frame(image=freeze(np.zeros((4, 4, 3), np.uint8)), index=0)
    assert switcher.process(frame).image.max() == 0
    switcher.switch_to(Look("b", config, None, new), crossfade=0.4)
    values = []
    deadline = time.monotonic() + 2
    while switcher.incoming is not None and time.monotonic() < deadline:
        values.append(int(switcher.process(frame).image[0, 0, 0]))
        time.sleep(0.02)
    assert values == sorted(values) and 0 <= values[0] < 100 and values[-1] == 200
    assert any(50 < v < 150 for v in values)
    assert old.closed and not new.closed and switcher.current.preset == "b"  # retired at the fade's end
    switcher.close()
    assert new.closed


def test_reload_plan_and_file_watch(tmp_path):
    old = parse_config({"dream": {"steps": 2}})
    new = parse_config({"dream": {"steps": 3}, "outputs": ["x.mkv"], "health": {"stuck_after": 9}, "pipeline": {"queue_size": 8}})
    plan = plan_reload(old, new)
    assert plan.look and plan.outputs and not plan.source
    assert plan.live == ("health",) and plan.needs_restart == ("pipeline",)
    assert plan_reload(old, old).empty
    path = tmp_path / "c.yaml"
    path.write_text("dream: {steps: 2}\n")
    now = [0.0]
    watcher = ConfigWatcher(path, interval=2.0, clock=lambda: now[0])
    now[0] = 2.5
    assert not watcher.changed()
    path.write_text("dream: {steps: 3}\n# longer\n")
    now[0] = 3.0
    assert not watcher.changed()  # not polled again yet
    now[0] = 5.0
    assert not watcher.changed()  # seen once: it may still be being written
    now[0] = 7.0
    assert watcher.changed() and not watcher.changed()


def test_the_file_watch_reads_a_slow_save_once_whole(tmp_path):
    """An editor half-way through a save is never read; a file renamed into place is read at once."""
    path = tmp_path / "c.yaml"
    whole = "dream:\n  steps: 3\n  octaves: 2\noutputs:\n  - uri: \"null\"\n"
    path.write_text(whole)
    now = [0.0]
    watcher = ConfigWatcher(path, interval=1.0, clock=lambda: now[0])
    reports = []
    with path.open("w") as file:  # truncated, then written a few bytes per poll
        for start in range(0, len(whole), 8):
            file.write(whole[start:start + 8])
            file.flush()
            now[0] += 1.0
            reports.append((watcher.changed(), path.read_text()))
    assert [text for changed, text in reports if changed] == []  # never while it grew
    now[0] += 1.0
    assert watcher.changed() and load_config(path).dream.steps == 3  # steady: read once, whole
    now[0] += 5.0
    assert not watcher.changed()
    staged = tmp_path / "c.yaml.tmp"
    staged.write_text(whole.replace("steps: 3", "steps: 4"))
    os.replace(staged, path)  # the atomic save
    now[0] += 1.0
    assert watcher.changed() and load_config(path).dream.steps == 4


def test_start_metrics_serves_run_too(workers):
    from streamdream.service.http import start_metrics

    observer, server = start_metrics(MetricsConfig(port=0), workers, model="vgg16")
    try:
        observer.frame_done("write")
        observer.source_up(True)
        status, text = http_request(server.url + "/metrics")
        assert status == 200 and 'streamdream_frames_total{stage="write"} 1.0' in text
        assert 'model="vgg16"' in text
        assert http_request(server.url + "/healthz") == (200, "ok\n")
        assert http_request(server.url + "/api/state")[0] == 404  # no control API under `run`
    finally:
        server.shutdown()


def test_health_and_metrics_forget_what_a_reload_removed():
    now = [0.0]
    health = HealthMonitor(HealthConfig(source_down_after=10, output_down_after=5, stuck_after=1000), clock=lambda: now[0])
    metrics = PrometheusObserver()
    for observer in (health, metrics):
        observer.source_up(False)
        observer.output_up("old.mkv", False)
        observer.output_up("new.mkv", True)
    metrics.recording_pruned("old.mkv", "age")
    health.frame_done("write")
    now[0] = 8.0
    health.frame_done("write")
    assert not health.status().ok and "old.mkv" in health.status().reason
    for observer in (health, metrics):
        observer.output_removed("old.mkv")
    health.source_replaced()  # a new source: its time down starts now
    now[0] = 12.0
    health.frame_done("write")
    assert health.status().ok, health.status().reason
    text = metrics.exposition().decode()
    assert "old.mkv" not in text and 'streamdream_output_up{output="new.mkv"} 1.0' in text
    now[0] = 19.0
    assert not health.status().ok and "source down for 11 s" in health.status().reason
