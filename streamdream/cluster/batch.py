"""`streamdream batch IN_DIR OUT_DIR`: every video of a folder dreamed into another, with its audio.

* Each file ``IN_DIR/name.ext`` becomes ``OUT_DIR/name.ext`` (``.mkv`` where streamdream
  cannot write ``.ext``: Matroska takes any audio codec as it is).
* An output that exists is done and skipped: outputs appear only when complete (the
  cluster joins into a temporary name; a single process writes one), and a stopped one
  still has its work folder beside it, which marks it unfinished.
* A file that cannot be read is reported and skipped; the others go on. The exit code is
  1 when any file failed, 130 when stopped, else 0. When the cluster has no worker left,
  the finished segments are kept and the command line prints the command that resumes.
* With ``--workers N`` or ``--cluster``, the segments of all files share one pool of Ray
  workers; without, one process dreams the files one after another with one model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..app import build_engine, run_pipeline
from ..config import Config, OutputConfig, with_overrides
from ..errors import SourceError, StreamdreamError
from ..runtime.interrupts import owned
from ..runtime.workers import StopToken
from ..sinks.file import CONTAINERS
from .command import ClusterLostError, FileResult, StoppedError, cluster_address, dream_files
from .workdir import WorkFolder

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".flv", ".wmv", ".ogv", ".3gp"}
)


def output_for(source: Path, out_dir: Path) -> Path:
    suffix = source.suffix.lower() if source.suffix.lower() in CONTAINERS else ".mkv"
    return out_dir / (source.stem + suffix)


def is_done(output: Path) -> bool:
    return output.is_file() and not WorkFolder(output).path.exists()


def batch_command(config: Config, in_dir: str, out_dir: str, stop: StopToken, *, workers: int | None, cluster: str | None,
                  resources: dict[str, float] | None = None) -> int:  # fmt: skip
    source_dir, target_dir = Path(in_dir), Path(out_dir)
    if not source_dir.is_dir():
        raise SourceError(f"input folder not found: {source_dir}")
    if source_dir.resolve() == target_dir.resolve():
        raise StreamdreamError(f"batch: the output folder must differ from the input folder ({source_dir})")
    target_dir.mkdir(parents=True, exist_ok=True)
    template = config.outputs[0] if config.outputs else OutputConfig(uri="out.mp4")
    pairs: list[tuple[str, OutputConfig]] = []
    skipped = 0
    for source in sorted(p for p in source_dir.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES):
        output = output_for(source, target_dir)
        if is_done(output):
            log.info("%s: done already (%s)", source.name, output)
            skipped += 1
            continue
        pairs.append((str(source), template.model_copy(update={"uri": str(output)})))
    if workers is not None or cluster is not None:
        results = dream_files(config, pairs, stop, workers=workers, address=cluster_address(cluster), resources=resources)
    else:
        results, engine = [], None
        for uri, output_config in pairs:
            if stop.is_set():
                break
            engine = engine or build_engine(config)  # once, and only when a file needs it
            results.append(_dream_here(config, engine, uri, output_config, stop))
    failed = [r for r in results if not r.ok and not isinstance(r.error, StoppedError)]
    stopped = stop.is_set() or any(isinstance(r.error, StoppedError) for r in results)
    log.info("batch: %d dreamed, %d done already, %d failed%s", sum(r.ok for r in results), skipped, len(failed),
             "".join(f"\n  {Path(r.input).name}: {r.error}" for r in failed))  # fmt: skip
    lost = [r.error for r in results if isinstance(r.error, ClusterLostError)]
    if lost:  # the command line says how to resume
        raise ClusterLostError(f"batch stopped: {len(lost)} files unfinished, their finished segments kept")
    return 130 if stopped else 1 if failed else 0


def _dream_here(config: Config, engine, source: str, output: OutputConfig, stop: StopToken) -> FileResult:
    """One file in this process, into a temporary name renamed when complete."""

    final = Path(output.uri.partition("?")[0])
    partial = final.with_name(f".{final.stem}.partial{final.suffix}")
    query = output.uri.partition("?")[2]
    run_config = with_overrides(
        config,
        source={"uri": source},
        # the partial file is batch's own (a killed run may have left one): overwrite it
        outputs=[output.model_copy(update={"uri": str(partial) + (f"?{query}" if query else ""), "overwrite": True}).model_dump()],
    )
    # a pipeline that ends stops only its own workers (runtime/workers.py), never the stop event
    # it is given: the next file starts with the same one
    try:
        with owned(stop) as workers:  # this file's owner: its threads stopped and joined before the next file
            result = run_pipeline(run_config, workers, engine=engine)
        if result.error is not None:
            raise result.error
    except StreamdreamError as exc:
        log.error("%s: skipped: %s", Path(source).name, exc)
        partial.unlink(missing_ok=True)
        return FileResult(source, final, error=exc)
    if stop.is_set():  # batch starts a stopped file again: what it made goes (set aside as NAME.partial.EXT too)
        for unfinished in [partial, *(Path(o.partial) for o in result.outputs if o.partial)]:
            unfinished.unlink(missing_ok=True)
        return FileResult(source, final, error=StoppedError(f"{final}: stopped"))
    os.replace(partial, final)
    log.info("wrote %s (%d frames)", final, result.frames_out)
    return FileResult(source, final, frames=result.frames_out)


__all__ = ["VIDEO_SUFFIXES", "batch_command", "is_done", "output_for"]
