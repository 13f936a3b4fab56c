"""Handing segments to workers, collecting the pieces, joining each output when it is complete.

A job's path, top to bottom:
1. ``prepare_job``: the work folder's plan, or a new one (scan the input, cut it into
   segments); the pieces already finished are not dreamed again.
2. ``Scheduler.run``: each idle worker gets the next segment of any job (one queue for
   all the files of a batch, so no worker waits for another file's last segment); each
   piece that comes back is saved to its job's work folder.
3. When a job's last piece is in, its pieces are joined into the output (stream copy
   with the input's audio) and the work folder is removed.

Faults: a worker that dies is restarted by Ray and its segment retried there; a worker
that stays dead leaves the pool and its segment goes to another. A segment that fails
for a reason of its own (a damaged input) fails its job only; the other jobs go on.
On the stop event every worker is asked to cancel; finished pieces stay for a resume and
the finished beginning of each output is joined so it plays.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event

from ..config import Config, OutputConfig
from ..errors import SinkError, StreamdreamError
from ..frames import SourceInfo
from ..log import redact_url
from ..runtime.interrupts import stop_watched
from ..sinks.file import split_file_uri
from .join import frame_duration, join_pieces
from .plan import SegmentPolicy, plan_segments, scan_input
from .pool import WorkerPool, import_ray
from .progress import ClusterProgress
from .workdir import Plan, WorkFolder, input_identity, settings_hash
from .worker import PieceResult, SegmentTask

log = logging.getLogger(__name__)

POLL_S = 0.5
CANCEL_GRACE_S = 30.0  # how long stopped workers get to notice before they are killed
SEGMENT_TRIES = 3  # workers a segment may outlive before its job fails


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

    def __init__(self, pool: WorkerPool, stop: Event, progress: ClusterProgress) -> None:
        self.ray = import_ray()
        self.pool = pool
        self.stop = stop
        self.progress = progress
        self.tries: Counter = Counter()
        self.stopped = False
        # a pool serves job after job (batch, tests): count only what this run dreams
        self.dreamed_before = self.ray.get(pool.board.snapshot.remote())["dreamed"]

    def run(self, jobs: list[Job]) -> None:
        with stop_watched():  # a Ctrl-C sets the stop event: the loop cancels the workers itself
            self._run(jobs)

    def _run(self, jobs: list[Job]) -> None:
        ray = self.ray
        queue = deque((job, s.index) for job in jobs for s in job.plan.segments if s.index not in job.done)
        for job in jobs:
            if job.error is None and len(job.done) == len(job.plan.segments):
                self._finish(job)
        idle = list(self.pool.actors)
        in_flight: dict = {}  # ref -> (actor, job, segment)
        while queue or in_flight:
            if self.stop.is_set():
                self._cancel(jobs, in_flight)
                break
            while idle and queue:
                job, index = queue.popleft()
                if job.error is not None:
                    continue
                actor = idle.pop()
                in_flight[actor.dream.remote(job.task(index), self.pool.board)] = (actor, job, index)
            if not in_flight:
                if queue and not self.pool.actors:
                    raise StreamdreamError("every dream worker died; the finished segments are kept for a resume")
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
            for ref in ready:
                actor, job, index = in_flight.pop(ref)
                if self._collect(ref, actor, job, index, queue):
                    idle.append(actor)
            self._show(jobs)
        self._show(jobs)
        if self.stopped:
            for job in jobs:
                self._keep_partial(job)

    # --- one finished task ---------------------------------------------------------------

    def _collect(self, ref, actor, job: Job, index: int, queue: deque) -> bool:
        """Handle one finished task; False when its worker is gone for good."""
        ray = self.ray
        fetching = time.monotonic()
        try:
            piece: PieceResult = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            self.pool.actors = [a for a in self.pool.actors if a != actor]
            self.tries[(job.name, index)] += 1
            log.warning("a dream worker died for good (%s); %d left", _short(exc), len(self.pool.actors))
            if self.tries[(job.name, index)] >= SEGMENT_TRIES:
                self._fail(job, StreamdreamError(f"{job.input}: segment {index} failed on {SEGMENT_TRIES} workers"))
            else:
                queue.appendleft((job, index))
            return False
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            if not self.stop.is_set():
                self._fail(job, cause)
            return True
        job.folder.save_piece(index, piece.data)
        job.done.add(index)
        self.pool.board.finished.remote(job.name, index, piece.frames)
        self.progress.piece(piece, time.monotonic() - fetching)
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

    def _cancel(self, jobs: list[Job], in_flight: dict) -> None:
        ray = self.ray
        self.stopped = True
        for job in jobs:
            self.pool.board.cancel.remote(job.name)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while in_flight and time.monotonic() < deadline:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
            for ref in ready:
                actor, job, index = in_flight.pop(ref)
                self._collect(ref, actor, job, index, deque())  # a piece finished meanwhile is kept
        for actor, _job, _index in in_flight.values():
            ray.kill(actor)

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
