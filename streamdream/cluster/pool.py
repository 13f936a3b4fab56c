"""Ray: connecting, the dream workers (one actor each, model loaded once) and the progress board.

Ray is an optional extra and is imported here only. A local instance (``--workers N``)
listens on loopback only and starts no dashboard; ``--cluster ADDRESS`` joins an existing
cluster (``ray start --head`` on one machine, ``ray://HOST:10001`` through Ray Client).

Faults are Ray's to handle: a worker whose process dies is restarted (``max_restarts``,
reloading its model) and the segment it was dreaming runs again (``max_task_retries``).
A segment is returned whole or not at all, so nothing is lost or written twice.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import cv2

from ..config import Config
from ..errors import ConfigError, ModelError
from ..log import import_tensorflow, setup_logging
from .worker import PieceResult, SegmentDreamer, SegmentTask

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'streamdream[cluster]'"
RESTARTS = 3  # per worker, and retries per segment on a restarted worker
CANCEL_CHECK_S = 0.5  # how often a worker asks whether its job was cancelled


def import_ray(local: bool = False):
    """Ray, or a ConfigError saying how to install it. ``local``: for a loopback-only instance."""
    if local and "ray" not in sys.modules:
        # Ray picks the address its servers bind from this switch, read once when it is imported
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray  # noqa: PLC0415 - loads Ray (the cluster extra)
    except ImportError:
        raise ConfigError(f"--workers, --cluster and batch on workers run on Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(address: str | None, object_store_mb: int | None = None) -> bool:
    """Join ``address`` or start a local instance; True when this call started the connection."""
    ray = import_ray(local=not address)
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, configure_logging=False, log_to_driver=True)
    else:
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            configure_logging=False,
            object_store_memory=object_store_mb * 2**20 if object_store_mb else None,
        )
        addresses = {n["NodeManagerAddress"] for n in ray.nodes()}
        if addresses != {"127.0.0.1"}:
            log.warning("the local Ray instance listens on %s, not on loopback only (Ray was imported before streamdream "
                        "could ask for loopback)", ", ".join(sorted(addresses)))  # fmt: skip
    return True


def _limit_threads(threads: int) -> None:
    """A worker uses the CPUs Ray gave it, not every core of the machine (set before TensorFlow starts)."""

    cv2.setNumThreads(threads)

    import_tensorflow()
    import tensorflow as tf  # noqa: PLC0415 - loads TensorFlow

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:  # TensorFlow already started in this process: it keeps its pools
        pass


class DreamWorker:
    """The body of a Ray actor: one SegmentDreamer, built once, dreaming segment after segment."""

    def __init__(self, config: Config, threads: int, log_level: str = "WARNING") -> None:
        setup_logging(log_level)
        _limit_threads(threads)
        self.dreamer = SegmentDreamer(config)

    def ready(self) -> str:
        return self.dreamer.name

    def pid(self) -> int:
        return os.getpid()

    def dream(self, task: SegmentTask, board: Any) -> PieceResult:
        import ray  # noqa: PLC0415 - loads Ray (the cluster extra)

        key = (task.job, task.segment.index)
        board.started.remote(*key, self.dreamer.name)
        checked = [time.monotonic()]

        def cancelled() -> bool:
            now = time.monotonic()
            if now - checked[0] < CANCEL_CHECK_S:
                return False
            checked[0] = now
            return ray.get(board.cancelled.remote(task.job))

        return self.dreamer.dream(task, report=lambda n: board.frames.remote(*key, n), cancelled=cancelled)


class ProgressBoard:
    """The body of a small Ray actor every worker reports to: frames done per segment in flight,
    attempts per segment (a retry shows as a second attempt) and jobs cancelled."""

    def __init__(self) -> None:
        self.frames_in_flight: dict[tuple[str, int], int] = {}
        self.finished_keys: set[tuple[str, int]] = set()
        self.attempts: Counter = Counter()
        self.workers: dict[tuple[str, int], list[str]] = {}
        self.dreamed = 0  # output frames dreamed, retried ones included
        self.cancelled_jobs: set[str] = set()

    def started(self, job: str, segment: int, worker: str) -> None:
        key = (job, segment)
        self.attempts[key] += 1
        self.workers.setdefault(key, []).append(worker)
        if key not in self.finished_keys:
            self.frames_in_flight[key] = 0

    def frames(self, job: str, segment: int, done: int) -> None:
        key = (job, segment)
        if key in self.finished_keys:
            return  # a late report of a segment already handed in
        self.dreamed += max(0, done - self.frames_in_flight.get(key, 0))
        self.frames_in_flight[key] = done

    def finished(self, job: str, segment: int, frames: int) -> None:
        """The driver has the piece: count frames whose reports are still on their way."""
        key = (job, segment)
        self.finished_keys.add(key)
        self.dreamed += max(0, frames - self.frames_in_flight.pop(key, 0))

    def cancel(self, job: str) -> None:
        self.cancelled_jobs.add(job)

    def cancelled(self, job: str) -> bool:
        return job in self.cancelled_jobs

    def snapshot(self) -> dict[str, Any]:
        return {
            "in_flight": sum(self.frames_in_flight.values()),
            "frames": {f"{job}#{segment}": n for (job, segment), n in self.frames_in_flight.items()},
            "dreamed": self.dreamed,
            "attempts": {f"{job}#{segment}": n for (job, segment), n in self.attempts.items()},
            "workers": {f"{job}#{segment}": w for (job, segment), w in self.workers.items()},
        }


@dataclass
class WorkerPool:
    """N dream workers and one progress board on the connected Ray instance."""

    actors: list[Any]
    board: Any
    threads: int

    @classmethod
    def start(
        cls, config: Config, workers: int | None, *, cpus_per_worker: float | None = None, log_level: str = "WARNING"
    ) -> WorkerPool:
        """``workers`` actors (None: one per node) sharing the CPUs and GPUs free now."""
        ray = import_ray()
        free = ray.available_resources()
        cpus = free.get("CPU") or ray.cluster_resources().get("CPU", 1.0)
        gpus = free.get("GPU", 0.0)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        count = workers or max(1, len(nodes))
        if count < 1:
            raise ConfigError(f"--workers must be >= 1, got {count}")
        per_worker = cpus_per_worker or cpus / count
        gpu_share = min(1.0, gpus / count) if gpus else 0.0
        threads = max(1, math.floor(per_worker))
        actor = ray.remote(DreamWorker).options(
            num_cpus=per_worker,
            num_gpus=gpu_share,
            max_restarts=RESTARTS,
            max_task_retries=RESTARTS,
            scheduling_strategy="SPREAD",
        )
        board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        actors = [actor.remote(config, threads, log_level) for _ in range(count)]
        started = time.monotonic()
        try:
            names = ray.get([a.ready.remote() for a in actors])
        except ray.exceptions.RayActorError as exc:
            for a in actors:
                ray.kill(a)
            cause = getattr(exc, "cause", None) or exc
            raise ModelError(f"the dream workers could not start: {_first_line(cause)}") from None
        log.info("%d dream workers ready in %.1f s (%.2g CPUs and %d threads each): %s",
                 count, time.monotonic() - started, per_worker, threads, ", ".join(names))  # fmt: skip
        return cls(actors, board, threads)

    def close(self) -> None:
        ray = import_ray()
        for a in [*self.actors, self.board]:
            try:
                ray.kill(a)
            except Exception:  # already gone: nothing to release
                pass
        self.actors = []


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def disconnect(started: bool) -> None:
    if started:
        import_ray().shutdown()


__all__ = ["INSTALL_HINT", "ProgressBoard", "DreamWorker", "WorkerPool", "connect", "disconnect", "import_ray"]
