"""`streamdream bench --chaos MINUTES`: the daemon under a schedule of faults, and how fast it heals.

What runs (everything on 127.0.0.1, in a temporary folder, all children ended at the end):
- the daemon, ``python -m streamdream.cli serve --config FILE`` in a child process, with the
  control API (a token), OSC, and three outputs: ``null``, a Matroska recording on a small
  tmpfs (rotated, pruned) and an RTSP publish;
- its source: an ``ffmpeg`` serving a live test pattern over HTTP, and the publish's receiver
  (``ffmpeg -rtsp_flags listen``); both are restarted whenever they end (``chaos_faults``).

Faults, one at a time, round-robin over the kinds, ``FAULTS_PER_30_MIN`` per 30 minutes (at
least one of each kind): source kill, source stall (SIGSTOP, then SIGCONT), receiver kill,
disk full, six kinds of bad reload (empty, too deep, alias bomb, missing guide image,
unknown model, a save seen half-written by the file watcher), 500 idle connections,
malformed HTTP requests, OSC garbage and a SIGHUP storm. Between faults the control API is
driven (``GET /api/state``, ``POST /api/strength``) and /healthz is asked.

Per fault, from ``/metrics``: the seconds from the fault's end until its counter moves again
(the source's own frames for source faults, that output's frames for output faults, the
``null`` output's frames for the rest), and the frames lost: what the counter's rate before
the fault would have made from its start to that moment, less what it made. At the end:
whether the daemon stayed up, whether each recording decodes (PyAV), and the daemon's
resident memory, descriptors and threads (``/proc/PID``) at minute 5 (half-way through a
run shorter than 10 minutes) and at the end.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import av
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ..errors import ConfigError
from ..runtime.workers import StopToken, Workers
from .chaos_faults import (
    Fault,
    Respawner,
    SmallDisk,
    bad_configs,
    idle_connections,
    malformed_http,
    osc_garbage,
    osc_message,
    publish_receiver,
    sighup_storm,
    source_server,
)
from .soak import _free_port

log = logging.getLogger(__name__)

KINDS = (
    "source_kill", "source_stall", "receiver_kill", "disk_full",
    "reload_empty", "reload_deep", "reload_alias_bomb", "reload_bad_guide", "reload_unknown_model", "reload_truncated",
    "idle_connections", "malformed_http", "osc_garbage", "sighup_storm",
)  # fmt: skip
FAULTS_PER_30_MIN = 100
FLOW_LIMIT = 5.0  # seconds: frames must flow again this soon after each fault's end
STEADY_LIMIT = 5.0  # percent: memory, descriptors and threads between minute 5 and the end
EARLY_MARK = 300.0  # seconds into the faults: the first resource sample (minute 5)
FIGURE_READS = 5  # /proc readings (0.4 s apart) behind each figure: their least
OSC_ANSWER = 3.0  # seconds for a good OSC message to be counted as applied
WARM = 10.0  # seconds of frames flowing before the first fault
START_LIMIT = 600.0  # seconds for the daemon's first frames (TensorFlow and the model load)
RECOVERY_LIMIT = 60.0  # seconds a fault's counter is waited for before it counts as not recovered
RELOAD_WAIT = 30.0  # seconds a reload's verdict is waited for
TRUNCATED_STEP = 0.8  # seconds between the pieces of a slow save
TRUNCATED_SETTLE = 6.0  # seconds after the save for the watcher's verdict
DOWN = 3.0  # seconds a killed child stays down, a stalled one frozen, the disk full
IDLE_CONNECTIONS = 500
DISK_MIB = 64
TOKEN = "chaos-token-0123456789"


def chaos(
    minutes: float,
    stop: StopToken | None = None,
    *,
    kinds: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the chaos soak for ``minutes`` of faults (or until ``stop``); the report (see the module doc)."""
    if minutes <= 0:
        raise ConfigError(f"--chaos must be > 0 minutes, got {minutes:g}")
    unknown = sorted(set(kinds or ()) - set(KINDS))
    if unknown:
        raise ConfigError(f"--chaos-kinds: unknown kind {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    if shutil.which("ffmpeg") is None:
        raise ConfigError("--chaos needs the ffmpeg command (its live source and its publish receiver): install ffmpeg")
    with tempfile.TemporaryDirectory(prefix="streamdream-chaos-") as workdir:
        return ChaosSoak(Path(workdir), minutes, list(kinds or KINDS), overrides or {}, stop or StopToken()).run()


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(url: str, *, token: str | None = None, body: dict | None = None, timeout: float = 2.0) -> tuple[int | None, str]:
    """(status, body); (None, why) when there was no answer."""
    request = urllib.request.Request(
        url, method="GET" if body is None else "POST", data=None if body is None else json.dumps(body).encode()
    )
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        return None, str(exc)


def proc_figures(pid: int) -> dict[str, Any]:
    """Resident memory (MB), open descriptors and threads of a process, from /proc."""
    figures: dict[str, Any] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                figures["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
            elif line.startswith("Threads:"):
                figures["threads"] = int(line.split()[1])
    figures["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return figures


def decode_check(path: Path) -> dict[str, Any]:
    """Decode every frame of a recording; a file with frames and no error is playable."""
    frames, error = 0, None
    try:
        with av.open(str(path)) as container:
            for _ in container.decode(video=0):
                frames += 1
    except Exception as exc:  # any decode failure is the finding
        error = f"{type(exc).__name__}: {exc}"
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "frames": frames,
        "error": error,
        "playable": frames > 0 and error is None,
    }


class ChaosSoak:
    """The children, the schedule and the measurements of one chaos soak."""

    def __init__(self, workdir: Path, minutes: float, kinds: list[str], overrides: dict[str, Any], stop: StopToken) -> None:
        self.workdir, self.minutes, self.stop = workdir, minutes, stop
        self.http_port, self.osc_port, self.source_port, self.publish_port = _free_port(), _udp_port(), _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.disk = SmallDisk(workdir / "recordings", DISK_MIB)
        self.kinds = [k for k in kinds if k != "disk_full" or self.disk.mounted]
        self.cwd = workdir / "cwd"  # the daemon's working directory: what appears in it is reported
        self.cwd.mkdir()
        self.config_path = workdir / "chaos.yaml"
        self.settings = self._settings(overrides)
        self.good = yaml.safe_dump(self.settings, sort_keys=False)
        self.bad = bad_configs(self.settings)
        self.workers = Workers(stop.child(), name="chaos")  # the soak's helpers: stopped with the command, joined at its end
        self.source: Respawner | None = None
        self.receiver: Respawner | None = None
        self.daemon: subprocess.Popen | None = None
        self.history: collections.deque[tuple[float, dict[str, float]]] = collections.deque(maxlen=200)
        self.healthz: collections.Counter[str] = collections.Counter()
        self.control = collections.Counter[str]()
        self.rng = random.Random(0)
        self.t0 = time.monotonic()  # the start of the faults (set again then)
        self.health_changes: list[tuple[float, int | None]] = []  # (seconds since t0, /healthz status) at each change

    def _settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "source": {
                "uri": f"http://127.0.0.1:{self.source_port}/live.ts",
                "width": 160,
                "height": 120,
                "fps": 10,
                "open_timeout": 3,
                "read_timeout": 2,
            },
            "outputs": [
                "null",
                {"uri": str(self.disk.path / "chaos-%Y%m%d-%H%M%S.mkv") + "?preset=ultrafast", "rotate": "2m", "max_age": "6m"},
                f"rtsp://127.0.0.1:{self.publish_port}/chaos",
            ],
            "model": {"name": "efficientnet_lite0", "preset": "shallow"},
            "dream": {"width": 128, "octaves": 1, "steps": 2},
            "coherence": {"mode": "flow"},
            "metrics": {"host": "127.0.0.1", "port": self.http_port},
            "control": {"token": TOKEN},
            "osc": {"host": "127.0.0.1", "port": self.osc_port},
            "reconnect": {"initial": 0.5, "max": 1},
            "health": {"stall_after": 3, "source_down_after": 10, "stuck_after": 20, "output_down_after": 30},
        }
        settings.update(overrides)  # whole sections
        return settings

    # --- the run --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        faults: list[dict[str, Any]] = []
        report: dict[str, Any] = {"kind": "chaos", "minutes": self.minutes, "faults": faults}
        try:
            self._start()
            report.update(self._inject_all(faults))
            report["end"] = self._figures()
        finally:
            report.update(self._finish())
        return _summarize(report, self)

    def _start(self) -> None:
        logs = self.workdir / "logs"
        logs.mkdir()
        self.source = self.workers.start(source_server(self.source_port, logs / "source.log"))
        self.receiver = self.workers.start(publish_receiver(self.publish_port, logs / "receiver.log"))
        self.config_path.write_text(self.good)
        self.daemon_log = logs / "daemon.log"
        with open(self.daemon_log, "wb") as out:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "streamdream.cli", "serve", "--config", str(self.config_path)],
                cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_LIMIT
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise RuntimeError(
                    f"the daemon exited with {self.daemon.returncode} before its first frames: "
                    + self.daemon_log.read_text(errors="replace")[-2000:]
                )
            counters = self._sample()
            if counters.get("null", 0) > 0 and counters.get("real", 0) > 0:
                return
            self.stop.wait(1.0)
        raise RuntimeError(f"no frames from the daemon within {START_LIMIT:.0f} s")

    def _inject_all(self, faults: list[dict[str, Any]]) -> dict[str, Any]:
        duration = self.minutes * 60.0
        count = max(len(self.kinds), math.ceil(FAULTS_PER_30_MIN * self.minutes / 30.0))
        period = duration / count
        table = self._faults()
        self.t0 = time.monotonic() + WARM
        self._gap(self.t0)  # the rates a first fault's frames lost are measured against
        started = self.t0 = time.monotonic()
        early_mark = min(EARLY_MARK, duration / 2)
        early: dict[str, Any] | None = None
        for i in range(count):
            self._gap(started + i * period)
            if early is None and time.monotonic() - started >= early_mark:
                early = {**self._figures(), "at_min": round((time.monotonic() - started) / 60, 2)}
            if self.stop.is_set() or self.daemon is None or self.daemon.poll() is not None:
                break
            fault = table[self.kinds[i % len(self.kinds)]]
            faults.append(self._one(fault, time.monotonic() - started))
            log.info("chaos: fault %d/%d %s: %s", i + 1, count, fault.kind, faults[-1])
        self._gap(started + duration)
        return {"early": early, "fault_phase_min": round((time.monotonic() - started) / 60, 2), "planned": count}

    def _gap(self, until: float) -> None:
        """Until ``until``: sample the counters, ask /healthz, drive the control API."""
        deadline = min(until, time.monotonic() + self.minutes * 60.0)
        turn = 0
        while time.monotonic() < deadline and not self.stop.is_set():
            self._sample()
            if turn % 4 == 0:
                status, _ = _request(self.url + "/healthz")
                self.healthz[str(status)] += 1
                if not self.health_changes or self.health_changes[-1][1] != status:
                    self.health_changes.append((round(time.monotonic() - self.t0, 1), status))
                state, _ = _request(self.url + "/api/state", token=TOKEN)
                strength, _ = _request(self.url + "/api/strength", token=TOKEN, body={"value": 1.0})
                refused, _ = _request(self.url + "/api/strength", body={"value": 1.0})  # no token: 401
                self.control["ok" if (state, strength, refused) == (200, 200, 401) else "failed"] += 1
            turn += 1
            self.stop.wait(min(0.5, max(0.0, deadline - time.monotonic())))

    def _one(self, fault: Fault, at: float) -> dict[str, Any]:
        before = self._sample()
        rate = self._rate(fault.watch)
        begun = time.monotonic()
        try:
            details = fault.inject()
        except Exception as exc:  # a fault that cannot be made is reported, and the soak goes on
            details = {"inject_error": f"{type(exc).__name__}: {exc}"}
        ended = time.monotonic()
        value = self._sample().get(fault.watch, 0.0)
        recovered: float | None = None
        while time.monotonic() - ended < RECOVERY_LIMIT and not self.stop.is_set():
            counters = self._sample()
            if counters.get(fault.watch, 0.0) > value:
                recovered = time.monotonic()
                break
            time.sleep(0.1)
        figures = proc_figures(self.daemon.pid) if self.daemon is not None and self.daemon.poll() is None else {}
        last = self.history[-1][1]
        made = last.get(fault.watch, 0.0) - before.get(fault.watch, 0.0)
        window = (recovered or time.monotonic()) - begun
        return {
            "kind": fault.kind, "at_s": round(at, 1), "lasted_s": round(ended - begun, 2), "watch": fault.watch,
            "flowing_after_s": None if recovered is None else round(recovered - ended, 2),
            "frames_lost": max(0, round(rate * window - made)),
            "threads_after": figures.get("threads"), "fds_after": figures.get("fds"), **details,
        }  # fmt: skip

    def _rate(self, key: str) -> float:
        """Frames per second of ``key`` over the last 10 s sampled."""
        if len(self.history) < 2:
            return 0.0
        t1, last = self.history[-1]
        t0, first = next(((t, c) for t, c in self.history if t >= t1 - 10.0), self.history[0])
        return (last.get(key, 0.0) - first.get(key, 0.0)) / (t1 - t0) if t1 > t0 else 0.0

    def _sample(self) -> dict[str, float]:
        status, text = _request(self.url + "/metrics")
        counters: dict[str, float] = {}
        if status == 200:
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if s.name == "streamdream_frames_total":
                        counters[s.labels["stage"]] = s.value
                    elif s.name == "streamdream_output_frames_total":
                        label = s.labels["output"]
                        key = (
                            "null"
                            if label.startswith("null")
                            else "recording"
                            if ".mkv" in label
                            else ("publish" if label.startswith("rtsp") else label)
                        )
                        counters[key] = counters.get(key, 0.0) + s.value
                    elif s.name == "streamdream_frames_dropped_total":
                        counters["dropped"] = counters.get("dropped", 0.0) + s.value
                    elif s.name == "streamdream_osc_messages_total":
                        counters["osc_" + s.labels.get("result", "")] = s.value
            counters["real"] = counters.get("capture", 0.0) - counters.get("idle", 0.0)
            self.history.append((time.monotonic(), counters))
        return counters if counters else (self.history[-1][1] if self.history else {})

    def _figures(self) -> dict[str, Any]:
        """The daemon's figures: the least of ``FIGURE_READS`` readings, so a leak shows and a passing thread does not."""
        readings = []
        for _ in range(FIGURE_READS):
            if self.daemon is None or self.daemon.poll() is not None:
                break
            readings.append(proc_figures(self.daemon.pid))
            time.sleep(0.4)
        return {key: min(r[key] for r in readings) for key in readings[0]} if readings else {}

    # --- the faults -------------------------------------------------------------------------

    def _faults(self) -> dict[str, Fault]:
        assert self.source is not None and self.receiver is not None and self.daemon is not None
        source, receiver, pid = self.source, self.receiver, self.daemon.pid

        def kill(child: Respawner) -> dict:
            child.kill(DOWN)
            time.sleep(DOWN)
            return {}

        def stall() -> dict:
            source.signal(signal.SIGSTOP)
            try:
                time.sleep(DOWN + 1.0)  # longer than read_timeout and health.stall_after
            finally:
                source.signal(signal.SIGCONT)
            return {}

        def disk_full() -> dict:
            filled = self.disk.fill()
            try:
                time.sleep(DOWN)
            finally:
                self.disk.empty()
            return {"filled_mib": round(filled / 2**20, 1)}

        def reload(kind: str) -> Fault:
            return Fault(kind, lambda: self._bad_reload(kind), "null")

        faults = [
            Fault("source_kill", lambda: kill(source), "real"),
            Fault("source_stall", stall, "real"),
            Fault("receiver_kill", lambda: kill(receiver), "publish"),
            Fault("disk_full", disk_full, "recording"),
            *(reload(kind) for kind in self.bad),
            Fault(
                "idle_connections",
                lambda: idle_connections(
                    self.http_port, IDLE_CONNECTIONS, DOWN, lambda: _request(self.url + "/healthz", timeout=5)[0]
                ),
                "null",
            ),
            Fault("malformed_http", lambda: malformed_http(self.http_port), "null"),
            Fault("osc_garbage", self._osc_garbage, "null"),
            Fault("sighup_storm", lambda: sighup_storm(pid), "null"),
        ]
        return {f.kind: f for f in faults}

    def _osc_garbage(self) -> dict[str, Any]:
        """The garbage, then one good message: is OSC control still heard?"""
        details = osc_garbage(self.osc_port, self.rng)
        applied = self._sample().get("osc_applied", 0.0)
        osc_message(self.osc_port, "/streamdream/strength", 1.0)
        deadline = time.monotonic() + OSC_ANSWER
        while time.monotonic() < deadline and self._sample().get("osc_applied", 0.0) <= applied:
            time.sleep(0.1)
        details["osc_heard_after"] = self._sample().get("osc_applied", 0.0) > applied
        return details

    def _last_reload(self) -> dict[str, Any] | None:
        status, body = _request(self.url + "/api/state", token=TOKEN, timeout=5)
        if status != 200:
            return None
        return dict(json.loads(body).get("config", {}).get("last_reload") or {})

    def _await_reload(self, since: Any) -> dict[str, Any] | None:
        deadline = time.monotonic() + RELOAD_WAIT
        while time.monotonic() < deadline and not self.stop.is_set():
            last = self._last_reload()
            if last is not None and last.get("at") != since:
                return last
            time.sleep(0.2)
        return None

    def _bad_reload(self, kind: str) -> dict[str, Any]:
        """Write the bad file (SIGHUP, or the watcher for a half-written save), read the verdict, restore."""
        assert self.daemon is not None
        since = (self._last_reload() or {}).get("at")
        if kind == "reload_truncated":
            # a slow save: a quarter more every 0.8 s, the whole file after 3.2 s; the daemon must not
            # apply what it sees half-way (the watcher polls every 2 s), only the whole file once
            text = self.bad[kind]
            for quarter in (1, 2, 3):
                self.config_path.write_text(text[: len(text) * quarter // 4])
                time.sleep(TRUNCATED_STEP)
            self.config_path.write_text(text)
            time.sleep(TRUNCATED_SETTLE)
            last = self._last_reload() or {}
            changed = last.get("at") != since
            # the whole file is the running config: reading it once, whole, applies nothing; a reload
            # that was rejected or changed something read a half-written file
            half = changed and (not last.get("ok") or not str(last.get("applied") or "").startswith("nothing"))
            return {
                "accepted": half and bool(last.get("ok")),
                "read_half_written": half,
                "read_whole_once": changed and not half,
                "reason": last.get("error") if changed else None,
            }
        self.config_path.write_text(self.bad[kind])
        self.daemon.send_signal(signal.SIGHUP)
        verdict = self._await_reload(since)
        self.config_path.write_text(self.good)
        restored = None
        if verdict is None or verdict.get("ok"):  # applied: the good file must be applied again
            self.daemon.send_signal(signal.SIGHUP)
            restored = self._await_reload((verdict or {}).get("at", since))
        error = (verdict or {}).get("error")
        return {
            "accepted": None if verdict is None else bool(verdict.get("ok")),
            "reason": None if error is None else str(error)[:160],
            "restored": None if restored is None else bool(restored.get("ok")),
        }

    # --- the end ----------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        daemon = self.daemon
        if daemon is not None:
            out["daemon_up_throughout"] = daemon.poll() is None
            out["daemon_exit_before_stop"] = daemon.returncode
            daemon.send_signal(signal.SIGTERM)
            try:
                out["daemon_exit_code"] = daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                out["daemon_exit_code"] = daemon.wait(timeout=10)
                out["daemon_killed"] = True
        self.workers.stop.set()
        self.workers.join(30)
        try:
            out["recordings"] = [decode_check(p) for p in sorted(self.disk.path.glob("*.mkv"))]
        finally:
            self.disk.unmount()
        out["disk"] = f"tmpfs of {DISK_MIB} MiB" if not self.disk.error else f"none: cannot mount a tmpfs ({self.disk.error})"
        out["stray_files"] = sorted(p.name for p in self.cwd.iterdir())
        text = self.daemon_log.read_text(errors="replace") if hasattr(self, "daemon_log") else ""
        out["log"] = {
            "lines": text.count("\n"),
            "tracebacks": text.count("Traceback (most recent call last)"),
            "errors": sum(" ERROR " in line or line.startswith("ERROR") for line in text.splitlines()),
        }
        out["log"]["exceptions"] = _exceptions(text)
        out["source_starts"] = self.source.starts if self.source else 0
        out["receiver_starts"] = self.receiver.starts if self.receiver else 0
        return out


def _exceptions(text: str, most: int = 8) -> list[str]:
    """The distinct last lines of the tracebacks in a log (the exceptions), at most ``most``."""
    found: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith(" ")), None)
            if end is not None and lines[end][:200] not in found:
                found.append(lines[end][:200])
    return found[:most]


