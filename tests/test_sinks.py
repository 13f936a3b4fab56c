"""Sinks with real encoders, decoders, servers and a real browser, all on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamdream.config import OutputConfig
from streamdream.errors import SinkError
from streamdream.frames import Frame, SourceInfo
from streamdream.runtime.workers import Workers
from streamdream.sinks import (
    FileSink,
    NullSink,
    PreviewSink,
    PublishSink,
    VirtualCamSink,
    WindowSink,
    open_sink,
)
from streamdream.sinks.file import TIME_BASE, PtsClock, even_pad
from streamdream.sinks.publish import SocketWatchdog
from streamdream.sinks.virtualcam import camera_frame
from streamdream.sinks.window import is_quit_key

REPO = Path(__file__).resolve().parents[1]
FPS = 25
W, H = 160, 120

# --- small fixtures: clips written by PyAV, frames, servers ---------------------------------


def picture(i: int, width: int = W, height: int = H) -> np.ndarray:
    """A frame that visibly changes with i: a moving white bar on a colour ramp."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)[None, :]
    x = (i * 7) % (width - 12)
    image[:, x : x + 12] = 255
    return image


def write_clip(
    path: Path, frames: int = 40, fps: int = FPS, size: tuple[int, int] = (W, H), audio: str | None = "aac"
) -> Path:
    """An H.264 clip (with a 440 Hz stereo tone as long as the video, AAC by default) written by PyAV."""
    rate = 44100 if audio == "aac" else 48000
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        sound = out.add_stream(audio, rate=rate, layout="stereo") if audio else None
        sample, chunk_size = 0, 960 if audio == "libopus" else 1024
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(i, *size), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
            while sound is not None and sample < (i + 1) * rate // fps:
                tone = (0.3 * np.sin(2 * np.pi * 440 * (np.arange(chunk_size) + sample) / rate)).astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                chunk.sample_rate, chunk.pts, chunk.time_base = rate, sample, Fraction(1, rate)
                out.mux(sound.encode(chunk))
                sample += chunk_size
        out.mux(video.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return path


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def frames_recorded(path: Path) -> int:
    """Frames readable now from a file a server may still be writing (0 until its header is there)."""
    try:
        return len(decoded(path))
    except (FileNotFoundError, av.error.FFmpegError):
        return 0


def audio_summary(path: Path) -> tuple[str, int, int, float]:
    """(codec, packet count, bytes, duration in seconds from first start to last end)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size]
        start = min(p.pts for p in packets)
        end = max(p.pts + p.duration for p in packets)
        return stream.codec_context.name, len(packets), sum(p.size for p in packets), float((end - start) * stream.time_base)


def info_for(path: Path, live: bool = False) -> SourceInfo:
    with av.open(str(path)) as container:
        v = container.streams.video[0]
        return SourceInfo(uri=str(path), width=v.width, height=v.height, fps=v.average_rate, live=live, has_audio=True)


def copy_through(sink: FileSink | PublishSink, source: Path) -> list[float]:
    """Decode ``source`` and write every frame with its pts into an opened sink; the pts."""
    times = []
    with av.open(str(source)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            times.append(frame.time)
            sink.write(Frame(image=frame.to_ndarray(format="rgb24"), index=i, pts=frame.time))
    return times


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "source.mp4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_listening(port: int) -> bool:
    """Read the kernel's table, so that checking does not use up a one-shot listener."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            return True
    return False


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"nothing listens on {port} after {timeout} s"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm", "mov", "ts"])
def test_file_sink_keeps_frames_timestamps_and_audio(clip: Path, tmp_path: Path, ext: str, workers) -> None:
    out = tmp_path / f"out.{ext}"
    sink = open_sink(OutputConfig(uri=str(out)), audio_source=str(clip), workers=workers)
    assert isinstance(sink, FileSink)
    sink.open(info_for(clip))
    times = copy_through(sink, clip)
    sink.close()
    sink.close()  # idempotent

    frames = decoded(out)
    assert len(frames) == len(times) == 40
    assert (frames[0].width, frames[0].height) == (W, H)
    got = [f.time for f in frames]
    if ext == "ts":
        # MPEG-TS keeps DTS >= 0 by shifting the whole file by the B-frame delay (audio too).
        shift = got[0] - times[0]
        assert 0 <= shift < 0.2
        got = [t - shift for t in got]
    tick = 0.001 if ext in ("mkv", "webm") else float(TIME_BASE)
    assert np.max(np.abs(np.subtract(got, times))) <= tick + 1e-9

    src_codec, src_packets, src_bytes, src_duration = audio_summary(clip)
    codec, packets, size, duration = audio_summary(out)
    assert abs(duration - src_duration) <= 1 / FPS
    if ext in ("mp4", "mov"):  # a stream copy, every packet
        assert (codec, packets, size) == (src_codec, src_packets, src_bytes) == ("aac", src_packets, src_bytes)
    elif ext == "webm":
        assert codec == "opus"  # AAC is not allowed in WebM: re-encoded
    else:
        assert codec == "aac" and packets >= src_packets - 1  # copy, less the priming packet before 0


def test_audio_the_container_cannot_take_is_re_encoded(tmp_path: Path, workers) -> None:
    source = write_clip(tmp_path / "opus.mkv", frames=30, audio="libopus")
    out = tmp_path / "out.mp4"
    sink = open_sink(OutputConfig(uri=str(out)), audio_source=str(source), workers=workers)
    sink.open(info_for(source))
    copy_through(sink, source)
    sink.close()
    assert len(decoded(out)) == 30
    codec, _, _, duration = audio_summary(out)
    assert codec == "aac" and abs(duration - audio_summary(source)[3]) <= 1 / FPS


def test_file_sink_without_audio_and_odd_size_pads_to_even(tmp_path: Path, workers) -> None:
    out = tmp_path / "odd.mp4"
    sink = open_sink(OutputConfig(uri=str(out), audio=False), audio_source=None, workers=workers)
    sink.open(SourceInfo(uri="test", width=161, height=121, fps=Fraction(FPS), live=False))
    for i in range(10):
        sink.write(Frame(image=picture(i, 161, 121), index=i, pts=i / FPS))
    sink.close()
    frames = decoded(out)
    assert len(frames) == 10 and (frames[0].width, frames[0].height) == (162, 122)
    with av.open(str(out)) as container:
        assert not container.streams.audio
    image = frames[3].to_ndarray(format="rgb24").astype(int)
    assert np.abs(image[:121, :161] - picture(3, 161, 121)).mean() < 6  # same picture, nothing scaled
    assert even_pad(picture(0, 5, 3)).shape == (4, 6, 3)


def test_bitrate_codec_and_preset_options(tmp_path: Path, workers) -> None:
    out = tmp_path / "vp8.mkv"
    sink = open_sink(OutputConfig(uri=f"{out}?preset=ultrafast", codec="libvpx", bitrate="500k"), workers=workers)
    sink.open(SourceInfo(uri="test", width=W, height=H, fps=Fraction(FPS), live=False))
    for i in range(5):
        sink.write(Frame(image=picture(i), index=i, pts=i / FPS))
    sink.close()
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "vp8"
    assert len(decoded(out)) == 5


def test_pts_clock_live_none_loop_and_relative() -> None:
    clock = PtsClock(Fraction(25), relative=False)
    base = 100.0
    # no source time: the capture clock decides, starting at 0
    ticks = [clock.ticks(Frame(image=picture(0), index=i, pts=None, captured_at=base + i * 0.04)) for i in range(3)]
    assert ticks == [0, 3600, 7200]
    # the source's time takes over again; a jump back (a loop) keeps going forward
    clock = PtsClock(Fraction(25), relative=False)
    pts = [0.0, 0.04, 0.08, 0.0, 0.04]
    ticks = [clock.ticks(Frame(image=picture(0), index=i, pts=p)) for i, p in enumerate(pts)]
    assert ticks == [0, 3600, 7200, 10800, 14400] and clock.adjusted == 1
    live = PtsClock(Fraction(25), relative=True)
    assert [live.ticks(Frame(image=picture(0), index=i, pts=50.0 + i / 25)) for i in range(2)] == [0, 3600]


def test_close_after_an_error_mid_way_leaves_a_playable_file(clip: Path, tmp_path: Path, workers) -> None:
    out = tmp_path / "crashed.mp4"
    sink = open_sink(OutputConfig(uri=str(out)), audio_source=str(clip), workers=workers)
    sink.open(info_for(clip))
    with pytest.raises(RuntimeError, match="dream failed"):
        try:
            for i in range(15):
                sink.write(Frame(image=picture(i), index=i, pts=i / FPS))
            raise RuntimeError("dream failed")
        finally:
            sink.close()
    assert len(decoded(out)) == 15
    assert audio_summary(out)[3] == pytest.approx(15 / FPS, abs=2 / FPS)  # audio up to the last frame


CHILD_WRITER = """
import sys, time
from fractions import Fraction
import numpy as np
from streamdream.config import OutputConfig
from streamdream.frames import Frame, SourceInfo
from streamdream.runtime.workers import Workers
from streamdream.sinks import open_sink
sink = open_sink(OutputConfig(uri=sys.argv[1]), Workers(), audio_source=sys.argv[2])  # killed mid-write: nothing is joined
sink.open(SourceInfo(uri="test", width=160, height=120, fps=Fraction(25), live=False))
for i in range(100000):
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, (i * 7) % 148:(i * 7) % 148 + 12] = 255
    sink.write(Frame(image=image, index=i, pts=i / 25))
    print(i + 1, flush=True)
    time.sleep(0.002)
"""


@pytest.mark.parametrize("name", ["killed.mp4?fragmented=1", "killed.mkv"])
def test_killed_writer_leaves_a_readable_file(tmp_path: Path, name: str) -> None:
    audio = write_clip(tmp_path / "tone.mp4", frames=100, size=(64, 48))
    uri = str(tmp_path / name)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_WRITER, uri, str(audio)], stdout=subprocess.PIPE, env=env, cwd=REPO
    )
    try:
        assert child.stdout is not None
        written = 0
        while written < 60:
            line = child.stdout.readline()
            assert line, f"writer exited with {child.wait()}"
            written = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    target = Path(uri.partition("?")[0])
    assert not target.exists()  # the name appears only once the file is finished
    (path,) = target.parent.glob(f"{target.stem}.partial-*{target.suffix}")  # what a crash leaves
    frames = []
    with av.open(str(path)) as container:  # no trailer was ever written
        try:
            frames = [f.time for f in container.decode(video=0)]
        except av.InvalidDataError:
            pass  # the last, torn fragment/cluster
    # lost at most the fragment/cluster in progress (0.5 s) plus the encoder delay (~15 frames)
    assert written - 32 <= len(frames) <= written
    assert frames[-1] == pytest.approx((len(frames) - 1) / FPS, abs=1e-3)
    assert audio_summary(path)[3] > 0.5  # audio was interleaved as frames were written


