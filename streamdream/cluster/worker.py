"""Dreaming one segment: seek, decode, dream in flow mode, encode a final-codec piece.

``SegmentDreamer`` is plain Python (the Ray actor in ``pool.py`` wraps it), so a worker
keeps its model loaded from one segment to the next and tests can run it without Ray.

A segment's path, top to bottom:
1. ``read_segment`` seeks to the keyframe before the segment's first frame (warm-up
   included) and decodes from there, skipping frames before it; every frame keeps the
   timestamp a single-process run gives it.
2. Warm-up frames (a handover from the previous segment) are dreamed, not output, with
   the jitter seeded by frame index, exactly as the previous worker dreamed them.
3. Output frames are dreamed by one processor (flow mode unless configured otherwise);
   over the last ``handover`` frames a second one dreams the next segment's chain, and
   the output crossfades into it.
4. Each output frame goes to a file sink writing the output's own codec and container:
   pieces are later joined by stream copy (``join.py``), never encoded twice.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..app import build_engine, to_uint8
from ..config import Config, OutputConfig
from ..errors import SourceError, StreamdreamError
from ..frames import Frame, SourceInfo, freeze
from ..sinks import open_sink
from ..sinks.file import split_file_uri
from ..sources.blend import still_blend
from .plan import Segment

log = logging.getLogger(__name__)


class SegmentCancelled(StreamdreamError):
    """The driver asked this segment to stop (Ctrl-C, or its job failed)."""

    exit_code = 130


@dataclass(frozen=True)
class SegmentTask:
    """Everything a worker needs for one segment; small enough to send per task."""

    job: str  # the job's id, for progress reports and cancelling
    input: str  # a path every worker can read
    output: OutputConfig  # the final output: its container, codec and options
    info: SourceInfo
    segment: Segment
    pts: tuple[int | None, ...]  # timestamps of frames [segment.first, segment.end)
    time_base: Fraction
    seed: int  # base of the handover chains' per-frame seeds


@dataclass(frozen=True)
class PieceResult:
    """A dreamed segment: the encoded piece and what it cost."""

    job: str
    segment: int
    data: bytes
    frames: int
    warmup: int
    steps: int
    worker: str
    seconds: dict[str, float] = field(default_factory=dict)  # read, dream, encode
    node: str = ""  # the Ray node it was dreamed on (set by the actor)


def chain_seed(base: int, index: int) -> int:
    """The jitter seed of a handover chain at frame ``index``: the same on every worker."""
    return (base * 1_000_003 + index) % 2**31


def frame_seconds(pts: int | None, time_base: Fraction, index: int, fps: Fraction | None) -> float:
    """A frame's time as the file source gives it: its timestamp, else its index at the frame rate."""
    if pts is not None:
        return float(pts * time_base)
    return index / float(fps or 25)


def read_segment(task: SegmentTask) -> Iterator[Frame]:
    """Frames ``[segment.first, segment.end)`` of the input, with their source timestamps."""
    seg = task.segment
    wanted = list(task.pts)
    try:
        container = av.open(task.input)
    except FileNotFoundError:
        raise SourceError(
            f"input {task.input} is not readable on worker {socket.gethostname()}: with --cluster the input "
            "must be at the same path on every node (shared storage)"
        ) from None
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot read input file {task.input}: {exc}") from None
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        seekable = all(p is not None for p in wanted)
        frames = _decode_from(container, stream, wanted[0] if seekable and seg.first > 0 else None, task.time_base)
        index, produced = 0, 0
        for frame in frames:
            if seekable:
                if frame.pts is None or frame.pts < wanted[0]:
                    continue
                if frame.pts != wanted[produced]:
                    raise SourceError(
                        f"{task.input}: frame {seg.first + produced} decoded at timestamp {frame.pts}, "
                        f"expected {wanted[produced]} (the file changed since it was scanned?)"
                    )
            elif index < seg.first:  # no timestamps to seek by: count frames from the start
                index += 1
                continue
            at = seg.first + produced
            yield Frame(freeze(frame.to_ndarray(format="rgb24")), at, frame_seconds(frame.pts, task.time_base, at, task.info.fps))
            produced += 1
            if produced == len(wanted):
                return
        raise SourceError(f"{task.input} ended after {seg.first + produced} frames, before frame {seg.end - 1}")


