"""Never destroying a user's file: no writing onto the input, no silent overwrite, temp + rename.

Before: `run --input clip.mp4 --output clip.mp4` truncated the input and exited 0, and a
1-frame test run replaced a 6-minute render without a word.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamdream.config import OutputConfig, parse_config
from streamdream.errors import SinkError
from streamdream.frames import Frame, SourceInfo
from streamdream.preflight import check_config
from streamdream.sinks import open_sink
from tests.fixtures.media import write_clip
from tests.helpers import streamdream

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
OUTPUT_EXIT = 5  # errors.EXIT_CODES: output


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.partial-*"))


@pytest.mark.parametrize("spelling", ["same name", "absolute vs relative", "hard link", "symbolic link"])
def test_run_refuses_to_write_onto_its_input_even_with_overwrite(tmp_path, spelling):
    clip = write_clip(tmp_path / "clip.mp4", frames=10, audio=True)
    before = digest(clip)
    output = {"same name": "clip.mp4", "absolute vs relative": "./clip.mp4", "hard link": "link.mp4", "symbolic link": "sym.mp4"}[spelling]
    if spelling == "hard link":
        os.link(clip, tmp_path / "link.mp4")
    elif spelling == "symbolic link":
        (tmp_path / "sym.mp4").symlink_to(clip)
    source = str(clip) if spelling == "absolute vs relative" else "clip.mp4"
    proc = streamdream("run", "--input", source, "--output", output, "-y", "--no-progress", cwd=tmp_path)
    assert proc.returncode == OUTPUT_EXIT, proc.stderr
    assert "is the input" in proc.stderr and "Traceback" not in proc.stderr
    assert digest(clip) == before and frame_count(clip) == 10  # the input is intact
    assert partials(tmp_path) == []


def test_an_existing_output_is_kept_unless_overwrite_is_asked_for(tiny_model_path, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=6)
    render = write_clip(tmp_path / "render.mp4", frames=30, width=176, height=144)  # "a 6-minute render"
    before = digest(render)
    dream = ["--model", tiny_model_path, "--layers", "conv2", "--width", "96", "--octaves", "1", "--steps", "1",
             "--coherence", "independent", "--no-progress"]  # fmt: skip
    proc = streamdream("run", "--input", "clip.mp4", "--output", "render.mp4", *dream, cwd=tmp_path)
    assert proc.returncode == OUTPUT_EXIT
    assert "render.mp4 exists" in proc.stderr and "--overwrite (-y)" in proc.stderr
    assert digest(render) == before

    proc = streamdream("run", "--input", "clip.mp4", "--output", "render.mp4", "--overwrite", *dream, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert frame_count(render) == 6 and partials(tmp_path) == []

    # `overwrite: true` on an output in the config says the same
    allowed = parse_config({"source": str(clip), "outputs": [{"uri": str(render), "overwrite": True}]})
    check_config(allowed)
    with pytest.raises(SinkError, match="exists"):
        check_config(parse_config({"source": str(clip), "outputs": [str(render)]}))


def test_image_refuses_an_existing_output_and_its_own_input(tmp_path):
    picture = tmp_path / "photo.png"
    cv2.imwrite(str(picture), np.full((40, 60, 3), 120, np.uint8))
    kept = tmp_path / "kept.png"
    cv2.imwrite(str(kept), np.full((40, 60, 3), 30, np.uint8))
    before = {p: digest(p) for p in (picture, kept)}
    for output, message in (("kept.png", "kept.png exists"), ("photo.png", "is the input")):
        proc = streamdream("image", "photo.png", "-o", output, cwd=tmp_path)
        assert proc.returncode == OUTPUT_EXIT and message in proc.stderr, proc.stderr
    assert {p: digest(p) for p in (picture, kept)} == before


def test_a_file_sink_writes_under_a_temporary_name_and_renames_when_finished(tmp_path, workers):
    target = tmp_path / "out.mkv"
    target.write_bytes(b"the good old file")
    info = SourceInfo(uri="test", width=64, height=48, fps=Fraction(25), live=False)
    with pytest.raises(SinkError, match="exists"):
        open_sink(OutputConfig(uri=str(target)), workers=workers).open(info)
    sink = open_sink(OutputConfig(uri=str(target), overwrite=True), workers=workers)
    sink.open(info)
    for i in range(5):
        sink.write(Frame(image=np.full((48, 64, 3), i * 40, np.uint8), index=i, pts=i / 25))
        assert target.read_bytes() == b"the good old file"  # untouched while writing
    assert len(partials(tmp_path)) == 1
    sink.close()
    assert frame_count(target) == 5 and partials(tmp_path) == []

    # a run that wrote nothing leaves the old file as it was, and no partial file
    target.write_bytes(b"the good old file")
    sink = open_sink(OutputConfig(uri=str(target), overwrite=True), workers=workers)
    sink.open(info)
    sink.close()
    assert target.read_bytes() == b"the good old file" and partials(tmp_path) == []


KILLED_WRITER = """
import sys
from fractions import Fraction
import numpy as np
from streamdream.config import OutputConfig
from streamdream.frames import Frame, SourceInfo
from streamdream.runtime.workers import Workers
from streamdream.sinks import open_sink
sink = open_sink(OutputConfig(uri=sys.argv[1], overwrite=True), Workers())  # killed mid-write: nothing is joined
sink.open(SourceInfo(uri="test", width=64, height=48, fps=Fraction(25), live=False))
for i in range(100000):
    sink.write(Frame(image=np.full((48, 64, 3), i % 255, np.uint8), index=i, pts=i / 25))
    print(i + 1, flush=True)
