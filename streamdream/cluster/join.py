"""Joining dreamed pieces into the output by stream copy, with the input's audio.

Every piece was encoded by the output's own sink settings (codec, quality, container),
with the input's timestamps, so joining is a remux: each piece's video packets are
copied in order into one container opened with the file sink's container options,
and the input's audio is carried in beside them exactly as the file sink does it
(``sinks.audio.AudioCarrier``: copied where the container takes the codec, re-encoded
where it does not, interleaved by time). Nothing is decoded or encoded again.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av

from ..config import OutputConfig
from ..errors import SinkError
from ..sinks.audio import AudioCarrier
from ..sinks.file import DEFAULT_FPS, TIME_BASE, FileSink

log = logging.getLogger(__name__)


def _extradata(stream: av.VideoStream) -> bytes:
    return bytes(stream.codec_context.extradata or b"")


def join_pieces(
    pieces: Sequence[Path],
    output: OutputConfig,
    destination: Path,
    *,
    audio_source: str | None,
    end_seconds: float,
) -> int:
    """Remux ``pieces`` (in order) into ``destination``, with ``audio_source``'s audio up to
    ``end_seconds`` (the last frame's time plus one frame). Returns the video packets written.

    ``output`` gives the container's options (``destination`` has the same suffix as its
    URI). The file is written under a temporary name and renamed into place when complete.
    """
    if not pieces:
        raise SinkError(f"{destination}: nothing to join")
    # parses the URI only: the muxer and container options a single-process run uses
    sink = FileSink(output, audio_source=audio_source)
    partial = destination.with_name(f".{destination.stem}.joining{destination.suffix}")
    options = sink._container_options()
    packets = 0
    try:
        container = av.open(str(partial), "w", format=sink.format, options=options)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise SinkError(f"cannot write {destination}: {exc}") from exc
    audio: AudioCarrier | None = None
    try:
        video_out = None
        reference = b""
        last_dts: Fraction | None = None  # seconds
        for number, piece in enumerate(pieces):
            with av.open(str(piece)) as source:
                stream = source.streams.video[0]
                time_base = stream.time_base
                assert time_base is not None, "a demuxed video stream has a time base"
                if video_out is None:
                    video_out = container.add_stream_from_template(stream)
                    video_out.time_base = time_base
                    reference = _extradata(stream)
                    if output.audio and audio_source is not None:
                        audio = AudioCarrier.open(audio_source, container, sink.format, sink.fragmented)
                        if audio is not None:
                            audio.add_output_stream()
                elif _extradata(stream) != reference:
                    log.warning("%s: piece %d has other codec parameters than the first; players may show it wrongly", destination, number)
                for packet in source.demux(stream):
                    if packet.dts is None and packet.pts is None:
                        continue  # the demuxer's end-of-stream marker
                    packet.time_base = time_base
                    dts = _increasing_dts(packet, time_base, last_dts)
                    packet.dts = dts
                    last_dts = dts * time_base
                    if audio is not None and packet.pts is not None:
                        audio.pump(float(packet.pts * time_base))
                    packet.stream = video_out
                    container.mux(packet)
                    packets += 1
        if audio is not None:
            audio.finish(end_seconds)
    except (av.FFmpegError, OSError) as exc:
        container.close()
        partial.unlink(missing_ok=True)
        raise SinkError(f"cannot join the pieces into {destination}: {exc}") from exc
    finally:
        if audio is not None:
            audio.close()
    try:
        container.close()
    except (av.FFmpegError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise SinkError(f"cannot finish {destination}: {exc}") from exc
    os.replace(partial, destination)
    log.info("joined %d pieces into %s", len(pieces), destination)
    return packets


def _increasing_dts(packet: av.Packet, time_base: Fraction, last: Fraction | None) -> int:
    """The packet's decode time, moved just past ``last`` (seconds) where it is not after it.

    Each piece's encoder starts its decode clock anew, and Matroska stores no decode times
    for a stream's first packets: the muxer needs them increasing across the seams.
    """
    dts, pts = packet.dts, packet.pts
    after = None if last is None else math.floor(last / time_base) + 1
    if dts is None:
        assert pts is not None, "the caller skips the demuxer's end-of-stream marker (no dts, no pts)"
        dts = pts if after is None else min(pts, after)
    elif after is not None and dts < after:
        dts = after if pts is None else min(after, pts)
    return dts


def frame_duration(fps: Fraction | None) -> float:
    """What the file sink adds after the last frame for the audio's end: one frame, in its clock."""

    ticks = max(1, round(TIME_BASE.denominator / (fps or DEFAULT_FPS)))
    return ticks / TIME_BASE.denominator


__all__ = ["frame_duration", "join_pieces"]
