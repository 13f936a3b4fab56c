"""Recordings that run for weeks: a new file every ``rotate``, old ones pruned by age and space.

A file output's path is a template: ``strftime`` fields (``recordings/dream-%Y%m%d-%H%M%S.mkv``)
are filled in when a file opens, and its folder is created. A file opened again (a
rotation, or a retry after a full disk) never overwrites one that exists: when the name is
taken (a path without fields, or two files within a second) a ``-YYYYmmdd-HHMMSS`` stamp,
then ``-2``, ``-3``... is put before the extension.

Pruning deletes only this output's own recordings (names its template can make, in its
folder), oldest first and never the file being written: those older than ``max_age``,
then, while the disk has less than ``keep_free`` percent free, the oldest ones.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..config import OutputConfig
from .uri import file_path_and_query

log = logging.getLogger(__name__)

STAMP = "%Y%m%d-%H%M%S"
RESUME_FREE_BYTES = 64 * 2**20  # a full disk is written again once this much (or 1 % of it) is free
_FIELD = re.compile(r"%.")


class RecordingNames:
    """The names one file output's recordings get, and the ones it made before."""

    def __init__(self, uri: str) -> None:
        self.template, query = file_path_and_query(uri)
        self._query = "?" + query if query else ""
        self._stem, self._suffix = os.path.splitext(self.template)
        self.directory = Path(os.path.dirname(self.template) or ".")

    @property
    def has_fields(self) -> bool:
        return "%" in self.template

    def next_uri(self, fresh: bool, now: float | None = None) -> str:
        """The URI for the next file; ``fresh``: it must not overwrite an existing file."""
        local = time.localtime(now)
        path = time.strftime(self.template, local) if self.has_fields else self.template
        if fresh and os.path.exists(path):
            stem, suffix = os.path.splitext(path)
            path = f"{stem}-{time.strftime(STAMP, local)}{suffix}"
            count = 1
            while os.path.exists(path):
                count += 1
                path = f"{stem}-{time.strftime(STAMP, local)}-{count}{suffix}"
        self.directory.mkdir(parents=True, exist_ok=True)
        return path + self._query

    def recordings(self) -> list[Path]:
        """This output's files on disk, oldest first."""
        stem = "*".join(glob.escape(part) for part in _FIELD.split(self._stem))
        found = set(glob.glob(stem + glob.escape(self._suffix))) | set(glob.glob(stem + "-*" + glob.escape(self._suffix)))
        files = []
        for name in found:
            try:
                files.append((os.stat(name).st_mtime, Path(name)))
            except OSError:  # deleted meanwhile
                continue
        return [path for _, path in sorted(files)]


class Recordings:
    """One file output's files: the next one's config, when to rotate, what to prune, room to resume."""

    def __init__(self, config: OutputConfig) -> None:
        self.config = config
        self.names = RecordingNames(config.uri)

    def next_config(self, fresh: bool) -> OutputConfig:
        return self.config.model_copy(update={"uri": self.names.next_uri(fresh)})

    def rotation_due(self, opened_at: float, now: float | None = None) -> bool:
        rotate = self.config.rotate
        return rotate is not None and (time.monotonic() if now is None else now) - opened_at >= rotate

    def prune(self, current: Path | None) -> list[tuple[Path, str]]:
        return prune(self.names, current, max_age=self.config.max_age, keep_free=self.config.keep_free)

    def room(self) -> bool:
        """After a full disk: is there room to write again?"""
        total, _, free = shutil.disk_usage(self.names.directory)
        return free >= min(RESUME_FREE_BYTES, total // 100)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) says the disk is full."""
    while exc is not None:
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc):
            return True
        exc = exc.__cause__
    return False


def free_percent(directory: Path, usage: Callable[[Path], tuple[int, int, int]] = shutil.disk_usage) -> float:
    total, _, free = usage(directory)
    return 100.0 * free / total if total else 100.0


def prune(
    names: RecordingNames,
    current: Path | None,
    *,
    max_age: float | None,
    keep_free: float | None,
    now: float | None = None,
    usage: Callable[[Path], tuple[int, int, int]] = shutil.disk_usage,
) -> list[tuple[Path, str]]:
    """Delete old recordings as the module docstring says; returns (path, "age" | "space") per file."""
    if max_age is None and keep_free is None:
        return []
    now = time.time() if now is None else now
    keep = None if current is None else os.path.abspath(current)
    candidates = [p for p in names.recordings() if os.path.abspath(p) != keep]
    deleted: list[tuple[Path, str]] = []
    for path in candidates:
        if max_age is not None and _age(path, now) > max_age:
            reason = "age"
        elif keep_free is not None and free_percent(names.directory, usage) < keep_free:
            reason = "space"
        else:
            break  # oldest first: the rest are younger still, and there is room
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot delete old recording %s: %s", path, exc)
            continue
        log.info("deleted old recording %s (%s)", path, "older than max_age" if reason == "age" else "keep_free: disk too full")
        deleted.append((path, reason))
    return deleted


def _age(path: Path, now: float) -> float:
    try:
        return now - os.stat(path).st_mtime
    except OSError:
        return 0.0


__all__ = ["RecordingNames", "Recordings", "free_percent", "is_disk_full", "prune"]
