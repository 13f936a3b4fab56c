"""Audio-reactive dreaming: the input's soundtrack sets the dream's strength, frame by frame.

Where the audio comes from (``audio_react.source: input``):

* a file: the ``audio-analysis`` worker decodes the file's first audio track itself
  (PyAV, its own container), resampled to mono ``RATE``, and runs ahead of the dream; a
  video frame is looked up by its timestamp (``frame.pts``, the same stream clock the
  audio's timestamps are in), and the dream waits for the analysis to reach it (files
  lose nothing, and the analysis is hundreds of times faster than a dream);
* a live source (``run`` on a stream, ``serve``): the source's own reader thread hands
  each decoded audio frame of the same stream to ``tap`` (``sources/av_source.py``), with
  the video frames' (stream time, arrival time) pairs. Audio and video are matched on the
  stream's own clock, as the stream carries them: the tap remembers each recent video
  frame's stream time under its arrival (``frame.captured_at``, which every wrapper keeps),
  so a frame that arrived late (a stalled reader, a busy machine) still gets the sound of
  its own moment. Each stretch of stream (the first frame, a reconnect, a jump in its clock)
  is put on the arrival clock once, so levels stay in order across reconnects. A frame never
  waits: if its sound has not been analysed yet, it gets the latest level (up to ``HOLD``
  seconds). Where there is no audio (a silent stretch, a source that is down, a stream
  without an audio track) the level is 0: silence.

``strength(frame)`` is the factor the ``LookSwitch`` multiplies the shown detail by (the
dream's visible strength): ``strength[0]`` in silence, ``strength[1]`` at full level. It
costs a lookup and one multiply of the detail at the dream size: no engine is rebuilt.
"""

from __future__ import annotations

import bisect
import collections
import logging
import threading
from typing import Any

import av
import numpy as np

from ..config import AudioReactConfig
from ..frames import Frame
from ..runtime.observer import PipelineObserver
from ..runtime.workers import POLL, StopToken, Worker, Workers
from .follower import HOP, RATE, Levels, LoudnessFollower, strength_factor

log = logging.getLogger(__name__)

LIVE_KEEP = 30.0  # seconds of levels a live source keeps
STRETCH = 6000  # levels (a minute) merged into one array at most
GAP = 0.1  # seconds: audio timestamps that jump by more start a new stretch
FILE_WAIT = 30.0  # seconds the dream waits for the analysis before it goes on without it
HOLD = 0.5  # live: seconds past the analysed sound a frame still gets the latest level
JUMP = 5.0  # live: a stream clock that jumps this far ahead (or goes back) starts a new stretch
FRAMES_KEPT = 512  # live: recent video frames whose stream time the tap remembers


class Timeline:
    """Levels over time, in stretches; a writer thread appends, the dream worker looks up."""

    def __init__(self, keep: float | None = None) -> None:
        self.keep = keep
        self._starts: list[float] = []
        self._levels: list[Levels] = []
        self._cond = threading.Condition()
        self.covered = float("-inf")  # the end of the newest stretch
        self.finished = False

    def add(self, levels: Levels) -> None:
        with self._cond:
            while self._starts and self._starts[-1] >= levels.start:  # a new stretch of stream replaces them
                self._starts.pop()
                self._levels.pop()
            last = self._levels[-1] if self._levels else None
            if last is not None and last.values.size < STRETCH and abs(self.covered - levels.start) < HOP / RATE / 2:
                merged = np.concatenate([last.values, levels.values])  # contiguous: one array, not one per audio frame
                merged.flags.writeable = False
                self._levels[-1] = Levels(last.start, merged, last.onsets + levels.onsets)
            else:
                self._starts.append(levels.start)
                self._levels.append(levels)
            self.covered = max(self.covered, levels.start + levels.values.size * HOP / RATE)
            if self.keep is not None and len(self._starts) > 64 and self._starts[0] < self.covered - 2 * self.keep:
                cut = bisect.bisect_left(self._starts, self.covered - self.keep)
                del self._starts[:cut], self._levels[:cut]
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self.finished = True
            self._cond.notify_all()

    def wait_for(self, t: float, stop: StopToken, timeout: float) -> bool:
        """Wait until the levels reach ``t`` (or the audio ended); False after ``timeout`` or a stop."""
        waited = 0.0
        with self._cond:
            while self.covered < t and not self.finished:
                if stop.is_set() or waited >= timeout:
                    return False
                self._cond.wait(POLL)
                waited += POLL
        return True

    def level(self, t: float, hold: float = 0.0) -> float:
        """The level at ``t``; 0 where there is no audio (before, after, in a gap), except up to
        ``hold`` seconds after the end of a stretch, which get its last level."""
        with self._cond:
            i = bisect.bisect_right(self._starts, t) - 1
            if i < 0:
                return 0.0
            levels = self._levels[i]
        k = int((t - levels.start) * RATE / HOP)
        if 0 <= k < levels.values.size:
            return float(levels.values[k])
        if k >= levels.values.size and t - levels.start - levels.values.size * HOP / RATE <= hold:
            return float(levels.values[-1])
        return 0.0


