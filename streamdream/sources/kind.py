"""What every kind of input declares: its URI form, its preflight check and how it opens.

``sources/__init__.py`` lists the kinds in the order their URI forms are tried (the plain
file path, which matches anything, last). Adding an input is one module that defines a
``SourceKind`` and one line in that list: ``parse_uri``, the preflight (``check``), the
daemon's reconnect and ``open_source`` all walk the list.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import SourceConfig
from ..runtime.workers import Workers
from .base import Source
from .uri import Kind, ParsedUri


@dataclass(frozen=True)
class OpenContext:
    """What opening a source may need besides its config: threads, an audio tap, the platform."""

    workers: Workers  # the owner of the source's threads (its reader): the caller's, which it joins
    audio: Any = None  # an ``av_source.AudioTap``, for audio-reactive dreaming
    platform: str = field(default_factory=lambda: sys.platform)


def no_check(parsed: ParsedUri, config: SourceConfig, command: str) -> None:
    """Nothing to check before the model loads (a network stream is only known once connected)."""


def no_paths(parsed: ParsedUri) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class SourceKind:
    """One kind of input.

    ``parse(uri, display)`` returns the ParsedUri when ``uri`` is of this kind, else None
    (SourceError for a URI of this kind that is malformed); ``check`` raises SourceError for
    what can be known without the model (``command`` is ``run`` or ``serve``: ``serve``
    waits for inputs that can come back); ``open`` builds the source, closed.
    """

    name: Kind
    forms: str  # the URI forms, for help and the docs
    what: str  # "video file": how a message names an input of this kind
    parse: Callable[[str, str], ParsedUri | None]
    open: Callable[[ParsedUri, SourceConfig, OpenContext], Source]
    check: Callable[[ParsedUri, SourceConfig, str], None] = no_check
    local_paths: Callable[[ParsedUri], tuple[str, ...]] = no_paths  # files it reads: what no output may be
    comes_back: bool = False  # a lost input of this kind may return (the daemon reconnects it)


__all__ = ["OpenContext", "SourceKind", "no_check", "no_paths"]
