"""The HTTP stack's cost: /metrics latency while 50 browsers watch the preview, old stack vs new.

    python benchmarks/http_stack.py --clients 50 --requests 400 --rounds 2

Both stacks run side by side in one run, alternating (old, new, old, new, ...). For each
round a server process (as under ``streamdream serve``: the service server with /metrics
and the preview sink, in one process) is fed 640x480 frames at 25 fps; a client process
keeps ``--clients`` MJPEG streams open and reads them; then ``--requests`` sequential
``GET /metrics`` (a new connection each, as a scraper without keep-alive) are timed.

The old stack (``http.server`` threads) is the code of commit ``--old-ref`` (before the
move to aiohttp), taken from git into a temporary folder with its imports pointed at the
installed package; nothing of it stays in the package.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_REF = "fba8f91"
OLD_FILES = {"old_http.py": "streamdream/service/http.py", "old_preview.py": "streamdream/sinks/preview.py"}
IMPORTS = {
    "from ..config import": "from streamdream.config import", "from ..errors import": "from streamdream.errors import",
    "from ..frames import": "from streamdream.frames import", "from .health import": "from streamdream.service.health import",
    "from .metrics import": "from streamdream.service.metrics import",
}  # fmt: skip


def extract_old(ref: str, folder: Path) -> None:
    for name, path in OLD_FILES.items():
        text = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        for old, new in IMPORTS.items():
            text = text.replace(old, new)
        (folder / name).write_text(text)


# --- the server process ------------------------------------------------------------------------


def serve(stack: str, old_folder: str | None) -> None:
    import numpy as np

    from streamdream.config import HealthConfig, MetricsConfig
    from streamdream.frames import Frame, SourceInfo
    from streamdream.runtime.workers import Workers
    from streamdream.service.health import HealthMonitor
    from streamdream.service.metrics import PrometheusObserver

    if stack == "old":
        sys.path.insert(0, old_folder)
        from old_http import ServiceServer  # type: ignore[import-not-found]
        from old_preview import PreviewSink  # type: ignore[import-not-found]
    else:
        from streamdream.service.http import ServiceServer
        from streamdream.sinks.preview import PreviewSink
    metrics = PrometheusObserver(model="efficientnet_lite0")
    server = ServiceServer(MetricsConfig(port=0), metrics=metrics, health=HealthMonitor(HealthConfig()))
    owner = Workers(name="bench")  # the servers' loop thread, joined at the end
    if stack == "old":  # the old stack made an owner of its own
        server.start()
        preview = PreviewSink("127.0.0.1", 0)
    else:
        server.start(owner)
        preview = PreviewSink("127.0.0.1", 0, workers=owner)
    preview.open(SourceInfo(uri="bench", width=640, height=480, fps=None, live=True))
    stop = threading.Event()
    rng = np.random.default_rng(0)
    base = (rng.random((480, 640, 3)) * 255).astype(np.uint8)

    def feed() -> None:
        i = 0
        while not stop.is_set():
            preview.write(Frame(image=np.roll(base, i * 7, axis=1), index=i))
            metrics.frame_done("write")
            metrics.stage_time("dream", 0.05)
            i += 1
            stop.wait(0.04)

    threading.Thread(target=feed, daemon=True).start()
    print(json.dumps({"metrics": server.port, "preview": preview.port}), flush=True)
    sys.stdin.read()  # until the driver closes our stdin
    stop.set()
    preview.close()
    server.shutdown()
    owner.close()


# --- the preview clients ------------------------------------------------------------------------


def watch(port: int, clients: int) -> None:
    """Keep ``clients`` MJPEG streams open and read them: prints ``ready`` once every stream has
    sent data, then the bytes read after that when stdin closes."""
    selector = selectors.DefaultSelector()
    request = f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    for _ in range(clients):  # connect all at once: a small listen backlog retries some (as browsers would)
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE)
    streaming: set[socket.socket] = set()
    total, ready = 0, False
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    deadline = time.monotonic() + 60
    while not done.is_set():
        for key, events in selector.select(timeout=0.2):
            sock = key.fileobj
            if events & selectors.EVENT_WRITE:
                sock.sendall(request)
                selector.modify(sock, selectors.EVENT_READ)
                continue
            try:
                got = len(sock.recv(1 << 16))
            except (BlockingIOError, ConnectionError):
                continue
            streaming.add(sock)
            total += got if ready else 0
        if not ready and (len(streaming) == clients or time.monotonic() > deadline):
            ready = True
            print(json.dumps({"ready": len(streaming)}), flush=True)
    print(json.dumps({"bytes": total}), flush=True)


# --- the driver -------------------------------------------------------------------------------


def one_round(stack: str, old_folder: str, clients: int, requests: int) -> dict:
    me = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen(me + ["--serve", stack, "--old-folder", old_folder], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    ports = json.loads(server.stdout.readline())
    watchers = subprocess.Popen(me + ["--watch", str(ports["preview"]), "--clients", str(clients)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    streams = json.loads(watchers.stdout.readline())["ready"]  # every stream connected and flowing
    time.sleep(1.0)
    import urllib.request

    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        t = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=30) as response:
            response.read()
        latencies.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - started
    streamed = json.loads(watchers.communicate("", timeout=30)[0])["bytes"]
    server.communicate("", timeout=30)
    q = statistics.quantiles(latencies, n=100)
    return {"stack": stack, "p50_ms": round(statistics.median(latencies), 2), "p95_ms": round(q[94], 2),
            "max_ms": round(max(latencies), 2), "preview_mb_per_s": round(streamed / elapsed / 1e6, 1),
            "streams": streams}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--old-ref", default=OLD_REF)
    parser.add_argument("--serve", choices=["old", "new"], help=argparse.SUPPRESS)
    parser.add_argument("--old-folder", help=argparse.SUPPRESS)
    parser.add_argument("--watch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.old_folder)
    if args.watch:
        return watch(args.watch, args.clients)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as folder:
        extract_old(args.old_ref, Path(folder))
        results = [one_round(stack, folder, args.clients, args.requests) for _ in range(args.rounds) for stack in ("old", "new")]
    summary = {}
    for stack in ("old", "new"):
        rows = [r for r in results if r["stack"] == stack]
        summary[stack] = {key: round(statistics.median(r[key] for r in rows), 2) for key in rows[0] if key != "stack"}
    if args.json:
        print(json.dumps({"rounds": results, "median": summary}, indent=2))
        return
    print(f"/metrics latency with {args.clients} preview clients, {args.requests} requests x {args.rounds} rounds each")
    print("| stack | p50 | p95 | max | preview streams | preview MB/s |\n| --- | --- | --- | --- | --- | --- |")
    for stack, label in (("old", f"http.server threads ({args.old_ref})"), ("new", "aiohttp")):
        s = summary[stack]
        print(f"| {label} | {s['p50_ms']} ms | {s['p95_ms']} ms | {s['max_ms']} ms | {s['streams']:g} | {s['preview_mb_per_s']} |")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    main()
