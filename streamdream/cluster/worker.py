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
from typing import Any

import av
import numpy as np

from ..app import build_engine, to_uint8
from ..config import Config, OutputConfig
from ..errors import SinkError, SourceError, StreamdreamError
from ..frames import Frame, SourceInfo, freeze
from ..media import rgb_array
from ..pipeline.runner import Pipeline
from ..runtime.workers import Workers
from ..sinks import open_sink
from ..sinks.file import split_file_uri
from ..sources.base import OpenedInfo
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
            yield Frame(freeze(rgb_array(frame)), at, frame_seconds(frame.pts, task.time_base, at, task.info.fps))
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


class SegmentSource(OpenedInfo):
    """A segment as a ``Source`` for the pipeline: its warm-up frames, then its own."""

    def __init__(self, task: SegmentTask) -> None:
        self._task = task
        self._display = f"segment {task.segment.index} of {task.input}"
        self._closed = False
        self.read_seconds = 0.0

    def open(self) -> SourceInfo:
        self._info = self._task.info
        return self._info

    def frames(self) -> Iterator[Frame]:
        started = time.perf_counter()
        for frame in read_segment(self._task):
            self.read_seconds += time.perf_counter() - started
            if self._closed:
                return
            yield frame
            started = time.perf_counter()

    def close(self) -> None:
        self._closed = True


class SegmentLook:
    """The pipeline's dreamer for one segment: warm-up frames dreamed for their carry and not
    shown (``None``), output frames dreamed, crossfaded into the next chain over the handover."""

    def __init__(self, dreamer: SegmentDreamer, task: SegmentTask, cancelled: Callable[[], bool] | None) -> None:
        from ..coherence.processors import compose  # noqa: PLC0415 - loads Keras and its backend

        self._compose = compose  # imported once per segment, not per frame
        self._d, self._task, self._cancelled = dreamer, task, cancelled
        self._main = dreamer.processor()
        self._chain: Any = None  # the next segment's chain during the handover
        self.seconds = 0.0

    def process(self, frame: Frame) -> Frame | None:
        if self._cancelled is not None and self._cancelled():
            raise SegmentCancelled(f"segment {self._task.segment.index} of {self._task.input} cancelled")
        started = time.perf_counter()
        try:
            return self._dream(frame)
        finally:
            self.seconds += time.perf_counter() - started

    def _dream(self, frame: Frame) -> Frame | None:
        seg, engine = self._task.segment, self._d.engine
        if self._d.blend is not None:
            frame = Frame(to_uint8(self._d.blend(frame.image)), frame.index, frame.pts, frame.captured_at)
        small = self._main.downscale(frame.image)
        if frame.index < seg.start:  # warm-up: the previous worker's handover chain
            engine.reseed(chain_seed(self._task.seed, frame.index))
            self._main.dream_detail(small)
            return None
        detail = self._main.dream_detail(small).detail
        handover_from = seg.end - seg.handover
        if seg.handover and frame.index >= handover_from:
            self._chain = self._chain or self._d.processor()
            engine.reseed(chain_seed(self._task.seed, frame.index))
            ahead = self._chain.dream_detail(small).detail
            weight = (frame.index - handover_from + 1) / seg.handover
            detail = (1.0 - weight) * detail + weight * ahead
        image = self._compose(frame.image, np.asarray(detail, np.float32), tone=engine.tone)
        return Frame(image, frame.index, frame.pts, frame.captured_at)


class _Report:
    """The pipeline's progress hook as the caller's ``report(frames written)``."""

    def __init__(self, report: Callable[[int], None] | None) -> None:
        self._report, self.frames = report, 0

    def update(self, n: int) -> None:
        self.frames += n
        if self._report is not None:
            self._report(self.frames)

    def close(self) -> None:
        pass


class SegmentDreamer:
    """One worker's dreamer: the model is loaded once, then segment after segment, each through
    the same stage loop as `run` (``pipeline/runner.py``): capture, dream, output."""

    def __init__(self, config: Config, engine=None) -> None:
        self.config = config
        self.engine = engine or build_engine(config)
        self.blend = still_blend(config.dream, config.source.max_pixels)  # a picture; preflight refuses a moving one
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def processor(self):
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
        seg = task.segment
        steps_before = self.engine.steps_total
        path, options = split_file_uri(task.output.uri)
        query = "&".join(f"{k}={v}" for k, v in options.items())
        # the segment's owner: the stage loop's threads, stopped and joined before the piece is read
        with tempfile.TemporaryDirectory(prefix="streamdream-piece-") as tmp, Workers(name="segment") as workers:
            piece = Path(tmp) / f"piece{Path(path).suffix}"
            sink = open_sink(
                OutputConfig(uri=str(piece) + (f"?{query}" if query else ""), codec=task.output.codec,
                             crf=task.output.crf, bitrate=task.output.bitrate, audio=False), workers,
            )  # fmt: skip
            source, look, progress = SegmentSource(task), SegmentLook(self, task, cancelled), _Report(report)
            started = time.perf_counter()
            result = Pipeline(source, look, [sink], queue_size=2, workers=workers, progress=lambda info: progress).run()
            wall = time.perf_counter() - started
            if result.error is not None:
                raise result.error
            down = result.outputs_down
            if down:
                raise SinkError(f"segment {seg.index} of {task.input}: {down[0].error}")
            if progress.frames != seg.frames:
                raise SourceError(f"segment {seg.index} of {task.input}: {progress.frames} of {seg.frames} frames dreamed")
            data = piece.read_bytes()
        return PieceResult(
            job=task.job,
            segment=seg.index,
            data=data,
            frames=progress.frames,
            warmup=seg.warmup,
            steps=self.engine.steps_total - steps_before,
            worker=self.name,
            seconds={"read": source.read_seconds, "dream": look.seconds,
                     "encode": max(0.0, wall - look.seconds - source.read_seconds)},  # what the stages did not overlap
        )  # fmt: skip


__all__ = ["PieceResult", "SegmentCancelled", "SegmentDreamer", "SegmentLook", "SegmentSource", "SegmentTask", "chain_seed", "read_segment"]
