"""File outputs (.mp4, .mov, .mkv, .webm, .ts) encoded with PyAV, carrying the source's audio.

Choices a reader should know about:

* Timestamps. A written frame keeps its source timestamp (``frame.pts`` seconds) in a
  1/90000 time base, so output and input frame times match (MKV/WebM store milliseconds,
  so frames less than 1 ms apart, a burst after a reconnect, are spread 1 ms apart).
  A frame without ``pts`` (some live sources) is placed by the capture clock
  (``frame.captured_at``) after the previous frame; the first such frame is at 0. A
  timestamp that does not increase (a looping source) shifts all later frames so the
  output keeps going forward one frame duration at a time. Exactly one output frame per
  ``write``.
* Odd sizes. yuv420p needs even width and height: an odd frame is padded by repeating its
  last column/row (no picture is lost, nothing is scaled); a note is logged once.
* Frame size. The video stream is created at the first ``write`` from that frame's size;
  a later frame of another size is resized to it (warned once).
* Crash safety. MKV, WebM and TS are written in short clusters and flushed per packet, so a
  killed process leaves a readable file (0.5 s clusters). For MP4 ask for
  ``out.mp4?fragmented=1``: fragments of at most 0.5 s, a keyframe every second, no
  B-frames (they would shift the start of a file that has no edit list).
* Cost. ``preset=veryfast`` (x264) or realtime VP9 settings, codec threads on.
* Never destroying a file. An existing target is refused unless ``overwrite``; the output
  is written as ``NAME.partial-PID.EXT`` beside it and renamed onto the target when
  finished, so a failed or killed run leaves the old file as it was (``safe_write.py``).
  A file that could not be finished (a full disk) takes the target's name only where no
  file was: what fitted then plays under the name asked for. A run stopped before its end
  (``stopped_early()``: Ctrl-C on a file input) finalizes its file as ``NAME.partial.EXT``
  beside the target and never replaces it.

URI options after ``?``: ``fragmented=1`` (mp4/mov), ``preset=NAME``, ``gop=FRAMES``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import av
import cv2
import numpy as np

from ..config import OutputConfig
from ..errors import SinkError
from ..frames import Frame, SourceInfo
from ..log import redact_url
from ..safe_write import TempTarget, check_not_input, check_not_system_folder, check_target
from .audio import AudioCarrier
from .base import Sink
from .kind import CheckContext, OpenContext, SinkKind
from .uri import ParsedOutput, file_path_and_query

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)
# Matroska and WebM keep milliseconds: two frames closer than that (a burst a live input
# delivers after a reconnect) would share a timestamp in the file. Frames stay this far apart.
MIN_STEP_TICKS = TIME_BASE.denominator // 1000
DEFAULT_FPS = Fraction(30)
DEFAULT_CRF = {"libx264": 20, "libx265": 24, "libvpx-vp9": 32, "libvpx": 10}

# extension -> (FFmpeg muxer, default video codec)
CONTAINERS: dict[str, tuple[str, str]] = {
    ".mp4": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
    ".ts": ("mpegts", "libx264"),
}
_FILE_OPTIONS = ("fragmented", "preset", "gop")


def parse_bitrate(text: str) -> int:
    """'4M' -> 4_000_000, '800k' -> 800_000, '1500000' -> 1_500_000."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    number = text[:-1] if scale != 1 else text
    return int(float(number) * scale)


@dataclass(frozen=True)
class EncoderSettings:
    """How one video stream is encoded."""

    codec: str
    crf: int | None = None
    bitrate: int | None = None
    preset: str | None = None
    gop: int | None = None  # frames between keyframes; None: the encoder's default
    bframes: int | None = None  # None: the encoder's default
    live: bool = False  # low latency: no B-frames, zerolatency tuning

    @classmethod
    def from_config(cls, config: OutputConfig, default_codec: str, **overrides: Any) -> EncoderSettings:
        """Settings from an output's config; an unknown or non-video ``codec`` is a SinkError."""
        codec = config.codec or default_codec
        try:
            kind = av.Codec(codec, "w").type
        except ValueError:
            kind = None
        if kind != "video":
            raise SinkError(
                f"output {redact_url(config.uri)}: codec: {codec!r} is not a video encoder in this FFmpeg; "
                "try libx264, libvpx-vp9 or libvpx"
            )
        bitrate = parse_bitrate(config.bitrate) if config.bitrate else None
        return cls(codec=codec, crf=config.crf, bitrate=bitrate, **overrides)


