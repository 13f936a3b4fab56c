"""Revealed content dreamed at once: what the flow could not carry gets a dream of its own.

Flow mode carries the last frame's detail onto the new frame; pixels that fail the carry's
checks (entering at an edge as the camera pans, uncovered behind a moving object, or where
the flow is wrong) get none. The smallest-octave refinement alone gives them a faint, coarse
start, and on a fast pan the entering side then stays a plain strip that follows the camera.

``RevealDreamer`` dreams those pixels in the same frame, at a bounded cost. Flow mode carries
each pixel's *age* (frames since it was revealed, 0 in the frame it appears in) with its
detail; pixels younger than ``frames`` are the young ones:

1. *Region*: the young pixels, specks and clusters under ``MIN_AREA`` removed (a camera's
   noise failing the colour check on a still picture is not a reveal), grown by ``margin``
   pixels of carried context; each group of regions whose boxes overlap is a crop, at least
   ``MIN_CROP`` each way (up to ``MAX_CROPS`` of them; more are one box around all).
2. *Dream*: ``steps`` gradient steps on the crops (the frame plus the detail it has so far) at
   1/``OCTAVE`` of the dream resolution, with ``PAD`` mirrored pixels around it so the
   network's border streaks fall outside (a pan brings every pixel in at the border; raised,
   the streaks would stay as bands); several crops side by side in one call. The
   smallest-octave refinement before gave the coarse shapes; these give mid-sized ones.
   Crops larger together than ``budget`` of the picture (a zoom out reveals a ring) are
   dreamed smaller. The newest pixels take all of the change, older young ones less
   (``frames`` > 1).
3. *Level*: the newest pixels' detail is raised, pixel by pixel (a level map smoothed over
   the newest pixels only), to ``AIM`` x what the last full dream showed per pixel that tones
   let show (at most ``MAX_GAIN`` times): full strength in the frame it appears in.
4. *Seam*: the change is blended in by a mask that fades over ``FEATHER`` pixels outside the
   region, so carried and new detail meet without a hard edge and the carried pixels around
   are hardly touched (their change would be flicker). The gain is not spread: it lifts the
   new detail to the carried detail's level, so there is no step to blend.

The frame's refinement gives ``steps`` of its own steps to this dream (``processors.py``), so
a frame that reveals content costs about what a still frame does.

The new detail comes from the new frame itself, never from a neighbour, so a revealed region
cannot inherit a ghost of what was there before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..measure import channel_mean

if TYPE_CHECKING:  # the engine loads Keras; this module needs only its methods
    from ..dream.engine import DreamEngine

MIN_REVEALED = 0.002  # share of the picture under which failed pixels are left to the refinement
MIN_AREA = 64  # pixels: a smaller cluster of failed pixels is noise, not revealed content
MIN_SIDE = 48  # the smallest side the network dreams (the engine's smallest octave)
MIN_CROP = 96  # the crop dreamed is at least this big each way: its half size still dreams
MAX_CROPS = 2  # most separate crops a frame's revealed regions are dreamed in (side by side, in one call)
MAX_REGIONS = 16  # more separate regions than this are dreamed in one box around all (grouping them costs time)
MAX_GAIN = 6.0  # most the revealed detail is raised to reach the full dream's level
RAISE_PASSES = 2  # the revealed level is measured again after a raise and the gain corrected (see _raise_level)
AIM = 1.2  # revealed detail is raised to this much of the full dream's level: carrying softens it a little
AGE_SETTLED = 255.0  # the age of pixels of a full dream: settled, never young again
FEATHER = 1  # px over which new detail fades into carried detail at the region's edge
OCTAVE = 2.0  # the crop is dreamed at 1/OCTAVE of the dream resolution: mid-sized patterns
PAD = 16  # px mirrored around the crop (at its dreamed size) before its steps: no border streaks
LEVEL_RADIUS = 12.0  # px: the neighbourhood a pixel's detail level is measured over
RING_RADIUS = 2.0  # px: the same for a carried pixel next to revealed ones (its own level, not the region's)
SMOOTH = 3.0  # px: the Gaussian the refinement's weight on young pixels is smoothed with (no line where each strip began)
_SPECK = np.ones((3, 3), np.uint8)


def revealed_core(missing: np.ndarray) -> np.ndarray:
    """HxW bool: the pixels that failed the carry, specks and small clusters (a camera's noise
    failing the colour check here and there on a still picture) removed."""
    opened = cv2.morphologyEx(missing.astype(np.uint8), cv2.MORPH_OPEN, _SPECK)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= MIN_AREA
    keep[0] = False  # the background
    return keep[labels] if count > 1 else np.zeros(missing.shape, bool)


def soft_mask(region: np.ndarray, values: np.ndarray | float = 1.0) -> np.ndarray:
    """HxW float32: ``values`` on all of ``region`` up to its edge, fading to 0 outside it over
    ``FEATHER`` pixels: no seam, and the carried pixels around it hardly touched (their change
    would be flicker). Blurred inside as well, a thin region lost much of its dream."""
    inside = region.astype(np.float32) * values
    return np.maximum(inside, cv2.GaussianBlur(inside, (0, 0), FEATHER))


def ascend_padded(engine: DreamEngine, images: list[np.ndarray], steps: int) -> list[np.ndarray]:
    """The change ``steps`` gradient steps make to each of ``images``, each dreamed with ``PAD``
    mirrored pixels around it. A network's padding leaves streaks along a picture's border; a
    panning camera brings every pixel in at the border, and raised to full level those streaks
    would stay as bands. Mirrored, the border's neighbourhood looks like picture and the streaks
    fall outside. Several images are dreamed side by side in one canvas, each in its own mirror
    (the taller ones' height, the rest mirrored down to it): a gradient step costs about the same
    from 48x120 to 160x240 pixels here, so one call for two crops costs about what one crop does."""
    padded, pads = [], []
    for image in images:
        pad = min(PAD, image.shape[0] - 1, image.shape[1] - 1)
        padded.append(cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101))
        pads.append(pad)
    height = max(p.shape[0] for p in padded)
    columns = [cv2.copyMakeBorder(p, 0, height - p.shape[0], 0, 0, cv2.BORDER_REFLECT_101) for p in padded]
    canvas = np.hstack(columns) if len(columns) > 1 else columns[0]
    change = engine.ascend(canvas, steps) - canvas
    changes, left = [], 0
    for image, column, pad in zip(images, columns, pads):
        changes.append(change[pad : pad + image.shape[0], left + pad : left + pad + image.shape[1]])
        left += column.shape[1]
    return changes


def crop_box(core: np.ndarray, margin: int) -> tuple[slice, slice]:
    """(rows, columns) of ``core``'s bounding box grown by ``margin``, at least ``MIN_SIDE`` each way."""
    height, width = core.shape
    rows, cols = np.flatnonzero(core.any(axis=1)), np.flatnonzero(core.any(axis=0))
    return (_span(rows[0] - margin, rows[-1] + 1 + margin, height), _span(cols[0] - margin, cols[-1] + 1 + margin, width))


def crop_boxes(core: np.ndarray, margin: int) -> list[tuple[slice, slice]]:
    """The crops that dream ``core``: one per group of its regions whose boxes (``crop_box``
    each) overlap, so a strip entering on the right and a cluster the flow lost on the left are
    two small crops, not the whole picture; at most ``MAX_CROPS`` (a gradient step has a fixed
    cost per call), else one box around all of it."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(core.astype(np.uint8), connectivity=8)
    if count - 1 > MAX_REGIONS:  # flow lost all over (noisy or blurred footage): no point grouping
        return [crop_box(core, margin)]
    height, width = core.shape
    boxes = []
    for k in range(1, count):
        x, y, w, h = (int(v) for v in stats[k, :4])
        boxes.append((_span(y - margin, y + h + margin, height), _span(x - margin, x + w + margin, width)))
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if _overlap(boxes[i], boxes[j]):
                    boxes[i] = _union(boxes[i], boxes.pop(j))
                    merged = True
                    break
            if merged:
                break
    return boxes if 0 < len(boxes) <= MAX_CROPS else [crop_box(core, margin)]


def _overlap(a: tuple[slice, slice], b: tuple[slice, slice]) -> bool:
    return all(p.start < q.stop and q.start < p.stop for p, q in zip(a, b))


def _union(a: tuple[slice, slice], b: tuple[slice, slice]) -> tuple[slice, slice]:
    rows, cols = (slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b))
    return rows, cols


def _span(start: int, stop: int, size: int) -> slice:
    short = MIN_CROP - (stop - start)
    if short > 0:
        start, stop = start - short // 2, stop + short - short // 2
    start, stop = max(0, start), min(size, stop)
    if stop - start < MIN_CROP:  # against an edge: grow inwards
        start, stop = (0, min(size, MIN_CROP)) if start == 0 else (max(0, size - MIN_CROP), size)
    return slice(int(start), int(stop))


def _blurred_wide(values: np.ndarray) -> np.ndarray:
    """``values`` (HxW float32) blurred over ``LEVEL_RADIUS`` pixels, at a quarter of the size:
    a level map is smooth, and a full-size blur that wide cost more than the gradient step."""
    height, width = values.shape
    w, h = max(1, width // 4), max(1, height // 4)
    small = cv2.GaussianBlur(cv2.resize(values, (w, h), interpolation=cv2.INTER_AREA), (0, 0), LEVEL_RADIUS / 4)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrinking = width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


class RevealDreamer:
    """Dreams the pixels flow mode could not carry, over the ``frames`` frames after they appear."""

    def __init__(self, engine: DreamEngine, steps: int, frames: int, margin: int, budget: float) -> None:
        self.engine = engine
        self.steps = steps
        self.frames = frames
        self.margin = margin
        self.budget = budget
        self.last_share = 0.0  # of the last frame: share of the picture still being revealed (diagnostics)
        self.last_pixels = 0  # of the last frame: pixels dreamed, summed over the sizes (diagnostics)

    def due(self, age: np.ndarray) -> bool:
        """Whether a frame with these ages has revealed content to dream (cheap: no clean-up)."""
        return self.steps > 0 and float((age < self.frames).mean()) >= MIN_REVEALED

    def __call__(self, small: np.ndarray, detail: np.ndarray, age: np.ndarray, reference_level: float,
                 reference_share: float) -> np.ndarray:
        """``detail`` (float32 HxWx3 on ``small``, changed in place and returned) with its young
        pixels (``age``: frames since each was revealed, 0 in the frame it appears in) dreamed;
        ``reference_level`` and ``reference_share``: the last full dream's shown level and the
        share of its frame where tones let detail show."""
        self.last_share, self.last_pixels = 0.0, 0
        if self.steps <= 0:
            return detail
        core = revealed_core(age < self.frames)
        share = float(core.mean())
        if share < MIN_REVEALED:
            return detail
        self.last_share = share
        boxes = crop_boxes(core, self.margin)
        areas = [(rows.stop - rows.start) * (cols.stop - cols.start) for rows, cols in boxes]
        limit = self.budget * core.size  # the pixels dreamed, shared by the crops' sizes
        shrunk = [self._shrunk(small[rows, cols], detail[rows, cols], limit * area / sum(areas)) for (rows, cols), area in zip(boxes, areas)]
        changes = ascend_padded(self.engine, shrunk, self.steps)
        for (rows, cols), change in zip(boxes, changes):
            base, part, young = small[rows, cols], detail[rows, cols], core[rows, cols]
            ages = age[rows, cols]
            # the newest pixels take all of the steps, older ones less: a region's dream is spread
            # over its first frames and then left alone, so it does not keep changing (flicker)
            share_of_steps = np.clip(1.0 - ages / self.frames, 0.0, 1.0)
            weight = soft_mask(young, share_of_steps)
            part += _resized(change, base.shape[1], base.shape[0]) * weight[..., None]
            self._raise_level(base, part, young, ages, reference_level, reference_share)
            np.clip(base + part, 0.0, 255.0, out=part)
            part -= base
        return detail

    def _shrunk(self, base: np.ndarray, part: np.ndarray, limit: float) -> np.ndarray:
        """The crop (its picture and detail so far) at 1/OCTAVE of its size, where its steps give
        the mid-sized patterns a full dream's middle octaves make (the smallest octave's come
        from the refinement before); never more than ``limit`` pixels big."""
        height, width = base.shape[:2]
        current = np.clip(base + part, 0.0, 255.0)
        scale = min(1.0 / OCTAVE, float(np.sqrt(limit / (height * width))))
        w, h = min(width, max(MIN_SIDE, round(width * scale))), min(height, max(MIN_SIDE, round(height * scale)))
        self.last_pixels += w * h
        return _resized(current, w, h)

    def _raise_level(self, base: np.ndarray, part: np.ndarray, young: np.ndarray, ages: np.ndarray,
                     reference_level: float, reference_share: float) -> None:
        """Bring the young detail to the level the full dream showed where tones let it show,
        pixel by pixel: the local level (smoothed over ``LEVEL_RADIUS``) is raised to the full
        dream's level per showable pixel, so a region is at full level in the frame it appears
        in and stays there. The gain map is smooth, so no frame's strip stands out. Where the
        gain reaches ``MAX_GAIN`` (the crop's dream gave a pixel almost nothing), the region
        falls short; so the level is measured again after the first raise and the gain
        corrected (``RAISE_PASSES``), and the neighbours make up for it. With one pass, thin
        regions (behind a crossing object) reached about half the aim."""
        if reference_level <= 0 or reference_share <= 0:
            return
        tone = self.engine.tone
        newest = young & (ages < 1)  # raised once, in the frame they appear in
        inside = newest.astype(np.float32)
        weight = np.maximum(_blurred_wide(inside), 1e-3)

        def local(values: np.ndarray) -> np.ndarray:  # over young pixels only: carried neighbours must not count
            return _blurred_wide(values * inside) / weight

        aim = AIM * reference_level / reference_share  # per pixel where tones let detail show
        showable = tone.mask(base)
        target = aim * local(showable)
        gain = np.ones_like(weight)
        raised = part
        first = channel_mean(np.abs(tone.apply(part, base)))  # what shows before the raise
        for index in range(RAISE_PASSES):
            shown = first if index == 0 else channel_mean(np.abs(tone.apply(raised, base)))
            gain = np.clip(gain * target / np.maximum(local(shown), 1e-3), 1.0, MAX_GAIN)
            # on the newest pixels only: spilt onto their carried neighbours (by up to MAX_GAIN),
            # it changed those every frame, most of the flicker a pan's reveal added
            raised = part * (1.0 + (gain - 1.0) * inside)[..., None]
        # the carried pixels right next to them: raised only as far as they are short of the
        # level themselves (a carried pixel at full level is left alone), never more than the
        # newest beside them; a pan's previous strip is there, and any change to it is flicker
        ring = soft_mask(newest) - inside
        level = aim * cv2.GaussianBlur(showable, (0, 0), RING_RADIUS)
        own = cv2.GaussianBlur(first, (0, 0), RING_RADIUS)
        short = np.clip(level / np.maximum(own, 1e-3), 1.0, gain)
        raised *= (1.0 + (short - 1.0) * ring)[..., None]
        part[...] = raised

__all__ = ["AGE_SETTLED", "ascend_padded", "MAX_GAIN", "MIN_REVEALED", "MIN_CROP", "MIN_SIDE", "RevealDreamer", "crop_box", "crop_boxes", "soft_mask", "revealed_core"]
