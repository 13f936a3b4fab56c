"""What OSC traffic and audio analysis cost a live installation: output fps and latency.

    python benchmarks/control_surfaces.py --seconds 30 --rounds 2

The whole daemon (``Service``: director, outputs, HTTP, OSC worker) serves a 640x360 25 fps
clip written here with PyAV, with a soundtrack of beats (a loud burst every 0.5 s over
quiet hiss), looped and paced in real time like a live input, dreamed by efficientnet_lite0
at 320 px in flow mode into a ``null`` output. Four conditions, side by side in one run
(in the order off, osc, audio, both, then reversed for the next round):

* ``off``: neither;
* ``osc``: a python-osc client sends ``/streamdream/strength`` 100 times a second, the value
  moving like a fader (1.0 +- 0.2 over 4 s): every new value is a control request, and the
  director builds a look for the latest one whenever it is free;
* ``audio``: ``audio_react`` on: the reader decodes the clip's audio for the analysis and
  every output frame's detail is scaled by its strength factor;
* ``both``.

Each condition starts a fresh daemon, lets it warm up (``--warmup`` seconds: the first
full dream, the traces), then measures ``--seconds``: output frames per second, the
capture-to-output latency of every frame (mean, p50, p95), dream refreshes per second,
the age of the dream shown, the looks built, and the OSC messages applied.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamdream.config import load_config  # noqa: E402
from streamdream.runtime.observer import ObserverGroup, PipelineObserver  # noqa: E402
from streamdream.runtime.workers import StopToken  # noqa: E402
from streamdream.service.daemon import Service  # noqa: E402
from tests.fixtures.sound import write_burst_clip  # noqa: E402

CONDITIONS = ("off", "osc", "audio", "both")


class Recorder(PipelineObserver):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[tuple[float, float]] = []  # (when, seconds)
        self.stages: list[tuple[float, str, float]] = []

    def latency(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append((time.monotonic(), seconds))

    def stage_time(self, stage: str, seconds: float) -> None:
        if stage in ("dream_refresh", "dream_age"):
            with self.lock:
                self.stages.append((time.monotonic(), stage, seconds))


def fader(client, stop: threading.Event, rate: float, sent: list[int]) -> None:
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        due = start + n / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        t = time.monotonic() - start
        client.send_message("/streamdream/strength", 1.0 + 0.2 * math.sin(2 * math.pi * t / 4.0))
        n += 1
        sent[0] = n


def measure(condition: str, clip: Path, work: Path, args) -> dict:
    data = {
        "source": {"uri": str(clip), "loop": True},
        "outputs": ["null"],
        "model": {"name": args.model},
        "dream": {"width": args.width, "seed": 0},
        "metrics": {"port": 0},
        "playlist": {"crossfade": 0},
    }
    if condition in ("osc", "both"):
        data["osc"] = {"port": 0}
    if condition in ("audio", "both"):
        data["audio_react"] = {"strength": [0.6, 1.6]}
    path = work / f"{condition}.yaml"
    path.write_text(yaml.safe_dump(data))
    stop = StopToken()
    service = Service(path, load_config(path), stop)
    recorder = Recorder()
    service.observer = ObserverGroup(service.metrics, service.health, recorder)
    service._build.observer = service.observer  # the looks report their refreshes here too
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    while service.pipeline is None and thread.is_alive():
        time.sleep(0.2)
    time.sleep(args.warmup)
    sender_stop, sent = threading.Event(), [0]
    sender = None
    if service.osc is not None:
        from pythonosc.udp_client import SimpleUDPClient

        sender = threading.Thread(target=fader, args=(SimpleUDPClient("127.0.0.1", service.osc.port), sender_stop, args.rate, sent))
        sender.start()
        time.sleep(2.0)  # the traffic is on before the window opens
    registry = service.metrics.registry

    def value(name: str, labels: dict | None = None) -> float:
        return registry.get_sample_value(name, labels or {}) or 0.0

    start = time.monotonic()
    frames0, switches0 = value("streamdream_frames_total", {"stage": "write"}), value("streamdream_preset_switches_total")
    applied0 = value("streamdream_osc_messages_total", {"result": "applied"})
    sent0 = sent[0]
    time.sleep(args.seconds)
    end = time.monotonic()
    frames = value("streamdream_frames_total", {"stage": "write"}) - frames0
    result = {
        "condition": condition,
        "output_fps": frames / (end - start),
        "looks_built": value("streamdream_preset_switches_total") - switches0,
        "osc_sent": sent[0] - sent0,
        "osc_applied": value("streamdream_osc_messages_total", {"result": "applied"}) - applied0,
        "osc_invalid": value("streamdream_osc_messages_total", {"result": "invalid"}),
        "dropped": {k: v for k, v in service.pipeline.result.dropped.items()},
    }
    with recorder.lock:
        latencies = [s for t, s in recorder.latencies if start <= t <= end]
        refreshes = [s for t, stage, s in recorder.stages if start <= t <= end and stage == "dream_refresh"]
        ages = [s for t, stage, s in recorder.stages if start <= t <= end and stage == "dream_age"]
    ms = np.asarray(latencies) * 1000
    result.update({
        "latency_mean_ms": float(ms.mean()), "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p95_ms": float(np.percentile(ms, 95)),
        "refreshes_per_s": len(refreshes) / (end - start),
        "dream_age_mean_ms": float(np.mean(ages) * 1000) if ages else None,
    })  # fmt: skip
    sender_stop.set()
    if sender is not None:
        sender.join()
    stop.set()
    thread.join(timeout=60)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per condition")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100.0, help="OSC messages per second")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--width", type=int, default=320, help="dream width")
    parser.add_argument("--json", default="benchmarks/control_surfaces.json")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        beats = [(0.5 * k, 0.5 * k + 0.12) for k in range(40)]
        clip = write_burst_clip(work / "beats.mp4", beats, seconds=20.0, fps=25, width=640, height=360)
        for round_ in range(args.rounds):
            order = CONDITIONS if round_ % 2 == 0 else tuple(reversed(CONDITIONS))
            for condition in order:
                result = measure(condition, clip, work, args)
                result["round"] = round_
                runs.append(result)
                print(json.dumps(result), flush=True)
    summary = {}
    for condition in CONDITIONS:
        mine = [r for r in runs if r["condition"] == condition]
        summary[condition] = {key: float(np.mean([r[key] for r in mine])) for key in
                              ("output_fps", "latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "refreshes_per_s", "looks_built")}
    report = {"command": " ".join(sys.argv), "settings": vars(args), "cores": os.cpu_count(), "load_average": os.getloadavg(),
              "runs": runs, "summary": summary}
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
