"""Cutting a video into segments that workers can dream apart: shots first, keyframes second.

1. ``scan_input`` decodes the input once: every frame's timestamp, which frames are
   keyframes, and where the shots change (``coherence.scenecut`` on small thumbnails).
2. ``plan_segments`` groups whole shots into segments of at least ``min_seconds`` and
   splits a shot longer than ``max_seconds``, at the last keyframe that keeps the piece
   within bounds (a worker then seeks straight to it), else at the bound itself.

A segment that starts at a scene cut needs nothing from its neighbour: the dream starts
afresh there in a single-process run too. A segment that starts *inside* a shot gets a
``handover`` of a few frames, so that no seam shows where one worker takes over:

* the next worker dreams those frames first as a warm-up (``Segment.warmup``, not
  output), starting from a full dream with a jitter seeded by the frame index;
* the previous worker dreams the same chain, identically seeded, beside its own, and
  crossfades its output into it over those frames, so its last frame already shows the
  chain the next worker continues.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from ..coherence.scenecut import DEFAULT_THRESHOLD, SceneCutDetector
from ..errors import SourceError
from ..media import rgb_array
from ..sources.timestamps import FILE_LOOKAHEAD, FrameTimer

SCAN_WIDTH = 96  # the thumbnail cut detection needs is 32 px wide; decoding at 96 keeps it cheap
DEFAULT_FPS = Fraction(25)


@dataclass(frozen=True)
class SegmentPolicy:
    """How a video is cut into segments (seconds at the input's frame rate)."""

    min_seconds: float = 2.0  # shorter shots are grouped with the following ones
    max_seconds: float = 10.0  # longer shots are split; bounds what one lost worker costs
    handover_frames: int = 12  # crossfade and warm-up where a split falls inside a shot
    scene_cut: float | None = None  # grey-thumbnail difference that starts a shot (None: coherence's default)

    def __post_init__(self) -> None:
        if not 0 <= self.min_seconds <= self.max_seconds or self.max_seconds <= 0:
            raise ValueError(f"segment bounds must satisfy 0 <= min <= max, max > 0; got {self.min_seconds}, {self.max_seconds}")
        if self.handover_frames < 0:
            raise ValueError(f"handover_frames must be >= 0, got {self.handover_frames}")


@dataclass(frozen=True)
class InputScan:
    """What one decoding pass learnt about an input file."""

    path: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    pts: tuple[int | None, ...]  # every frame's timestamp in time_base units, presentation order
    keyframes: tuple[int, ...]  # indices of frames a seek can land on
    cuts: tuple[int, ...]  # indices of frames that start a new shot (0 excluded)
    has_audio: bool

    @property
    def frame_count(self) -> int:
        return len(self.pts)

    @property
    def seekable(self) -> bool:
        return all(p is not None for p in self.pts)

    def seconds(self, index: int) -> float:
        """Frame ``index``'s time as the file sources give it (timestamp, else index / fps)."""
        pts = self.pts[index]
        return float(pts * self.time_base) if pts is not None else index / float(self.fps)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fps"], data["time_base"] = str(self.fps), str(self.time_base)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputScan:
        fields = dict(data)
        fields["fps"], fields["time_base"] = Fraction(data["fps"]), Fraction(data["time_base"])
        for key in ("pts", "keyframes", "cuts"):
            fields[key] = tuple(data[key])
        return cls(**fields)


@dataclass(frozen=True)
class Segment:
    """Output frames ``[start, end)``; ``warmup`` frames before ``start`` are dreamed, not output;
    the last ``handover`` frames are crossfaded into the next segment's chain."""

    index: int
    start: int
    end: int
    warmup: int = 0
    handover: int = 0

    @property
    def frames(self) -> int:
        return self.end - self.start

    @property
    def first(self) -> int:
        """The first frame the worker decodes and dreams."""
        return self.start - self.warmup


def scan_input(path: str | Path, scene_cut: float | None = None) -> InputScan:
    """Decode ``path`` once; raise SourceError naming the file when it cannot be read."""
    # imported here: the coherence package still loads TensorFlow, which the driver never needs before this

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot read input file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    with container:
        if not container.streams.video:
            raise SourceError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = Fraction(rate) if rate else DEFAULT_FPS
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        width, height = stream.codec_context.width, stream.codec_context.height
        detector = SceneCutDetector(DEFAULT_THRESHOLD if scene_cut is None else scene_cut)
        # the times a single-process run gives: best effort, so packed-B-frame AVIs keep their length
        timer: FrameTimer[int] = FrameTimer(time_base, fps, lookahead=FILE_LOOKAHEAD)
        seconds: list[float] = []
        keyframes: list[int] = []
        cuts: list[int] = []
        small_height = max(2, round(height * SCAN_WIDTH / max(width, 1)))
        try:
            for index, frame in enumerate(container.decode(stream)):
                seconds.extend(t for _, t in timer.push(index, frame.pts, frame.dts))
                if frame.key_frame:
                    keyframes.append(index)
                thumb = rgb_array(frame, SCAN_WIDTH, small_height)
                if detector(thumb):
                    cuts.append(index)
        except (av.FFmpegError, OSError) as exc:
            if not seconds and not timer.pending:
                raise SourceError(f"no frame could be decoded from {path}: {exc}") from None
            # a damaged tail ends the input early, as for a single-process run
        seconds.extend(t for _, t in timer.flush())
        pts = [round(t / time_base) for t in seconds]
        if not pts:
            raise SourceError(f"no frame could be decoded from {path} (damaged or truncated file?)")
        return InputScan(
            path=str(path),
            width=width,
            height=height,
            fps=fps,
            time_base=time_base,
            pts=tuple(pts),
            keyframes=tuple(keyframes) or (0,),
            cuts=tuple(cuts),
            has_audio=bool(container.streams.audio),
        )


def _split_point(start: int, end: int, keyframes: tuple[int, ...], min_frames: int, max_frames: int) -> int:
    """Where a shot ``[start, end)`` longer than ``max_frames`` is cut next."""
    limit = start + max_frames
    if end - limit < min_frames:  # don't leave a sliver: halve what is left instead
        limit = start + max(min_frames, (end - start) // 2)
    lowest = start + max(1, min_frames)
    candidates = [k for k in keyframes if lowest <= k <= limit]
    return candidates[-1] if candidates else limit


def plan_segments(scan: InputScan, policy: SegmentPolicy = SegmentPolicy()) -> list[Segment]:
    """The segments of ``scan`` under ``policy`` (see the module doc)."""
    fps = float(scan.fps) or float(DEFAULT_FPS)
    min_frames = max(1, math.ceil(policy.min_seconds * fps))
    max_frames = max(min_frames, math.ceil(policy.max_seconds * fps))
    total = scan.frame_count
    bounds = [0, *[c for c in scan.cuts if 0 < c < total], total]
    # 1. pieces: whole shots, long shots split; (start, end, the shot's first frame)
    pieces: list[tuple[int, int, int]] = []
    for shot_start, shot_end in zip(bounds, bounds[1:]):
        start = shot_start
        while shot_end - start > max_frames:
            split = _split_point(start, shot_end, scan.keyframes, min_frames, max_frames)
            pieces.append((start, split, shot_start))
            start = split
        pieces.append((start, shot_end, shot_start))
    # 2. group pieces that start at a cut until a segment is min_frames long
    groups: list[list[int]] = []  # [start, end, shot start of the last piece]
    for start, end, shot_start in pieces:
        at_cut = start == shot_start
        if groups and at_cut and groups[-1][1] - groups[-1][0] < min_frames and end - groups[-1][0] <= max_frames:
            groups[-1][1], groups[-1][2] = end, shot_start
        else:
            groups.append([start, end, shot_start])
    # 3. handovers where a segment starts inside a shot
    segments: list[Segment] = []
    for index, (start, end, _shot) in enumerate(groups):
        warmup = 0
        if segments and start not in scan.cuts:
            previous = segments[-1]
            same_shot_before = start - max(previous.start, groups[index - 1][2])
            warmup = max(0, min(policy.handover_frames, same_shot_before, previous.frames))
            segments[-1] = Segment(previous.index, previous.start, previous.end, previous.warmup, warmup)
        segments.append(Segment(index, start, end, warmup, 0))
    return segments


__all__ = ["InputScan", "Segment", "SegmentPolicy", "plan_segments", "scan_input"]
