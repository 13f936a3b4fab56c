"""``streamdream evaluate INPUT OUTPUT``: how coherent, strong and stable a dreamed video is.

The measures themselves are ``coherence/evaluate.py``'s; this module reads the two files,
shows progress and prints the result as text or JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from ..coherence.evaluate import REVEAL_AGES, evaluate_many
from ..coherence.flow import FlowPreset
from ..media import frame_count
from ..progress import progress_iter
from ..runtime.workers import StopToken
from .job_checks import check_videos


def evaluate(
    input_path: str | Path,
    output_path: str | Path,
    *,
    max_frames: int | None = None,
    flow_preset: FlowPreset = "medium",
    progress: Callable[[Iterator[np.ndarray]], Iterable[np.ndarray]] | None = None,
) -> dict[str, float]:
    """Metrics of a dreamed video against its input (keys: ``KEYS``; see ``coherence/evaluate.py``)."""
    return evaluate_many(input_path, [output_path], max_frames=max_frames, flow_preset=flow_preset, progress=progress)[0]


def format_evaluation(result: dict[str, float], as_json: bool = False) -> str:
    """The result as a few lines of text, or as JSON."""
    if as_json:
        return json.dumps(result, indent=2)
    lines = [
        f"frames              {result['frames']} at {result['width']}x{result['height']}",
        f"warping error       output {result['warp_error_output']:.5f}, input {result['warp_error_input']:.5f}, "
        f"ratio {result['warp_error_ratio']:.2f} (1 = as coherent as the input)",
        f"dream strength      {result['dream_strength']:.2f} levels (mean |output - input|)",
        f"brightness offset   first second {result['brightness_offset_first']:+.2f}, last second "
        f"{result['brightness_offset_last']:+.2f}, drift {result['brightness_drift']:+.2f}",
        f"flicker             {result['flicker']:.3f} (output {result['flicker_output']:.3f}, input {result['flicker_input']:.3f})",
        f"visible pixels      {result['visible_fraction']:.1%} (forward-backward flow check); "
        f"{result['scene_cuts']} scene cut(s) skipped",
        f"detail instability  {result['detail_instability']:.3f} (mean relative change of a frame's mean detail)",
        f"revealed content    {result['revealed_share']:.1%} of a frame; detail {result['revealed_detail']:.2f} where "
        f"revealed, {result['carried_detail']:.2f} where carried; {_reveal_speed(result)}",
    ]
    return "\n".join(lines)


def _reveal_speed(result: dict[str, float]) -> str:
    frames = int(result["reveal_frames_to_90"])
    if frames == 0:
        return "none revealed"
    strengths = ", ".join(f"{result[f'reveal_strength_{k}']:.0%}" for k in (1, 2, 3))
    if frames > REVEAL_AGES:
        return f"strength by frame {strengths}; not at 90% within {REVEAL_AGES} frames"
    return f"strength by frame {strengths}; 90% within {frames} frame(s)"


def command(args: argparse.Namespace, stop: StopToken) -> int:
    check_videos(args.input, args.output)

    def progress(frames: Iterator[np.ndarray]) -> Iterable[np.ndarray]:
        total = frame_count(args.input)
        total = min(total, args.max_frames) if total and args.max_frames else total or args.max_frames
        return progress_iter(frames, total, unit="frame", desc="evaluating", enabled=not args.no_progress)

    result = evaluate(args.input, args.output, max_frames=args.max_frames, progress=progress)
    print(json.dumps(result, indent=2) if args.json else format_evaluation(result))
    return 0


__all__ = ["command", "evaluate", "format_evaluation"]
