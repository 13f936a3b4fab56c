"""`streamdream bench --soak MINUTES`: run the daemon's whole stack and watch resident memory.

The live demo source goes through the same parts as `serve` (reconnecting source, live
dream, output workers, metrics and HTTP server) into three outputs: ``null``, a Matroska
recording in a temporary folder (a new file every 5 minutes, files older than 10 minutes
pruned) and an RTSP publish to a receiver (``ffmpeg -rtsp_flags listen``) that this soak
kills and restarts every minute, so that output fails and reconnects all along. Without
an ``ffmpeg`` command the third output is a browser preview, and the report says so.

Resident memory is sampled every ``sample_every`` seconds; growth is measured from the end
of a warm-up (TensorFlow allocates its pools, the first traces happen) to the end, both as
a percentage and as a fitted slope. An installation should stay under 5 % over 30 minutes.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from ..config import Config, parse_config
from ..runtime.workers import POLL, StopToken, Worker, Workers
from ..service.daemon import Service
from ..service.reload import ConfigWatcher

log = logging.getLogger(__name__)

GROWTH_LIMIT = 5.0  # percent
FLAP_PERIOD = 60.0  # seconds: the receiver is killed once a minute ...
FLAP_DOWN = 15.0  # ... and comes back this much later


def soak_config(recordings: str | None = None, publish_port: int | None = None, **overrides: Any) -> Config:
    """The soak's default: live demo at 320x240, a small flow dream with the offline model, three outputs."""
    outputs: list[Any] = ["null"]
    if recordings is not None:
        outputs.append({"uri": os.path.join(recordings, "soak-%Y%m%d-%H%M%S.mkv?preset=ultrafast"), "rotate": "5m", "max_age": "10m"})
    outputs.append(f"rtsp://127.0.0.1:{publish_port}/soak" if publish_port else "preview:127.0.0.1:0")
    data: dict[str, Any] = {
        "source": {"uri": "demo?live=1", "width": 320, "height": 240, "fps": 15},
        "outputs": outputs,
        "model": {"name": "efficientnet_lite0", "preset": "mid"},
        "dream": {"width": 256, "octaves": 2, "steps": 3},
        "coherence": {"mode": "flow"},
        "metrics": {"host": "127.0.0.1", "port": 0},
        "reconnect": {"initial": 1, "max": 5},
    }
    data.update(overrides)
    return parse_config(data, "soak")


