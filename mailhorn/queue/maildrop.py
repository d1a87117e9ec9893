"""The maildrop queue: local submissions waiting for pickup (Postfix's postdrop).

``sendmail`` writes each submission as one file in ``$queue_directory/
maildrop`` without needing a running server; the pickup service
(:mod:`mailhorn.queue.pickup`) later feeds it through cleanup into the real
queue. A maildrop file uses the queue file record format
(``docs/queue-format.md``): envelope (arrival time, sender, full name,
recipients, the attributes ``submit_uid`` and ``extract_recipients``), the
message content as submitted (lines ending in LF), an empty extracted
segment, and the end record.

Durability is postdrop's: the file is written as ``maildrop/tmp.*``,
fsynced, renamed to its queue-ID name and the directory fsynced, so pickup
never sees a partial submission; on any error the temporary file is removed.
After writing, :func:`wake_pickup` sends one datagram to the pickup
service's socket ``$queue_directory/public/pickup`` (Postfix's
``public/pickup`` trigger); without a running server that fails quietly and
the mail waits.

Parameters read: ``queue_directory``, ``enable_long_queue_ids``.

Errors: :class:`~mailhorn.queue.store.QueueWriteError` (disk full or write
error).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterable
from typing import Final

from mailhorn.durable import fsync_directory, write_all
from mailhorn.queue.queuefile import DsnNotify, DsnRet
from mailhorn.queue.queuefile_writer import QueueFileWriter
from mailhorn.queue.store import QueueWriteError, make_queue_id

#: The pickup service's wakeup socket, relative to the queue directory.
PICKUP_SOCKET: Final = os.path.join("public", "pickup")
#: Attribute names a maildrop file carries for pickup.
ATTR_UID: Final = "submit_uid"
ATTR_EXTRACT: Final = "extract_recipients"
_DISK_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


class MaildropWriter:
    """One submission being written into ``maildrop/``."""

    def __init__(self, queue_directory: str, *, long_ids: bool = False) -> None:
        self.directory = os.path.join(queue_directory, "maildrop")
        now = time.time_ns()
        self._arrival = (now // 1_000_000_000, (now // 1000) % 1_000_000)
        self.arrival_time = now / 1e9
        """When the submission began (seconds since the epoch)."""
        self._fd = -1
        self.temp_path = ""
        for attempt in range(100):
            path = os.path.join(self.directory, f"tmp.{os.getpid()}.{now}.{attempt}")
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                raise self._error(exc, "create maildrop file") from exc
            self.temp_path = path
            break
        else:
            raise QueueWriteError("cannot create a unique maildrop file", disk_full=False)
        # The name is known from the start (postdrop's mail_queue_enter), so a
        # Received: header written into the file can carry it.
        try:
            inode = os.fstat(self._fd).st_ino
        except OSError as exc:
            self.abort()
            raise self._error(exc, "create maildrop file") from exc
        self.queue_id = make_queue_id(self._arrival[0], self._arrival[1], inode, long=long_ids)
        self._buffer = bytearray()
        self.qf = QueueFileWriter(self._emit, self._arrival)

    @staticmethod
    def _error(exc: OSError, what: str) -> QueueWriteError:
        return QueueWriteError(f"{what}: {os.strerror(exc.errno or 0)}", disk_full=exc.errno in _DISK_FULL)

    def _emit(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= 256 * 1024:
            self._flush()

    def _flush(self) -> None:
        try:
            write_all(self._fd, self._buffer)
        except OSError as exc:
            self.abort()
            raise self._error(exc, "write maildrop file") from exc
        self._buffer.clear()

    def envelope(self, sender: str, recipients: Iterable[str], *, uid: int,
                 fullname: str | None = None, extract: bool = False,
                 notify: DsnNotify | None = None, ret: DsnRet | None = None,
                 envid: str | None = None) -> None:
        """Everything but the content, in record order."""
        self.qf.attribute(ATTR_UID, str(uid))
        if extract:
            self.qf.attribute(ATTR_EXTRACT, "1")
        self.qf.sender(sender, fullname)
        if ret is not None or envid is not None:
            self.qf.dsn(envid, ret)
        for rcpt in recipients:
            self.qf.recipient(rcpt, dsn_notify=notify)

    def recipient(self, address: str, *, orcpt: str | None = None, notify: DsnNotify | None = None) -> None:
        """One more recipient with its own DSN parameters (after :meth:`envelope`)."""
        self.qf.recipient(address, dsn_orcpt=orcpt, dsn_notify=notify)

    def write(self, data: bytes) -> None:
        """Message content (LF line ends)."""
        self.qf.write_content(data)

    def commit(self) -> str:
        """Make the submission visible to pickup; returns its name (a queue ID)."""
        self.qf.end_content()
        offset, size_record = self.qf.finish()
        self._flush()
        try:
            os.pwrite(self._fd, size_record, offset)
            os.fsync(self._fd)
            name = self.queue_id
            final = os.path.join(self.directory, name)
            os.rename(self.temp_path, final)
            self.temp_path = ""
            fsync_directory(self.directory)
        except OSError as exc:
            self.abort()
            raise self._error(exc, "commit maildrop file") from exc
        os.close(self._fd)
        self._fd = -1
        return name

    def abort(self) -> None:
        """Remove the unfinished file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self.temp_path:
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass
            self.temp_path = ""


def wake_pickup(queue_directory: str) -> bool:
    """Nudge a running pickup service; False when none listens."""
    path = os.path.join(queue_directory, PICKUP_SOCKET)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"W", path)
        return True
    except OSError:
        return False
