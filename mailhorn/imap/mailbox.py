"""A selected mailbox as one IMAP session sees it: sequence numbers, flags, \\Recent, updates.

What it does
    :class:`SelectedMailbox` wraps a mail store
    :class:`~mailhorn.mailstore.maildir.Mailbox` for the session that
    SELECTed (or EXAMINEd) it. It keeps the session's list of messages in
    UID order, so that sequence number N is ``entries[N-1]`` (RFC 3501
    §2.3.1.2), and the flags last told to the client, so that changes made
    elsewhere become untagged updates:

    * :meth:`~SelectedMailbox.refresh` rescans the Maildir (changes by
      other sessions, by delivery, by Dovecot) and returns the untagged
      lines to send: ``* N EXPUNGE`` for messages gone (only when the
      command allows it: never during FETCH, STORE or SEARCH, RFC 3501
      §7.4.1; they wait for the next command that allows them), ``* N
      FETCH (FLAGS (…))`` for flags changed by someone else, ``* FLAGS`` and
      ``* OK [PERMANENTFLAGS …]`` when a new keyword appears, then ``* N
      EXISTS`` and ``* N RECENT`` for new messages.
    * \\Recent follows Dovecot's Maildir rule: a file still in ``new/`` is
      recent for the first session that sees it, which moves it to ``cur/``
      (rename, so exactly one session wins). EXAMINE moves nothing and sees
      nothing recent.
    * Sessions in one process share a :class:`Notifier` per mailbox: a
      session that changed the mailbox (STORE, EXPUNGE, APPEND, COPY, MOVE)
      wakes the others, so an IDLE session reports the change at once and
      the others at their next command boundary.

    Flag letters map to IMAP flags as Dovecot maps them (``D`` \\Draft, ``F``
    \\Flagged, ``R`` \\Answered, ``S`` \\Seen, ``T`` \\Deleted; keywords are
    ``a``..``z`` of ``dovecot-keywords``); flags are listed in Dovecot's
    order: system flags, \\Recent, then keywords.

Errors
    The mail store's errors (:mod:`mailhorn.mailstore.errors`) and
    ``OSError`` pass through; callers map them with
    :func:`mailhorn.imap.codec.store_error`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mailhorn.mailstore.maildir import Mailbox, Message

#: IMAP system flags in the order Dovecot lists them.
SYSTEM_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
#: Maildir letter of each IMAP system flag.
LETTER_OF: dict[str, str] = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                             "\\Deleted": "T"}
FLAG_OF: dict[str, str] = {v: k for k, v in LETTER_OF.items()}


def flags_of(msg: Message) -> tuple[str, ...]:
    """A message's IMAP flags (without \\Recent) in Dovecot's order."""
    system = {FLAG_OF[c] for c in msg.flags if c in FLAG_OF}
    return tuple(f for f in SYSTEM_ORDER if f in system) + msg.keywords


def format_flags(flags: tuple[str, ...], recent: bool) -> bytes:
    """``(\\Seen \\Recent kw)``: system flags, \\Recent, keywords."""
    system = [f for f in flags if f.startswith("\\")]
    keywords = [f for f in flags if not f.startswith("\\")]
    items = system + (["\\Recent"] if recent else []) + keywords
    return ("(" + " ".join(items) + ")").encode("utf-8")


class Notifier:
    """The sessions of this process that have one mailbox selected."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.views: set[SelectedMailbox] = set()

    def changed(self, source: SelectedMailbox | None) -> None:
        """Someone changed the mailbox: every other view rescans at its next boundary."""
        for view in self.views:
            if view is not source:
                view.dirty = True
                view.wake.set()


_NOTIFIERS: dict[str, Notifier] = {}


def notifier_for(path: Path) -> Notifier:
    key = os.path.realpath(path)
    found = _NOTIFIERS.get(key)
    if found is None:
        found = _NOTIFIERS[key] = Notifier(key)
    return found


def notify_path(path: Path) -> None:
    """Tell the sessions that have ``path`` selected that it changed (APPEND, COPY into it)."""
    found = _NOTIFIERS.get(os.path.realpath(path))
    if found is not None:
        found.changed(None)


class Entry:
    """One message of the session's view: UID, message, \\Recent, and the flags last told to the client."""

    __slots__ = ("uid", "msg", "recent", "reported")

    def __init__(self, uid: int, msg: Message, recent: bool, reported: tuple[str, ...]) -> None:
        self.uid = uid
        self.msg = msg
        self.recent = recent
        self.reported = reported     # without \\Recent


