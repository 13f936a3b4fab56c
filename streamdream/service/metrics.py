"""Prometheus metrics: a PipelineObserver that updates counters where events happen.

Everything lives on its own ``CollectorRegistry`` (never the global one), so two
pipelines in one process, or tests, do not collide. Rates and averages are left to
Prometheus (``rate(streamdream_frames_total[1m])``); nothing here computes them.

Label values are fixed stage, queue, reason and action names, a version, a model name
(redacted, in case someone names a model by URL) and output labels (a file's name, a
server's scheme://host:port; see ``sinks/uri.py``) and Ray node labels (``IP/node id``):
never a credential or a stream key.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from .. import __version__
from ..log import redact_url
from ..runtime.observer import PipelineObserver

STAGES = ("capture", "idle", "dream", "write")
WATCHDOG_ACTIONS = ("reopen_source", "rebuild_pipeline")
PRUNE_REASONS = ("age", "space")
# a dream step on a CPU takes seconds; on a GPU, milliseconds
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PrometheusObserver(PipelineObserver):
    """Turns pipeline events into ``streamdream_*`` metrics on ``self.registry``.

    ``frames_total{stage="idle"}`` counts the frames a ReconnectingSource made up while
    its input was down; they are also counted under ``capture``.
    """

    def __init__(self, model: str = "", registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames = Counter("streamdream_frames", "Frames that left a stage.", ["stage"], registry=r)
        self.dropped = Counter(
            "streamdream_frames_dropped", "Frames discarded, by stage and reason.", ["stage", "reason"], registry=r
        )
        self.stage_seconds = Histogram(
            "streamdream_stage_seconds", "Time one frame spent in a stage.", ["stage"], buckets=STAGE_BUCKETS, registry=r
        )
        self.latency_seconds = Histogram(
            "streamdream_latency_seconds", "Capture to output, end to end, per frame.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.source_up_gauge = Gauge("streamdream_source_up", "1 while the source delivers frames, else 0.", registry=r)
        self.reconnects = Counter("streamdream_source_reconnects", "Reconnect attempts to a lost source.", registry=r)
        self.blend_up_gauge = Gauge("streamdream_blend_source_up", "1 while the second input (dream.blend_with) "
                                    "delivers frames, else 0 (the first input then goes on alone).", registry=r)
        self.blend_reconnects = Counter("streamdream_blend_source_reconnects",
                                        "Retries of a lost second input (dream.blend_with).", registry=r)
        self.queue = Gauge("streamdream_queue_depth", "Items waiting in a queue.", ["queue"], registry=r)
        self.steps = Counter("streamdream_dream_steps", "Gradient steps run.", registry=r)
        self.reloads = Counter("streamdream_config_reloads", "Config reloads, by result.", ["result"], registry=r)
        self.reload_ok = Gauge(
            "streamdream_config_last_reload_successful",
            "1 if the last reload was applied (or none was tried), 0 if it was rejected: the previous config runs.",
            registry=r,
        )
        self.reload_ok.set(1)
        self.switches = Counter("streamdream_preset_switches", "Preset switches started.", registry=r)
        self.build = Info("streamdream_build", "Version and current model.", registry=r)
        self.output_up_gauge = Gauge("streamdream_output_up", "1 while an output is open, else 0.", ["output"], registry=r)
        self.output_reconnects = Counter(
            "streamdream_output_reconnects", "Attempts to open a failed output again.", ["output"], registry=r
        )
        self.output_frames = Counter("streamdream_output_frames", "Frames an output wrote.", ["output"], registry=r)
        self.rotations = Counter("streamdream_recordings_rotated", "Recordings closed for a new file.", ["output"], registry=r)
        self.pruned = Counter(
            "streamdream_recordings_pruned", "Old recordings deleted, by reason (age, space).", ["output", "reason"], registry=r
        )
        self.watchdog_actions = Counter(
            "streamdream_watchdog_actions", "Stalled source reopened, stuck pipeline rebuilt.", ["action"], registry=r
        )
        self.audio_level_gauge = Gauge(
            "streamdream_audio_level", "Audio-reactive dreaming: the input's audio level (0-1) at the last frame.", registry=r
        )
        self.audio_strength_gauge = Gauge(
            "streamdream_audio_strength", "Audio-reactive dreaming: the strength factor of the last frame.", registry=r
        )
        self.audio_onsets = Counter("streamdream_audio_onsets", "Audio-reactive dreaming: onsets heard.", registry=r)
        self.cluster_started = Counter(
            "streamdream_cluster_workers_started", "Cluster dream workers started, by node and why (initial, replacement, added).",
            ["node", "reason"], registry=r,
        )  # fmt: skip
        self.cluster_lost = Counter("streamdream_cluster_workers_lost", "Cluster dream workers lost, by node.", ["node"], registry=r)
        self.cluster_retried = Counter(
            "streamdream_cluster_segments_retried", "Segments put back in the queue when their worker was lost, by node.",
            ["node"], registry=r,
        )  # fmt: skip
        self.cluster_workers_gauge = Gauge("streamdream_cluster_workers", "Ready cluster dream workers, by node.", ["node"], registry=r)
        self.cluster_nodes: set[str] = set()
        for action in WATCHDOG_ACTIONS:
            self.watchdog_actions.labels(action=action)
        for stage in STAGES:
            self.frames.labels(stage=stage)
        for result in ("applied", "rejected"):
            self.reloads.labels(result=result)
        for queue in ("capture", "output"):
            self.queue.labels(queue=queue)
        self.set_model(model)

    def set_model(self, model: str) -> None:
        self.build.info({"version": __version__, "model": redact_url(model)})

    # --- PipelineObserver -----------------------------------------------------------------

    def frame_done(self, stage: str) -> None:
        self.frames.labels(stage=stage).inc()

    def frame_dropped(self, stage: str, reason: str) -> None:
        self.dropped.labels(stage=stage, reason=reason).inc()

    def stage_time(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage=stage).observe(seconds)

    def latency(self, seconds: float) -> None:
        self.latency_seconds.observe(seconds)

    def queue_depth(self, queue: str, depth: int) -> None:
        self.queue.labels(queue=queue).set(depth)

    def dream_steps(self, steps: int) -> None:
        self.steps.inc(steps)

    def source_up(self, up: bool) -> None:
        self.source_up_gauge.set(1 if up else 0)

    def source_reconnect(self) -> None:
        self.reconnects.inc()

    def blend_source_up(self, up: bool) -> None:
        self.blend_up_gauge.set(1 if up else 0)

    def blend_source_reconnect(self) -> None:
        self.blend_reconnects.inc()

    def output_up(self, output: str, up: bool) -> None:
        self.output_up_gauge.labels(output=output).set(1 if up else 0)
        self.output_reconnects.labels(output=output)  # shown from the start, at 0

    def output_removed(self, output: str) -> None:
        for series in (self.output_up_gauge, self.output_reconnects, self.output_frames, self.rotations):
            _remove(series, output)
        for reason in PRUNE_REASONS:
            _remove(self.pruned, output, reason)

    def output_reconnect(self, output: str) -> None:
        self.output_reconnects.labels(output=output).inc()

    def output_written(self, output: str) -> None:
        self.output_frames.labels(output=output).inc()

    def recording_rotated(self, output: str) -> None:
        self.rotations.labels(output=output).inc()

    def recording_pruned(self, output: str, reason: str) -> None:
        self.pruned.labels(output=output, reason=reason).inc()

    def watchdog(self, action: str) -> None:
        self.watchdog_actions.labels(action=action).inc()

    def audio_level(self, level: float, strength: float) -> None:
        self.audio_level_gauge.set(level)
        self.audio_strength_gauge.set(strength)

    def audio_onset(self) -> None:
        self.audio_onsets.inc()

    def cluster_worker_started(self, node: str, why: str) -> None:
        self.cluster_started.labels(node=node, reason=why).inc()
        self.cluster_lost.labels(node=node)  # shown from the start, at 0
        self.cluster_retried.labels(node=node)

    def cluster_worker_lost(self, node: str) -> None:
        self.cluster_lost.labels(node=node).inc()

    def cluster_segment_retried(self, node: str) -> None:
        self.cluster_retried.labels(node=node).inc()

    def cluster_workers(self, by_node: dict[str, int]) -> None:
        for node in self.cluster_nodes - set(by_node):  # a node with no worker left reads 0
            self.cluster_workers_gauge.labels(node=node).set(0)
        self.cluster_nodes |= set(by_node)
        for node, count in by_node.items():
            self.cluster_workers_gauge.labels(node=node).set(count)

    # --- service events (called directly by the daemon, not through the pipeline) ----------

    def config_reload(self, applied: bool) -> None:
        self.reloads.labels(result="applied" if applied else "rejected").inc()
        self.reload_ok.set(1 if applied else 0)

    def preset_switch(self) -> None:
        self.switches.inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


def _remove(metric: Counter | Gauge, *labels: str) -> None:
    """Drop one labelled series; a series that was never made is already gone."""
    try:
        metric.remove(*labels)
    except KeyError:
        pass
