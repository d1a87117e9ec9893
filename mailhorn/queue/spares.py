"""Anonymous queue files made ahead of need, so a new message starts without a thread hop.

What it does
    Creating a queue file is blocking disk work, so an SMTP session that
    opened one per message on the event loop's behalf paid a trip to a
    worker thread (and the wake-ups that go with it) before its first
    ``RCPT`` could be answered. :class:`SpareFiles` instead keeps a few
    files opened in advance with ``O_TMPFILE``: an inode in ``incoming``
    with no name at all, so nothing is visible in the queue until the
    commit links it under its queue ID, and nothing is left behind when the
    process dies (the kernel frees an unlinked inode). Files are made in
    batches of :data:`BATCH` in one thread call once fewer than
    :data:`LOW_WATER` are left.

    A file is linked with ``linkat(2)`` through ``/proc/self/fd/N``
    (``AT_SYMLINK_FOLLOW``), the documented way to give an ``O_TMPFILE``
    inode a name. Where that cannot work (a file system without
    ``O_TMPFILE``, no ``/proc``), the first batch finds out by linking and
    removing a probe file, and the pool stays empty: writers then create
    named temporary files as before (``QueueStore.writer``).

Fork
    A child process must not write into its parent's spare files (both
    would fill the same inode), so after ``fork()`` the child closes the
    descriptors it inherited and starts with an empty pool.

Parameters read: none. Errors: none escape; a batch that fails (disk full,
out of descriptors) leaves the pool as it is, and writers fall back to
named temporary files, whose errors reach the client as before.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import weakref
from typing import Final

from mypy_extensions import mypyc_attr

from mailhorn.iopool import offload

__all__ = ["BATCH", "LOW_WATER", "SpareFiles"]

#: Files made by one thread call.
BATCH: Final = 16
#: A new batch is started when fewer spare files than this are left.
LOW_WATER: Final = 8

_FLAGS: Final = os.O_WRONLY | os.O_CLOEXEC | getattr(os, "O_TMPFILE", 0)
#: Errors that say nothing about O_TMPFILE support, only about this moment.
_PASSING: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC, errno.EDQUOT, errno.EINTR})


# A Python class, not a compiled one: a finalizer needs a weak reference to it.
@mypyc_attr(native_class=False)
class SpareFiles:
    """Unnamed, writable files in one directory, ready for new queue files."""

    def __init__(self, directory: str, mode: int, probe_prefix: str) -> None:
        self.directory = directory
        self.mode = mode
        #: The probe file's name starts so, followed by the process ID: should
        #: the process die between linking and removing it, recovery knows it
        #: for a temporary file whose writer is gone.
        self.probe_prefix = probe_prefix
        self._files: collections.deque[tuple[int, int]] = collections.deque()
        #: Whether O_TMPFILE files can be linked here: None until the first batch tells.
        self.usable: bool | None = None if _FLAGS & getattr(os, "O_TMPFILE", 0) else False
        #: The directory's descriptor once opened (a list, so the finalizer can see it).
        self._dir = [-1]
        self._filling: asyncio.Task[None] | None = None
        # A pool that is dropped (a QueueStore gone, as in tests) closes its files.
        self.close = weakref.finalize(self, _close_all, self._files, self._dir)
        _ALL.add(self)

    def take(self) -> tuple[int, int] | None:
        """A spare file as (descriptor, inode), or None; starts a new batch when few are left.

        Called from the event loop.
        """
        try:
            spare = self._files.popleft()
        except IndexError:
            spare = None
        if len(self._files) < LOW_WATER and self.usable is not False and self._filling is None:
            self._filling = asyncio.get_running_loop().create_task(self._refill())
        return spare

    def link(self, fd: int, path: str) -> None:
        """Give spare file ``fd`` the name ``path`` (``linkat`` with ``AT_SYMLINK_FOLLOW``)."""
        # os.link calls plain link(2), which does not follow the /proc
        # symbolic link, unless a directory descriptor is given: then it
        # calls linkat(2) with AT_SYMLINK_FOLLOW.
        os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=self._dir[0], follow_symlinks=True)

    def __len__(self) -> int:
        return len(self._files)

    async def _refill(self) -> None:
        try:
            await offload(self._fill)
        finally:
            self._filling = None

    def _fill(self) -> None:
        """Make a batch (in a thread); the files join the pool even if nobody awaits this any more."""
        try:
            if self._dir[0] < 0:
                self._dir[0] = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if self.usable is None:
                self.usable = self._probe()
                if not self.usable:
                    return  # False for good, or None: ask again with the next batch
            for _ in range(BATCH - len(self._files)):
                fd = os.open(self.directory, _FLAGS, self.mode)
                try:
                    os.fchmod(fd, self.mode)  # whatever the umask: other mode bits are marks
                    inode = os.fstat(fd).st_ino
                except OSError:
                    os.close(fd)
                    raise
                self._files.append((fd, inode))
        except OSError:
            return  # writers create named temporary files meanwhile

    def _probe(self) -> bool | None:
        """Whether an O_TMPFILE file can be made and linked here; None when a
        passing shortage (descriptors, memory, disk space) hid the answer."""
        try:
            fd = os.open(self.directory, _FLAGS, self.mode)
        except OSError as exc:
            return None if exc.errno in _PASSING else False
        probe = os.path.join(self.directory, f"{self.probe_prefix}{os.getpid()}.spare-probe")
        try:
            self.link(fd, probe)
        except OSError as exc:
            return None if exc.errno in _PASSING else False
        finally:
            os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            return False
        return True

    def _forget(self) -> None:
        """In a forked child: the parent's files are not ours to write."""
        for fd, _inode in self._files:
            try:
                os.close(fd)
            except OSError:
                pass
        self._files.clear()
        self._filling = None


def _close_all(files: collections.deque[tuple[int, int]], directory: list[int]) -> None:
    """Close every spare file (they vanish with their descriptors) and the directory."""
    while files:
        try:
            os.close(files.popleft()[0])
        except OSError:
            pass
    if directory[0] >= 0:
        os.close(directory[0])
        directory[0] = -1


_ALL: Final[weakref.WeakSet[SpareFiles]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for spares in list(_ALL):
        spares._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
