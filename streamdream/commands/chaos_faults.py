"""The chaos soak's children and its faults: what `bench --chaos` breaks, and how.

The daemon runs in a child process (``python -m streamdream.cli serve``), so SIGHUP and
SIGSTOP are real signals. Around it, children this module owns:

- ``Respawner``: a command kept running (restarted whenever it ends), that a fault can
  kill and hold down for some seconds, or freeze (SIGSTOP) and thaw (SIGCONT). The live
  source is an ``ffmpeg`` serving a test pattern as MPEG-TS over HTTP (one client, then
  it ends and is restarted); the publish receiver is an ``ffmpeg -rtsp_flags listen``.
- ``SmallDisk``: a tmpfs mounted for the recordings (root only), filled to the last byte
  by a fault and emptied again.

Each fault is a ``Fault``: ``inject()`` does the harm and returns when the harm is over
(the fault's end, from which the recovery is timed), and names the counter that must
move again (``watch``): the source's real frames, one output's frames, or all outputs'.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pythonosc.osc_message_builder import OscMessageBuilder

from ..runtime.workers import POLL, Worker

SOURCE_FPS = 10
SOURCE_SIZE = (160, 120)


class Respawner(Worker):
    """A child command kept running; ``kill(down)`` ends it for ``down`` seconds, ``pause``/``resume`` freeze it."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        super().__init__(name)
        self.argv, self.log_path = argv, log_path
        self.starts = 0
        self._process: subprocess.Popen | None = None
        self._down_until = 0.0
        self._lock = threading.Lock()

    def step(self) -> bool:
        with self._lock:
            running = self._process is not None and self._process.poll() is None
            if not running and time.monotonic() >= self._down_until:
                self._reap()
                with open(self.log_path, "ab") as log_file:
                    self._process = subprocess.Popen(
                        self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file
                    )
                self.starts += 1
        self.stop.wait(POLL)
        return True

    def kill(self, down: float) -> None:
        with self._lock:
            self._down_until = time.monotonic() + down
            self._reap(kill=True)

    def signal(self, signum: int) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.send_signal(signum)

    def _reap(self, kill: bool = False) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if kill and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen child must run to die cleanly
            process.kill()
        process.wait(timeout=10)

    def end(self) -> None:
        with self._lock:
            self._reap(kill=True)


def source_server(port: int, log_path: Path) -> Respawner:
    """A live test pattern, H.264 in MPEG-TS, served to one HTTP client at a time."""
    width, height = SOURCE_SIZE
    return Respawner("chaos-source", [
        "ffmpeg", "-nostdin", "-loglevel", "warning", "-re", "-f", "lavfi",
        "-i", f"testsrc2=size={width}x{height}:rate={SOURCE_FPS}",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(SOURCE_FPS),
        "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/live.ts",
    ], log_path)  # fmt: skip


def publish_receiver(port: int, log_path: Path) -> Respawner:
    """An RTSP receiver that takes the daemon's publish and throws it away."""
    return Respawner("chaos-receiver", [
        "ffmpeg", "-nostdin", "-loglevel", "warning", "-rtsp_flags", "listen",
        "-i", f"rtsp://127.0.0.1:{port}/chaos", "-f", "null", "-",
    ], log_path)  # fmt: skip


class SmallDisk:
    """A tmpfs of ``mib`` MiB for the recordings; ``fill()`` takes its last byte, ``empty()`` gives it back."""

    def __init__(self, path: Path, mib: int) -> None:
        self.path = path
        self.mib = mib
        self.error: str | None = None
        path.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)], capture_output=True, text=True)
        if made.returncode != 0:
            self.error = made.stderr.strip() or f"mount exited {made.returncode}"
        self.mounted = made.returncode == 0
        self._filler = path / "chaos-filler.bin"

    def fill(self) -> int:
        """Write zeros until the disk is full (bounded by its size); the bytes written."""
        written = 0
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):  # whole MiBs, then the last blocks
                for _ in range(self.mib + 64 if size == 1 << 20 else 64):
                    try:
                        written += os.write(fd, b"\0" * size)
                    except OSError:
                        break
        finally:
            os.close(fd)
        return written

    def empty(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._filler.unlink()

    def unmount(self) -> None:
        self.empty()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False


# --- the bad reloads --------------------------------------------------------------------------

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)


