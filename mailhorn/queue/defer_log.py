"""Per-message delivery status logs: ``defer/ID``, ``bounce/ID``, ``trace/ID``.

Postfix keeps, beside each queue file, logs of what happened to its
recipients: ``defer/ID`` holds the reason each recipient was last deferred
(shown by ``mailq`` and used for delay warnings), ``bounce/ID`` the
recipients that failed for good and still await their non-delivery notice,
``trace/ID`` the results wanted for success notices (``NOTIFY=SUCCESS``,
``sendmail -bv``). The queue manager writes these logs; the queue tools read
them (``postqueue -p`` shows the reasons) and remove or rename them with
their message (``postsuper -d``, ``-r``, ``-s``).

The format is mailhorn's own text format, described in
``docs/queue-format.md`` ("Delivery status logs"): a file is a sequence of
records, each a block of ``name=value`` lines ended by an empty line::

    recipient=bob@example.com
    offset=243
    orig_rcpt=bob@example.com
    status=4.4.1
    action=delayed
    reason=connect to mx.example.com[192.0.2.1]:25: Connection refused
    time=1795272548

A record is appended with one ``write(2)`` on a file opened ``O_APPEND``, so
concurrent writers never interleave; a record cut short by a crash (no
closing empty line) is ignored by the reader. Values are UTF-8 with CR, LF
and NUL replaced by spaces (reasons come from remote servers).

API for the queue manager (each call has an ``a``-prefixed asyncio variant
that runs in a worker thread):

* :func:`record_defer` / :func:`record_bounce` / :func:`record_trace`
  append one recipient's status;
* :func:`read_log` returns the records of one log, :func:`defer_reasons`
  the last reason per recipient;
* :func:`remove_logs` deletes a message's logs (Postfix's qmgr removes the
  defer log at the start of each delivery attempt, so ``mailq`` shows the
  reasons of the last attempt only; the message's logs go when it does);
* :func:`rename_logs` follows a queue file that gets a new name.

Durability: bounce and trace records are fsynced (file, and the directory
when the file is new) before the call returns, because the queue manager
marks the recipient done next and the record is then the only trace of the
pending notice. Defer records are advisory (a lost reason shows as none) and
are not fsynced unless asked.

Parameters read: none directly; the directories and their hashing come from
the :class:`~mailhorn.queue.store.QueueStore` (``hash_queue_names``,
``hash_queue_depth``).

Errors: ``OSError`` from the file system; ``ValueError`` for a bad queue ID
or log name.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from mailhorn.durable import fsync_directory
from mailhorn.iopool import offload
from mailhorn.queue.store import QueueStore

__all__ = [
    "LOG_QUEUES",
    "LogRecord",
    "arecord_bounce",
    "arecord_defer",
    "arecord_trace",
    "aremove_logs",
    "defer_reasons",
    "log_path",
    "read_log",
    "record",
    "record_bounce",
    "record_defer",
    "record_trace",
    "remove_logs",
    "rename_logs",
]

#: The per-message log directories, in the order Postfix removes them.
LOG_QUEUES: Final = ("bounce", "defer", "trace")

#: Largest log file the reader takes in (a log has one record per recipient).
MAX_LOG_SIZE: Final = 64 * 1024 * 1024
#: Longest value kept in a record (a reason text from a remote server).
MAX_VALUE: Final = 4096

_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One recipient's status as logged.

    ``action`` is the RFC 3464 §2.3.3 action: ``delayed`` (defer log),
    ``failed`` (bounce log), ``delivered``/``relayed``/``expanded`` (trace).
    ``offset`` is the recipient's done-mark offset in the queue file, so a
    notice can be matched to the exact envelope recipient.
    """

    recipient: str
    status: str
    action: str
    reason: str
    offset: int | None = None
    orig_rcpt: str | None = None
    time: int | None = None


def _clean(value: str) -> str:
    """A value fit for one line: CR, LF and NUL become spaces; length bounded."""
    text = value.replace("\r", " ").replace("\n", " ").replace("\0", " ")
    return text[:MAX_VALUE]


def log_path(store: QueueStore, log: str, queue_id: str) -> str:
    """The path of one message's log (hashed as ``hash_queue_names`` says)."""
    if log not in LOG_QUEUES:
        raise ValueError(f"not a delivery status log: {log!r}")
    return store.path(log, queue_id)


def _encode(rec: LogRecord) -> bytes:
    lines = [f"recipient={_clean(rec.recipient)}"]
    if rec.offset is not None:
        lines.append(f"offset={rec.offset}")
    if rec.orig_rcpt is not None:
        lines.append(f"orig_rcpt={_clean(rec.orig_rcpt)}")
    lines.append(f"status={_clean(rec.status)}")
    lines.append(f"action={_clean(rec.action)}")
    lines.append(f"reason={_clean(rec.reason)}")
    if rec.time is not None:
        lines.append(f"time={rec.time}")
    return ("\n".join(lines) + "\n\n").encode("utf-8", "surrogateescape")


def _make_dirs(path: str) -> None:
    """Create hashed subdirectories on demand, fsyncing each new entry's parent."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    _make_dirs(parent)
    try:
        os.mkdir(path, _DIR_MODE)
    except FileExistsError:
        return
    fsync_directory(parent)


def record(store: QueueStore, log: str, queue_id: str, rec: LogRecord, *, sync: bool) -> None:
    """Append one record to a message's log; with ``sync`` it is durable on return."""
    path = log_path(store, log, queue_id)
    directory = os.path.dirname(path)
    _make_dirs(directory)
    data = _encode(rec)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    created = not os.path.exists(path)
    fd = os.open(path, flags, _FILE_MODE)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path}")
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if sync and created:
        fsync_directory(directory)


