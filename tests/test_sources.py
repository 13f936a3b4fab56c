"""Sources against real media: PyAV-written clips, Big Buck Bunny, a real RTSP server."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from streamdream.config import SourceConfig
from streamdream.errors import SourceError, SourceLostError
from streamdream.runtime.workers import Workers
from streamdream.sources import DemoSource, describe_uri, open_source, parse_uri
from streamdream.sources.base import Source
from streamdream.sources.demo import DemoScene
from streamdream.sources.uri import is_realtime_graph, lavfi_open_args, network_open_args, webcam_open_args
from tests.fixtures.media import write_clip
from tests.fixtures.servers import free_port


def collect(source, limit: int | None = None, deadline: float = 20.0, on_frame=None):
    """Read frames in a thread so a hang fails the test instead of blocking the run.

    Returns ``(frames, error)``; frames are ``(index, pts, shape)`` so 720p clips stay small.
    """
    frames: list[tuple[int, float | None, tuple[int, ...]]] = []
    outcome: dict[str, BaseException] = {}

    def read() -> None:
        try:
            for frame in source.frames():
                frames.append((frame.index, frame.pts, frame.image.shape))
                if on_frame is not None:
                    on_frame(frame)
                if limit is not None and len(frames) >= limit:
                    break
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(deadline)
    if reader.is_alive():
        source.close()
        pytest.fail(f"reading did not finish within {deadline} s")
    return frames, outcome.get("error")


@pytest.fixture
def opened(workers: Workers) -> Callable[..., Source]:
    """``opened(uri, **source_config)``: the source, opened, its threads in the test's owner."""

    def open_(uri: str, **config: Any) -> Source:
        source = open_source(SourceConfig(uri=uri, **config), workers)
        source.open()
        return source

    return open_


# --- URIs (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, kind, target",
    [
        ("clip.mp4", "file", "clip.mp4"),
        ("/videos/a b.mkv", "file", "/videos/a b.mkv"),
        ("file:///videos/a%20b.mkv", "file", "/videos/a b.mkv"),
        (r"C:\videos\clip.mp4", "file", r"C:\videos\clip.mp4"),
        ("demo.mp4", "file", "demo.mp4"),
        ("webcam", "webcam", ""),
        ("webcam:2", "webcam", "2"),
        ("webcam:Integrated Camera", "webcam", "Integrated Camera"),
        ("/dev/video3", "webcam", "/dev/video3"),
        ("rtsp://cam.local:554/stream", "network", "rtsp://cam.local:554/stream"),
        ("https://example.com/live.m3u8", "network", "https://example.com/live.m3u8"),
        ("srt://1.2.3.4:9000", "network", "srt://1.2.3.4:9000"),
        ("demo", "demo", "demo"),
        ("demo?width=320&live=1", "demo", "demo"),
        ("lavfi:testsrc2=size=320x240:rate=30", "lavfi", "testsrc2=size=320x240:rate=30"),
        ("image:photo.jpg", "image", "photo.jpg"),
    ],
)
def test_parse_uri_kinds(uri: str, kind: str, target: str) -> None:
    parsed = parse_uri(uri)
    assert (parsed.kind, parsed.target) == (kind, target)


def test_parse_uri_redacts_and_rejects_unknown_schemes() -> None:
    parsed = parse_uri("rtsp://admin:hunter2@10.0.0.5/h264")
    assert "hunter2" not in parsed.display and "hunter2" not in describe_uri(parsed.target)
    assert parsed.target.endswith("@10.0.0.5/h264")
    with pytest.raises(SourceError, match=r"unsupported input scheme gopher://"):
        parse_uri("gopher://x:secret@host/")
    assert parse_uri("demo?frames=5&live=1").params == {"frames": "5", "live": "1"}