def bad_configs(good: dict[str, Any]) -> dict[str, str]:
    """Each kind of bad reload: the file's whole text (``reload_truncated`` is the good file, written in two halves)."""

    def dump(**sections: dict[str, Any]) -> str:
        data = copy.deepcopy(good)
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        return yaml.safe_dump(data, sort_keys=False)

    return {
        "reload_empty": "",
        "reload_deep": "source: " + "[" * 5000 + "]" * 5000 + "\n",
        "reload_alias_bomb": ALIAS_BOMB,
        "reload_bad_guide": dump(dream={"guide": "/nonexistent/chaos-guide.png"}),
        "reload_unknown_model": dump(model={"name": "no_such_model_chaos"}),
        "reload_truncated": dump(),
    }


@dataclass
class Fault:
    """One kind of fault: ``inject()`` returns when the harm is over; ``watch`` says what must flow again."""

    kind: str
    inject: Callable[[], dict]
    watch: str  # "real" (the source's own frames), "outputs" (every output), or an output's label part


def osc_garbage(port: int, rng: random.Random, count: int = 60) -> dict:
    """Random bytes, cut-off and ill-typed OSC messages, unknown addresses: ``count`` datagrams."""
    good = OscMessageBuilder("/streamdream/strength")
    good.add_arg(1.0)
    valid = good.build().dgram
    wrong_type = OscMessageBuilder("/streamdream/strength")
    wrong_type.add_arg("loud")
    unknown = OscMessageBuilder("/streamdream/" + "x" * 200)
    unknown.add_arg(1.0)
    shapes: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randint(1, 1400)),
        lambda: valid[: rng.randint(1, len(valid) - 1)],
        lambda: wrong_type.build().dgram,
        lambda: unknown.build().dgram,
        lambda: b"#bundle\0" + rng.randbytes(rng.randint(0, 64)),
        lambda: b"/streamdream/layer/" + b"\xff" * 40 + b"\0\0,f\0\0" + b"\x7f\xc0\0\0",
    ]
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            sock.sendto(shapes[i % len(shapes)](), ("127.0.0.1", port))
            sent += 1
            time.sleep(0.005)
    return {"datagrams": sent}


def osc_message(port: int, address: str, value: float) -> None:
    """One good OSC message."""
    builder = OscMessageBuilder(address)
    builder.add_arg(value)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(builder.build().dgram, ("127.0.0.1", port))


MALFORMED_REQUESTS = [
    b"GARBAGE\r\n\r\n",
    b"\x00\xff\xfe\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello on a plain port
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n",
    b"POST /api/strength HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n",
    b'POST /api/strength HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"va',
    b"GET /metrics HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 500 + b"\r\n",
    b"G\rE\nT / HTTP/1.1\r\n\r\n",
]


def malformed_http(port: int, timeout: float = 2.0) -> dict:
    """Each malformed request on its own connection; counts the answers (a 4xx) and the closes."""
    answers: dict[str, int] = {}
    for raw in MALFORMED_REQUESTS:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            try:
                sock.sendall(raw)
                sock.shutdown(socket.SHUT_WR)
                head = sock.recv(64)
            except OSError:
                head = b""
        status = head.split(b" ")[1].decode("ascii", "replace") if head.startswith(b"HTTP/") and b" " in head else "closed"
        answers[status] = answers.get(status, 0) + 1
    return {"answers": answers}


def idle_connections(port: int, count: int, hold: float, probe: Callable[[], int | None]) -> dict:
    """Open ``count`` connections that send nothing, hold them ``hold`` s, probing /healthz meanwhile."""
    socks: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(count):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=2.0))
            except OSError:
                refused += 1
        statuses = []
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline:
            statuses.append(probe())
            time.sleep(0.5)
    finally:
        for sock in socks:
            sock.close()
    return {"opened": len(socks), "refused": refused, "healthz_during": statuses}


def sighup_storm(pid: int, count: int = 40, every: float = 0.02) -> dict:
    for _ in range(count):
        os.kill(pid, signal.SIGHUP)
        time.sleep(every)
    return {"signals": count}
