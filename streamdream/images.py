"""Reading and writing still pictures (RGB float32 in memory, any format OpenCV knows on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import ConfigError, SinkError, StreamdreamError


def read_rgb8(path: str | Path, display: str | None = None, error: type[StreamdreamError] = ConfigError) -> np.ndarray:
    """An HxWx3 uint8 RGB picture from disk, or ``error`` naming the file and why."""
    display = display or str(path)
    if not os.path.isfile(path):
        raise error(f"image file not found: {display}")
    try:
        # np.fromfile + imdecode instead of imread: imread cannot open non-ASCII paths on Windows
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise error(f"cannot read image {display}: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise error(f"cannot read image {display}: not an image OpenCV can decode (PNG, JPEG, BMP, TIFF, WebP, ...)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | Path) -> np.ndarray:
    """An RGB float32 picture (0-255) to dream, or a ConfigError naming the file."""
    return read_rgb8(path).astype(np.float32)


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write a uint8 RGB picture; the format follows the file extension."""
    path = Path(path)
    if not path.parent.exists():
        raise SinkError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error as exc:
        raise SinkError(f"cannot write {path}: {exc}") from None
    if not ok:
        raise SinkError(f"cannot write {path}: unknown image format {path.suffix!r} (use .png or .jpg)")
