"""The daemon in this process, with a real (tiny) dream, a real RTSP server and real HTTP.

The dream is the seeded two-layer test model at 96 px, one step, so the tests are about
the service: reconnects, metrics, reload and control.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamdream.config import load_config
from streamdream.runtime.workers import StopToken
from streamdream.service import daemon
from streamdream.service.daemon import Service
from tests.fixtures.servers import http_request
from tests.helpers import wait_for

PASSWORD = "s3cret-Pa55word"
TOKEN = "test-token-123456"


def fast(tiny_model_path, **sections):
    data = {
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 1, "width": 96, "seed": 0},
        "coherence": {"mode": "independent"},
        "outputs": ["null"],
        "metrics": {"port": 0},
    }
    data.update(sections)
    return data


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items()))
            out[key] = s.value
    return out


class Running:
    """A Service on its own thread; ``url`` once its HTTP server listens."""

    def __init__(self, path: Path, build=None) -> None:
        self.stop = StopToken()
        self.service = Service(path, load_config(path), self.stop, build=build)
        self.error: BaseException | None = None
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.service.server is not None and self.service.pipeline is not None or self.error, 60, "the service to start")
        if self.error:
            raise self.error
        self.url = self.service.server.url

    def _run(self):
        try:
            self.code = self.service.run()
        except BaseException as exc:
            self.error = exc

    def metrics(self) -> dict:
        status, text = http_request(self.url + "/metrics")
        assert status == 200
        return samples(text)

    def state(self) -> dict:
        status, body = http_request(self.url + "/api/state", token=TOKEN)
        assert status == 200, body
        return json.loads(body)

    def close(self) -> int | None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
        return self.code


def real_frames(m: dict) -> float:
    return m["streamdream_frames_total,stage=capture"] - m["streamdream_frames_total,stage=idle"]


def test_rtsp_server_dies_three_times_and_output_never_stops(tiny_model_path, rtsp_server, tmp_path, caplog):
    caplog.set_level("INFO")
    url = rtsp_server.url("live", userinfo=f"viewer:{PASSWORD}")
    config = write(tmp_path / "rtsp.yaml", fast(
        tiny_model_path,
        source={"uri": url, "open_timeout": 5, "read_timeout": 3},
        reconnect={"initial": 0.25, "max": 1.0},
        health={"source_down_after": 1.5, "stuck_after": 10},
        idle={"fps": 10},
        control={"token": TOKEN},
    ))  # fmt: skip
    running = Running(config)
    texts = []
    try:
        wait_for(lambda: real_frames(running.metrics()) > 10, 30, "frames from the RTSP server")
        assert running.metrics()["streamdream_source_up"] == 1
        for round_ in range(3):
            before = running.metrics()
            rtsp_server.stop()
            wait_for(lambda: running.metrics()["streamdream_source_up"] == 0, 10, "source_up to drop")
            down = running.metrics()
            # outputs keep going on idle frames while the server is gone
            wait_for(lambda: running.metrics()["streamdream_frames_total,stage=write"] >= down["streamdream_frames_total,stage=write"] + 15, 10, "idle output frames")
            wait_for(lambda: running.metrics()["streamdream_source_reconnects_total"] > before["streamdream_source_reconnects_total"], 5, "a reconnect attempt")
            status, reason = http_request(running.url + "/healthz")
            assert status == 503 and "source down" in reason
            state = running.state()
            assert state["source"]["up"] is False
            texts.append(http_request(running.url + "/metrics")[1] + json.dumps(state))
            back_before = running.metrics()
            rtsp_server.start()
            returned = time.monotonic()
            wait_for(lambda: real_frames(running.metrics()) > real_frames(back_before) + 3, 5, f"frames again after restart {round_ + 1}")
            assert time.monotonic() - returned < 5
            assert running.metrics()["streamdream_source_up"] == 1
            assert http_request(running.url + "/healthz")[0] == 200
        text = http_request(running.url + "/metrics")[1]
        texts.append(text)
    finally:
        code = running.close()
    assert code == 0
    # after the stop, the counters agree with what the pipeline did
    final = samples(running.service.metrics.exposition().decode())
    result = running.service.pipeline.result
    assert final["streamdream_frames_total,stage=write"] == result.frames_out
    assert final["streamdream_frames_total,stage=capture"] == result.frames_in
    assert final["streamdream_source_reconnects_total"] >= 3
    assert final["streamdream_frames_total,stage=idle"] > 30
    assert final["streamdream_dream_steps_total"] > 0
    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
    # the password never shows: not in logs, not in metrics, not in the API
    assert PASSWORD not in caplog.text and all(PASSWORD not in t for t in texts)
    assert "viewer:***@127.0.0.1" in caplog.text


def test_reload_and_control_change_the_running_dream(tiny_model_path, tmp_path, caplog):
    caplog.set_level("INFO")
    presets = {"soft": {"strength": 0.5}, "hard": {"strength": 2.0, "layers": "conv1"}}
    data = fast(
        tiny_model_path,
        source={"uri": "demo?live=1", "width": 128, "height": 96, "fps": 15},
        playlist={"presets": presets, "crossfade": 0.5},
        control={"token": TOKEN},
    )
    config = write(tmp_path / "live.yaml", data)
    running = Running(config)
    service = running.service
    try:
        assert http_request(running.url + "/api/state")[0] == 401  # the token is required
        assert http_request(running.url + "/api/preset/next", method="POST")[0] == 401
        state = running.state()
        assert (state["preset"], state["dream"]["strength"]) == ("soft", 0.5)
        # control: preset by name, then strength; both crossfade in without stopping the output
        assert http_request(running.url + "/api/preset", TOKEN, "POST", {"name": "hard"})[0] == 200
        wait_for(lambda: running.state()["showing"] == "hard", 30, "preset hard")
        assert running.state()["layers"] == ["conv1"] and service.director.switch.current.engine.config.strength == 2.0
        assert http_request(running.url + "/api/strength", TOKEN, "POST", {"value": 0.5})[0] == 200
        wait_for(lambda: running.state()["dream"]["strength"] == 1.0 and running.state()["fading_to"] is None, 30, "strength 0.5")
        assert http_request(running.url + "/api/preset", TOKEN, "POST", {"name": "nope"})[0] == 400

        # a valid change, picked up by the file watch alone: applied without a restart
        data["dream"]["strength"] = 1.5
        data["playlist"]["presets"]["calm"] = {"strength": 0.25}
        write(config, data)
        wait_for(lambda: running.state()["config"]["last_reload"]["ok"] is True, 30, "the reload")
        wait_for(lambda: running.state()["fading_to"] is None, 10, "the crossfade to end")
        state = running.state()
        assert state["dream"]["strength"] == 1.5 and "calm" in state["presets"]  # 1.5 x hard's 2.0 x 0.5
        assert service.director.switch.current.engine.config.strength == 1.5

        # invalid changes (a bad value; a layer the model lacks) are rejected; the old config runs on
        out_before = running.metrics()["streamdream_frames_total,stage=write"]
        write(config, {**data, "dream": {**data["dream"], "octaves": 0}})
        daemon.request_reload()
        wait_for(lambda: running.state()["config"]["last_reload"]["ok"] is False, 10, "a rejected reload")
        assert "dream.octaves: must be >= 1, got 0" in running.state()["config"]["last_reload"]["error"]
        write(config, {**data, "model": {**data["model"], "name": str(tmp_path / "missing.keras")}})
        daemon.request_reload()
        wait_for(lambda: "model file not found" in (running.state()["config"]["last_reload"]["error"] or ""), 30, "a rejected model")
        state = running.state()
        assert state["dream"]["strength"] == 1.5 and state["showing"] == "hard"
        wait_for(lambda: running.metrics()["streamdream_frames_total,stage=write"] > out_before + 10, 10, "output to go on")
        m = running.metrics()
        assert m["streamdream_config_reloads_total,result=rejected"] == 2
        assert m["streamdream_config_reloads_total,result=applied"] == 1
    finally:
        assert running.close() == 0
    assert "config reload rejected" in caplog.text and "dream.octaves: must be >= 1" in caplog.text
