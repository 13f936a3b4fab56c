"""`bench --chaos`: the daemon in a child process under real faults, and the report a user reads.

A fraction of a minute with three kinds of fault (a killed source server, a too-deep YAML
reload, OSC garbage) on the tiny seeded model: the report has its table's rows, the daemon
stayed up and stopped cleanly, the recording decodes, and /proc's figures are there.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from streamdream.commands.chaos import format_chaos
from tests.helpers import streamdream

KINDS = ["source_kill", "reload_deep", "osc_garbage"]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the chaos soak's source and receiver are ffmpeg")
def test_a_short_chaos_soak_reports_every_fault_and_the_daemon_stays_up(tiny_model_path, tmp_path):
    overrides = tmp_path / "tiny.yaml"
    overrides.write_text(yaml.safe_dump({
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 1, "width": 96, "seed": 0},
        "coherence": {"mode": "independent"},
    }))  # fmt: skip
    proc = streamdream("bench", "--chaos", "0.3", "--chaos-kinds", ",".join(KINDS), "--chaos-config", overrides, "--json",
                       cwd=tmp_path, timeout=900)  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: the soak found something; the report says what
    report = json.loads(proc.stdout)

    assert report["daemon_up_throughout"] is True, report["log"]
    assert report["daemon_exit_code"] == 0
    assert [row["kind"] for row in report["kinds"]] == KINDS
    assert all(row["count"] == 1 for row in report["kinds"])
    assert report["faults_total"] == 3
    for fault in report["faults"]:
        assert "inject_error" not in fault, fault
        assert fault["flowing_after_s"] is not None, fault  # frames came back after every fault
    assert report["source_starts"] >= 2  # the kill was real: the source server was started again
    garbage = next(f for f in report["faults"] if f["kind"] == "osc_garbage")
    assert garbage["datagrams"] == 60 and "osc_heard_after" in garbage
    deep = next(f for f in report["faults"] if f["kind"] == "reload_deep")
    assert deep["accepted"] is False and "deeper" in deep["reason"]
    assert report["recordings"] and report["recordings_playable"], report["recordings"]
    for figures in (report["early"], report["end"]):
        assert figures["rss_mb"] > 0 and figures["fds"] > 0 and figures["threads"] > 0
    assert report["stray_files"] == []

    table = format_chaos(report)
    for kind in KINDS:
        assert kind in table
    assert "daemon up throughout: yes" in table
