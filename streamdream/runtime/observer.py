"""Events the pipeline reports as they happen; metrics and status lines listen here.

The base class ignores everything, so a stage can report unconditionally and a
pipeline without metrics pays nothing.
"""

from __future__ import annotations


class PipelineObserver:
    def frame_done(self, stage: str) -> None:
        """A frame left ``stage`` (capture, dream, write)."""

    def frame_dropped(self, stage: str, reason: str) -> None:
        """A frame was discarded at ``stage`` for ``reason`` (stale, queue_full, error...)."""

    def stage_time(self, stage: str, seconds: float) -> None:
        """Time one frame spent in ``stage``."""

    def latency(self, seconds: float) -> None:
        """Capture to output, end to end, for one frame."""

    def queue_depth(self, queue: str, depth: int) -> None:
        """Items waiting in ``queue`` now."""

    def dream_steps(self, steps: int) -> None:
        """Gradient steps just run."""

    def source_up(self, up: bool) -> None:
        """The source connected (True) or was lost (False)."""

    def source_reconnect(self) -> None:
        """A reconnect attempt started."""

    def blend_source_up(self, up: bool) -> None:
        """The second input (``dream.blend_with``) delivers frames (True) or was lost (False)."""

    def blend_source_reconnect(self) -> None:
        """The second input was lost or did not open; another try follows."""

    def output_up(self, output: str, up: bool) -> None:
        """An output opened (True) or failed and waits to be opened again (False)."""

    def output_removed(self, output: str) -> None:
        """``output`` left the config (a reload) and has closed: forget it (its series, its health)."""

    def output_reconnect(self, output: str) -> None:
        """An attempt to open a failed output again started."""

    def output_written(self, output: str) -> None:
        """``output`` wrote one frame."""

    def recording_rotated(self, output: str) -> None:
        """A file output closed its file and went on in a new one."""

    def recording_pruned(self, output: str, reason: str) -> None:
        """An old recording of ``output`` was deleted (reason: age, space)."""

    def watchdog(self, action: str) -> None:
        """The watchdog acted (reopen_source, rebuild_pipeline)."""

    def audio_level(self, level: float, strength: float) -> None:
        """Audio-reactive dreaming: a frame got this audio level (0-1) and strength factor."""

    def audio_onset(self) -> None:
        """Audio-reactive dreaming: an onset (a sudden rise in loudness) was heard."""

    def cluster_worker_started(self, node: str, why: str) -> None:
        """A cluster dream worker started on ``node`` (why: initial, replacement, added)."""

    def cluster_worker_lost(self, node: str) -> None:
        """A cluster dream worker on ``node`` was lost (its process or its node died)."""

    def cluster_segment_retried(self, node: str) -> None:
        """A segment whose worker on ``node`` was lost went back to the queue."""

    def cluster_workers(self, by_node: dict[str, int]) -> None:
        """Ready cluster dream workers per node, now."""


class ObserverGroup(PipelineObserver):
    """Fans every event out to several observers."""

    def __init__(self, *observers: PipelineObserver) -> None:
        self.observers = [o for o in observers if o is not None]

    def __getattribute__(self, name: str):  # noqa: ANN204 - forwards any event method
        if name.startswith("_") or name == "observers":
            return object.__getattribute__(self, name)
        observers = object.__getattribute__(self, "observers")

        def fan_out(*args, **kwargs) -> None:
            for observer in observers:
                getattr(observer, name)(*args, **kwargs)

        return fan_out
