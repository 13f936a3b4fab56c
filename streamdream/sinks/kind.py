"""What every kind of output declares: its URI form, its preflight check and how it is built.

``sinks/__init__.py`` lists the kinds in the order their URI forms are tried (a file path,
which matches anything else, last). Adding an output is one module that defines a
``SinkKind`` and one line in that list: ``parse_output_uri``, the preflight, the output
set's queue policy and metric label, and ``open_sink`` all walk it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import OutputConfig
from .base import Sink
from .uri import OutputKind, ParsedOutput

if TYPE_CHECKING:  # the runtime floor is below; only its type is named here
    from ..runtime.workers import Workers


@dataclass(frozen=True)
class CheckContext:
    """What an output's preflight check may need besides its config."""

    command: str  # "run" or "serve": the daemon fills in strftime fields and creates folders
    inputs: tuple[str, ...]  # the files the input reads: no output may write one
    ports: bool  # whether to check that a port is free now (not for validate-config of a running daemon)


@dataclass(frozen=True)
class OpenContext:
    """What building a sink may need: the input whose audio a file carries, the owner of its threads."""

    workers: Workers  # the owner of the sink's threads (a publish watchdog, a preview's server): the caller's
    audio_source: str | None = None


def no_check(parsed: ParsedOutput, config: OutputConfig, context: CheckContext) -> None:
    """Nothing to check before the model loads (a server is only known once connected)."""


def not_exclusive(parsed: ParsedOutput) -> str | None:
    return None


@dataclass(frozen=True)
class SinkKind:
    """One kind of output.

    ``parse(uri, display)`` returns the ParsedOutput when ``uri`` is of this kind, else None
    (SinkError for a URI of this kind that is malformed); ``check`` raises SinkError for what
    can be known without the model; ``open`` builds the sink (devices, files and connections
    open later, in ``Sink.open``); ``exclusive`` names what two outputs may not share.
    """

    name: OutputKind
    forms: str  # the URI forms, for help and the docs
    parse: Callable[[str, str], ParsedOutput | None]
    open: Callable[[ParsedOutput, OutputConfig, OpenContext], Sink]
    check: Callable[[ParsedOutput, OutputConfig, CheckContext], None] = no_check
    exclusive: Callable[[ParsedOutput], str | None] = not_exclusive


def prefixed(kind: OutputKind, live: bool, label: Callable[[str, str], str] | None = None
             ) -> Callable[[str, str], ParsedOutput | None]:  # fmt: skip
    """A ``parse`` for the ``KIND`` and ``KIND:REST`` forms (window, virtualcam, preview, ndi, null)."""

    def parse(uri: str, display: str) -> ParsedOutput | None:
        scheme, sep, rest = uri.partition(":")
        if (scheme.lower() if sep else uri.lower()) != kind:
            return None
        shown = label(rest, display) if label else kind + (":" + rest if rest else "")
        return ParsedOutput(kind, rest, display, live=live, label=shown)

    return parse


__all__ = ["CheckContext", "OpenContext", "SinkKind", "no_check", "not_exclusive", "prefixed"]
