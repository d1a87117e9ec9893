"""Maildir messages as Dovecot lays them out: file names, listing, flags, expunge.

What it does
    *Delivery* is :mod:`mailhorn.mailstore.writer`, with the names made here
    (:func:`unique_base`, :func:`info_suffix`).

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

import bisect
import errno
import functools
import itertools
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol, cast

from mailhorn.filechunks import FileChunks, read_chunks
from mailhorn.mailstore import quota as quotamod
from mailhorn.mailstore import uidlist as uidlistmod
from mailhorn.mailstore.errors import DiskFull, NoSuchFolder, NoSuchMessage
from mailhorn.mailstore.folders import folder_path, is_maildir, make_maildir
from mailhorn.mailstore.keywords import KEYWORDS, KeywordMap, valid_keyword
from mailhorn.mailstore.lock import DotLock

#: Maildir flag letters (cr.yp.to/proto/maildir.html), in the ASCII order names use.
SYSTEM_FLAGS: Final = "DFPRST"
#: IMAP system flags of the letters Dovecot maps (RFC 3501 §2.3.2).
IMAP_FLAGS: Final[dict[str, str]] = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered",
                              "S": "\\Seen", "T": "\\Deleted"}
#: Read and write in chunks of this size: memory stays bounded for any message.
CHUNK: Final = 64 * 1024
#: Files in tmp/ older than this are leftovers (the Maildir specification's 36 hours).
TMP_MAX_AGE: Final = 36 * 3600

_DELIVERY_COUNTER: Final = itertools.count(1)
_SIZE_RE: Final = re.compile(r",S=(\d+)")
_VSIZE_RE: Final = re.compile(r",W=(\d+)")
_ORDER_RE: Final = re.compile(r"^(\d+)\.(?:M(\d+))?")


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

def _file_mtime(file: str) -> float:
    """The mtime of a message file, following it when a flag change renamed it meanwhile."""
    try:
        return os.stat(file).st_mtime
    except FileNotFoundError:
        pass
    box = os.path.dirname(os.path.dirname(file))
    base = os.path.basename(file).split(":", 1)[0]
    for sub in ("cur", "new"):
        try:
            names = os.listdir(os.path.join(box, sub))
        except FileNotFoundError:
            continue
        for name in names:
            if name.split(":", 1)[0] == base:
                try:
                    return os.stat(os.path.join(box, sub, name)).st_mtime
                except FileNotFoundError:
                    continue
    raise NoSuchMessage(f"message file {base} is gone")


class Message:
    """One message as listed: UID, file, sizes, flags, keywords and INTERNALDATE.

    Compact (``__slots__``, the file as a ``str``): a session holds one per
    message of its mailbox. The sizes come from the ``,S=``/``,W=`` fields
    of the name, so listing needs no ``stat()``; INTERNALDATE (the file's
    mtime) is read when first asked for and then kept.
    """

    __slots__ = ("uid", "file", "size", "vsize", "flags", "keywords", "_mtime")

    def __init__(self, uid: int, file: str | os.PathLike[str], size: int, vsize: int | None, flags: str,
                 keywords: tuple[str, ...], internal_date: float | None = None) -> None:
        self.uid = uid
        self.file = os.fspath(file)
        self.size = size
        self.vsize = vsize
        self.flags = flags
        self.keywords = keywords
        self._mtime = internal_date

    @property
    def path(self) -> Path:
        return Path(self.file)

    @property
    def filename(self) -> str:
        return os.path.basename(self.file)

    @property
    def base(self) -> str:
        return os.path.basename(self.file).split(":", 1)[0]

    @property
    def recent_dir(self) -> bool:
        """Whether the file is still in ``new/``."""
        return os.path.basename(os.path.dirname(self.file)) == "new"

    @property
    def internal_date(self) -> float:
        """The file's mtime (IMAP INTERNALDATE); NoSuchMessage when the file is gone."""
        if self._mtime is None:
            self._mtime = _file_mtime(self.file)
        return self._mtime

    def moved(self, file: str, flags: str | None = None, keywords: tuple[str, ...] | None = None) -> Message:
        """The same message under another file name (flag change, new/ to cur/)."""
        return Message(self.uid, file, self.size, self.vsize, self.flags if flags is None else flags,
                       self.keywords if keywords is None else keywords, self._mtime)

    def imap_flags(self) -> tuple[str, ...]:
        """IMAP flags: system flags then keywords."""
        return tuple(IMAP_FLAGS[c] for c in self.flags if c in IMAP_FLAGS) + self.keywords

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.uid, self.file, self.size, self.vsize, self.flags, self.keywords) == (
            other.uid, other.file, other.size, other.vsize, other.flags, other.keywords)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Message(uid={self.uid}, file={self.file!r}, size={self.size}, vsize={self.vsize}, "
                f"flags={self.flags!r}, keywords={self.keywords!r})")


