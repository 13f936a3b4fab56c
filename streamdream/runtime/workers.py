"""Every thread streamdream runs: one worker base, one owner, one poll interval.

* ``StopToken``: the one stop event (Ctrl-C, SIGTERM, a window's q) seen through a chain
  of tokens. A group's token (a pipeline that the watchdog rebuilds, an output a reload
  removes) stops that group alone; the stop event stops them all.
* ``Worker``: a thread's loop. ``step()`` does one unit of work and waits at most
  ``POLL`` seconds, so the loop sees its token promptly; ``end()`` runs in ``finally``
  (workers that feed a queue put their end marker there, so no reader hangs); an
  exception is logged with its traceback and kept in ``error``, never swallowed.
* ``Workers``: the owner that starts and joins every thread, under a unique name
  (``output``, ``output-2``, ...). Groups nest: the daemon's owner holds the pipeline's
  group, which holds one group per output, so ``threads()`` lists everything that runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from ..frames import EndOfStream
from .queues import FrameQueue, QueueClosed

log = logging.getLogger(__name__)

POLL = 0.2  # seconds: the longest any wait goes without looking at its stop token
JOIN_TIMEOUT = 30.0  # a dream step in flight is let finish, up to this long

_names: Counter[str] = Counter()
_names_lock = threading.Lock()


def unique_name(base: str) -> str:
    """``base`` the first time, then ``base-2``, ``base-3``...: two threads never share a name."""
    with _names_lock:
        _names[base] += 1
        count = _names[base]
    return base if count == 1 else f"{base}-{count}"


class StopToken:
    """The one stop type: set when this token or one of its parents is set.

    The command line makes the root (``StopToken()``) and a signal sets it; every owner's
    group and every worker watches a child of it, so a group can be stopped alone.
    """

    def __init__(self, parent: StopToken | None = None) -> None:
        self._own = threading.Event()
        self._parent = parent

    def child(self) -> StopToken:
        return StopToken(parent=self)

    def set(self) -> None:
        """Stop this token and its children (not its parents)."""
        self._own.set()

    def is_set(self) -> bool:
        token: StopToken | None = self
        while token is not None:
            if token._own.is_set():
                return True
            token = token._parent
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds (None: until set), cut short when the token is set; True if set."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while not self.is_set():
            remaining = POLL if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._own.wait(min(POLL, remaining))
        return True


class Backoff:
    """Waits before retrying: ``initial``, then doubling, capped at ``maximum``; ``reset()`` after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class Worker:
    """One thread's loop; subclasses implement ``step`` and, if they feed a queue, ``end``.

    ``drains``: the loop runs until ``step`` returns False (at its end marker) even after
    the stop token is set, so a worker that finalizes something (an output) always does.
    """

    drains = False

    def __init__(self, name: str) -> None:
        self.name = name  # the base name; the thread gets a unique one
        self.stop: StopToken = StopToken()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.owner: Workers | None = None  # who started it: its own threads go in a group of this

    def step(self) -> bool:
        """One unit of work, waiting at most POLL; False when the worker is done."""
        raise NotImplementedError

    def end(self) -> None:
        """Runs in ``finally``: put the end marker, close what the worker owns."""

    def failed(self, error: BaseException) -> None:
        """An exception ended the loop (already logged); tell whoever must know."""

    def run(self) -> None:
        try:
            while self.drains or not self.stop.is_set():
                if self.step() is False:
                    break
        except BaseException as exc:  # kept and reported, never swallowed
            self.error = exc
            log.error("%s failed: %r", self.thread.name if self.thread else self.name, exc, exc_info=exc)
            self.failed(exc)
        finally:
            self.end()

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


W = TypeVar("W", bound=Worker)


