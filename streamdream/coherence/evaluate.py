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
* ``detail_instability``: mean relative change, frame to frame, of a frame's mean detail
  (|output - input| averaged over the frame): the dream pumping. Pairs across a cut are left out.
* Revealed content (``reveal_*``): pixels of frame t that fail the forward-backward check
  against frame t-1 (specks removed) were revealed there: entering at an edge, uncovered,
  or where the flow is lost. Each such region is followed along the input's flow for the
  next frames (dropped where it fails the check again). ``revealed_share`` is the mean share
  of a frame revealed; ``revealed_detail`` the mean detail (mean |output - input| over the
  channels) on revealed pixels in the frame they appear in, ``carried_detail`` on the frame's
  settled pixels (not revealed in the last ``REVEAL_AGES`` frames). ``reveal_detail_K`` is a
  revealed region's mean detail in its K-th frame (1: the frame it appears in) and
  ``reveal_strength_K`` the same over the settled pixels' detail of that frame;
  ``reveal_frames_to_90`` the frames a revealed region takes to reach 90% of the settled
  pixels' detail (1: at once; ``REVEAL_AGES`` + 1: not within ``REVEAL_AGES`` frames; 0: no
  revealed content in the clip).

An output of another size than the input is resized to the input's size first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import SourceError
from ..measure import channel_mean
from ..media import read_frames, video_fps
from .flow import FlowEstimator, FlowPreset, to_gray, warp
from .occlusion import consistency_mask
from .reveal import revealed_core
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
    "detail_instability",
    "revealed_share",
    "revealed_detail",
    "carried_detail",
    "reveal_detail_1",
    "reveal_detail_2",
    "reveal_detail_3",
    "reveal_strength_1",
    "reveal_strength_2",
    "reveal_strength_3",
    "reveal_frames_to_90",
)
REVEAL_AGES = 8  # frames a revealed region is followed for
REVEAL_MIN_PIXELS = 64  # a revealed region (or what is left of it) smaller than this is not measured
REVEAL_FULL = 0.9  # share of the settled pixels' detail that counts as full strength



class _Track:
    """Running sums for one output video."""

    def __init__(self) -> None:
        self.errors: list[float] = []
        self.strength_sum = 0.0
        self.brightness: list[float] = []
        self.previous: np.ndarray | None = None
        self.compared: list[bool] = []  # per frame after the first: same shot as the one before
        self.details: list[float] = []  # per frame: mean detail
        self.reveal_detail = [0.0] * REVEAL_AGES  # sums over revealed regions, by age
        self.reveal_ratio = [0.0] * REVEAL_AGES
        self.reveal_count = [0] * REVEAL_AGES
        self.carried_sum = 0.0
        self.carried_count = 0

    def measure_reveals(self, detail: np.ndarray, regions: list[tuple[int, np.ndarray]], settled: np.ndarray | None) -> None:
        if settled is None or not settled.any():
            return
        carried = float(detail[settled].mean())
        self.carried_sum += carried
        self.carried_count += 1
        for age, region in regions:
            here = float(detail[region].mean())
            self.reveal_detail[age] += here
            self.reveal_ratio[age] += here / carried if carried > 0 else 0.0
            self.reveal_count[age] += 1


def _follow(regions: list[tuple[int, np.ndarray]], backward: np.ndarray, visible: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The revealed regions one frame on: moved along the flow, aged, and joined by the new one."""
    moved = []
    for age, region in regions:
        if age + 1 >= REVEAL_AGES:
            continue
        region = (warp(region.astype(np.float32), backward) > 0.5) & visible
        if region.sum() >= REVEAL_MIN_PIXELS:
            moved.append((age + 1, region))
    revealed = revealed_core(~visible)
    if revealed.sum() >= REVEAL_MIN_PIXELS:
        moved.append((0, revealed))
    return moved


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
    revealed_shares: list[float] = []
    regions: list[tuple[int, np.ndarray]] = []  # revealed regions followed: (age, mask on this frame)
    settled: np.ndarray | None = None  # pixels carried, not revealed lately
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
            assert previous_gray is not None and input_track.previous is not None, "compare: a frame came before"
            forward, backward = estimator.both_ways(previous_gray, gray)
            visible = consistency_mask(forward, backward)
            visible_fractions.append(float(visible.mean()))
            input_track.errors.append(_masked_error(frame, input_track.previous, backward, visible))
            regions = _follow(regions, backward, visible)
            revealed_shares.append(float(sum(r.sum() for a, r in regions if a == 0)) / visible.size)
            settled = visible.copy()
            for _, region in regions:
                settled &= ~region
        else:
            regions, settled = [], None
        input_track.brightness.append(_brightness(frame))
        for track, output in zip(tracks, produced):
            if output.shape[:2] != (height, width):
                output = cv2.resize(output, (width, height), interpolation=cv2.INTER_AREA)
            if compare:
                assert track.previous is not None, "compare: an output frame came before"
                track.errors.append(_masked_error(output, track.previous, backward, visible))
            detail = channel_mean(np.abs(output.astype(np.int16) - frame.astype(np.int16)))
            track.strength_sum += float(detail.mean())
            track.details.append(float(detail.mean()))
            track.measure_reveals(detail, regions, settled)
            track.brightness.append(_brightness(output))
            track.previous = output
        input_track.previous = frame
        previous_gray = gray
    summaries = [_summary(track, input_track, visible_fractions, size, fps, cut_count) for track in tracks]
    for summary, track in zip(summaries, tracks):
        summary.update(_reveal_summary(track, revealed_shares))
    return summaries


def _reveal_summary(track: _Track, shares: list[float]) -> dict[str, float]:
    count = track.reveal_count
    detail = [track.reveal_detail[a] / count[a] if count[a] else 0.0 for a in range(REVEAL_AGES)]
    ratio = [track.reveal_ratio[a] / count[a] if count[a] else 0.0 for a in range(REVEAL_AGES)]
    reached = [a + 1 for a in range(REVEAL_AGES) if count[a] and ratio[a] >= REVEAL_FULL]
    frames_to_full = (reached[0] if reached else REVEAL_AGES + 1) if count[0] else 0
    return {
        "revealed_share": float(np.mean(shares)) if shares else 0.0,
        "revealed_detail": detail[0],
        "carried_detail": track.carried_sum / track.carried_count if track.carried_count else 0.0,
        **{f"reveal_detail_{a + 1}": detail[a] for a in range(3)},
        **{f"reveal_strength_{a + 1}": ratio[a] for a in range(3)},
        "reveal_frames_to_90": frames_to_full,
    }


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
        "detail_instability": _instability(track.details, same_shot),
    }


def _instability(details: list[float], same_shot: np.ndarray) -> float:
    values = np.array(details)
    changes = np.abs(np.diff(values))[same_shot]
    mean = float(values.mean())
    return float(changes.mean() / mean) if changes.size and mean > 0 else 0.0


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


__all__ = ["KEYS", "REVEAL_AGES", "evaluate_frames", "evaluate_many"]