def check_flags(flags: str) -> str:
    bad = set(flags) - set(SYSTEM_FLAGS)
    if bad:
        raise ValueError(f"invalid Maildir flag letters: {''.join(sorted(bad))}")
    return sort_flags(flags)


# --- a mailbox: listing, flags, expunge ----------------------------------------------------

#: A directory modified this recently (seconds) may change again within the same mtime
#: tick without its mtime moving, so it is listed again whatever its mtime says
#: (Dovecot's caveat for Maildir syncing).
RECENT_MTIME: Final = 2.0

_Stamp = tuple[int, int, int]   # inode, size, mtime in ns


def _stamp(path: str) -> _Stamp | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _order_key(base: str) -> tuple[int, int, str]:
    m = _ORDER_RE.match(base)
    if not m:
        return (0, 0, base)
    return (int(m.group(1)), int(m.group(2) or 0), base)


class Mailbox:
    """One mailbox (INBOX or a Maildir++ folder) of a Maildir root.

    The object remembers what it listed: :meth:`sync` looks at the mtimes of
    ``new/`` and ``cur/`` and at ``dovecot-uidlist`` and ``dovecot-keywords``,
    lists again only a directory that changed (or changed within the last
    :data:`RECENT_MTIME` seconds), re-reads the uidlist only when it changed,
    and takes the uidlist lock only when a file needs a UID or a record lost
    its file. Unchanged messages keep their :class:`Message` objects.
    """

    def __init__(self, root: str | os.PathLike[str], name: str = "INBOX") -> None:
        self.root = Path(root)
        self.name = name
        self.path = folder_path(self.root, name)
        self.dir = str(self.path)
        self.uidvalidity = 0
        self.next_uid = 1
        #: Bumped whenever the listing :meth:`sync` returns changes.
        self.generation = 0
        self._uidlist_path = os.path.join(self.dir, uidlistmod.UIDLIST)
        self._keywords_path = os.path.join(self.dir, KEYWORDS)
        self._listing: dict[str, dict[str, str]] = {"new": {}, "cur": {}}   # sub -> base -> name
        self._dir_mtime: dict[str, int] = {}     # sub -> mtime at the last listing, when trusted
        self._ul: uidlistmod.UidList | None = None
        self._ul_stamp: _Stamp | None = None
        self._records: dict[str, uidlistmod.UidRecord] = {}
        self._kwmap = KeywordMap()
        self._kw_stamp: _Stamp | None = None
        self._kw_read = False
        self._messages: dict[str, Message] = {}  # base -> message
        self._listed: list[Message] | None = None
        self._letters: dict[str, tuple[str, tuple[str, ...]]] = {}   # flags field -> flags, keywords

    def _lock(self) -> DotLock:
        return DotLock(self._uidlist_path)

    # -- what is on disk --------------------------------------------------------------------

    def _list_dir(self, sub: str) -> None:
        """List ``sub``; its mtime is trusted next time only when it is old enough."""
        path = os.path.join(self.dir, sub)
        try:
            mtime = os.stat(path).st_mtime_ns
            names = os.listdir(path)
        except FileNotFoundError:
            raise NoSuchFolder(f"Mailbox doesn't exist: {self.name}") from None
        self._listing[sub] = {name.split(":", 1)[0]: name for name in names if name[:1] != "."}
        if time.time() - mtime / 1e9 >= RECENT_MTIME:
            self._dir_mtime[sub] = mtime
        else:
            self._dir_mtime.pop(sub, None)

    def _dir_changed(self, sub: str) -> bool:
        known = self._dir_mtime.get(sub)
        if known is None:
            return True
        try:
            return os.stat(os.path.join(self.dir, sub)).st_mtime_ns != known
        except FileNotFoundError:
            return True

    def _load_uidlist(self) -> None:
        """Read ``dovecot-uidlist`` (no lock needed: writers append or rename)."""
        try:
            with open(self._uidlist_path, "rb") as fh:
                st = os.fstat(fh.fileno())
                data = fh.read()
        except FileNotFoundError:
            self._set_uidlist(None, None)
            return
        self._set_uidlist(uidlistmod.parse(data), (st.st_ino, st.st_size, st.st_mtime_ns))

    def _set_uidlist(self, ul: uidlistmod.UidList | None, stamp: _Stamp | None) -> None:
        self._ul = ul
        self._ul_stamp = stamp
        self._records = {} if ul is None else {r.base: r for r in ul.records}
        if ul is not None:
            self.uidvalidity = ul.uidvalidity
            self.next_uid = max(self.next_uid, ul.effective_next_uid())

    def _uidlist_locked(self) -> uidlistmod.UidList | None:
        """The current uidlist, read again only when it changed; caller holds the lock."""
        if self._ul is None or _stamp(self._uidlist_path) != self._ul_stamp:
            self._load_uidlist()
        return self._ul

    def _after_write(self, ul: uidlistmod.UidList) -> None:
        """We changed the uidlist under the lock: what we hold is what is on disk."""
        self._set_uidlist(ul, _stamp(self._uidlist_path))

    def _read_keywords(self) -> bool:
        """Read ``dovecot-keywords`` when it changed; True when it did."""
        stamp = _stamp(self._keywords_path)
        if self._kw_read and stamp == self._kw_stamp:
            return False
        self._kwmap = KeywordMap.read(self.path)
        self._kw_stamp = stamp
        self._kw_read = True
        self._letters.clear()
        return True

    def changed_on_disk(self) -> bool:
        """A cheap look (four ``stat()``): whether :meth:`sync` may find something new."""
        if self._listed is None or self._dir_changed("new") or self._dir_changed("cur"):
            return True
        return (_stamp(self._uidlist_path) != self._ul_stamp
                or _stamp(self._keywords_path) != self._kw_stamp)

    # -- listing ----------------------------------------------------------------------------

    def _files(self) -> dict[str, tuple[str, str]]:
        """Current files by base name as (sub, name); ``cur/`` wins over ``new/``."""
        files = {base: ("new", name) for base, name in self._listing["new"].items()}
        files.update((base, ("cur", name)) for base, name in self._listing["cur"].items())
        return files

    def _letters_of(self, info: str) -> tuple[str, tuple[str, ...]]:
        found = self._letters.get(info)
        if found is None:
            letters = info[2:].partition(",")[0] if info.startswith("2,") else ""
            upper = sort_flags(c for c in letters if c.isupper())
            found = (upper, self._kwmap.names_of("".join(c for c in letters if c.islower())))
            self._letters[info] = found
        return found

    def _make(self, rec: uidlistmod.UidRecord, sub: str, name: str) -> Message | None:
        file = f"{self.dir}/{sub}/{name}"
        base, _, info = name.partition(":")
        flags, keywords = self._letters_of(info)
        m = _SIZE_RE.search(base)
        w = _VSIZE_RE.search(base)
        vsize = int(w.group(1)) if w else None
        if vsize is None:
            for item in rec.ext.split():
                if item.startswith("W") and item[1:].isdigit():
                    vsize = int(item[1:])
        mtime: float | None = None
        if m:
            size = int(m.group(1))
        else:
            try:
                st = os.stat(file)
            except FileNotFoundError:
                return None
            size, mtime = st.st_size, st.st_mtime
        return Message(rec.uid, file, size, vsize, flags, keywords, mtime)

    def _build(self, files: dict[str, tuple[str, str]], rebuild: bool) -> None:
        assert self._ul is not None
        old = {} if rebuild else self._messages
        messages: dict[str, Message] = {}
        listed: list[Message] = []
        prefix = self.dir + "/"
        for rec in self._ul.records:
            base = rec.base
            found = files.get(base)
            if found is None:
                continue
            sub, name = found
            msg = old.get(base)
            if msg is None or msg.uid != rec.uid or msg.file != f"{prefix}{sub}/{name}":
                msg = self._make(rec, sub, name)
                if msg is None:
                    continue
            messages[base] = msg
            listed.append(msg)
        self._messages = messages
        self._listed = listed
        self.generation += 1

    def _sync_locked(self) -> None:
        """Give new files UIDs and drop records whose files are gone (Dovecot's uidlist sync)."""
        with self._lock():
            self._list_dir("new")  # new/ first: a file moved to cur/ meanwhile is seen there
            self._list_dir("cur")
            self._load_uidlist()
            ul = self._ul
            created = ul is None
            if ul is None:
                ul = uidlistmod.UidList(uidvalidity=uidlistmod.next_uidvalidity(self.root))
            files = self._files()
            kept = [r for r in ul.records if r.base in files]
            known = self._records
            fresh = sorted((b for b in files if b not in known), key=_order_key)
            next_uid = ul.effective_next_uid()
            added = []
            for base in fresh:
                added.append(uidlistmod.UidRecord(next_uid, files[base][1]))
                next_uid += 1
            if created or len(kept) != len(ul.records):
                ul.records = kept + added
                ul.next_uid = next_uid
                uidlistmod.write(self.path, ul)
                self._after_write(ul)
            elif added:
                uidlistmod.append(self.path, added)
                ul.records = kept + added
                self._after_write(ul)
            self.next_uid = max(next_uid, ul.effective_next_uid())

    def sync(self) -> list[Message]:
        """Assign UIDs to new files, forget vanished ones, and list messages by UID."""
        rebuild = self._read_keywords()
        changed = rebuild or self._listed is None
        for sub in ("new", "cur"):  # new/ first: a file moved to cur/ meanwhile is seen there
            if self._dir_changed(sub):
                before = self._listing[sub]
                self._list_dir(sub)
                changed = changed or self._listing[sub] != before
        if self._ul is None or _stamp(self._uidlist_path) != self._ul_stamp:
            self._load_uidlist()
            changed = True
        if not changed and self._listed is not None:
            return list(self._listed)
        files = self._files()
        if self._ul is None or files.keys() - self._records.keys() or self._records.keys() - files.keys():
            self._sync_locked()
            files = self._files()
        self._build(files, rebuild)
        assert self._listed is not None
        return list(self._listed)

    # -- our own changes ----------------------------------------------------------------------

    def _moved(self, msg: Message) -> None:
        """Record that a message now has the file ``msg.file`` (we renamed it)."""
        base = msg.base
        sub = os.path.basename(os.path.dirname(msg.file))
        other = "new" if sub == "cur" else "cur"
        self._listing[other].pop(base, None)
        self._listing.setdefault(sub, {})[base] = msg.filename
        if self._listed is None or base not in self._messages:
            return
        self._messages[base] = msg
        index = bisect.bisect_left(self._listed, msg.uid, key=lambda m: m.uid)
        if index < len(self._listed) and self._listed[index].uid == msg.uid:
            self._listed[index] = msg
            self.generation += 1

    def claim_recent(self, msg: Message) -> Message | None:
        """Move a ``new/`` file to ``cur/`` (keeping its info part); None when someone else did."""
        name = msg.filename
        base, sep, info = name.partition(":")
        letters, extra = "", ""
        if sep and info.startswith("2,"):
            letters, comma, rest = info[2:].partition(",")
            extra = comma + rest
        target = f"{self.dir}/cur/{base}{info_suffix(letters, extra)}"
        try:
            os.rename(msg.file, target)
        except FileNotFoundError:
            return None
        moved = msg.moved(target)
        self._moved(moved)
        return moved

    def assign_uids(self, filenames: list[str]) -> list[int]:
        """The UIDs of files just delivered here (APPEND, COPY), given under the lock.

        A file that has a record already keeps its UID; the others get the
        next UIDs in the order given, appended to ``dovecot-uidlist``
        (RFC 4315 APPENDUID/COPYUID report them).
        """
        with self._lock():
            ul = self._uidlist_locked()
            if ul is not None:
                next_uid = ul.effective_next_uid()
                uids: list[int] = []
                added: list[uidlistmod.UidRecord] = []
                for name in filenames:
                    rec = self._records.get(name.split(":", 1)[0])
                    if rec is None:
                        rec = uidlistmod.UidRecord(next_uid, name)
                        added.append(rec)
                        next_uid += 1
                    uids.append(rec.uid)
                if added:
                    uidlistmod.append(self.path, added)
                    ul.records = ul.records + added
                    self._after_write(ul)
                return uids
        uid_of = {m.base: m.uid for m in self.sync()}   # no uidlist yet: create it
        return [uid_of.get(name.split(":", 1)[0], 0) for name in filenames]

    def _locate(self, base: str) -> str | None:
        for sub in ("cur", "new"):
            try:
                names = os.listdir(os.path.join(self.dir, sub))
            except FileNotFoundError:
                continue
            for name in names:
                if name.split(":", 1)[0] == base:
                    return f"{self.dir}/{sub}/{name}"
        return None

    def open(self, msg: Message) -> BinaryIO:
        """Open a message for reading, following it if its flags renamed it."""
        file: str | None = msg.file
        for _ in range(3):
            if file is None:
                break
            try:
                return open(file, "rb")
            except FileNotFoundError:
                file = self._locate(msg.base)
        raise NoSuchMessage(f"message UID {msg.uid} is gone")

    def read(self, msg: Message) -> Iterator[bytes]:
        """Stream a message's bytes in bounded chunks (the file closes when they end or are dropped)."""
        stream = self.open(msg)
        return FileChunks(stream, read_chunks(stream, CHUNK))

    def set_flags(self, msg: Message, *, add: str = "", remove: str = "",
                  add_keywords: Iterable[str] = (), remove_keywords: Iterable[str] = ()) -> Message:
        """Change flags and keywords by renaming the file into ``cur/``; the UID stays."""
        add = check_flags(add)
        remove = check_flags(remove)
        add_kw = list(add_keywords)
        remove_kw = list(remove_keywords)
        for kw in add_kw:
            if not valid_keyword(kw):
                raise ValueError(f"invalid keyword {kw!r}")
        with self._lock():
            if add_kw or remove_kw:
                kwmap = KeywordMap.read(self.path)
                if kwmap.assign(add_kw):
                    kwmap.write(self.path)
            else:
                self._read_keywords()
                kwmap = self._kwmap
            add_letters = add + "".join(kwmap.letter_of(k) or "" for k in add_kw)
            remove_letters = remove + "".join(kwmap.letter_of(k) or "" for k in remove_kw)
            file: str | None = msg.file
            letters = msg.flags
            for _ in range(5):
                if file is None:
                    break
                info = parse_name(os.path.basename(file))
                letters = sort_flags((set(info.flags) | set(add_letters)) - set(remove_letters))
                target = f"{self.dir}/cur/{info.base}{info_suffix(letters, info.extra)}"
                if target == file:
                    break
                try:
                    os.rename(file, target)
                    file = target
                    break
                except FileNotFoundError:
                    file = self._locate(msg.base)  # renamed by someone else: look again
            if file is None:
                raise NoSuchMessage(f"message UID {msg.uid} is gone")
            upper = sort_flags(c for c in letters if c.isupper())
            keywords = kwmap.names_of("".join(c for c in letters if c.islower()))
            updated = msg.moved(file, upper, keywords)
            self._moved(updated)
        return updated

    def expunge(self, messages: Iterable[Message]) -> int:
        """Remove messages, their uidlist records and their quota; return how many went."""
        gone = 0
        freed = 0
        with self._lock():
            bases: set[str] = set()
            for msg in messages:
                base = msg.base
                bases.add(base)
                file: str | None = msg.file
                for _ in range(2):
                    if file is None:
                        break
                    try:
                        os.unlink(file)
                    except FileNotFoundError:
                        file = self._locate(base)
                        continue
                    gone += 1
                    freed += msg.size
                    break
            ul = self._uidlist_locked()
            if ul is not None and bases:
                ul.next_uid = ul.effective_next_uid()
                ul.records = [r for r in ul.records if r.base not in bases]
                uidlistmod.write(self.path, ul)
                self._after_write(ul)
            for listing in self._listing.values():
                for base in bases:
                    listing.pop(base, None)
            if self._listed is not None:
                for base in bases:
                    self._messages.pop(base, None)
                self._listed = [m for m in self._listed if m.base not in bases]
                self.generation += 1
        if gone:
            quotamod.update(self.path, -freed, -gone)
        return gone


def open_mailbox(root: str | os.PathLike[str], name: str = "INBOX") -> Mailbox:
    """A :class:`Mailbox`; raises when the mailbox does not exist."""
    box = Mailbox(root, name)
    if not is_maildir(box.path):
        raise NoSuchFolder(f"Mailbox doesn't exist: {name}")
    return box
