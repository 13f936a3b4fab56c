"""The cluster survives losing nodes and uses nodes that join: a real multi-node Ray cluster on loopback.

``ray.cluster_utils.Cluster`` starts a head and worker nodes as separate raylets on this
machine, every one on 127.0.0.1, each with one CPU. Worker nodes also carry a ``dreamer``
resource that the dream workers ask for, so workers run only there (one per node) and the
head (which holds the driver and the progress board) never dreams: removing a worker node
is losing a machine of a real cluster, and the test knows which.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import threading
import time
from pathlib import Path

import pytest

from streamdream.cluster.command import ClusterLostError, dream_files
from streamdream.cluster.plan import SegmentPolicy
from streamdream.cluster.pool import WorkerPool, connect
from streamdream.cluster.progress import ClusterProgress
from streamdream.cluster.scheduler import Scheduler, prepare_job
from streamdream.config import parse_config
from streamdream.runtime.workers import StopToken
from streamdream.service.metrics import PrometheusObserver
from tests.fixtures.cluster import assert_same_frames_as, board_snapshot, output
from tests.fixtures.shots import write_shots

if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed (pip install 'streamdream[cluster]')", allow_module_level=True)

TINY_DREAM = {"octaves": 1, "steps": 6, "width": 128, "seed": 0}
DREAMER = {"dreamer": 1.0}
LOOPBACK = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "object_store_memory": 80 * 2**20}
WAIT_S = 240  # generous: this machine is shared and loaded; a run here takes well under a minute


@pytest.fixture(scope="module")
def cluster():
    from streamdream.cluster.pool import import_ray

    import_ray(local=True)  # before Ray is imported: every process of every node binds loopback
    from ray.cluster_utils import Cluster

    # pieces go through the object store (not inline in replies) as a real segment's megabytes do
    head = Cluster(initialize_head=True, head_node_args={**LOOPBACK, "include_dashboard": False,
                                                         "_system_config": {"max_direct_call_object_size": 1024}})  # fmt: skip
    assert connect(head.address)  # the code path `--cluster 127.0.0.1:PORT` takes
    import ray

    yield head
    ray.shutdown()
    head.shutdown()


@pytest.fixture
def nodes(cluster):
    """Worker nodes started by a test; those it did not remove are removed after it."""
    import ray

    started = []

    def add():
        node = cluster.add_node(**LOOPBACK, resources=DREAMER)
        started.append(node)
        return node

    yield add
    for node in started:
        if node in cluster.worker_nodes:
            cluster.remove_node(node)
    deadline = time.monotonic() + 30
    while sum(n["Alive"] for n in ray.nodes()) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def config(tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nodes")
    return parse_config({
        "outputs": [str(folder / "unused.mp4")],
        "model": {"name": str(tiny_model_path), "layers": "conv2"},
        "dream": TINY_DREAM,
        "pipeline": {"progress": False},
    })  # fmt: skip


def in_background(target):
    results: dict = {}
    thread = threading.Thread(target=lambda: results.update(value=target()), daemon=True)
    thread.start()
    return thread, results


def wait_for(condition, what):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def pieces_in(folder: Path) -> set[int]:
    return {int(p.stem.split("-")[1]) for p in folder.glob("piece-*.mp4")}


def test_a_node_lost_mid_run_has_its_segment_dreamed_on_a_surviving_node(cluster, nodes, config, tmp_path):
    first, second = nodes(), nodes()
    by_id = {first.node_id: first, second.node_id: second}
    pool = WorkerPool.start(config, None, resources=DREAMER)
    try:
        assert sorted(m.node for m in pool.members) == sorted(by_id)  # one worker per worker node, none on the head
        clip = write_shots(tmp_path / "in.mp4", (20, 20, 20, 20, 20), fps=10)  # 5 shots: 5 segments
        out = tmp_path / "out.mp4"
        metrics, stats = PrometheusObserver(model="tiny"), {}
        job, results = in_background(lambda: dream_files(config, [(str(clip), output(config, out))], StopToken(),
                                                         pool=pool, observer=metrics, stats=stats))  # fmt: skip
        lost: dict = {}

        def mid_segment() -> bool:
            board = board_snapshot(pool)
            for key, done in board["frames"].items():
                if 2 <= done <= 12:
                    worker = board["workers"][key][-1]
                    lost.update(key=key, node=next(m.node for m in pool.members if m.name == worker))
                    return True
            return not job.is_alive()

        wait_for(mid_segment, "a segment mid-way")
        assert lost, "the run ended before a segment was seen mid-way"
        cluster.remove_node(by_id[lost["node"]], allow_graceful=False)  # killed, as a machine that loses power
        job.join(WAIT_S)
        [result] = results["value"]
        assert result.ok, result.error
        assert_same_frames_as(out, clip)
        board = board_snapshot(pool)
        assert board["attempts"][lost["key"]] == 2  # dreamed again, once
        assert all(n == 1 for key, n in board["attempts"].items() if key != lost["key"])
        assert sorted(p.segment for p in stats["pieces"]) == [0, 1, 2, 3, 4]  # each piece saved once
        survivor = next(n for n in by_id if n != lost["node"])
        retried = next(p for p in stats["pieces"] if f"#{p.segment}" in lost["key"])
        assert retried.node == survivor
        exported = metrics.exposition().decode()
        label = next(label for label in re.findall(r'node="([^"]+)"', exported) if label.endswith(lost["node"][:8]))
        assert f'streamdream_cluster_workers_lost_total{{node="{label}"}} 1.0' in exported
        assert f'streamdream_cluster_segments_retried_total{{node="{label}"}} 1.0' in exported
        assert f'streamdream_cluster_workers{{node="{label}"}} 0.0' in exported
    finally:
        pool.close()


def test_a_node_that_joins_mid_run_gets_a_worker_and_segments(cluster, nodes, config, tmp_path):
    nodes()
    pool = WorkerPool.start(config, None, resources=DREAMER)
    [first] = pool.members
    try:
        clip = write_shots(tmp_path / "in.mp4", (20,) * 6, fps=10)  # 6 segments
        out = tmp_path / "out.mp4"
        metrics, stats = PrometheusObserver(model="tiny"), {}
        job, results = in_background(lambda: dream_files(config, [(str(clip), output(config, out))], StopToken(),
                                                         pool=pool, observer=metrics, stats=stats))  # fmt: skip
        wait_for(lambda: board_snapshot(pool)["in_flight"] or not job.is_alive(), "the first frames")
        assert job.is_alive()
        # the first worker pauses until the new node's worker has a segment: however long its start
        # takes on this machine, the run cannot end before it (SIGCONT in `finally`, whatever happens)
        pid = int(first.name.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGSTOP)
        try:
            joined = nodes()
            wait_for(lambda: any(w[-1] != first.name for w in board_snapshot(pool)["workers"].values()), "a segment on the new node")
        finally:
            os.kill(pid, signal.SIGCONT)
        job.join(WAIT_S)
        [result] = results["value"]
        assert result.ok, result.error
        assert_same_frames_as(out, clip)
        assert any(p.node == joined.node_id for p in stats["pieces"])  # the new node dreamed
        assert sorted(p.segment for p in stats["pieces"]) == list(range(6))
        exported = metrics.exposition().decode()
        assert re.search(rf'streamdream_cluster_workers_started_total{{node="[^"]+/{joined.node_id[:8]}",reason="added"}} 1.0', exported)
    finally:
        pool.close()


def test_every_worker_node_lost_stops_with_the_resume_command_and_the_resume_finishes(cluster, nodes, tiny_model_path,
                                                                                        tmp_path, capfd, monkeypatch):  # fmt: skip
    from streamdream.cli import main

    workers = [nodes(), nodes()]
    clip = write_shots(tmp_path / "in.mp4", (20,) * 6, fps=10)  # 6 segments
    out, parts = tmp_path / "out.mp4", tmp_path / "out.mp4.parts"
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--input", "in.mp4", "--output", "out.mp4", "--cluster", cluster.address, "--worker-resource", "dreamer",
            "--no-progress", "--model", str(tiny_model_path), "--layers", "conv2", "--octaves", "1", "--steps", "6",
            "--width", "128", "--seed", "0"]  # fmt: skip
    job, results = in_background(lambda: main(argv))
    wait_for(lambda: pieces_in(parts) or not job.is_alive(), "the first piece")
    for node in workers:
        cluster.remove_node(node)
    job.join(WAIT_S)
    assert results["value"] == 1
    kept = pieces_in(parts)
    assert 1 <= len(kept) < 6
    printed = capfd.readouterr().err  # what the user sees: the log, and what Ray forwards from the workers
    messages = [line for line in printed.splitlines() if " ERROR " in line]
    assert any("no dream worker is left" in m and "no node of the cluster has room" in m and "dreamer 1" in m for m in messages)
    assert any(f"{len(kept)} of 6 segments are finished and kept in out.mp4.parts" in m for m in messages)
    assert "Traceback" not in printed
    [resume] = [m.split("to resume, run: ", 1)[1] for m in messages if "to resume, run: " in m]
    where, _, command = resume.partition(" && ")
    assert shlex.split(where) == ["cd", str(tmp_path)]
    words = shlex.split(command)
    assert words[words.index("run") :] == argv  # the same command, whatever started it

    nodes()  # the cluster has room again
    assert main(words[words.index("run") :]) == 0
    assert f"({len(kept)} reused from an earlier run)" in capfd.readouterr().err
    assert_same_frames_as(out, clip)
    assert not parts.exists()


def test_a_piece_finished_on_a_lost_node_but_not_handed_in_is_dreamed_again(cluster, nodes, config, tmp_path):
    import ray

    node = nodes()
    clip = write_shots(tmp_path / "in.mp4", (20, 20), fps=10)
    job = prepare_job(config, str(clip), output(config, tmp_path / "out.mp4"), SegmentPolicy(), name="lost-piece")
    pool = WorkerPool.start(config, None, resources=DREAMER)
    try:
        [member] = pool.members
        ref = member.actor.dream.remote(job.task(0), pool.board)
        assert ray.wait([ref], fetch_local=False, timeout=WAIT_S)[0]  # dreamed; the piece is still on its node
        cluster.remove_node(node)
        scheduler = Scheduler(pool, StopToken(), ClusterProgress(total_frames=40, done_frames=0, total_segments=2,
                                                                      done_segments=0, workers=1, enabled=False))  # fmt: skip
        scheduler.in_flight[ref] = (member, job, 0)
        assert not scheduler._collect(ref, member, job, 0)  # the worker is gone with its node
        assert list(scheduler.queue) == [(job, 0)]  # dreamed again, by whoever is left
        assert job.done == set() and not job.folder.piece(0).exists()  # nothing recorded from the lost piece
        assert pool.members == [] and scheduler.progress.segments_retried == {member.label: 1}
    finally:
        pool.close()
        job.folder.remove()


def test_pool_refuses_a_cluster_without_room_with_a_clear_message(cluster, config):
    with pytest.raises(ClusterLostError, match=r"no node of the cluster has the resources a dream worker asks for \(dreamer 1\)"):
        WorkerPool.start(config, None, resources=DREAMER)


def test_worker_resource_needs_a_name_and_an_amount_above_zero(capsys):
    from streamdream.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["run", "--input", "in.mp4", "--output", "out.mp4", "--cluster", "--worker-resource", "dreamer=0"])
    assert stopped.value.code == 2
    assert "--worker-resource: expected NAME or NAME=AMOUNT with AMOUNT > 0, got 'dreamer=0'" in capsys.readouterr().err
