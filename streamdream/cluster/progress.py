"""Progress across the cluster: a tqdm bar (frames, segments, fps, ETA) and the metrics `run` exports.

The bar counts output frames: those in finished pieces plus those the workers have
dreamed so far in the segments they are on (a retried segment counts again from 0).
Metrics use the same names as a single-process run, fed by the same observer:
``frames_total{stage="dream"}`` as workers dream, ``{stage="write"}`` and the stage
histograms as pieces come in, ``dream_steps_total`` per piece.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

from ..runtime.observer import PipelineObserver
from .worker import PieceResult


class ClusterProgress:
    def __init__(
        self,
        *,
        total_frames: int,
        done_frames: int,
        total_segments: int,
        done_segments: int,
        workers: int,
        enabled: bool = True,
        observer: PipelineObserver | None = None,
    ) -> None:
        self.observer = observer or PipelineObserver()
        self.total_segments = total_segments
        self.segments = done_segments
        self.frames = done_frames
        self.dreamed = 0
        self.join_seconds = 0.0
        self.transfer_seconds = 0.0  # driver side: fetching pieces from the object store and saving them
        self.pieces: list[PieceResult] = []
        self.started = time.monotonic()
        self.bar: Any = None
        if enabled:
            self.bar = tqdm(total=total_frames, initial=done_frames, unit="frame", desc=f"dreaming on {workers} workers",
                            file=sys.stderr, dynamic_ncols=True)  # fmt: skip
            self._postfix()

    def update(self, frames: int, segments: int, dreamed: int) -> None:
        """Frames done (finished pieces + in flight), segments done, frames dreamed in all."""
        for _ in range(max(0, dreamed - self.dreamed)):
            self.observer.frame_done("capture")
            self.observer.frame_done("dream")
        self.dreamed = max(self.dreamed, dreamed)
        if self.bar is not None and (frames != self.frames or segments != self.segments):
            self.bar.update(frames - self.frames)  # may go back when a killed worker's segment restarts
            self.segments = segments
            self._postfix()
        self.frames, self.segments = frames, segments

    def piece(self, piece: PieceResult, transfer_seconds: float = 0.0) -> None:
        self.pieces.append(piece)
        self.transfer_seconds += transfer_seconds
        per_frame = {k: v / max(1, piece.frames) for k, v in piece.seconds.items()}
        for _ in range(piece.frames):
            self.observer.stage_time("dream", per_frame.get("dream", 0.0))
            self.observer.stage_time("write", per_frame.get("encode", 0.0))
            self.observer.frame_done("write")
        self.observer.dream_steps(piece.steps)

    def joined(self, seconds: float) -> None:
        self.join_seconds += seconds

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"segments {self.segments}/{self.total_segments}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["ClusterProgress"]
