"""A WebRTC output: ``webrtc:`` serves the dream to browsers over WebRTC (aiortc) from the daemon's port.

There is no port of its own: ``streamdream serve`` answers a browser's offer at
``POST /api/webrtc/offer`` on its HTTP port, under the control API's token and same-origin
rules (``service/http.py``), and its control page plays it instead of the JPEG pictures.

The sink only keeps the newest output picture (``write`` never waits for a viewer). The
process's one ``WebRtcHub`` (a watchdog rebuild of the pipeline makes a new sink, not new
viewers) encodes it once per picture, on the HTTP loop's call workers and only while
someone watches, and hands the same VP8 packet to every viewer (``webrtc_media.py``). The
source's sound, where it has one and ``audio`` is not false, is carried as Opus, delayed
by the pictures' own delay through the dream so they arrive together; a source without
sound gets no audio track (no silence is sent). A viewer whose connection fails, closes
or never comes up is closed and forgotten; ``viewers`` counts those left (the
``streamdream_webrtc_viewers`` gauge). ``aiortc`` is the ``webrtc`` extra.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import OutputConfig
from ..errors import SinkError
from ..frames import Frame, SourceInfo
from ..web.server import run_blocking
from .base import Sink
from .kind import CheckContext, OpenContext, SinkKind, prefixed
from .uri import ParsedOutput
from .webrtc_media import AudioFeed, Fanout, OpusEncoder, VideoEncoder

log = logging.getLogger(__name__)

DEFAULT_BITRATE = 1_500_000
MAX_VIEWERS = 16
HEARD_WITHIN_S = 10.0  # a source whose sound came this recently gets an audio track
SLOT_S = 0.02
CLOSE_TIMEOUT = 5.0  # s the output's close waits for its viewers' connections to close
INSTALL = "pip install 'streamdream[webrtc]'"


class ViewerLimit(SinkError):
    """Every viewer slot is taken."""


def parse_bitrate(text: str | None) -> int:
    """'2M' -> 2000000, '800k' -> 800000; None -> the default."""
    if not text:
        return DEFAULT_BITRATE
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(float(text.rstrip("kKmM")) * scale)


class WebRtcHub:
    """The WebRTC output's state for the whole process: the newest picture, the encoders, the viewers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._seq = 0
        self.outputs = 0  # open webrtc sinks: the offer endpoint answers while there is one
        self.bitrate = DEFAULT_BITRATE
        self.audio_wanted = True
        self.feed = AudioFeed()  # the source's audio tap
        self.video = Fanout()
        self.sound = Fanout()
        self.peers: set[Any] = set()  # aiortc RTCPeerConnections, on the HTTP loop
        self.frames_encoded = 0
        self.marker: Callable[[Frame, int], np.ndarray] | None = None  # benchmarks only: the picture with seq drawn in
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_picture: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []

    @property
    def active(self) -> bool:
        return self.outputs > 0

    @property
    def viewers(self) -> int:
        return len(self.peers)

    def state(self) -> dict[str, Any]:
        return {"viewers": self.viewers, "audio": self._has_sound(), "frames_encoded": self.frames_encoded}

    # --- the sink's side (the output worker) --------------------------------------------------

    def put(self, frame: Frame) -> None:
        image = frame.image
        with self._lock:
            self._seq += 1
            if self.marker is not None:
                image = self.marker(frame, self._seq)
            self._image = image
        self.feed.output_latency(time.monotonic() - frame.captured_at)
        loop, event = self._loop, self._new_picture
        if loop is not None and event is not None and self.peers:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _newest(self, after: int) -> tuple[int, np.ndarray] | None:
        with self._lock:
            return (self._seq, self._image) if self._image is not None and self._seq > after else None

    def _has_sound(self) -> bool:
        heard = self.feed.heard
        return self.audio_wanted and heard is not None and time.monotonic() - heard < HEARD_WITHIN_S

    # --- viewers (the HTTP loop) --------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer for a browser's offer; ViewerLimit when full, ValueError for a bad offer."""
        webrtc_peer = _peer_module()
        if len(self.peers) >= MAX_VIEWERS:
            raise ViewerLimit(f"{MAX_VIEWERS} viewers are watching already; try again later")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the first viewer, or the first since the HTTP loop was made anew
            self._loop, self._new_picture, self._tasks = loop, asyncio.Event(), []
            self.video, self.sound = Fanout(), Fanout()
        sound = self.sound if self._has_sound() else None
        pc, sdp = await webrtc_peer.answer(offer_sdp, self.video, sound, self._ended)
        self.peers.add(pc)
        self.video.keyframe_wanted = True
        for fanout in (self.video, self.sound):
            if fanout.stopped:  # the last viewer left a moment ago
                fanout.restart()
        if not any(not t.done() for t in self._tasks):
            self._tasks = [asyncio.ensure_future(self._encode_video()), asyncio.ensure_future(self._encode_sound())]
        log.info("webrtc: a viewer joined (%d watching)%s", len(self.peers), "" if sound else ", without sound")
        return sdp

    async def _ended(self, pc: Any) -> None:
        if pc in self.peers:
            self.peers.discard(pc)
            log.info("webrtc: a viewer left (%d watching)", len(self.peers))
        if not self.peers:
            self.video.stop()
            self.sound.stop()

    @property
    def busy(self) -> bool:
        """Whether a viewer is connected or an encode task is left: something for ``close_all``."""
        return bool(self.peers or self._tasks)

    async def close_all(self) -> None:
        """Close every viewer's connection (the output closed, or the server is stopping)."""
        for pc in list(self.peers):
            await pc.close()
            await self._ended(pc)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # ended, not left pending at exit

    async def _encode_video(self) -> None:
        """Encode the newest picture once per picture while anyone watches."""
        encoder, done = VideoEncoder(self.bitrate), 0
        assert self._new_picture is not None
        while self.peers:
            newest = self._newest(done)
            if newest is None:
                try:
                    await asyncio.wait_for(self._new_picture.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
                self._new_picture.clear()
                continue
            done, image = newest
            keyframe, self.video.keyframe_wanted = self.video.keyframe_wanted, False
            try:
                got = await run_blocking(encoder.encode, image, keyframe)
            except Exception:  # noqa: BLE001 - a frame that fails to encode is skipped, the stream goes on
                log.exception("webrtc: a picture failed to encode")
                continue
            if got is not None:
                self.frames_encoded += 1
                self.video.publish_packet(*got)

    async def _encode_sound(self) -> None:
        """Every 20 ms, on the wall clock, while anyone watches: the source's sound of that moment."""
        encoder: OpusEncoder | None = None
        next_at = time.monotonic()
        while self.peers:
            if self._has_sound():
                encoder = encoder or OpusEncoder()
                for packet in encoder.encode(self.feed.take(next_at)):
                    self.sound.publish_packet(packet, True)
            next_at += SLOT_S
            delay = next_at - time.monotonic()
            if delay < -0.2:  # fell far behind (a busy machine): start again from now
                next_at, delay = time.monotonic(), 0.0
            await asyncio.sleep(max(delay, 0.0))


def _peer_module() -> Any:
    """``webrtc_peer`` (aiortc), loaded when the first viewer comes.

    pylibsrtp's binding carries a static OpenSSL whose symbols it exports; loaded after
    TensorFlow (whose own BoringSSL is global), it would call TensorFlow's functions and
    crash. RTLD_DEEPBIND makes it use its own."""
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | getattr(os, "RTLD_DEEPBIND", 0))
    try:
        from . import webrtc_peer  # noqa: PLC0415 - aiortc is the webrtc extra, loaded with its own symbols first

        return webrtc_peer
    finally:
        sys.setdlopenflags(flags)