@pytest.mark.parametrize(
    "platform, device, file, fmt, extra",
    [
        ("linux", "", "/dev/video0", "v4l2", {"input_format": "mjpeg"}),
        ("linux", "2", "/dev/video2", "v4l2", {"input_format": "mjpeg"}),
        ("linux", "/dev/v4l/by-id/usb-cam", "/dev/v4l/by-id/usb-cam", "v4l2", {"input_format": "mjpeg"}),
        ("darwin", "", "0:none", "avfoundation", {"pixel_format": "mjpeg"}),
        ("darwin", "1", "1:none", "avfoundation", {"pixel_format": "mjpeg"}),
        ("win32", "Integrated Camera", "video=Integrated Camera", "dshow", {"vcodec": "mjpeg", "rtbufsize": "64M"}),
    ],
)
def test_webcam_mapping_per_platform(platform: str, device: str, file: str, fmt: str, extra: dict) -> None:
    args = webcam_open_args(
        device, platform=platform, width=1280, height=720, fps=30, input_format="mjpeg", timeout=(5, 3)
    )
    assert (args.file, args.format, args.timeout) == (file, fmt, (5, 3))
    assert args.options == {"video_size": "1280x720", "framerate": "30", **extra}


def test_webcam_mapping_defaults_and_errors() -> None:
    assert webcam_open_args("", platform="linux").options == {}
    # avfoundation refuses its own 29.97 default on most cameras
    assert webcam_open_args("0", platform="darwin").options == {"framerate": "30"}
    assert webcam_open_args("", platform="linux", fps=29.97).options == {"framerate": "29.97"}
    with pytest.raises(SourceError, match=r"on Windows name the camera"):
        webcam_open_args("0", platform="win32")
    with pytest.raises(SourceError, match=r"on Linux name the camera by number or path"):
        webcam_open_args("FaceTime", platform="linux")


def test_network_options() -> None:
    rtsp = network_open_args("rtsp://h/x", transport="udp", open_timeout=4, read_timeout=2.5)
    assert rtsp.options == {"rtsp_transport": "udp", "timeout": "2500000"}
    assert rtsp.timeout == (4, 2.5)
    assert network_open_args("rtsp://h/x", libavformat_major=58).options["stimeout"] == "10000000"
    # rtmp's "timeout" would make FFmpeg listen instead of connect
    assert network_open_args("rtmp://h/app/key").options == {"rw_timeout": "10000000"}
    assert network_open_args("https://h/live.m3u8").options == {"timeout": "10000000", "rw_timeout": "10000000"}


def test_lavfi_realtime_detection() -> None:
    assert is_realtime_graph("testsrc2=rate=30,realtime")
    assert not is_realtime_graph("testsrc2=rate=30")
    assert lavfi_open_args("mandelbrot", live=True).file == "mandelbrot,realtime"
    assert lavfi_open_args("testsrc,realtime", live=True).file == "testsrc,realtime"


# --- files --------------------------------------------------------------------------------


