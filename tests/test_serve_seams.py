"""`serve` where its parts meet: a source file that is not there yet, the recording's two names,
hostile bytes on the control port. One daemon (a subprocess, the tiny model) for the module.

Before: a file missing at start failed `serve` even with `reconnect` configured, `/api/state`
named only the final file (not the one growing on disk), and a malformed request to the
control port logged a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.media import write_clip
from tests.fixtures.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMDREAM_CONTROL_TOKEN": ""}
START_WITHIN = 300.0  # a guard against a hang: the start takes 20-40 s, more on a loaded machine


@dataclass
class Daemon:
    proc: subprocess.Popen
    port: int
    folder: Path
    log: Path

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return response.read().decode()

    def state(self) -> dict:
        return json.loads(self.get("/api/state"))

    def metric(self, name: str) -> float | None:
        for family in text_string_to_metric_families(self.get("/metrics")):
            for sample in family.samples:
                if sample.name == name:
                    return sample.value
        return None

    def wait_for(self, predicate, what: str, timeout: float = START_WITHIN):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited while waiting for {what}:\n{self.log.read_text()[-3000:]}")
            try:
                value = predicate()
            except OSError:
                value = None
            if value:
                return value
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}:\n{self.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_model_path) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("serve")
    port = free_port()
    config = folder / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "source": str(folder / "later.mp4"),  # not there yet
        "reconnect": {"initial": 0.2, "max": 0.5},
        "outputs": [str(folder / "recording.mkv")],
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 1, "width": 96},
        "coherence": {"mode": "independent"},
        "metrics": {"port": port},
        "health": {"source_down_after": 3600, "stuck_after": 3600},
        "idle": {"fps": 10},
    }))  # fmt: skip
    log = folder / "serve.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "streamdream.cli", "serve", "--config", str(config)], cwd=folder,
                                env=ENV, stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
    running = Daemon(proc, port, folder, log)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_source_file_missing_at_start_is_waited_for_when_reconnect_is_configured(daemon):
    daemon.wait_for(lambda: "outputs" in daemon.state(), "the daemon to serve")
    assert daemon.metric("streamdream_source_up") == 0  # up, showing idle frames, the input not there
    assert "later.mp4 is not available" in daemon.log.read_text()

    clip = write_clip(daemon.folder / "writing.mp4", frames=50, width=160, height=120)
    clip.rename(daemon.folder / "later.mp4")  # appears whole, as a recorder that renames would leave it
    daemon.wait_for(lambda: daemon.metric("streamdream_source_up") == 1, "the file to be read", timeout=120)


def test_api_state_names_the_final_and_the_partial_file_of_a_recording(daemon):
    daemon.wait_for(lambda: daemon.state().get("outputs", [{}])[0].get("up"), "the recording to open")
    [output] = daemon.state()["outputs"]
    assert output["file"] == str(daemon.folder / "recording.mkv")
    partial = Path(output["partial"])  # where it grows until it is finished
    assert partial.parent == daemon.folder and partial.name.startswith("recording.partial-") and partial.suffix == ".mkv"
    assert partial.exists() and not (daemon.folder / "recording.mkv").exists()


MALFORMED = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",  # TLS to a plain port
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nthis line is no header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: many\r\n\r\n",
    b"GET /\x00\x01 HTTP/1.1\r\n\r\n",
]


def test_a_malformed_http_request_is_one_warning_line_not_a_traceback(daemon):
    daemon.wait_for(lambda: "outputs" in daemon.state(), "the daemon to serve")
    before = len(daemon.log.read_text().splitlines())
    for garbage in MALFORMED:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as connection:
            connection.sendall(garbage)
            answer = connection.recv(4096)
        assert answer == b"" or answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer
        if answer:  # aiohttp's own error page: it names neither aiohttp nor its version
            head = answer.split(b"\r\n\r\n")[0].lower()
            assert b"\r\nserver: streamdream\r\n" in head + b"\r\n" and b"aiohttp" not in head, answer
    assert daemon.get("/healthz")  # still answering
    time.sleep(0.5)  # the log lines of the last answer
    new = daemon.log.read_text().splitlines()[before:]
    assert not [line for line in new if "Traceback" in line or line.startswith(" ")], "\n".join(new)
    warnings = [line for line in new if "malformed HTTP request" in line]
    assert warnings and all(" WARNING aiohttp.server: " in line for line in warnings), "\n".join(new)


def test_sigterm_finalizes_the_recording_under_its_name(daemon):
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=60) == 0, daemon.log.read_text()[-3000:]
    with av.open(str(daemon.folder / "recording.mkv")) as container:
        assert sum(1 for _ in container.decode(video=0)) > 0
    assert not list(daemon.folder.glob("recording.partial*"))
