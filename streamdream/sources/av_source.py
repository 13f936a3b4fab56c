"""The PyAV-backed source: files, network streams, capture devices and lavfi graphs.

A reader thread owns the container while frames are read: it demuxes, decodes, converts
to RGB and hands frames over through a small bounded queue. ``close()`` never touches a
container another thread is blocked in (that would crash FFmpeg); it sets an event, the
consumer returns at once, and the reader closes the container itself when its blocked
call returns (at the latest after the read timeout).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Protocol

import av

from ..errors import SourceError, SourceLostError
from ..frames import EndOfStream, Frame, SourceInfo, freeze
from ..images import MAX_PIXELS_8K, check_picture_size
from ..media import rgb_array
from ..runtime.queues import FrameQueue, QueuePolicy
from ..runtime.workers import POLL, StopToken, Workers
from .base import OpenedInfo
from .timestamps import FILE_LOOKAHEAD, BestEffortTimestamps, FrameTimer
from .uri import AvOpenArgs

log = logging.getLogger(__name__)


def _ffmpeg_said(exc: BaseException) -> str:
    """FFmpeg's words without the file name PyAV appends (it may hold a password)."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else type(exc).__name__


def _open_interruptibly(args: AvOpenArgs, workers: Workers) -> av.container.InputContainer:
    """``av.open``; on the main thread it runs in a thread of its own (``source-open``, a worker
    of ``workers``, the source's owner), so a Ctrl-C is not held up until a server that does not
    answer times out (a C call cannot be interrupted). The open left behind closes its container
    itself; the owner's join waits for it no longer than its own timeout (one POLL once a signal
    is ending the process: ``runtime/interrupts.owned``), after which it ends on its own within
    the open timeout."""
    def open_now() -> av.container.InputContainer:
        return av.open(args.file, format=args.format, options=dict(args.options), timeout=args.timeout)

    if threading.current_thread() is not threading.main_thread():
        return open_now()
    lock, done = threading.Lock(), threading.Event()
    box: dict[str, object] = {}

    def opener() -> None:
        try:
            box["container"] = open_now()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        with lock:
            done.set()
            if box.get("abandoned") and "container" in box:
                box["container"].close()  # type: ignore[attr-defined]

    workers.spawn("source-open", opener)
    try:
        while not done.wait(POLL):
            pass
    except BaseException:  # Ctrl-C during start-up (runtime/interrupts.py)
        with lock:
            box["abandoned"] = True
            if done.is_set() and "container" in box:
                box["container"].close()  # type: ignore[attr-defined]
        raise
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["container"]  # type: ignore[return-value]


class AudioTap(Protocol):
    def video(self, stream_seconds: float | None, arrival: float) -> None: ...

    def audio(self, frame: av.AudioFrame) -> None: ...


class _LiveClock:
    """Timestamps for a live stream, in seconds from its first frame.

    Uses the stream's timestamps where it has them, and the arrival time where it has
    none (the first frames of an RTSP stream often have none), joined without a jump.
    """

    def __init__(self) -> None:
        self._origin: float | None = None
        self._anchor: tuple[float, float] | None = None  # (stream seconds, clock seconds)

    def pts(self, stream_seconds: float | None, arrival: float) -> float:
        if self._origin is None:
            self._origin = arrival
        now = arrival - self._origin
        if stream_seconds is None:
            return now
        if self._anchor is None:
            self._anchor = (stream_seconds, now)
        return self._anchor[1] + (stream_seconds - self._anchor[0])


