"""The on-disk mail queue: directories, queue IDs, durable writes, moves, recovery.

Every write that must survive a crash goes through this module (design.md §5
rule 6). A new message is written by a :class:`QueueWriter` to a temporary
file ``incoming/tmp.*``; :meth:`QueueWriter.commit` writes the end marker,
fsyncs the file, links it under its queue ID, fsyncs the directory, and only
then returns the queue ID: that is the moment smtpd may answer
``250 2.0.0 Ok: queued as ID``. A process killed at any point leaves either
no file under a queue-ID name or a complete, fsynced one; a temporary file
left behind is removed by :meth:`QueueStore.recover`.

Concurrent commits share directory fsyncs (group commit, design.md §8): a
commit that finds a directory fsync already running waits for the next one,
which then covers every rename made before it started.

Queue IDs are Postfix's (mail_queue_enter): with ``enable_long_queue_ids =
no`` five upper-case hex digits of the microseconds followed by the inode
number in hex; with ``yes`` the seconds (base 52, at least six digits), the
microseconds (base 52, four digits), ``z`` and the inode number (base 51),
in the alphabet of digits and consonants. The inode of the file being
written is part of the ID, so two live messages never share one, however
many arrive in the same microsecond.

Parameters read: ``queue_directory``, ``hash_queue_names``,
``hash_queue_depth``, ``enable_long_queue_ids``, ``queue_minfree``.

Environment (tests only): ``MAILHORN_FAULT_INJECT``, read by
:meth:`QueueStore.from_config`, makes chosen system calls of durable writes
fail with EIO, so that a test can show a running server answering
``451 4.3.0`` and never ``250`` when the disk fails (see
:func:`fault_injection_hooks`). Unset, nothing changes.

Errors: :class:`QueueWriteError` (carries the SMTP reply: ``452 4.3.1`` when
the disk is full, ``451 4.3.0`` otherwise); :class:`QueueError` for an unsafe
or unusable queue directory; ``CorruptQueueFile`` from the reader.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, TYPE_CHECKING

from mailhorn.filechunks import FileChunks
from mailhorn.iopool import offload
from mailhorn.queue.spares import SpareFiles
from mailhorn.queue.fsync import (
    FAULT_INJECT_ENV,
    DirSyncGroup,
    FsHooks,
    environment_hooks,
    fault_injection_hooks,
)
from mailhorn.queue.queuefile import (
    CorruptQueueFile,
    DsnNotify,
    DsnRet,
    QueueFile,
    RecordType,
    done_mark_ok,
    iter_content,
    read_queue_file,
    warn_record,
)
from mailhorn.queue.queuefile_writer import QueueFileWriter
from mailhorn.queue.tempfiles import writer_alive
from mailhorn.smtp.reply import Reply

if TYPE_CHECKING:
    from mailhorn.config.load import Config

__all__ = [
    "DISK_FULL",
    "QUEUE_NAMES",
    "WRITE_ERROR",
    "DirSyncGroup",
    "FAULT_INJECT_ENV",
    "FsHooks",
    "QueueError",
    "QueueStore",
    "QueueWriteError",
    "QueueWriter",
    "Recovery",
    "fault_injection_hooks",
]

#: Postfix's queue directories (mail_queue.h plus the postsuper ones).
QUEUE_NAMES: Final = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt",
               "bounce", "defer", "trace", "flush", "saved")
#: Queues that hold queue files (the others hold per-message logs).
MESSAGE_QUEUES: Final = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt", "saved")

#: Replies for a failed queue write (Postfix's cleanup_strerror texts).
DISK_FULL: Final = Reply.of(452, "4.3.1", "Insufficient system storage")
WRITE_ERROR: Final = Reply.of(451, "4.3.0", "Error: queue file write error")

TEMP_PREFIX: Final = "tmp."
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
#: A corrupt file is made read-only, as Postfix's MAIL_QUEUE_STAT_CORRUPT.
_CORRUPT_MODE: Final = 0o400
_FLUSH_AT: Final = 256 * 1024
#: Seconds an answer of statvfs() stands for queue_minfree checks.
FREE_SPACE_TTL: Final = 1.0
_DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})

#: The "safe" alphabet of long queue IDs: digits and consonants (no vowels).
SAFE_ALPHABET: Final = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
_SAFE_INDEX: Final = {c: i for i, c in enumerate(SAFE_ALPHABET)}
#: A queue ID: short (upper-case hex, at least six digits) or long (at least
#: ten characters of the safe alphabet, ``z``, then the inode number in the
#: safe alphabet without ``z``; the last ``z`` is the separator).
_QUEUE_ID: Final = re.compile(f"[0-9A-F]{{6,}}|[{SAFE_ALPHABET}]{{10,}}z[{SAFE_ALPHABET.replace('z', '')}]+")


class QueueError(Exception):
    """The queue directory is unusable or unsafe."""


class QueueWriteError(Exception):
    """A queue file could not be made durable; nothing was acknowledged."""

    def __init__(self, message: str, *, disk_full: bool) -> None:
        super().__init__(message)
        self.disk_full = disk_full

    @property
    def reply(self) -> Reply:
        """What smtpd answers: 452 4.3.1 on a full disk, else 451 4.3.0."""
        return DISK_FULL if self.disk_full else WRITE_ERROR


def _write_error(exc: OSError, what: str) -> QueueWriteError:
    full = exc.errno in _DISK_FULL_ERRNOS
    return QueueWriteError(f"{what}: {os.strerror(exc.errno or 0)}", disk_full=full)


# ---------------------------------------------------------------- queue IDs


def _safe_encode(value: int, base: int, pad: int) -> str:
    digits = []
    while value:
        value, rest = divmod(value, base)
        digits.append(SAFE_ALPHABET[rest])
    text = "".join(reversed(digits))
    return text.rjust(pad, "0")


def make_queue_id(seconds: int, usec: int, inode: int, *, long: bool) -> str:
    """A Postfix queue ID from a time and an inode number (mail_queue_enter)."""
    if long:
        return (_safe_encode(seconds, 52, 6) + _safe_encode(usec, 52, 4) + "z"
                + _safe_encode(inode, 51, 0 if inode else 1))
    return "%05X%X" % (usec, inode)


def is_queue_id(name: str) -> bool:
    """Whether ``name`` is a well-formed short or long queue ID."""
    return len(name) <= 64 and _QUEUE_ID.fullmatch(name) is not None


def hash_key(queue_id: str) -> str:
    """The characters a queue ID is hashed on: the hex microseconds.

    Long IDs are hashed on their microseconds converted to hex, so a queue
    keeps the same sixteen subdirectories whichever ID form is in use.
    """
    at = queue_id.rfind("z")
    if at >= 10:
        usec = 0
        for c in queue_id[at - 4:at]:
            usec = usec * 52 + _SAFE_INDEX[c]
        return "%05X" % usec
    return queue_id


# ---------------------------------------------------------------- the store


@dataclass(frozen=True)
class Recovery:
    """What :meth:`QueueStore.recover` did."""

    requeued: tuple[str, ...] = ()
    removed_temp: tuple[str, ...] = ()
    corrupt: tuple[tuple[str, str], ...] = ()
    unknown: tuple[str, ...] = ()


@dataclass
class QueueStore:
    """The queue under ``root``; one instance is shared by every service."""

    root: str
    hash_names: frozenset[str] = frozenset({"deferred", "defer"})
    hash_depth: int = 1
    long_ids: bool = False
    minfree: int = 0
    hooks: FsHooks = field(default_factory=FsHooks)
    _groups: dict[str, DirSyncGroup] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Unnamed files in ``incoming`` made ahead for :meth:`awriter`.
    spares: SpareFiles = field(init=False, repr=False)
    #: When free space was last asked (time.monotonic()) and the answer in bytes.
    _free_space: tuple[float, int] = field(default=(-FREE_SPACE_TTL, 0), repr=False)

    def __post_init__(self) -> None:
        self.spares = SpareFiles(os.path.join(self.root, "incoming"), _FILE_MODE, TEMP_PREFIX)
        #: Each queue's top directory, joined once: paths are made for every
        #: message several times over.
        self._tops = {name: os.path.join(self.root, name) for name in QUEUE_NAMES}

    @classmethod
    def from_config(cls, config: Config, hooks: FsHooks | None = None) -> QueueStore:
        """A store configured as postconf(5) says (queue_directory, hash_queue_*)."""
        depth = config.int("hash_queue_depth")
        if not 1 <= depth <= 16:
            raise QueueError(f"hash_queue_depth = {depth}: must be between 1 and 16")
        return cls(
            root=config.get("queue_directory"),
            hash_names=frozenset(config.list("hash_queue_names")),
            hash_depth=depth,
            long_ids=config.bool("enable_long_queue_ids"),
            minfree=config.int("queue_minfree"),
            hooks=hooks or environment_hooks(),
        )

    # -- layout ----------------------------------------------------------
    def setup(self) -> None:
        """Create the queue directories (mode 0700) and refuse an unsafe queue.

        A world-writable queue directory would let any local user plant or
        replace queue files, so it is an error, as Postfix's postfix-script
        check reports it.
        """
        os.makedirs(self.root, mode=_DIR_MODE, exist_ok=True)
        self._check_safe(self.root)
        for name in QUEUE_NAMES:
            path = os.path.join(self.root, name)
            try:
                os.mkdir(path, _DIR_MODE)
            except FileExistsError:
                pass
            self._check_safe(path)
        self._dir_fsync(self.root)

    @staticmethod
    def _check_safe(path: str) -> None:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise QueueError(f"{path}: not a directory")
        if st.st_mode & stat.S_IWOTH:
            raise QueueError(f"{path}: queue directory is world-writable")

    def queue_dir(self, queue: str, queue_id: str) -> str:
        """The directory of a queue file, hashed as hash_queue_names says."""
        path = self._tops.get(queue)
        if path is None:
            raise ValueError(f"unknown queue {queue!r}")
        if queue in self.hash_names:
            key = hash_key(queue_id)
            for level in range(self.hash_depth):
                path = f"{path}/{key[level]}"
        return path

    def path(self, queue: str, queue_id: str) -> str:
        """The full path of a queue file."""
        if not is_queue_id(queue_id):
            raise ValueError(f"bad queue ID {queue_id!r}")
        # A queue ID has no "/": appending it is what os.path.join would do.
        return f"{self.queue_dir(queue, queue_id)}/{queue_id}"

    def _make_dirs(self, path: str) -> None:
        """Create hashed subdirectories on demand, fsyncing each parent."""
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        self._make_dirs(parent)
        try:
            os.mkdir(path, _DIR_MODE)
        except FileExistsError:
            return
        self._dir_fsync(parent)

    def _group(self, path: str) -> DirSyncGroup:
        with self._lock:
            group = self._groups.get(path)
            if group is None:
                group = self._groups[path] = DirSyncGroup(path, self.hooks)
            return group

    def _dir_fsync(self, path: str) -> None:
        self._group(path).sync()

    def find(self, queue_id: str, queues: tuple[str, ...] = MESSAGE_QUEUES) -> tuple[str, str] | None:
        """(queue, path) of a queue ID, searching ``queues`` in order."""
        if not is_queue_id(queue_id):
            return None
        for queue in queues:
            path = self.path(queue, queue_id)
            if os.path.exists(path):
                return queue, path
        return None

    def scan(self, queue: str) -> Iterator[str]:
        """The queue IDs in a queue (temporary and foreign names skipped)."""
        for _path, name in self._walk(queue):
            if is_queue_id(name):
                yield name

    def _walk(self, queue: str) -> Iterator[tuple[str, str]]:
        top = os.path.join(self.root, queue)
        stack = [top]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    yield entry.path, entry.name

    # -- writing ---------------------------------------------------------
    def has_space(self, message_size: int = 0) -> bool:
        """Whether free space allows a message (postconf(5) queue_minfree).

        Like Postfix's smtpd, a message needs 1.5 times its announced size
        beyond ``queue_minfree``. The free space is asked of the file system
        at most every :data:`FREE_SPACE_TTL` seconds: ``statvfs`` waits on
        the file system while it commits, and this runs for every MAIL. (A
        disk that fills up meanwhile still fails the queue file's writes,
        which refuses the message with ``452 4.3.1``.)
        """
        now = time.monotonic()
        checked, free = self._free_space
        if now - checked >= FREE_SPACE_TTL:
            vfs = os.statvfs(self.root)
            free = vfs.f_bavail * vfs.f_frsize
            self._free_space = (now, free)
        return free >= self.minfree + message_size + message_size // 2

    def writer(self, arrival: float | None = None) -> QueueWriter:
        """Start a new queue file in ``incoming``; its queue ID is known at once."""
        return QueueWriter(self, arrival)

    # -- reading ---------------------------------------------------------
    def read(self, queue: str, queue_id: str, *, verify_content: bool = True) -> QueueFile:
        """Read and validate a queue file; raises CorruptQueueFile or OSError."""
        with open(self.path(queue, queue_id), "rb") as stream:
            return read_queue_file(stream, verify_content=verify_content)

    def content(self, queue: str, queue_id: str, qf: QueueFile) -> Iterator[bytes]:
        """The message content of a queue file, streamed in bounded chunks (the file closes when they end or are dropped)."""
        stream = open(self.path(queue, queue_id), "rb")
        return FileChunks(stream, iter_content(stream, qf))

    # -- state changes ---------------------------------------------------
    def move(self, queue_id: str, src: str, dst: str, *, durable: bool = True) -> str:
        """Move a queue file between queues atomically; returns the new path.

        The rename is made durable by fsyncing the target directory and then
        the source directory, so after a crash the file is in exactly one of
        them (design.md §5 rule 6). The queue manager's own moves (into
        ``active`` and on to ``deferred``) pass ``durable=False``: the rename
        is atomic either way, and wherever a system crash leaves the file
        (incoming, active or deferred) it is found and delivered, as Postfix's
        queue manager relies on without directory fsyncs.
        """
        old = self.path(src, queue_id)
        new_dir = self.queue_dir(dst, queue_id)
        self._make_dirs(new_dir)
        new = os.path.join(new_dir, queue_id)
        if dst == "corrupt":
            os.chmod(old, _CORRUPT_MODE)
        os.rename(old, new)
        if durable:
            self._dir_fsync(new_dir)
            old_dir = os.path.dirname(old)
            if old_dir != new_dir:
                self._dir_fsync(old_dir)
        return new

    def mark_done(self, queue: str, queue_id: str, offsets: list[int] | tuple[int, ...]) -> None:
        """Mark recipients done by rewriting their type byte in place, then fsync.

        A single byte per recipient changes, so a crash leaves each one either
        pending or done, never half-written; the fsync comes before the caller
        forgets the delivery, so a finished recipient is never delivered twice
        because of a lost mark.
        """
        fd = os.open(self.path(queue, queue_id), os.O_RDWR)
        try:
            for offset in offsets:
                if not done_mark_ok(os.pread(fd, 1, offset)):
                    raise CorruptQueueFile("no recipient record at done-mark offset", offset)
            for offset in offsets:
                self.hooks.pwrite(fd, RecordType.DONE.value, offset)
            self.hooks.fsync(fd)
        finally:
            os.close(fd)

    def set_warn_time(self, queue: str, queue_id: str, qf: QueueFile, when: int) -> None:
        """Rewrite the delay-warning time in place (fixed width), then fsync."""
        if qf.warn_offset is None:
            raise ValueError(f"{queue_id}: queue file has no warning-time record")
        fd = os.open(self.path(queue, queue_id), os.O_RDWR)
        try:
            record = warn_record(when)
            if os.pread(fd, 1, qf.warn_offset) != RecordType.WARN.value:
                raise CorruptQueueFile("no warning-time record at offset", qf.warn_offset)
            self.hooks.pwrite(fd, record, qf.warn_offset)
            self.hooks.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, queue: str, queue_id: str, *, durable: bool = True) -> None:
        """Delete a queue file (after the last recipient is done).

        ``durable=False`` (the queue manager after a delivery) skips the
        directory fsync: a process crash cannot undo the unlink, and should a
        system crash bring the file back, its recipients are delivered once
        more (delivery is at least once; docs/queue-format.md).
        """
        path = self.path(queue, queue_id)
        os.unlink(path)
        if durable:
            self._dir_fsync(os.path.dirname(path))

    # -- recovery --------------------------------------------------------
    def recover(self, *, temp_age: float = 3600.0, now: float | None = None) -> Recovery:
        """Bring the queue to a clean state at start.

        * ``active`` files return to ``incoming`` (their delivery was cut off;
          recipients already marked done stay done).
        * Temporary files in ``incoming`` are removed when they were linked
          under a queue ID already (the commit got that far) or when their
          writer is gone (the process ID in the name runs no more, or names
          another process now: :func:`mailhorn.queue.tempfiles.writer_alive`);
          a live writer's file stays. When that cannot be told, a file
          older than ``temp_age`` seconds is removed.
        * Files that fail validation move to ``corrupt``.
        * Names that are neither queue IDs nor temporary files are reported.
        """
        now = time.time() if now is None else now
        requeued: list[str] = []
        removed: list[str] = []
        corrupt: list[tuple[str, str]] = []
        unknown: list[str] = []
        for queue_id in list(self.scan("active")):
            self.move(queue_id, "active", "incoming")
            requeued.append(queue_id)
        for path, name in list(self._walk("incoming")):
            if not name.startswith(TEMP_PREFIX):
                continue
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            self.hooks.crash_point("recovery-examined")
            alive = writer_alive(name, TEMP_PREFIX, st.st_mtime)
            if st.st_nlink > 1 or alive is False or (alive is None and now - st.st_mtime > temp_age):
                # A live writer that has linked its file removes the name
                # itself, perhaps just before us.
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed.append(name)
        if removed:
            self._dir_fsync(os.path.join(self.root, "incoming"))
        for queue in ("incoming", "deferred", "hold"):
            for path, name in list(self._walk(queue)):
                if name.startswith(TEMP_PREFIX) and queue == "incoming":
                    continue
                if not is_queue_id(name):
                    unknown.append(os.path.relpath(path, self.root))
                    continue
                try:
                    with open(path, "rb") as stream:
                        read_queue_file(stream, verify_content=False)
                except CorruptQueueFile as exc:
                    self.move(name, queue, "corrupt")
                    corrupt.append((name, str(exc)))
        return Recovery(tuple(requeued), tuple(removed), tuple(corrupt), tuple(unknown))

    # -- asyncio wrappers --------------------------------------------------
    async def amove(self, queue_id: str, src: str, dst: str, *, durable: bool = True) -> str:
        return await offload(functools.partial(self.move, queue_id, src, dst, durable=durable))

    async def amark_done(self, queue: str, queue_id: str, offsets: list[int] | tuple[int, ...]) -> None:
        await offload(self.mark_done, queue, queue_id, offsets)

    async def aremove(self, queue: str, queue_id: str, *, durable: bool = True) -> None:
        await offload(functools.partial(self.remove, queue, queue_id, durable=durable))

    async def aread(self, queue: str, queue_id: str, *, verify_content: bool = True) -> QueueFile:
        return await offload(self.read, queue, queue_id, verify_content=verify_content)

    async def awriter(self, arrival: float | None = None) -> QueueWriter:
        """:meth:`writer` for asyncio callers: from a spare file when one is ready
        (no thread needed), else in a worker thread."""
        spare = self.spares.take()
        if spare is not None:
            return QueueWriter(self, arrival, spare)
        return await offload(self.writer, arrival)


class QueueWriter:
    """One new queue file, written to ``incoming/tmp.*`` until committed, or
    to an unnamed file from :attr:`QueueStore.spares` (``O_TMPFILE``) that
    the commit links under its queue ID.

    Use as a context manager: leaving the block without :meth:`commit`
    (or with an exception) removes the temporary file. Every write or fsync
    error becomes :class:`QueueWriteError` and also removes the file, so
    nothing half-written is ever acknowledged.
    """

    def __init__(self, store: QueueStore, arrival: float | None, spare: tuple[int, int] | None = None) -> None:
        self._store = store
        self._hooks = store.hooks
        if arrival is None:
            seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
            usec = nanos // 1000
        else:
            seconds = int(arrival)
            usec = min(int(round((arrival - seconds) * 1_000_000)), 999_999)
        self._incoming = os.path.join(store.root, "incoming")
        self._buffer = bytearray()
        #: Octets already written to the file (the buffer holds what follows).
        self._written = 0
        self._committed = False
        self._closed = False
        self._fd = -1
        self.temp_path = ""
        try:
            if spare is None:
                self._open_temp()
                inode = os.fstat(self._fd).st_ino
            else:
                # An unnamed file from QueueStore.spares: no temp_path.
                self._fd, inode = spare
        except OSError as exc:
            self._discard()
            raise _write_error(exc, "create queue file") from exc
        #: The queue ID, known from the start so it can be logged at once.
        self.queue_id = make_queue_id(seconds, usec, inode, long=store.long_ids)
        self.arrival = (seconds, usec)
        self.qf = QueueFileWriter(self._emit, self.arrival)

    def _open_temp(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        for attempt in range(100):
            name = f"{TEMP_PREFIX}{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.{attempt}"
            path = os.path.join(self._incoming, name)
            try:
                self._fd = os.open(path, flags, _FILE_MODE)
            except FileExistsError:
                continue
            self.temp_path = path
            os.fchmod(self._fd, _FILE_MODE)  # whatever the umask: other bits are marks
            return
        raise OSError(errno.EEXIST, "cannot create a unique temporary queue file")

    # -- envelope and content (delegated to the record writer) ------------
    def _emit(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        view = memoryview(self._buffer)
        try:
            while view:
                written = self._hooks.write(self._fd, bytes(view[:_FLUSH_AT]))
                if written <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[written:]
        except OSError as exc:
            view.release()
            self._discard()
            raise _write_error(exc, "queue file write error") from exc
        view.release()
        self._written += len(self._buffer)
        self._buffer.clear()

    def _guard(self) -> None:
        if self._closed:
            raise QueueWriteError("queue file is closed", disk_full=False)

    def sender(self, address: str, fullname: str | None = None) -> None:
        self._guard()
        self.qf.sender(address, fullname)

    def recipient(self, address: str, *, orig_rcpt: str | None = None,
                  dsn_orcpt: str | None = None, dsn_notify: DsnNotify | None = None) -> None:
        self._guard()
        self.qf.recipient(address, orig_rcpt=orig_rcpt, dsn_orcpt=dsn_orcpt, dsn_notify=dsn_notify)

    def attribute(self, name: str, value: str) -> None:
        self._guard()
        self.qf.attribute(name, value)

    def attributes(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._guard()
        self.qf.attributes(pairs)

    def content_filter(self, value: str) -> None:
        self._guard()
        self.qf.content_filter(value)

    def dsn(self, envid: str | None = None, ret: DsnRet | None = None) -> None:
        self._guard()
        self.qf.dsn(envid, ret)

    def warn_time(self, when: int) -> None:
        self._guard()
        self.qf.warn_time(when)

    def create_time(self, seconds: int) -> None:
        self._guard()
        self.qf.create_time(seconds)

    def write(self, data: bytes | memoryview) -> None:
        """Stream message content (headers and body, stored as is)."""
        self._guard()
        self.qf.write_content(data)
        self._hooks.crash_point("content")

    def end_content(self) -> None:
        self._guard()
        self.qf.end_content()

    def extracted(self, rtype: RecordType, value: str) -> None:
        self._guard()
        self.qf.extracted(rtype, value)

    # -- commit ------------------------------------------------------------
    def commit(self, queue: str = "incoming") -> str:
        """Make the file durable under its queue ID; returns the ID.

        Order: end marker and size record, fsync the file, link the queue-ID
        name (never replacing an existing file), remove the temporary name,
        fsync the directory. Returning is the promise that the message
        survives a crash. A writer that started from a spare file
        (``O_TMPFILE``) has no temporary name: the link gives the file its
        first name, and a crash before it leaves nothing behind.

        ``queue`` is where the file goes: ``incoming``, or ``hold`` for a
        message held before it was ever queued (cleanup's HOLD), which then
        costs one directory fsync instead of a later move's two. The
        temporary name in ``incoming`` is removed without an fsync of its
        own: should it come back after a crash, it has a second link and
        :meth:`QueueStore.recover` removes it. For the same reason a
        recovery running meanwhile (worker 0 recovers the queue at start
        while sessions of every worker already commit) may remove the
        temporary name between the link and its unlink here; the name is
        then gone as this commit wants it, and the commit goes on.
        """
        self._guard()
        size_offset, size_record = self.qf.finish()
        in_place = size_offset < self._written  # the start of the file was written already
        if not in_place:
            # Most messages are still all in the buffer: the size record is
            # corrected there, and the file is written once.
            at = size_offset - self._written
            self._buffer[at:at + len(size_record)] = size_record
        self._flush()
        target = self._incoming
        if queue != "incoming":
            target = self._store.queue_dir(queue, self.queue_id)
            try:
                self._store._make_dirs(target)
            except OSError as exc:
                self._discard()
                raise _write_error(exc, "queue file write error") from exc
        final = os.path.join(target, self.queue_id)
        try:
            if in_place and self._hooks.pwrite(self._fd, size_record, size_offset) != len(size_record):
                raise OSError(errno.EIO, "short write")
            self._hooks.crash_point("before-fsync")
            self._hooks.fsync(self._fd)
            self._hooks.crash_point("after-fsync")
            if self.temp_path:
                os.link(self.temp_path, final)
            else:
                self._store.spares.link(self._fd, final)
        except OSError as exc:
            self._discard()
            if exc.errno == errno.EEXIST:
                raise QueueWriteError(f"queue ID {self.queue_id} already in use", disk_full=False) from exc
            raise _write_error(exc, "queue file write error") from exc
        self._hooks.crash_point("after-link")
        try:
            if self.temp_path:
                _unlink_quietly(self.temp_path)
            self._hooks.crash_point("before-dir-fsync")
            self._store._dir_fsync(target)
            self._hooks.crash_point("after-dir-fsync")
        except OSError as exc:
            # The queue-ID name may or may not be durable: withdraw it so that
            # an unacknowledged message is not delivered as well as retried.
            _unlink_quietly(final)
            self._discard()
            raise _write_error(exc, "queue file write error") from exc
        self._committed = True
        self._close()
        return self.queue_id

    async def acommit(self, queue: str = "incoming") -> str:
        """:meth:`commit` in a worker thread, for asyncio callers."""
        return await offload(self.commit, queue)

    async def awrite(self, data: bytes | memoryview) -> None:
        """:meth:`write`, moving to a worker thread only when the buffer flushes."""
        if len(self._buffer) + len(data) + 64 >= _FLUSH_AT:
            await offload(self.write, data)
        else:
            self.write(data)

    def abort(self) -> None:
        """Give up on this message: the temporary file is removed."""
        if not self._committed:
            self._discard()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._closed = True

    def _discard(self) -> None:
        self._close()
        if self.temp_path:
            _unlink_quietly(self.temp_path)

    def __enter__(self) -> QueueWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