"""


def test_a_killed_run_leaves_the_old_file_and_its_partial_output(tmp_path):
    target = write_clip(tmp_path / "recording.mkv", frames=12)
    before = digest(target)
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, env=ENV, cwd=REPO)
    try:
        assert child.stdout is not None
        while int(child.stdout.readline() or 0) < 50:
            assert child.poll() is None, "the writer exited early"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert digest(target) == before  # the good file is as it was
    (partial,) = partials(tmp_path)  # and what the killed run wrote is beside it, playable (Matroska)
    assert partial.name.startswith("recording.partial-") and partial.suffix == ".mkv"
    assert frame_count(partial) > 10


def fill_until_full(sink) -> int:
    """Noisy frames (they do not compress) until the disk is full; returns how many went in."""
    rng = np.random.default_rng(0)
    for i in range(10000):
        try:
            sink.write(Frame(image=rng.integers(0, 255, (48, 64, 3), np.uint8), index=i, pts=i / 25))
        except SinkError:
            return i
    raise AssertionError("the disk never filled")


def test_a_full_disk_keeps_the_previous_file_or_else_what_fitted(small_tmpfs, workers):
    info = SourceInfo(uri="test", width=64, height=48, fps=Fraction(25), live=False)
    # a previous file is there: it stays as it was, what fitted is beside it under its partial name
    previous = small_tmpfs / "previous.mkv"
    previous.write_bytes(b"the good old file")
    sink = open_sink(OutputConfig(uri=str(previous), crf=0, overwrite=True), workers=workers)
    sink.open(info)
    assert fill_until_full(sink) > 0
    sink.close()
    assert previous.read_bytes() == b"the good old file"
    (partial,) = partials(small_tmpfs)
    partial.unlink()
    previous.unlink()

    # nothing was there: what fitted plays under the name asked for
    fresh = small_tmpfs / "fresh.mkv"
    sink = open_sink(OutputConfig(uri=str(fresh), crf=0), workers=workers)
    sink.open(info)
    assert fill_until_full(sink) > 0
    sink.close()
    assert partials(small_tmpfs) == [] and frame_count(fresh) > 0
