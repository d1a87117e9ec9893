"""postsuper(1): queue maintenance for the superuser.

``postsuper [-psSv] [-c config_dir] [-d queue_id] [-e queue_id] [-f queue_id]
[-h queue_id] [-H queue_id] [-r queue_id] [queue ...]``

Operations (each ``-X queue_id`` may repeat; ``ALL``, upper case only, means
every message of the queues; ``-`` reads one queue ID per line from standard
input; a queue ID that is not letters and digits is reported as ``invalid
mail queue id``; IDs are handled in command-line order):

* ``-d``: delete the message and its ``bounce``/``defer``/``trace`` logs
  (default queues: maildrop, incoming, active, deferred, hold);
* ``-h``: put on hold (default: incoming, active, deferred);
* ``-H``: release from hold into ``deferred`` (default: hold);
* ``-r``: requeue (default: incoming, active, deferred, hold). Postfix moves
  the message to maildrop so that pickup and cleanup make a new queue file;
  mailhorn moves it to ``incoming`` with the requeue mark (see
  :mod:`mailhorn.queue.listing`), clears any forced expiry and removes its
  defer log: the queue manager rewrites and resolves its addresses again as
  for new mail. The queue ID stays the same;
* ``-e``: force expiry (the expire mark; default: incoming, active, deferred,
  hold); ``-f``: the same, and release the message if it is on hold;
* ``-s`` (also when no operation is given): structure check and repair.
  Files whose short queue ID does not match their inode number are renamed
  with their logs (``-S``: long IDs too; long IDs become short ones when
  ``enable_long_queue_ids = no``); files in the wrong hashed subdirectory
  move to the right one; names that are neither queue IDs nor temporary
  files get ``warning: bogus file name: QUEUE/NAME``; files that fail
  validation move to ``corrupt``;
* ``-p``: purge temporary files left by a writer that died (those already
  linked under their queue ID, or untouched for an hour).

``-p``, ``-s`` and ``-S`` run before the other operations. Queue names given
as arguments replace the default queues of every operation (a queue an
operation does not apply to is ignored).

Reports on standard error and in the log, as Postfix: ``postsuper: ID:
removed`` (``placed on hold``, ``released from hold``, ``requeued``,
``expired``) for messages named by ID, then the counts ``Requeued``,
``Deleted``, ``Force-expired``, ``Placed on hold``, ``Released from hold``
(``1 message``, ``N messages``) for each operation asked for, and
``Renamed to match inode number: N messages``.

Safe while the mail system runs: every change is one ``rename(2)``,
``unlink(2)`` or ``chmod(2)``; the queue manager must accept that a message
it holds in ``active`` disappears (deleted, held or requeued) as Postfix's
does. Directories changed are fsynced once at the end.

Run as root, postsuper works as the owner of ``queue_directory`` (Postfix
switches to ``mail_owner``), so that directories it creates belong to the
mail system; any other user but that owner is refused.

Parameters read: ``queue_directory``, ``hash_queue_names``,
``hash_queue_depth``, ``enable_long_queue_ids``, ``syslog_name``,
``syslog_facility``, ``maillog_file``.

Exit status: 0; 1 after a fatal error (bad usage, unknown queue name).
"""

from __future__ import annotations

import getopt
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailhorn import log
from mailhorn.durable import fsync_directory
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config, load
from mailhorn.queue.defer_log import LOG_QUEUES, remove_logs, rename_logs
from mailhorn.queue.listing import EXPIRE_BIT, REQUEUE_BIT, clear_mark, set_mark
from mailhorn.queue.queuefile import CorruptQueueFile, read_queue_file
from mailhorn.queue.store import (
    QUEUE_NAMES,
    SAFE_ALPHABET,
    TEMP_PREFIX,
    QueueStore,
    hash_key,
    is_queue_id,
    make_queue_id,
)

PROGRAM = "postsuper"
OPTSTRING = "c:d:e:f:h:H:pr:sSv"
USAGE = ("usage: postsuper [-c config_dir] [-d queue_id (delete)] [-e queue_id (expire)] "
         "[-f queue_id (expire and/or un-hold)] [-h queue_id (hold)] [-H queue_id (un-hold)] "
         "[-p (purge temporary files)] [-r queue_id (requeue)] [-s (structure fix)] "
         "[-S (redundant structure fix)][-v (verbose)] [queue...]")

