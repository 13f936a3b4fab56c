"""SIGINT and SIGTERM -> the one stop event, acknowledged at once, the process ended within seconds.

* The first signal is acknowledged on standard error at once, whatever the main thread is
  doing. Python runs signal handlers on the main thread between two lines of Python, which a C
  call (an FFmpeg open, TensorFlow importing or optimizing a graph) can hold off for seconds,
  and other threads wait as long for the interpreter. So the signal is heard outside it:
  Python's C-level handler writes its number to the ``signal.set_wakeup_fd`` pipe, and a small
  watcher process started with the command (``watcher=True``; without, a thread) reads it,
  writes the acknowledgement to the real standard error (the TensorFlow import parks file
  descriptor 2 in a file) and keeps the deadline.
* The main thread sets the stop event. One that watches the stop event itself (inside
  ``stop_watched()``: the pipeline's wait, the daemon's loop) winds down and finalizes its
  outputs; anywhere else (start-up: the model loading, the source opening) it gets a
  ``KeyboardInterrupt`` at its next Python line, as Python would do without us.
* Whatever happens, the process ends ``GRACE`` seconds after the first signal (a dream step
  in flight can take longer): a file not finalized by then stays under its temporary
  ``NAME.partial-PID.EXT`` name. A second signal ends it at once. Both exit with 130; if a C
  call holds the interpreter even past that, the watcher kills the process ``BACKSTOP``
  seconds later. (No deadline for a Ray cluster, whose workers are cancelled and shut down:
  there the second signal is the way to end at once.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType

from .workers import JOIN_TIMEOUT, POLL, StopToken, Workers

GRACE = 3.0  # seconds from the first signal to the process's end, at the latest
BACKSTOP = 1.0  # then the watcher kills (SIGKILL: exit 137) a process a C call keeps from ending itself
DREAM_STEP_WAIT = GRACE / 2  # a dream step in flight is waited for this long, then its frame is dropped
EXIT_CODE = 130
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_watching = 0  # > 0 while the main thread polls the stop event itself
_signalled = threading.Event()  # a first SIGINT or SIGTERM came: the process is ending


def signalled() -> bool:
    """True once SIGINT or SIGTERM asked the process to end: nobody waits for a dream step then."""
    return _signalled.is_set()


@contextlib.contextmanager
def owned(stop: StopToken) -> Iterator[Workers]:
    """The owner of a command's threads (its token a child of ``stop``), stopped and joined at
    the end: for up to JOIN_TIMEOUT, or one POLL when a signal is ending the process (what is
    still busy then, a dream step in flight, ends with the process: Pipeline.finish's rule)."""
    workers = Workers(stop.child(), name="command")  # not "root": what its pipeline left busy was logged there
    try:
        yield workers
    finally:
        workers.close(POLL if signalled() else JOIN_TIMEOUT)


@contextlib.contextmanager
def stop_watched() -> Iterator[None]:
    """Mark the main thread as watching the stop event: a signal then only sets it.

    (Another thread's watching does not count: signals are handled on the main thread.)"""
    global _watching
    on_main = threading.current_thread() is threading.main_thread()
    _watching += on_main
    try:
        yield
    finally:
        _watching -= on_main


# The watcher: its standard input is the read end of the wakeup pipe (EOF: the command ended).
# It starts with SIGINT and SIGTERM ignored (a terminal's Ctrl-C reaches the whole group):
# counting them is the command's own business.
_WATCHER = """
import os, signal, sys, threading, time
parent, deadline, ack, again, killed = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
names = {int(signal.SIGINT): "SIGINT", int(signal.SIGTERM): "SIGTERM"}
def kill(after, text):
    time.sleep(after)
    if text:
        os.write(2, (text + "\\n").encode())
    os.kill(parent, signal.SIGKILL)
count = 0
while True:
    data = os.read(0, 64)
    if not data:
        break
    for number in data:
        if number in names:
            count += 1
            os.write(2, ((ack if count == 1 else again).format(names[number]) + "\\n").encode())
            if deadline >= 0 or count > 1:
                later = max(deadline, 0.0) if count == 1 else 1.0
                threading.Thread(target=kill, args=(later, killed if count == 1 else ""), daemon=True).start()
"""


class Interrupts:
    """Installed for the length of a ``with`` block on the main thread (see the module docstring)."""

    def __init__(self, stop: StopToken, *, grace: float | None = GRACE, watcher: bool = False) -> None:
        """``grace=None``: no deadline (a Ray cluster's workers are cancelled and shut down, which
        takes longer). ``watcher``: hear signals in a process of its own (the real command; a
        test calling ``main()`` keeps a thread)."""
        self.stop = stop
        self.grace = grace
        self.watcher = watcher
        self._child: subprocess.Popen | None = None
        self.fired = threading.Event()  # a first signal was received
        self._lock = threading.Lock()
        self._count = 0
        self._raised = False
        self._stderr = os.dup(2)  # the process's standard error, whatever sys.stderr is now
        self._previous: list[tuple[int, object]] = []
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._previous_wakeup = -1
        self._deadline: threading.Timer | None = None
        self._pipe = -1

    def __enter__(self) -> Interrupts:
        if self.watcher:
            self._start_watcher()
        for signum in _STOP_SIGNALS:
            self._previous.append((signum, signal.signal(signum, self._on_signal)))
        if self._child is not None:
            return self
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        try:
            self._previous_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main thread after all: the Python handler does it all
            reader.close()
            writer.close()
            return self
        self._wakeup = (reader, writer)
        threading.Thread(target=self._listen, args=(reader,), name="signals", daemon=True).start()
        return self

    def _start_watcher(self) -> None:
        reader, writer = os.pipe()
        os.set_blocking(writer, False)
        kill_after = -1.0 if self.grace is None else self.grace + BACKSTOP
        ignored = [(signum, signal.signal(signum, signal.SIG_IGN)) for signum in _STOP_SIGNALS]  # inherited
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-I", "-c", _WATCHER, str(os.getpid()), str(kill_after),
                 _acknowledgement("{}"), "{} received, a second stop signal: quitting at once",
                 f"still running {kill_after:g} s after the stop signal (a C call holds it): killed"],
                stdin=reader, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError:  # no watcher: the thread below does its work
            os.close(writer)
            return
        finally:
            os.close(reader)
            for signum, handler in ignored:
                signal.signal(signum, handler)
        self._previous_wakeup = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
        self._pipe = writer

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._raised:
            self.fired.wait(1.0)  # the listening thread's acknowledgement, before the process ends
        if self._deadline is not None:
            self._deadline.cancel()  # done in time: the caller ends the process
        for signum, handler in self._previous:
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if self._child is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            os.close(self._pipe)  # the watcher reads the end of it, and ends
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(1.0)
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            reader, writer = self._wakeup
            with contextlib.suppress(OSError):
                writer.send(b"\0")  # ends the listening thread, which closes both ends
        os.close(self._stderr)

    def say(self, text: str) -> None:
        """One line on the real standard error, at once."""
        with contextlib.suppress(OSError):
            os.write(self._stderr, (text + "\n").encode())

    # --- the two ways a signal arrives --------------------------------------------------------

    def _listen(self, reader: socket.socket) -> None:
        assert self._wakeup is not None
        try:
            while True:
                data = reader.recv(64)
                if not data or 0 in data:
                    return
                signums = [signum for signum in data if signum in _STOP_SIGNALS]
                if len(signums) > 1 and self._count == 0:  # two at once: the first is not waited on
                    self.say(_acknowledgement(signums[0]))
                    self._quit(signums[1])
                for signum in signums:
                    self._received(signum)
        finally:
            for end in self._wakeup:
                end.close()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._wakeup is None:  # no listening thread: the watcher (or nobody) acknowledged it
            self._received(signum, quietly=self._child is not None)
        self.stop.set()  # already set by the listening thread, unless this runs first
        if not _watching and not self._raised:
            self._raised = True
            self.fired.wait(1.0)  # the listening thread's acknowledgement comes first
            raise KeyboardInterrupt  # start-up: nothing to finalize, nothing polls the stop event

    def _received(self, signum: int, quietly: bool = False) -> None:
        with self._lock:
            self._count += 1
            first = self._count == 1
        if not first:
            self._quit(signum, quietly)
        if not quietly:
            self.say(_acknowledgement(signum))
        self.stop.set()
        self.fired.set()
        _signalled.set()
        if self.grace is not None:
            self._deadline = threading.Timer(self.grace, self._give_up)
            self._deadline.daemon = True
            self._deadline.start()

    def _quit(self, signum: int, quietly: bool = False) -> None:
        if not quietly:
            self.say(f"{signal.Signals(signum).name} received, a second stop signal: quitting at once")
        os._exit(EXIT_CODE)

    def _give_up(self) -> None:
        self.say(
            f"still stopping after {self.grace:g} s: quitting now "
            "(a file not finalized yet stays under its NAME.partial-PID name)"
        )
        os._exit(EXIT_CODE)


def _acknowledgement(signum: int | str) -> str:
    name = signum if isinstance(signum, str) else signal.Signals(signum).name
    return f"{name} received: stopping, finalizing outputs (Ctrl-C again to quit at once)"


__all__ = ["DREAM_STEP_WAIT", "EXIT_CODE", "GRACE", "Interrupts", "owned", "signalled", "stop_watched"]