class _Analysis:
    """Samples (any rate, any layout) -> the follower -> the timeline, keeping time across gaps."""

    def __init__(self, config: AudioReactConfig, timeline: Timeline, observer: PipelineObserver) -> None:
        self.follower = LoudnessFollower(config)
        self.timeline = timeline
        self.observer = observer
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        self._expected: float | None = None  # where the next samples should start

    def feed(self, frame: av.AudioFrame, start: float) -> None:
        expected = self._expected
        restart = expected is None or abs(start - expected) > GAP
        if restart:
            self.follower.restart(start)
        samples = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        count = sum(s.size for s in samples)
        self._expected = (start if restart or expected is None else expected) + frame.samples / frame.sample_rate
        if not count:
            return
        levels = self.follower.feed(np.concatenate(samples), start if restart else None)
        if levels is not None:
            self.timeline.add(levels)
            for _ in range(levels.onsets):
                self.observer.audio_onset()


class LiveAudioTap:
    """Given to a live source: its reader thread calls ``video`` and ``audio`` (see module docstring).

    Timeline time is the stream's own time plus ``_offset``, set once per stretch of stream.
    """

    def __init__(self, analysis: _Analysis) -> None:
        self._analysis = analysis
        self._offset: float | None = None  # timeline seconds minus stream seconds, this stretch
        self._last: float | None = None  # the latest video frame's stream seconds
        self._frames: collections.OrderedDict[float, float] = collections.OrderedDict()  # arrival -> timeline s
        self._lock = threading.Lock()  # a reconnect may overlap two readers for a moment

    def video(self, stream_seconds: float | None, arrival: float) -> None:
        if stream_seconds is None:
            return  # no stream time: looked up by its arrival
        with self._lock:
            if self._offset is None or self._last is None or not -GAP < stream_seconds - self._last < JUMP:
                self._offset = arrival - stream_seconds  # a new stretch starts on the arrival clock
            self._last = stream_seconds
            self._frames[arrival] = stream_seconds + self._offset
            if len(self._frames) > FRAMES_KEPT:
                self._frames.popitem(last=False)

    def audio(self, frame: av.AudioFrame) -> None:
        with self._lock:
            if self._offset is None or frame.pts is None or frame.time_base is None:
                return  # no clock to place it on yet
            self._analysis.feed(frame, float(frame.pts * frame.time_base) + self._offset)

    def time_of(self, arrival: float) -> float:
        """The timeline time of the video frame that arrived at ``arrival``: its stream time."""
        with self._lock:
            return self._frames.get(arrival, arrival)


class FileAudioWorker(Worker):
    """``audio-analysis``: decodes a file's audio track ahead of the dream."""

    def __init__(self, path: str, analysis: _Analysis, timeline: Timeline) -> None:
        super().__init__("audio-analysis")
        self._path = path
        self._analysis = analysis
        self._timeline = timeline
        self._frames: Any = None
        self._container: Any = None

    def step(self) -> bool:
        if self._frames is None:
            self._container = av.open(self._path)
            stream = self._container.streams.audio[0]
            self._frames = self._container.decode(stream)
        frame = next(self._frames, None)
        if frame is None:
            return False
        if frame.pts is not None and frame.time_base is not None:
            self._analysis.feed(frame, float(frame.pts * frame.time_base))
        return True

    def end(self) -> None:
        self._timeline.finish()
        if self._container is not None:
            self._container.close()


class AudioReact:
    """The strength factor per frame (see the module docstring); ``live`` picks the clock."""

    tap: LiveAudioTap | None

    def __init__(self, config: AudioReactConfig, *, live: bool, observer: PipelineObserver | None = None) -> None:
        self.config = config
        self.live = live
        self.observer = observer or PipelineObserver()
        self.timeline = Timeline(keep=LIVE_KEEP if live else None)
        self._analysis = _Analysis(config, self.timeline, self.observer)
        self.tap = LiveAudioTap(self._analysis) if live else None
        self._stop = StopToken()
        self._worker: FileAudioWorker | None = None
        self.last_level = 0.0
        self._warned = False

    def start_file(self, path: str, workers: Workers) -> None:
        """Analyse ``path``'s first audio track in a worker of ``workers``."""
        self._stop = workers.stop
        self._worker = FileAudioWorker(path, self._analysis, self.timeline)
        workers.start(self._worker)

    def strength(self, frame: Frame) -> float:
        """The factor for ``frame``: looked up by its timestamp (files) or arrival (live)."""
        if self.live:
            assert self.tap is not None
            level = self.timeline.level(self.tap.time_of(frame.captured_at), hold=HOLD)
        else:
            t = frame.pts if frame.pts is not None else 0.0
            if not self.timeline.wait_for(t, self._stop, FILE_WAIT) and not self._stop.is_set() and not self._warned:
                self._warned = True
                log.warning("audio_react: the audio analysis is behind the video at %.2f s; going on without it", t)
            level = self.timeline.level(t)
        self.last_level = level
        factor = strength_factor(self.config, level)
        self.observer.audio_level(level, factor)
        return factor

    def blend(self, frame: Frame) -> float:
        """The factor on the blend's share (``audio_react.blend``) at the level ``strength`` found for
        this frame (the ``LookSwitch`` asks for the strength first); 1 without ``blend``."""
        if self.config.blend is None:
            return 1.0
        low, high = self.config.blend
        return low + (high - low) * self.last_level

    def state(self) -> dict[str, Any]:
        return {"level": round(self.last_level, 3), "strength": round(strength_factor(self.config, self.last_level), 3),
                "onsets": self._analysis.follower.onsets, "range": list(self.config.strength)}


__all__ = ["AudioReact", "FileAudioWorker", "LiveAudioTap", "Timeline"]