def test_missing_directory_names_the_path(tmp_path: Path, workers) -> None:
    out = tmp_path / "no" / "such" / "dir" / "out.mp4"
    sink = open_sink(OutputConfig(uri=str(out)), workers=workers)
    with pytest.raises(SinkError, match="does not exist") as error:
        sink.open(SourceInfo(uri="test", width=W, height=H, fps=Fraction(FPS), live=False))
    assert str(out) in str(error.value)
    sink.close()  # safe after a failed open


def test_disk_full_is_a_sink_error_naming_the_path(tmp_path: Path, workers) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    out = tmp_path / "full.ts"
    out.symlink_to("/dev/full")
    sink = open_sink(OutputConfig(uri=str(out), audio=False), workers=workers)
    sink.open(SourceInfo(uri="test", width=W, height=H, fps=Fraction(FPS), live=False))
    with pytest.raises(SinkError, match="No space left") as error:
        for i in range(60):
            sink.write(Frame(image=picture(i), index=i, pts=i / FPS))
    assert str(out) in str(error.value)
    sink.close()  # finalizes what it can; the write error was already raised


def test_unknown_outputs_are_refused(workers) -> None:
    with pytest.raises(SinkError, match=r"unknown file type '\.avi'.*\.mp4"):
        open_sink(OutputConfig(uri="out.avi"), workers=workers)
    with pytest.raises(SinkError, match="unsupported scheme 'srt'"):
        open_sink(OutputConfig(uri="srt://user:pw@host:9000"), workers=workers)
    with pytest.raises(SinkError, match="unknown option"):
        open_sink(OutputConfig(uri="out.mp4?fragmentd=1"), workers=workers)
    with pytest.raises(SinkError, match="port must be"):
        open_sink(OutputConfig(uri="preview:notaport"), workers=workers)
    with pytest.raises(SinkError, match="codec: 'h266' is not a video encoder"):
        open_sink(OutputConfig(uri="out.mkv", codec="h266"), workers=workers)
    with pytest.raises(SinkError, match="codec: 'aac' is not a video encoder"):
        open_sink(OutputConfig(uri="rtmp://127.0.0.1/live/key", codec="aac"), workers=workers)


