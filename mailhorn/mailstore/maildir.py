"""Maildir messages as Dovecot lays them out: delivery, listing, flags, expunge.

What it does
    *Delivery* (:func:`deliver`) follows the Maildir protocol with Dovecot's
    file names: the message is streamed in bounded chunks to
    ``tmp/<time>.M<usec>P<pid>Q<n>.<host>``, fsynced, hard-linked into
    ``new/`` (or ``cur/`` with ``:2,<flags>`` when flags or keywords are
    given) as ``…,S=<size>,W=<vsize>`` and the directory fsynced; then the
    ``tmp/`` name is removed. ``S=`` is the file size and ``W=`` the size with
    CRLF line ends (RFC822.SIZE). A failure before the link removes the tmp
    file and leaves nothing in ``new/``; a crash after the link leaves a
    complete message and at worst a stale ``tmp/`` file (removed by
    :func:`clean_tmp` after 36 hours, as Dovecot does). Maildir++ quota is
    checked before writing (with the size hint) and again with the real size,
    and ``maildirsize`` is updated after the link. ENOSPC/EDQUOT become
    :class:`~mailhorn.mailstore.errors.DiskFull`.

    *Listing* (:meth:`Mailbox.sync`) reads ``new/`` then ``cur/`` under
    ``dovecot-uidlist.lock``, keeps the UIDs recorded in ``dovecot-uidlist``
    (matched by the file name before ``:``, which flag changes never touch),
    gives new files the next UIDs in delivery order (time, microseconds,
    name), and forgets files that are gone.

    *Flags* are the ``:2,`` letters in ASCII order: ``D`` draft, ``F``
    flagged, ``P`` passed, ``R`` replied, ``S`` seen, ``T`` trashed, and the
    keywords ``a``..``z`` of ``dovecot-keywords``. Anything after a comma in
    the flags field is Dovecot's extension space and is kept. A flag change
    renames the file into ``cur/`` under the uidlist lock, looking the file
    up again if another process renamed it meanwhile.

Parameters read
    None: callers pass paths and limits.

Errors
    :mod:`mailhorn.mailstore.errors`; ``OSError`` for other I/O failures.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from mailhorn.mailstore import quota as quotamod
from mailhorn.mailstore import uidlist as uidlistmod
from mailhorn.mailstore.errors import DiskFull, NoSuchFolder, NoSuchMessage
from mailhorn.mailstore.folders import folder_path, is_maildir, make_maildir
from mailhorn.mailstore.keywords import KeywordMap, valid_keyword
from mailhorn.mailstore.lock import DotLock

#: Maildir flag letters (cr.yp.to/proto/maildir.html), in the ASCII order names use.
SYSTEM_FLAGS = "DFPRST"
#: IMAP system flags of the letters Dovecot maps (RFC 3501 §2.3.2).
IMAP_FLAGS: dict[str, str] = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered",
                              "S": "\\Seen", "T": "\\Deleted"}
#: Read and write in chunks of this size: memory stays bounded for any message.
CHUNK = 64 * 1024
#: Files in tmp/ older than this are leftovers (the Maildir specification's 36 hours).
TMP_MAX_AGE = 36 * 3600

_DELIVERY_COUNTER = itertools.count(1)
_SIZE_RE = re.compile(r",S=(\d+)")
_VSIZE_RE = re.compile(r",W=(\d+)")
_ORDER_RE = re.compile(r"^(\d+)\.(?:M(\d+))?")


@runtime_checkable
class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


# --- file names ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _host() -> str:
    """Host name safe in a file name: ``/`` ``:`` ``,`` written as octal escapes (maildir(5))."""
    name = socket.gethostname() or "localhost"
    return name.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


def unique_base() -> str:
    """``<sec>.M<usec>P<pid>Q<n>.<host>``: unique per host, process and delivery."""
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_DELIVERY_COUNTER)}.{_host()}"


@dataclass(frozen=True)
class NameInfo:
    """What a Maildir file name says."""

    base: str
    size: int | None
    vsize: int | None
    flags: str          # the letters before any comma, as found
    extra: str = ""     # ``,…`` after the letters, kept verbatim


def parse_name(filename: str) -> NameInfo:
    base, sep, info = filename.partition(":")
    letters = extra = ""
    if sep and info.startswith("2,"):
        letters, comma, rest = info[2:].partition(",")
        extra = comma + rest
    m = _SIZE_RE.search(base)
    w = _VSIZE_RE.search(base)
    return NameInfo(base, int(m.group(1)) if m else None, int(w.group(1)) if w else None,
                    letters, extra)


def sort_flags(letters: Iterable[str]) -> str:
    """Unique flag letters in ASCII order, as Dovecot writes them."""
    return "".join(sorted(set(letters)))


def info_suffix(letters: str, extra: str = "") -> str:
    return ":2," + sort_flags(letters) + extra


# --- messages ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    """One message as listed: UID, file, sizes, flags, keywords and INTERNALDATE."""

    uid: int
    path: Path
    size: int
    vsize: int | None
    flags: str
    keywords: tuple[str, ...]
    internal_date: float

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def base(self) -> str:
        return self.path.name.split(":", 1)[0]

    @property
    def recent_dir(self) -> bool:
        """Whether the file is still in ``new/``."""
        return self.path.parent.name == "new"

    def imap_flags(self) -> tuple[str, ...]:
        """IMAP flags: system flags then keywords."""
        return tuple(IMAP_FLAGS[c] for c in self.flags if c in IMAP_FLAGS) + self.keywords


@dataclass(frozen=True)
class Delivered:
    """Result of a delivery."""

    path: Path
    size: int
    vsize: int

    @property
    def filename(self) -> str:
        return self.path.name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"mail store is full: {exc.strerror}")
    return exc


def _chunks(source: Readable | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(source, Readable):
        while True:
            chunk = source.read(CHUNK)
            if not chunk:
                return
            yield chunk
    else:
        for chunk in source:
            if chunk:
                yield bytes(chunk)


def _write_tmp(fd: int, source: Readable | Iterable[bytes]) -> tuple[int, int]:
    """Copy the message to ``fd``; return (size, size with CRLF line ends)."""
    size = bare_lf = 0
    prev_cr = False
    for chunk in _chunks(source):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
        size += len(chunk)
        lf = chunk.count(b"\n")
        crlf = chunk.count(b"\r\n") + (1 if prev_cr and chunk[:1] == b"\n" else 0)
        bare_lf += lf - crlf
        prev_cr = chunk[-1:] == b"\r"
    return size, size + bare_lf


def _check_flags(flags: str) -> str:
    bad = set(flags) - set(SYSTEM_FLAGS)
    if bad:
        raise ValueError(f"invalid Maildir flag letters: {''.join(sorted(bad))}")
    return sort_flags(flags)


def deliver(maildir: str | os.PathLike[str], source: Readable | Iterable[bytes], *,
            flags: str = "", keywords: Iterable[str] = (),
            quota_limits: quotamod.QuotaLimits | None = None, enforce_quota: bool = True,
            size_hint: int | None = None, internal_date: float | None = None) -> Delivered:
    """Deliver one message into a Maildir (created when missing); see the module text.

    ``flags`` are Maildir letters (``S`` seen, …) and ``keywords`` IMAP keyword
    names; with either the message goes straight to ``cur/``. ``internal_date``
    sets the file's mtime (IMAP INTERNALDATE).
    """
    box = Path(maildir)
    letters = _check_flags(flags)
    keyword_list = list(dict.fromkeys(keywords))
    for kw in keyword_list:
        if not valid_keyword(kw):
            raise ValueError(f"invalid keyword {kw!r}")
    try:
        if not is_maildir(box):
            make_maildir(box, folder=box.name.startswith(".") and is_maildir(box.parent))
        if enforce_quota:
            quotamod.check(box, size_hint or 0, 1, quota_limits)
    except OSError as exc:
        raise _disk_error(exc) from exc

    base = unique_base()
    tmp_path = box / "tmp" / base
    try:
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _disk_error(exc) from exc
    linked = False
    try:
        try:
            size, vsize = _write_tmp(fd, source)
            os.fsync(fd)
        finally:
            os.close(fd)
        if internal_date is not None:
            os.utime(tmp_path, (internal_date, internal_date))
        if enforce_quota:
            quotamod.check(box, size, 1, quota_limits)
        if keyword_list:
            with DotLock(box / uidlistmod.UIDLIST):
                kwmap = KeywordMap.read(box)
                if kwmap.assign(keyword_list):
                    kwmap.write(box)
            letters = sort_flags(letters + "".join(kwmap.letter_of(k) or "" for k in keyword_list))
        subdir = "cur" if letters else "new"
        suffix = info_suffix(letters) if letters else ""
        while True:
            final = box / subdir / f"{base},S={size},W={vsize}{suffix}"
            try:
                os.link(tmp_path, final)
                linked = True
                break
            except FileExistsError:
                base = unique_base()  # never clobber: pick a new name (clock went back)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK):
                    raise
                os.rename(tmp_path, final)  # file systems without hard links
                linked = True
                break
        _fsync_dir(box / subdir)
    except BaseException as exc:
        if not linked:
            try:
                os.unlink(tmp_path)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise _disk_error(exc) from exc
        raise
    try:
        os.unlink(tmp_path)
    except FileNotFoundError:
        pass
    if enforce_quota:
        quotamod.update(box, size, 1)
    return Delivered(final, size, vsize)


def clean_tmp(maildir: str | os.PathLike[str], max_age: float = TMP_MAX_AGE,
              now: float | None = None) -> int:
    """Remove ``tmp/`` files whose mtime and ctime are both older than ``max_age``; return how many.

    Both times must be old so that a file still being written is never taken.
    """
    removed = 0
    now = time.time() if now is None else now
    for entry in os.scandir(Path(maildir) / "tmp"):
        try:
            st = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False) and now - max(st.st_mtime, st.st_ctime) > max_age:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


# --- a mailbox: listing, flags, expunge ----------------------------------------------------

def _order_key(base: str) -> tuple[int, int, str]:
    m = _ORDER_RE.match(base)
    if not m:
        return (0, 0, base)
    return (int(m.group(1)), int(m.group(2) or 0), base)


class Mailbox:
    """One mailbox (INBOX or a Maildir++ folder) of a Maildir root."""

    def __init__(self, root: str | os.PathLike[str], name: str = "INBOX") -> None:
        self.root = Path(root)
        self.name = name
        self.path = folder_path(self.root, name)
        self.uidvalidity = 0
        self.next_uid = 1

    def _lock(self) -> DotLock:
        return DotLock(self.path / uidlistmod.UIDLIST)

    def _scan(self) -> dict[str, Path]:
        """Current files by base name; ``new/`` first so a file moved to ``cur/`` meanwhile is seen."""
        found: dict[str, Path] = {}
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(self.path / sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                found[entry.name.split(":", 1)[0]] = Path(entry.path)
        return found

    def _message(self, uid: int, path: Path, kwmap: KeywordMap, ext: str = "") -> Message | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        info = parse_name(path.name)
        vsize = info.vsize
        if vsize is None:
            for item in ext.split():
                if item.startswith("W") and item[1:].isdigit():
                    vsize = int(item[1:])
        upper = "".join(c for c in info.flags if c.isupper())
        lower = "".join(c for c in info.flags if c.islower())
        size = info.size if info.size is not None else st.st_size
        return Message(uid, path, size, vsize, sort_flags(upper), kwmap.names_of(lower), st.st_mtime)

    def sync(self) -> list[Message]:
        """Assign UIDs to new files, forget vanished ones, and list messages by UID."""
        if not is_maildir(self.path):
            raise NoSuchFolder(f"Mailbox doesn't exist: {self.name}")
        with self._lock():
            ul = uidlistmod.read(self.path)
            created = ul is None
            if ul is None:
                ul = uidlistmod.UidList(uidvalidity=uidlistmod.next_uidvalidity(self.root))
            files = self._scan()
            known = {r.base for r in ul.records}
            kept = [r for r in ul.records if r.base in files]
            fresh = sorted((b for b in files if b not in known), key=_order_key)
            next_uid = ul.effective_next_uid()
            added = []
            for base in fresh:
                added.append(uidlistmod.UidRecord(next_uid, files[base].name))
                next_uid += 1
            if created or len(kept) != len(ul.records):
                ul.records = kept + added
                ul.next_uid = next_uid
                uidlistmod.write(self.path, ul)
            elif added:
                uidlistmod.append(self.path, added)
                ul.records = kept + added
            self.uidvalidity = ul.uidvalidity
            self.next_uid = max(next_uid, ul.effective_next_uid())
            kwmap = KeywordMap.read(self.path)
            out = []
            for rec in ul.records:
                msg = self._message(rec.uid, files[rec.base], kwmap, rec.ext)
                if msg is not None:
                    out.append(msg)
            return out

    def _locate(self, base: str) -> Path | None:
        return self._scan().get(base)

    def open(self, msg: Message) -> BinaryIO:
        """Open a message for reading, following it if its flags renamed it."""
        for _ in range(3):
            try:
                return open(msg.path, "rb")
            except FileNotFoundError:
                found = self._locate(msg.base)
                if found is None:
                    break
                msg = replace(msg, path=found)
        raise NoSuchMessage(f"message UID {msg.uid} is gone")

    def read(self, msg: Message) -> Iterator[bytes]:
        """Stream a message's bytes in bounded chunks."""
        with self.open(msg) as fh:
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    return
                yield chunk

    def set_flags(self, msg: Message, *, add: str = "", remove: str = "",
                  add_keywords: Iterable[str] = (), remove_keywords: Iterable[str] = ()) -> Message:
        """Change flags and keywords by renaming the file into ``cur/``; the UID stays."""
        add = _check_flags(add)
        remove = _check_flags(remove)
        add_kw = list(add_keywords)
        remove_kw = list(remove_keywords)
        for kw in add_kw:
            if not valid_keyword(kw):
                raise ValueError(f"invalid keyword {kw!r}")
        with self._lock():
            kwmap = KeywordMap.read(self.path)
            if kwmap.assign(add_kw):
                kwmap.write(self.path)
            add_letters = add + "".join(kwmap.letter_of(k) or "" for k in add_kw)
            remove_letters = remove + "".join(kwmap.letter_of(k) or "" for k in remove_kw)
            path: Path | None = msg.path
            for _ in range(5):
                if path is None:
                    break
                info = parse_name(path.name)
                letters = sort_flags((set(info.flags) | set(add_letters)) - set(remove_letters))
                target = self.path / "cur" / (info.base + info_suffix(letters, info.extra))
                if target == path:
                    break
                try:
                    os.rename(path, target)
                    path = target
                    break
                except FileNotFoundError:
                    path = self._locate(msg.base)  # renamed by someone else: look again
            if path is None:
                raise NoSuchMessage(f"message UID {msg.uid} is gone")
            updated = self._message(msg.uid, path, kwmap)
        if updated is None:
            raise NoSuchMessage(f"message UID {msg.uid} is gone")
        return updated

    def expunge(self, messages: Iterable[Message]) -> int:
        """Remove messages, their uidlist records and their quota; return how many went."""
        gone = 0
        freed = 0
        with self._lock():
            bases: set[str] = set()
            for msg in messages:
                path = msg.path if msg.path.exists() else self._locate(msg.base)
                bases.add(msg.base)
                if path is None:
                    continue
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                gone += 1
                freed += msg.size
            ul = uidlistmod.read(self.path)
            if ul is not None and bases:
                ul.next_uid = ul.effective_next_uid()
                ul.records = [r for r in ul.records if r.base not in bases]
                uidlistmod.write(self.path, ul)
        if gone:
            quotamod.update(self.path, -freed, -gone)
        return gone


def open_mailbox(root: str | os.PathLike[str], name: str = "INBOX") -> Mailbox:
    """A :class:`Mailbox`; raises when the mailbox does not exist."""
    box = Mailbox(root, name)
    if not is_maildir(box.path):
        raise NoSuchFolder(f"Mailbox doesn't exist: {name}")
    return box
