"""Appending one message to an mbox file, locked and all-or-nothing.

What it does
    :func:`append` opens (creating when missing, mode 0600) the mailbox
    without following a symbolic link, refuses anything but a regular file
    with one link, takes the locks named by ``mailbox_delivery_lock``
    (``fcntl``, ``flock``, ``dotlock``: ``FILE.lock`` created exclusively and
    removed as stale after ``stale_lock_time``), tried
    ``deliver_lock_attempts`` times ``deliver_lock_delay`` apart, writes the
    pieces at the end (O_APPEND), fsyncs, and unlocks. On any error after the
    first byte, the file is truncated back to its size before the append,
    so a failed delivery never leaves half a message (Postfix's mbox
    delivery does the same).

    ``size_limit`` is ``mailbox_size_limit``: a mailbox that would grow past
    it fails with EFBIG (Postfix sets the file size resource limit; the
    result is the same ``File too large`` error, DSN 5.2.2).

    The caller supplies the ``From `` line, the prepended headers and the
    ``>From``-quoted content (:mod:`mailhorn.delivery.headers`).

Parameters read
    None: the caller passes :class:`LockSettings` (``mailbox_delivery_lock``
    or ``virtual_mailbox_lock``, ``deliver_lock_attempts``,
    ``deliver_lock_delay``, ``stale_lock_time``) and the size limit.

Errors
    :class:`MboxLockError` (temporary: DSN 4.2.0), :class:`MboxFileError`
    (not a regular file, wrong owner: DSN 5.2.0 or 4.2.0), ``OSError``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass

from mailhorn.mailstore.errors import LockTimeout
from mailhorn.mailstore.lock import DotLock


class MboxLockError(Exception):
    """The mailbox could not be locked in time (a temporary failure)."""


class MboxFileError(Exception):
    """The destination is not a file local delivery may append to."""

    def __init__(self, message: str, dsn: str) -> None:
        super().__init__(message)
        self.dsn = dsn


@dataclass(frozen=True)
class LockSettings:
    """How an mbox file is locked."""

    kinds: tuple[str, ...] = ("fcntl", "dotlock")
    attempts: int = 20
    delay: float = 1.0
    stale_time: float = 500.0


def _fcntl_lock(fd: int, settings: LockSettings, use_flock: bool) -> None:
    for attempt in range(max(settings.attempts, 1)):
        try:
            if use_flock:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if attempt + 1 < settings.attempts:
            time.sleep(settings.delay)
    raise MboxLockError("unable to lock for exclusive access: Resource temporarily unavailable")


def append(path: str, pieces: Iterable[bytes], *, size_limit: int = 0,
           locks: LockSettings = LockSettings(), owner: tuple[int, int] | None = None,
           require_owner: int | None = None) -> int:
    """Append ``pieces`` to the mbox at ``path``; return the bytes written.

    ``owner`` (uid, gid) is given to a file this call creates (spool mailboxes
    created by root for the user); ``require_owner`` refuses a file owned by
    another uid (``strict_mailbox_ownership``).
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise MboxFileError(f"destination {path} is not a regular file", "5.2.0") from exc
        raise
    dotlock: DotLock | None = None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MboxFileError(f"destination {path} is not a regular file", "5.2.0")
        if st.st_nlink != 1:
            raise MboxFileError(f"destination {path} has {st.st_nlink} hard links", "5.2.0")
        if owner is not None and st.st_size == 0 and st.st_uid != owner[0]:
            os.fchown(fd, owner[0], owner[1])
            st = os.fstat(fd)
        if require_owner is not None and st.st_uid != require_owner:
            raise MboxFileError(f"destination {path} is not owned by recipient", "4.2.0")
        if "dotlock" in locks.kinds:
            dotlock = DotLock(path, stale_timeout=locks.stale_time,
                              timeout=max(locks.attempts, 1) * locks.delay)
            try:
                dotlock.acquire()
            except LockTimeout as exc:
                dotlock = None
                raise MboxLockError("unable to create lock file " + path + ".lock: "
                                    "Resource temporarily unavailable") from exc
        if "fcntl" in locks.kinds:
            _fcntl_lock(fd, locks, use_flock=False)
        if "flock" in locks.kinds:
            _fcntl_lock(fd, locks, use_flock=True)
        start = os.fstat(fd).st_size
        written = 0
        try:
            for piece in pieces:
                if not piece:
                    continue
                if size_limit > 0 and start + written + len(piece) > size_limit:
                    raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
                view = memoryview(piece)
                while view:
                    count = os.write(fd, view)
                    written += count
                    view = view[count:]
            os.fsync(fd)
        except BaseException:
            # All or nothing: cut the file back to where this message began.
            try:
                os.ftruncate(fd, start)
                os.fsync(fd)
            except OSError:
                pass
            raise
        return written
    finally:
        if dotlock is not None:
            dotlock.release()
        os.close(fd)  # also releases the fcntl and flock locks