def test_open_sink_builds_each_kind(workers) -> None:
    def make(uri: str) -> object:
        return open_sink(OutputConfig(uri=uri), workers=workers)

    assert isinstance(make("null"), NullSink)
    assert isinstance(make("window"), WindowSink) and not make("window").fullscreen  # type: ignore[attr-defined]
    assert make("window:fullscreen").fullscreen  # type: ignore[attr-defined]
    assert isinstance(make("virtualcam"), VirtualCamSink)
    assert make("virtualcam:/dev/video9").device == "/dev/video9"  # type: ignore[attr-defined]
    assert isinstance(make("rtsp://cam:secret@127.0.0.1:8554/live"), PublishSink)
    publish = make("rtmp://127.0.0.1/live/key")
    assert isinstance(publish, PublishSink) and publish.port == 1935 and publish.format == "flv"
    preview = make("preview")
    assert isinstance(preview, PreviewSink) and (preview.host, preview.port) == ("127.0.0.1", 8080)
    assert (make("preview:9000").host, make("preview:9000").port) == ("127.0.0.1", 9000)  # type: ignore[attr-defined]
    assert (make("preview:0.0.0.0:0").host, make("preview:0.0.0.0:0").port) == ("0.0.0.0", 0)  # type: ignore[attr-defined]
    assert isinstance(make("dream.webm"), FileSink) and isinstance(make("file:dream.ts"), FileSink)
    assert "secret" not in make("rtsp://cam:secret@127.0.0.1:8554/live").name  # type: ignore[attr-defined]


