"""The look, measured: grain, strength, blacks and whites on photos; every model; a tiled 4K
frame; ghosts in flow mode.

    python benchmarks/look.py [--photos a.jpg,b.png,...] [--width 480] [--skip-models] [--skip-4k]

At default settings (``streamdream image`` with no options), per photo:
* grain: share of the detail's luminance spectral energy at periods under 4 px (<= 5%);
* strength: mean |dreamed - photo| in levels (>= 12);
* blacks / whites: mean luminance change over the darkest / brightest 20% (|blacks| <= 4).
The photos default to scikit-image's; ``--photos`` adds your own (the figures in docs/dreaming.md
also used OpenCV's sample pictures, from Debian's ``opencv-doc`` package).

Then: the grain of every registered architecture (random weights where the ImageNet ones
would need a download: the conditioning is about the network's strides, not its training),
a 3840x2160 frame dreamed in 512-px tiles (grain, and the detail's jump across tile borders
against elsewhere), and the ghost measure of ``tests/test_look.py`` at three speeds, with
the carry checks on (default) and off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamdream import measure  # noqa: E402
from streamdream.coherence.processors import FlowProcessor  # noqa: E402
from streamdream.config import CoherenceConfig, DreamConfig, ModelConfig  # noqa: E402
from streamdream.dream.engine import DreamEngine, resize  # noqa: E402
from streamdream.frames import freeze  # noqa: E402
from streamdream.images import read_rgb8  # noqa: E402
from streamdream.models.loader import DreamModel, load_dream_model  # noqa: E402
from streamdream.models.registry import REGISTRY  # noqa: E402


def photos(paths: list[str], width: int) -> dict[str, np.ndarray]:
    import skimage.data

    found = {name: getattr(skimage.data, name)() for name in
             ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")}
    found.update({Path(p).name: read_rgb8(p) for p in paths})
    return {k: resize(v.astype(np.float32), min(width, v.shape[1]), round(v.shape[0] * min(width, v.shape[1]) / v.shape[1]))
            for k, v in found.items()}


def photo_rows(pictures: dict[str, np.ndarray]) -> list[dict]:
    engine = DreamEngine(load_dream_model(ModelConfig()), DreamConfig(seed=0))
    rows = []
    for name, picture in pictures.items():
        started = time.perf_counter()
        figures = measure.look_figures(picture, np.round(engine.dream(picture)))
        rows.append({"photo": name, "size": f"{picture.shape[1]}x{picture.shape[0]}", **figures.as_dict(),
                     "seconds": round(time.perf_counter() - started, 1)})
        print(f"{name:<26}{rows[-1]['size']:>10}{figures.grain:>8.3f}{figures.strength:>9.2f}{figures.blacks:>+8.2f}"
              f"{figures.whites:>+8.2f}", flush=True)
    return rows


def _random_weights(name: str) -> DreamModel:
    """A registered Keras architecture with random weights and its mid preset's layers."""
    import keras

    from streamdream.models.loader import make_preprocess

    entry = REGISTRY[name]
    module, fn = {
        "inception_v3": ("inception_v3", "InceptionV3"), "densenet121": ("densenet", "DenseNet121"),
        "vgg16": ("vgg16", "VGG16"), "mobilenet_v2": ("mobilenet_v2", "MobileNetV2"),
        "resnet50": ("resnet50", "ResNet50"), "efficientnet_b0": ("efficientnet", "EfficientNetB0"),
    }[name]
    keras.utils.set_random_seed(0)
    base = getattr(getattr(keras.applications, module), fn)(include_top=False, weights=None, input_shape=(None, None, 3))
    look = entry.presets["mid"]
    extractor = keras.Model(base.inputs, [base.get_layer(n).output for n in look.layer_names])
    return DreamModel(name, extractor, make_preprocess(entry.preprocess_mode), look.layers, look)


