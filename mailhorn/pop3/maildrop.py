"""Opening a POP3 maildrop: the session lock, the snapshot, UIDLs, and the UPDATE state.

What it does
    :func:`open_maildrop` creates the Maildir when it is missing (as Dovecot
    does on first login), takes the POP3 session lock, lists INBOX through
    :mod:`mailhorn.mailstore` and returns a :class:`OpenMaildrop`: the
    :class:`~mailhorn.pop3.session.Maildrop` snapshot, the mailbox, and the
    lock.  :meth:`OpenMaildrop.update` is RFC 1939 §6's UPDATE state:
    expunge the messages marked deleted and mark the retrieved ones
    ``\\Seen`` (``S``), as Dovecot does at QUIT.

    The lock is Dovecot's own (``pop3_lock_session``): a dot-lock named
    ``dovecot-pop3-session.lock`` in the Maildir holding ``pid:host``, so a
    mailhorn session and a Dovecot session also exclude each other.  It is
    broken when its process is gone, or when nobody refreshed it for five
    minutes; :meth:`OpenMaildrop.refresh` touches it, and the server calls
    it while the session lasts.

    Sizes are the message sizes with CRLF line ends (RFC 1939 §11): the
    ``,W=`` field of the file name, or else counted once from the file.
    UIDLs follow ``pop3_uidl_format`` (Dovecot's default ``%08Xu%08Xv``:
    the IMAP UID and UIDVALIDITY in hex, as Dovecot prints them in lower
    case), so a client moving from Dovecot does not fetch its mail again.

Parameters read
    None; the server passes ``pop3_uidl_format`` (checked with
    :func:`check_uidl_format`).

Errors
    :class:`~mailhorn.mailstore.errors.LockTimeout` (another session has the
    lock), :class:`~mailhorn.mailstore.errors.MailstoreError` and
    ``OSError`` from the store.  All blocking; the server runs them in
    worker threads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mailhorn.mailstore.folders import is_maildir, make_maildir
from mailhorn.mailstore.lock import DotLock
from mailhorn.mailstore.maildir import CHUNK, Mailbox, Message
from mailhorn.pop3.session import Entry, Maildrop

#: Dovecot's POP3 session lock file (without the ``.lock`` the dot-lock adds).
LOCK_NAME = "dovecot-pop3-session"
#: Dovecot's stale timeout for the POP3 session lock: five minutes without a refresh.
LOCK_STALE_TIMEOUT = 300.0
#: How often a held lock is touched (well within the stale timeout).
LOCK_REFRESH = 60.0
#: Dovecot's default pop3_uidl_format.
DEFAULT_UIDL_FORMAT = "%08Xu%08Xv"

_UIDL_VAR = re.compile(r"%(0?\d*)(X?)([uvf%])")


def check_uidl_format(fmt: str) -> None:
    """ValueError unless ``fmt`` uses only ``%u`` (UID), ``%v`` (UIDVALIDITY), ``%f`` (file name), ``%%``."""
    rest = _UIDL_VAR.sub("", fmt)
    if "%" in rest:
        raise ValueError(f"pop3_uidl_format: unsupported variable in: {fmt} (use %u, %v, %f)")
    if not fmt:
        raise ValueError("pop3_uidl_format is empty")


def format_uidl(fmt: str, uid: int, uidvalidity: int, base: str) -> str:
    """Expand ``pop3_uidl_format`` for one message (Dovecot's var_expand: ``X`` is hex)."""

    def one(match: re.Match[str]) -> str:
        width, hexa, var = match.groups()
        if var == "%":
            return "%"
        if var == "f":
            return base
        number = uid if var == "u" else uidvalidity
        spec = f"{width}x" if hexa else f"{width}d"
        return format(number, spec)

    return _UIDL_VAR.sub(one, fmt)


def crlf_size(path: Path) -> int:
    """The size of a message file with every bare LF counted as CRLF."""
    size = bare = 0
    prev_cr = False
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                return size + bare
            size += len(chunk)
            crlf = chunk.count(b"\r\n") + (1 if prev_cr and chunk[:1] == b"\n" else 0)
            bare += chunk.count(b"\n") - crlf
            prev_cr = chunk[-1:] == b"\r"


@dataclass
class OpenMaildrop:
    """A locked maildrop and its snapshot."""

    mailbox: Mailbox
    maildrop: Maildrop
    lock: DotLock | None

    def refresh(self) -> None:
        """Touch the session lock so other processes do not take it as stale."""
        if self.lock is not None and self.lock.held:
            try:
                os.utime(self.lock.path)
            except FileNotFoundError:
                pass

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def update(self) -> tuple[int, int]:
        """RFC 1939 §6 UPDATE: expunge DELE'd messages, mark RETR'd ones seen; (expunged, flagged)."""
        drop = self.maildrop
        doomed = [e.message for e in drop.entries if e.number in drop.deleted]
        gone = self.mailbox.expunge(doomed) if doomed else 0
        flagged = 0
        for entry in drop.entries:
            if entry.number in drop.retrieved and entry.number not in drop.deleted \
                    and "S" not in entry.message.flags:
                try:
                    self.mailbox.set_flags(entry.message, add="S")
                    flagged += 1
                except FileNotFoundError:
                    continue
        return gone, flagged


def _entry(number: int, message: Message, uidvalidity: int, uidl_format: str) -> Entry:
    size = message.vsize if message.vsize is not None else crlf_size(message.path)
    return Entry(number, message, size, format_uidl(uidl_format, message.uid, uidvalidity, message.base))


def open_maildrop(maildir: str, *, lock_session: bool = True, lock_wait: float = 10.0,
                  uidl_format: str = DEFAULT_UIDL_FORMAT) -> OpenMaildrop:
    """Lock and list the INBOX of ``maildir`` (see the module text)."""
    root = Path(maildir)
    if not is_maildir(root):
        make_maildir(root)
    lock: DotLock | None = None
    if lock_session:
        lock = DotLock(root / LOCK_NAME, stale_timeout=LOCK_STALE_TIMEOUT, timeout=lock_wait)
        lock.acquire()
    try:
        mailbox = Mailbox(root)
        messages = mailbox.sync()
        entries = [_entry(n, m, mailbox.uidvalidity, uidl_format) for n, m in enumerate(messages, 1)]
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return OpenMaildrop(mailbox, Maildrop(entries), lock)
