"""Publish to an RTSP server (``rtsp://``, RTSP muxer over TCP) or an RTMP server
(``rtmp://``, FLV), H.264 tuned for latency: ultrafast, zerolatency, no B-frames, a
keyframe every second so a viewer joining late waits at most a second.

The connection is made in ``open(info)`` (stream size = ``info`` size padded to even;
frames of another size are resized), so a refused URL fails before any dreaming.
Timestamps start at 0 with the first frame and follow ``frame.pts`` (or the capture clock
when a live frame has none).

Dead servers: FFmpeg's RTSP muxer takes a socket timeout, but its RTMP client takes none,
PyAV gives output containers no interrupt callback, and PyAV holds the GIL while it
connects. So (1) before an RTMP connect, ``probe_rtmp`` checks with a Python socket and a
timeout that the server answers the RTMP handshake; (2) a ``SocketWatchdog`` guards every
mux (which runs without the GIL): past the deadline it shuts down this process's sockets
to that server, so the stuck FFmpeg call returns an error instead of hanging; (3) after a
failure the sockets are shut down before the trailer is written, so ``close`` can't hang.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from fractions import Fraction
from urllib.parse import urlsplit

import av

from ..config import OutputConfig
from ..errors import SinkError
from ..frames import Frame, SourceInfo
from ..log import redact_url
from ..runtime.workers import POLL, Worker, Workers
from .base import Sink
from .file import DEFAULT_FPS, EncoderSettings, PtsClock, VideoEncoder
from .kind import OpenContext, SinkKind
from .uri import ParsedOutput

log = logging.getLogger(__name__)

IO_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}


class SocketWatchdog(Worker):
    """Shuts down sockets to (host, port) when a guarded call outlives its deadline.

    It watches until ``stop_watching()``, even after the stop event: the sink's close,
    which it guards too, comes after that.
    """

    drains = True

    def __init__(self, host: str, port: int, timeout: float, workers: Workers) -> None:
        super().__init__("publish-watchdog")
        self.timeout = timeout
        self.fired = False
        try:
            self._addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        except OSError:
            self._addresses = set()
        self._port = port
        self._deadline: float | None = None
        self._cond = threading.Condition()
        self._stopped = False
        workers.start(self)

    @contextmanager
    def guard(self) -> Iterator[None]:
        with self._cond:
            self._deadline = time.monotonic() + self.timeout
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._deadline = None

    def stop_watching(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=1.0)

    def step(self) -> bool:
        with self._cond:
            if self._stopped:
                return False
            left = POLL if self._deadline is None else self._deadline - time.monotonic()
            if left > 0:
                self._cond.wait(min(left, POLL))
                return True
            self._deadline = None
            self.fired = True
        log.warning("no answer from the server within %.1f s: dropping the connection", self.timeout)
        self.shutdown_sockets()
        return True

    def shutdown_sockets(self) -> None:
        fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
        for name in os.listdir(fd_dir):
            try:
                fd = int(name)
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    continue
                sock = socket.socket(fileno=os.dup(fd))
            except (ValueError, OSError):
                continue
            try:  # a Unix socket's peer name is a string (often empty): only TCP peers are ours
                peer = sock.getpeername() if sock.family in (socket.AF_INET, socket.AF_INET6) else None
                if peer is not None and peer[0] in self._addresses and peer[1] == self._port:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.close()  # closes our duplicate only


def probe_rtmp(host: str, port: int, timeout: float, tls: bool = False) -> None:
    """Raise OSError unless (host, port) answers an RTMP handshake (C0+C1 -> S0) in time;
    for RTMPS only that it accepts a connection (the handshake would need TLS first)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if tls:
            return
        sock.settimeout(timeout)
        sock.sendall(b"\x03" + bytes(8) + os.urandom(1528))
        s0 = sock.recv(1)
        if s0 != b"\x03":
            raise ConnectionError(f"not an RTMP server (handshake answer {s0!r})")


