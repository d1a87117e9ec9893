"""Reading the queue for listings: what ``mailq``, ``postqueue -j`` and ``qshape`` show.

:func:`scan` walks the message queues in Postfix's showq order (incoming,
active, deferred, hold, maildrop) and yields one :class:`QueueEntry` per
readable queue file: queue, ID, arrival time, message size, sender, forced
expiry and the recipients still to deliver, each with the reason of its last
deferral from the ``defer/`` log (:mod:`mailhorn.queue.defer_log`).

Recipients are listed as Postfix's showq lists them: first the recipients of
the defer log, in log order, with their reasons; then the other pending
recipients in queue-file order, without a reason; each address once. Only
recipients still pending in the queue file are shown, so a stale log entry
for a recipient delivered since never appears.

Administrative marks live in the queue file's permission bits, so that they
follow the file through atomic renames and need no rewrite of it:

* forced expiry (``postsuper -e``/``-f``): the group-execute bit, Postfix's
  ``MAIL_QUEUE_STAT_EXPIRE``; the queue manager returns such a message to
  its sender at its next attempt ("message is administratively expired");
* requeue (``postsuper -r``): the others-execute bit; the queue manager
  rewrites and resolves such a message's addresses again as if it had just
  arrived (mailhorn's equivalent of Postfix's trip through maildrop and
  cleanup), then clears the bit.

A file that vanishes during the scan (delivered, deleted) is skipped; a file
that fails validation is skipped and reported through ``on_error``.

Parameters read: none (the :class:`~mailhorn.queue.store.QueueStore` carries
the queue layout).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from mailhorn.queue.defer_log import defer_reasons
from mailhorn.queue.queuefile import CorruptQueueFile, read_queue_file
from mailhorn.queue.store import QueueStore

__all__ = [
    "EXPIRE_BIT",
    "REQUEUE_BIT",
    "SHOWQ_QUEUES",
    "ListedRecipient",
    "QueueEntry",
    "clear_mark",
    "has_mark",
    "read_entry",
    "scan",
    "set_mark",
]

#: Queues listed by ``postqueue -p``, in Postfix's showq order.
SHOWQ_QUEUES: Final = ("incoming", "active", "deferred", "hold", "maildrop")

#: Forced expiry mark: group execute, as Postfix's MAIL_QUEUE_STAT_EXPIRE.
EXPIRE_BIT: Final = stat.S_IXGRP
#: Requeue mark: others execute (see the module docstring).
REQUEUE_BIT: Final = stat.S_IXOTH


@dataclass(frozen=True, slots=True)
class ListedRecipient:
    """A pending recipient and the reason of its last deferral, if logged."""

    address: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One queued message as the listing tools see it."""

    queue_name: str
    queue_id: str
    arrival_time: int
    message_size: int
    sender: str
    recipients: tuple[ListedRecipient, ...]
    forced_expire: bool = False

    @property
    def status_marks(self) -> str:
        """``*`` active, ``!`` on hold, then ``#`` when forced to expire (postqueue(1))."""
        marks = {"active": "*", "hold": "!"}.get(self.queue_name, "")
        return marks + ("#" if self.forced_expire else "")


def has_mark(mode: int, bit: int) -> bool:
    """Whether a queue file's mode carries an administrative mark."""
    return bool(mode & bit)


def set_mark(path: str, bit: int) -> bool:
    """Add a mark to a queue file; False when it was there already."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & bit:
        return False
    os.chmod(path, mode | bit)
    return True


def clear_mark(path: str, bit: int) -> None:
    """Remove a mark from a queue file."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & bit:
        os.chmod(path, mode & ~bit)


def read_entry(store: QueueStore, queue: str, queue_id: str) -> QueueEntry | None:
    """One message's listing entry; None when the file is gone.

    Raises :class:`CorruptQueueFile` when the file does not validate.
    """
    path = store.path(queue, queue_id)
    try:
        with open(path, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            qf = read_queue_file(stream, verify_content=False)
    except FileNotFoundError:
        return None
    pending = [r.address for r in qf.recipients if not r.done]
    pending_set = set(pending)
    listed: list[ListedRecipient] = []
    seen: set[str] = set()
    for address, rec in defer_reasons(store, queue_id).items():
        if address in pending_set and address not in seen:
            seen.add(address)
            listed.append(ListedRecipient(address, rec.reason))
    for address in pending:
        if address not in seen:
            seen.add(address)
            listed.append(ListedRecipient(address, None))
    return QueueEntry(
        queue_name=queue,
        queue_id=queue_id,
        arrival_time=qf.arrival_time[0],
        message_size=qf.content_size,
        sender=qf.sender,
        recipients=tuple(listed),
        forced_expire=has_mark(mode, EXPIRE_BIT),
    )


def scan(store: QueueStore, queues: Iterable[str] = SHOWQ_QUEUES,
         on_error: Callable[[str, str, CorruptQueueFile], None] | None = None) -> Iterator[QueueEntry]:
    """Every readable message in ``queues``, queue by queue, IDs in name order."""
    for queue in queues:
        for queue_id in sorted(store.scan(queue)):
            try:
                entry = read_entry(store, queue, queue_id)
            except CorruptQueueFile as exc:
                if on_error is not None:
                    on_error(queue, queue_id, exc)
                continue
            except OSError:
                continue
            if entry is not None:
                yield entry
