"""Writing a file in full, and making a directory entry durable.

:func:`write_all` writes a buffer to a descriptor however many calls it
takes.

A rename, link or unlink reaches the disk with its directory; after one
that a promise depends on (a queue file's name, a delivered Maildir file),
the directory is fsynced (design.md §5 rule 6). Every such fsync in the
queue, the mail store and the queue tools goes through
:func:`fsync_directory`.

Errors: ``OSError`` from write, open or fsync.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["fsync_directory", "write_all"]


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than it is given)."""
    view = memoryview(data)
    while view:
        # The count is taken before slicing: the compiled module
        # (scripts/build_native.py) evaluates the bounds of a slice of a
        # memoryview twice, which would repeat the write.
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(path: str | os.PathLike[str], fsync: Callable[[int], None] = os.fsync) -> None:
    """fsync the directory ``path`` (``fsync``: the call to use, for fault injection)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)