class PublishSink:
    """Publish H.264 to ``rtsp://`` or ``rtmp://`` (see module docstring)."""

    def __init__(self, config: OutputConfig, io_timeout: float = IO_TIMEOUT_S, *, workers: Workers) -> None:
        self.uri = config.uri
        self._workers = workers
        self.safe_uri = redact_url(config.uri)
        parts = urlsplit(config.uri)
        self.scheme = parts.scheme.lower()
        if self.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise SinkError(f"output {self.safe_uri}: expected rtsp://HOST[:PORT]/PATH or rtmp://HOST[:PORT]/APP/KEY")
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[self.scheme]
        self.format = "rtsp" if self.scheme.startswith("rtsp") else "flv"
        self.settings = EncoderSettings.from_config(config, "libx264", live=True)  # checks codec early
        self.io_timeout = io_timeout
        self.name = f"publish:{self.safe_uri}"
        self.frames_written = 0
        self._container: av.container.OutputContainer | None = None
        self._video: VideoEncoder | None = None
        self._clock: PtsClock | None = None
        self._watchdog: SocketWatchdog | None = None
        self._failed = False
        self._closed = False

    def open(self, info: SourceInfo) -> None:
        fps = Fraction(info.fps) if info.fps else DEFAULT_FPS
        # A keyframe a second: a viewer who joins late waits at most that long.
        settings = replace(self.settings, gop=self.settings.gop or max(1, round(fps)))
        self._clock = PtsClock(fps, relative=True)
        self._watchdog = SocketWatchdog(self.host, self.port, self.io_timeout, self._workers)
        options = {"flush_packets": "1"}
        if self.format == "rtsp":
            options.update({"rtsp_transport": "tcp", "timeout": str(int(self.io_timeout * 1_000_000))})
        else:
            options["flvflags"] = "no_duration_filesize"
        started = time.monotonic()
        try:
            if self.format == "flv":
                probe_rtmp(self.host, self.port, self.io_timeout, tls=self.scheme == "rtmps")
            with self._watchdog.guard():
                self._container = av.open(self.uri, "w", format=self.format, options=options)
                self._video = VideoEncoder(self._container, settings, info.width, info.height, fps)
                self._container.start_encoding()  # connects and announces the stream now
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abort()
            raise self._error("cannot publish to", exc, time.monotonic() - started) from exc
        log.info("publishing %dx%d to %s", self._video.width, self._video.height, self.safe_uri)

    def write(self, frame: Frame) -> None:
        if self._container is None or self._video is None or self._closed:
            raise SinkError(f"{self.safe_uri}: write() before open() or after close()")
        assert self._clock is not None and self._watchdog is not None
        try:
            packets = self._video.encode(frame.image, self._clock.ticks(frame))
            with self._watchdog.guard():
                self._container.mux(packets)
        except (av.FFmpegError, OSError) as exc:
            self._failed = True
            packets = []  # a packet holds its stream: the error's traceback keeps this frame, not the encoder
            raise self._error("lost the connection to", exc) from exc
        self.frames_written += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        error: BaseException | None = None
        try:
            if self._container is not None and self._video is not None and not self._failed:
                assert self._watchdog is not None
                with self._watchdog.guard():
                    self._container.mux(self._video.flush())
        except (av.FFmpegError, OSError) as exc:
            error = exc
        finally:
            self._abort()
        if self.frames_written:  # a connection that never took a frame was already reported
            log.info("stopped publishing to %s after %d frames", self.safe_uri, self.frames_written)
        if error is not None and not self._failed:
            raise self._error("could not finish publishing to", error) from error

    # --- helpers --------------------------------------------------------------------------

    def _abort(self) -> None:
        """Close the container (trailer / RTSP TEARDOWN) and the watchdog, whatever happens."""
        container, self._container = self._container, None
        self._video = None  # its encoder threads end with it, not when this sink is collected
        try:
            if container is not None and self._watchdog is not None and (self._failed or self._watchdog.fired):
                self._watchdog.shutdown_sockets()  # the trailer must not wait on a dead server
        finally:
            try:
                if container is not None:  # closed whatever happened above: else its socket and encoder stay
                    self._close_container(container)
            finally:
                if self._watchdog is not None:
                    self._watchdog.stop_watching()  # its thread must end whatever happened

    def _close_container(self, container: av.container.OutputContainer) -> None:
        try:
            if self._watchdog is not None:
                with self._watchdog.guard():
                    container.close()
            else:
                container.close()
        except Exception as exc:  # a dead connection's trailer fails; the socket is closed all the same
            log.debug("closing %s: %r", self.safe_uri, exc)

    def _error(self, what: str, exc: BaseException, elapsed: float = 0.0) -> SinkError:
        reason = redact_url(str(exc))
        # FFmpeg reports its RTSP socket timeout as "Invalid data": judge by the clock too.
        if (self._watchdog is not None and self._watchdog.fired) or elapsed >= 0.9 * self.io_timeout:
            reason = f"no answer within {self.io_timeout:g} s ({reason})"
        elif isinstance(exc, (TimeoutError, socket.timeout)):
            reason = f"no answer within {self.io_timeout:g} s: is the server alive? ({reason})"
        elif isinstance(exc, ConnectionRefusedError) or "refused" in reason.lower():
            reason = f"connection refused: is the server running and listening on port {self.port}? ({reason})"
        return SinkError(f"{what} {self.safe_uri}: {reason}")


PUBLISH_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps")


def parse(uri: str, display: str) -> ParsedOutput | None:
    scheme, _, rest = uri.partition(":")
    if scheme.lower() not in PUBLISH_SCHEMES or not rest.startswith("//"):
        return None
    parts = urlsplit(uri)
    port = f":{parts.port}" if parts.port else ""
    return ParsedOutput("publish", uri, display, live=True, label=f"{parts.scheme.lower()}://{parts.hostname}{port}")


def open_publish(parsed: ParsedOutput, config: OutputConfig, context: OpenContext) -> Sink:
    return PublishSink(config, workers=context.workers)


KIND = SinkKind(name="publish", forms="rtsp://HOST[:PORT]/PATH, rtmp://HOST[:PORT]/APP/KEY", parse=parse, open=open_publish)
