"""A browser preview: ``preview[:[HOST:]PORT]`` serves MJPEG over HTTP.

``/`` is a page showing the stream full-window; ``/stream.mjpg`` is
multipart/x-mixed-replace JPEG; ``/snapshot.jpg`` the latest frame. Binds 127.0.0.1:8080
unless told otherwise; port 0 picks a free port (see ``sink.url`` after ``open``).

``write`` only swaps in the latest frame under a lock, so no client can slow the pipeline.
Each frame is JPEG-encoded at most once, by the first client that needs it, and shared;
each client always gets the newest frame (a slow one skips frames) and a client that
stops reading is dropped after ``SEND_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from ..errors import SinkError
from ..frames import Frame, SourceInfo

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
JPEG_QUALITY = 80
SEND_TIMEOUT_S = 10.0
BOUNDARY = "streamdreamframe"
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>streamdream</title>
<style>html,body{margin:0;height:100%;background:#000;overflow:hidden}
img{display:block;width:100vw;height:100vh;object-fit:contain}</style></head>
<body><img src="/stream.mjpg" alt="streamdream"></body></html>
"""


def parse_preview_uri(uri: str) -> tuple[str, int]:
    """'preview' -> (127.0.0.1, 8080); 'preview:9000'; 'preview:0.0.0.0:9000'; 'preview:[::1]:9000'."""
    rest = uri.partition(":")[2].strip()
    host, port_text = DEFAULT_HOST, str(DEFAULT_PORT)
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, after = rest[1:].partition("]")
        port_text = after.lstrip(":") or port_text
    elif ":" in rest:
        host, _, port_text = rest.rpartition(":")
    elif rest:
        port_text = rest
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise SinkError(f"output {uri!r}: the port must be 0..65535 (0: any free port), got {port_text!r}") from None
    return host or DEFAULT_HOST, port


class LatestFrame:
    """The newest frame and its JPEG, shared by all clients; encoded at most once per frame."""

    def __init__(self, quality: int = JPEG_QUALITY) -> None:
        self.quality = quality
        self.stopped = False
        self.encoded = 0
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._encode_lock = threading.Lock()
        self._jpeg: tuple[int, bytes] = (0, b"")

    def put(self, image: np.ndarray) -> None:
        with self._cond:
            self._image, self._seq = image, self._seq + 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def newer_than(self, seq: int, timeout: float) -> tuple[int, bytes] | None:
        """Wait up to ``timeout`` for a frame after ``seq``; (its seq, its JPEG) or None."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seq or self.stopped, timeout)
            if self.stopped or self._seq <= seq or self._image is None:
                return None
            image, current = self._image, self._seq
        return current, self._jpeg_of(current, image)

    def latest(self) -> bytes | None:
        with self._cond:
            image, current = self._image, self._seq
        return None if image is None else self._jpeg_of(current, image)

    def _jpeg_of(self, seq: int, image: np.ndarray) -> bytes:
        with self._encode_lock:
            if self._jpeg[0] < seq:
                bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
                ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if not ok:
                    raise RuntimeError("cv2.imencode failed")
                self._jpeg = (seq, buffer.tobytes())
                self.encoded += 1
            return self._jpeg[1]


class _Handler(BaseHTTPRequestHandler):
    server: _PreviewServer
    timeout = SEND_TIMEOUT_S  # a client that stops reading fails its send and is dropped
    server_version = "streamdream-preview"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE)
        elif path == "/snapshot.jpg":
            jpeg = self.server.frames.latest()
            if jpeg is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
            else:
                self._send(HTTPStatus.OK, "image/jpeg", jpeg)
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found: try / or /stream.mjpg\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        frames = self.server.frames
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.server.client_joined()
        seq = 0
        try:
            while not frames.stopped:
                got = frames.newer_than(seq, timeout=0.5)
                if got is None:
                    if self._client_gone():
                        break
                    continue
                seq, jpeg = got
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode("ascii") + jpeg + b"\r\n")
                self.wfile.flush()
        except (ConnectionError, TimeoutError, socket.timeout) as exc:  # client went away or stalled
            log.debug("preview client %s left: %s", self.client_address[0], exc)
        finally:
            self.server.client_left()

    def _client_gone(self) -> bool:
        """True when the client closed its end (seen while no new frame is coming)."""
        try:
            ready, _, _ = select.select([self.connection], [], [], 0)
            return bool(ready) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base signature)
        log.debug("preview %s: " + format, self.client_address[0], *args)


class _PreviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], frames: LatestFrame) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.frames = frames
        self.clients = 0
        self._clients_lock = threading.Lock()
        super().__init__(address, _Handler)

    def client_joined(self) -> None:
        with self._clients_lock:
            self.clients += 1

    def client_left(self) -> None:
        with self._clients_lock:
            self.clients -= 1


class PreviewSink:
    """Serve the frames as MJPEG to browsers (see module docstring)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, quality: int = JPEG_QUALITY) -> None:
        self.host, self.port = host, port
        self.name = f"preview:{host}:{port}"
        self.frames = LatestFrame(quality)
        self.frames_written = 0
        self._server: _PreviewServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_uri(cls, uri: str) -> PreviewSink:
        return cls(*parse_preview_uri(uri))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def clients(self) -> int:
        """Clients currently watching /stream.mjpg."""
        return self._server.clients if self._server is not None else 0

    def open(self, info: SourceInfo) -> None:
        try:
            self._server = _PreviewServer((self.host, self.port), self.frames)
        except OSError as exc:
            raise SinkError(
                f"cannot serve the preview on {self.host}:{self.port}: {exc.strerror or exc}; "
                "choose another port (preview:HOST:PORT, or port 0 for any free one)"
            ) from exc
        self.port = int(self._server.server_address[1])
        self.name = f"preview:{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="preview-http", daemon=True)
        self._thread.start()
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the preview at %s is reachable from the network and has no password", self.url)
        log.info("preview at %s", self.url)

    def write(self, frame: Frame) -> None:
        self.frames.put(frame.image)
        self.frames_written += 1

    def close(self) -> None:
        self.frames.stop()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