def test_big_buck_bunny(bbb_path: Path, opened) -> None:
    source = opened(str(bbb_path))
    info = source.info
    assert (info.width, info.height, info.fps, info.frame_count) == (1280, 720, Fraction(25), 132)
    assert info.has_audio and not info.live and info.kind == "file"
    assert info.duration == pytest.approx(132 / 25, abs=0.05)
    frames, error = collect(source)
    assert error is None
    assert [i for i, _, _ in frames] == list(range(132))
    assert {shape for _, _, shape in frames} == {(720, 1280, 3)}
    pts = [p for _, p, _ in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    with av.open(str(bbb_path)) as container:
        expected = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert pts == expected


@pytest.mark.parametrize(
    "name, options",
    [
        ("h264_aac.mp4", {"audio": True}),
        ("h264.mkv", {}),
        ("vp9.webm", {"codec": "libvpx-vp9", "codec_options": {"deadline": "realtime", "cpu-used": "8"}}),
        ("mpeg4.avi", {"codec": "mpeg4", "fps": 30, "width": 176, "height": 144}),
    ],
)
def test_clips_read_back_exactly(make_clip, name: str, options: dict, opened) -> None:
    clip = make_clip(name, frames=20, **options)
    fps = options.get("fps", 25)
    source = opened(str(clip))
    assert source.info.fps == Fraction(fps)
    assert source.info.has_audio == options.get("audio", False)
    frames, error = collect(source)
    assert error is None
    assert [p for _, p, _ in frames] == pytest.approx([i / fps for i in range(20)], abs=1e-9)
    assert frames[0][2] == (options.get("height", 120), options.get("width", 160), 3)


def test_variable_timestamps_are_kept(make_clip, opened) -> None:
    stamps = [0, 40, 80, 200, 210, 400, 433, 500, 1000, 1001]
    clip = make_clip("vfr.mkv", frames=len(stamps), pts=stamps, time_base=Fraction(1, 1000))
    frames, error = collect(opened(str(clip)))
    assert error is None
    assert [p for _, p, _ in frames] == pytest.approx([s / 1000 for s in stamps], abs=1e-9)


def test_rgb_channel_order(tmp_path: Path, opened) -> None:
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    path = tmp_path / "red.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "0"})
        stream.width = stream.height = 64
        for packet in stream.encode(av.VideoFrame.from_ndarray(red, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    images: list[np.ndarray] = []
    collect(opened(str(path)), on_frame=lambda f: images.append(f.image))
    assert images[0].dtype == np.uint8 and not images[0].flags.writeable
    assert np.abs(images[0].astype(int) - red).max() <= 8


def test_loop_continues_timestamps(make_clip, opened) -> None:
    clip = make_clip("short.mp4", frames=10)
    source = opened(str(clip), loop=True)
    assert source.info.frame_count is None  # endless
    frames, error = collect(source, limit=25)
    assert error is None
    assert [i for i, _, _ in frames] == list(range(25))
    assert [p for _, p, _ in frames] == pytest.approx([i / 25 for i in range(25)], abs=1e-9)


def test_truncated_file_gives_what_it_can_then_warns(make_clip, tmp_path: Path, caplog, opened) -> None:
    clip = make_clip("whole.mp4", frames=50, options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with caplog.at_level(logging.WARNING, logger="streamdream.sources"):
        frames, error = collect(opened(str(cut)), deadline=10)
    assert error is None
    assert 5 < len(frames) < 50
    assert any("truncated" in r.getMessage() and "cut.mp4" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("content", [b"", b"not a video at all\n" * 50], ids=["empty", "text"])
def test_unreadable_files_name_the_path(tmp_path: Path, content: bytes, opened) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=r"cannot read input file .*broken\.mp4: FFmpeg says: Invalid data"):
        opened(str(path))


def test_missing_file_and_audio_only_file(tmp_path: Path, opened) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=rf"^input file not found: {missing}$"):
        opened(str(missing))
    audio_only = tmp_path / "tone.m4a"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(SourceError, match=r"tone\.m4a has no video stream \(streams found: audio\)"):
        opened(str(audio_only))


# --- devices, generated inputs, stills ------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="v4l2 device paths are Linux only")
def test_missing_webcam_says_what_to_check(opened) -> None:
    message = (
        "webcam /dev/video7 not found: no such device; check that a camera is connected "
        "and that the user may read it (group 'video')"
    )
    for uri in ("/dev/video7", "webcam:7"):
        with pytest.raises(SourceError) as caught:
            opened(uri)
        assert str(caught.value) == message


def test_lavfi_realtime_is_live_and_paced(opened) -> None:
    source = opened("lavfi:testsrc2=size=160x120:rate=30,realtime")
    assert source.info.live and source.info.fps == Fraction(30)
    start = time.monotonic()
    frames, error = collect(source, limit=10)
    assert error is None and len(frames) == 10
    assert time.monotonic() - start >= 0.25
    source.close()


def test_lavfi_without_realtime_is_a_finite_generated_input(opened) -> None:
    source = opened("lavfi:testsrc2=size=160x120:rate=25:duration=1")
    assert not source.info.live
    frames, error = collect(source)
    assert error is None and len(frames) == 25 and frames[0][2] == (120, 160, 3)


def test_demo_default_is_textured_and_cheap(opened) -> None:
    source = opened("demo")
    info = source.info
    assert (info.width, info.height, info.fps, info.frame_count, info.live) == (640, 480, Fraction(30), 90, False)
    frames = list(source.frames())
    assert len(frames) == 90 and [f.pts for f in frames[:3]] == pytest.approx([0, 1 / 30, 2 / 30])
    first, later = frames[0].image, frames[30].image
    edges = cv2.Canny(cv2.cvtColor(first, cv2.COLOR_RGB2GRAY), 50, 150)
    assert edges.mean() > 0.05 * 255  # texture for DeepDream to grow on
    assert np.abs(first.astype(int) - later).mean() > 10  # the camera moves
    scene = DemoScene(640, 480, 30)
    start = time.perf_counter()
    for i in range(30):
        scene.frame(i)
    # its cost is printed, not asserted: on a busy machine any bound fails (typically ~1 ms)
    print(f"demo scene: {(time.perf_counter() - start) / 30 * 1000:.1f} ms a frame")


def test_demo_live_is_paced_and_closable(opened) -> None:
    source = opened("demo?width=160&height=120&fps=30&live=1")
    assert source.info.live and source.info.frame_count is None
    start = time.monotonic()
    frames, error = collect(source, limit=10)
    assert error is None and len(frames) == 10
    assert time.monotonic() - start >= 0.25

    slow = opened("demo?width=160&height=120&fps=0.2&live=1")
    threading.Timer(0.3, slow.close).start()
    start = time.monotonic()
    frames, error = collect(slow, deadline=5)
    assert len(frames) == 1 and error is None  # first frame at once, then closed while waiting
    assert time.monotonic() - start < 2


def test_demo_options_are_checked(workers) -> None:
    assert isinstance(open_source(SourceConfig(uri="demo?frames=5"), workers=workers), DemoSource)
    with pytest.raises(SourceError, match=r"demo\?width=: must be int in 16\.\.8192, got 'huge'"):
        open_source(SourceConfig(uri="demo?width=huge"), workers=workers)
    with pytest.raises(SourceError, match=r"unknown option\(s\) colour"):
        open_source(SourceConfig(uri="demo?colour=red"), workers=workers)


def test_image_source(tmp_path: Path, opened) -> None:
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 2] = 255  # blue
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    source = opened(f"image:{path}")
    assert (source.info.width, source.info.height, source.info.frame_count, source.info.kind) == (40, 30, 1, "image")
    frames = list(source.frames())
    assert len(frames) == 1 and np.array_equal(frames[0].image, rgb)
    with pytest.raises(SourceError, match=r"image file not found: .*gone\.png"):
        opened(f"image:{tmp_path / 'gone.png'}")
    (tmp_path / "fake.png").write_text("no pixels here")
    with pytest.raises(SourceError, match=r"cannot read image .*fake\.png: not an image"):
        opened(f"image:{tmp_path / 'fake.png'}")


# --- network ------------------------------------------------------------------------------


def test_http_progressive_file_is_not_live(http_file_server, opened) -> None:
    base_url, directory = http_file_server
    write_clip(directory / "clip.mp4", frames=15, options={"movflags": "faststart"})
    source = opened(f"{base_url}/clip.mp4", read_timeout=5)
    assert source.info.kind == "network" and not source.info.live and source.info.frame_count == 15
    frames, error = collect(source)
    assert error is None and len(frames) == 15  # a normal end, not a lost stream


def test_http_missing_stream_names_the_url(http_file_server, opened) -> None:
    base_url, _ = http_file_server
    with pytest.raises(SourceError, match=r"cannot open http://127\.0\.0\.1:\d+/gone\.m3u8\?token=\*\*\*: FFmpeg says"):
        opened(f"{base_url}/gone.m3u8?token=abc123", read_timeout=5)


# --- RTSP ---------------------------------------------------------------------------------


def test_rtsp_clip_frames(rtsp_server, opened) -> None:
    source = opened(rtsp_server.clip_url, read_timeout=5)
    info = source.info
    assert info.live and info.kind == "network" and (info.width, info.height) == (320, 240)
    frames, error = collect(source, limit=20)
    source.close()
    assert error is None and len(frames) == 20
    assert {shape for _, _, shape in frames} == {(240, 320, 3)}
    assert frames[0][1] == 0.0
    pts = [p for _, p, _ in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))


def test_rtsp_server_lost_then_reconnect(rtsp_server, opened) -> None:
    source = opened(rtsp_server.live_url, read_timeout=3)
    killed_at: list[float] = []

    def kill_after_five(frame) -> None:
        if frame.index == 5:
            rtsp_server.stop()
            killed_at.append(time.monotonic())

    frames, error = collect(source, on_frame=kill_after_five, deadline=15)
    assert isinstance(error, SourceLostError), error
    assert time.monotonic() - killed_at[0] < 3 + 1
    assert len(frames) > 5

    rtsp_server.start()  # same port: what a reconnecting pipeline meets
    source.open()
    frames, error = collect(source, limit=3)
    source.close()
    assert error is None and len(frames) == 3


def test_rtsp_stall_hits_read_timeout_and_close_interrupts(rtsp_server, opened) -> None:
    stalled = opened(rtsp_server.live_url, read_timeout=1)
    pause_at: list[float] = []

    def pause_after_three(frame) -> None:
        if frame.index == 3:
            rtsp_server.pause()
            pause_at.append(time.monotonic())

    frames, error = collect(stalled, on_frame=pause_after_three, deadline=10)
    assert isinstance(error, SourceLostError) and "no data for 1 s" in str(error)
    assert time.monotonic() - pause_at[0] < 1 + 2
    rtsp_server.resume()

    blocked = opened(rtsp_server.live_url, read_timeout=20)
    closed_at: list[float] = []

    def close_later(frame) -> None:
        if frame.index == 3:
            rtsp_server.pause()  # the reader now blocks inside FFmpeg for up to 20 s
            closed_at.append(time.monotonic())
            threading.Timer(0.3, blocked.close).start()

    frames, error = collect(blocked, on_frame=close_later, deadline=10)
    assert error is None  # closing is not an error
    assert time.monotonic() - closed_at[0] < 2
    rtsp_server.resume()  # the closed reader, still inside FFmpeg's read, gets data and ends: the test's owner joins it


def test_rtsp_password_never_shown(caplog, opened) -> None:
    url = f"rtsp://user:secret@127.0.0.1:{free_port()}/x"  # nothing listens there
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SourceError) as caught:
            opened(url, open_timeout=3, read_timeout=3)
    assert "secret" not in str(caught.value) and "user:***@127.0.0.1" in str(caught.value)
    assert not any("secret" in r.getMessage() for r in caplog.records)


