"""How temporally coherent, how strong and how stable a dreamed video is, against its input.

Metrics (pictures on 0-255 unless said otherwise):

* ``warp_error_output``: the temporal warping error of Lai et al. 2018 ("Learning Blind
  Video Temporal Consistency"): for each t >= 1, the output frame t-1 is warped onto
  frame t with the optical flow of the *input* (DIS, t -> t-1), pixels failing the
  forward-backward check are masked out, and E_t = sum over unmasked pixels of the
  squared RGB difference (pictures scaled to 0-1) / the number of unmasked pixels.
  The error is the mean of E_t. ``warp_error_input`` is the same for the input itself
  (what motion, lighting and flow errors alone give), and ``warp_error_ratio`` =
  output / input: 1 for a perfectly coherent effect, large for flicker. Frame pairs
  across a scene cut of the input (``scenecut.SceneCutDetector``) are left out: there
  is no motion to follow across a cut, and one such pair would outweigh all the others
  (on bikes.mp4 a cut pair's input error is 1,000 times a normal pair's).
* ``dream_strength``: mean |output - input| over all pixels and channels.
* ``brightness_offset_first`` / ``_last``: mean brightness (grey level) of output minus
  input over the first / the last second; ``brightness_drift`` = last - first.
* ``flicker``: std over t of the frame-to-frame change of (output brightness - input
  brightness): brightness pumping the dream adds. ``flicker_output`` and
  ``flicker_input`` are the std of each video's own frame-to-frame brightness change.
  Pairs across a cut are left out here too.
* ``visible_fraction``: mean share of pixels the forward-backward check kept.
* ``scene_cuts``: cuts found in the input (pairs left out of the warping error).

An output of another size than the input is resized to the input's size first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import SourceError
from ..media import read_frames, video_fps
from .flow import FlowEstimator, FlowPreset, to_gray, warp
from .occlusion import consistency_mask
from .scenecut import DEFAULT_THRESHOLD, SceneCutDetector

KEYS = (
    "frames",
    "width",
    "height",
    "fps",
    "warp_error_output",
    "warp_error_input",
    "warp_error_ratio",
    "dream_strength",
    "brightness_offset_first",
    "brightness_offset_last",
    "brightness_drift",
    "flicker",
    "flicker_output",
    "flicker_input",
    "visible_fraction",
    "scene_cuts",
)



class _Track:
    """Running sums for one output video."""

    def __init__(self) -> None:
        self.errors: list[float] = []
        self.strength_sum = 0.0
        self.brightness: list[float] = []
        self.previous: np.ndarray | None = None
        self.compared: list[bool] = []  # per frame after the first: same shot as the one before


def _brightness(image: np.ndarray) -> float:
    return float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean())


def _masked_error(current: np.ndarray, previous: np.ndarray, backward: np.ndarray, visible: np.ndarray) -> float:
    warped = warp(previous.astype(np.float32), backward)
    diff = (current.astype(np.float32) - warped) / 255.0
    squared = np.einsum("hwc,hwc->hw", diff, diff)
    count = int(visible.sum())
    if count == 0:  # nothing trustworthy to compare: Lai et al. fall back to all pixels
        return float(squared.mean())
    return float(squared[visible].sum() / count)


def evaluate_frames(
    inputs: Iterable[np.ndarray],
    outputs: Sequence[Iterable[np.ndarray]],
    *,
    fps: float | None = None,
    flow_preset: FlowPreset = "medium",
    scene_cut: float = DEFAULT_THRESHOLD,
) -> list[dict[str, float]]:
    """The metrics of each output video against ``inputs`` (RGB uint8 frames, in memory).

    The input's flow and masks are computed once for all outputs; frames are consumed
    as they come, so long videos need not fit in memory. Stops at the shortest video.
    """
    estimator = FlowEstimator("dis", flow_preset)
    cuts = SceneCutDetector(scene_cut)
    cut_count = 0
    iterators = [iter(o) for o in outputs]
    tracks = [_Track() for _ in outputs]
    input_track = _Track()
    visible_fractions: list[float] = []
    previous_gray: np.ndarray | None = None
    size = (0, 0)
    for frame in inputs:
        try:
            produced = [next(it) for it in iterators]
        except StopIteration:
            break
        height, width = frame.shape[:2]
        size = (width, height)
        gray = to_gray(frame)
        compare = previous_gray is not None
        if cuts(frame):
            cut_count += 1
            compare = False
        if previous_gray is not None:
            input_track.compared.append(compare)
        if compare:
            forward, backward = estimator.both_ways(previous_gray, gray)
            visible = consistency_mask(forward, backward)
            visible_fractions.append(float(visible.mean()))
            input_track.errors.append(_masked_error(frame, input_track.previous, backward, visible))
        input_track.brightness.append(_brightness(frame))
        for track, output in zip(tracks, produced):
            if output.shape[:2] != (height, width):
                output = cv2.resize(output, (width, height), interpolation=cv2.INTER_AREA)
            if compare:
                track.errors.append(_masked_error(output, track.previous, backward, visible))
            track.strength_sum += float(np.abs(output.astype(np.int16) - frame.astype(np.int16)).mean())
            track.brightness.append(_brightness(output))
            track.previous = output
        input_track.previous = frame
        previous_gray = gray
    return [_summary(track, input_track, visible_fractions, size, fps, cut_count) for track in tracks]


def _summary(track: _Track, inputs: _Track, visible: list[float], size: tuple[int, int], fps: float | None, cuts: int) -> dict[str, float]:
    frames = len(track.brightness)
    if not track.errors:
        raise ValueError(f"evaluation needs 2 or more frames of one shot in both videos, got {frames} frame(s), {cuts} cut(s)")
    out_b, in_b = np.array(track.brightness), np.array(inputs.brightness[:frames])
    offset = out_b - in_b
    same_shot = np.array(inputs.compared[: frames - 1], bool)  # brightness jumps at cuts are not flicker
    second = max(1, round(fps)) if fps else max(1, frames // 10)
    second = min(second, frames)
    e_out, e_in = float(np.mean(track.errors)), float(np.mean(inputs.errors[: len(track.errors)]))
    return {
        "frames": frames,
        "width": size[0],
        "height": size[1],
        "fps": float(fps) if fps else 0.0,
        "warp_error_output": e_out,
        "warp_error_input": e_in,
        "warp_error_ratio": e_out / e_in if e_in > 0 else (1.0 if e_out == 0 else float("inf")),
        "dream_strength": track.strength_sum / frames,
        "brightness_offset_first": float(offset[:second].mean()),
        "brightness_offset_last": float(offset[-second:].mean()),
        "brightness_drift": float(offset[-second:].mean() - offset[:second].mean()),
        "flicker": float(np.std(np.diff(offset)[same_shot])),
        "flicker_output": float(np.std(np.diff(out_b)[same_shot])),
        "flicker_input": float(np.std(np.diff(in_b)[same_shot])),
        "visible_fraction": float(np.mean(visible)) if visible else 1.0,
        "scene_cuts": cuts,
    }


def evaluate_many(
    input_path: str | Path,
    output_paths: Sequence[str | Path],
    *,
    max_frames: int | None = None,
    flow_preset: FlowPreset = "medium",
    progress: Callable[[Iterator[np.ndarray]], Iterable[np.ndarray]] | None = None,
) -> list[dict[str, float]]:
    """``evaluate`` for several outputs of one input; the input's flow is computed once.

    ``progress`` wraps the input's frames (e.g. in a progress bar)."""
    fps = video_fps(input_path)
    outputs = [read_frames(p, max_frames) for p in output_paths]
    inputs = read_frames(input_path, max_frames)
    try:
        return evaluate_frames(progress(inputs) if progress else inputs, outputs, fps=fps, flow_preset=flow_preset)
    except ValueError as exc:
        names = ", ".join(str(p) for p in output_paths)
        raise SourceError(f"cannot evaluate {names} against {input_path}: {exc}") from None


__all__ = ["KEYS", "evaluate_frames", "evaluate_many"]
