"""What `streamdream run --workers/--cluster` and `streamdream batch` do, from a validated Config.

``dream_files`` is the one way in: a list of (input, output) pairs, dreamed on a pool of
Ray workers. ``run_command`` checks that the run is a file -> file job and calls it for
one pair; ``batch_command`` (in batch.py) for each file of a folder.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..app import audio_source_of
from ..config import Config, OutputConfig, with_overrides
from ..errors import ConfigError, SinkError, SourceError, StreamdreamError
from ..log import redact_url
from ..runtime.interrupts import owned
from ..runtime.workers import StopToken
from ..service.http import start_metrics
from ..sinks.file import CONTAINERS, split_file_uri
from ..sources import parse_uri
from .plan import SegmentPolicy
from .pool import ClusterLostError, WorkerPool, connect, disconnect, import_ray, on_loopback
from .progress import ClusterProgress
from .scheduler import Scheduler, check_not_same, prepare_job
from .workdir import MANIFEST, WorkFolder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileResult:
    input: str
    output: Path
    frames: int = 0
    segments: int = 0
    reused: int = 0  # segments found finished from an earlier run
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def cluster_address(cluster: str | None) -> str | None:
    """``--cluster ADDRESS``; ``--cluster`` alone takes RAY_ADDRESS, else a cluster started here."""
    if cluster is None:
        return None
    return cluster or os.environ.get("RAY_ADDRESS") or "auto"


def dream_files(
    config: Config,
    pairs: list[tuple[str, OutputConfig]],
    stop: StopToken,
    *,
    workers: int | None = None,
    address: str | None = None,
    policy: SegmentPolicy = SegmentPolicy(),
    resources: dict[str, float] | None = None,
    pool=None,
    observer=None,
    stats: dict | None = None,
) -> list[FileResult]:
    """Dream every (input, output) pair on Ray workers; a bad input is reported, not fatal.

    ``pool``: a running ``WorkerPool`` to use (and leave running), else one is started
    (on a local instance of ``workers`` workers, or on the cluster at ``address``).
    ``resources``: custom Ray resources each worker asks for (only nodes that have them dream).
    ``stats``, if given, receives the pieces' results and the driver's transfer and join times.
    When no worker is left and no node has room for one, each unfinished file's error is a
    ``ClusterLostError`` (resumable: the finished segments are kept).
    """

    import_ray(local=pool is None and on_loopback(address))  # without Ray, say how to get it before anything is written
    results: dict[int, FileResult] = {}
    jobs = []
    for number, (input_path, output) in enumerate(pairs):
        try:
            check_not_same(input_path, Path(output.uri.partition("?")[0]))
            jobs.append((number, prepare_job(config, input_path, output, policy, name=f"{output.uri}@{uuid.uuid4().hex[:8]}")))
        except StreamdreamError as exc:
            log.error("%s: skipped: %s", redact_url(input_path), redact_url(str(exc)))
            results[number] = FileResult(input_path, Path(output.uri.partition("?")[0]), error=exc)
    if jobs:
        started = False
        own_pool = pool is None
        lost = None
        try:
            if own_pool:
                started = connect(address)
                pool = WorkerPool.start(config, workers, resources=resources)
            progress = ClusterProgress(
                total_frames=sum(j.frames for _, j in jobs),
                done_frames=sum(j.frames_done() for _, j in jobs),
                total_segments=sum(len(j.plan.segments) for _, j in jobs),
                done_segments=sum(len(j.done) for _, j in jobs),
                workers=len(pool.actors),
                enabled=config.pipeline.progress,
                observer=observer,
            )
            if own_pool:
                for member in pool.members:
                    progress.worker_started(member.label, "initial")
            scheduler = Scheduler(pool, stop, progress)
            try:
                scheduler.run([j for _, j in jobs])
                lost = scheduler.lost
            finally:
                progress.close()
                if stats is not None:
                    stats.update(pieces=progress.pieces, transfer_seconds=progress.transfer_seconds,
                                 join_seconds=progress.join_seconds)  # fmt: skip
        finally:
            if own_pool and pool is not None:
                pool.close()
            if own_pool:
                disconnect(started)
        for number, job in jobs:
            error = job.error
            if error is None and not job.joined and lost is not None:
                error = ClusterLostError(f"{lost}; {_kept(job)}")
            elif error is None and not job.joined:
                error = StoppedError(
                    f"{job.output_path}: stopped with {len(job.done)} of {len(job.plan.segments)} segments done; "
                    "run the same command again to resume"
                )
            results[number] = FileResult(job.input, job.output_path, job.frames, len(job.plan.segments), job.reused, error)
    return [results[n] for n in range(len(pairs))]


def _kept(job) -> str:
    if not job.done:
        return f"{job.output_path}: no segment was finished"
    return (f"{job.output_path}: {len(job.done)} of {len(job.plan.segments)} segments are finished and kept in "
            f"{job.folder.path}")  # fmt: skip


class StoppedError(StreamdreamError):
    """Stopped (Ctrl-C, SIGTERM) before the output was complete; the work folder is kept."""

    exit_code = 130
    resumable = True  # the command line prints the command that resumes


def resuming(config: Config) -> Config:
    """``config`` with ``overwrite`` on each file output that has a work folder beside it: such an
    output is the finished beginning a stopped run joined, and the run that resumes replaces it."""
    outputs = []
    for output in config.outputs:
        if _is_file_output(output) and (WorkFolder(Path(split_file_uri(output.uri)[0])).path / MANIFEST).is_file():
            output = output.model_copy(update={"overwrite": True})
        outputs.append(output.model_dump())
    return with_overrides(config, outputs=outputs)


def run_command(config: Config, stop: StopToken, *, workers: int | None, cluster: str | None,
                resources: dict[str, float] | None = None) -> int:  # fmt: skip
    """`streamdream run --workers N | --cluster [ADDRESS]`: one file in, one file out."""

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if config.pipeline.max_frames is not None:
        raise ConfigError("--max-frames is for single-process runs; --workers and --cluster dream the whole file")
    uri = config.source.uri
    if audio_source_of(parse_uri(uri)) is None:
        if "://" in uri or uri.startswith(("demo", "webcam", "lavfi:", "image:", "/dev/video")):
            raise ConfigError(f"--workers and --cluster dream video files; input {redact_url(uri)} is not one")
        raise SourceError(f"input file not found: {redact_url(uri)}")
    files = [o for o in config.outputs if _is_file_output(o)]
    if len(config.outputs) != 1 or not files:
        names = ", ".join(redact_url(o.uri) for o in config.outputs)
        raise ConfigError(f"--workers and --cluster write one file output (.mp4, .mkv, .mov, .webm, .ts); got {names}")
    directory = Path(files[0].uri.partition("?")[0]).parent
    if not directory.is_dir():
        raise SinkError(f"cannot write {files[0].uri}: directory {directory} does not exist (create it first)")
    with owned(stop) as threads:  # the run's owner: its metrics server's thread, joined at the end
        observer, server = None, None
        if config.metrics.enabled:
            observer, server = start_metrics(config.metrics, threads, model=config.model.name)
        try:
            [result] = dream_files(config, [(uri, files[0])], stop, workers=workers, address=cluster_address(cluster),
                                   resources=resources, observer=observer)  # fmt: skip
        finally:
            if server is not None:
                server.shutdown()
    if result.error is not None:
        raise result.error if isinstance(result.error, StreamdreamError) else StreamdreamError(str(result.error))
    log.info("%d frames in %d segments (%d reused from an earlier run) -> %s", result.frames, result.segments, result.reused, result.output)
    return 0


def _is_file_output(output: OutputConfig) -> bool:
    try:
        path, _ = split_file_uri(output.uri)
    except SinkError:
        return False
    return "://" not in path and Path(path).suffix.lower() in CONTAINERS


__all__ = ["ClusterLostError", "FileResult", "StoppedError", "cluster_address", "dream_files", "resuming", "run_command"]