def even_pad(image: np.ndarray) -> np.ndarray:
    """Pad an odd width/height to even by repeating the last column/row (yuv420p needs it)."""
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)


def fit_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Make ``image`` exactly ``width`` x ``height`` (even-pad first; resize only if still different)."""
    image = even_pad(image)
    if image.shape[1] != width or image.shape[0] != height:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image, dtype=np.uint8)


class PtsClock:
    """Turns frame times (seconds, or None) into strictly increasing ticks of TIME_BASE."""

    def __init__(self, fps: Fraction, relative: bool) -> None:
        self.frame_ticks = max(1, round(TIME_BASE.denominator / fps))
        self.relative = relative  # live outputs start at 0 whatever the source's clock says
        self._origin: float | None = None
        self._offset = 0
        self._last: int | None = None
        self._last_seconds = 0.0
        self._last_captured = 0.0
        self.adjusted = 0  # frames whose timestamp had to be moved

    def ticks(self, frame: Frame) -> int:
        if frame.pts is not None:
            seconds = float(frame.pts)
        elif self._last is None:
            seconds = 0.0
        else:  # no source time: continue by the capture clock
            seconds = self._last_seconds + max(frame.captured_at - self._last_captured, 0.0)
        if self._origin is None:
            self._origin = seconds if self.relative else 0.0
        self._last_seconds, self._last_captured = seconds, frame.captured_at
        ticks = round((seconds - self._origin) * TIME_BASE.denominator) + self._offset
        if self._last is not None and ticks <= self._last:
            # Backwards or repeated time (loop, clock reset): keep going forward one frame.
            self._offset += self._last + self.frame_ticks - ticks
            ticks = self._last + self.frame_ticks
            self.adjusted += 1
        elif self._last is not None and ticks < self._last + MIN_STEP_TICKS:
            ticks = self._last + MIN_STEP_TICKS  # a burst: just after the previous frame, later ones keep their time
            self.adjusted += 1
        self._last = ticks
        return ticks


class VideoEncoder:
    """One video stream of an output container: configure, encode RGB frames, flush."""

    def __init__(
        self, container: av.container.OutputContainer, settings: EncoderSettings, width: int, height: int, fps: Fraction
    ) -> None:
        self.width, self.height = width + width % 2, height + height % 2
        codec = av.Codec(settings.codec, "w")
        stream = container.add_stream(settings.codec, rate=fps)
        assert isinstance(stream, av.VideoStream), f"{settings.codec}: EncoderSettings takes video codecs only"
        stream.width, stream.height = self.width, self.height
        formats = [f.name for f in (codec.video_formats or [])]
        stream.pix_fmt = "yuv420p" if not formats or "yuv420p" in formats else formats[0]
        stream.time_base = TIME_BASE
        ctx = stream.codec_context
        ctx.time_base = TIME_BASE
        ctx.framerate = fps
        ctx.colorspace = 6  # AVCOL_SPC_SMPTE170M: BT.601, what the RGB->YUV conversion uses
        ctx.color_range = 1  # AVCOL_RANGE_MPEG (limited)
        ctx.thread_count = 0  # let the encoder pick (x264/libvpx threads)
        ctx.thread_type = "AUTO"
        if settings.bitrate:
            ctx.bit_rate = settings.bitrate
        if settings.gop:
            ctx.gop_size = settings.gop
        if settings.live:
            ctx.max_b_frames = 0
        elif settings.bframes is not None:
            ctx.max_b_frames = settings.bframes
        stream.options = self._options(settings)
        self.stream = stream
        self._resized_warned = False

    @staticmethod
    def _options(s: EncoderSettings) -> dict[str, object]:  # the type of PyAV's Stream.options
        opts: dict[str, object] = {}
        crf = s.crf if s.crf is not None else DEFAULT_CRF.get(s.codec)
        if s.codec in ("libx264", "libx265"):
            opts["preset"] = s.preset or ("ultrafast" if s.live else "veryfast")
            if s.live:
                opts["tune"] = "zerolatency"
            if s.live or s.bframes is not None:
                opts["bf"] = str(0 if s.live else s.bframes)
            if crf is not None and not s.bitrate:
                opts["crf"] = str(crf)
            if s.bitrate and s.live:  # a steady rate for the network
                opts["maxrate"] = str(s.bitrate)
                opts["bufsize"] = str(s.bitrate)
        elif s.codec in ("libvpx-vp9", "libvpx"):
            opts.update({"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"})
            if s.codec == "libvpx-vp9":
                opts["row-mt"] = "1"
            if crf is not None and not s.bitrate:
                opts["crf"] = str(crf)
                opts["b"] = "0" if s.codec == "libvpx-vp9" else "8M"  # vp8 crf needs a ceiling
        return opts

    def encode(self, image: np.ndarray, ticks: int) -> list[av.Packet]:
        if (image.shape[1] + image.shape[1] % 2, image.shape[0] + image.shape[0] % 2) != (self.width, self.height):
            if not self._resized_warned:
                log.warning(
                    "frame size changed from %dx%d to %dx%d: resizing to the first size",
                    self.width, self.height, image.shape[1], image.shape[0],
                )  # fmt: skip
                self._resized_warned = True
        rgb = fit_to(image, self.width, self.height)
        if self.stream.pix_fmt == "yuv420p":
            # OpenCV's BT.601 limited-range I420 matches swscale's default to +-1 and costs
            # ~0.2 ms instead of ~2.5 ms at 640x480.
            i420: np.ndarray = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
            frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")  # PyAV converts for the encoder
        frame.pts = ticks
        frame.time_base = TIME_BASE
        return list(self.stream.encode(frame))

    def flush(self) -> list[av.Packet]:
        return list(self.stream.encode(None))


def split_file_uri(uri: str) -> tuple[str, dict[str, str]]:
    """'out.mp4?fragmented=1' -> ('out.mp4', {'fragmented': '1'}); 'file:' prefix allowed."""
    path, query = file_path_and_query(uri)
    if query and Path(path).suffix.lower() in CONTAINERS:
        options = dict(parse_qsl(query, keep_blank_values=True))
        unknown = sorted(set(options) - set(_FILE_OPTIONS))
        if unknown:
            raise SinkError(f"output {redact_url(uri)}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(_FILE_OPTIONS)}")
        return path, options
    return path + ("?" + query if query else ""), {}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


class FileSink:
    """Encode frames into a video file, carrying the source's audio (see module docstring)."""

    def __init__(self, config: OutputConfig, audio_source: str | None = None) -> None:
        path, options = split_file_uri(config.uri)
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in CONTAINERS:
            raise SinkError(
                f"output {redact_url(config.uri)}: unknown file type {ext or '(none)'!r}; "
                f"use one of {', '.join(CONTAINERS)} (or window, virtualcam, rtsp://, rtmp://, preview, null)"
            )
        self.format, default_codec = CONTAINERS[ext]
        self.fragmented = _truthy(options.get("fragmented"))
        if self.fragmented and self.format not in ("mp4", "mov"):
            log.info("%s: fragmented=1 only matters for mp4/mov; %s is crash-safe as is", self.path, ext)
        try:
            gop = int(options["gop"]) if options.get("gop") else None
        except ValueError:
            raise SinkError(f"output {redact_url(config.uri)}: gop must be a number of frames, got {options['gop']!r}") from None
        self.settings = EncoderSettings.from_config(config, default_codec, preset=options.get("preset"), gop=gop)
        self.audio_enabled = config.audio
        self.audio_source = audio_source
        self.overwrite = config.overwrite
        check_not_input(self.path, (audio_source,) if audio_source else ())  # before anything is opened
        self._target: TempTarget | None = None  # written under a temporary name, renamed when finished
        self.name = f"file:{redact_url(str(self.path))}"
        self.frames_written = 0
        self._container: av.container.OutputContainer | None = None
        self._video: VideoEncoder | None = None
        self._audio: AudioCarrier | None = None
        self._clock: PtsClock | None = None
        self._info: SourceInfo | None = None
        self._last_source_time: float | None = None
        self._failed = False
        self._closed = False
        self._stopped_early = False
        self._set_aside: Path | None = None

    @property
    def partial_path(self) -> Path | None:
        """Where the unfinished file is: the temporary name while writing, ``NAME.partial.EXT``
        after a stop before the end; None once the file is in place (or was never made)."""
        if self._set_aside is not None:
            return self._set_aside
        target = self._target
        if target is None or target.direct or (target.done and not target.path.exists()):
            return None
        return target.path

    def stopped_early(self) -> None:
        """The run was stopped before its end: ``close`` finalizes the file beside the target."""
        self._stopped_early = True

    # --- lifecycle ------------------------------------------------------------------------

    def open(self, info: SourceInfo) -> None:
        self._info = info
        inputs = (self.audio_source,) if self.audio_source else ()
        check_target(self.path, overwrite=self.overwrite, inputs=inputs)
        self._target = TempTarget(self.path, overwrite=self.overwrite)
        fps = info.fps if info.fps else DEFAULT_FPS
        self._clock = PtsClock(Fraction(fps), relative=info.live)
        try:
            self._container = av.open(str(self._target.path), "w", format=self.format, options=self._container_options())
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._target.abandon(keep=False)
            raise SinkError(f"cannot open output file {self.path}: {exc}") from exc
        if self.audio_enabled and self.audio_source:
            if info.live:
                log.info("%s: audio of live source %s is not carried", self.path, info.uri)
            else:
                self._audio = AudioCarrier.open(self.audio_source, self._container, self.format, self.fragmented)
        log.info("writing %s (%s, %s)", self.path, self.format, self.settings.codec)

    def write(self, frame: Frame) -> None:
        if self._container is None or self._closed:
            raise SinkError(f"{self.path}: write() before open() or after close()")
        assert self._clock is not None
        try:
            if self._video is None:
                self._start_streams(frame)
            assert self._video is not None
            ticks = self._clock.ticks(frame)
            packets = self._video.encode(frame.image, ticks)
            if self._audio is not None and frame.pts is not None:
                self._pump_audio(frame.pts)  # interleave: audio up to this frame's time
                self._last_source_time = frame.pts
            self._container.mux(packets)
        except (av.FFmpegError, OSError) as exc:
            self._failed = True
            packets = []  # a packet holds its stream: the error's traceback keeps this frame, not the encoder
            raise SinkError(f"cannot write to {self.path}: {exc}") from exc
        self.frames_written += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        container = self._container
        try:
            if container is not None and self._video is not None:
                try:
                    container.mux(self._video.flush())
                except (av.FFmpegError, OSError) as exc:
                    errors.append(f"flushing the encoder: {exc}")
                if self._audio is not None and self._last_source_time is not None and self._clock is not None:
                    until = self._last_source_time + self._clock.frame_ticks / TIME_BASE.denominator
                    try:
                        self._audio.finish(until)
                    except (av.FFmpegError, OSError) as exc:
                        errors.append(f"writing the audio: {exc}")
        finally:
            if self._audio is not None:
                self._audio.close()
            if container is not None:
                try:
                    container.close()  # writes the trailer (MP4 index) when anything was written
                except (av.FFmpegError, OSError) as exc:
                    errors.append(f"finishing the file: {exc}")
        if self._video is None and container is not None:
            log.warning("%s: no frame was written; the file was not created", self.path)
        try:
            self._place(finished=not errors)
        except SinkError as exc:
            errors.append(str(exc))
        # The encoder's threads live as long as its stream object: let them go now, not when a
        # traceback that still holds this sink is collected (a soak's retries would pile them up).
        self._container, self._video = None, None
        if self._clock is not None and self._clock.adjusted:
            log.info("%s: %d frame timestamps did not increase and were moved forward", self.path, self._clock.adjusted)
        if errors:
            message = f"{self.path}: could not finalize the file: {'; '.join(errors)}"
            if self._failed:  # the write error was already raised; don't mask it
                log.error("%s", message)
            else:
                raise SinkError(message)
        elif self._set_aside is None:
            log.info("closed %s after %d frames", self.path, self.frames_written)

    # --- helpers --------------------------------------------------------------------------

    def _pump_audio(self, until: float) -> None:
        """Write audio up to ``until``; an audio problem drops the audio, never the video."""
        assert self._audio is not None
        try:
            self._audio.pump(until)
        except OSError:
            raise  # writing failed (disk full, ...): the file itself is in trouble
        except (av.FFmpegError, ValueError) as exc:
            log.warning("%s: audio stops here (%.2f s): %s", self.path, until, exc)
            self._audio.close()
            self._audio = None

    def _place(self, finished: bool) -> None:
        """A file with frames is renamed onto the target, unless it could not be finished and a
        file is there already: that one stays as it was, the new one under its partial name.
        (What could be written before a full disk plays under the name asked for.)"""
        if self._target is None:
            return
        if self._video is None:
            self._target.abandon(keep=False)
        elif self._stopped_early:
            self._set_aside = self._target.set_aside((self.audio_source,) if self.audio_source else ())
            previous = "was left as it was" if self.path.exists() else "was not written"
            log.warning(
                "stopped before the end: %s %s; the %d frame(s) made are in %s",
                self.path, previous, self.frames_written, self._set_aside,
            )  # fmt: skip
        elif finished:
            self._target.commit()
        elif self.path.exists() or self.path.is_symlink():
            self._target.abandon(keep=True)
        else:
            log.warning("%s was not finished; what was written is kept under its name", self.path)
            try:
                self._target.commit()
            except OSError as exc:
                log.warning("%s: cannot rename the partial file into place (%s); it is at %s", self.path, exc, self._target.path)

    def _container_options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        if self.format in ("mp4", "mov") and self.fragmented:
            opts["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
            opts["frag_duration"] = "500000"  # us: a crash loses at most ~0.5 s plus the encoder delay
            opts["flush_packets"] = "1"
        elif self.format in ("matroska", "webm"):
            opts["cluster_time_limit"] = "500"  # ms: a cluster is the unit a crash can lose
            opts["flush_packets"] = "1"
        elif self.format == "mpegts":
            opts["flush_packets"] = "1"
        if self.audio_enabled and self.audio_source:
            # Don't hold video for up to 10 s waiting for audio that has ended.
            opts["max_interleave_delta"] = "1000000"
        return opts

    def _start_streams(self, frame: Frame) -> None:
        assert self._container is not None and self._info is not None
        fps = Fraction(self._info.fps) if self._info.fps else DEFAULT_FPS
        settings = self.settings
        if self.fragmented:
            # B-frames would shift a fragmented file's start (no edit list in an empty moov).
            settings = replace(settings, gop=settings.gop or max(1, math.ceil(fps)), bframes=0)
        if frame.width % 2 or frame.height % 2:
            log.info(
                "%s: frame size %dx%d is odd; padding to %dx%d by repeating the edge (yuv420p needs even sizes)",
                self.path, frame.width, frame.height, frame.width + frame.width % 2, frame.height + frame.height % 2,
            )  # fmt: skip
        try:
            self._video = VideoEncoder(self._container, settings, frame.width, frame.height, fps)
        except (av.FFmpegError, ValueError) as exc:
            raise SinkError(f"{self.path}: cannot use video codec {settings.codec!r} in {self.format}: {exc}") from exc
        if self._audio is not None:
            try:
                self._audio.add_output_stream()
            except (av.FFmpegError, ValueError) as exc:
                log.warning("%s: audio not carried: %s", self.path, exc)
                self._audio.close()
                self._audio = None


def parse(uri: str, display: str) -> ParsedOutput | None:
    """Any path no other kind claimed; SinkError for a URL scheme no output speaks."""
    scheme = uri.partition(":")[0]
    if "://" in uri and scheme.lower() != "file":
        raise SinkError(
            f"output {display}: unsupported scheme {scheme!r}; "
            "use a file path, window, virtualcam, rtsp://, rtmp://, preview, ndi:NAME or null"
        )
    return ParsedOutput("file", uri, display, live=False, label=os.path.basename(file_path_and_query(uri)[0]))


def open_file(parsed: ParsedOutput, config: OutputConfig, context: OpenContext) -> Sink:
    return FileSink(config, audio_source=context.audio_source)


def _check_creatable(folder: Path, shown: str) -> None:
    check_not_system_folder(folder, shown)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SinkError(f"cannot write {shown}: folder {folder} cannot be created ({existing} is not a writable folder)")


def check_file(parsed: ParsedOutput, config: OutputConfig, context: CheckContext) -> None:
    """The target may be written: not an input, not an existing file without overwrite, a folder that exists."""
    path = Path(file_path_and_query(config.uri)[0])
    if context.command == "serve":  # the daemon fills in strftime fields and creates the folder
        path = Path(time.strftime(str(path)))
        if not path.parent.is_dir():
            _check_creatable(path.parent, parsed.display)
            return
    check_target(path, overwrite=config.overwrite, inputs=context.inputs, display=parsed.display)


KIND = SinkKind(
    name="file", forms="out.mp4, .mov, .mkv, .webm, .ts (file: prefix optional; ?fragmented=1, ?preset=, ?gop=)",
    parse=parse, open=open_file, check=check_file,
    exclusive=lambda parsed: os.path.realpath(file_path_and_query(parsed.rest)[0]),
)  # fmt: skip
