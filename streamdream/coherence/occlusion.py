"""Which pixels of a frame were visible in the previous one: forward-backward consistency.

Following Sundaram, Brox and Keutzer (2010), as used for video style transfer by Ruder
et al. (2016) and for the warping error of Lai et al. (2018): follow a pixel of the
second picture back into the first with the backward flow, then forward again with
the forward flow sampled there. Where the round trip does not come home, the pixel
was occluded in the first picture, or is newly revealed, or the flow is wrong there;
in each case nothing from the first picture should be carried onto it.
"""

from __future__ import annotations

import numpy as np

from .flow import pixel_grid, warp

ALPHA = 0.01  # tolerated round-trip error, relative to the squared flow magnitudes
BETA = 0.5  # tolerated round-trip error in squared pixels


def consistency_mask(forward: np.ndarray, backward: np.ndarray, alpha: float = ALPHA, beta: float = BETA) -> np.ndarray:
    """HxW bool over the *second* picture: True where it is consistently seen in the first.

    ``forward`` is the flow first -> second, ``backward`` second -> first (HxWx2 each).
    Pixels whose backward flow leaves the first picture are False (newly revealed).
    """
    if forward.shape != backward.shape:
        raise ValueError(f"forward and backward flows differ in shape: {forward.shape} vs {backward.shape}")
    height, width = backward.shape[:2]
    # the forward flow at the point each second-picture pixel came from
    forward_there = warp(forward, backward)
    round_trip = backward + forward_there
    error = np.einsum("hwc,hwc->hw", round_trip, round_trip)
    magnitude = np.einsum("hwc,hwc->hw", backward, backward) + np.einsum("hwc,hwc->hw", forward_there, forward_there)
    consistent = error <= alpha * magnitude + beta
    source = pixel_grid(height, width) + backward
    inside = (source[..., 0] >= 0) & (source[..., 0] <= width - 1) & (source[..., 1] >= 0) & (source[..., 1] <= height - 1)
    return consistent & inside


__all__ = ["consistency_mask", "ALPHA", "BETA"]
