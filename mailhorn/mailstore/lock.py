"""Dot-locks compatible with Dovecot's (``dovecot-uidlist.lock``, ``maildirsize.lock``).

What it does
    A lock on ``FILE`` is the file ``FILE.lock`` created with ``O_CREAT|O_EXCL``
    and holding ``<pid>:<hostname>``, the content Dovecot writes and reads to
    tell a lock left by a dead local process. A lock is broken as stale when

    * it names a process on this host that no longer exists, or
    * it has not been modified for ``stale_timeout`` seconds (Dovecot uses two
      minutes for ``dovecot-uidlist.lock``: MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT).

    Waiting gives up after ``timeout`` seconds (Dovecot waits the stale timeout
    plus two seconds) with :class:`~mailhorn.mailstore.errors.LockTimeout`.

Parameters read
    None.

Errors
    ``LockTimeout``; ``OSError`` from the file system (e.g. EACCES).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Final

from mailhorn.mailstore.errors import LockTimeout

#: Dovecot's stale timeout for ``dovecot-uidlist.lock`` (two minutes).
UIDLIST_STALE_TIMEOUT: Final = 120.0


def _hostname() -> str:
    return socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DotLock:
    """An exclusive ``PATH.lock`` dot-lock; use as a context manager."""

    def __init__(self, path: str | os.PathLike[str], *, stale_timeout: float = UIDLIST_STALE_TIMEOUT,
                 timeout: float | None = None) -> None:
        self.path = Path(str(path) + ".lock")
        self.stale_timeout = stale_timeout
        self.timeout = stale_timeout + 2 if timeout is None else timeout
        self._ino: int | None = None

    @property
    def held(self) -> bool:
        return self._ino is not None

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        try:
            os.write(fd, f"{os.getpid()}:{_hostname()}".encode())
            self._ino = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        return True

    def _break_if_stale(self) -> None:
        """Remove the current lock file when its owner is gone or it is too old."""
        try:
            st = os.stat(self.path)
            content = self.path.read_bytes()[:512].decode("utf-8", "replace")
        except FileNotFoundError:
            return
        stale = time.time() - st.st_mtime >= self.stale_timeout
        pid_text, sep, host = content.partition(":")
        if not stale and sep and host.strip() == _hostname() and pid_text.isdigit():
            stale = not _pid_alive(int(pid_text))
        if not stale:
            return
        try:
            again = os.stat(self.path)
        except FileNotFoundError:
            return
        # Only remove the very lock we judged, not one created since.
        if again.st_ino == st.st_ino and again.st_mtime == st.st_mtime:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while not self._try_create():
            self._break_if_stale()
            if self._try_create():
                return
            if time.monotonic() >= deadline:
                raise LockTimeout(f"timeout waiting for lock {self.path}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def release(self) -> None:
        if self._ino is None:
            return
        try:
            if os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._ino = None

    def __enter__(self) -> DotLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