# A process that reads frames on one thread and starts a program from another (Ray starts its
# nodes with subprocess and a preexec_fn) must not hang in the child, whatever PyAV keeps per thread.
_FORK_BESIDE_READERS = """
import subprocess, sys, threading
from streamdream.cluster.plan import scan_input
from streamdream.config import SourceConfig
from streamdream.media import read_frames
from streamdream.runtime.workers import Workers
from streamdream.sources import open_source

clip = sys.argv[1]
source = open_source(SourceConfig(uri=clip), Workers(name="reader"))
source.open()
frames = source.frames()
next(frames)  # the source's decode thread converted frames and is still alive
read, hold = threading.Event(), threading.Event()

def reader():
    list(read_frames(clip)), scan_input(clip)
    read.set()
    hold.wait()  # alive, as a daemon's reader is

threading.Thread(target=reader, daemon=True).start()
read.wait()
subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: None, check=True)
print("started a program beside the readers")
"""


def test_a_program_started_beside_frame_reading_threads_does_not_hang(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", width=1280, height=720, frames=10)
    child = subprocess.Popen([sys.executable, "-c", _FORK_BESIDE_READERS, str(clip)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        printed, _ = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the hung fork too
        child.communicate()
        pytest.fail("a program started beside threads that had read frames hung before it ran (swscale threads in the fork)")
    assert child.returncode == 0, printed
    assert "started a program beside the readers" in printed
