"""A browser preview: ``preview[:[HOST:]PORT]`` serves MJPEG over HTTP.

``/`` is a page showing the stream full-window; ``/stream.mjpg`` is
multipart/x-mixed-replace JPEG; ``/snapshot.jpg`` the latest frame. Binds 127.0.0.1:8080
unless told otherwise; port 0 picks a free port (see ``sink.url`` after ``open``).

It runs on the hardened server of ``streamdream/web`` (connection cap, timeouts, the
``Host`` allow-list), in its own event-loop thread. ``write`` only swaps in the latest
frame and wakes that loop, so no client can slow the pipeline. Each frame is
JPEG-encoded at most once, off the loop, and only while someone watches; every client
always gets the newest frame (a slow one skips frames) and a client that stops reading
is dropped after ``SEND_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import cv2
import numpy as np
from aiohttp import web

from ..config import OutputConfig
from ..errors import SinkError, StreamdreamError
from ..frames import Frame, SourceInfo
from ..runtime.newest import Newest
from ..runtime.workers import Workers
from ..web.binding import check_listen, port_number
from ..web.server import Limits, WebServer, run_blocking, text_response
from .base import Sink
from .kind import CheckContext, OpenContext, SinkKind, prefixed
from .uri import ParsedOutput

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
JPEG_QUALITY = 80
SEND_TIMEOUT_S = 10.0
MAX_CLIENTS = 128
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
    port = port_number(port_text)
    if port is None:
        raise SinkError(f"output {uri!r}: the port must be 0..65535 (0: any free port), got {port_text!r}")
    return host or DEFAULT_HOST, port


class LatestFrame:
    """The newest frame and its JPEG, shared by all clients; encoded at most once per frame."""

    def __init__(self, quality: int = JPEG_QUALITY) -> None:
        self.quality = quality
        self.encoded = 0
        self._lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] = (0, b"")

    @property
    def seq(self) -> int:
        return self._seq

    def put(self, image: np.ndarray) -> None:
        with self._lock:
            self._image, self._seq = image, self._seq + 1

    def jpeg(self) -> tuple[int, bytes] | None:
        """(seq, JPEG) of the newest frame, encoding it if nobody has yet; None before the first."""
        with self._lock:
            image, seq = self._image, self._seq
            if image is None:
                return None
            if self._jpeg[0] == seq:
                return self._jpeg
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("cv2.imencode failed")
        with self._lock:
            if self._jpeg[0] < seq:
                self._jpeg = (seq, buffer.tobytes())
                self.encoded += 1
            return self._jpeg


class _Broadcast(Newest[bytes]):
    """On the server's loop: encodes the newest frame once per frame while clients watch, and
    hands every client the same multipart bytes through one shared future (no task or copy per client)."""

    def __init__(self, frames: LatestFrame) -> None:
        super().__init__()  # latest: (seq, one multipart part: head, JPEG, CRLF)
        self.frames = frames
        self.clients = 0
        self._encoding = False

    def frame_arrived(self) -> None:
        if self.clients and not self._encoding and not self.stopped:
            self._encoding = True
            asyncio.get_running_loop().create_task(self._encode())

    async def _encode(self) -> None:
        try:
            while self.clients and not self.stopped:
                got = await run_blocking(self.frames.jpeg)
                if got is not None and (self.latest is None or got[0] > self.latest[0]):
                    seq, jpeg = got
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    self.publish(seq, head.encode("ascii") + jpeg + b"\r\n")
                if got is None or got[0] >= self.frames.seq:
                    break  # no newer frame came in while encoding
        finally:
            self._encoding = False


class PreviewSink:
    """Serve the frames as MJPEG to browsers (see module docstring)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, quality: int = JPEG_QUALITY, *,
                 workers: Workers) -> None:  # fmt: skip
        self.host, self.port = host, port
        self._workers = workers  # whose tree the HTTP thread joins
        self.name = f"preview:{host}:{port}"
        self.frames = LatestFrame(quality)
        self.frames_written = 0
        self._broadcast = _Broadcast(self.frames)
        self._server: WebServer | None = None

    @classmethod
    def from_uri(cls, uri: str, workers: Workers) -> PreviewSink:
        return cls(*parse_preview_uri(uri), workers=workers)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def clients(self) -> int:
        """Clients currently watching /stream.mjpg."""
        return self._broadcast.clients

    def open(self, info: SourceInfo) -> None:
        routes = [
            web.get("/", self._page),
            web.get("/index.html", self._page),
            web.get("/snapshot.jpg", self._snapshot),
            web.get("/stream.mjpg", self._stream),
            web.route("*", "/{tail:.*}", self._not_found),
        ]
        limits = Limits(max_connections=MAX_CLIENTS, send_timeout=SEND_TIMEOUT_S, max_body=1024)
        try:
            self._server = WebServer(routes, self.host, self.port, name="preview", limits=limits,
                                     streaming=("/stream.mjpg",), what="the preview")
        except StreamdreamError as exc:
            raise SinkError(f"{exc} (preview:HOST:PORT, or port 0 for any free one)") from None
        self.port = self._server.port
        self.name = f"preview:{self.host}:{self.port}"
        self._server.start(self._workers)
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the preview at %s is reachable from the network and has no password", self.url)
        log.info("preview at %s", self.url)

    def write(self, frame: Frame) -> None:
        self.frames.put(frame.image)
        self.frames_written += 1
        loop = self._server.loop if self._server is not None else None
        if loop is not None and self._broadcast.clients:
            try:
                loop.call_soon_threadsafe(self._broadcast.frame_arrived)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            if server.loop is not None:
                try:
                    server.loop.call_soon_threadsafe(self._broadcast.stop)
                except RuntimeError:
                    pass
            server.stop()

    # --- HTTP handlers (on the server's loop) -------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"})

    async def _snapshot(self, request: web.Request) -> web.Response:
        got = await run_blocking(self.frames.jpeg)
        if got is None:
            return text_response(503, "no frame yet")
        return web.Response(body=got[1], content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _not_found(self, request: web.Request) -> web.Response:
        return text_response(404, "not found: try / or /stream.mjpg")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-store",
        })  # fmt: skip
        response.force_close()
        broadcast = self._broadcast
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        transport = request.transport
        broadcast.clients += 1
        broadcast.frame_arrived()  # the newest frame at once, not at the next write
        seq = 0
        try:  # the server cancels this task when the client disconnects
            while transport is not None and not transport.is_closing():
                got = await broadcast.after(seq)
                if got is None:
                    break
                seq, part = got
                # a client that stops reading blocks the write: drop it after SEND_TIMEOUT_S
                stalled = loop.call_later(SEND_TIMEOUT_S, transport.abort)
                try:
                    await response.write(part)
                finally:
                    stalled.cancel()
        except ConnectionError as exc:  # client went away, or was dropped for stalling
            log.debug("preview client %s left: %r", request.remote, exc)
        finally:
            broadcast.clients -= 1
        return response


def open_preview(parsed: ParsedOutput, config: OutputConfig, context: OpenContext) -> Sink:
    return PreviewSink.from_uri(config.uri.strip(), workers=context.workers)


def check_preview(parsed: ParsedOutput, config: OutputConfig, context: CheckContext) -> None:
    if context.ports:
        host, port = parse_preview_uri(config.uri)
        check_listen(host, port, f"output {parsed.display}", SinkError)


def preview_port(parsed: ParsedOutput) -> str | None:
    """Two previews may not share a port (0 picks a free one)."""
    try:
        port = parse_preview_uri("preview:" + parsed.rest)[1]
    except SinkError:
        return None
    return f"preview port {port}" if port else None


KIND = SinkKind(
    name="preview", forms="preview, preview:[HOST:]PORT", parse=prefixed("preview", live=True, label=lambda rest, shown: shown),
    open=open_preview, check=check_preview, exclusive=preview_port,
)  # fmt: skip
