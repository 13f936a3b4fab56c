"""What losing a node costs a cluster run: the same job with and without the fault, side by side.

    python benchmarks/cluster_node_loss.py --out benchmarks/cluster_node_loss.json

A loopback Ray cluster (``ray.cluster_utils.Cluster``, every node on 127.0.0.1 with one CPU):
a head that holds the driver and never dreams, and worker nodes carrying a ``dreamer``
resource, one dream worker each. One clip (``--shots`` shots of ``--shot-frames`` frames at
10 fps, written by the tests' ``write_shots``: one segment a shot) is dreamed, in each round:

1. ``two_nodes``: on two worker nodes, no fault;
2. ``node_lost``: on two worker nodes, one removed (killed, not drained) when a segment on it
   is ``--lose-at`` of the way through; its segment goes back to the queue and the run
   finishes on the surviving node;
3. ``one_node``: on one worker node from the start (what is left after the loss).

Each run's wall time covers the job only (the workers are started and ready before the clock
starts); the node loss costs the extra time of run 2 against run 1. Run 3 bounds it: losing
a node at the very start costs its share of the work; losing it later also costs the frames
its worker had dreamed of the lost segment, plus the time the driver takes to notice
(``segment_requeued_after_seconds``: from the kill to the segment back in the queue) and
the wait for a surviving worker to finish its own segment (``segment_restarted_after_seconds``).
``--model tiny`` (the default) is the tests' two-layer seeded model, so the figures show the
scheduler's costs rather than the dream's; ``--model efficientnet_lite0`` dreams for real.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DREAMER = {"dreamer": 1.0}
NODE = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "object_store_memory": 80 * 2**20}


def tiny_model(folder: Path) -> Path:
    """The tests' tiny model (tests/fixtures/models.py), saved once."""
    import keras

    path = folder / "tiny.keras"
    if not path.exists():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((None, None, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
        keras.Model(inputs, x, name="tiny").save(path)
    return path


def make_config(args, folder: Path):
    from streamdream.config import parse_config

    model = {"name": str(tiny_model(folder)), "layers": "conv2"} if args.model == "tiny" else {"name": args.model}
    return parse_config({"outputs": [str(folder / "unused.mp4")], "model": model,
                         "dream": {"octaves": 1, "steps": args.steps, "width": args.width, "seed": 0},
                         "pipeline": {"progress": False}})  # fmt: skip


def one_run(cluster, config, clip: Path, out: Path, workers: int, lose_at: float | None, segment_frames: int) -> dict:
    import ray

    from streamdream.cluster.command import dream_files
    from streamdream.cluster.pool import WorkerPool
    from streamdream.runtime.workers import StopToken

    nodes = [cluster.add_node(**NODE, resources=DREAMER) for _ in range(workers)]
    by_id = {n.node_id: n for n in nodes}
    pool = WorkerPool.start(config, None, resources=DREAMER)
    stats: dict = {}
    result: dict = {}
    output = config.outputs[0].model_copy(update={"uri": str(out)})
    try:
        started = time.monotonic()
        job = threading.Thread(target=lambda: result.update(r=dream_files(config, [(str(clip), output)], StopToken(),
                                                                           pool=pool, stats=stats)))  # fmt: skip
        job.start()
        lost: dict = {}
        while lose_at is not None and not lost and job.is_alive():
            board = ray.get(pool.board.snapshot.remote())
            for key, done in board["frames"].items():
                if done >= lose_at * segment_frames:
                    worker = board["workers"][key][-1]
                    node = next(m.node for m in pool.members if m.name == worker)
                    lost.update(key=key, frames_done=done, at=time.monotonic() - started, node=node)
                    cluster.remove_node(by_id.pop(node), allow_graceful=False)
                    lost["removed_in"] = time.monotonic() - started - lost["at"]
                    break
            time.sleep(0.05)
        while lost and job.is_alive() and "restarted_after" not in lost:
            board = ray.get(pool.board.snapshot.remote())
            now = time.monotonic() - started - lost["at"]
            if lost["key"] not in board["frames"]:  # the driver gave the segment up: back in the queue
                lost.setdefault("requeued_after", now)
            if board["attempts"].get(lost["key"], 0) >= 2:  # a surviving worker started it again
                lost["restarted_after"] = now
            time.sleep(0.02)
        job.join()
        wall = time.monotonic() - started
    finally:
        pool.close()
        for node in by_id.values():
            cluster.remove_node(node)
    [file] = result["r"]
    assert file.ok, file.error
    pieces = stats["pieces"]
    report = {
        "workers_at_start": workers,
        "job_seconds": wall,
        "frames": file.frames,
        "segments": file.segments,
        "pieces_saved": len(pieces),
        "fps": file.frames / wall,
        "dreamed_frames": sum(p.frames + p.warmup for p in pieces),
    }
    if lost:
        report["loss"] = {"segment": lost["key"].rsplit("#", 1)[1], "at_seconds": lost["at"],
                          "frames_lost": lost["frames_done"], "node_removed_in_seconds": lost["removed_in"],
                          "segment_requeued_after_seconds": lost.get("requeued_after"),
                          "segment_restarted_after_seconds": lost.get("restarted_after")}  # fmt: skip
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny (the tests' model) or a registry name")
    parser.add_argument("--width", type=int, default=128, help="dream width")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--shots", type=int, default=8, help="shots (= segments) in the clip")
    parser.add_argument("--shot-frames", type=int, default=30, help="frames a shot, at 10 fps")
    parser.add_argument("--lose-at", type=float, default=0.5, help="share of a segment done when its node is lost")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/streamdream-node-loss-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    from streamdream.cluster.pool import connect, import_ray

    import_ray(local=True)  # before Ray is imported: every node on loopback
    from ray.cluster_utils import Cluster

    from tests.fixtures.shots import write_shots

    clip = write_shots(args.work / "in.mp4", (args.shot_frames,) * args.shots, fps=10)
    config = make_config(args, args.work)
    started = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    connect(cluster.address)
    ray_start = time.monotonic() - started
    rounds = []
    try:
        for number in range(args.rounds):
            runs = {}
            for name, workers, lose_at in (("two_nodes", 2, None), ("node_lost", 2, args.lose_at), ("one_node", 1, None)):
                out = args.work / f"{name}-{number}.mp4"
                out.unlink(missing_ok=True)
                runs[name] = one_run(cluster, config, clip, out, workers, lose_at, args.shot_frames)
                print(name, json.dumps(runs[name]), flush=True)
            runs["node_loss_extra_seconds"] = runs["node_lost"]["job_seconds"] - runs["two_nodes"]["job_seconds"]
            runs["node_loss_extra_percent"] = 100 * runs["node_loss_extra_seconds"] / runs["two_nodes"]["job_seconds"]
            rounds.append(runs)
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(), "python": platform.python_version()},
        "clip": {"shots": args.shots, "frames_per_shot": args.shot_frames, "fps": 10, "size": "192x108"},
        "dream": {"model": args.model, "width": args.width, "steps": args.steps, "octaves": 1},
        "lose_at": args.lose_at,
        "ray_start_seconds": ray_start,
        "rounds": rounds,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