_HUB = WebRtcHub()


def hub() -> WebRtcHub:
    """The process's one WebRTC hub (the daemon's HTTP port serves it)."""
    return _HUB


class WebRtcSink:
    """Keeps the newest picture for the hub (see module docstring)."""

    def __init__(self, bitrate: int = DEFAULT_BITRATE, audio: bool = True, shared: WebRtcHub | None = None) -> None:
        self.name = "webrtc"
        self.hub = shared or hub()
        self.bitrate, self.audio = bitrate, audio
        self.frames_written = 0
        self._open = False

    def open(self, info: SourceInfo) -> None:
        self.hub.bitrate, self.hub.audio_wanted = self.bitrate, self.audio
        self.hub.outputs += 1
        self._open = True
        log.info("webrtc output open: viewers connect through the control page (POST /api/webrtc/offer)")

    def write(self, frame: Frame) -> None:
        self.hub.put(frame)
        self.frames_written += 1

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self.hub.outputs -= 1
        loop = self.hub._loop
        if self.hub.outputs == 0 and loop is not None and self.hub.busy:
            try:
                closing = asyncio.run_coroutine_threadsafe(self.hub.close_all(), loop)
            except RuntimeError:  # the loop has ended: so have its connections
                return
            if not _on_loop(loop):  # waited for, so no encode task is left pending at exit
                try:
                    closing.result(timeout=CLOSE_TIMEOUT)
                except (TimeoutError, concurrent.futures.TimeoutError):
                    log.warning("webrtc: the viewers' connections did not close within %g s", CLOSE_TIMEOUT)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def aiortc_missing() -> str | None:
    """Why the WebRTC output cannot run here, or None."""
    if importlib.util.find_spec("aiortc") is None:
        return f"the WebRTC output needs aiortc, which is not installed: {INSTALL}"
    return None


def open_webrtc(parsed: ParsedOutput, config: OutputConfig, context: OpenContext) -> Sink:
    if parsed.rest.strip():
        raise SinkError(f"output {parsed.display!r}: write it as 'webrtc:' (options go in the output's fields: bitrate, audio)")
    return WebRtcSink(parse_bitrate(config.bitrate), config.audio)


def check_webrtc(parsed: ParsedOutput, config: OutputConfig, context: CheckContext) -> None:
    missing = aiortc_missing()
    if missing is not None:
        raise SinkError(f"output {parsed.display!r}: {missing}")
    if context.command != "serve":
        raise SinkError(
            f"output {parsed.display!r}: the WebRTC output is served by the daemon's HTTP port (metrics.port, with the "
            "control page): use it with `streamdream serve`; for `run`, preview:[HOST:]PORT serves MJPEG"
        )


def configured(outputs: tuple[OutputConfig, ...] | list[OutputConfig]) -> bool:
    """Whether any of ``outputs`` is ``webrtc:`` (the daemon then hands the source's sound to the hub)."""
    return any(prefixed("webrtc", live=True)(o.uri.strip(), o.uri) is not None for o in outputs)


KIND = SinkKind(
    name="webrtc", forms="webrtc:", parse=prefixed("webrtc", live=True), open=open_webrtc, check=check_webrtc,
    exclusive=lambda parsed: "the webrtc output",
)  # fmt: skip

__all__ = ["KIND", "MAX_VIEWERS", "ViewerLimit", "WebRtcHub", "WebRtcSink", "configured", "hub"]
