"""Where reload meets the rest: a reload is a complete config or none, and health follows it.

The daemon runs in this process on the seeded tiny model (``test_service_daemon``'s
harness), so each test is about the seam, not the dream.
"""

from __future__ import annotations

from pathlib import Path

from streamdream.service import daemon
from tests.fixtures.servers import http_request
from tests.test_service_daemon import TOKEN, Running, fast, wait_for, write

NOT_A_CONFIG = {
    "empty": "",
    "null": "null\n",
    "comments only": "# the editor has written this much so far\n\n",
    "a list": "- source\n- outputs\n",
    "cut short": None,  # the first sections of the config alone: written below
}


def rejected(running: Running) -> float:
    return running.metrics()["streamdream_config_reloads_total,result=rejected"]


def test_an_empty_null_or_comments_only_config_is_refused_and_everything_stays(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output, dream.mp4, would appear here
    recording = tmp_path / "rec" / "night.mkv"
    data = fast(
        tiny_model_path,
        source={"uri": "demo?live=1", "width": 128, "height": 96, "fps": 15},
        outputs=[str(recording), "null"],
        dream={"octaves": 1, "steps": 1, "width": 96, "seed": 0, "strength": 1.5},
        control={"token": TOKEN},
    )
    config = write(tmp_path / "live.yaml", data)
    running = Running(config)
    try:
        before = running.state()
        whole = config.read_text()
        for n, (what, text) in enumerate(NOT_A_CONFIG.items(), start=1):
            config.write_text(text if text is not None else whole[:whole.index("outputs:")])
            daemon.request_reload()  # what SIGHUP does
            wait_for(lambda n=n: rejected(running) == n, 20, f"the {what} config to be rejected")
            state = running.state()
            error = state["config"]["last_reload"]["error"]
            assert state["config"]["last_reload"]["ok"] is False, what
            assert str(config) in error and ("empty" in error or "mapping" in error or "missing" in error), (what, error)
            assert state["source"]["uri"] == before["source"]["uri"] == "demo?live=1"
            assert [o["output"] for o in state["outputs"]] == [o["output"] for o in before["outputs"]] == ["night.mkv", "null"]
            assert state["dream"]["strength"] == 1.5
            assert running.metrics()["streamdream_config_last_reload_successful"] == 0
        # the file watch alone, an editor's save caught when the file is still empty
        write(config, data)
        daemon.request_reload()
        wait_for(lambda: running.state()["config"]["last_reload"]["ok"] is True, 20, "the complete config again")
        assert running.metrics()["streamdream_config_last_reload_successful"] == 1
        config.write_text("")
        wait_for(lambda: rejected(running) == len(NOT_A_CONFIG) + 1, 30, "the watcher to refuse the empty file")
        state = running.state()
        assert state["source"]["up"] and [o["up"] for o in state["outputs"]] == [True, True]
        frames = state["frames"]["out"]
        wait_for(lambda: running.state()["frames"]["out"] > frames + 5, 20, "the outputs to go on")
    finally:
        assert running.close() == 0
    assert not Path(tmp_path / "dream.mp4").exists()
    assert recording.stat().st_size > 0


def test_an_output_removed_by_a_reload_leaves_health_and_metrics(tiny_model_path, tmp_path):
    (tmp_path / "blocker").write_text("a file where the folder should be\n")
    failing = tmp_path / "blocker" / "broken.mkv"  # cannot open: its folder is a file
    data = fast(
        tiny_model_path,
        source={"uri": "demo?live=1", "width": 128, "height": 96, "fps": 15},
        outputs=["null", str(failing)],
        reconnect={"initial": 0.25, "max": 1.0},
        health={"output_down_after": 1.0},
        control={"token": TOKEN},
    )
    config = write(tmp_path / "live.yaml", data)
    running = Running(config)
    try:
        wait_for(lambda: http_request(running.url + "/healthz")[0] == 503, 20, "/healthz to turn 503")
        assert "broken.mkv" in http_request(running.url + "/healthz")[1]
        assert running.metrics()["streamdream_output_up,output=broken.mkv"] == 0
        write(config, {**data, "outputs": ["null"]})
        daemon.request_reload()
        wait_for(lambda: running.state()["config"]["last_reload"]["ok"] is True, 20, "the reload")
        assert [o["output"] for o in running.state()["outputs"]] == ["null"]
        wait_for(lambda: http_request(running.url + "/healthz") == (200, "ok\n"), 20, "/healthz to be 200 ok")
        metrics = running.metrics()
        assert not [key for key in metrics if "broken.mkv" in key], "a removed output's series stayed"
        assert metrics["streamdream_output_up,output=null"] == 1
    finally:
        assert running.close() == 0