def record_defer(store: QueueStore, queue_id: str, recipient: str, dsn_status: str, reason: str,
                 *, offset: int | None = None, orig_rcpt: str | None = None,
                 when: int | None = None, sync: bool = False) -> None:
    """Log that ``recipient`` was deferred with ``dsn_status`` (4.X.X) and ``reason``."""
    record(store, "defer", queue_id,
           LogRecord(recipient, dsn_status, "delayed", reason, offset, orig_rcpt,
                     int(time.time()) if when is None else when), sync=sync)


def record_bounce(store: QueueStore, queue_id: str, recipient: str, dsn_status: str, reason: str,
                  *, offset: int | None = None, orig_rcpt: str | None = None,
                  when: int | None = None) -> None:
    """Log a permanent failure (5.X.X) awaiting its non-delivery notice; durable."""
    record(store, "bounce", queue_id,
           LogRecord(recipient, dsn_status, "failed", reason, offset, orig_rcpt,
                     int(time.time()) if when is None else when), sync=True)


def record_trace(store: QueueStore, queue_id: str, recipient: str, dsn_status: str, reason: str,
                 *, action: str = "delivered", offset: int | None = None,
                 orig_rcpt: str | None = None, when: int | None = None) -> None:
    """Log a result wanted for a success notice (RFC 3461 NOTIFY=SUCCESS); durable."""
    record(store, "trace", queue_id,
           LogRecord(recipient, dsn_status, action, reason, offset, orig_rcpt,
                     int(time.time()) if when is None else when), sync=True)


def _parse_block(block: list[str]) -> LogRecord | None:
    fields: dict[str, str] = {}
    for line in block:
        name, eq, value = line.partition("=")
        if eq:
            fields[name] = value
    recipient = fields.get("recipient")
    if recipient is None:
        return None

    def number(name: str) -> int | None:
        text = fields.get(name, "")
        return int(text) if text.isdigit() and len(text) <= 19 else None

    return LogRecord(
        recipient=recipient,
        status=fields.get("status", ""),
        action=fields.get("action", ""),
        reason=fields.get("reason", ""),
        offset=number("offset"),
        orig_rcpt=fields.get("orig_rcpt"),
        time=number("time"),
    )


def read_log(store: QueueStore, log: str, queue_id: str) -> list[LogRecord]:
    """The complete records of one log, in the order they were written.

    A missing log is an empty list. Unknown fields are ignored, so newer
    writers can add some; a last record without its closing empty line (a
    writer cut off) is dropped.
    """
    path = log_path(store, log, queue_id)
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_LOG_SIZE)
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", "surrogateescape")
    records: list[LogRecord] = []
    block: list[str] = []
    for line in text.split("\n")[:-1]:
        if line:
            block.append(line)
            continue
        if block:
            parsed = _parse_block(block)
            if parsed is not None:
                records.append(parsed)
        block = []
    return records


def defer_reasons(store: QueueStore, queue_id: str) -> dict[str, LogRecord]:
    """The last defer record of each recipient, in order of first appearance."""
    result: dict[str, LogRecord] = {}
    for rec in read_log(store, "defer", queue_id):
        result[rec.recipient] = rec
    return result


def remove_logs(store: QueueStore, queue_id: str, logs: Iterable[str] = LOG_QUEUES) -> list[str]:
    """Delete a message's logs; returns the paths (relative to the queue) removed."""
    removed: list[str] = []
    for log in logs:
        path = log_path(store, log, queue_id)
        # Most messages have no logs: a failed access() raises nothing, where
        # each failed unlink() would raise and drop a FileNotFoundError (this
        # runs for every message delivered).
        if not os.access(path, os.F_OK, follow_symlinks=False):
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(os.path.relpath(path, store.root))
    return removed


def rename_logs(store: QueueStore, old_id: str, new_id: str) -> None:
    """Give a message's logs its new queue ID (after ``postsuper -s`` renames it)."""
    for log in LOG_QUEUES:
        old = log_path(store, log, old_id)
        new = log_path(store, log, new_id)
        if not os.path.exists(old):
            continue
        _make_dirs(os.path.dirname(new))
        os.rename(old, new)


async def arecord_defer(store: QueueStore, queue_id: str, recipient: str, dsn_status: str,
                        reason: str, *, offset: int | None = None, orig_rcpt: str | None = None,
                        when: int | None = None, sync: bool = False) -> None:
    await offload(record_defer, store, queue_id, recipient, dsn_status, reason,
                            offset=offset, orig_rcpt=orig_rcpt, when=when, sync=sync)


async def arecord_bounce(store: QueueStore, queue_id: str, recipient: str, dsn_status: str,
                         reason: str, *, offset: int | None = None, orig_rcpt: str | None = None,
                         when: int | None = None) -> None:
    await offload(record_bounce, store, queue_id, recipient, dsn_status, reason,
                            offset=offset, orig_rcpt=orig_rcpt, when=when)


async def arecord_trace(store: QueueStore, queue_id: str, recipient: str, dsn_status: str,
                        reason: str, *, action: str = "delivered", offset: int | None = None,
                        orig_rcpt: str | None = None, when: int | None = None) -> None:
    await offload(record_trace, store, queue_id, recipient, dsn_status, reason,
                            action=action, offset=offset, orig_rcpt=orig_rcpt, when=when)


async def aremove_logs(store: QueueStore, queue_id: str,
                       logs: Iterable[str] = LOG_QUEUES) -> list[str]:
    return await offload(remove_logs, store, queue_id, tuple(logs))
