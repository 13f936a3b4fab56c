"""The webrtc: output watched in headless Chromium: glass-to-glass latency, bytes per viewer, 5 viewers.

    python benchmarks/webrtc_view.py --seconds 15

The whole daemon (``Service``) dreams the built-in demo scene (live, 640x480 at 25 fps) with
the tests' tiny model into two outputs side by side: ``webrtc:`` and ``preview:`` (MJPEG, JPEG
quality 80, the same pictures). A benchmark-only hook (``WebRtcHub.marker``) draws a frame
counter into each picture the WebRTC output encodes (20 black or white 16 px squares: 16 bits
of the counter, 4 of a check) and notes when it did, and when the source captured that frame.
The control page, logged in, plays the stream; a ``requestVideoFrameCallback`` loop draws
every frame it presents onto a canvas, reads the counter back and notes the time. Both clocks
are the same machine's wall clock, so per frame:

* ``output_to_page``: from the output getting the picture to the page presenting it (the
  WebRTC part: encode, RTP on loopback, jitter buffer, decode, paint);
* ``capture_to_page``: from the source capturing the frame to the page presenting it
  (glass to glass, the dream included).

Phases, in one run: 1 WebRTC viewer (latency, bytes/s from getStats' bytes and header bytes
received); 1 MJPEG viewer of ``/stream.mjpg`` (bytes/s and frames/s of the body read, by a
Python client; no WebRTC viewer then); 5 WebRTC viewers at once (four more peer connections
opened by the page itself, each playing in its own muted video element): frames decoded and
bytes per viewer, the pictures encoded (one encode for all), the daemon's CPU.

Then sound and picture together (``--sync-seconds``; 0 skips it): a second daemon serves a clip
written here (640x480, 25 fps, looped like a live input) whose picture turns white and whose
sound bursts loud for 0.2 s at the same moments, once a second. The page, after a click on
*Sound on* (the user's gesture), notes every presented frame's brightness
(``requestVideoFrameCallback``) and the received sound's loudness every 5 ms (Web Audio); each
flash is paired with the burst nearest it: ``audio_minus_video`` (p50, p95 of its size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import av  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from cluster_node_loss import tiny_model  # noqa: E402

from streamdream.frames import Frame  # noqa: E402
from streamdream.sinks import webrtc  # noqa: E402
from tests.fixtures.control_page import open_page  # noqa: E402
from tests.fixtures.sound import RATE, burst_signal  # noqa: E402
from tests.test_service_daemon import TOKEN, Running, wait_for  # noqa: E402

BLOCK, BITS, CHECK = 16, 16, 4
WIDTH, HEIGHT, FPS = 640, 480, 25

WATCH = """(() => {
  window.marks = [];
  const video = document.getElementById("video");
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const read = (now) => {
    canvas.width = video.videoWidth; canvas.height = %(block)d;
    context.drawImage(video, 0, 0);
    const row = context.getImageData(0, 0, %(bits)d * %(block)d, %(block)d).data;
    let value = 0;
    for (let i = 0; i < %(bits)d; i++) {
      const at = ((%(block)d / 2) * %(bits)d * %(block)d + i * %(block)d + %(block)d / 2) * 4;
      value = value * 2 + (row[at] > 128 ? 1 : 0);
    }
    window.marks.push([value, performance.timeOrigin + now]);
    video.requestVideoFrameCallback(read);
  };
  video.requestVideoFrameCallback(read);
  return true;
})()""" % {"block": BLOCK, "bits": BITS + CHECK}

MORE_VIEWERS = """(async () => {
  window.extra = [];
  for (let n = 0; n < %d; n++) {
    const pc = new RTCPeerConnection();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const video = document.createElement("video");
    video.muted = true; video.autoplay = true; video.width = 160;
    document.body.append(video);
    pc.addEventListener("track", (event) => { video.srcObject = new MediaStream([event.track]); });
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    await pc.setRemoteDescription(await api("/api/webrtc/offer", { type: "offer", sdp: pc.localDescription.sdp }));
    window.extra.push(pc);
  }
  return window.extra.length;
})()"""

STATS = """(async () => {
  const out = [];
  for (const pc of [webrtc, ...(window.extra || [])]) {
    let video = null;
    (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") video = r; });
    out.push(video ? { frames: video.framesDecoded, bytes: video.bytesReceived + video.headerBytesReceived,
                       at: video.timestamp, state: pc.connectionState } : null);
  }
  return out;
})()"""


SYNC = """(async () => {
  const video = document.getElementById("video");
  const context = new AudioContext();
  await context.resume();
  const analyser = context.createAnalyser();
  analyser.fftSize = 256;
  context.createMediaStreamSource(new MediaStream(video.srcObject.getAudioTracks())).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const canvas = document.createElement("canvas");
  canvas.width = 16; canvas.height = 12;
  const picture = canvas.getContext("2d", { willReadFrequently: true });
  const light = [], loud = [];
  let running = true;
  const look = (now) => {
    picture.drawImage(video, 0, 0, 16, 12);
    const data = picture.getImageData(0, 0, 16, 12).data;
    let sum = 0;
    for (let i = 0; i < data.length; i += 4) sum += data[i] + data[i + 1] + data[i + 2];
    light.push([performance.timeOrigin + now, sum / (data.length / 4) / 3]);
    if (running) video.requestVideoFrameCallback(look);
  };
  video.requestVideoFrameCallback(look);
  const listen = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const v of samples) sum += v * v;
    loud.push([performance.timeOrigin + performance.now(), Math.sqrt(sum / samples.length)]);
  }, 5);
  await new Promise((resolve) => setTimeout(resolve, %d));
  running = false;
  clearInterval(listen);
  context.close();
  return { light, loud };
})()"""


def write_flash_clip(path: Path, seconds: float = 4.0, fps: int = FPS) -> tuple[Path, list[tuple[float, float]]]:
    """A clip that turns white and bursts loud together for 0.2 s once a second."""
    bursts = [(t + 0.5, t + 0.7) for t in range(int(seconds))]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "18"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = container.add_stream("aac", rate=RATE)
        sound.layout = "mono"
        for i in range(round(seconds * fps)):
            t = (i + 0.5) / fps
            level = 235 if any(a <= t < b for a, b in bursts) else 30
            image = np.full((HEIGHT, WIDTH, 3), level, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        signal = burst_signal(np.arange(int(seconds * RATE)) / RATE, bursts)
        for start in range(0, len(signal), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal[start:start + 1024][None, :]), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            container.mux(sound.encode(frame))
        container.mux(video.encode())
        container.mux(sound.encode())
    return path, bursts


def rising_edges(series: list, threshold: float, refractory: float = 0.5) -> list[float]:
    """Times (s) at which ``series`` [(ms, value)] first goes above ``threshold``, at most one per ``refractory``."""
    edges: list[float] = []
    below = True
    for ms, value in series:
        if value > threshold and below and (not edges or ms / 1000 - edges[-1] > refractory):
            edges.append(ms / 1000)
        below = value <= threshold
    return edges


def sync(args, work: Path) -> dict:
    clip, _ = write_flash_clip(work / "flash.mp4")
    config = {
        "model": {"name": str(tiny_model(work)), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 1, "width": 160, "seed": 0},
        "coherence": {"mode": "independent"},
        "source": {"uri": str(clip), "loop": True},
        "outputs": ["webrtc:"],
        "metrics": {"port": 0},
        "control": {"token": TOKEN},
    }
    path = work / "sync.yaml"
    path.write_text(yaml.safe_dump(config))
    running = Running(path)
    browser, page = open_page(running.url + "/", work / "sync-profile")
    try:
        page.log_in(TOKEN)
        page.wait("!document.getElementById('sound').hidden", "the sound track", timeout=60)
        page.click("#sound")
        time.sleep(args.warmup)
        browser.ws.sock.settimeout(args.sync_seconds + 30)  # the evaluation answers after it
        got = browser.call("Runtime.evaluate", expression=SYNC % int(args.sync_seconds * 1000), awaitPromise=True,
                           returnByValue=True, userGesture=True, timeout=int(args.sync_seconds * 1000) + 30000)["result"]["value"]
    finally:
        browser.close()
        running.close()
    lights = [v for _, v in got["light"]]
    flashes = rising_edges(got["light"], (min(lights) + max(lights)) / 2)
    bursts = rising_edges(got["loud"], 0.05)
    offsets = []
    for flash in flashes:
        nearest = min(bursts, key=lambda b: abs(b - flash), default=None)
        if nearest is not None and abs(nearest - flash) < 0.45:
            offsets.append(nearest - flash)
    ms = np.array(offsets) * 1000
    frames = np.diff([t for t, _ in got["light"]])
    return {
        "flashes": len(flashes), "bursts": len(bursts), "paired": len(offsets),
        "audio_minus_video_ms": {"p50": round(float(np.percentile(ms, 50)), 1), "p95_abs": round(float(np.percentile(abs(ms), 95)), 1),
                                 "mean": round(float(ms.mean()), 1)} if len(ms) else None,
        "frame_interval_ms_p50": round(float(np.percentile(frames, 50)), 1) if len(frames) else None,
        "offsets_ms": [round(float(v), 1) for v in ms],
    }


class Marker:
    """Draws the counter into each picture and notes (output wall time, capture wall time) per counter."""

    def __init__(self) -> None:
        self.sent: dict[int, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def __call__(self, frame: Frame, seq: int) -> np.ndarray:
        value = seq % (1 << BITS)
        code = (value << CHECK) | (bin(value).count("1") % (1 << CHECK))
        image = frame.image.copy()
        for i in range(BITS + CHECK):
            bit = (code >> (BITS + CHECK - 1 - i)) & 1
            image[:BLOCK, i * BLOCK:(i + 1) * BLOCK] = 255 if bit else 0
        now, mono = time.time(), time.monotonic()
        with self.lock:
            self.sent[value] = (now, now - (mono - frame.captured_at))
        return image


def decode(code: int) -> int | None:
    value, check = code >> CHECK, code & ((1 << CHECK) - 1)
    return value if bin(value).count("1") % (1 << CHECK) == check else None


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ms = np.array(values) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "mean_ms": round(float(ms.mean()), 1)}


def latencies(marks: list, marker: Marker) -> dict:
    out, cap, seen = [], [], set()
    with marker.lock:
        sent = dict(marker.sent)
    for code, page_ms in marks:
        value = decode(int(code))
        if value is None or value in seen or value not in sent:
            continue
        seen.add(value)
        out.append(page_ms / 1000 - sent[value][0])
        cap.append(page_ms / 1000 - sent[value][1])
    return {"output_to_page": percentiles(out), "capture_to_page": percentiles(cap), "frames_read": len(seen),
            "unreadable": sum(1 for code, _ in marks if decode(int(code)) is None)}


def viewer_rates(before: list, after: list) -> list[dict]:
    rates = []
    for a, b in zip(before, after):
        if a is None or b is None:
            rates.append(None)
            continue
        seconds = (b["at"] - a["at"]) / 1000
        rates.append({"fps": round((b["frames"] - a["frames"]) / seconds, 2),
                      "bytes_per_s": round((b["bytes"] - a["bytes"]) / seconds), "state": b["state"]})
    return rates


def mjpeg(url: str, seconds: float) -> dict:
    """Bytes and frames per second of /stream.mjpg, read as fast as it comes."""
    total, parts = 0, 0
    with urllib.request.urlopen(url, timeout=10) as response:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            chunk = response.read1(65536)
            if not chunk:
                break
            total += len(chunk)
            parts += chunk.count(b"--streamdreamframe")
        elapsed = time.monotonic() - start
    return {"bytes_per_s": round(total / elapsed), "fps": round(parts / elapsed, 2)}


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="webrtc-view-"))
    preview_port = free_port()
    config = {
        "model": {"name": str(tiny_model(work)), "layers": "conv2"},
        "dream": {"octaves": 1, "steps": 1, "width": 160, "seed": 0},
        "coherence": {"mode": "independent"},
        "source": {"uri": f"demo?live=1&width={WIDTH}&height={HEIGHT}&fps={FPS}"},
        "outputs": ["webrtc:", f"preview:127.0.0.1:{preview_port}"],
        "metrics": {"port": 0},
        "control": {"token": TOKEN},
    }
    path = work / "webrtc.yaml"
    path.write_text(yaml.safe_dump(config))
    marker = Marker()
    webrtc.hub().marker = marker
    running = Running(path)
    browser, page = open_page(running.url + "/", work / "profile", height=900)
    results: dict = {}
    try:
        page.log_in(TOKEN)
        page.wait("webrtc !== null && webrtc.connectionState === 'connected'", "the WebRTC connection", timeout=60)
        page.wait("document.getElementById('video').videoWidth > 0", "the first picture", timeout=60)
        time.sleep(args.warmup)
        def watch() -> dict:
            """``args.seconds`` of the page's viewers: latency marks, per-viewer rates, encodes, daemon CPU."""
            page.js(WATCH)
            before, cpu0, t0, enc0 = page.js(STATS), cpu(), time.monotonic(), webrtc.hub().frames_encoded
            time.sleep(args.seconds)
            after, cpu1, t1, enc1 = page.js(STATS), cpu(), time.monotonic(), webrtc.hub().frames_encoded
            return {"latency": latencies(page.js("window.marks.splice(0)"), marker), "viewers": viewer_rates(before, after),
                    "encoded_fps": round((enc1 - enc0) / (t1 - t0), 2), "daemon_cpu_s_per_s": round((cpu1 - cpu0) / (t1 - t0), 2)}

        # 1. one WebRTC viewer
        results["one_viewer"] = watch()
        # 2. one MJPEG viewer of the same pictures, no WebRTC viewer meanwhile
        page.js("webrtc.close(), true")
        wait_for(lambda: webrtc.hub().viewers == 0, 30, "the WebRTC viewer to leave")
        cpu0, t0 = cpu(), time.monotonic()
        results["mjpeg"] = mjpeg(f"http://127.0.0.1:{preview_port}/stream.mjpg", args.seconds)
        results["mjpeg"]["daemon_cpu_s_per_s"] = round((cpu() - cpu0) / (time.monotonic() - t0), 2)
        # 3. five WebRTC viewers at once: the page's own again, and four more
        page.js("watchWebRtc(), true")
        page.wait("webrtc !== null && webrtc.connectionState === 'connected'", "the WebRTC connection again", timeout=60)
        assert page.js(MORE_VIEWERS % (args.viewers - 1)) == args.viewers - 1
        wait_for(lambda: all(v and v["frames"] > 0 for v in page.js(STATS)), 60, "frames at every viewer")
        time.sleep(args.warmup)
        five = watch()
        results["five_viewers"] = {"viewers_gauge": running.metrics()["streamdream_webrtc_viewers"],
                                   "latency_first_viewer": five.pop("latency"), **five}
        browser.screenshot()
    finally:
        browser.close()
        running.close()
        webrtc.hub().marker = None
    one = results["one_viewer"]["viewers"][0]["bytes_per_s"]
    results["webrtc_bytes_vs_mjpeg"] = round(one / results["mjpeg"]["bytes_per_s"], 3)
    if args.sync_seconds > 0:
        results["sound_and_picture"] = sync(args, work)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds each phase measures")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each phase measures")
    parser.add_argument("--sync-seconds", type=float, default=20.0, help="seconds of flashes and bursts (0: skip)")
    parser.add_argument("--viewers", type=int, default=5, help="WebRTC viewers at once in the last phase")
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    results = run(args)
    report = {
        "command": "python benchmarks/webrtc_view.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "setup": {"size": f"{WIDTH}x{HEIGHT}", "source_fps": FPS, "bitrate": webrtc.DEFAULT_BITRATE, "codec": "VP8 (libvpx realtime)",
                  "mjpeg_quality": 80, "seconds": args.seconds},
        **results,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
