"""Optical flow between input frames, and backward warping along it.

Flow is always estimated on the *input* frames (grey, at the dream resolution), never
on dreamed ones: the dream's own patterns would otherwise be tracked as motion.
A flow field ``F`` from picture A to picture B holds, for every pixel of A, where it
moved to in B (``B[p + F[p]] ~ A[p]``). Warping is backward: to move something that
lives on A onto B we sample it with the flow from B to A.
"""

from __future__ import annotations

import threading
from typing import Literal

import cv2
import numpy as np

FlowMethod = Literal["dis", "farneback"]
FlowPreset = Literal["ultrafast", "fast", "medium"]

DIS_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def to_gray(image: np.ndarray) -> np.ndarray:
    """A contiguous uint8 grey picture from RGB (uint8 or float 0-255) or grey input."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image)


_grids: dict[tuple[int, int], np.ndarray] = {}
_grids_lock = threading.Lock()


def pixel_grid(height: int, width: int) -> np.ndarray:
    """HxWx2 float32 (x, y) coordinates of every pixel; cached per size, read-only."""
    key = (height, width)
    grid = _grids.get(key)
    if grid is None:
        xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        grid = np.stack([xs, ys], axis=-1)
        grid.flags.writeable = False
        with _grids_lock:
            _grids[key] = grid
    return grid


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Backward warp: ``out[p] = image[p + flow[p]]``; samples outside the picture are 0.

    ``flow`` is the flow from the picture being built to ``image``'s picture.
    """
    height, width = flow.shape[:2]
    coords = pixel_grid(height, width) + flow
    return cv2.remap(image, *xy_maps(coords), interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def xy_maps(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap``'s x and y maps from HxWx2 source positions: two maps, not one and None,
    which OpenCV 5.0's type stubs do not accept (the same pixels either way)."""
    return np.ascontiguousarray(coords[..., 0]), np.ascontiguousarray(coords[..., 1])


def resize_flow(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """A flow field resampled to (width, height), its vectors scaled to match."""
    h, w = flow.shape[:2]
    if (w, h) == (width, height):
        return flow
    resized = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    resized[..., 0] *= width / w
    resized[..., 1] *= height / h
    return resized


class FlowEstimator:
    """Dense optical flow between two grey pictures of the same size.

    DIS (OpenCV's dense inverse search) by default: ``ultrafast`` about 2 ms (live mode's
    shown carry), ``fast`` about 5 ms and ``medium`` about 10 ms at 320x240 on one core,
    each way. Flow mode carries with ``medium`` (``coherence.flow_preset``): against
    ``fast`` its carry lowers the warping error along a made clip's true motion by a third
    on a slow pan and a zoom (``benchmarks/revealed_motion.py``). Farneback is slower and
    smoother. An instance keeps OpenCV state: use one per thread.
    """

    def __init__(self, method: FlowMethod = "dis", preset: FlowPreset = "fast") -> None:
        if method not in ("dis", "farneback"):
            raise ValueError(f"flow method must be dis or farneback, got {method!r}")
        if preset not in DIS_PRESETS:
            raise ValueError(f"flow preset must be one of {', '.join(DIS_PRESETS)}, got {preset!r}")
        self.method = method
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])  # type: ignore[attr-defined]  # in cv2, not in its stubs if method == "dis" else None

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Flow from ``first`` to ``second`` (HxWx2 float32, pixels)."""
        first, second = to_gray(first), to_gray(second)
        if first.shape != second.shape:
            raise ValueError(f"flow needs pictures of one size, got {first.shape} and {second.shape}")
        if self._dis is not None:
            return self._dis.calc(first, second, None)
        flow = np.zeros((*first.shape, 2), np.float32)  # filled in (flags 0: not read as a start)
        return cv2.calcOpticalFlowFarneback(first, second, flow, 0.5, 4, 15, 3, 5, 1.2, 0)

    def both_ways(self, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(forward, backward): flows first -> second and second -> first."""
        return self(first, second), self(second, first)


__all__ = [
    "DIS_PRESETS",
    "FlowEstimator",
    "pixel_grid",
    "resize_flow",
    "to_gray",
    "warp",
    "xy_maps",
]