def test_null_sink_counts() -> None:
    sink = NullSink()
    sink.open(SourceInfo(uri="test", width=W, height=H, fps=None, live=True))
    for i in range(3):
        sink.write(Frame(image=picture(i), index=i, pts=i * 0.5))
    sink.close()
    assert sink.frames_written == 3 and sink.last_pts == 1.0


# --- window and virtual camera ----------------------------------------------------------------


def test_window_on_headless_opencv_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    info = SourceInfo(uri="test", width=W, height=H, fps=Fraction(FPS), live=True)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        with pytest.raises(SinkError, match="no display: DISPLAY"):
            WindowSink().open(info)
    monkeypatch.setenv("DISPLAY", ":99")
    if "GUI:                           NONE" in cv2.getBuildInformation():  # opencv-python-headless
        with pytest.raises(SinkError, match=r"pip install opencv-python") as error:
            WindowSink(fullscreen=True).open(info)
        assert "no display" not in str(error.value)


class FakeGui:
    """Stands in for cv2's HighGUI: records calls, returns scripted key codes."""

    def __init__(self, keys: list[int]) -> None:
        self.keys, self.calls, self.visible = list(keys), [], 1.0

    def __getattr__(self, name: str):  # namedWindow, imshow, resizeWindow, destroyWindow, ...
        return lambda *args: self.calls.append((name, args))

    def waitKey(self, delay: int) -> int:  # noqa: N802
        return self.keys.pop(0) if self.keys else -1

    def getWindowProperty(self, title: str, prop: int) -> float:  # noqa: N802
        return self.visible


