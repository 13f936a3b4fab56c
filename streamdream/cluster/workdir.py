"""The work folder of one output: its plan and the pieces finished so far, for resuming.

``dreamed.mp4`` is built in ``dreamed.mp4.parts/``:

* ``job.json``: what the job is (the input's path, size and modification time, and a hash
  of every setting that changes the pictures) and its plan (the scan and the segments);
* ``piece-00012.mp4``: segment 12, dreamed and encoded. A piece is written under a
  temporary name and renamed when complete, so one that exists is whole.

Running the same command again reuses the plan and every finished piece. A folder that
belongs to another job (the input or a setting changed) is never overwritten: the
error says which folder to remove. The folder is removed once the output is joined.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import Config, OutputConfig
from ..errors import SinkError
from .plan import InputScan, Segment, SegmentPolicy

log = logging.getLogger(__name__)

MANIFEST = "job.json"
VERSION = 1


def settings_hash(config: Config, output: OutputConfig, policy: SegmentPolicy) -> str:
    """A hash of everything that changes the output's pictures or encoding."""
    data = {
        "model": config.model.model_dump(mode="json"),
        "dream": config.dream.model_dump(mode="json"),
        "coherence": config.coherence.model_dump(mode="json"),
        "output": output.model_dump(mode="json", exclude={"uri", "overwrite"}),  # neither changes a picture
        "policy": asdict(policy),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def input_identity(path: str | Path) -> dict[str, Any]:
    stat = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass(frozen=True)
class Plan:
    scan: InputScan
    segments: tuple[Segment, ...]


class WorkFolder:
    """``OUTPUT.parts/``: the plan and finished pieces of one output (see the module doc)."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = output.with_name(output.name + ".parts")
        self.suffix = output.suffix

    def piece(self, index: int) -> Path:
        return self.path / f"piece-{index:05d}{self.suffix}"

    def plan(self, identity: dict[str, Any], settings: str, make: Callable[[], Plan]) -> Plan:
        """The saved plan when it is this job's; a new one (``make()``) when there is none."""
        manifest = self.path / MANIFEST
        if manifest.is_file():
            try:
                saved = json.loads(manifest.read_text())
                same = saved["version"] == VERSION and saved["input"] == identity and saved["settings"] == settings
            except (OSError, ValueError, KeyError, TypeError):
                saved, same = None, False
            if not same:
                raise SinkError(
                    f"work folder {self.path} holds segments of another job (the input or a setting changed "
                    "since); remove it to start this one afresh"
                )
            plan = Plan(InputScan.from_json(saved["scan"]), tuple(Segment(**s) for s in saved["segments"]))
            log.info("resuming from %s: %d of %d segments already done", self.path, len(self.done(plan)), len(plan.segments))
            return plan
        if self.path.exists() and any(self.path.iterdir()):
            raise SinkError(f"{self.path} exists and is not a streamdream work folder; move it away first")
        plan = make()
        self.path.mkdir(exist_ok=True)
        data = {
            "version": VERSION,
            "input": identity,
            "settings": settings,
            "scan": plan.scan.to_json(),
            "segments": [asdict(s) for s in plan.segments],
        }
        self._write_atomically(manifest, json.dumps(data).encode())
        return plan

    def done(self, plan: Plan) -> set[int]:
        return {s.index for s in plan.segments if self.piece(s.index).is_file()}

    def save_piece(self, index: int, data: bytes) -> Path:
        path = self.piece(index)
        self._write_atomically(path, data)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        partial = path.with_name(f".{path.name}.partial")
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)


__all__ = ["Plan", "WorkFolder", "input_identity", "settings_hash"]