def _change(early: dict[str, Any] | None, end: dict[str, Any] | None) -> dict[str, float | None]:
    if not early or not end:
        return {"rss_mb": None, "fds": None, "threads": None}
    return {
        key: round((end[key] - early[key]) / early[key] * 100.0, 2) if early.get(key) else None
        for key in ("rss_mb", "fds", "threads")
    }


def _summarize(report: dict[str, Any], soak: ChaosSoak) -> dict[str, Any]:
    by_kind: dict[str, dict[str, Any]] = {}
    for fault in report["faults"]:
        row = by_kind.setdefault(
            fault["kind"], {"kind": fault["kind"], "count": 0, "max_flowing_after_s": 0.0, "not_flowing": 0, "frames_lost": 0}
        )
        row["count"] += 1
        row["frames_lost"] += fault["frames_lost"]
        if fault["flowing_after_s"] is None:
            row["not_flowing"] += 1
        else:
            row["max_flowing_after_s"] = max(row["max_flowing_after_s"], fault["flowing_after_s"])
        if "accepted" in fault:
            row["accepted"] = row.get("accepted", 0) + bool(fault["accepted"])
    report["kinds"] = list(by_kind.values())
    report["faults_total"] = len(report["faults"])
    report["kinds_total"] = len(by_kind)
    report["skipped_kinds"] = sorted(set(KINDS) - set(soak.kinds))
    report["flow_limit_s"] = FLOW_LIMIT
    report["all_flowing_within_limit"] = all(
        f["flowing_after_s"] is not None and f["flowing_after_s"] <= FLOW_LIMIT for f in report["faults"]
    )
    report["bad_reloads_accepted"] = sum(bool(f.get("accepted")) for f in report["faults"])
    report["change_percent"] = _change(report.get("early"), report.get("end"))
    report["steady_limit_percent"] = STEADY_LIMIT
    report["healthz"] = dict(soak.healthz)
    report["healthz_changes"] = soak.health_changes  # [seconds into the faults, status]: when /healthz changed
    report["control_rounds"] = dict(soak.control)
    recordings = report.get("recordings", [])
    report["recordings_playable"] = bool(recordings) and all(r["playable"] for r in recordings)
    report["ok"] = bool(
        report.get("daemon_up_throughout")
        and report["all_flowing_within_limit"]
        and report["recordings_playable"]
        and not report["bad_reloads_accepted"]
        and all(f.get("osc_heard_after", True) for f in report["faults"])
        and report["faults_total"] > 0
        and all(v is not None and abs(v) <= STEADY_LIMIT for v in report["change_percent"].values())
    )
    return report


