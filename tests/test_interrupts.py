"""Ctrl-C and SIGTERM at any moment: acknowledged at once, ended within seconds, no file destroyed.

Before: Ctrl-C on `run -y` replaced a complete 90-frame dream.mp4 with a 1-frame file, and
Ctrl-C during start-up was silent and took 60-76 s (the outputs' first-open wait ran out).
Each test starts the real CLI, signals it after a chosen line on standard error, and checks
what a user sees: the acknowledgement, the exit code, the time it took, the files left.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from streamdream.safe_write import TempTarget
from tests.fixtures.media import write_clip

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
STOPPED = 130  # errors.EXIT_CODES
ENDED_WITHIN = 15.0  # seconds from the signal (the promise is 5 s; generous for a loaded machine)
ACK = re.compile(r"^SIG(INT|TERM) received: stopping, finalizing outputs \(Ctrl-C again to quit at once\)$", re.M)
TINY_DREAM = ["--layers", "conv2", "--width", "96", "--octaves", "1", "--steps", "30", "--coherence", "independent"]


class Stopped:
    """What a signalled run left: its standard error, exit code, seconds from the signal to its end."""

    def __init__(self, stderr: str, code: int, seconds: float) -> None:
        self.stderr, self.code, self.seconds = stderr, code, seconds


def signal_after(args: list, cwd: Path, line: str | None, *, delay: float = 0.0, signals: tuple = (signal.SIGINT,)) -> Stopped:
    """Start `streamdream ARGS`, wait for ``line`` on standard error (or ``delay`` seconds), send ``signals``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdream.cli", *map(str, args)], stderr=subprocess.PIPE, text=True, cwd=cwd, env=ENV
    )
    seen: list[str] = []
    try:
        if line is not None:
            for text in proc.stderr:  # type: ignore[union-attr]
                seen.append(text)
                if re.search(line, text):
                    break
            else:
                pytest.fail(f"the run ended before {line!r} appeared:\n{''.join(seen)}")
        time.sleep(delay)
        sent = time.monotonic()
        for number in signals:
            proc.send_signal(number)
            time.sleep(0.2)
        try:
            rest = proc.communicate(timeout=120)[1]
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 120 s after {signals}:\n{''.join(seen)}")
        return Stopped("".join(seen) + rest, proc.returncode, time.monotonic() - sent)
    finally:
        proc.kill()
        proc.wait()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def assert_acknowledged(stopped: Stopped) -> None:
    assert len(ACK.findall(stopped.stderr)) == 1, stopped.stderr
    assert "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.code == STOPPED, stopped.stderr
    assert stopped.seconds < ENDED_WITHIN, (stopped.seconds, stopped.stderr)


def test_ctrl_c_on_run_keeps_the_previous_file_and_finalizes_the_partial_one_beside_it(tmp_path, tiny_model_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=300)
    previous = write_clip(tmp_path / "dream.mp4", frames=90)  # a complete dream from an earlier run
    before = digest(previous)

    stopped = signal_after(
        ["run", "--input", clip, "--output", "dream.mp4", "-y", "--model", tiny_model_path, *TINY_DREAM],
        tmp_path, r"dreaming:.*\b([3-9]|\d\d+)/300",  # the progress bar: a few frames made
    )

    assert_acknowledged(stopped)
    assert digest(previous) == before  # the 90-frame dream is untouched
    partial = tmp_path / "dream.partial.mp4"
    made = re.search(r"stopped before the end: dream.mp4 was left as it was; the (\d+) frame\(s\) made are in (\S+)", stopped.stderr)
    assert made is not None and Path(made[2]).name == partial.name, stopped.stderr
    assert 3 <= frame_count(partial) == int(made[1]) < 300  # finalized: it plays, with the frames made
    assert f"-> {partial.name}" in stopped.stderr  # the summary names it too
    assert sorted(p.name for p in tmp_path.glob("dream*")) == ["dream.mp4", "dream.partial.mp4"]  # no temporary left


def test_ctrl_c_while_the_model_loads_ends_at_once_and_leaves_nothing(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    # the input opens before the model loads: right after, TensorFlow is importing (the default model: 20-60 s)
    stopped = signal_after(["run", "--input", clip, "--output", "out.mp4", "--no-progress"], tmp_path, r"opened .*clip.mp4", delay=0.5)

    assert_acknowledged(stopped)
    assert "no output was written" in stopped.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung camera or server)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    closing.set()
    server.close()
    for connection in held:
        connection.close()


def test_sigterm_while_the_first_source_open_waits_ends_at_once(tmp_path, silent_server):
    config = tmp_path / "hung.yaml"
    config.write_text(f"source:\n  uri: http://127.0.0.1:{silent_server}/cam.mp4\n  open_timeout: 120\noutputs:\n  - uri: out.mkv\n")
    stopped = signal_after(["run", "--config", config, "--no-progress"], tmp_path, None, delay=3.0, signals=(signal.SIGTERM,))

    assert_acknowledged(stopped)
    assert not list(tmp_path.glob("out*"))


def test_a_second_signal_quits_at_once(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    # both signals arrive together (the process is paused meanwhile: two SIGINTs would merge into one)
    stopped = signal_after(
        ["run", "--input", clip, "--output", "out.mp4", "--no-progress"], tmp_path, r"opened .*clip.mp4",
        signals=(signal.SIGSTOP, signal.SIGINT, signal.SIGTERM, signal.SIGCONT),
    )

    assert stopped.code == STOPPED and stopped.seconds < ENDED_WITHIN, stopped.stderr
    assert len(ACK.findall(stopped.stderr)) == 1, stopped.stderr
    assert re.search(r"^SIG(INT|TERM) received, a second stop signal: quitting at once$", stopped.stderr, re.M), stopped.stderr


def test_a_stopped_file_goes_beside_an_older_partial_file_without_replacing_it(tmp_path):
    target = tmp_path / "dream.mp4"
    older = tmp_path / "dream.partial.mp4"
    older.write_bytes(b"an earlier stopped run")

    kept = TempTarget(target, overwrite=False)
    kept.path.write_bytes(b"frames")
    assert kept.set_aside() == kept.path  # no overwrite: the older file stays, this one keeps its temporary name
    assert older.read_bytes() == b"an earlier stopped run" and kept.path.read_bytes() == b"frames"

    replaced = TempTarget(target, overwrite=True)
    replaced.path.write_bytes(b"newer frames")
    assert replaced.set_aside() == older and older.read_bytes() == b"newer frames"
    assert not target.exists()


def test_a_stopped_file_never_replaces_the_input(tmp_path):
    source = tmp_path / "dream.partial.mp4"  # a user dreaming an earlier partial file again
    source.write_bytes(b"the input")
    target = TempTarget(tmp_path / "dream.mp4", overwrite=True)
    target.path.write_bytes(b"frames")
    assert target.set_aside(inputs=(str(source),)) == target.path
    assert source.read_bytes() == b"the input"


def test_ctrl_c_on_batch_leaves_no_unfinished_file_to_be_taken_for_done(tmp_path, tiny_model_path):
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    target.mkdir()
    write_clip(source / "a.mp4", frames=300)
    stopped = signal_after(
        ["batch", source, target, "--model", tiny_model_path, *TINY_DREAM], tmp_path, r"dreaming:.*\b([3-9]|\d\d+)/300"
    )

    assert_acknowledged(stopped)
    assert list(target.iterdir()) == []  # a.mp4 is dreamed again next time, from the start