def _decode_from(container, stream, target: int | None, time_base: Fraction) -> Iterator:
    """Decoded frames from the keyframe at or before timestamp ``target`` (None: from the start)."""
    if target is None:
        yield from container.decode(stream)
        return
    back = 0
    while True:
        position = max(0, target - back)
        container.seek(position, stream=stream, backward=True, any_frame=False)
        stream.codec_context.flush_buffers()
        frames = container.decode(stream)
        first = next(frames, None)
        if first is not None and (first.pts is None or first.pts <= target) or position == 0:
            break
        # landed after the frame or nowhere (some demuxers seek by approximate time): go back, doubling
        back = max(2 * back, round(1 / time_base))
    if first is not None:
        yield first
        yield from frames


class SegmentDreamer:
    """One worker's dreamer: the model is loaded once, then segment after segment."""

    def __init__(self, config: Config, engine=None) -> None:
        self.config = config
        self.engine = engine or build_engine(config)
        self._blend = still_blend(config.dream, config.source.max_pixels)  # a picture; preflight refuses a moving one
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def _processor(self):
        from ..coherence.processors import processor_class  # noqa: PLC0415 - loads Keras and its backend

        mode = processor_class(self.config.coherence.mode, self.engine)  # flow unless asked otherwise, as for `run`
        return mode(self.engine, self.config.coherence, width=self.config.dream.width, adaptive=False)

    def dream(
        self,
        task: SegmentTask,
        report: Callable[[int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> PieceResult:
        """Dream ``task``'s segment; ``report(n)`` after each output frame; stop if ``cancelled()``."""
        from ..coherence.processors import compose  # noqa: PLC0415 - loads Keras and its backend

        seg = task.segment
        main = self._processor()
        chain = None  # the next segment's chain during the handover
        handover_from = seg.end - seg.handover
        steps_before = self.engine.steps_total
        timing = {"read": 0.0, "dream": 0.0, "encode": 0.0}
        path, options = split_file_uri(task.output.uri)
        query = "&".join(f"{k}={v}" for k, v in options.items())
        with tempfile.TemporaryDirectory(prefix="streamdream-piece-") as tmp:
            piece = Path(tmp) / f"piece{Path(path).suffix}"
            sink = open_sink(
                OutputConfig(uri=str(piece) + (f"?{query}" if query else ""), codec=task.output.codec,
                             crf=task.output.crf, bitrate=task.output.bitrate, audio=False)
            )  # fmt: skip
            sink.open(task.info)
            written = 0
            try:
                started = time.perf_counter()
                for frame in read_segment(task):
                    now = time.perf_counter()
                    timing["read"] += now - started
                    if cancelled is not None and cancelled():
                        raise SegmentCancelled(f"segment {seg.index} of {task.input} cancelled")
                    if self._blend is not None:
                        frame = Frame(to_uint8(self._blend(frame.image)), frame.index, frame.pts, frame.captured_at)
                    small = main.downscale(frame.image)
                    if frame.index < seg.start:  # warm-up: the previous worker's handover chain
                        self.engine.reseed(chain_seed(task.seed, frame.index))
                        main.dream_detail(small)
                        timing["dream"] += time.perf_counter() - now
                        started = time.perf_counter()
                        continue
                    detail = main.dream_detail(small).detail
                    if seg.handover and frame.index >= handover_from:
                        chain = chain or self._processor()
                        self.engine.reseed(chain_seed(task.seed, frame.index))
                        ahead = chain.dream_detail(small).detail
                        weight = (frame.index - handover_from + 1) / seg.handover
                        detail = (1.0 - weight) * detail + weight * ahead
                    image = compose(frame.image, np.asarray(detail, np.float32), tone=self.engine.tone)
                    dreamed = time.perf_counter()
                    timing["dream"] += dreamed - now
                    sink.write(Frame(image, frame.index, frame.pts, frame.captured_at))
                    written += 1
                    timing["encode"] += time.perf_counter() - dreamed
                    if report is not None:
                        report(written)
                    started = time.perf_counter()
            finally:
                closing = time.perf_counter()
                sink.close()
                timing["encode"] += time.perf_counter() - closing
            if written != seg.frames:
                raise SourceError(f"segment {seg.index} of {task.input}: {written} of {seg.frames} frames dreamed")
            data = piece.read_bytes()
        return PieceResult(
            job=task.job,
            segment=seg.index,
            data=data,
            frames=written,
            warmup=seg.warmup,
            steps=self.engine.steps_total - steps_before,
            worker=self.name,
            seconds=timing,
        )


__all__ = ["PieceResult", "SegmentCancelled", "SegmentDreamer", "SegmentTask", "chain_seed", "read_segment"]
