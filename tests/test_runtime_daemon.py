"""The daemon survives what weeks bring, on loopback: a publish server that comes and goes, a full
disk, reloads that cannot be built, a frozen camera server, and reloads by the dozen.

The dream is the seeded two-layer test model at 96 px, one step: the tests are about the runtime.
"""

from __future__ import annotations

import threading
import time

import av
import pytest

from streamdream.service import daemon
from tests.fixtures.servers import http_request
from tests.test_service_daemon import TOKEN, Running, fast, wait_for, write


def metric(running: Running, name: str, **labels: str) -> float:
    key = name + "".join(f",{k}={v}" for k, v in sorted(labels.items()))
    return running.metrics().get(key, 0.0)


def output_state(running: Running, label: str) -> dict:
    return next(o for o in running.state()["outputs"] if o["output"] == label)


def grows(running: Running, label: str, by: int = 10, timeout: float = 30) -> None:
    before = metric(running, "streamdream_output_frames_total", output=label)
    wait_for(lambda: metric(running, "streamdream_output_frames_total", output=label) >= before + by, timeout, f"{label} to grow")


def decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


LIVE_DEMO = {"uri": "demo?live=1", "width": 160, "height": 120, "fps": 15}


def test_publish_fault_recording_keeps_growing_and_the_publish_reconnects(tiny_model_path, rtmp_server, tmp_path, caplog):
    """(a) An RTMP publish whose server is down at start, then started, killed and restarted."""
    recording = tmp_path / "rec.mkv"
    config = write(tmp_path / "publish.yaml", fast(
        tiny_model_path, source=LIVE_DEMO, outputs=[str(recording), rtmp_server.url("dream")],
        reconnect={"initial": 0.3, "max": 1.0}, control={"token": TOKEN},
    ))  # fmt: skip
    publish = f"rtmp://127.0.0.1:{rtmp_server.port}"  # the metric label: no stream key
    running = Running(config)  # the server is down: the daemon starts anyway
    try:
        grows(running, "rec.mkv")
        assert metric(running, "streamdream_output_up", output=publish) == 0
        status, body = http_request(running.url + "/healthz")
        assert status == 200 and f"output {publish} down" in body
        state = output_state(running, publish)
        assert state["up"] is False and "connection refused" in state["error"]
        for phase in ("started", "restarted"):
            rtmp_server.start()
            wait_for(lambda: metric(running, "streamdream_output_up", output=publish) == 1, 30, f"the publish to connect ({phase})")
            grows(running, publish)
            grows(running, "rec.mkv")
            if phase == "started":
                rtmp_server.stop()
                wait_for(lambda: metric(running, "streamdream_output_up", output=publish) == 0, 30, "the publish to notice the kill")
                grows(running, "rec.mkv")  # the recording never waits for the publish
        reconnects = metric(running, "streamdream_output_reconnects_total", output=publish)
        assert output_state(running, publish)["up"] is True
    finally:
        assert running.close() == 0
    assert reconnects >= 2
    written = running.service.metrics.registry.get_sample_value("streamdream_output_frames_total", {"output": "rec.mkv"})
    assert decoded_frames(recording) == written  # one file, every frame, finalized
    assert "lost the connection to" in caplog.text or "Broken pipe" in caplog.text