def test_window_keys_set_the_quit_event() -> None:
    assert is_quit_key(27) and is_quit_key(ord("q")) and is_quit_key(0x100000 | ord("Q"))
    assert not is_quit_key(-1) and not is_quit_key(ord("a"))
    gui = FakeGui([-1, ord("a"), 27])
    sink = WindowSink(fullscreen=True, gui=gui)
    sink.open(SourceInfo(uri="test", width=W, height=H, fps=Fraction(FPS), live=True))
    assert ("setWindowProperty", ("streamdream", cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)) in gui.calls
    for i in range(2):
        sink.write(Frame(image=picture(i), index=i))
        assert not sink.quit_event.is_set()
    sink.write(Frame(image=picture(2), index=2))
    assert sink.quit_event.is_set() and sink.quit_requested
    shown = [args[1] for name, args in gui.calls if name == "imshow"]
    assert np.array_equal(shown[0][..., ::-1], picture(0))  # shown as BGR
    closed = WindowSink(gui=FakeGui([]))
    closed.open(SourceInfo(uri="test", width=W, height=H, fps=None, live=True))
    closed._gui.visible = 0.0  # the user closed the window
    closed.write(Frame(image=picture(0), index=0))
    assert closed.quit_event.is_set()
    sink.close()
    assert gui.calls[-1][0] == "destroyWindow"


def test_camera_frame_conversion() -> None:
    big = np.arange(240 * 320 * 3, dtype=np.uint8).reshape(240, 320, 3)[:, ::2]  # not contiguous
    out = camera_frame(big, 64, 48)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    rgba = np.full((48, 64, 4), (10, 20, 30, 255), np.uint8)
    assert camera_frame(rgba, 64, 48)[0, 0].tolist() == [10, 20, 30]
    gray = np.full((48, 64), 7, np.uint8)
    assert camera_frame(gray, 64, 48)[0, 0].tolist() == [7, 7, 7]
    floats = np.full((48, 64, 3), 300.0)
    assert camera_frame(floats, 64, 48).max() == 255
    same = picture(0, 64, 48)
    assert np.array_equal(camera_frame(same, 64, 48), same)


def test_virtualcam_errors_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    info = SourceInfo(uri="test", width=64, height=48, fps=Fraction(30), live=True)
    try:
        import pyvirtualcam  # noqa: F401
    except ImportError:
        pass
    else:  # installed, but no v4l2loopback device on a test machine
        if not any(Path("/dev").glob("video*")):
            with pytest.raises(SinkError, match=r"sudo modprobe v4l2loopback") as error:
                VirtualCamSink().open(info)
            assert "v4l2loopback-dkms" in str(error.value) and "OBS Studio >= 26" in str(error.value)
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # as if not installed
    with pytest.raises(SinkError, match=r"pyvirtualcam is not installed") as error:
        VirtualCamSink().open(info)
    assert "pip install 'streamdream[virtualcam]'" in str(error.value)
    assert "v4l2loopback-dkms" in str(error.value) and "OBS Studio >= 26" in str(error.value)


# --- publishing to real servers ---------------------------------------------------------------

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")
NGINX_RTMP = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
needs_nginx_rtmp = pytest.mark.skipif(
    shutil.which("nginx") is None or not NGINX_RTMP.exists(), reason="needs nginx with libnginx-mod-rtmp"
)


def publish_frames(uri: str, count: int, workers: Workers, size: tuple[int, int] = (W, H)) -> PublishSink:
    sink = open_sink(OutputConfig(uri=uri), workers=workers)
    assert isinstance(sink, PublishSink)
    sink.open(SourceInfo(uri="test", width=size[0], height=size[1], fps=Fraction(FPS), live=True))
    try:
        for i in range(count):
            sink.write(Frame(image=picture(i, *size), index=i, pts=i / FPS))
    finally:
        sink.close()
    return sink


@needs_ffmpeg
def test_rtsp_publish_to_ffmpeg_server(tmp_path: Path, workers) -> None:
    port, out = free_port(), tmp_path / "received.mp4"
    server = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-rtsp_flags", "listen",
         "-i", f"rtsp://127.0.0.1:{port}/live", "-c", "copy", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_listening(port, server)
        publish_frames(f"rtsp://127.0.0.1:{port}/live", 50, workers)
        assert server.wait(timeout=20) == 0
    finally:
        stop(server)
    frames = decoded(out)
    assert len(frames) >= 48 and (frames[0].width, frames[0].height) == (W, H)


