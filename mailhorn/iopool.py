"""Threads for blocking disk work, with results handed back to the event loop in batches.

What it does
    :class:`IoPool` runs blocking calls (queue-file writes and fsyncs,
    Maildir deliveries, table lookups) in threads of its own so that the
    event loop never waits on the disk (design.md §5 rule 6), and
    :func:`offload` runs one call in the running loop's shared pool. A call
    runs in a copy of the caller's context, as with ``asyncio.to_thread``,
    so log lines written from the thread keep the caller's program name.

Why not ``asyncio.to_thread``
    Each ``to_thread`` call builds a ``concurrent.futures.Future`` (with a
    ``threading.Condition`` of its own), an executor work item and a
    chained asyncio future, and wakes the event loop once per finished
    call. A worker process makes several such calls per message, and under
    load that bookkeeping and the wake-ups were a tenth of its CPU time.
    Here a job is one tuple on a ``queue.SimpleQueue``; a finished job's
    result goes on a deque, and the loop is woken once for every result
    that finished since it last looked.

Threads
    A pool starts threads as jobs wait for them, up to ``max_threads``;
    a thread that has been idle for :data:`IDLE_SECONDS` ends. A pool is
    bound to the event loop of its first call and follows a new loop once
    the old one is closed (tests run many loops in one process). After
    ``fork()`` the child's pools start over with no threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final, ParamSpec, TypeVar

from mypy_extensions import mypyc_attr

__all__ = ["DEFAULT_THREADS", "IDLE_SECONDS", "IoPool", "offload", "set_shared_pool"]

_T = TypeVar("_T")
_P = ParamSpec("_P")

#: Threads of the shared pool of each event loop (asyncio.to_thread's default).
DEFAULT_THREADS: Final = min(32, (os.cpu_count() or 1) + 4)

#: Seconds a thread waits for work before it ends.
IDLE_SECONDS: Final = 30.0

_Job = tuple[contextvars.Context, Callable[..., Any], tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]
_Done = tuple["asyncio.Future[Any]", Any, BaseException | None]


# A Python class, not a compiled one: the registries below hold it weakly.
@mypyc_attr(native_class=False)
class IoPool:
    """Threads running blocking calls for one event loop (see the module docstring)."""

    def __init__(self, max_threads: int = DEFAULT_THREADS, name: str = "io") -> None:
        self.max_threads = max(max_threads, 1)
        self.name = name
        self._reset()
        _POOLS.add(self)

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done: collections.deque[_Done] = collections.deque()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._waiting = 0
        self._drain_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, func: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``func(*args, **kwargs)`` in one of the pool's threads; its result or its exception."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._bind(loop)
        future: asyncio.Future[_T] = loop.create_future()
        self._jobs.put((contextvars.copy_context(), func, args, kwargs, future))
        with self._lock:
            self._waiting += 1
            start = self._waiting > self._idle and self._threads < self.max_threads
            if start:
                self._threads += 1
        if start:
            threading.Thread(target=self._work, name=f"{self.name}-{self._threads}", daemon=True).start()
        return await future

    def close(self) -> None:
        """End the idle threads and, once their calls return, the busy ones (queued calls still run first)."""
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError(f"{self.name} pool is bound to another running event loop")
        self._loop = loop
        self._done.clear()
        self._drain_pending = False

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    retire = not self._waiting
                    if retire:
                        self._threads -= 1
                if retire:
                    return
                continue
            with self._lock:
                self._idle -= 1
                if job is None:
                    self._threads -= 1
                    return
                self._waiting -= 1
            context, func, args, kwargs, future = job
            try:
                result = context.run(func, *args, **kwargs)
            except BaseException as exc:  # handed to the awaiting task, as to_thread does
                self._finish(future, None, exc)
            else:
                self._finish(future, result, None)
                del result
            # An idle thread keeps nothing of its last call alive (its
            # arguments may hold a message's buffers or a whole store).
            del job, context, func, args, kwargs, future

    def _finish(self, future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
        self._done.append((future, result, exc))
        if self._drain_pending:
            return
        self._drain_pending = True
        try:
            future.get_loop().call_soon_threadsafe(self._drain)
        except RuntimeError:
            pass  # the loop is closed; nobody waits for the result any more

    def _drain(self) -> None:
        # Cleared before taking results: a thread that finishes meanwhile
        # schedules another drain instead of leaving its result behind.
        self._drain_pending = False
        done = self._done
        while done:
            future, result, exc = done.popleft()
            if future.cancelled():
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)


_POOLS: Final[weakref.WeakSet[IoPool]] = weakref.WeakSet()
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IoPool] = weakref.WeakKeyDictionary()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool._reset()
    _SHARED.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def set_shared_pool(pool: IoPool) -> None:
    """Make ``pool`` the running event loop's shared pool (as ``loop.set_default_executor``)."""
    _SHARED[asyncio.get_running_loop()] = pool


async def offload(func: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``func(*args, **kwargs)`` in the running event loop's shared pool (``asyncio.to_thread`` without its overhead)."""
    loop = asyncio.get_running_loop()
    pool = _SHARED.get(loop)
    if pool is None:
        pool = _SHARED[loop] = IoPool(DEFAULT_THREADS, "io")
    return await pool.run(func, *args, **kwargs)