def test_a_full_disk_stops_that_recording_alone_and_it_resumes_when_there_is_room(tiny_model_path, small_tmpfs, tmp_path, caplog):
    """(b) A file output on a 1 MiB tmpfs that fills up."""
    caplog.set_level("INFO")
    other = tmp_path / "other.mkv"
    config = write(tmp_path / "full.yaml", fast(
        tiny_model_path, source={**LIVE_DEMO, "width": 320, "height": 240},
        outputs=[{"uri": str(small_tmpfs / "full.mkv"), "crf": 0}, str(other), "null"],
        reconnect={"initial": 0.2, "max": 0.5}, control={"token": TOKEN},
    ))  # fmt: skip
    running = Running(config)
    try:
        wait_for(lambda: "the disk is full" in caplog.text, 60, "the disk to fill")
        assert "No space left on device" in caplog.text and "the others go on" in caplog.text
        wait_for(lambda: metric(running, "streamdream_output_up", output="full.mkv") == 0, 10, "the output to be down")
        grows(running, "other.mkv", by=30)  # the other outputs go on
        grows(running, "null", by=30)
        assert output_state(running, "full.mkv")["up"] is False
        assert decoded_frames(small_tmpfs / "full.mkv") > 0  # what fitted plays
        for path in small_tmpfs.iterdir():  # someone makes room
            path.unlink()
        wait_for(lambda: "is back (new file" in caplog.text, 30, "the recording to resume")
        assert any(small_tmpfs.iterdir())
        assert metric(running, "streamdream_output_reconnects_total", output="full.mkv") >= 1
    finally:
        assert running.close() == 0
    written = running.service.metrics.registry.get_sample_value("streamdream_output_frames_total", {"output": "other.mkv"})
    assert decoded_frames(other) == written


