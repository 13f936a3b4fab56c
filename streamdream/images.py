"""Reading and writing still pictures (RGB float32 in memory, any format OpenCV knows on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .config import MAX_PIXELS_8K
from .errors import ConfigError, SinkError, StreamdreamError
from .imageheader import FORMATS, picture_size
from .safe_write import TempTarget, check_target


def check_picture_size(width: int, height: int, display: str, max_pixels: int, error: type[StreamdreamError]) -> None:
    """``error`` if a picture or frame is larger than ``max_pixels`` (checked before it is allocated)."""
    if width * height > max_pixels:
        raise error(
            f"{display} is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the limit of "
            f"{max_pixels / 1e6:.1f} megapixels (source.max_pixels; the default is 8K UHD, 7680x4320); "
            "scale it down first or raise source.max_pixels"
        )


def check_picture(
    path: str | Path | None, what: str, error: type[StreamdreamError] = ConfigError, hint: str = "",
    max_pixels: int = MAX_PIXELS_8K,
) -> None:  # fmt: skip
    """A still image OpenCV can read, within ``max_pixels``: from its header, nothing decoded."""
    if path is None:
        return

    path = str(path)
    if not os.path.exists(path):
        raise error(f"{what}: image file not found: {path}")
    if not os.path.isfile(path):
        raise error(f"{what}: not a file: {path}")
    if not os.access(path, os.R_OK):
        raise error(f"{what}: cannot read image {path}: permission denied")
    if not cv2.haveImageReader(path):
        raise error(f"{what}: cannot read image {path}: not an image OpenCV can decode (PNG, JPEG, BMP, TIFF, WebP, ...){hint}")
    with open(path, "rb") as file:
        size = picture_size(file.read(1 << 20))
    if size is not None:
        check_picture_size(*size, f"{what}: {path}", max_pixels, error)


def read_rgb8(
    path: str | Path, display: str | None = None, error: type[StreamdreamError] = ConfigError,
    max_pixels: int = MAX_PIXELS_8K,
) -> np.ndarray:
    """An HxWx3 uint8 RGB picture from disk, or ``error`` naming the file and why.

    The size is read from the file's header and checked against ``max_pixels`` before the
    picture is decoded, so a small file that claims a huge picture costs nothing.
    """
    display = display or str(path)
    if not os.path.isfile(path):
        raise error(f"image file not found: {display}")
    limit = max_pixels * 8 + (16 << 20)  # far more than any picture within max_pixels compresses to
    if os.path.getsize(path) > limit:
        raise error(f"image {display} is larger than {limit >> 20} MiB; no picture within source.max_pixels is")
    try:
        # np.fromfile + imdecode instead of imread: imread cannot open non-ASCII paths on Windows
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise error(f"cannot read image {display}: {exc.strerror or exc}") from None
    size = picture_size(data[:1 << 20].tobytes())
    if size is None:
        raise error(f"cannot read image {display}: not an image in a format read here ({FORMATS}), or damaged")
    check_picture_size(*size, display, max_pixels, error)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as exc:
        raise error(f"cannot read image {display}: OpenCV says: {str(exc).strip().splitlines()[-1][:200]}") from None
    if image is None:
        raise error(f"cannot read image {display}: not an image OpenCV can decode ({FORMATS}), or damaged")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | Path) -> np.ndarray:
    """An RGB float32 picture (0-255) to dream, or a ConfigError naming the file."""
    return read_rgb8(path).astype(np.float32)


def write_image(path: str | Path, rgb: np.ndarray, *, overwrite: bool = False) -> None:
    """Write a uint8 RGB picture; the format follows the file extension.

    An existing file is refused unless ``overwrite``; the picture is written beside it
    under a temporary name and renamed into place, so a failure leaves the old one.
    """
    path = Path(path)
    check_target(path, overwrite=overwrite)
    target = TempTarget(path, overwrite=overwrite)
    try:
        ok = cv2.imwrite(str(target.path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error as exc:
        target.abandon(keep=False)
        raise SinkError(f"cannot write {path}: {exc}") from None
    if not ok:
        target.abandon(keep=False)
        raise SinkError(f"cannot write {path}: unknown image format {path.suffix!r} (use .png or .jpg)")
    target.commit()