class SelectedMailbox:
    """See the module text."""

    def __init__(self, store: Mailbox, readonly: bool) -> None:
        self.store = store
        self.readonly = readonly
        self.entries: list[Entry] = []
        self.by_uid: dict[int, Entry] = {}
        self.keywords: list[str] = []
        self.uidvalidity = 0
        self.reported_recent = 0
        self.dirty = False
        self.wake = asyncio.Event()
        self.notifier = notifier_for(store.path)
        self.notifier.views.add(self)
        self._generation = -1        # the store's listing generation last compared
        self._pending_expunge = False

    # -- life cycle ------------------------------------------------------------------------

    def close(self) -> None:
        self.notifier.views.discard(self)
        if not self.notifier.views:
            _NOTIFIERS.pop(self.notifier.key, None)

    def changed(self) -> None:
        """This session changed the mailbox: wake the others."""
        self.notifier.changed(self)

    @property
    def exists(self) -> int:
        return len(self.entries)

    @property
    def recent_count(self) -> int:
        return sum(1 for e in self.entries if e.recent)

    @property
    def uidnext(self) -> int:
        return self.store.next_uid

    def _claim_recent(self, msg: Message) -> tuple[Message, bool]:
        """Move a ``new/`` file to ``cur/``; the session whose rename works has it as \\Recent."""
        if self.readonly or not msg.recent_dir:
            return msg, False
        moved = self.store.claim_recent(msg)
        if moved is None:
            return msg, False
        return moved, True

    def _scan(self) -> list[Message]:
        return self.store.sync()

    def looks_changed(self) -> bool:
        """A cheap check (a few ``stat()``) whether a rescan may find something."""
        return self.dirty or self._pending_expunge or self.store.changed_on_disk()

    def _known_keywords(self, messages: list[Message]) -> bool:
        """Add keywords seen in ``messages``; True when the list grew."""
        grew = False
        for msg in messages:
            for kw in msg.keywords:
                if kw not in self.keywords:
                    self.keywords.append(kw)
                    grew = True
        return grew

    def flags_lines(self) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS …]`` (RFC 3501 §7.2.6, §7.1)."""
        flags = " ".join([*SYSTEM_ORDER, *self.keywords])
        lines = [b"* FLAGS (" + flags.encode("utf-8") + b")\r\n"]
        if self.readonly:
            lines.append(b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n")
        else:
            lines.append(b"* OK [PERMANENTFLAGS (" + flags.encode("utf-8")
                         + b" \\*)] Flags permitted.\r\n")
        return lines

    def open(self) -> list[bytes]:
        """The untagged lines of SELECT/EXAMINE (RFC 3501 §6.3.1), in Dovecot's order."""
        messages = self._scan()
        self.uidvalidity = self.store.uidvalidity
        for msg in messages:
            msg, recent = self._claim_recent(msg)
            entry = Entry(msg.uid, msg, recent, flags_of(msg))
            self.entries.append(entry)
            self.by_uid[msg.uid] = entry
        self._known_keywords(messages)
        self.dirty = False
        self._generation = self.store.generation
        self.reported_recent = self.recent_count
        lines = self.flags_lines()
        lines.append(b"* %d EXISTS\r\n" % self.exists)
        lines.append(b"* %d RECENT\r\n" % self.reported_recent)
        unseen = next((i + 1 for i, e in enumerate(self.entries) if "\\Seen" not in e.reported), None)
        if unseen is not None:
            lines.append(b"* OK [UNSEEN %d] First unseen.\r\n" % unseen)
        lines.append(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % self.uidvalidity)
        lines.append(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % self.uidnext)
        return lines

    # -- updates ---------------------------------------------------------------------------

    def remove(self, uids: set[int]) -> list[bytes]:
        """Drop messages from the view; ``* N EXPUNGE`` lines, numbers as they shift."""
        lines: list[bytes] = []
        removed = 0
        kept: list[Entry] = []
        for index, entry in enumerate(self.entries):
            if entry.uid in uids:
                lines.append(b"* %d EXPUNGE\r\n" % (index + 1 - removed))
                removed += 1
                self.by_uid.pop(entry.uid, None)
            else:
                kept.append(entry)
        self.entries = kept
        return lines

    def refresh(self, allow_expunge: bool) -> list[bytes]:
        """Rescan and return the untagged updates (see the module text)."""
        messages = self._scan()
        self.dirty = False
        if self.store.generation == self._generation and not self._pending_expunge:
            return []  # the listing is the one compared last time
        self._generation = self.store.generation
        current = {m.uid: m for m in messages}
        lines: list[bytes] = []
        gone = {e.uid for e in self.entries if e.uid not in current}
        self._pending_expunge = bool(gone) and not allow_expunge
        if gone and allow_expunge:
            lines += self.remove(gone)
        if self._known_keywords(messages):
            lines = self.flags_lines() + lines
        for index, entry in enumerate(self.entries):
            msg = current.get(entry.uid)
            if msg is None or msg is entry.msg:
                continue
            entry.msg = msg
            flags = flags_of(msg)
            if flags != entry.reported:
                entry.reported = flags
                lines.append(b"* %d FETCH (FLAGS %s)\r\n"
                             % (index + 1, format_flags(flags, entry.recent)))
        last = self.entries[-1].uid if self.entries else 0
        added = 0
        for msg in messages:
            if msg.uid <= last or msg.uid in self.by_uid:
                continue
            msg, recent = self._claim_recent(msg)
            entry = Entry(msg.uid, msg, recent, flags_of(msg))
            self.entries.append(entry)
            self.by_uid[msg.uid] = entry
            added += 1
        if added:
            lines.append(b"* %d EXISTS\r\n" % self.exists)
        if added or self.recent_count != self.reported_recent:
            self.reported_recent = self.recent_count
            lines.append(b"* %d RECENT\r\n" % self.reported_recent)
        return lines

    # -- lookups ---------------------------------------------------------------------------

    def seq_of(self, uid: int) -> int:
        for index, entry in enumerate(self.entries):
            if entry.uid == uid:
                return index + 1
        raise KeyError(uid)

    def largest_uid(self) -> int:
        return self.entries[-1].uid if self.entries else 0

    def set_entry_flags(self, entry: Entry, msg: Message) -> None:
        """Record a flag change this session made (and will report itself)."""
        entry.msg = msg
        entry.reported = flags_of(msg)
        self._known_keywords([msg])


__all__ = ["Entry", "FLAG_OF", "LETTER_OF", "Notifier", "SYSTEM_ORDER", "SelectedMailbox",
           "flags_of", "format_flags", "notifier_for", "notify_path"]