#: Queues each operation searches by default (postsuper(1); Postfix also
#: deletes from maildrop).
DEFAULT_QUEUES: dict[str, tuple[str, ...]] = {
    "-d": ("maildrop", "incoming", "active", "deferred", "hold"),
    "-h": ("incoming", "active", "deferred"),
    "-H": ("hold",),
    "-r": ("incoming", "active", "deferred", "hold"),
    "-e": ("incoming", "active", "deferred", "hold"),
    "-f": ("incoming", "active", "deferred", "hold"),
}
#: Queues an operation may act on when queues are named on the command line.
ALLOWED_QUEUES: dict[str, frozenset[str]] = {
    "-d": frozenset({"maildrop", "incoming", "active", "deferred", "hold", "corrupt", "saved"}),
    "-h": frozenset({"incoming", "active", "deferred"}),
    "-H": frozenset({"hold"}),
    "-r": frozenset({"incoming", "active", "deferred", "hold"}),
    "-e": frozenset({"incoming", "active", "deferred", "hold"}),
    "-f": frozenset({"incoming", "active", "deferred", "hold"}),
}
#: The summary lines, in Postfix's order, and the operations that print them.
SUMMARY = (
    ("requeued", "Requeued", ("-r",)),
    ("deleted", "Deleted", ("-d",)),
    ("expired", "Force-expired", ("-e", "-f")),
    ("held", "Placed on hold", ("-h",)),
    ("released", "Released from hold", ("-H", "-f")),
)
MAX_ID_LENGTH = 64
#: Queues whose files are messages, checked by ``-s``.
STRUCTURE_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
#: Age after which an unlinked temporary file belongs to a dead writer.
TEMP_AGE = 3600.0


