"""Carrying a dream's detail from the frame it was dreamed on to another frame.

Three checks decide where detail may land, and how it gets there:

1. *Occlusion* (forward-backward consistency): where the round trip of the flow does not
   come home, the pixel was hidden or is newly revealed; it gets no detail.
2. *Colour* (photometric consistency): where the source picture, moved along the flow, does
   not look like the target picture, the flow followed the wrong thing. That is what
   happens when a plain hand moves over a patterned wall: smooth flow drags the wall's
   pattern onto the fingers (a see-through hand with a double edge). Such pixels get no
   detail either, and neither do their immediate neighbours. A pixel entering at the edge
   has no source to compare; it fails check 1, not this one.
3. *Stillness*: where the flow is under a fraction of a pixel and the picture did not
   change, the detail is copied as it is instead of being resampled. Resampling a still
   wall every frame softens its pattern a little each time and the refinement steps then
   sharpen it again: the wall shimmers.

Warping is bilinear. Bicubic keeps a pattern a little sharper, but its overshoot changes
carried detail more from frame to frame (the fast pan's warping-error ratio 1.54 against
1.39); what bilinear softens, the refinement and the level stage restore.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .flow import FlowEstimator, pixel_grid, warp, xy_maps
from .occlusion import consistency_mask

# Looser than the occlusion module's defaults (Sundaram's 0.01 and 0.5, kept for the
# evaluation): at the dream resolution the strict test also rejects ~12% of pixels of a
# fast real clip (bikes.mp4) that are only blurred or textureless, where carrying detail
# is harmless and dropping it costs a quarter of the dream's strength. Occlusions and
# revealed borders fail either test.
CARRY_ALPHA = 0.05
CARRY_BETA = 1.0
#: grey levels (of pictures smoothed a little) by which the moved source may differ from the
#: target before the flow is deemed to have followed the wrong thing
COLOR_TOLERANCE = 24.0
#: flow (pixels per frame) under which a pixel whose picture did not change counts as still
STILL_FLOW = 0.5
#: grey levels of change under which a pixel's picture counts as unchanged
STILL_CHANGE = 6.0


@dataclass(frozen=True)
class Carried:
    """Something warped from one picture onto another, and where it could be."""

    values: np.ndarray  # warped values; 0 where ``visible`` is False
    visible: np.ndarray  # HxW bool: True where the pixel was seen in the source picture

    @property
    def visible_fraction(self) -> float:
        return float(self.visible.mean())


def _outside(source: np.ndarray) -> np.ndarray:
    """HxW bool: pixels whose ``source`` position (HxWx2 x, y on a picture of the same size)
    lies outside that picture."""
    height, width = source.shape[:2]
    x, y = source[..., 0], source[..., 1]
    return (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)


def _border_band(flow: np.ndarray) -> np.ndarray:
    """HxW bool: the band along the picture's border that the frame's motion (``flow``, HxWx2)
    can bring new content into: as wide as most of the picture moves (90th percentile), and
    2 px. A pixel further in whose flow points outside the picture is not entering: the flow
    is wrong there (a plain moving disc's flow can point anywhere)."""
    height, width = flow.shape[:2]
    reach = 2 + int(np.ceil(np.percentile(np.abs(flow).reshape(-1, 2), 90, axis=0).max()))
    band = np.ones((height, width), bool)
    band[reach : height - reach, reach : width - reach] = False
    return band


def _smoothed(gray: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(gray.astype(np.float32), (5, 5), 1.0)


class FlowWarper:
    """Carries values that live on one input picture (a dream's detail) onto another.

    Pixels that fail the occlusion or the colour check get 0: the fresh frame shows there,
    undreamed, instead of a smeared copy of a neighbour.
    """

    def __init__(
        self,
        estimator: FlowEstimator,
        interpolation: int = cv2.INTER_LINEAR,
        alpha: float = CARRY_ALPHA,
        beta: float = CARRY_BETA,
        color_tolerance: float = COLOR_TOLERANCE,
        still_flow: float = STILL_FLOW,
    ) -> None:
        self.estimator = estimator
        self.interpolation = interpolation
        self.alpha, self.beta = alpha, beta
        self.color_tolerance = color_tolerance
        self.still_flow = still_flow

    def carry(self, values: np.ndarray, source_gray: np.ndarray, target_gray: np.ndarray, *,
              mirror_edges: bool = False) -> Carried:
        """``values`` (on ``source_gray``'s picture, same size) moved onto ``target_gray``'s.

        ``mirror_edges``: pixels that entered at the picture's edge (their source lies outside
        the source picture: a pan's new side) get the values mirrored at that edge instead of
        none. A stand-in for what is shown until a dream of their own comes (live mode shows
        a dream several frames old); never used for what is carried on to the next dream.
        Content uncovered inside the picture still gets none: mirroring there would be a ghost."""
        forward, backward = self.estimator.both_ways(source_gray, target_gray)
        source, target = _smoothed(source_gray), _smoothed(target_gray)
        if self.still_flow > 0:
            # still pixels: zero flow, so the remap below copies them exactly
            speed = np.hypot(backward[..., 0], backward[..., 1])
            still = (speed < self.still_flow) & (np.abs(target - source) < STILL_CHANGE)
            backward[still] = 0.0
        visible = consistency_mask(forward, backward, self.alpha, self.beta)
        position = pixel_grid(*backward.shape[:2]) + backward  # where each pixel was in the source picture
        entering = _outside(position)  # a pan's new side: no source
        if entering.any():
            entering &= _border_band(backward)
        if self.color_tolerance > 0:
            moved = warp(source, backward)
            # an entering pixel has no source to compare: not wrong, just not visible. Counted
            # wrong, its dilation would drop the carried column beside a pan's new strip every
            # frame, and that column's fresh dream was most of a fast pan's warping error
            wrong = (np.abs(moved - target) > self.color_tolerance) & ~entering
            wrong = cv2.dilate(wrong.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            visible &= ~wrong
        warped = warp(values, backward, self.interpolation)
        if warped.ndim == 3:
            warped *= visible[..., None]
        else:
            warped *= visible
        if mirror_edges and entering.any():
            mirrored = cv2.remap(values, *xy_maps(position), self.interpolation, borderMode=cv2.BORDER_REFLECT_101)
            warped[entering] = mirrored[entering]
        return Carried(warped, visible)


__all__ = ["CARRY_ALPHA", "CARRY_BETA", "COLOR_TOLERANCE", "Carried", "FlowWarper", "STILL_FLOW"]
