"""``dovecot-uidlist``: the permanent IMAP UID of each message file.

What it does
    Reads and writes the file in Dovecot's version 3 format (Dovecot
    documentation, "Maildir Mailbox Format", *IMAP UID mapping*)::

        3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
        25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,
        25017 W2481 :1276533073.M242911P3632.kurkku:2,F

    The header gives the version, ``V`` UIDVALIDITY, ``N`` the next UID and
    ``G`` the mailbox GUID (128 bits in hex); other header fields may appear in
    any order and are kept. Each record is a UID, optional extension fields
    (``W<vsize>`` …, kept as they are) and, after ``:``, the last known file
    name (flags may have changed it since). Courier's version 1 file
    (``1 <uidvalidity> <nextuid>`` then ``<uid> <filename>``) is read too.

    Writers hold ``dovecot-uidlist.lock`` (:class:`~mailhorn.mailstore.lock.DotLock`).
    New records may be appended; any other change replaces the whole file
    with a temporary file and ``rename()``, never modifying it in place.
    Readers need no lock; an unterminated last line (an append in progress)
    is ignored. The next UID is the larger of ``N`` and the last UID + 1,
    since appends do not rewrite the header.

    A new mailbox's UIDVALIDITY comes from ``dovecot-uidvalidity`` in the
    root (the last value given, in hex), so a re-created mailbox never reuses
    one: it is the larger of that value + 1 and the current time.

Parameters read
    None.

Errors
    ``OSError`` from the file system; a malformed header raises
    :class:`~mailhorn.mailstore.errors.CorruptFile`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from mailhorn.durable import write_all
from mailhorn.mailstore.errors import CorruptFile

UIDLIST: Final = "dovecot-uidlist"
UIDVALIDITY: Final = "dovecot-uidvalidity"


@dataclass(slots=True)
class UidRecord:
    """One message: its UID, extension fields (raw text) and last known file name.

    ``base`` is the file name without the ``:2,`` info part: stable across
    flag changes.
    """

    uid: int
    filename: str
    ext: str = ""
    base: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.base = self.filename.split(":", 1)[0]

    def line(self) -> str:
        middle = f" {self.ext}" if self.ext else ""
        return f"{self.uid}{middle} :{self.filename}\n"


@dataclass
class UidList:
    """The parsed file."""

    uidvalidity: int
    next_uid: int = 1
    guid: str = field(default_factory=lambda: os.urandom(16).hex())
    records: list[UidRecord] = field(default_factory=list)
    extra_header: list[str] = field(default_factory=list)

    def header(self) -> str:
        fields = [f"V{self.uidvalidity}", f"N{self.effective_next_uid()}", f"G{self.guid}",
                  *self.extra_header]
        return "3 " + " ".join(fields) + "\n"

    def effective_next_uid(self) -> int:
        last = self.records[-1].uid if self.records else 0
        return max(self.next_uid, last + 1)

    def render(self) -> bytes:
        return (self.header() + "".join(r.line() for r in self.records)).encode("utf-8", "surrogateescape")

    def by_base(self) -> dict[str, UidRecord]:
        return {r.base: r for r in self.records}


def parse(data: bytes) -> UidList:
    """Parse ``dovecot-uidlist`` content (version 3 or Courier's version 1)."""
    text = data.decode("utf-8", "surrogateescape")
    complete, _, _partial = text.rpartition("\n")
    lines = complete.split("\n") if complete else []
    if not lines or not lines[0]:
        raise CorruptFile("dovecot-uidlist: missing header")
    head = lines[0].split()
    version = head[0]
    uidlist: UidList
    try:
        if version == "1" and len(head) >= 3:
            uidlist = UidList(uidvalidity=int(head[1]), next_uid=int(head[2]))
        elif version == "3":
            uidlist = UidList(uidvalidity=0)
            for item in head[1:]:
                key, value = item[:1], item[1:]
                if key == "V":
                    uidlist.uidvalidity = int(value)
                elif key == "N":
                    uidlist.next_uid = int(value)
                elif key == "G":
                    uidlist.guid = value
                else:
                    uidlist.extra_header.append(item)
        else:
            raise CorruptFile(f"dovecot-uidlist: unsupported version {version!r}")
    except ValueError as exc:
        raise CorruptFile(f"dovecot-uidlist: broken header {lines[0]!r}") from exc
    if uidlist.uidvalidity <= 0:
        raise CorruptFile("dovecot-uidlist: header has no UIDVALIDITY")
    seen: dict[int, UidRecord] = {}
    ordered = True
    last = 0
    for line in lines[1:]:
        uid_text, sep, rest = line.partition(" ")
        if not sep or not uid_text.isdigit():
            continue  # Dovecot drops broken lines too (and logs them)
        uid = int(uid_text)
        if uid == 0:
            continue
        if version == "1":
            ext, filename = "", rest
        else:
            ext, colon, filename = rest.partition(":")
            if not colon:
                continue
            ext = ext.strip()
        if filename:
            seen[uid] = UidRecord(uid, filename, ext)
            ordered = ordered and uid > last
            last = uid
    uidlist.records = list(seen.values()) if ordered else [seen[uid] for uid in sorted(seen)]
    return uidlist


def read(maildir: Path) -> UidList | None:
    """The mailbox's uidlist, or None when it has none yet."""
    try:
        data = (maildir / UIDLIST).read_bytes()
    except FileNotFoundError:
        return None
    return parse(data)


def write(maildir: Path, uidlist: UidList) -> None:
    """Replace the file atomically: temp file, fsync, rename. Caller holds the lock."""
    target = maildir / UIDLIST
    tmp = maildir / f"{UIDLIST}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = uidlist.render()
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, target)


def append(maildir: Path, records: list[UidRecord]) -> None:
    """Append new records (higher UIDs than any present). Caller holds the lock."""
    data = "".join(r.line() for r in records).encode("utf-8", "surrogateescape")
    fd = os.open(maildir / UIDLIST, os.O_WRONLY | os.O_APPEND)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def next_uidvalidity(root: Path) -> int:
    """A fresh UIDVALIDITY, recorded in ``dovecot-uidvalidity`` at the Maildir root.

    Dovecot keeps the last value given in that file (hex, no newline); taking
    the larger of it + 1 and the clock keeps values unique for re-created
    mailboxes even when the clock goes back.
    """
    path = root / UIDVALIDITY
    try:
        last = int(path.read_text().strip() or "0", 16)
    except (FileNotFoundError, ValueError):
        last = 0
    value = max(last + 1, int(time.time()))
    value &= 0xFFFFFFFF
    tmp = root / f"{UIDVALIDITY}.{os.getpid()}.tmp"
    try:
        tmp.write_text(f"{value:08x}")
        os.rename(tmp, path)
    except OSError:
        # Not fatal: the value is still unique enough by the clock.
        try:
            tmp.unlink()
        except OSError:
            pass
    return value
