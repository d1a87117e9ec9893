"""Maildir++ quota: the ``maildirsize`` file.

What it does
    Implements the Maildir++ quota protocol (Courier's README.maildirquota,
    followed by Dovecot's ``quota = maildir`` backend):

    * ``maildirsize`` lives in the Maildir++ root (a folder ``.Name`` that
      holds ``maildirfolder`` defers to its parent). Its first line is the
      quota definition, e.g. ``10000000S,1000C`` (bytes, messages; 0 or a
      missing member means no limit); every further line is
      ``<bytes> <count>`` and the usage is their sum. Dovecot writes the
      lines without padding, and so does this module.
    * A delivery appends ``<size> 1`` after the message is in ``new/``; an
      expunge appends ``-<size> -1``. Appends use ``O_APPEND``: one short
      ``write()`` per line, no lock (the protocol is lockless by design).
    * The file is recalculated from the messages (``,S=`` in file names, else
      ``stat()``) when it is missing but limits are configured, when it has
      reached 5120 bytes, when the configured limits differ from its header,
      and when it says the Maildir is over quota and it either has more than
      one usage line or is at least 15 minutes old. Recalculation counts
      ``new/`` and ``cur/`` of the root and of every folder (Dovecot counts
      Trash too), writes ``tmp/`` then renames over ``maildirsize``, and
      removes the result if a directory changed meanwhile. Dovecot holds
      ``maildirsize.lock`` while rewriting; so do we, and when another
      process holds it we use our numbers without writing them.

Parameters read
    None: the caller passes configured limits (or None to obey the header).

Errors
    :class:`~mailhorn.mailstore.errors.QuotaExceeded` from :func:`check`.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mailhorn.mailstore.errors import LockTimeout, QuotaExceeded
from mailhorn.mailstore.lock import DotLock

MAILDIRSIZE: Final = "maildirsize"
#: Recalculate once the file reaches this size (README.maildirquota).
RECALC_SIZE: Final = 5120
#: Recalculate an over-quota file at least this old (README.maildirquota).
RECALC_AGE: Final = 15 * 60

_SIZE_RE: Final = re.compile(r",S=(\d+)")


@dataclass(frozen=True)
class QuotaLimits:
    """Storage (bytes) and message-count limits; None means unlimited."""

    storage: int | None = None
    messages: int | None = None

    @classmethod
    def parse(cls, text: str) -> QuotaLimits:
        """Parse a Maildir++ quota definition such as ``10000000S,1000C``."""
        storage: int | None = None
        messages: int | None = None
        for item in text.strip().split(","):
            item = item.strip()
            if not item:
                continue
            if len(item) < 2 or not item[:-1].isdigit() or item[-1] not in "SC":
                raise ValueError(f"invalid quota definition {text!r}: {item!r} is not <number>S or <number>C")
            value = int(item[:-1]) or None
            if item[-1] == "S":
                storage = value
            else:
                messages = value
        return cls(storage, messages)

    def format(self) -> str:
        parts = []
        if self.storage is not None:
            parts.append(f"{self.storage}S")
        if self.messages is not None:
            parts.append(f"{self.messages}C")
        return ",".join(parts) if parts else "0S"

    def exceeded(self, used_bytes: int, used_count: int) -> bool:
        return ((self.storage is not None and used_bytes > self.storage)
                or (self.messages is not None and used_count > self.messages))


@dataclass(frozen=True)
class QuotaUsage:
    """Usage of a Maildir++ and the limits that apply."""

    limits: QuotaLimits
    used_bytes: int
    used_count: int
    recalculated: bool = False


def quota_root(maildir: Path) -> Path:
    """The Maildir++ root that holds ``maildirsize`` for ``maildir``.

    README.maildirquota: a directory holding ``maildirfolder`` is a folder, so
    back up to the parent. Dovecot also puts ``maildirfolder`` in roots it
    creates, hence the extra test that the folder's name starts with a dot.
    """
    if os.path.exists(os.path.join(maildir, "maildirfolder")) and maildir.name.startswith(".") \
            and os.path.isdir(os.path.join(maildir.parent, "cur")):
        return maildir.parent
    return maildir


@dataclass
class _FileState:
    limits: QuotaLimits
    used_bytes: int
    used_count: int
    usage_lines: int
    file_size: int
    mtime: float


def _read(root: Path) -> _FileState | None:
    try:
        with open(os.path.join(root, MAILDIRSIZE), "rb") as fh:
            data = fh.read(RECALC_SIZE)
            st = os.fstat(fh.fileno())
    except FileNotFoundError:
        return None
    text = data.decode("ascii", "replace")
    lines = text.split("\n")
    try:
        limits = QuotaLimits.parse(lines[0])
    except ValueError:
        limits = QuotaLimits()
    used_bytes = used_count = usage_lines = 0
    for line in lines[1:]:
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            used_bytes += int(parts[0])
            used_count += int(parts[1])
        except ValueError:
            continue
        usage_lines += 1
    return _FileState(limits, used_bytes, used_count, usage_lines, max(st.st_size, len(data)), st.st_mtime)


def _maildirs(root: Path) -> list[Path]:
    dirs = [root]
    try:
        for entry in os.scandir(root):
            if entry.name.startswith(".") and entry.name not in (".", "..") and entry.is_dir(follow_symlinks=False):
                dirs.append(Path(entry.path))
    except FileNotFoundError:
        pass
    return dirs


def _dir_mtimes(root: Path) -> dict[str, int]:
    stamps: dict[str, int] = {}
    for box in _maildirs(root):
        for sub in ("new", "cur"):
            try:
                stamps[str(box / sub)] = os.stat(box / sub).st_mtime_ns
            except FileNotFoundError:
                continue
    return stamps


def count_usage(root: Path) -> tuple[int, int]:
    """Bytes and messages in ``new/`` and ``cur/`` of the root and all its folders."""
    total = count = 0
    for box in _maildirs(root):
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(box / sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                m = _SIZE_RE.search(entry.name.split(":", 1)[0])
                if m:
                    size = int(m.group(1))
                else:
                    try:
                        size = entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue  # expunged meanwhile: README.maildirquota says ignore it
                total += size
                count += 1
    return total, count


def recalculate(root: Path, limits: QuotaLimits) -> QuotaUsage:
    """Count the Maildir++ and rewrite ``maildirsize`` (see the module text)."""
    before = _dir_mtimes(root)
    used_bytes, used_count = count_usage(root)
    lock = DotLock(root / MAILDIRSIZE, stale_timeout=RECALC_AGE, timeout=0.5)
    try:
        lock.acquire()
    except LockTimeout:
        return QuotaUsage(limits, used_bytes, used_count, recalculated=True)
    try:
        tmp = root / "tmp" / f"{int(time.time())}.P{os.getpid()}.maildirsize"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{limits.format()}\n{used_bytes} {used_count}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, root / MAILDIRSIZE)
        if _dir_mtimes(root) != before:
            # A message came or went while counting: drop the file, the next
            # reader recalculates (README.maildirquota, "Calculating maildirsize").
            try:
                os.unlink(root / MAILDIRSIZE)
            except FileNotFoundError:
                pass
    finally:
        lock.release()
    return QuotaUsage(limits, used_bytes, used_count, recalculated=True)


def get_usage(maildir: Path, limits: QuotaLimits | None = None) -> QuotaUsage | None:
    """Current usage, recalculating when the protocol says so; None when no quota applies.

    ``limits`` are the configured ones; without them the header of
    ``maildirsize`` rules, and without the file there is no quota.
    """
    root = quota_root(maildir)
    state = _read(root)
    if state is None:
        return None if limits is None else recalculate(root, limits)
    effective = limits if limits is not None else state.limits
    if state.file_size >= RECALC_SIZE or (limits is not None and limits != state.limits):
        return recalculate(root, effective)
    return QuotaUsage(effective, state.used_bytes, state.used_count)


def check(maildir: Path, add_bytes: int, add_count: int = 1,
          limits: QuotaLimits | None = None) -> QuotaUsage | None:
    """Raise :class:`QuotaExceeded` when adding would pass a limit; else return the usage."""
    usage = get_usage(maildir, limits)
    if usage is None:
        return None
    if usage.limits.exceeded(usage.used_bytes + add_bytes, usage.used_count + add_count) \
            and not usage.recalculated:
        root = quota_root(maildir)
        state = _read(root)
        if state is None or state.usage_lines > 1 or time.time() - state.mtime >= RECALC_AGE:
            usage = recalculate(root, usage.limits)
    if usage.limits.exceeded(usage.used_bytes + add_bytes, usage.used_count + add_count):
        raise QuotaExceeded(
            f"Quota exceeded (mailbox for user is full): {usage.used_bytes}+{add_bytes} bytes "
            f"of {usage.limits.storage}, {usage.used_count}+{add_count} messages of {usage.limits.messages}",
            used_bytes=usage.used_bytes, used_count=usage.used_count,
            limit_bytes=usage.limits.storage, limit_count=usage.limits.messages)
    return usage


def update(maildir: Path, delta_bytes: int, delta_count: int) -> None:
    """Append a usage line when ``maildirsize`` exists (never creates it)."""
    root = quota_root(maildir)
    try:
        fd = os.open(root / MAILDIRSIZE, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return
    try:
        os.write(fd, f"{delta_bytes} {delta_count}\n".encode("ascii"))
    finally:
        os.close(fd)


def set_limits(maildir: Path, limits: QuotaLimits) -> QuotaUsage:
    """Install ``maildirsize`` with these limits and the current usage (``maildirmake -q``)."""
    return recalculate(quota_root(maildir), limits)