def model_rows(picture: np.ndarray) -> list[dict]:
    rows = []
    for name, entry in REGISTRY.items():
        available = entry.available()[0]
        if entry.weights_file is None or available:
            model, weights = load_dream_model(ModelConfig(name=name)), "ImageNet"
        else:
            model, weights = _random_weights(name), "random (no download here)"
        for raw in (False, True):
            settings = dict(transform_scale=0.0, transform_rotate=0.0, laplacian_levels=0, decorrelate=0.0,
                            detail_smooth=0.0, protect_shadows=0.0, protect_highlights=0.0) if raw else {}
            out = np.round(DreamEngine(model, DreamConfig(seed=0, **settings)).dream(picture))
            figures = measure.look_figures(picture, out)
            rows.append({"model": name, "weights": weights, "step": "raw gradient" if raw else "default",
                         **figures.as_dict()})
            print(f"{name:<20}{weights:<26}{rows[-1]['step']:<14}{figures.grain:>8.3f}{figures.strength:>9.2f}", flush=True)
    return rows


def tiled_4k() -> dict:
    import skimage.data

    picture = resize(skimage.data.coffee().astype(np.float32), 3840, 2160)
    engine = DreamEngine(load_dream_model(ModelConfig()), DreamConfig(seed=0, tile_size=512, octaves=1, steps=3))
    started = time.perf_counter()
    out = np.round(engine.dream(picture))
    detail = measure.luminance(out) - measure.luminance(picture)
    jumps = np.abs(np.diff(detail, axis=1)).mean(axis=0)
    borders = [c - 1 for c in range(512, 3840, 512)]  # the tile grid before the random shifts
    interior = [c - 256 for c in borders]  # as many columns, halfway between the borders
    row = {"size": "3840x2160", "tile": 512, "grain": round(measure.grain_share(picture, out), 4),
           "strength": round(measure.detail_strength(picture, out), 2),
           "border_jump_vs_median": round(float(jumps[borders].max() / np.median(jumps)), 3),
           "interior_jump_vs_median": round(float(jumps[interior].max() / np.median(jumps)), 3),
           "seconds": round(time.perf_counter() - started, 1)}
    print(f"4K in 512-px tiles: {row}", flush=True)
    return row


def ghost(speed: int, checks: bool) -> float:
    """Largest share of the background's detail level that shows on a plain disc crossing a
    photo at ``speed`` px/frame (the disc starts without detail; no refinement)."""
    import skimage.data

    width, height, radius = 320, 240, 40
    background = cv2.resize(skimage.data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    engine = DreamEngine(load_dream_model(ModelConfig()), DreamConfig(seed=0, octaves=2, steps=5))
    coherence = CoherenceConfig(refine_steps=0) if checks else CoherenceConfig(refine_steps=0, ghost_tolerance=0, still_flow=0)
    processor = FlowProcessor(engine, coherence)
    worst, level = 0.0, 1.0
    for t in range(max(8, 240 // speed)):
        image = background.copy()
        centre = (radius + 20 + speed * t, height // 2)
        if centre[0] > width - radius:
            break
        cv2.circle(image, centre, radius, (200, 170, 140), -1, cv2.LINE_AA)
        disc = np.zeros((height, width), np.uint8)
        cv2.circle(disc, centre, radius - 2, 1, -1)
        disc = disc.astype(bool)
        detail = np.asarray(processor.dream_detail(image.astype(np.float32)).detail)
        if t == 0:
            start = detail.copy()
            start[disc] = 0.0
            processor._detail = freeze(start)
            level = float(np.abs(detail[~disc]).mean())
            continue
        worst = max(worst, float(np.abs(detail[disc]).mean()) / level)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="", help="comma-separated pictures of your own to measure too")
    parser.add_argument("--width", type=int, default=480, help="photos wider than this are scaled down to it")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-4k", action="store_true")
    parser.add_argument("--json", default="benchmarks/look.json")
    args = parser.parse_args()
    pictures = photos([p for p in args.photos.split(",") if p], args.width)
    print(f"{'photo':<26}{'size':>10}{'grain':>8}{'strength':>9}{'blacks':>8}{'whites':>8}")
    report: dict = {"settings": "defaults (efficientnet_lite0, preset mid, strength 1.0)", "photos": photo_rows(pictures)}
    if not args.skip_models:
        report["models"] = model_rows(pictures["astronaut"][:256, :256] if "astronaut" in pictures else next(iter(pictures.values())))
    if not args.skip_4k:
        report["tiled_4k"] = tiled_4k()
    report["ghost"] = [{"speed_px_per_frame": s, "checks_on": round(ghost(s, True), 4), "checks_off": round(ghost(s, False), 4)}
                       for s in (5, 12, 20)]
    print("ghost (share of background detail on the disc):", report["ghost"], flush=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
