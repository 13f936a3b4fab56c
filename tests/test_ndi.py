"""NDI output: the sink sends to a real cyndilib receiver on this machine.

Not tested here: mDNS discovery (multicast does not pass in this sandbox), so the receiver
finds the source through NDI's own unicast discovery by address (``ips: 127.0.0.1`` in
its ndi-config.v1.json); and another machine on a network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from streamdream.config import OutputConfig
from streamdream.errors import SinkError
from streamdream.frames import Frame, SourceInfo
from streamdream.sinks import open_sink, parse_output_uri

ROOT = Path(__file__).resolve().parents[1]


def colour(i: int) -> tuple[int, int, int]:
    return ((40 + 20 * i) % 256, 120, 200)


def test_ndi_sink_frames_reach_a_receiver_on_loopback(tmp_path, workers):
    config_dir = tmp_path / "ndi"
    config_dir.mkdir()
    (config_dir / "ndi-config.v1.json").write_text(json.dumps({"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}}))
    name = f"streamdream-test-{os.getpid()}"
    sink = open_sink(OutputConfig(uri=f"ndi:{name}"), workers=workers)
    info = SourceInfo(uri="test", width=160, height=120, fps=Fraction(25), live=True)
    sink.open(info)
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.ndi_receive", name, "8", "30"], cwd=ROOT,
        env={**os.environ, "NDI_CONFIG_DIR": str(config_dir)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    sent = 0
    try:
        deadline = time.monotonic() + 40
        while receiver.poll() is None and time.monotonic() < deadline:
            image = np.empty((120, 160, 3), np.uint8)
            image[:] = colour(sent % 10)
            sink.write(Frame(image, sent))
            sent += 1
            time.sleep(0.04)
        out, err = receiver.communicate(timeout=10)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.communicate()
        sink.close()
    report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err[-2000:]}
    assert "error" not in report, report
    assert report["source"].endswith(f"({name})")
    frames = report["frames"]
    assert len(frames) == 8
    assert sink.frames_written == sent
    sent_colours = np.array([colour(i) for i in range(10)], np.float32)
    for frame in frames:
        assert frame["size"] == [160, 120]
        assert frame["rate"] == 25.0
        # NDI sends YUV 4:2:2, compressed (SpeedHQ): each picture is one of the sent colours (20 levels apart) within 10
        assert np.abs(sent_colours - np.array(frame["mean"], np.float32)).max(axis=1).min() <= 10, frame["mean"]


def test_ndi_output_uri_and_names(workers):
    assert parse_output_uri("ndi:Stage left").kind == "ndi"
    assert parse_output_uri("ndi:Stage left").live
    with pytest.raises(SinkError, match="1-64 letters"):
        open_sink(OutputConfig(uri="ndi:"), workers=workers)
    with pytest.raises(SinkError, match="1-64 letters"):
        open_sink(OutputConfig(uri="ndi:a/b"), workers=workers)


def test_missing_ndi_runtime_names_what_to_install(monkeypatch, workers):
    monkeypatch.setitem(sys.modules, "cyndilib.sender", None)  # as if cyndilib were not installed
    sink = open_sink(OutputConfig(uri="ndi:x"), workers=workers)
    with pytest.raises(SinkError, match=r"pip install 'streamdream\[ndi\]'"):
        sink.open(SourceInfo(uri="test", width=160, height=120, fps=Fraction(25), live=True))
