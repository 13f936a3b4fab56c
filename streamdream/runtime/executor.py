"""An ``Executor`` whose threads are ``Worker``s of an owner: what asyncio hands off runs in the tree.

The HTTP servers' event loop passes blocking calls (a JPEG encode, a control verb that takes
a lock) to an executor. asyncio's default one starts threads of its own that no owner lists or
joins; this one starts ``max_workers`` ``Worker``s under the owner given (``Workers``),
each taking calls from one bounded queue, so ``threads()`` lists them and ``join()`` waits for
them like for every other thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from .queues import FrameQueue, QueueClosed, QueuePolicy
from .workers import POLL, Worker, Workers

T = TypeVar("T")
_Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class _CallWorker(Worker):
    """Runs queued calls until the queue closes (drains: a call submitted is a call answered)."""

    drains = True

    def __init__(self, name: str, calls: FrameQueue[_Call]) -> None:
        super().__init__(name)
        self._calls = calls

    def step(self) -> bool:
        try:
            future, fn, args, kwargs = self._calls.get(timeout=POLL)
        except TimeoutError:
            return True
        except QueueClosed:
            return False
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # the caller gets it from the future
                future.set_exception(exc)
        return True


class WorkerExecutor(Executor):
    """``submit(fn, ...)`` runs ``fn`` on one of ``max_workers`` Workers of ``owner``, started at once
    (a steady thread count: a daemon's threads are the same after a thousand requests)."""

    def __init__(self, owner: Workers, name: str, max_workers: int = 4, queue_size: int = 256) -> None:
        self._name = name
        self._calls: FrameQueue[_Call] = FrameQueue(name, queue_size, QueuePolicy.WAIT)
        self._lock = threading.Lock()
        self._workers: list[Worker] = [owner.start(_CallWorker(name, self._calls)) for _ in range(max_workers)]

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._calls.closed:
                raise RuntimeError(f"{self._name}: cannot take calls after shutdown")
        self._calls.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if cancel_futures:
                for future, *_ in self._calls.drain():
                    future.cancel()
            self._calls.close()
            workers = list(self._workers)
        if wait:
            for worker in workers:
                if worker.thread is not None and worker.thread is not threading.current_thread():
                    worker.thread.join()

    @property
    def threads(self) -> int:
        return sum(1 for w in self._workers if w.alive)


__all__ = ["WorkerExecutor"]
