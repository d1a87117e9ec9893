"""Making a directory entry durable: fsync of the directory itself.

A rename, link or unlink reaches the disk with its directory; after one that
a promise depends on (a queue file's name, a delivered Maildir file), the
directory is fsynced (design.md §5 rule 6). Every such fsync in the queue,
the mail store and the queue tools goes through :func:`fsync_directory`.

Errors: ``OSError`` from open or fsync.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["fsync_directory"]


def fsync_directory(path: str | os.PathLike[str], fsync: Callable[[int], None] = os.fsync) -> None:
    """fsync the directory ``path`` (``fsync``: the call to use, for fault injection)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)