@dataclass
class _Run:
    """State of one postsuper invocation."""

    store: QueueStore
    queues: tuple[str, ...] | None
    verbose: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def search(self, op: str) -> tuple[str, ...]:
        if self.queues is None:
            return DEFAULT_QUEUES[op]
        return tuple(q for q in self.queues if q in ALLOWED_QUEUES[op])

    # -- file system steps ---------------------------------------------------
    def rename(self, queue_id: str, src: str, dst: str) -> str:
        """Move a queue file between queues with one rename; fsyncs come at the end."""
        old = self.store.path(src, queue_id)
        new_dir = self.store.queue_dir(dst, queue_id)
        os.makedirs(new_dir, 0o700, exist_ok=True)
        new = os.path.join(new_dir, queue_id)
        os.rename(old, new)
        self.dirty.update({os.path.dirname(old), new_dir, os.path.dirname(new_dir)})
        return new

    def sync(self) -> None:
        """Make the renames and unlinks durable: one fsync per changed directory."""
        for directory in sorted(self.dirty):
            try:
                fsync_directory(directory)
            except FileNotFoundError:
                continue
        self.dirty.clear()

    # -- operations -------------------------------------------------------------
    def delete(self, queue: str, queue_id: str, named: bool) -> None:
        removed = remove_logs(self.store, queue_id)
        path = self.store.path(queue, queue_id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        self.dirty.add(os.path.dirname(path))
        if self.verbose:
            for rel in removed:
                log.info(f"removed file {rel}")
            log.info(f"removed file {os.path.relpath(path, self.store.root)}")
        if named:
            log.info(f"{queue_id}: removed")
        self.count("deleted")

    def hold(self, queue: str, queue_id: str, named: bool) -> None:
        self.rename(queue_id, queue, "hold")
        if named:
            log.info(f"{queue_id}: placed on hold")
        self.count("held")

    def release(self, queue: str, queue_id: str, named: bool) -> None:
        if queue != "hold":
            return
        self.rename(queue_id, "hold", "deferred")
        if named:
            log.info(f"{queue_id}: released from hold")
        self.count("released")

    def requeue(self, queue: str, queue_id: str, named: bool) -> None:
        path = self.store.path(queue, queue_id)
        if queue != "incoming":
            path = self.rename(queue_id, queue, "incoming")
        clear_mark(path, EXPIRE_BIT)
        set_mark(path, REQUEUE_BIT)
        remove_logs(self.store, queue_id, ("defer",))
        if named:
            log.info(f"{queue_id}: requeued")
        self.count("requeued")

    def expire(self, queue: str, queue_id: str, named: bool, *, release: bool) -> None:
        if set_mark(self.store.path(queue, queue_id), EXPIRE_BIT):
            if named:
                log.info(f"{queue_id}: expired")
            self.count("expired")
        if release:
            self.release(queue, queue_id, named)

    def apply(self, op: str, queue: str, queue_id: str, named: bool) -> None:
        try:
            if op == "-d":
                self.delete(queue, queue_id, named)
            elif op == "-h":
                self.hold(queue, queue_id, named)
            elif op == "-H":
                self.release(queue, queue_id, named)
            elif op == "-r":
                self.requeue(queue, queue_id, named)
            else:
                self.expire(queue, queue_id, named, release=op == "-f")
        except FileNotFoundError:
            # The queue manager finished with it meanwhile: nothing to do.
            return

    def one(self, op: str, queue_id: str) -> None:
        """An operation on one named message: the first queue that has it."""
        if not valid_queue_id(queue_id):
            log.warning(f"invalid mail queue id: {queue_id}")
            return
        if not is_queue_id(queue_id):
            # Well-formed for Postfix but never a mailhorn queue file name.
            return
        for queue in self.search(op):
            if os.path.isfile(self.store.path(queue, queue_id)):
                self.apply(op, queue, queue_id, named=True)
                return

    def all(self, op: str) -> None:
        """An operation on every message of the queues it searches."""
        for queue in self.search(op):
            for queue_id in list(self.store.scan(queue)):
                self.apply(op, queue, queue_id, named=False)


# ---------------------------------------------------------------- -p and -s


def _walk(root: str) -> Iterator[tuple[str, str]]:
    """(directory, name) of every file below ``root``, in name order."""
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(files):
            yield directory, name


def purge_temp_files(store: QueueStore, *, now: float) -> list[str]:
    """Remove temporary files of writers that died; returns their relative paths.

    A temporary file is stale when it is already linked under its queue ID
    (the commit got that far) or untouched for :data:`TEMP_AGE` seconds; a
    live writer keeps its file's modification time fresh.
    """
    removed: list[str] = []
    for queue in ("incoming", "maildrop"):
        for directory, name in _walk(os.path.join(store.root, queue)):
            if not name.startswith(TEMP_PREFIX):
                continue
            path = os.path.join(directory, name)
            try:
                st = os.lstat(path)
                if st.st_nlink > 1 or now - st.st_mtime > TEMP_AGE:
                    os.unlink(path)
                    removed.append(os.path.relpath(path, store.root))
            except FileNotFoundError:
                continue
    return removed


def _decode_safe(text: str) -> int:
    value = 0
    for char in text:
        value = value * 52 + SAFE_ALPHABET.index(char)
    return value


def expected_name(name: str, inode: int, *, long_ids: bool, strict: bool) -> str:
    """The name a queue file should have for its inode (postsuper -s / -S).

    Short IDs keep their microseconds and take the inode in hex. Long IDs are
    checked only with ``-S``, and become short ones when long IDs are off.
    """
    at = name.rfind("z")
    if at >= 10:
        if not long_ids:
            return hash_key(name)[:5] + "%X" % inode
        if not strict:
            return name
        seconds = _decode_safe(name[:at - 4])
        usec = _decode_safe(name[at - 4:at])
        return make_queue_id(seconds, usec, inode, long=True)
    return name[:5] + "%X" % inode


def structure_check(store: QueueStore, *, long_ids: bool, strict: bool) -> int:
    """Check and repair the queue's structure; returns how many files were renamed."""
    renamed = 0
    for queue in STRUCTURE_QUEUES:
        for directory, name in list(_walk(os.path.join(store.root, queue))):
            path = os.path.join(directory, name)
            if name.startswith(TEMP_PREFIX):
                continue
            if not is_queue_id(name):
                log.warning(f"bogus file name: {os.path.relpath(path, store.root)}")
                continue
            try:
                with open(path, "rb") as stream:
                    inode = os.fstat(stream.fileno()).st_ino
                    read_queue_file(stream, verify_content=False)
            except FileNotFoundError:
                continue
            except CorruptQueueFile as exc:
                _save_corrupt(store, queue, path, name, str(exc))
                continue
            new_name = expected_name(name, inode, long_ids=long_ids, strict=strict)
            target_dir = store.queue_dir(queue, new_name)
            target = os.path.join(target_dir, new_name)
            if target == path:
                continue
            if os.path.exists(target):
                log.warning(f"{os.path.relpath(path, store.root)}: cannot rename to "
                            f"{new_name}: a file with that name exists")
                continue
            os.makedirs(target_dir, 0o700, exist_ok=True)
            os.rename(path, target)
            if new_name != name:
                rename_logs(store, name, new_name)
                renamed += 1
    for logq in LOG_QUEUES:
        for directory, name in list(_walk(os.path.join(store.root, logq))):
            if not is_queue_id(name):
                continue
            target_dir = store.queue_dir(logq, name)
            if directory != target_dir:
                os.makedirs(target_dir, 0o700, exist_ok=True)
                os.rename(os.path.join(directory, name), os.path.join(target_dir, name))
    return renamed


def _save_corrupt(store: QueueStore, queue: str, path: str, name: str, reason: str) -> None:
    """Move a file that fails validation to ``corrupt`` (read-only), as recovery does."""
    target_dir = store.queue_dir("corrupt", name)
    os.makedirs(target_dir, 0o700, exist_ok=True)
    os.chmod(path, 0o400)
    os.rename(path, os.path.join(target_dir, name))
    log.warning(f'saving corrupt file "{os.path.relpath(path, store.root)}" from queue '
                f'"{queue}" to queue "corrupt": {reason}')


# ---------------------------------------------------------------- helpers


def valid_queue_id(text: str) -> bool:
    """Postfix's mail_queue_id_ok: letters and digits only, bounded length."""
    return 0 < len(text) <= MAX_ID_LENGTH and text.isascii() and text.isalnum()


def _stdin_ids() -> Iterator[str]:
    for line in sys.stdin:
        yield line.rstrip("\n")


def _message_word(count: int) -> str:
    return f"{count} message" if count == 1 else f"{count} messages"


def _drop_privileges(root: str) -> None:
    """Work as the owner of the queues, refusing other users (Postfix: superuser only).

    A root master lays the queue out as Postfix does: root owns the top and
    ``mail_owner`` the queue directories below. Root then works as the owner
    of those (as Postfix's postsuper becomes ``mail_owner``), so that hash
    directories it creates can be used by the workers. In a queue owned by
    one user throughout (an unprivileged instance) that user is the owner.
    """
    try:
        st = os.stat(root)
    except OSError as exc:
        log.fatal(f"chdir({root}): {exc.strerror}")
    try:
        queues = os.stat(os.path.join(root, "incoming"))
    except OSError:
        queues = st
    uid = os.getuid()
    if uid == 0 and queues.st_uid != 0:
        os.setgroups([])
        os.setgid(queues.st_gid)
        os.setuid(queues.st_uid)
    elif uid not in (0, st.st_uid):
        log.fatal("use of this command is reserved for the superuser")


def _parse(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    try:
        return getopt.getopt(argv, OPTSTRING)
    except getopt.GetoptError as exc:
        if exc.opt and "requires argument" in exc.msg:
            print(f"{PROGRAM}: option requires an argument -- '{exc.opt}'", file=sys.stderr)
        else:
            print(f"{PROGRAM}: invalid option -- '{exc.opt}'", file=sys.stderr)
        log.fatal(USAGE)


def _setup(config_dir: str | None) -> tuple[Config, QueueStore]:
    try:
        config = load(config_dir)
        log.setup(PROGRAM, syslog_name=config.get("syslog_name") or "mailhorn",
                  facility=config.get("syslog_facility"),
                  maillog_file=config.get("maillog_file"), stderr=True)
        return config, QueueStore.from_config(config)
    except (ConfigError, ValueError) as exc:
        log.fatal(str(exc))


def run(argv: list[str]) -> int:
    """Entry point: ``postsuper [options] [queue...]``."""
    log.setup(PROGRAM, stderr=True)
    pairs, queue_args = _parse(argv)
    config_dir: str | None = None
    ops: list[tuple[str, str]] = []
    purge = structure = strict = False
    verbose = 0
    for flag, value in pairs:
        if flag == "-c":
            config_dir = value
        elif flag == "-p":
            purge = True
        elif flag == "-s":
            structure = True
        elif flag == "-S":
            structure = strict = True
        elif flag == "-v":
            verbose += 1
        else:
            ops.append((flag, value))
    for name in queue_args:
        if name not in QUEUE_NAMES:
            log.fatal(f"invalid directory name: {name}")
    if not ops and not purge:
        structure = True
    config, store = _setup(config_dir)
    _drop_privileges(store.root)
    state = _Run(store, tuple(queue_args) or None, verbose)
    if purge:
        for rel in purge_temp_files(store, now=time.time()):
            if verbose:
                log.info(f"removed file {rel}")
    if structure:
        renamed = structure_check(store, long_ids=config.bool("enable_long_queue_ids"),
                                  strict=strict)
        if renamed:
            log.info(f"Renamed to match inode number: {_message_word(renamed)}")
            log.warning("QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS")
    for op, value in ops:
        if value == "ALL":
            state.all(op)
        elif value == "-":
            for queue_id in _stdin_ids():
                state.one(op, queue_id)
        else:
            state.one(op, value)
    state.sync()
    asked = {op for op, _ in ops}
    for key, label, flags in SUMMARY:
        if asked.intersection(flags):
            log.info(f"{label}: {_message_word(state.counts.get(key, 0))}")
    return 0
