"""`streamdream serve` as a user runs it: a subprocess, signals, hostile input, crash-safe recordings."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.servers import free_port
from tests.helpers import ENV as BASE_ENV
from tests.helpers import streamdream as run_cli
from tests.helpers import write_config

ROOT = Path(__file__).parent.parent
INSTALLATION = ROOT / "configs" / "installation.yaml"
ENV = {**BASE_ENV, "STREAMDREAM_CONTROL_TOKEN": ""}


def streamdream(*args, timeout=60):
    return run_cli(*args, cwd=ROOT, timeout=timeout, env=ENV)


# --- hostile input -----------------------------------------------------------------------------


def hostile_cases(tmp_path: Path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    return [
        ("unknown key", {"dream": {"octavez": 3}}, 2, "dream.octavez: unknown key"),
        ("wrong type", {"dream": {"steps": "many"}}, 2, "dream.steps: input should be a valid integer"),
        ("negative size", {"source": {"uri": "demo", "width": -640}}, 2, "source.width: must be >= 16, got -640"),
        ("0-byte file", {"source": str(empty), "outputs": ["null"]}, 4, "the file is empty"),
        ("non-video file", {"source": str(text), "outputs": ["null"]}, 4, "not a video file"),
        ("password in a URL", {"source": "demo", "outputs": ["ftp://admin:hunter2-secret@nas.local/dream.mkv"]}, 5,
         "ftp://admin:***@nas.local"),
        ("control API on the network without a token", {"metrics": {"host": "0.0.0.0", "port": 0}}, 6,
         "without a token"),
    ]  # fmt: skip


def test_hostile_input_fails_clearly_without_a_traceback(tmp_path):
    for name, data, code, message in hostile_cases(tmp_path):
        path = write_config(tmp_path / "bad.yaml", data)
        proc = streamdream("serve", "--config", path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == code, f"{name}: exit {proc.returncode}\n{out}"
        assert message in out, f"{name}: {out}"
        assert "Traceback" not in out and "hunter2" not in out, f"{name}: {out}"


# --- signals and recordings --------------------------------------------------------------------


def serve_config(tmp_path: Path, tiny_model_path: Path, port: int) -> Path:
    """The shipped installation config, made small: tiny model, 160x120, no playlist; its recording kept."""
    data = yaml.safe_load(INSTALLATION.read_text())
    recording = data["outputs"][0]["uri"]
    assert recording.split("?")[0].endswith((".mkv", ".ts")) or "fragmented=1" in recording  # crash-safe by default
    data["outputs"][0]["uri"] = str(tmp_path / recording)
    data["outputs"][1] = "preview:127.0.0.1:0"
    data["source"].update({"width": 160, "height": 120, "fps": 15})
    data["model"] = {"name": str(tiny_model_path), "layers": "conv2"}
    data["dream"] = {"width": 96, "octaves": 1, "steps": 1}
    data["coherence"] = {"mode": "independent"}
    data["metrics"]["port"] = port
    data.pop("playlist")
    return write_config(tmp_path / "installation.yaml", data)


def frames_written(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return -1
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamdream_frames_total" and sample.labels == {"stage": "write"}:
                return sample.value
    return -1


def start_serving(tmp_path, tiny_model_path, count: int):
    port = free_port()
    config = serve_config(tmp_path, tiny_model_path, port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdream.cli", "serve", "--config", str(config)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300  # a guard against a hang: the start takes 20-40 s, more on a loaded machine
    while frames_written(port) < count:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"serve did not write {count} frames:\n{proc.communicate()[0]}")
        time.sleep(0.2)
    return proc, port


def decoded(path: Path) -> tuple[int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * stream.time_base) for f in container.decode(stream) if f.pts is not None]
    return len(times), max(times) - min(times)


def recording(tmp_path: Path) -> Path:
    files = list((tmp_path / "recordings").glob("dream-*.mkv"))
    assert len(files) == 1, files
    return files[0]


def test_sigkill_leaves_a_recording_that_plays_to_near_its_last_second(tmp_path, tiny_model_path):
    proc, port = start_serving(tmp_path, tiny_model_path, count=30)
    time.sleep(3)  # 15 fps: ~45 more frames
    written = frames_written(port)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    frames, seconds = decoded(recording(tmp_path))
    print(f"SIGKILL after {written:.0f} frames written: {frames} decoded, {seconds:.2f} s")
    # what a hard kill may cost: the last Matroska cluster (0.5 s) and the encoder's few frames of delay
    assert frames >= written - 15, (frames, written)
    assert seconds >= (written - 1) / 15 - 1.0, (seconds, written)


def test_sigterm_stops_cleanly_and_finalizes(tmp_path, tiny_model_path):
    proc, port = start_serving(tmp_path, tiny_model_path, count=20)
    written = frames_written(port)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "SIGTERM received" in out and "Traceback" not in out
    frames, _ = decoded(recording(tmp_path))
    assert frames >= written
    with av.open(str(recording(tmp_path))) as container:
        assert container.duration is not None  # finalized: the duration is in the header
