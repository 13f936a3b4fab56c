"""Reading a config file with bounds: regular files only, a size cap, and a YAML budget.

A config path might be ``/dev/zero`` or a FIFO (reads forever), and YAML has anchors and
aliases: 340 bytes of nested aliases expand to a billion values once anything walks them
(PyYAML shares the objects; pydantic's validation and error messages do not). So:

- the file must be a regular file of at most ``MAX_BYTES``;
- before anything is built, the YAML event stream (a non-recursive parse) is walked once:
  nesting deeper than ``MAX_DEPTH`` (PyYAML's composer recurses: a RecursionError), more
  than ``MAX_ALIASES`` aliases, or more than ``MAX_VALUES`` values once aliases are expanded
  is refused with a ConfigError naming the file and line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from .errors import ConfigError

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_VALUES = 20_000

_KINDS = {stat.S_ISDIR: "directory", stat.S_ISFIFO: "FIFO (named pipe)", stat.S_ISCHR: "character device",
          stat.S_ISBLK: "block device", stat.S_ISSOCK: "socket"}  # fmt: skip


def read_regular_file(path: str | Path, what: str = "config file", limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of ``path``; ConfigError if it is missing, not a regular file, too big or not text."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS.items() if test(mode)), "special file")
        raise ConfigError(f"{what} {path} is a {kind}, not a regular file; give the path of a YAML file")
    with os.fdopen(fd, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit // 1024} KiB; a config is a few KiB of YAML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start}); is it really a YAML file?") from None


def check_yaml_budget(text: str, source: str) -> None:
    """ConfigError if ``text`` nests too deep or its aliases expand too far (see the module docstring)."""
    depth = aliases = values = 0
    sizes: dict[str, int] = {}  # anchor -> values it expands to
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, values when it started)
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{source}:{line}: nested deeper than {MAX_DEPTH} levels; a config needs a few")
            open_nodes.append((event.anchor, values))
            values += 1
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            anchor, started = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = values - started
        elif isinstance(event, yaml.ScalarEvent):
            values += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise ConfigError(f"{source}:{line}: more than {MAX_ALIASES} YAML aliases (*name); write the values out")
            values += sizes.get(event.anchor, 1)
        if values > MAX_VALUES:
            raise ConfigError(
                f"{source}:{line}: the YAML expands to more than {MAX_VALUES} values (aliases of aliases: "
                "an alias bomb?); write the values out"
            )
