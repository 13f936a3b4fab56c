"""Input URIs: the parsed form every kind shares, and how PyAV must open each kind.

Pure functions only (no I/O, no PyAV import), so every platform's mapping can be
tested on any machine. The platform and FFmpeg version are parameters for that reason.
Which kind a URI names is each kind's own ``parse`` (``sources/__init__.py`` tries them in
order):

Accepted forms::

    clip.mp4, /path/clip.mkv, file:///path/clip.mp4      file
    webcam, webcam:N, webcam:NAME, /dev/videoN           webcam (v4l2 / avfoundation / dshow)
    rtsp://, rtsps://, http(s)://, rtmp(s)://, udp://,   network
    rtp://, srt://, tcp://
    demo, demo?width=320&height=240&fps=30&frames=300&live=1&seed=7
    lavfi:testsrc2=size=320x240:rate=30[?live=1]         FFmpeg filter graph
    image:photo.jpg                                      still image
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl

from ..errors import SourceError

Kind = Literal["file", "webcam", "network", "demo", "lavfi", "image"]

NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp"})
# Schemes whose end of data always means a lost connection; http(s) is decided on open
# (a progressive file or a VOD playlist has a duration, a live stream has none).
ALWAYS_LIVE_SCHEMES = NETWORK_SCHEMES - {"http", "https"}

_REALTIME_FILTER = re.compile(r"(^|[,;\]\s])realtime(=|,|;|\[|$)")


@dataclass(frozen=True)
class ParsedUri:
    """A URI split into its kind, its target (path, device, URL or graph) and options.

    ``target`` may hold a password: log ``display`` instead, which is redacted.
    """

    kind: Kind
    target: str
    display: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return self.target.split("://", 1)[0].lower() if "://" in self.target else ""


@dataclass(frozen=True)
class AvOpenArgs:
    """Arguments for ``av.open(file, format=format, options=options, timeout=timeout)``."""

    file: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    timeout: tuple[float, float] | None = None


def query_params(text: str) -> dict[str, str]:
    """``a=1&b=2`` -> {"a": "1", "b": "2"} (blank values kept)."""
    return dict(parse_qsl(text, keep_blank_values=True))


def is_realtime_graph(graph: str) -> bool:
    """A lavfi graph paced by the ``realtime`` filter behaves like a live input."""
    return bool(_REALTIME_FILTER.search(graph))


def _normalise_platform(platform: str) -> str:
    platform = platform.lower()
    if platform.startswith("linux"):
        return "linux"
    if platform in ("darwin", "mac", "macos", "osx"):
        return "darwin"
    if platform in ("win32", "windows", "cygwin"):
        return "win32"
    raise SourceError(f"webcam input is not supported on platform {platform!r}; use linux, darwin or win32")


def _rate(fps: float) -> str:
    return f"{fps:g}"


def webcam_open_args(
    device: str,
    *,
    platform: str = sys.platform,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    input_format: str | None = None,
    timeout: tuple[float, float] | None = None,
) -> AvOpenArgs:
    """Map ``webcam[:N|:NAME]`` or ``/dev/videoN`` to the platform's capture device.

    ``device`` is what follows ``webcam:`` ("" for plain ``webcam``) or a device path.
    """
    platform = _normalise_platform(platform)
    options: dict[str, str] = {}
    if width and height:
        options["video_size"] = f"{width}x{height}"
    if fps:
        options["framerate"] = _rate(fps)

    if platform == "linux":
        if device == "" or device.isdigit():
            file = f"/dev/video{device or 0}"
        elif device.startswith("/"):
            file = device
        else:
            raise SourceError(
                f"webcam:{device}: on Linux name the camera by number or path, "
                "e.g. webcam:0, /dev/video0 or /dev/v4l/by-id/..."
            )
        if input_format:
            options["input_format"] = input_format
        return AvOpenArgs(file, "v4l2", options, timeout)

    if platform == "darwin":
        name = device or "0"
        # "N:none" = video device N and no audio device
        file = name if ":" in name else f"{name}:none"
        # avfoundation's default of 29.97 fps is refused by most cameras.
        options.setdefault("framerate", "30")
        if input_format:
            options["pixel_format"] = input_format
        return AvOpenArgs(file, "avfoundation", options, timeout)

    # dshow names devices; an index only picks among devices with the same name.
    if device == "" or device.isdigit():
        raise SourceError(
            "on Windows name the camera: --input 'webcam:Integrated Camera' "
            "(list the names with: ffmpeg -list_devices true -f dshow -i dummy)"
        )
    file = device if device.startswith("video=") else f"video={device}"
    if input_format in ("mjpeg", "h264"):
        options["vcodec"] = input_format
    elif input_format:
        options["pixel_format"] = input_format
    # a bigger real-time buffer than the 3 MB default stops "buffer full" drops at 1080p
    options["rtbufsize"] = "64M"
    return AvOpenArgs(file, "dshow", options, timeout)


def network_open_args(
    url: str,
    *,
    transport: str = "tcp",
    open_timeout: float = 10.0,
    read_timeout: float = 10.0,
    libavformat_major: int = 62,
) -> AvOpenArgs:
    """Options for a network URL: transport, and socket timeouts where the protocol has them.

    PyAV's own ``timeout`` (an interrupt callback) bounds every blocking call anyway;
    the protocol options make FFmpeg give up cleanly instead of being interrupted.
    """
    scheme = url.split("://", 1)[0].lower()
    micros = str(int(read_timeout * 1_000_000))
    options: dict[str, str] = {}
    if scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = transport
        # FFmpeg 5 (libavformat 59) renamed rtsp's socket timeout stimeout -> timeout
        options["timeout" if libavformat_major >= 59 else "stimeout"] = micros
    elif scheme in ("http", "https"):
        options["timeout"] = micros
        options["rw_timeout"] = micros
    elif scheme in ("rtmp", "rtmps"):
        # rtmp's own "timeout" means "listen for a publisher": never set it here
        options["rw_timeout"] = micros
    elif scheme in ("udp", "rtp"):
        options["timeout"] = micros
        options["overrun_nonfatal"] = "1"
    elif scheme in ("srt", "tcp"):
        options["timeout"] = micros
    return AvOpenArgs(url, None, options, (open_timeout, read_timeout))


def lavfi_open_args(graph: str, *, live: bool = False) -> AvOpenArgs:
    """``lavfi:GRAPH``; ``live`` appends the ``realtime`` filter unless the graph has one."""
    if live and not is_realtime_graph(graph):
        graph = f"{graph},realtime"
    return AvOpenArgs(graph, "lavfi")


def file_open_args(path: str) -> AvOpenArgs:
    return AvOpenArgs(path)