@pytest.fixture(scope="module")
def shrinking_model_path(tmp_path_factory):
    """A model whose last layer needs a picture 200 px across: at the dream's 96 px it raises
    TensorFlow's own error at warm-up (like InceptionV3's mixed7 at 64 px)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(4, 200, padding="valid", name="huge")(x)
    path = tmp_path_factory.mktemp("models") / "shrinking.keras"
    keras.Model(inputs, x).save(path)
    return path


def test_a_reload_that_cannot_be_built_is_rejected_and_the_old_look_goes_on(tiny_model_path, shrinking_model_path, tmp_path):
    """(c) Reloads into looks that fail to build: a wrong layer, an error inside the model at the real
    frame size (TensorFlow's own InvalidArgumentError, no StreamdreamError), YAML nested too deep."""
    data = fast(tiny_model_path, source=LIVE_DEMO, control={"token": TOKEN}, playlist={"crossfade": 0})
    config = write(tmp_path / "live.yaml", data)
    running = Running(config)
    bad = [
        ({**data, "model": {**data["model"], "layers": "nope"}}, "nope"),
        ({**data, "model": {"name": str(shrinking_model_path), "layers": "huge"}}, "Error"),
    ]
    try:
        showing = running.state()["showing"]
        rejected = 0
        for change, expected in bad:
            write(config, change)
            daemon.request_reload()
            rejected += 1
            wait_for(lambda: metric(running, "streamdream_config_reloads_total", result="rejected") == rejected, 60, "a rejection")
            state = running.state()
            assert state["config"]["last_reload"]["ok"] is False and expected in state["config"]["last_reload"]["error"]
            assert state["showing"] == showing and state["layers"] == ["conv2"]
            grows(running, "null")  # the old look goes on
        config.write_text("dream: " + "[" * 5000 + "]" * 5000 + "\n")  # once a RecursionError that ended the daemon
        daemon.request_reload()
        wait_for(lambda: metric(running, "streamdream_config_reloads_total", result="rejected") == 3, 30, "the YAML bomb's rejection")
        assert "nested deeper than" in running.state()["config"]["last_reload"]["error"]
        write(config, {**data, "dream": {**data["dream"], "step_size": 3.0}})  # and a good one still applies
        daemon.request_reload()
        wait_for(lambda: running.state()["config"]["last_reload"]["ok"] is True, 60, "a good reload")
        grows(running, "null")
        assert running.thread.is_alive()
    finally:
        assert running.close() == 0


def test_a_frozen_source_server_is_reopened_by_the_watchdog(tiny_model_path, rtsp_server, tmp_path, capsys):
    """(d) The RTSP server is paused (SIGSTOP), not killed: FFmpeg would wait its whole read timeout."""
    stall_after = 1.5
    config = write(tmp_path / "stall.yaml", fast(
        tiny_model_path, source={"uri": rtsp_server.live_url, "open_timeout": 3, "read_timeout": 60},
        health={"stall_after": stall_after, "stuck_after": 30, "source_down_after": 60},
        reconnect={"initial": 0.5, "max": 1.0}, idle={"fps": 10}, control={"token": TOKEN},
    ))  # fmt: skip
    running = Running(config)

    def real() -> float:
        return metric(running, "streamdream_frames_total", stage="capture") - metric(running, "streamdream_frames_total", stage="idle")

    try:
        wait_for(lambda: real() > 10, 30, "frames from the RTSP server")
        assert metric(running, "streamdream_watchdog_actions_total", action="reopen_source") == 0
        paused = time.monotonic()
        rtsp_server.pause()
        wait_for(lambda: metric(running, "streamdream_watchdog_actions_total", action="reopen_source") >= 1, 30, "the watchdog")
        reopened = time.monotonic() - paused
        grows(running, "null")  # idle frames meanwhile
        before = real()
        rtsp_server.resume()
        resumed = time.monotonic()
        wait_for(lambda: real() > before + 10, 60, "frames again after the server thawed")
        back = time.monotonic() - resumed
    finally:
        rtsp_server.resume()
        assert running.close() == 0
    with capsys.disabled():
        print(f"\nwatchdog: reopened {reopened:.2f} s after the server froze (stall_after {stall_after} s, "
              f"reconnect.initial 0.5 s); frames again {back:.2f} s after it thawed")  # fmt: skip


def test_thread_count_is_the_same_after_twenty_reloads(tiny_model_path, tmp_path, capsys):
    """(e) Looks and outputs reloaded 20 times: no thread is left behind."""
    data = fast(tiny_model_path, source=LIVE_DEMO, control={"token": TOKEN}, playlist={"crossfade": 0.2},
                outputs=["null", str(tmp_path / "a.mkv")])  # fmt: skip
    config = write(tmp_path / "reload.yaml", data)
    running = Running(config)
    service = running.service

    def settled() -> tuple[int, int]:
        wait_for(lambda: running.state()["fading_to"] is None and not running.state()["building"], 30, "a settled look")
        time.sleep(3 * 0.2)  # HTTP request threads of the checks above end
        return threading.active_count(), len(service.workers.threads())

    try:
        grows(running, "null")
        before = settled()
        for i in range(20):
            step_size, output = (3.0, "b.mkv") if i % 2 == 0 else (2.0, "a.mkv")
            write(config, {**data, "dream": {**data["dream"], "step_size": step_size}, "outputs": ["null", str(tmp_path / output)]})
            daemon.request_reload()
            wait_for(lambda: metric(running, "streamdream_config_reloads_total", result="applied") == i + 1, 60, f"reload {i + 1}")
        grows(running, "null")
        after = settled()
    finally:
        assert running.close() == 0
    with capsys.disabled():
        print(f"\nthreads before 20 reloads: {before[0]} ({before[1]} owned), after: {after[0]} ({after[1]} owned)")
    assert after == before


class HangsOnce:
    """A dream that hangs on its 20th frame (a driver that never returns) until ``release``."""

    def __init__(self) -> None:
        self.frames = 0
        self.release = threading.Event()

    def process(self, frame):
        self.frames += 1
        if self.frames == 20:
            self.release.wait(120)
        return frame


def test_a_stuck_pipeline_is_rebuilt_by_the_watchdog(tmp_path):
    from streamdream.pipeline.looks import Look

    hanging = HangsOnce()
    config = write(tmp_path / "stuck.yaml", {
        "source": LIVE_DEMO, "outputs": ["null"], "metrics": {"port": 0}, "control": {"token": TOKEN},
        "health": {"stuck_after": 1.5, "stall_after": 10}, "reconnect": {"initial": 0.2, "max": 1},
    })  # fmt: skip
    running = Running(config, build=lambda preset, cfg, warm_on: Look(preset, cfg, None, hanging))  # no model needed
    try:
        wait_for(lambda: metric(running, "streamdream_watchdog_actions_total", action="rebuild_pipeline") >= 1, 30, "a rebuild")
        grows(running, "null")  # a new pipeline writes again, around the hung one
        assert http_request(running.url + "/healthz")[0] == 200
    finally:
        hanging.release.set()
        assert running.close() == 0
