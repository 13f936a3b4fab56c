"""Writing output files without ever destroying a user's work.

* An output that is the input (same file by ``os.path.samefile``: another spelling of the
  path, a symbolic or a hard link) is refused, whatever ``overwrite`` says.
* An existing output is refused unless ``overwrite`` (``--overwrite``/``-y``, or
  ``overwrite: true`` on the output) allows it.
* Everything is written to a temporary name beside the target, ``NAME.partial-PID.EXT``,
  and renamed onto the target only once it is finished. A run that fails before that
  leaves the target as it was; a killed run leaves the partial file under its temporary
  name (Matroska, MPEG-TS and fragmented MP4 play up to about their last second). A file
  that could not be finished (a full disk) still takes the target's name when there was
  no file there (``FileSink`` decides: nothing is destroyed, and what fitted plays).
  Without ``overwrite`` the rename is a hard link, which fails if the target appeared
  meanwhile, so even another program's new file is not replaced.
* A run stopped before its end (Ctrl-C, SIGTERM) finalizes what it made and puts it beside
  the target as ``NAME.partial.EXT`` (``set_aside``): the target, finished by an earlier
  run or not there at all, only ever holds a complete result.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from .errors import SinkError

log = logging.getLogger(__name__)

OVERWRITE_HINT = "give --overwrite (-y), or set `overwrite: true` on the output, to replace it"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths exist and are one file (any spelling, symbolic or hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_special(path: Path) -> bool:
    """A FIFO, device or socket: written in place (there is nothing to overwrite or rename)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_not_input(path: str | os.PathLike, inputs: tuple[str, ...], display: str | None = None) -> None:
    """Raise SinkError if ``path`` is one of ``inputs`` (any spelling, symbolic or hard link)."""
    for source in inputs:
        if same_file(path, source):
            raise SinkError(
                f"output {display or path} is the input {source}: writing it would destroy the input; "
                "choose another output name"
            )


# the kernel's own folders: a file cannot be made there (/dev/shm is a plain memory file system)
SYSTEM_FOLDERS = {"/proc": "the kernel's process table", "/sys": "the kernel's device tree", "/dev": "the device files"}


def check_not_system_folder(folder: Path, shown: str) -> None:
    """Raise SinkError if ``folder`` (any spelling, through links) is under /proc, /sys or /dev."""
    real = os.path.realpath(folder)
    for system, what in SYSTEM_FOLDERS.items():
        inside = real == system or real.startswith(system + "/")
        if inside and not (real == "/dev/shm" or real.startswith("/dev/shm/")):
            raise SinkError(f"cannot write {shown}: {folder} is under {system} ({what}), not a folder for files; choose another folder")


def check_target(path: Path, *, overwrite: bool, inputs: tuple[str, ...] = (), display: str | None = None) -> None:
    """Raise SinkError if ``path`` cannot be written without destroying something."""
    shown = display or str(path)
    check_not_input(path, inputs, shown)
    folder = path.parent
    check_not_system_folder(folder, shown)
    if not folder.is_dir():
        raise SinkError(f"cannot write {shown}: directory {folder} does not exist (create it first)")
    if path.is_dir():
        raise SinkError(f"cannot write {shown}: it is a directory")
    if is_special(path):
        return
    if path.exists() and not overwrite:
        raise SinkError(f"output {shown} exists ({_size(path)}); {OVERWRITE_HINT}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SinkError(f"cannot write {shown}: no permission to create files in {folder}")


def _size(path: Path) -> str:
    try:
        size: float = path.stat().st_size
    except OSError:
        return "?"
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} bytes"


class TempTarget:
    """A temporary file beside ``target`` to write into; ``commit`` renames it into place.

    A FIFO or device target is written directly (``path == target``).
    """

    def __init__(self, target: Path, *, overwrite: bool) -> None:
        self.target = target
        self.overwrite = overwrite
        self.direct = is_special(target)
        self.path = target if self.direct else self._claim()
        self.done = False

    def _claim(self) -> Path:
        stem, suffix = self.target.stem, self.target.suffix
        for n in range(1000):
            tag = f"{os.getpid()}" if n == 0 else f"{os.getpid()}-{n}"
            path = self.target.with_name(f"{stem}.partial-{tag}{suffix}")
            try:
                # O_EXCL: a name nobody else uses; the writer then opens it again to write
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                return path
            except FileExistsError:
                continue
            except OSError as exc:
                raise SinkError(f"cannot write {self.target}: {exc.strerror or exc}") from None
        raise SinkError(f"cannot write {self.target}: no free temporary name beside it")

    def commit(self) -> None:
        """Move the finished file onto the target (refusing a target that appeared meanwhile)."""
        if self.direct or self.done:
            return
        self.done = True
        if self.overwrite:
            os.replace(self.path, self.target)
            return
        try:
            os.link(self.path, self.target)  # atomic, and fails if the target exists
        except FileExistsError:
            raise SinkError(
                f"{self.target} appeared while it was being written and was left alone; "
                f"the new output is at {self.path}"
            ) from None
        except OSError:  # no hard links on this file system: check, then rename
            if self.target.exists():
                raise SinkError(f"{self.target} appeared while it was being written; the new output is at {self.path}") from None
            os.replace(self.path, self.target)
            return
        os.unlink(self.path)

    def set_aside(self, inputs: tuple[str, ...] = ()) -> Path:
        """The file is finalized but not complete (a run stopped before its end): it goes beside
        the target as ``NAME.partial.EXT``, never onto the target. An older file of that name is
        replaced only with ``overwrite`` (and never when it is an input); otherwise, or where the
        rename fails, the file stays under its temporary name. Returns where it is."""
        if self.direct or self.done:
            return self.path
        self.done = True
        aside = self.target.with_name(f"{self.target.stem}.partial{self.target.suffix}")
        if any(same_file(aside, source) for source in inputs) or is_special(aside) or aside.is_dir():
            return self.path
        try:
            if self.overwrite:
                os.replace(self.path, aside)
            else:
                os.link(self.path, aside)  # fails if a file of that name is there: it is left alone
                os.unlink(self.path)
        except OSError as exc:
            log.debug("moving %s to %s: %s", self.path, aside, exc)
            return self.path
        return aside

    def abandon(self, keep: bool) -> None:
        """The file was not finished: the target stays as it was; keep the partial file or remove it."""
        if self.direct or self.done:
            return
        self.done = True
        if keep:
            log.warning("%s was not finished and was left as it was; the partial output is %s", self.target, self.path)
            return
        try:
            os.unlink(self.path)
        except OSError as exc:
            log.debug("removing %s: %s", self.path, exc)