def format_chaos(report: dict[str, Any]) -> str:
    lines = [f"{'fault kind':<22} {'count':>5} {'max s to flow':>14} {'not flowing':>12} {'frames lost':>12} {'accepted':>9}"]
    for row in report["kinds"]:
        lines.append(
            f"{row['kind']:<22} {row['count']:>5} {row['max_flowing_after_s']:>14.2f} {row['not_flowing']:>12} "
            f"{row['frames_lost']:>12} {row.get('accepted', ''):>9}"
        )
    early, end, change = report.get("early") or {}, report.get("end") or {}, report["change_percent"]

    def figure(key: str) -> str:
        return f"{early.get(key, '-')} -> {end.get(key, '-')} ({'-' if change[key] is None else f'{change[key]:+.2f} %'})"

    recordings = report.get("recordings", [])
    lines += [
        "",
        f"{report['faults_total']} faults of {report['kinds_total']} kinds in {report.get('fault_phase_min', '?')} min"
        + (f" (skipped: {', '.join(report['skipped_kinds'])})" if report["skipped_kinds"] else ""),
        f"daemon up throughout: {'yes' if report.get('daemon_up_throughout') else 'NO'}; "
        f"exit code after SIGTERM {report.get('daemon_exit_code')}",
        f"frames flowing again within {report['flow_limit_s']:g} s of every fault's end: "
        f"{'yes' if report['all_flowing_within_limit'] else 'NO'}; bad reloads accepted: {report['bad_reloads_accepted']}",
        f"recordings: {len(recordings)}, playable: {sum(r['playable'] for r in recordings)} "
        f"({sum(r['frames'] for r in recordings)} frames decoded); disk: {report.get('disk')}",
        f"daemon at minute {early.get('at_min', '-')} -> end: resident MB {figure('rss_mb')}, "
        f"descriptors {figure('fds')}, threads {figure('threads')} (limit {report['steady_limit_percent']:g} %)",
        f"/healthz answers between faults: {report['healthz']}; control API rounds: {report['control_rounds']}; "
        f"daemon log: {report.get('log')}; stray files in its working directory: {report.get('stray_files') or 'none'}",
        f"chaos: {'ok' if report['ok'] else 'FAILED'}",
    ]
    return "\n".join(lines)