class AvSource(OpenedInfo):
    """A Source read through PyAV. See ``open_source`` for how one is built from a URI."""

    def __init__(
        self,
        args: AvOpenArgs,
        *,
        kind: str,
        display: str,
        live: bool | None,
        loop: bool = False,
        handoff_size: int = 2,
        max_pixels: int = MAX_PIXELS_8K,
        workers: Workers,
        audio: AudioTap | None = None,
    ) -> None:
        """``live=None`` decides on open: a network input with no known duration is live.

        ``audio``: given, the reader also decodes the input's first audio track and hands each
        audio frame to ``audio.audio(frame)``, and each video frame's (stream seconds, arrival)
        to ``audio.video`` (``audio/react.py``: audio-reactive dreaming on the same stream)."""
        self._args = args
        self._kind = kind
        self._display = display
        self._live_hint = live
        self._loop = loop and live is not True
        self._handoff_size = handoff_size
        self._max_pixels = max_pixels
        self._workers = workers
        self._audio = audio
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._halt: StopToken | None = None  # stops the current reader thread
        self._container: av.container.InputContainer | None = None
        self._info: SourceInfo | None = None

    # --- open ----------------------------------------------------------------------------

    def open(self) -> SourceInfo:
        """Connect (again, after a lost stream); raise SourceError saying why it failed."""
        self.close()
        self._closed.clear()
        self._check_exists()
        args = self._args
        try:
            container = _open_interruptibly(args, self._workers)
        except FileNotFoundError:
            raise SourceError(self._not_found_message()) from None
        except PermissionError:
            raise SourceError(self._permission_message()) from None
        except av.ExitError:
            raise SourceError(
                f"cannot open {self._display}: no answer within {self._open_timeout():g} s "
                "(is the server up and the address right? raise source.open_timeout for slow servers)"
            ) from None
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(self._open_failed_message(exc)) from None

        try:
            info = self._describe(container)
        except BaseException:
            container.close()
            raise
        with self._lock:
            self._container, self._info = container, info
        log.info(
            "opened %s: %dx%d at %s fps%s%s",
            info.uri,
            info.width,
            info.height,
            f"{float(info.fps):.3g}" if info.fps else "?",
            ", live" if info.live else f", {info.frame_count or '?'} frames",
            ", with audio" if info.has_audio else "",
        )
        return info

    def _open_timeout(self) -> float:
        return self._args.timeout[0] if self._args.timeout else 0.0

    def _check_exists(self) -> None:
        if self._kind == "file" and not os.path.exists(self._args.file):
            raise SourceError(self._not_found_message())
        if self._kind == "file" and os.path.isdir(self._args.file):
            raise SourceError(f"input is a directory, not a video file: {self._display}")
        if self._args.format == "v4l2" and not os.path.exists(self._args.file):
            raise SourceError(self._not_found_message())

    def _not_found_message(self) -> str:
        if self._kind == "webcam":
            return (
                f"webcam {self._display} not found: no such device; check that a camera is "
                "connected and that the user may read it (group 'video')"
            )
        return f"input file not found: {self._display}"

    def _permission_message(self) -> str:
        if self._kind == "webcam":
            return (
                f"webcam {self._display} cannot be opened: permission denied; add the user to "
                "group 'video' (sudo usermod -aG video $USER, then log in again)"
            )
        return f"cannot read {self._display}: permission denied"

    def _open_failed_message(self, exc: BaseException) -> str:
        said = _ffmpeg_said(exc)
        if self._kind == "file":
            hint = " (the file is empty)" if os.path.getsize(self._args.file) == 0 else (
                " (not a video file FFmpeg can read, or damaged)"
            )
            return f"cannot read input file {self._display}: FFmpeg says: {said}{hint}"
        if self._kind == "webcam":
            return f"cannot open webcam {self._display}: FFmpeg says: {said} (is it in use by another program?)"
        return (
            f"cannot open {self._display}: FFmpeg says: {said} (check that the server is up and "
            "reachable from here, the port and path of the URL, and the user name and password)"
        )

    def _describe(self, container: av.container.InputContainer) -> SourceInfo:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise SourceError(f"{self._display} has no video stream (streams found: {kinds})")
        stream = container.streams.video[0]
        self._check_frame_size(stream)
        live = self._live_hint
        if live is None:
            live = container.duration is None
        # Frame threading delays every frame by one per thread: fine for files, not for live.
        stream.thread_type = "SLICE" if live else "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = Fraction(rate) if rate else None
        frame_count = duration = None
        if not live and not self._loop:
            frame_count = stream.frames or None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
        return SourceInfo(
            uri=self._display,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            live=live,
            frame_count=frame_count,
            duration=duration,
            has_audio=bool(container.streams.audio),
            kind=self._kind,
        )

    def _check_frame_size(self, stream: av.VideoStream) -> None:
        """SourceError if the stream's header announces frames over ``source.max_pixels``: before any decode."""
        context = stream.codec_context
        check_picture_size(context.width, context.height, f"{self._display}: the video", self._max_pixels, SourceError)
        # and FFmpeg's decoder refuses any later frame over the cap (a size change mid-stream)
        context.options = {**context.options, "max_pixels": str(self._max_pixels)}

    # --- frames --------------------------------------------------------------------------

    def frames(self) -> Iterator[Frame]:
        """Yield frames; once per open(). Returns at a file's end or after close()."""
        with self._lock:
            container, self._container = self._container, None
            if container is None and self._closed.is_set():
                return  # closed before the first frame: nothing to read, nothing wrong
            if container is None:
                raise SourceError(f"{self._display}: not open (call open() first; frames() runs once per open)")
            group = self._workers.group("source-decode")
            halt = self._halt = group.stop
        handoff: FrameQueue[Frame | EndOfStream] = FrameQueue("decode", self._handoff_size, QueuePolicy.WAIT)
        group.spawn("source-decode", self._read, container, handoff, halt)
        # The reader owns the container now. A raised error's traceback holds this frame: without
        # its container, the decoder's threads end with the reader, not when that error is collected.
        del container
        try:
            while True:
                try:
                    item = handoff.get(timeout=POLL)
                except TimeoutError:
                    if self._closed.is_set():
                        return
                    continue
                if self._closed.is_set():
                    return
                if isinstance(item, EndOfStream):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            halt.set()

    def close(self) -> None:
        """Stop reading; safe from any thread, returns at once."""
        self._closed.set()
        with self._lock:
            if self._halt is not None:
                self._halt.set()
            container, self._container = self._container, None
        if container is not None:  # opened but never iterated: nobody else holds it
            container.close()

    # --- the reader thread ---------------------------------------------------------------

    def _read(self, container: av.container.InputContainer, handoff: FrameQueue, halt: StopToken) -> None:
        end = EndOfStream("source")
        try:
            self._decode_all(container, handoff, halt)
        except SourceError as exc:
            # without the reader's stack (its frames hold the container and the decoder):
            # the error crosses to the consumer, which may keep it
            end = EndOfStream("source", exc.with_traceback(None))
        except Exception as exc:  # a bug, not an input problem: keep the traceback in the log
            log.exception("reader for %s failed", self._display)
            end = EndOfStream("source", SourceError(f"reading {self._display} failed: {type(exc).__name__}: {_ffmpeg_said(exc)}"))
        finally:
            try:
                container.close()
            finally:
                self._hand_over(handoff, halt, end, final=True)

    def _hand_over(self, handoff: FrameQueue, halt: StopToken, item: Frame | EndOfStream, final: bool = False) -> bool:
        """Put one item, waiting while the consumer is busy; False once asked to stop."""
        while not halt.is_set():
            if handoff.put(item, timeout=POLL):
                return True
        if final:  # the consumer has gone; leave the end marker for a late reader anyway
            handoff.put(item, force=True)
        return False

    def _decode_all(self, container: av.container.InputContainer, handoff: FrameQueue, halt: StopToken) -> None:
        info = self.info
        stream = container.streams.video[0]
        time_base = stream.time_base
        period = float(1 / info.fps) if info.fps else 0.0
        clock = _LiveClock() if info.live else None
        live_times = BestEffortTimestamps()
        # files: best-effort times decided a few frames late; see timestamps.py
        timer: FrameTimer[av.VideoFrame] = FrameTimer(time_base, info.fps, lookahead=FILE_LOOKAHEAD)
        index, offset = 0, 0.0
        while True:
            first_pts = last_pts = None
            ended_early = False
            for frame, error in self._decoded(container, stream):
                if halt.is_set():
                    return
                stream_seconds: float | None = None
                if error is not None:
                    ready = timer.flush()  # what was decoded before the error still counts
                elif clock is not None:
                    ticks = live_times.guess(frame.pts, frame.dts)
                    seconds = float(ticks * time_base) if ticks is not None and time_base else None
                    stream_seconds = seconds
                    ready = [(frame, clock.pts(seconds, time.monotonic()))]
                else:
                    ready = [(item, offset + seconds) for item, seconds in timer.push(frame, frame.pts, frame.dts)]
                for item, pts in ready:
                    seconds = stream_seconds if clock is not None else pts - offset
                    if not self._hand_over(handoff, halt, self._frame(item, index, pts, seconds)):
                        return
                    first_pts = pts if first_pts is None else first_pts
                    last_pts = pts
                    index += 1
                if error is not None:
                    self._read_failed(error, index)  # raises unless a file already gave frames
                    ended_early = True
                    break
            for item, seconds in timer.flush():
                if not self._hand_over(handoff, halt, self._frame(item, index, offset + seconds, seconds)):
                    return
                first_pts = offset + seconds if first_pts is None else first_pts
                last_pts = offset + seconds
                index += 1
            if halt.is_set():
                return
            if info.live:
                raise SourceLostError(
                    f"{info.uri}: stream ended after {index} frames: the server closed the connection "
                    "or stopped sending"
                )
            if index == 0:
                raise SourceError(f"no frame could be decoded from {info.uri} (damaged or truncated file?)")
            self._report_placed(timer)
            if ended_early:
                return
            if not self._loop or first_pts is None or last_pts is None:  # (set together)
                self._warn_if_short(index, last_pts, period)
                return
            offset += last_pts + (period or timer.period) - first_pts
            timer.restart()
            container.seek(0)
            stream.codec_context.flush_buffers()
            log.debug("looping %s: next pass starts at %.3f s", info.uri, offset)

    def _frame(self, decoded: av.VideoFrame, index: int, pts: float, stream_seconds: float | None) -> Frame:
        arrival = time.monotonic()
        if self._audio is not None:  # the audio tap places the sound by the frame's stream time
            self._audio.video(stream_seconds, arrival)
        image = freeze(rgb_array(decoded))
        return Frame(image=image, index=index, pts=pts, captured_at=arrival)

    def _report_placed(self, timer: FrameTimer) -> None:
        if timer.placed_by_rate:
            # one is usual: a packed-B-frame AVI's last, flushed frame has none (ffprobe's neither)
            log.log(
                logging.WARNING if timer.placed_by_rate > 1 else logging.INFO,
                "%s: %d frame(s) had no usable timestamp; placed at the frame rate (%.3g fps)",
                self.info.uri, timer.placed_by_rate, 1 / timer.period,
            )  # fmt: skip
            timer.placed_by_rate = 0

    def _decoded(self, container: av.container.InputContainer, stream: av.VideoStream):
        """Yield ``(frame, None)``; ``(None, error)`` once if demuxing fails.

        A packet the decoder rejects is skipped: damaged data in a file or a lost packet
        in a stream costs a frame, not the whole input.
        """
        sound = container.streams.audio[0] if self._audio is not None and container.streams.audio else None
        packets: Iterator[av.Packet] = container.demux(stream, sound) if sound is not None else container.demux(stream)
        skipped = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.FFmpegError, OSError) as exc:
                yield None, exc
                return
            if sound is not None and packet.stream is sound:
                self._hear(sound, packet)
                continue
            try:
                decoded = stream.decode(packet)
            except av.FFmpegError as exc:
                skipped += 1
                if skipped == 1 or skipped % 100 == 0:
                    log.warning("%s: skipped %d undecodable packet(s): %s", self._display, skipped, _ffmpeg_said(exc))
                continue
            for frame in decoded:
                yield frame, None

    def _hear(self, sound: av.AudioStream, packet: av.Packet) -> None:
        """Decode an audio packet for the tap; a bad one is skipped (the picture matters more)."""
        tap = self._audio
        assert tap is not None, "audio packets are read only for a tap"
        try:
            for frame in sound.decode(packet):
                tap.audio(frame)
        except av.FFmpegError as exc:
            log.debug("%s: skipped an undecodable audio packet: %s", self._display, _ffmpeg_said(exc))

    def _read_failed(self, exc: BaseException, delivered: int) -> None:
        """A demux error: lost for a live input, an early end (or nothing at all) for a file."""
        info = self.info
        if isinstance(exc, av.ExitError):
            timeout = self._args.timeout[1] if self._args.timeout else 0.0
            message = f"{info.uri}: no data for {timeout:g} s (source stalled or network down)"
        else:
            message = f"{info.uri}: read failed after {delivered} frames: FFmpeg says: {_ffmpeg_said(exc)}"
        if info.live:
            raise SourceLostError(message)
        if delivered == 0:
            raise SourceError(message)
        log.warning("%s; ending the input early", message)

    def _warn_if_short(self, delivered: int, last_pts: float | None, period: float) -> None:
        info = self.info
        if info.frame_count and delivered < info.frame_count:
            log.warning(
                "%s ended after %d of %d frames (truncated or damaged file?)", info.uri, delivered, info.frame_count
            )
        elif info.duration and last_pts is not None and last_pts + 2 * period < info.duration - 0.5:
            log.warning(
                "%s ended at %.2f s of %.2f s (truncated or damaged file?)", info.uri, last_pts, info.duration
            )
