"""Send frames to a virtual camera (``virtualcam`` or ``virtualcam:DEVICE``) with pyvirtualcam.

pyvirtualcam is optional (``pip install 'streamdream[virtualcam]'``) and needs a backend:
v4l2loopback on Linux, the OBS Studio (>= 26) virtual camera on macOS and Windows. The
camera runs at the source's size and fps; frames of another size are resized to it.
The pipeline paces frames; this sink does not sleep.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import OutputConfig
from ..errors import SinkError
from ..frames import Frame, SourceInfo
from .base import Sink
from .kind import CheckContext, OpenContext, SinkKind, prefixed
from .uri import ParsedOutput

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


def backend_help(platform: str | None = None) -> str:
    """What to install for a virtual camera, this platform's backend first."""
    platform = sys.platform if platform is None else platform
    linux = (
        "Linux: install v4l2loopback (Debian/Ubuntu: `sudo apt install v4l2loopback-dkms`) and load it "
        "with `sudo modprobe v4l2loopback devices=1 exclusive_caps=1`"
    )
    obs = "macOS/Windows: install OBS Studio >= 26 and start its Virtual Camera once (Tools > Start Virtual Camera)"
    backends = [obs, linux] if platform in ("darwin", "win32") else [linux, obs]
    return f"pip install 'streamdream[virtualcam]' (installs pyvirtualcam); then {'; '.join(backends)}"


def camera_frame(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` as the camera wants it: height x width x 3 RGB uint8, C-contiguous."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.shape[1] != width or image.shape[0] != height:
        shrinking = image.shape[1] > width or image.shape[0] > height
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.ascontiguousarray(image)


class VirtualCamSink:
    """Frames to a pyvirtualcam camera; ``device`` picks one (e.g. /dev/video10) or None."""

    def __init__(self, device: str | None = None) -> None:
        self.device = device
        self.name = f"virtualcam:{device}" if device else "virtualcam"
        self.frames_written = 0
        self._camera: Any = None
        self._size = (0, 0)

    def open(self, info: SourceInfo) -> None:
        try:
            import pyvirtualcam  # noqa: PLC0415 - the virtualcam extra, loaded when the output opens
        except ImportError as exc:
            raise SinkError(f"virtual camera: pyvirtualcam is not installed. To use it: {backend_help()}") from exc
        fps = float(Fraction(info.fps)) if info.fps else DEFAULT_FPS
        try:
            self._camera = pyvirtualcam.Camera(
                width=info.width, height=info.height, fps=fps, fmt=pyvirtualcam.PixelFormat.RGB, device=self.device
            )
        except Exception as exc:  # pyvirtualcam raises RuntimeError or ValueError per backend
            where = f" {self.device}" if self.device else ""
            raise SinkError(f"virtual camera{where} cannot start: {str(exc).rstrip('.')}. To fix: {backend_help()}") from exc
        self._size = (self._camera.width, self._camera.height)
        log.info("virtual camera %s: %dx%d at %.2f fps", self._camera.device, *self._size, fps)

    def write(self, frame: Frame) -> None:
        if self._camera is None:
            raise SinkError("virtual camera: write() before open() or after close()")
        self._camera.send(camera_frame(frame.image, *self._size))
        self.frames_written += 1

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.close()
            except Exception as exc:  # closing must not mask the pipeline's own error
                log.debug("virtual camera: closing: %s", exc)


def open_virtualcam(parsed: ParsedOutput, config: OutputConfig, context: OpenContext) -> Sink:
    return VirtualCamSink(device=parsed.rest or None)


def check_virtualcam(parsed: ParsedOutput, config: OutputConfig, context: CheckContext) -> None:
    """pyvirtualcam is installed and, on Linux, a v4l2loopback device exists."""
    device, shown = parsed.rest or None, parsed.display
    if importlib.util.find_spec("pyvirtualcam") is None:
        raise SinkError(f"output {shown}: pyvirtualcam is not installed. To use it: {backend_help()}")
    if sys.platform.startswith("linux"):
        loopbacks = Path("/sys/devices/virtual/video4linux")
        if device is not None and not re.fullmatch(r"/dev/video\d+", os.path.realpath(device)):
            raise SinkError(f"output {shown}: {device} is not a video device (/dev/videoN, a v4l2loopback device)")
        if device is not None and not os.path.exists(device):
            raise SinkError(f"output {shown}: no device {device}. To make one: {backend_help()}")
        if device is None and not (loopbacks.is_dir() and any(loopbacks.iterdir())):
            raise SinkError(f"output {shown}: no v4l2loopback device is loaded. To make one: {backend_help()}")


KIND = SinkKind(
    name="virtualcam", forms="virtualcam, virtualcam:DEVICE", parse=prefixed("virtualcam", live=True),
    open=open_virtualcam, check=check_virtualcam,
)  # fmt: skip
