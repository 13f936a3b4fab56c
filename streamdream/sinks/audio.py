"""Carry the source's audio into a file output, interleaved with the video as it is written.

The audio is read from the source file a second time (its own demuxer), so the video
pipeline never waits for audio. Packets are stream-copied when the output container
accepts the codec (AAC into mp4/mov/mkv/ts, Opus into webm, ...), otherwise decoded,
resampled and encoded (Opus for webm, AAC elsewhere). Audio keeps the source's
timestamps, which is right because the video does too.

``pump(t)`` writes the audio that starts at or before video time ``t``; the file sink calls
it before muxing each video frame, so a file cut off mid-way has audio up to that point.
``finish(end)`` writes what starts before ``end`` (last frame + one frame duration) and
flushes the encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction

import av

from ..log import redact_url

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0

# Muxer -> audio codecs it takes as they are (stream copy).
COPYABLE: dict[str, frozenset[str]] = {
    "mp4": frozenset({"aac", "mp3", "ac3", "eac3", "alac"}),
    "mov": frozenset({"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le"}),
    "matroska": frozenset({"aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "alac", "dts", "pcm_s16le", "pcm_f32le"}),
    "webm": frozenset({"opus", "vorbis"}),
    "mpegts": frozenset({"aac", "mp3", "mp2", "ac3", "eac3"}),
}
# Muxer -> (encoder, sample rate or None for the source's) when a copy is not possible.
TRANSCODE_TO: dict[str, tuple[str, int | None]] = {"webm": ("libopus", 48000)}
DEFAULT_TRANSCODE = ("aac", None)


class AudioCarrier:
    """Audio of one input file, copied or re-encoded into one output container."""

    def __init__(
        self, source: av.container.InputContainer, output: av.container.OutputContainer, fmt: str, fragmented: bool
    ) -> None:
        self._input = source
        self._in_stream = source.streams.audio[0]
        self._output = output
        self.codec = self._in_stream.codec_context.codec.canonical_name  # "mp3", not "mp3float"
        self.copy = self.codec in COPYABLE.get(fmt, frozenset())
        # Encoder priming that lies wholly before 0 (AAC's first packet in MP4) makes MKV/TS
        # (and fragmented MP4) shift the video; only plain MP4/MOV keep it, in an edit list.
        self._keep_negative = fmt in ("mp4", "mov") and not fragmented
        self._target = TRANSCODE_TO.get(fmt, DEFAULT_TRANSCODE)
        self._packets: Iterator[av.Packet] = source.demux(self._in_stream)
        self._pending: av.Packet | None = None
        self._exhausted = False
        self._out: av.AudioStream | None = None
        self._resampler: av.AudioResampler | None = None
        self._fifo: av.AudioFifo | None = None
        self._next_pts: int | None = None
        self.packets_written = 0

    @classmethod
    def open(
        cls, uri: str, output: av.container.OutputContainer, fmt: str, fragmented: bool = False
    ) -> AudioCarrier | None:
        """The carrier for ``uri``'s first audio stream, or None (logged) when there is none."""
        try:
            source = av.open(uri, timeout=OPEN_TIMEOUT_S)
        except (av.FFmpegError, OSError) as exc:
            log.warning("audio of %s not carried: cannot open it: %s", redact_url(uri), redact_url(str(exc)))
            return None
        if not source.streams.audio:
            log.info("%s has no audio stream; writing video only", redact_url(uri))
            source.close()
            return None
        return cls(source, output, fmt, fragmented)

    def add_output_stream(self) -> None:
        """Create the output stream; must happen before the first packet is muxed."""
        if self.copy:
            self._out = self._output.add_stream_from_template(self._in_stream)
            log.info("audio: copying %s", self.codec)
            return
        codec_name, rate = self._target
        ctx_in = self._in_stream.codec_context
        rate = rate or ctx_in.sample_rate or 48000
        layout = "stereo" if ctx_in.channels >= 2 else "mono"
        out = self._output.add_stream(codec_name, rate=rate, layout=layout)
        assert isinstance(out, av.AudioStream), f"{codec_name}: the audio target is an audio codec"
        formats = [f.name for f in (av.Codec(codec_name, "w").audio_formats or [])]
        out.format = "fltp" if not formats or "fltp" in formats else formats[0]
        out.time_base = Fraction(1, rate)
        out.codec_context.open()  # frame_size is known only once open
        self._resampler = av.AudioResampler(format=out.format.name, layout=layout, rate=rate)
        self._fifo = av.AudioFifo()
        self._out = out
        log.info("audio: re-encoding %s to %s (%d Hz, %s)", self.codec, codec_name, rate, layout)

    def pump(self, until: float) -> None:
        """Write the audio that starts at or before ``until`` seconds (source time)."""
        self._write_until(until, inclusive=True)

    def finish(self, end: float) -> None:
        """Write the audio that starts before ``end`` seconds, then flush the encoder."""
        self._write_until(end, inclusive=False)
        if self.copy or self._out is None:
            return
        assert self._resampler is not None
        for frame in self._resampler.resample(None):
            self._to_fifo(frame)
        self._drain(final=True)
        self._output.mux(self._out.encode(None))

    def close(self) -> None:
        try:
            self._input.close()
        except av.FFmpegError:  # closing a reader cannot lose data
            pass

    # --- internals ------------------------------------------------------------------------

    def _peek(self) -> av.Packet | None:
        while self._pending is None and not self._exhausted:
            try:
                packet = next(self._packets)
            except StopIteration:
                self._exhausted = True
            except av.FFmpegError as exc:  # a damaged source ends the audio, not the output
                log.warning("audio: stopped reading the source: %s", exc)
                self._exhausted = True
            else:
                if packet.pts is not None or packet.dts is not None:
                    self._pending = packet
        return self._pending

    def _write_until(self, until: float, inclusive: bool) -> None:
        if self._out is None:
            return
        while (packet := self._peek()) is not None:
            start = packet.pts if packet.pts is not None else packet.dts
            assert start is not None and packet.time_base is not None
            seconds = float(start * packet.time_base)
            if seconds > until or (not inclusive and seconds >= until):
                return
            self._pending = None
            self._write_packet(packet)

    def _write_packet(self, packet: av.Packet) -> None:
        assert self._out is not None
        if self.copy:
            if not self._keep_negative and _ends_before_zero(packet):
                log.debug("audio: dropping a priming packet before time 0")
                return
            packet.stream = self._out
            self._output.mux(packet)
            self.packets_written += 1
            return
        assert self._resampler is not None
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            log.debug("audio: skipping an undecodable packet: %s", exc)
            return
        for frame in frames:
            assert isinstance(frame, av.AudioFrame), "an audio stream's packets decode to audio frames"
            if self._next_pts is None:
                start = frame.time if frame.time is not None else 0.0
                self._next_pts = round(start * self._out.codec_context.sample_rate)
            for resampled in self._resampler.resample(frame):
                self._to_fifo(resampled)
        self._drain(final=False)

    def _to_fifo(self, frame: av.AudioFrame) -> None:
        assert self._fifo is not None
        frame.pts = None  # we count samples ourselves
        self._fifo.write(frame)

    def _drain(self, final: bool) -> None:
        assert self._fifo is not None and self._out is not None
        ctx = self._out.codec_context
        size = ctx.frame_size or 1024
        while self._fifo.samples >= size or (final and self._fifo.samples > 0):
            frame = self._fifo.read(size, partial=final)
            if frame is None:
                break
            frame.pts = self._next_pts or 0
            frame.time_base = Fraction(1, ctx.sample_rate)
            self._next_pts = frame.pts + frame.samples
            packets = self._out.encode(frame)
            self._output.mux(packets)
            self.packets_written += len(packets)


def _ends_before_zero(packet: av.Packet) -> bool:
    start = packet.pts if packet.pts is not None else packet.dts
    return start is not None and start < 0 and start + (packet.duration or 0) <= 0
