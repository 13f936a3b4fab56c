"""Ray: connecting, the dream workers (one actor each, model loaded once) and the progress board.

Ray is an optional extra and is imported here only. A local instance (``--workers N``)
listens on loopback only and starts no dashboard; ``--cluster ADDRESS`` joins an existing
cluster (``ray start --head`` on one machine, ``ray://HOST:10001`` through Ray Client).

The pool follows the cluster: each worker is pinned to a node with room for it, and the
scheduler asks the pool to grow whenever a node joins or a worker is lost. Ray restarts
nothing itself (no ``max_restarts``, no task retries): a worker whose process or node dies
leaves the pool, its segment goes back to the scheduler's queue, and a replacement starts
wherever the cluster has room. A segment is returned whole or not at all, so nothing is
lost or written twice.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import cv2

from ..config import Config
from ..errors import ConfigError, ModelError, StreamdreamError
from ..log import import_tensorflow, setup_logging
from .worker import PieceResult, SegmentDreamer, SegmentTask

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'streamdream[cluster]'"
CANCEL_CHECK_S = 0.5  # how often a worker asks whether its job was cancelled
POLL_S = 0.5
START_TIMEOUT_S = 600.0  # a worker not ready by then (no room on its node after all) is given up
# a node whose worker became unreachable gets no new worker for this long, unless Ray says sooner that
# it is gone: Ray takes about 30 s to declare a killed node dead (missed heartbeats)
SUSPECT_S = 30.0


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


def on_loopback(address: str | None) -> bool:
    """A local instance, or a cluster on this machine's loopback: this driver binds loopback too."""
    return not address or address.startswith(("127.0.0.1:", "localhost:"))


def connect(address: str | None, object_store_mb: int | None = None) -> bool:
    """Join ``address`` or start a local instance; True when this call started the connection."""
    ray = import_ray(local=on_loopback(address))
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

        piece = self.dreamer.dream(task, report=lambda n: board.frames.remote(*key, n), cancelled=cancelled)
        return replace(piece, node=ray.get_runtime_context().get_node_id())


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

    def abandoned(self, job: str, segment: int) -> None:
        """The segment's worker was lost: its frames are no longer in flight."""
        self.frames_in_flight.pop((job, segment), None)

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
class Member:
    """One dream worker of the pool: a Ray actor pinned to a node, starting or ready."""

    actor: Any
    node: str  # Ray node id (hex)
    label: str  # "IP/node id's first 8 digits", for logs and metrics
    ready_ref: Any  # resolves once the model is loaded
    since: float  # when it was asked for
    name: str = ""  # host:pid, once ready

    @property
    def ready(self) -> bool:
        return bool(self.name)


