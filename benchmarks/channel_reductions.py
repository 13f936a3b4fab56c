"""Per-pixel channel reductions: numpy's ``axis=2`` against ``streamdream.measure``'s plane by plane.

    python benchmarks/channel_reductions.py --frames 30

The tone keeper (every dream, every frame) and the reveal's raise take each pixel's largest or
mean channel of an HxWx3 picture. numpy's reduction over a last axis of 3 costs about ten times
what a maximum or a sum of the three planes does. This runs flow mode (efficientnet_lite0, 320x240,
the defaults) on the clips of ``revealed_motion.py`` twice, each with an engine of its own, one
with numpy's reductions put back, frame by frame in alternating order (a busy machine slows both
alike), and reports the median ms per frame of each and whether every output frame is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from revealed_motion import clip_frames  # noqa: E402

import streamdream.coherence.reveal as reveal  # noqa: E402
import streamdream.dream.tone as tone  # noqa: E402
from streamdream import measure  # noqa: E402
from streamdream.app import build_engine  # noqa: E402
from streamdream.coherence import PROCESSORS  # noqa: E402
from streamdream.config import parse_config  # noqa: E402
from streamdream.frames import Frame, freeze  # noqa: E402

WAYS = {
    "numpy axis=2": (lambda a: a.max(axis=2), lambda a: a.mean(axis=2)),
    "plane by plane": (measure.channel_max, measure.channel_mean),
}


def use(way: str) -> None:
    tone.channel_max, reveal.channel_mean = WAYS[way]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--clips", default="still,pan_fast,zoom_out,handheld")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    config = parse_config({"model": {"name": "efficientnet_lite0"}, "dream": {"seed": 0}})
    engines = {way: build_engine(config) for way in WAYS}
    report = {}
    for name in args.clips.split(","):
        clip = [freeze(image) for image in clip_frames(name, args.frames)]
        processors = {way: PROCESSORS["flow"](engines[way], config.coherence, width=320) for way in WAYS}
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        outputs: dict[str, list[np.ndarray]] = {way: [] for way in WAYS}
        for index, image in enumerate(clip):
            for way in (list(WAYS) if index % 2 else list(WAYS)[::-1]):
                use(way)
                started = time.perf_counter()
                outputs[way].append(processors[way].process(Frame(image, index, index / 25)).image)
                if index > 0:  # the first frame is a full dream
                    times[way].append(time.perf_counter() - started)
        before, after = (float(np.median(times[way])) * 1e3 for way in WAYS)
        same = all(np.array_equal(a, b) for a, b in zip(*outputs.values()))
        report[name] = {"numpy_ms": before, "planes_ms": after, "ratio": after / before, "identical": same}
        print(f"{name:10s} numpy axis=2 {before:6.1f} ms  plane by plane {after:6.1f} ms  ({after / before:.2f}x)  identical frames: {same}", flush=True)
    use("plane by plane")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