@needs_nginx_rtmp
def test_rtmp_publish_to_nginx_records(tmp_path: Path, workers) -> None:
    port, record = free_port(), tmp_path / "record"
    record.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"load_module {NGINX_RTMP};\n"
        f"daemon off; master_process off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log info;\n"
        "events { worker_connections 64; }\n"
        f"rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record all; "
        f"record_path {record}; record_unique off; }} }} }}\n"
    )
    server = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        wait_listening(port, server)
        publish_frames(f"rtmp://127.0.0.1:{port}/live/dream", 40, workers)
        deadline = time.monotonic() + 60  # a guard against a hang: nginx writes the recording when it can
        recorded = record / "dream.flv"
        while frames_recorded(recorded) < 38 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop(server)
    frames = decoded(recorded)
    assert len(frames) >= 38 and (frames[0].width, frames[0].height) == (W, H)


@pytest.mark.parametrize("scheme", ["rtsp", "rtmp"])
def test_publish_refused_names_the_redacted_url(scheme: str, workers) -> None:
    uri = f"{scheme}://dreamer:hunter2@127.0.0.1:{free_port()}/live/key"
    sink = open_sink(OutputConfig(uri=uri), workers=workers)
    with pytest.raises(SinkError, match="connection refused") as error:
        sink.open(SourceInfo(uri="test", width=W, height=H, fps=Fraction(FPS), live=True))
    assert f"{scheme}://dreamer:***@127.0.0.1" in str(error.value) and "hunter2" not in str(error.value)
    sink.close()


@pytest.fixture()
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers nor reads: a hung server."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(server.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    yield int(server.getsockname()[1])
    server.close()
    for conn in accepted:
        conn.close()


@pytest.mark.parametrize("scheme", ["rtsp", "rtmp"])
def test_publish_to_a_hung_server_times_out(silent_server: int, scheme: str, workers) -> None:
    sink = PublishSink(OutputConfig(uri=f"{scheme}://127.0.0.1:{silent_server}/live/key"), io_timeout=1.0, workers=workers)
    started = time.monotonic()
    with pytest.raises(SinkError, match="no answer within 1 s"):
        sink.open(SourceInfo(uri="test", width=W, height=H, fps=Fraction(FPS), live=True))
    sink.close()
    assert time.monotonic() - started < 5


def test_socket_watchdog_unblocks_a_stuck_send(silent_server: int, workers) -> None:
    watchdog = SocketWatchdog("127.0.0.1", silent_server, timeout=0.5, workers=workers)
    client = socket.create_connection(("127.0.0.1", silent_server))
    started = time.monotonic()
    try:
        with pytest.raises(OSError), watchdog.guard():
            while True:  # the server never reads: the send buffers fill, then sendall blocks
                client.sendall(b"x" * 1_000_000)
        assert watchdog.fired and time.monotonic() - started < 5
    finally:
        watchdog.stop_watching()
        client.close()


def test_socket_watchdog_shuts_its_peer_beside_unix_sockets(silent_server: int, workers) -> None:
    """A daemon holds Unix sockets too (asyncio, Ray): their peer name is a string, which once
    raised an IndexError that skipped the container's close and left its socket and encoder behind."""
    unix_a, unix_b = socket.socketpair()
    watchdog = SocketWatchdog("127.0.0.1", silent_server, timeout=5.0, workers=workers)
    client = socket.create_connection(("127.0.0.1", silent_server))
    try:
        watchdog.shutdown_sockets()
        assert client.recv(1) == b""  # our end was shut down: the read sees the end at once
        unix_a.sendall(b"ok")  # the Unix pair is left alone
        assert unix_b.recv(2) == b"ok"
    finally:
        watchdog.stop_watching()
        for sock in (client, unix_a, unix_b):
            sock.close()


# --- browser preview --------------------------------------------------------------------------


