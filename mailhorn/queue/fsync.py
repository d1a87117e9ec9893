"""Durable-write primitives of the queue: the system-call hooks and group commit.

:class:`FsHooks` names the calls every durable write goes through (write,
pwrite, fsync, directory fsync, and named crash points), so tests can inject
faults and kills at exact steps; :class:`DirSyncGroup` shares one directory
fsync among the commits that wait for it (design.md §8 group commit);
:func:`fault_injection_hooks` builds failing hooks for the test-only
``MAILHORN_FAULT_INJECT`` switch that :func:`environment_hooks` reads.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mypy_extensions import mypyc_attr

__all__ = ["FAULT_INJECT_ENV", "DirSyncGroup", "FsHooks", "environment_hooks", "fault_injection_hooks"]



def _no_crash(point: str) -> None:
    """Default crash-point hook: nothing happens."""


@dataclass
class FsHooks:
    """The system calls durable writes go through; tests inject faults here.

    ``crash_point(name)`` is called at each named step of a commit
    (``content``, ``before-fsync``, ``after-fsync``, ``after-link``,
    ``before-dir-fsync``, ``after-dir-fsync``) so a test can kill the process
    exactly there, and where recovery has looked at a temporary file and not
    yet decided on it (``recovery-examined``), so a test can change the
    file under it as a live writer would.
    """

    write: Callable[[int, bytes], int] = os.write
    pwrite: Callable[[int, bytes, int], int] = os.pwrite
    fsync: Callable[[int], None] = os.fsync
    dir_fsync: Callable[[int], None] = os.fsync
    crash_point: Callable[[str], None] = _no_crash


# A Python class, not a compiled one: a finalizer needs a weak reference to it.
@mypyc_attr(native_class=False)
class DirSyncGroup:
    """Group commit of one directory's fsync.

    A caller needs an fsync that *starts* after its own rename. If none runs,
    it runs one itself; if one runs, it waits for that and then for the next,
    which a single waiter starts for everyone queued meanwhile. N concurrent
    commits thus cost about two fsyncs, not N.
    """

    def __init__(self, path: str, hooks: FsHooks) -> None:
        self.path = path
        self._hooks = hooks
        #: The directory's descriptor, opened at the first fsync and kept
        #: (a list, so that the finalizer can close it without the group).
        self._fd = [-1]
        weakref.finalize(self, _close, self._fd)
        self._cond = threading.Condition()
        self._started = 0
        self._completed = 0
        self._running = False
        self._failed: OSError | None = None
        self.waiting = 0

    def sync(self) -> None:
        """Return once an fsync of the directory begun after this call has succeeded."""
        with self._cond:
            ticket = self._started + 1
            self.waiting += 1
            try:
                while self._completed < ticket:
                    if self._running:
                        self._cond.wait()
                        continue
                    self._running = True
                    self._started += 1
                    generation = self._started
                    self._cond.release()
                    failure: OSError | None = None
                    try:
                        self._fsync()
                    except OSError as exc:
                        failure = exc
                    finally:
                        self._cond.acquire()
                    self._running = False
                    self._completed = generation
                    self._failed = failure
                    self._cond.notify_all()
                if self._failed is not None:
                    raise self._failed
            finally:
                self.waiting -= 1

    def _fsync(self) -> None:
        # Only the one thread running the group's fsync gets here at a time.
        if self._fd[0] < 0:
            self._fd[0] = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._hooks.dir_fsync(self._fd[0])


def _close(fd: list[int]) -> None:
    if fd[0] >= 0:
        os.close(fd[0])
        fd[0] = -1


#: Environment variable of the fault injection switch (tests only).
FAULT_INJECT_ENV: Final = "MAILHORN_FAULT_INJECT"


def fault_injection_hooks(spec: str) -> FsHooks:
    """Fault injection for tests: hooks whose calls fail with EIO.

    ``spec`` is a comma-separated list of ``CALL:PROBABILITY``, CALL one of
    ``write``, ``pwrite``, ``fsync``, ``dir_fsync``: ``fsync:1.0`` fails
    every file fsync, ``write:0.5`` half of the writes. ``dir_fsync`` also
    fails the directory fsyncs of queue set-up at start. ValueError on a
    malformed ``spec``.
    """
    chances: dict[str, float] = {}
    for item in spec.replace(" ", "").split(","):
        call, sep, chance = item.partition(":")
        if call not in ("write", "pwrite", "fsync", "dir_fsync") or not sep:
            raise ValueError(f"{FAULT_INJECT_ENV}: bad item {item!r}")
        chances[call] = float(chance)

    def failing(call: str) -> None:
        if random.random() < chances.get(call, 0.0):
            raise OSError(errno.EIO, f"{os.strerror(errno.EIO)} (fault injection: {call})")

    def write(fd: int, data: bytes) -> int:
        failing("write")
        return os.write(fd, data)

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        failing("pwrite")
        return os.pwrite(fd, data, offset)

    def fsync(fd: int) -> None:
        failing("fsync")
        os.fsync(fd)

    def dir_fsync(fd: int) -> None:
        failing("dir_fsync")
        os.fsync(fd)

    return FsHooks(write=write, pwrite=pwrite, fsync=fsync, dir_fsync=dir_fsync)


def environment_hooks() -> FsHooks:
    """The hooks of :data:`FAULT_INJECT_ENV` when it is set, else the real calls."""
    spec = os.environ.get(FAULT_INJECT_ENV, "")
    return fault_injection_hooks(spec) if spec else FsHooks()
