"""Send frames as an NDI® source (``ndi:NAME``) with cyndilib, whose wheel ships the NDI runtime.

cyndilib is optional (``pip install 'streamdream[ndi]'``: about 60 MB, Linux, macOS and
Windows wheels, libndi included). The source is announced under ``NAME`` on this machine
(receivers see ``HOST (NAME)``) at the input's size and frame rate; the pipeline paces
the frames (``clock_video`` is off: a file is sent as fast as it is dreamed). Frames go
out as RGBX, which every NDI receiver converts as it likes.

Receivers find the source by NDI's mDNS discovery, or, where multicast does not pass (a
routed network, a container), by the NDI configuration's ``ips`` list
(``$NDI_CONFIG_DIR/ndi-config.v1.json``; see docs/inputs-outputs.md, "NDI").
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from typing import Any

import cv2
import numpy as np

from ..config import OutputConfig
from ..errors import SinkError
from ..frames import Frame, SourceInfo
from .base import Sink
from .kind import OpenContext, SinkKind, prefixed
from .uri import ParsedOutput

log = logging.getLogger(__name__)

DEFAULT_FPS = Fraction(30)
NAME = re.compile(r"^[A-Za-z0-9 _.\-]{1,64}$")
INSTALL = "pip install 'streamdream[ndi]' (installs cyndilib, whose wheel ships the NDI runtime)"


def ndi_name(rest: str) -> str:
    """The source name of ``ndi:NAME``; SinkError naming the rule for a bad one."""
    name = rest.strip()
    if not NAME.fullmatch(name):
        raise SinkError(f"output ndi:{rest[:80]}: give a source name of 1-64 letters, digits, spaces, '_', '.' or '-', e.g. ndi:streamdream")
    return name


class NdiSink:
    """Frames to an NDI sender named ``name``."""

    def __init__(self, name: str) -> None:
        self.source_name = ndi_name(name)
        self.name = f"ndi:{self.source_name}"
        self.frames_written = 0
        self._sender: Any = None
        self._size = (0, 0)
        self._rgbx: np.ndarray | None = None

    def open(self, info: SourceInfo) -> None:
        try:
            from cyndilib.sender import Sender  # noqa: PLC0415 - the ndi extra, loaded when an NDI output opens
            from cyndilib.video_frame import VideoSendFrame  # noqa: PLC0415 - the ndi extra, loaded when an NDI output opens
            from cyndilib.wrapper.ndi_structs import FourCC  # noqa: PLC0415 - the ndi extra, loaded when an NDI output opens
        except ImportError as exc:  # the package, or the runtime it loads, is missing
            raise SinkError(f"NDI output {self.name}: cyndilib cannot be loaded ({exc}). To use NDI: {INSTALL}") from exc
        frame = VideoSendFrame()
        frame.set_resolution(info.width, info.height)
        frame.set_frame_rate(Fraction(info.fps).limit_denominator(1001) if info.fps else DEFAULT_FPS)
        frame.set_fourcc(FourCC.RGBX)
        try:
            sender = Sender(self.source_name, clock_video=False)
            sender.set_video_frame(frame)
            sender.open()
        except Exception as exc:  # the runtime refused (no network interface, a name in use...)
            raise SinkError(f"NDI output {self.name} cannot start: {exc}") from exc
        self._sender, self._size = sender, (info.width, info.height)
        self._rgbx = np.full((info.height, info.width, 4), 255, np.uint8)
        log.info("NDI source %r: %dx%d at %s fps", sender.source.name if sender.source else self.source_name,
                 info.width, info.height, f"{float(info.fps):.3g}" if info.fps else "30")

    def write(self, frame: Frame) -> None:
        if self._sender is None or self._rgbx is None:
            raise SinkError(f"NDI output {self.name}: write() before open() or after close()")
        image = frame.image
        width, height = self._size
        if image.shape[1] != width or image.shape[0] != height:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        self._rgbx[..., :3] = image  # the X byte stays 255
        if not self._sender.write_video(self._rgbx.reshape(-1)):
            raise SinkError(f"NDI output {self.name}: the NDI runtime did not take the frame")
        self.frames_written += 1

    def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                sender.close()
            except Exception as exc:  # closing must not mask the pipeline's own error
                log.debug("NDI output %s: closing: %s", self.name, exc)


def open_ndi(parsed: ParsedOutput, config: OutputConfig, context: OpenContext) -> Sink:
    return NdiSink(parsed.rest)


KIND = SinkKind(name="ndi", forms="ndi:NAME", parse=prefixed("ndi", live=True), open=open_ndi)


__all__ = ["INSTALL", "NdiSink", "ndi_name"]