class WorkerPool:
    """Dream workers on the connected Ray instance, following its nodes (see the module doc).

    Each worker asks for ``request`` (CPUs, GPUs, custom resources) and is pinned to a node
    that has room for it; ``grow`` starts workers wherever there is room (up to ``limit``
    workers, None: as many as the nodes hold), ``lose`` lets a dead one go.
    """

    def __init__(self, config: Config, request: dict[str, float], threads: int, limit: int | None, board: Any,
                 log_level: str = "WARNING") -> None:  # fmt: skip
        self.config = config
        self.request = request
        self.threads = threads
        self.limit = limit
        self.board = board
        self.log_level = log_level
        self.members: list[Member] = []
        self.unreplaced = 0  # workers lost and not replaced yet
        self.broken: dict[str, str] = {}  # node id -> why no worker could start there
        self.suspect: dict[str, float] = {}  # node id -> until when it gets no new worker
        self._labels: dict[str, str] = {}

    @classmethod
    def start(
        cls,
        config: Config,
        workers: int | None,
        *,
        cpus_per_worker: float | None = None,
        resources: dict[str, float] | None = None,
        log_level: str = "WARNING",
    ) -> WorkerPool:
        """``workers`` actors (None: as many as the nodes hold, one per node by default), ready.

        ``resources``: custom Ray resources each worker also asks for, so that only the
        nodes started with them (``ray start --resources '{"dream": 1}'``) run workers.
        """
        ray = import_ray()
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        custom = {k: float(v) for k, v in (resources or {}).items()}
        nodes = [n for n in ray.nodes() if n.get("Alive") and fits(n["Resources"], custom) > 0]
        if not nodes:
            raise ClusterLostError(f"no node of the cluster has the resources a dream worker asks for ({format_request(custom)})")
        if cpus_per_worker:
            per_worker = cpus_per_worker
        elif workers:
            free = ray.available_resources()
            per_worker = (free.get("CPU") or ray.cluster_resources().get("CPU", 1.0)) / workers
        else:  # one worker on the smallest node, more on bigger ones
            per_worker = min(n["Resources"].get("CPU", 1.0) for n in nodes) or 1.0
        per_worker = max(0.0001, math.floor(per_worker * 1e4) / 1e4)  # Ray counts in 1/10,000ths
        gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
        count = workers or len(nodes)
        request = {"CPU": per_worker, **custom}
        if gpus:
            request["GPU"] = math.floor(min(1.0, gpus / count) * 1e4) / 1e4
        # on the driver's node: the board goes only when the driver does
        board = ray.remote(ProgressBoard).options(num_cpus=0, scheduling_strategy=_on_node(_driver_node(), soft=False)).remote()
        pool = cls(config, request, max(1, math.floor(per_worker)), workers, board, log_level)
        started = time.monotonic()
        pool.grow("initial")
        errors = pool.wait_ready(START_TIMEOUT_S)
        if not any(m.ready for m in pool.members):
            pool.close()
            if errors:
                raise ModelError(f"the dream workers could not start: {errors[0]}")
            raise ClusterLostError(f"no dream worker could start within {START_TIMEOUT_S:.0f} s (each asks for {format_request(request)})")
        ready = [m for m in pool.members if m.ready]
        log.info("%d dream workers ready in %.1f s (%s and %d threads each): %s", len(ready), time.monotonic() - started,
                 format_request(request), pool.threads, ", ".join(f"{m.name} on {m.label}" for m in ready))  # fmt: skip
        return pool

    # --- the cluster's nodes ---------------------------------------------------------------

    def alive_nodes(self) -> dict[str, dict[str, Any]]:
        """Node id -> Ray's node record, for the nodes alive now."""
        ray = import_ray()
        nodes = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
        for node_id, n in nodes.items():
            self._labels.setdefault(node_id, f"{n.get('NodeManagerAddress', '?')}/{node_id[:8]}")
        return nodes

    def label(self, node: str) -> str:
        return self._labels.get(node, node[:8])

    def room(self, nodes: dict[str, dict[str, Any]]) -> dict[str, int]:
        """Workers each alive node could take besides ours (by its total resources)."""
        ours = Counter(m.node for m in self.members)
        now = time.monotonic()
        return {node_id: max(0, fits(n["Resources"], self.request) - ours[node_id])
                for node_id, n in nodes.items() if node_id not in self.broken and self.suspect.get(node_id, 0.0) <= now}  # fmt: skip

    def suspected(self, nodes: dict[str, dict[str, Any]]) -> list[str]:
        """Nodes Ray still lists as alive whose worker became unreachable a moment ago."""
        now = time.monotonic()
        return [node_id for node_id, until in self.suspect.items() if until > now and node_id in nodes]

    # --- starting and losing workers -------------------------------------------------------

    def grow(self, reason: str | None = None, nodes: dict[str, dict[str, Any]] | None = None) -> list[tuple[Member, str]]:
        """Start workers where nodes have room (up to ``limit``); returns each with why it
        was started: ``initial``, ``replacement`` (for a lost one) or ``added`` (a node joined)."""
        ray = import_ray()
        nodes = self.alive_nodes() if nodes is None else nodes
        room = self.room(nodes)
        started: list[tuple[Member, str]] = []
        actor = ray.remote(DreamWorker)
        # one node after another, a worker each round: a limited pool spreads over the nodes
        slots = [node_id for round_ in range(max(room.values(), default=0)) for node_id in room if room[node_id] > round_]
        for node_id in slots:
            if self.limit is not None and len(self.members) >= self.limit:
                return started
            handle = actor.options(
                num_cpus=self.request.get("CPU", 0.0),
                num_gpus=self.request.get("GPU", 0.0),
                resources={k: v for k, v in self.request.items() if k not in ("CPU", "GPU")},
                max_restarts=0,  # a lost worker is replaced by the pool, where the cluster has room
                max_task_retries=0,  # and its segment goes back to the scheduler's queue
                scheduling_strategy=_on_node(node_id, soft=False),
            ).remote(self.config, self.threads, self.log_level)
            member = Member(handle, node_id, self.label(node_id), handle.ready.remote(), time.monotonic())
            self.members.append(member)
            why = reason or ("replacement" if self.unreplaced else "added")
            if why == "replacement":
                self.unreplaced -= 1
            started.append((member, why))
        return started

    def wait_ready(self, timeout: float) -> list[str]:
        """Wait for the starting workers; those that fail leave the pool. Returns their errors."""
        ray = import_ray()
        deadline = time.monotonic() + timeout
        errors = []
        while time.monotonic() < deadline:
            starting = {m.ready_ref: m for m in self.members if not m.ready}
            if not starting:
                break
            done, _ = ray.wait(list(starting), num_returns=1, timeout=min(POLL_S, max(0.01, deadline - time.monotonic())))
            for ref in done:
                error = self.started(starting[ref])
                if error:
                    errors.append(error)
        return errors

    def started(self, member: Member) -> str | None:
        """``member``'s ready call came back: it is ready (None), or it failed (why; it leaves)."""
        ray = import_ray()
        try:
            member.name = ray.get(member.ready_ref)
            return None
        except ray.exceptions.RayActorError as exc:
            cause = getattr(exc, "cause", None) or exc
            if getattr(exc, "actor_init_failed", False):  # the model failed there: no point trying that node again
                self.broken[member.node] = _first_line(cause)
            self.lose(member)
            return _first_line(cause)

    def lose(self, member: Member) -> None:
        """``member`` is gone (or must go): it leaves the pool for good."""
        ray = import_ray()
        if member in self.members:
            self.members.remove(member)
            self.unreplaced += 1
        try:
            ray.kill(member.actor, no_restart=True)
        except Exception:  # already gone: nothing to release
            pass

    @property
    def actors(self) -> list[Any]:
        """The ready workers' actor handles."""
        return [m.actor for m in self.members if m.ready]

    def close(self) -> None:
        ray = import_ray()
        for a in [*(m.actor for m in self.members), self.board]:
            try:
                ray.kill(a)
            except Exception:  # already gone: nothing to release
                pass
        self.members = []


class ClusterLostError(StreamdreamError):
    """No dream worker is left and no node has room for one; the finished segments are kept."""

    exit_code = 1
    resumable = True  # the command line prints the command that resumes


def fits(resources: dict[str, float], request: dict[str, float]) -> int:
    """How many workers asking for ``request`` a node with ``resources`` holds."""
    counts = [math.floor(resources.get(k, 0.0) / v + 1e-6) for k, v in request.items() if v > 0]
    return min(counts) if counts else 1


def format_request(request: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in request.items() if v > 0) or "no resources"


def _driver_node() -> str:
    return import_ray().get_runtime_context().get_node_id()


def _on_node(node_id: str, soft: bool):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415 - loads Ray (the cluster extra)

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=soft)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def disconnect(started: bool) -> None:
    if started:
        import_ray().shutdown()


__all__ = ["INSTALL_HINT", "ClusterLostError", "DreamWorker", "Member", "ProgressBoard", "WorkerPool", "connect", "disconnect", "on_loopback",
           "fits", "format_request", "import_ray"]
