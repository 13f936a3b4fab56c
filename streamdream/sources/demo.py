"""The built-in ``demo`` input: a generated, textured scene that needs no file or camera.

A landscape (fractal relief, coloured by height, hill-shaded, with rock strata and
scattered stones) is rendered once on a canvas that tiles seamlessly; each frame is a
crop along a smooth camera path plus a few moving rings. DeepDream needs edges and
texture to grow patterns from, which a flat test card lacks. A frame costs a slice,
a copy and three circles: well under a millisecond at 640x480.

``demo?width=320&height=240&fps=30&frames=300&live=1&seed=7``: ``live=1`` paces frames
to the frame clock, marks the source live and makes it endless unless ``frames`` is given.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from ..config import SourceConfig
from ..errors import SourceError
from ..frames import Frame, SourceInfo, freeze
from .base import OpenedInfo, Source
from .kind import OpenContext, SourceKind
from .uri import ParsedUri, query_params

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FPS, DEFAULT_FRAMES = 640, 480, 30.0, 90

# height -> colour: deep water, shallows, sand, grass, forest, rock, snow
_PALETTE_AT = np.array([0.00, 0.30, 0.36, 0.42, 0.58, 0.75, 0.90])
_PALETTE_RGB = np.array(
    [[20, 40, 120], [40, 110, 190], [220, 200, 140], [90, 170, 60], [30, 100, 40], [130, 110, 95], [245, 245, 250]],
    dtype=np.float32,
)


@dataclass(frozen=True)
class DemoSettings:
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    fps: float = DEFAULT_FPS
    frames: int | None = DEFAULT_FRAMES  # None: endless
    live: bool = False
    seed: int = 7


def _number(params: dict[str, str], key: str, kind: type, low: float, high: float, default):
    if key not in params:
        return default
    text = params[key]
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise SourceError(f"demo?{key}=: must be {kind.__name__} in {low:g}..{high:g}, got {text!r}")
    return value


def demo_settings(
    params: dict[str, str], width: int | None = None, height: int | None = None, fps: float | None = None
) -> DemoSettings:
    """Settings from the query string, then the source config, then the defaults."""
    known = {"width", "height", "fps", "frames", "live", "seed"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise SourceError(f"demo: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    live = params.get("live", "0").lower()
    if live not in ("0", "1", "true", "false", "yes", "no", ""):
        raise SourceError(f"demo?live=: must be 0 or 1, got {params['live']!r}")
    is_live = live in ("1", "true", "yes")
    default_frames = None if is_live else DEFAULT_FRAMES
    return DemoSettings(
        width=_number(params, "width", int, 16, 8192, width or DEFAULT_WIDTH),
        height=_number(params, "height", int, 16, 8192, height or DEFAULT_HEIGHT),
        fps=_number(params, "fps", float, 0.1, 1000, fps or DEFAULT_FPS),
        frames=_number(params, "frames", int, 1, 10**9, default_frames),
        live=is_live,
        seed=_number(params, "seed", int, 0, 2**32 - 1, 7),
    )


def _fractal_noise(rng: np.random.Generator, size: int, slope: float) -> np.ndarray:
    """Periodic 1/f^slope noise in [0, 1]: filtering in Fourier space makes it tile."""
    spectrum = np.fft.rfft2(rng.standard_normal((size, size)).astype(np.float32))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    noise = np.fft.irfft2(spectrum / radius**slope, s=(size, size)).astype(np.float32)
    noise -= noise.min()
    return noise / max(float(noise.max()), 1e-6)


def render_landscape(size: int, seed: int) -> np.ndarray:
    """A size x size RGB uint8 landscape that tiles seamlessly in both directions."""
    rng = np.random.default_rng(seed)
    relief = _fractal_noise(rng, size, 1.6)
    detail = _fractal_noise(rng, size, 0.9)
    levels = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(levels, _PALETTE_AT, _PALETTE_RGB[:, c]) for c in range(3)], axis=-1)
    colour = lut.astype(np.float32)[(relief * 255).astype(np.uint8)]
    # hill shading from a light in the north-west; np.roll keeps the canvas periodic
    slope_x = np.roll(relief, -1, axis=1) - np.roll(relief, 1, axis=1)
    slope_y = np.roll(relief, -1, axis=0) - np.roll(relief, 1, axis=0)
    light = np.clip(1.0 - 40.0 * (slope_x + slope_y), 0.45, 1.5)
    # strata: bands across the relief give long edges to dream along
    light *= 0.85 + 0.15 * np.sin(relief * 90.0 + detail * 6.0)
    light *= 0.8 + 0.4 * detail
    colour *= light[..., None]
    canvas = np.clip(colour, 0, 255, out=colour).astype(np.uint8)
    # scattered stones: small sharp-edged blobs with a highlight
    margin = 16
    for _ in range(size * size // 4096):
        x, y = (int(v) for v in rng.integers(margin, size - margin, 2))
        radius = int(rng.integers(3, 12))
        tone = rng.integers(40, 200, 3).tolist()
        cv2.circle(canvas, (x, y), radius, tone, -1, cv2.LINE_AA)
        cv2.circle(canvas, (x - radius // 3, y - radius // 3), max(1, radius // 3), (250, 250, 240), -1, cv2.LINE_AA)
    return canvas


class DemoScene:
    """Frames of the demo scene; ``frame(i)`` depends only on ``i`` (reproducible)."""

    def __init__(self, width: int, height: int, fps: float, seed: int = 7) -> None:
        self.width, self.height, self.fps = width, height, fps
        size = 1 << max(10, math.ceil(math.log2(max(width, height))))
        self._size = size
        landscape = render_landscape(size, seed)
        # padding by one frame turns every wrapped crop into a plain slice
        self._canvas = np.pad(landscape, ((0, height), (0, width), (0, 0)), mode="wrap")

    def frame(self, index: int) -> np.ndarray:
        t = index / self.fps
        size = self._size
        # a slow diagonal drift with a gentle sway: smooth at any frame rate
        x = int(60.0 * t + 0.08 * size * math.sin(0.21 * t)) % size
        y = int(25.0 * t + 0.06 * size * math.sin(0.33 * t + 1.0)) % size
        image = self._canvas[y : y + self.height, x : x + self.width].copy()
        w, h = self.width, self.height
        radius = max(4, min(w, h) // 10)
        for k, colour in enumerate(((255, 60, 60), (250, 220, 40), (80, 220, 255))):
            cx = int(w * (0.5 + 0.4 * math.sin(0.9 * t + 2.1 * k)))
            cy = int(h * (0.5 + 0.35 * math.sin(1.3 * t + 1.7 * k + 0.5)))
            cv2.circle(image, (cx, cy), radius, colour, max(2, radius // 4), cv2.LINE_AA)
            cv2.circle(image, (cx, cy), radius // 2, (20, 20, 20), max(1, radius // 8), cv2.LINE_AA)
        return image


class DemoSource(OpenedInfo):
    """The ``demo`` input as a Source."""

    def __init__(self, settings: DemoSettings, display: str = "demo") -> None:
        self.settings = settings
        self._display = display
        self._closed = threading.Event()
        self._scene: DemoScene | None = None
        self._info: SourceInfo | None = None

    def open(self) -> SourceInfo:
        s = self.settings
        self._closed.clear()
        if self._scene is None:
            self._scene = DemoScene(s.width, s.height, s.fps, s.seed)
        self._info = SourceInfo(
            uri=self._display,
            width=s.width,
            height=s.height,
            fps=Fraction(s.fps).limit_denominator(1001),
            live=s.live,
            frame_count=s.frames,
            duration=s.frames / s.fps if s.frames is not None else None,
            kind="demo",
        )
        return self._info

    def frames(self) -> Iterator[Frame]:
        if self._scene is None:
            raise SourceError("demo: not open (call open() first)")
        scene, s = self._scene, self.settings
        period = 1.0 / s.fps
        deadline = time.monotonic()
        index = 0
        while (s.frames is None or index < s.frames) and not self._closed.is_set():
            if s.live:
                if self._closed.wait(max(0.0, deadline - time.monotonic())):
                    return
                # a late consumer gets the next frame now, not a burst to catch up
                deadline = max(deadline + period, time.monotonic())
            yield Frame(image=freeze(scene.frame(index)), index=index, pts=index * period)
            index += 1

    def close(self) -> None:
        self._closed.set()


def parse(uri: str, display: str) -> ParsedUri | None:
    lower = uri.lower()
    if lower == "demo" or lower.startswith("demo?"):
        return ParsedUri("demo", "demo", display, query_params(uri[5:]))
    return None


def check(parsed: ParsedUri, config: SourceConfig, command: str) -> None:
    demo_settings(parsed.params, config.width, config.height, config.fps)


def open_demo(parsed: ParsedUri, config: SourceConfig, context: OpenContext) -> Source:
    return DemoSource(demo_settings(parsed.params, config.width, config.height, config.fps), parsed.display)


KIND = SourceKind(
    name="demo", forms="demo, demo?width=320&height=240&fps=30&frames=300&live=1&seed=7", what="built-in demo scene",
    parse=parse, open=open_demo, check=check,
)  # fmt: skip