class Consumer(Worker):
    """A worker that takes items from its ``inbox`` until the end marker (or the queue closes)."""

    inbox: FrameQueue

    def step(self) -> bool:
        try:
            item = self.inbox.get(timeout=POLL)
        except TimeoutError:
            return True
        except QueueClosed:
            return False
        if isinstance(item, EndOfStream):
            return False
        return self.handle(item)

    def handle(self, item: Any) -> bool:
        """One item; False when the worker is done."""
        raise NotImplementedError


class _Call(Worker):
    """A plain function as a worker: a library's own loop (an HTTP server's serve_forever).

    It runs once even if the stop token is already set: the function watches its own stop
    and may own something to close (a decoder's container).
    """

    drains = True

    def __init__(self, name: str, target: Callable[..., Any], args: tuple) -> None:
        super().__init__(name)
        self._target, self._args = target, args

    def step(self) -> bool:
        self._target(*self._args)
        return False


class Workers:
    """Starts and joins threads; ``group()`` makes a nested owner with its own stop token.

    Whatever starts threads takes its owner from the caller (there is no default owner):
    every thread is in the one tree that the command (``run``, ``serve``) stops and joins.
    """

    def __init__(self, stop: StopToken | None = None, name: str = "root") -> None:
        if stop is not None and not isinstance(stop, StopToken):  # one stop type
            raise TypeError(f"Workers: stop must be a StopToken, got {type(stop).__name__}")
        self.stop = stop if stop is not None else StopToken()
        self.name = name
        self.root: Workers = self  # the top of this owner's tree: a group's root is its parent's
        self._lock = threading.Lock()
        self._workers: list[Worker] = []
        self._groups: list[Workers] = []

    def group(self, name: str) -> Workers:
        group = Workers(self.stop.child(), name)
        group.root = self.root
        with self._lock:
            self._groups = [g for g in self._groups if g.threads()] + [group]  # forget finished groups
        return group

    def start(self, worker: W) -> W:
        worker.stop, worker.owner = self.stop, self
        worker.thread = threading.Thread(target=worker.run, name=unique_name(worker.name), daemon=True)
        with self._lock:
            self._workers = [w for w in self._workers if w.alive] + [worker]
        worker.thread.start()
        return worker

    def spawn(self, name: str, target: Callable[..., Any], *args: Any) -> Worker:
        """Run ``target(*args)`` in a thread this owner joins; ``target`` must return once told to stop."""
        return self.start(_Call(name, target, args))

    def threads(self) -> list[str]:
        """Names of the threads of this owner and its groups that are alive now."""
        with self._lock:
            workers, groups = list(self._workers), list(self._groups)
        names = [w.thread.name for w in workers if w.alive and w.thread is not None]
        for group in groups:
            names.extend(group.threads())
        return names

    def join(self, timeout: float = JOIN_TIMEOUT) -> list[str]:
        """Wait for every thread (``timeout`` in all); returns the names still running (logged)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers, groups = list(self._workers), list(self._groups)
        stragglers: list[str] = []
        for group in groups:
            stragglers += group.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            thread = worker.thread
            if thread is None or thread is threading.current_thread():
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                stragglers.append(thread.name)
        if stragglers and self.name == "root":
            log.warning("still running after %.0f s, left to end on their own: %s", timeout, ", ".join(stragglers))
        return stragglers

    def close(self, timeout: float = JOIN_TIMEOUT) -> list[str]:
        """Stop this owner's tree (its own token: a parent's goes on) and join it; the names left running."""
        self.stop.set()
        return self.join(timeout)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoThreads(Workers):
    """The owner given to a source or sink that is only built, to be checked (the preflight, a
    reload's URI check), never opened: building starts no thread, and this owner says so."""

    def __init__(self) -> None:
        super().__init__(name="build-only")

    def start(self, worker: W) -> W:
        raise RuntimeError(f"{worker.name}: a thread started while a source or sink was only being built; open() starts threads")


__all__ = ["Backoff", "Consumer", "JOIN_TIMEOUT", "NoThreads", "POLL", "StopToken", "Worker", "Workers", "unique_name"]
