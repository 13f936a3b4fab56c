"""1,000 idle connections against `streamdream serve` limited to 1,024 file descriptors (the
systemd default): /healthz keeps answering and the lost camera still reconnects."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.servers import free_port

ROOT = Path(__file__).parent.parent
ATTACKERS = 1000


def _limit_files() -> None:  # runs in the daemon's process before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"serve exited while waiting for {what}:\n{proc.communicate()[0][-3000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}:\n{proc.communicate()[0][-3000:]}")


def test_thousand_idle_connections_under_1024_fds(tmp_path, tiny_model_path, rtsp_server_factory, rtsp_clip):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < ATTACKERS + 200:  # this test's own end of the connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    port, camera_port = free_port(), free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"uri": f"rtsp://viewer:pw-Secret9@127.0.0.1:{camera_port}/live", "open_timeout": 3, "read_timeout": 3},
        "outputs": ["null"],
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 1, "width": 96},
        "coherence": {"mode": "independent"},
        "metrics": {"port": port},
        "reconnect": {"initial": 0.2, "max": 1.0},
        "health": {"source_down_after": 3600, "stuck_after": 3600},
        "idle": {"fps": 10},
    }))  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdream.cli", "serve", "--config", str(config)], cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMDREAM_CONTROL_TOKEN": ""},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_limit_files,
    )  # fmt: skip
    attackers: list[socket.socket] = []
    try:
        _wait(lambda: (_metric(port, "streamdream_source_reconnects_total") or 0) >= 1, 300, "the daemon to start", proc)
        for _ in range(ATTACKERS):  # each sends half a request and then nothing
            sock = socket.socket()
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            attackers.append(sock)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200 and response.read().startswith(b"ok (source down for")
        before = _metric(port, "streamdream_source_reconnects_total")
        _wait(lambda: (_metric(port, "streamdream_source_reconnects_total") or 0) >= before + 2, 30,
              "more reconnect attempts while the connections are held", proc)  # fmt: skip
        rtsp_server_factory(media=rtsp_clip, live=True, port=camera_port)  # the camera comes back
        _wait(lambda: _metric(port, "streamdream_source_up") == 1, 60, "the source to reconnect", proc)
        # and dreams it: on a loaded machine the source can be back before the model has loaded,
        # and a stop signal during the start-up ends serve with 130 (nothing was written yet)
        _wait(lambda: (_metric(port, "streamdream_dream_steps_total") or 0) >= 1, 300, "the first dream steps", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200 and response.read() == b"ok\n"
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert fds < 400, f"the daemon holds {fds} file descriptors"
    finally:
        for sock in attackers:
            sock.close()
        proc.terminate()
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output[-3000:]
    assert "Too many open files" not in output and "Traceback" not in output and "pw-Secret9" not in output
