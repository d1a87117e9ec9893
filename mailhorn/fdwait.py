"""Waiting for one descriptor to become readable, whatever its number.

``select.select`` refuses descriptors at or above ``FD_SETSIZE`` (1024)
with ``ValueError``, and a worker serving many connections (or holding
spare queue files) has such descriptors; ``poll(2)`` has no such limit.

Parameters read: none. Errors: `OSError` from ``poll`` (not EINTR, which
Python retries).
"""

from __future__ import annotations

import select
from typing import Final

__all__ = ["readable"]

_READABLE: Final = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


def readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` is readable (or at end of file, or failed) within ``timeout`` seconds (None: wait)."""
    poller = select.poll()
    poller.register(fd, _READABLE)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))
