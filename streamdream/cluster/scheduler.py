"""Handing segments to workers, collecting the pieces, joining each output when it is complete.

A job's path, top to bottom:
1. ``prepare_job``: the work folder's plan, or a new one (scan the input, cut it into
   segments); the pieces already finished are not dreamed again.
2. ``Scheduler.run``: each idle worker gets the next segment of any job (one queue for
   all the files of a batch, so no worker waits for another file's last segment); each
   piece that comes back is saved to its job's work folder.
3. When a job's last piece is in, its pieces are joined into the output (stream copy
   with the input's audio) and the work folder is removed.

Faults: a worker that dies (its process, or its node: ``ActorDiedError``,
``ActorUnavailableError``, a node that left) leaves the pool; its segment goes back to the
front of the queue and runs on another worker, and the pool starts a replacement where the
cluster has room (not on a node whose worker became unreachable, for ``SUSPECT_S`` or until
Ray declares it dead). Every ``TEND_S`` the scheduler also looks at the nodes: workers on a
node that left are given up at once, and a node that joined gets workers. A piece is saved only
when the driver holds it, so a segment finished by a lost worker but not fetched yet is
dreamed again, and a segment is saved once. A segment whose worker dies on a node that is
still up (the segment may be what kills it) fails its job after ``SEGMENT_TRIES`` workers.
A segment that fails for a reason of its own (a damaged input) fails its job only; the
other jobs go on. When no worker is left and no node has room for one, the run stops like
a stopped one with ``ClusterLostError``. On the stop event every worker is asked to cancel;
finished pieces stay for a resume and the finished beginning of each output is joined so
it plays.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, OutputConfig
from ..errors import SinkError, StreamdreamError
from ..frames import SourceInfo
from ..log import redact_url
from ..runtime.interrupts import stop_watched
from ..runtime.workers import StopToken
from ..sinks.file import split_file_uri
from .join import frame_duration, join_pieces
from .plan import SegmentPolicy, plan_segments, scan_input
from .pool import SUSPECT_S, ClusterLostError, Member, WorkerPool, format_request, import_ray
from .progress import ClusterProgress
from .workdir import Plan, WorkFolder, input_identity, settings_hash
from .worker import PieceResult, SegmentTask

log = logging.getLogger(__name__)

POLL_S = 0.5
TEND_S = 2.0  # how often the nodes are looked at (workers of nodes that left, room on new ones)
CANCEL_GRACE_S = 30.0  # how long stopped workers get to notice before they are killed
SEGMENT_TRIES = 3  # workers a segment may outlive on nodes that stay up before its job fails


@dataclass
class Job:
    """One input dreamed into one output file."""

    name: str
    input: str
    output: OutputConfig
    output_path: Path
    folder: WorkFolder
    plan: Plan
    info: SourceInfo
    seed: int
    done: set[int] = field(default_factory=set)
    reused: int = 0  # segments found finished in the work folder
    error: BaseException | None = None
    joined: bool = False

    @property
    def frames(self) -> int:
        return self.plan.scan.frame_count

    def frames_done(self) -> int:
        return sum(self.plan.segments[i].frames for i in self.done)

    def task(self, index: int) -> SegmentTask:
        seg = self.plan.segments[index]
        return SegmentTask(self.name, self.input, self.output, self.info, seg, self.plan.scan.pts[seg.first : seg.end],
                           self.plan.scan.time_base, self.seed)  # fmt: skip


def prepare_job(config: Config, input_path: str, output: OutputConfig, policy: SegmentPolicy, name: str | None = None) -> Job:
    """Plan (or reload the plan of) ``input_path`` -> ``output``; raise SourceError for a bad input."""

    output_path = Path(split_file_uri(output.uri)[0])
    folder = WorkFolder(output_path)
    if "://" not in input_path:  # workers run in other folders (and on other machines): give them the whole path
        input_path = os.path.abspath(input_path)
    identity = input_identity(input_path)

    def make() -> Plan:
        started = time.monotonic()
        scan = scan_input(input_path, policy.scene_cut)
        segments = tuple(plan_segments(scan, policy))
        log.info("%s: %d frames, %d shots, %d segments (scanned in %.1f s)", redact_url(input_path), scan.frame_count,
                 len(scan.cuts) + 1, len(segments), time.monotonic() - started)  # fmt: skip
        return Plan(scan, segments)

    plan = folder.plan(identity, settings_hash(config, output, policy), make)
    scan = plan.scan
    info = SourceInfo(uri=redact_url(input_path), width=scan.width, height=scan.height, fps=scan.fps, live=False,
                      frame_count=scan.frame_count, has_audio=scan.has_audio)  # fmt: skip
    done = folder.done(plan)
    return Job(name or output_path.name, input_path, output, output_path, folder, plan, info,
               config.dream.seed or 0, done=done, reused=len(done))  # fmt: skip


def join_job(job: Job, partial: bool = False) -> int:
    """Join the job's finished pieces into its output: all of them, or (``partial``) the
    finished beginning. Returns the frames joined."""
    segments = job.plan.segments
    count = 0
    while count < len(segments) and segments[count].index in job.done:
        count += 1
    if count == 0:
        return 0
    scan = job.plan.scan
    last = segments[count - 1].end - 1
    audio = job.input if scan.has_audio else None
    join_pieces([job.folder.piece(i) for i in range(count)], job.output, job.output_path,
                audio_source=audio, end_seconds=scan.seconds(last) + frame_duration(scan.fps))  # fmt: skip
    if not partial:
        job.folder.remove()
        job.joined = True
    return last + 1


class Scheduler:
    """Runs jobs on a pool (see the module doc)."""

    def __init__(self, pool: WorkerPool, stop: StopToken, progress: ClusterProgress) -> None:
        self.ray = import_ray()
        self.pool = pool
        self.stop = stop
        self.progress = progress
        self.tries: Counter = Counter()
        self.stopped = False
        self.lost: ClusterLostError | None = None  # set when no worker was left
        self.lost_nodes: set[str] = set()
        self.idle: list[Member] = []
        self.in_flight: dict[Any, tuple[Member, Job, int]] = {}  # ref -> (worker, job, segment)
        self.queue: deque[tuple[Job, int]] = deque()
        # a pool serves job after job (batch, tests): count only what this run dreams
        self.dreamed_before = self.ray.get(pool.board.snapshot.remote())["dreamed"]

    def run(self, jobs: list[Job]) -> None:
        with stop_watched():  # a Ctrl-C sets the stop event: the loop cancels the workers itself
            self._run(jobs)

    def _run(self, jobs: list[Job]) -> None:
        self.queue = deque((job, s.index) for job in jobs for s in job.plan.segments if s.index not in job.done)
        for job in jobs:
            if job.error is None and len(job.done) == len(job.plan.segments):
                self._finish(job)
        self.idle = [m for m in self.pool.members if m.ready]
        self.progress.workers_now(self._workers_by_node())
        next_tend = time.monotonic() + TEND_S
        while self._work_left():
            if self.stop.is_set():
                self._cancel(jobs)
                break
            if time.monotonic() >= next_tend:
                self._tend()
                next_tend = time.monotonic() + TEND_S
            self._assign()
            if not self.in_flight and not self.pool.members:
                self._tend()  # last look: a node may have room now
                if not self.pool.members and not self.pool.suspected(self.pool.alive_nodes()):
                    self.lost = self._nothing_left()
                    break
            self._wait()
            self._show(jobs)
        self._show(jobs)
        if self.stopped or self.lost is not None:
            for job in jobs:
                self._keep_partial(job)
        self.progress.summary()

    def _work_left(self) -> bool:
        return bool(self.in_flight) or any(job.error is None for job, _ in self.queue)

    def _assign(self) -> None:
        while self.idle and self.queue:
            job, index = self.queue.popleft()
            if job.error is not None:
                continue
            member = self.idle.pop()
            self.in_flight[member.actor.dream.remote(job.task(index), self.pool.board)] = (member, job, index)

    def _wait(self) -> None:
        """Wait a little for a piece or a starting worker, and handle what came."""
        starting = {m.ready_ref: m for m in self.pool.members if not m.ready}
        refs = [*self.in_flight, *starting]
        if not refs:
            time.sleep(POLL_S)  # workers exist but none is ready or busy: wait for the next look
            return
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=POLL_S)
        for ref in ready:
            if ref in starting:
                self._started(starting[ref])
            elif ref in self.in_flight:
                member, job, index = self.in_flight.pop(ref)
                if self._collect(ref, member, job, index):
                    self.idle.append(member)

    # --- the cluster's nodes and workers -------------------------------------------------

    def _tend(self) -> None:
        """Give up the workers of nodes that left; start workers where there is room."""
        nodes = self.pool.alive_nodes()
        for member in [m for m in self.pool.members if m.node not in nodes]:
            self._worker_lost(member, "its node left the cluster", node_gone=True)
        for member, why in self.pool.grow(nodes=nodes):
            log.info("starting a dream worker on node %s (%s)", member.label, why)
            self.progress.worker_started(member.label, why)

    def _started(self, member: Member) -> None:
        error = self.pool.started(member)
        if error is None:
            log.info("dream worker %s ready on node %s", member.name, member.label)
            self.idle.append(member)
        else:
            node_gone = member.node not in self.pool.alive_nodes()
            log.warning("a dream worker could not start on node %s: %s", member.label, error)
            self.progress.worker_lost(member.label)
            if node_gone:
                self.lost_nodes.add(member.label)
                self.pool.suspect[member.node] = time.monotonic() + SUSPECT_S
        self.progress.workers_now(self._workers_by_node())

    def _worker_lost(self, member: Member, why: str, *, node_gone: bool) -> None:
        """``member`` is gone: its segment (if any) goes back to the queue; a replacement starts."""
        segment = next(((ref, job, index) for ref, (m, job, index) in self.in_flight.items() if m is member), None)
        if member in self.idle:
            self.idle.remove(member)
        self.pool.lose(member)
        self.progress.worker_lost(member.label)
        if node_gone:
            self.lost_nodes.add(member.label)
            self.pool.suspect[member.node] = time.monotonic() + SUSPECT_S  # no new worker there before Ray says
        if segment is not None:
            ref, job, index = segment
            del self.in_flight[ref]
            self._retry(job, index, member, node_gone)
        log.warning("dream worker %s on node %s lost (%s); %d workers left", member.name or "(starting)", member.label, why,
                    sum(m.ready for m in self.pool.members))  # fmt: skip
        self.progress.workers_now(self._workers_by_node())

    def _retry(self, job: Job, index: int, member: Member, node_gone: bool) -> None:
        self.pool.board.abandoned.remote(job.name, index)
        if not node_gone:  # the worker died on a node that is up: perhaps the segment killed it
            self.tries[(job.name, index)] += 1
        if self.tries[(job.name, index)] >= SEGMENT_TRIES:
            self._fail(job, StreamdreamError(f"{job.input}: segment {index} failed on {SEGMENT_TRIES} workers"))
            return
        self.queue.appendleft((job, index))
        self.progress.segment_retried(member.label)
        log.warning("%s: segment %d goes back to the queue (its worker on node %s was lost)", job.output_path, index, member.label)

    def _workers_by_node(self) -> dict[str, int]:
        return dict(Counter(m.label for m in self.pool.members if m.ready))

    def _nothing_left(self) -> ClusterLostError:
        lost = f" (nodes lost: {', '.join(sorted(self.lost_nodes))})" if self.lost_nodes else ""
        broken = "".join(f"; node {self.pool.label(n)}: {why}" for n, why in self.pool.broken.items())
        return ClusterLostError(f"no dream worker is left{lost} and no node of the cluster has room for one "
                                f"(each asks for {format_request(self.pool.request)}{broken})")  # fmt: skip

    # --- one finished task ---------------------------------------------------------------

    def _collect(self, ref, member: Member, job: Job, index: int) -> bool:
        """Handle one finished task; False when its worker is gone for good."""
        ray = self.ray
        fetching = time.monotonic()
        try:
            piece: PieceResult = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            node_gone = isinstance(exc, ray.exceptions.ActorUnavailableError) or member.node not in self.pool.alive_nodes()
            self.in_flight[ref] = (member, job, index)  # _worker_lost takes the segment back from here
            self._worker_lost(member, _short(exc), node_gone=node_gone)
            return False
        except ray.exceptions.ObjectLostError as exc:
            # finished, but the piece was on a node that left before the driver had it: dream it again
            node_gone = member.node not in self.pool.alive_nodes()
            if node_gone:
                self.in_flight[ref] = (member, job, index)
                self._worker_lost(member, f"its piece was lost: {_short(exc)}", node_gone=True)
                return False
            self._retry(job, index, member, node_gone=True)
            return True
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            if not self.stop.is_set():
                self._fail(job, cause)
            return True
        if index in job.done:  # never saved twice (cannot happen: each segment is in flight once)
            log.warning("%s: segment %d came back twice; the second is dropped", job.output_path, index)
            return True
        job.folder.save_piece(index, piece.data)
        job.done.add(index)
        self.pool.board.finished.remote(job.name, index, piece.frames)
        self.progress.piece(piece, time.monotonic() - fetching, self.pool.label(piece.node) if piece.node else "")
        if len(job.done) == len(job.plan.segments):
            self._finish(job)
        return True

    def _finish(self, job: Job) -> None:
        try:
            started = time.monotonic()
            join_job(job)
            self.progress.joined(time.monotonic() - started)
            log.info("wrote %s (%d frames)", job.output_path, job.frames)
        except StreamdreamError as exc:
            self._fail(job, exc)

    def _fail(self, job: Job, error: BaseException) -> None:
        if job.error is None:
            job.error = error
            self.pool.board.cancel.remote(job.name)
            log.error("%s: %s", redact_url(job.input), redact_url(str(error)))

    # --- stopping ------------------------------------------------------------------------

    def _cancel(self, jobs: list[Job]) -> None:
        ray = self.ray
        self.stopped = True
        for job in jobs:
            self.pool.board.cancel.remote(job.name)
        self.queue.clear()  # a segment a lost worker hands back now is not started again
        deadline = time.monotonic() + CANCEL_GRACE_S
        while self.in_flight and time.monotonic() < deadline:
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=POLL_S)
            for ref in ready:
                if ref in self.in_flight:
                    member, job, index = self.in_flight.pop(ref)
                    self._collect(ref, member, job, index)  # a piece finished meanwhile is kept
        for member, _job, _index in list(self.in_flight.values()):
            self.pool.lose(member)  # stuck: killed (a pool that serves another run replaces it)
        self.in_flight.clear()

    def _keep_partial(self, job: Job) -> None:
        if job.joined or not job.done:
            return
        try:
            frames = join_job(job, partial=True)
        except StreamdreamError as exc:
            log.error("%s: could not join the finished segments: %s", job.output_path, exc)
            return
        if frames:
            log.info("%s: the first %d of %d frames are in the output; %d of %d segments are kept in %s for a resume",
                     job.output_path, frames, job.frames, len(job.done), len(job.plan.segments), job.folder.path)  # fmt: skip

    def _show(self, jobs: list[Job]) -> None:
        snapshot = self.ray.get(self.pool.board.snapshot.remote())
        finished = sum(job.frames_done() for job in jobs)
        segments = sum(len(job.done) for job in jobs)
        self.progress.update(finished + snapshot["in_flight"], segments, snapshot["dreamed"] - self.dreamed_before)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def check_not_same(input_path: str, output_path: Path) -> None:
    if Path(input_path).resolve() == output_path.resolve():
        raise SinkError(f"output {output_path} is the input file; give another output path")


__all__ = ["Job", "Scheduler", "check_not_same", "join_job", "prepare_job"]