class FlappingReceiver(Worker):
    """An RTSP receiver (ffmpeg) that is up for ``period - down`` seconds, then killed for ``down``."""

    def __init__(self, port: int, period: float = FLAP_PERIOD, down: float = FLAP_DOWN) -> None:
        super().__init__("soak-receiver")
        self.port, self.period, self.down = port, period, down
        self.flaps = 0
        self._process: subprocess.Popen | None = None
        self._cycle_start = time.monotonic()

    def step(self) -> bool:
        phase = (time.monotonic() - self._cycle_start) % self.period
        running = self._process is not None and self._process.poll() is None
        if phase < self.period - self.down:
            if not running:  # (re)start; ffmpeg also ends by itself when the publisher leaves
                self._process = subprocess.Popen(
                    ["ffmpeg", "-nostdin", "-loglevel", "quiet", "-rtsp_flags", "listen",
                     "-i", f"rtsp://127.0.0.1:{self.port}/soak", "-f", "null", "-"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
        elif running:
            self._kill()
            self.flaps += 1
        self.stop.wait(POLL)
        return True

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def end(self) -> None:
        self._kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def resident_bytes() -> int:
    """This process's resident set size (psutil if installed, else /proc/self/status)."""
    try:
        import psutil  # noqa: PLC0415 - optional: memory figures where psutil is installed

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("cannot read resident memory: no psutil and no /proc/self/status")


def _slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares MB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (m - mean_m) for t, m in samples) / var * 60.0


def soak(
    minutes: float,
    stop: StopToken | None = None,
    *,
    config: Config | None = None,
    warmup: float | None = None,
    sample_every: float = 10.0,
) -> dict[str, Any]:
    """Run for ``minutes`` (or until ``stop``) and report memory; see the module doc."""
    with tempfile.TemporaryDirectory(prefix="streamdream-soak-") as recordings:
        return _soak(minutes, stop, config, warmup, sample_every, recordings)


class _Unwatched(ConfigWatcher):
    """The soak's config is in memory: no file to watch, never a change."""

    def changed(self) -> bool:
        return False


def _soak(
    minutes: float, stop: StopToken | None, config: Config | None, warmup: float | None, sample_every: float, recordings: str
) -> dict[str, Any]:
    if minutes <= 0:
        raise ValueError(f"--soak must be > 0 minutes, got {minutes:g}")
    workers = Workers(stop)
    receiver: FlappingReceiver | None = None
    if config is None:
        port = _free_port() if shutil.which("ffmpeg") else None
        config = soak_config(recordings, port)
        if port is not None:
            receiver = workers.start(FlappingReceiver(port))
        else:
            log.warning("soak: no ffmpeg command, so no flapping publish; the third output is a preview")
    duration = minutes * 60.0
    warmup = min(60.0, duration / 5.0) if warmup is None else warmup
    outer_stop = stop or StopToken()
    service_stop = StopToken()
    service = Service(os.devnull, config, service_stop)
    service.watcher = _Unwatched(os.devnull)  # nothing to watch
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # reported in the result
            errors.append(exc)

    thread = workers.spawn("soak-service", run).thread
    assert thread is not None, "spawn started it"
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    warm_mb: float | None = None
    next_sample = None  # the warm-up starts once frames flow: loading TensorFlow and the model is not part of it
    try:
        while thread.is_alive() and not outer_stop.is_set():
            now = time.monotonic()
            if now - started >= duration:
                break
            if next_sample is None:
                if service.pipeline is not None:
                    next_sample = now + warmup
                outer_stop.wait(1.0)
                continue
            if now >= next_sample:
                mb = resident_bytes() / 2**20
                samples.append((now - started, mb))
                if warm_mb is None:
                    warm_mb = mb
                    log.info("soak: warm-up done, %.1f MB resident", mb)
                next_sample += sample_every
            outer_stop.wait(min(1.0, max(0.0, next_sample - now)))
    finally:
        end_mb = resident_bytes() / 2**20
        elapsed = time.monotonic() - started
        service_stop.set()
        thread.join(timeout=60)
        workers.stop.set()
        workers.join(30)
    result = service.pipeline.result if service.pipeline else None
    growth = None if warm_mb is None else (end_mb - warm_mb) / warm_mb * 100.0
    registry = service.metrics.registry
    report = {
        "kind": "soak",
        "minutes": round(elapsed / 60.0, 2),
        "warmup_s": warmup,
        "frames_in": result.frames_in if result else 0,
        "frames_out": result.frames_out if result else 0,
        "idle_frames": int(registry.get_sample_value("streamdream_frames_total", {"stage": "idle"}) or 0),
        "dream_steps": int(registry.get_sample_value("streamdream_dream_steps_total") or 0),
        "rss_warm_mb": None if warm_mb is None else round(warm_mb, 1),
        "rss_end_mb": round(end_mb, 1),
        "rss_max_mb": round(max([m for _, m in samples] + [end_mb]), 1),
        "growth_percent": None if growth is None else round(growth, 2),
        "slope_mb_per_min": round(_slope(samples), 3),
        "limit_percent": GROWTH_LIMIT,
        "ok": growth is not None and growth < GROWTH_LIMIT and not errors,
        "error": str(errors[0]) if errors else None,
        "samples": [(round(t, 1), round(m, 1)) for t, m in samples],
        "outputs": [
            {"output": o.label, "frames": int(registry.get_sample_value("streamdream_output_frames_total", {"output": o.label}) or 0),
             "reconnects": int(registry.get_sample_value("streamdream_output_reconnects_total", {"output": o.label}) or 0)}
            for o in (result.outputs if result else ())
        ],
        "receiver_kills": receiver.flaps if receiver is not None else None,
        "recordings_rotated": int(sum(
            s.value for m in registry.collect() if m.name == "streamdream_recordings_rotated" for s in m.samples
            if s.name.endswith("_total"))),
    }  # fmt: skip
    return report


def format_soak(report: dict[str, Any]) -> str:
    if report.get("growth_percent") is None:
        return f"soak: ended after {report['minutes']} min, before the warm-up was over; no memory figure"
    verdict = "ok" if report["ok"] else "FAILED"
    return (
        f"soak {report['minutes']} min: {report['frames_out']} frames out ({report['idle_frames']} idle), "
        f"{report['dream_steps']} dream steps\n"
        f"resident memory {report['rss_warm_mb']} MB after {report['warmup_s']:.0f} s warm-up -> {report['rss_end_mb']} MB "
        f"(max {report['rss_max_mb']} MB): {report['growth_percent']:+.2f} % "
        f"({report['slope_mb_per_min']:+.3f} MB/min), limit {report['limit_percent']:g} %: {verdict}\n"
        + "outputs: " + ", ".join(f"{o['output']} {o['frames']} frames, {o['reconnects']} reconnects" for o in report["outputs"])
        + (f"; receiver killed {report['receiver_kills']} times" if report.get("receiver_kills") is not None else "")
        + f"; {report['recordings_rotated']} recordings rotated"
        + (f"\nerror: {report['error']}" if report.get("error") else "")
    )
