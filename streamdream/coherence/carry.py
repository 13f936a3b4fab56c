"""Carrying a dream's detail from the frame it was dreamed on to another frame."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .flow import FlowEstimator, warp
from .occlusion import consistency_mask

# Looser than the occlusion module's defaults (Sundaram's 0.01 and 0.5, kept for the
# evaluation): at the dream resolution the strict test also rejects ~12% of pixels of a
# fast real clip (bikes.mp4) that are only blurred or textureless, where carrying detail
# is harmless and dropping it costs a quarter of the dream's strength. Occlusions and
# revealed borders fail either test.
CARRY_ALPHA = 0.05
CARRY_BETA = 1.0


@dataclass(frozen=True)
class Carried:
    """Something warped from one picture onto another, and where it could be."""

    values: np.ndarray  # warped values; 0 where ``visible`` is False
    visible: np.ndarray  # HxW bool: True where the pixel was seen in the source picture

    @property
    def visible_fraction(self) -> float:
        return float(self.visible.mean())


class FlowWarper:
    """Carries values that live on one input picture (a dream's detail) onto another.

    Pixels that the forward-backward check marks as occluded or newly revealed get 0:
    the fresh frame shows there, undreamed, instead of a smeared copy of a neighbour.
    """

    def __init__(
        self,
        estimator: FlowEstimator,
        interpolation: int = cv2.INTER_LINEAR,
        alpha: float = CARRY_ALPHA,
        beta: float = CARRY_BETA,
    ) -> None:
        self.estimator = estimator
        self.interpolation = interpolation
        self.alpha, self.beta = alpha, beta

    def carry(self, values: np.ndarray, source_gray: np.ndarray, target_gray: np.ndarray) -> Carried:
        """``values`` (on ``source_gray``'s picture, same size) moved onto ``target_gray``'s."""
        forward, backward = self.estimator.both_ways(source_gray, target_gray)
        visible = consistency_mask(forward, backward, self.alpha, self.beta)
        warped = warp(values, backward, self.interpolation)
        if warped.ndim == 3:
            warped *= visible[..., None]
        else:
            warped *= visible
        return Carried(warped, visible)


__all__ = ["CARRY_ALPHA", "CARRY_BETA", "Carried", "FlowWarper"]
