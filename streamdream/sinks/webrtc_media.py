"""The WebRTC output's media, encoded once for every viewer: VP8 video, Opus audio, and their fan-out.

``VideoEncoder`` turns the newest output picture into one VP8 packet (libvpx through PyAV,
realtime, no frame lag, a keyframe on request and at least every ``KEYFRAME_EVERY_S``).
``Fanout`` hands each packet to every viewer's track through one shared future, as
aiortc's ``MediaRelay`` does with frames, but for packets: the encode happens once, however
many viewers there are, and a viewer that missed a packet waits for the next keyframe
(asking for one) instead of showing a broken picture.

``AudioFeed`` is the live source's audio tap (``sources/av_source.py``'s ``AudioTap``): it
places the decoded sound on the arrival clock of the video frames, as the audio-reactive
tap does (``audio/react.py``), and hands it out ``latency`` seconds later, the time the
video frames take from the source to this output (the dream), so the sound leaves with
its own pictures. ``OpusEncoder`` encodes each 20 ms of it once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from ..media import SCALE_THREADS
from ..runtime.newest import Newest

VIDEO_CLOCK = 90000  # RTP's video clock
KEYFRAME_EVERY_S = 2.0
RATE = 48000  # Opus
CHANNELS = 2
SLOT = 960  # samples per 20 ms packet
GAP = 0.05  # seconds: sound that lands further from the end of what is buffered is placed anew
JUMP = 5.0  # seconds: a stream clock that jumps this far (or back) starts a new stretch
KEEP_S = 3.0  # seconds of sound buffered at most
DRIFT = 0.08  # seconds the audio cursor may drift from its target before it is placed anew


@dataclass(frozen=True)
class Packet:
    """One encoded packet as every viewer gets it."""

    packet: av.Packet
    keyframe: bool


class Fanout(Newest[Packet]):
    """The newest packet of one stream, awaited by every viewer's track (on the HTTP loop only):
    ``await after(seq)`` gives ``(seq, Packet)``."""

    def __init__(self) -> None:
        super().__init__()
        self.keyframe_wanted = True
        self._seq = 0

    def publish_packet(self, packet: av.Packet, keyframe: bool) -> None:
        self._seq += 1
        self.publish(self._seq, Packet(packet, keyframe))

    def restart(self) -> None:
        super().restart()
        self.keyframe_wanted = True


class VideoEncoder:
    """VP8 at ``bitrate`` bits per second; one packet per picture (no frame lag)."""

    def __init__(self, bitrate: int) -> None:
        self.bitrate = bitrate
        self._codec: av.VideoCodecContext | None = None
        self._size = (0, 0)
        self._last_key = 0.0
        self._origin = time.monotonic()

    def encode(self, image: np.ndarray, keyframe: bool) -> tuple[av.Packet, bool] | None:
        """The packet of ``image`` (RGB) and whether it is a keyframe; timestamped by the clock now."""
        height, width = image.shape[:2]
        if self._codec is None or self._size != (width, height):
            self._open(width - width % 2, height - height % 2)
            keyframe = True
        now = time.monotonic()
        keyframe = keyframe or now - self._last_key >= KEYFRAME_EVERY_S
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: self._size[1], : self._size[0]]), format="rgb24")
        frame = frame.reformat(format="yuv420p", threads=SCALE_THREADS)
        frame.pts = int((now - self._origin) * VIDEO_CLOCK)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        assert self._codec is not None
        packets = list(self._codec.encode(frame))
        if not packets:
            return None
        data = b"".join(bytes(p) for p in packets)
        packet = av.Packet(data)
        packet.pts, packet.time_base = frame.pts, frame.time_base
        is_key = any(p.is_keyframe for p in packets)
        if is_key:
            self._last_key = now
        return packet, is_key

    def _open(self, width: int, height: int) -> None:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.time_base = Fraction(1, VIDEO_CLOCK)
        codec.bit_rate = self.bitrate
        codec.gop_size = 1 << 30  # keyframes when asked for (and every KEYFRAME_EVERY_S)
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1",
                         "max-intra-rate": "300", "auto-alt-ref": "0"}  # fmt: skip
        codec.thread_count = 1  # libvpx's threads cost far more than they gain at these sizes (10x on 2 busy cores)
        codec.open()
        self._codec, self._size = codec, (width, height)


class OpusEncoder:
    """20 ms of 48 kHz stereo s16 in, one Opus packet out, timestamped by the samples sent."""

    def __init__(self) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate, codec.layout, codec.format = RATE, "stereo", "s16"
        codec.time_base = Fraction(1, RATE)
        codec.bit_rate = 64000
        codec.options = {"application": "lowdelay", "frame_duration": "20"}
        codec.open()
        self._codec = codec
        self._samples = 0

    def encode(self, pcm: np.ndarray) -> list[av.Packet]:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._samples, Fraction(1, RATE)
        self._samples += SLOT
        packets = list(self._codec.encode(frame))
        for packet in packets:
            packet.time_base = Fraction(1, RATE)
        return packets


class AudioFeed:
    """The source's sound on the frames' arrival clock, handed out ``latency`` seconds later (see module docstring).

    The source's reader thread calls ``video`` and ``audio``; the output's worker ``latency``;
    the HTTP loop ``take``. ``heard`` is when sound last came (monotonic), or None.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE)
        self._offset: float | None = None  # arrival seconds minus stream seconds, this stretch
        self._last: float | None = None
        self._pcm: np.ndarray = np.zeros((0, CHANNELS), np.int16)
        self._start = 0.0  # arrival-clock time of self._pcm[0]
        self._cursor: float | None = None  # arrival-clock time of the next sample to hand out
        self.latency = 0.0
        self.heard: float | None = None

    # --- the source's reader thread (AudioTap) --------------------------------------------

    def video(self, stream_seconds: float | None, arrival: float) -> None:
        if stream_seconds is None:
            return
        with self._lock:
            if self._offset is None or self._last is None or not -GAP < stream_seconds - self._last < JUMP:
                self._offset = arrival - stream_seconds
            self._last = stream_seconds

    def audio(self, frame: av.AudioFrame) -> None:
        if frame.pts is None or frame.time_base is None:
            return
        with self._lock:
            offset = self._offset
        if offset is None:
            return  # no video frame yet to place it by
        start = float(frame.pts * frame.time_base) + offset
        chunks = [f.to_ndarray().reshape(-1, CHANNELS) for f in self._resampler.resample(frame)]
        if not chunks:
            return
        pcm = np.concatenate(chunks)
        with self._lock:
            self.heard = time.monotonic()
            end = self._start + len(self._pcm) / RATE
            if len(self._pcm) and abs(start - end) < GAP:
                self._pcm = np.concatenate([self._pcm, pcm])
            elif len(self._pcm) and end < start < end + 1.0:  # a short hole: silence
                self._pcm = np.concatenate([self._pcm, np.zeros((round((start - end) * RATE), CHANNELS), np.int16), pcm])
            else:
                self._pcm, self._start = pcm, start
            excess = len(self._pcm) - int(KEEP_S * RATE)
            if excess > 0:
                self._pcm, self._start = self._pcm[excess:], self._start + excess / RATE

    # --- the output's worker --------------------------------------------------------------

    def output_latency(self, seconds: float) -> None:
        """How long the newest frame took from the source to this output."""
        self.latency = 0.9 * self.latency + 0.1 * seconds if self.latency else seconds

    # --- the HTTP loop --------------------------------------------------------------------

    def take(self, now: float) -> np.ndarray:
        """The next 20 ms to send at ``now`` (``SLOT`` x 2 int16): the sound of ``now - latency``, silence where none."""
        with self._lock:
            target = now - self.latency
            if self._cursor is None or abs(self._cursor - target) > DRIFT:
                self._cursor = target
            at = round((self._cursor - self._start) * RATE)
            self._cursor += SLOT / RATE
            out = np.zeros((SLOT, CHANNELS), np.int16)
            lo, hi = max(at, 0), min(at + SLOT, len(self._pcm))
            if hi > lo:
                out[lo - at: hi - at] = self._pcm[lo:hi]
            if lo > 0:  # what was handed out is not needed again
                drop = min(lo, len(self._pcm))
                self._pcm, self._start = self._pcm[drop:], self._start + drop / RATE
            return out


__all__ = ["AudioFeed", "Fanout", "OpusEncoder", "Packet", "VideoEncoder"]