@pytest.fixture()
def preview(workers) -> Iterator[PreviewSink]:
    sink = open_sink(OutputConfig(uri="preview:127.0.0.1:0"), workers=workers)
    assert isinstance(sink, PreviewSink)
    sink.open(SourceInfo(uri="test", width=320, height=240, fps=Fraction(10), live=True))
    yield sink
    sink.close()


def moving_writer(sink: PreviewSink, done: threading.Event, period: float = 0.1) -> threading.Thread:
    def run() -> None:
        i = 0
        while not done.is_set():
            sink.write(Frame(image=picture(i * 5, 320, 240), index=i))
            i += 1
            done.wait(period)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_parts(url: str, count: int, timeout: float = 10.0) -> list[bytes]:
    """The first ``count`` JPEG parts of an MJPEG stream."""
    parts = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers.get_content_type() == "multipart/x-mixed-replace"
        while len(parts) < count:
            line = response.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                response.readline()  # blank line
                parts.append(response.read(length))
    return parts


def test_preview_http_serves_page_stream_and_snapshot(preview: PreviewSink) -> None:
    assert preview.port != 0 and preview.url == f"http://127.0.0.1:{preview.port}/"
    with pytest.raises(urllib.error.HTTPError, match="503"):
        urllib.request.urlopen(preview.url + "snapshot.jpg", timeout=5)
    page = urllib.request.urlopen(preview.url, timeout=5).read().decode()
    assert '<img src="/stream.mjpg"' in page and "<title>streamdream</title>" in page
    done = threading.Event()
    writer = moving_writer(preview, done)
    try:
        parts = read_parts(preview.url + "stream.mjpg", 3)
        snapshot = urllib.request.urlopen(preview.url + "snapshot.jpg", timeout=5).read()
    finally:
        done.set()
        writer.join()
    images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts + [snapshot]]
    assert all(image is not None and image.shape == (240, 320, 3) for image in images)
    assert len({p for p in parts}) >= 2 and np.abs(images[0].astype(int) - images[-2]).mean() > 1
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(preview.url + "nope", timeout=5)


def test_preview_slow_and_gone_clients_never_block_write(preview: PreviewSink) -> None:
    host, port = "127.0.0.1", preview.port
    stalled = socket.create_connection((host, port))  # asks for the stream, then never reads
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    leaving = socket.create_connection((host, port))
    leaving.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    deadline = time.monotonic() + 5
    while preview.clients < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert preview.clients == 2
    noisy = (np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8)  # big JPEGs
    started = time.monotonic()
    for i in range(60):
        preview.write(Frame(image=np.roll(noisy, i, axis=1), index=i))
    assert time.monotonic() - started < 1.0  # write only swaps a reference (a stalled send waits 10 s)
    leaving.close()
    deadline = time.monotonic() + 5
    while preview.clients > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert preview.clients == 1  # the one that left is cleaned up; the stalled one is still served
    assert preview.frames.encoded <= 60
    stalled.close()


@pytest.mark.skipif(
    shutil.which("chromium") is None and shutil.which("google-chrome") is None, reason="needs chromium"
)
def test_preview_in_headless_chromium_moves(preview: PreviewSink, tmp_path: Path) -> None:
    from tests.fixtures.preview_browser import HeadlessChromium, find_chromium

    done = threading.Event()
    writer = moving_writer(preview, done)
    browser = HeadlessChromium(find_chromium() or "chromium", tmp_path / "profile", url=preview.url)
    try:
        browser.call("Emulation.setDeviceMetricsOverride", width=640, height=480, deviceScaleFactor=1, mobile=False)
        deadline = time.monotonic() + 15
        while True:  # until the first picture is on screen (slow on a busy machine)
            first = cv2.imdecode(np.frombuffer(browser.screenshot(), np.uint8), cv2.IMREAD_COLOR)
            if first.mean() > 20 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        second = cv2.imdecode(np.frombuffer(browser.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    finally:
        browser.close()
        done.set()
        writer.join()
    assert first.shape == second.shape == (480, 640, 3)
    assert first.mean() > 20 and second.mean() > 20  # the picture, not a black page
    assert np.abs(first.astype(int) - second).mean() > 3  # and it moved
