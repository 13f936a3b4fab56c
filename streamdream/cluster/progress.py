"""Progress across the cluster: a tqdm bar (frames, segments, fps, ETA) and the metrics `run` exports.

The bar counts output frames: those in finished pieces plus those the workers have
dreamed so far in the segments they are on (a retried segment counts again from 0).
Metrics use the same names as a single-process run, fed by the same observer:
``frames_total{stage="dream"}`` as workers dream, ``{stage="write"}`` and the stage
histograms as pieces come in, ``dream_steps_total`` per piece.

Per node (``IP/node id``), the bar and the metrics also say what the cluster went through:
workers started (``initial``, ``replacement`` for a lost one, ``added`` on a node that
joined), workers lost, segments retried (put back in the queue when their worker was
lost), pieces dreamed; a summary is logged at the end when any worker was lost or added.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from typing import Any

from tqdm import tqdm

from ..runtime.observer import PipelineObserver
from .worker import PieceResult

log = logging.getLogger(__name__)


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
        self.workers = workers
        # per node label: workers started (by why), lost; segments retried; pieces dreamed
        self.workers_started: dict[str, Counter] = {}
        self.workers_lost: Counter = Counter()
        self.segments_retried: Counter = Counter()
        self.pieces_by_node: Counter = Counter()
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

    def worker_started(self, node: str, why: str) -> None:
        self.workers_started.setdefault(node, Counter())[why] += 1
        self.observer.cluster_worker_started(node, why)
        self._refresh()

    def worker_lost(self, node: str) -> None:
        self.workers_lost[node] += 1
        self.observer.cluster_worker_lost(node)
        self._refresh()

    def segment_retried(self, node: str) -> None:
        self.segments_retried[node] += 1
        self.observer.cluster_segment_retried(node)
        self._refresh()

    def workers_now(self, by_node: dict[str, int]) -> None:
        """Ready workers per node, now."""
        self.workers = sum(by_node.values())
        self.observer.cluster_workers(by_node)
        self._refresh()

    def _refresh(self) -> None:
        if self.bar is not None:
            self._postfix()

    def summary(self) -> None:
        """One line per node, when anything happened to the cluster during the run."""
        replaced = sum(c["replacement"] + c["added"] for c in self.workers_started.values())
        if not self.workers_lost and not replaced:
            return
        nodes = sorted({*self.workers_started, *self.workers_lost, *self.segments_retried, *self.pieces_by_node})
        for node in nodes:
            started = self.workers_started.get(node, Counter())
            log.info("node %s: %d pieces dreamed; workers: %d started (%d replacements, %d added), %d lost; %d segments retried",
                     node, self.pieces_by_node[node], sum(started.values()), started["replacement"], started["added"],
                     self.workers_lost[node], self.segments_retried[node])  # fmt: skip

    def piece(self, piece: PieceResult, transfer_seconds: float = 0.0, node: str = "") -> None:
        self.pieces.append(piece)
        if node:
            self.pieces_by_node[node] += 1
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
        text = f"segments {self.segments}/{self.total_segments}, {self.workers} workers"
        lost, retried = sum(self.workers_lost.values()), sum(self.segments_retried.values())
        if lost or retried:
            text += f", {lost} lost, {retried} segments retried"
        self.bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["ClusterProgress"]
