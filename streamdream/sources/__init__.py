"""Inputs: one ``--input URI`` picks the source; each kind of input is one module declaring a ``SourceKind``.

``SOURCE_KINDS`` is the registry, in the order the URI forms are tried: a new kind of
input is one module and one line here. ``parse_uri`` parses a URI once; ``check_source``
(the preflight) and ``open_source`` take the parsed value.
"""

from __future__ import annotations

from ..config import SourceConfig
from ..errors import SourceError
from ..log import redact_url
from ..runtime.workers import Workers
from . import demo, file, image, lavfi, network, webcam
from .av_source import AudioTap, AvSource
from .base import Source
from .demo import DemoSource
from .image import ImageSource
from .kind import OpenContext, SourceKind
from .uri import ParsedUri

# tried in this order; a plain path (file) matches anything, so it comes last
SOURCE_KINDS: tuple[SourceKind, ...] = (demo.KIND, lavfi.KIND, image.KIND, webcam.KIND, network.KIND, file.KIND)
KINDS = {kind.name: kind for kind in SOURCE_KINDS}

__all__ = [
    "KINDS",
    "SOURCE_KINDS",
    "AvSource",
    "DemoSource",
    "ImageSource",
    "OpenContext",
    "ParsedUri",
    "Source",
    "SourceKind",
    "check_source",
    "describe_uri",
    "input_paths",
    "open_source",
    "parse_uri",
]


def parse_uri(uri: str) -> ParsedUri:
    """Which kind of input ``uri`` names, and its parts. SourceError for a URI no kind takes."""
    uri = uri.strip()
    if not uri:
        raise SourceError("input is empty: give a file path, webcam, an rtsp:// URL, demo or image:PATH")
    display = redact_url(uri)
    for kind in SOURCE_KINDS:
        parsed = kind.parse(uri, display)
        if parsed is not None:
            return parsed
    raise SourceError(f"input {display}: no kind of input takes it")  # pragma: no cover - file takes any path


def check_source(config: SourceConfig, command: str, parsed: ParsedUri | None = None) -> None:
    """What the preflight can know of the input without the model (SourceError naming the problem)."""
    parsed = parsed or parse_uri(config.uri)
    KINDS[parsed.kind].check(parsed, config, command)


def open_source(config: SourceConfig, workers: Workers, audio: AudioTap | None = None,
                parsed: ParsedUri | None = None) -> Source:  # fmt: skip
    """Build the source ``config.uri`` names, closed; the caller calls ``open()``.

    ``workers`` starts the source's reader threads (see ``runtime/workers.py``); ``audio``
    (an ``AudioTap``) hears the input's audio track, for audio-reactive dreaming."""
    parsed = parsed or parse_uri(config.uri)
    return KINDS[parsed.kind].open(parsed, config, OpenContext(workers=workers, audio=audio))


def input_paths(uri: str) -> tuple[str, ...]:
    """The local files an input reads (what no output may be)."""
    try:
        parsed = parse_uri(uri)
    except SourceError:
        return ()
    return KINDS[parsed.kind].local_paths(parsed)


def comes_back(uri: str) -> bool:
    """A lost input of this kind may return (a camera, a stream): the daemon waits and reconnects."""
    return KINDS[parse_uri(uri).kind].comes_back


def describe_uri(uri: str) -> str:
    """A one-line, credential-free description of an input, e.g. for ``--help`` or logs."""
    parsed = parse_uri(uri)
    what = f"{parsed.scheme} stream" if parsed.kind == "network" else KINDS[parsed.kind].what
    return f"{what} {parsed.display}"
