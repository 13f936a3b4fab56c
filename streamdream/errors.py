"""One exception hierarchy for everything streamdream reports to a user.

Each message says what was wrong, with which value, and what to do about it.
The CLI prints ``str(error)`` and exits with ``error.exit_code``; no traceback.
"""

from __future__ import annotations

# The one exit-code table, for every command (docs/command-line.md and `streamdream --help` print it).
EXIT_CODES: dict[int, str] = {
    0: "done",
    1: "runtime failure",
    2: "bad command line or config",
    3: "model (unknown model, preset or layer; weights)",
    4: "input (missing, unreadable, not a video)",
    5: "output (unknown type, no folder, exists, is the input, no display)",
    6: "control API refused",
    130: "stopped (Ctrl-C, SIGTERM) before the end; what was made is in NAME.partial.EXT",
}


class StreamdreamError(Exception):
    """Base class: an error a user can act on."""

    exit_code = 1


class ConfigError(StreamdreamError):
    """A configuration file or option is invalid."""

    exit_code = 2


class ModelError(StreamdreamError):
    """A model cannot be built or its weights cannot be loaded."""

    exit_code = 3


class WeightsUnavailableError(ModelError):
    """Weights are not on this machine and cannot be downloaded."""


class WeightsIntegrityError(ModelError):
    """A weights file failed its hash check or contains something forbidden."""


class StudentError(ModelError):
    """A student file (a distilled dreamer) is missing, damaged, or was distilled from another teacher."""


class SourceError(StreamdreamError):
    """An input cannot be opened or read."""

    exit_code = 4


class SourceLostError(SourceError):
    """A live source stopped delivering frames (connection lost, device gone)."""


class SinkError(StreamdreamError):
    """An output cannot be opened or written."""

    exit_code = 5


class ControlError(StreamdreamError):
    """A control API request was refused."""

    exit_code = 6
