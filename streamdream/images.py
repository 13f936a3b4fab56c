"""Reading and writing still pictures (RGB float32 in memory, any format OpenCV knows on disk)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import ConfigError, SinkError


def read_image(path: str | Path) -> np.ndarray:
    """An RGB float32 picture (0-255) from disk, or a ConfigError naming the file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        reason = "not found" if not Path(path).exists() else "not a readable image"
        raise ConfigError(f"image {path}: {reason}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)


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
