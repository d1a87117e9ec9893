"""Delivery into a Maildir, as Dovecot's and Postfix's Maildir writers do it.

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

Parameters read
    None: callers pass paths and limits.

Errors
    :mod:`mailhorn.mailstore.errors`; ``OSError`` for other I/O failures.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from mailhorn.durable import fsync_directory, write_all
from mailhorn.filechunks import read_chunks
from mailhorn.mailstore import quota as quotamod
from mailhorn.mailstore import uidlist as uidlistmod
from mailhorn.mailstore.errors import DiskFull
from mailhorn.mailstore.folders import is_maildir, make_maildir
from mailhorn.mailstore.keywords import KeywordMap, valid_keyword
from mailhorn.mailstore.lock import DotLock
from mailhorn.mailstore.maildir import (
    CHUNK, TMP_MAX_AGE, Readable, check_flags, info_suffix, sort_flags, unique_base,
)

__all__ = ["Delivered", "clean_tmp", "deliver"]


@dataclass(frozen=True)
class Delivered:
    """Result of a delivery."""

    path: Path
    size: int
    vsize: int

    @property
    def filename(self) -> str:
        return self.path.name


def _disk_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"mail store is full: {exc.strerror}")
    return exc


def _chunks(source: Readable | Iterable[bytes]) -> Iterator[bytes]:
    # hasattr, not isinstance(source, Readable): a runtime Protocol check
    # costs tens of microseconds, and this runs for every delivery.
    if callable(getattr(source, "read", None)):
        yield from read_chunks(cast("BinaryIO", source), CHUNK)
    else:
        for chunk in cast("Iterable[bytes]", source):
            if chunk:
                yield bytes(chunk)


def _write_tmp(fd: int, source: Readable | Iterable[bytes]) -> tuple[int, int]:
    """Copy the message to ``fd``; return (size, size with CRLF line ends)."""
    size = bare_lf = 0
    prev_cr = False
    for chunk in _chunks(source):
        write_all(fd, chunk)
        size += len(chunk)
        lf = chunk.count(b"\n")
        crlf = chunk.count(b"\r\n") + (1 if prev_cr and chunk[:1] == b"\n" else 0)
        bare_lf += lf - crlf
        prev_cr = chunk[-1:] == b"\r"
    return size, size + bare_lf


def deliver(maildir: str | os.PathLike[str], source: Readable | Iterable[bytes], *,
            flags: str = "", keywords: Iterable[str] = (),
            quota_limits: quotamod.QuotaLimits | None = None, enforce_quota: bool = True,
            size_hint: int | None = None, internal_date: float | None = None) -> Delivered:
    """Deliver one message into a Maildir (created when missing); see the module text.

    ``flags`` are Maildir letters (``S`` seen, …) and ``keywords`` IMAP keyword
    names; with either the message goes straight to ``cur/``. ``internal_date``
    sets the file's mtime (IMAP INTERNALDATE).
    """
    # Plain strings, not Path objects: pathlib's parsing was half the Python
    # time of a delivery.
    box = os.fspath(maildir)
    letters = check_flags(flags)
    keyword_list = list(dict.fromkeys(keywords))
    for kw in keyword_list:
        if not valid_keyword(kw):
            raise ValueError(f"invalid keyword {kw!r}")
    quota_applies = False
    try:
        if not is_maildir(box):
            parent = os.path.dirname(box.rstrip("/"))
            make_maildir(Path(box), folder=os.path.basename(box.rstrip("/")).startswith(".") and is_maildir(parent))
        if enforce_quota:
            # Without configured limits and without a maildirsize file no
            # quota applies, and the checks after writing are skipped.
            quota_applies = quotamod.check(Path(box), size_hint or 0, 1, quota_limits) is not None
    except OSError as exc:
        raise _disk_error(exc) from exc

    base = unique_base()
    tmp_path = os.path.join(box, "tmp", base)
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
        if quota_applies:
            quotamod.check(Path(box), size, 1, quota_limits)
        if keyword_list:
            with DotLock(Path(box) / uidlistmod.UIDLIST):
                kwmap = KeywordMap.read(Path(box))
                if kwmap.assign(keyword_list):
                    kwmap.write(Path(box))
            letters = sort_flags(letters + "".join(kwmap.letter_of(k) or "" for k in keyword_list))
        subdir = "cur" if letters else "new"
        suffix = info_suffix(letters) if letters else ""
        while True:
            final = os.path.join(box, subdir, f"{base},S={size},W={vsize}{suffix}")
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
        fsync_directory(os.path.join(box, subdir))
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
    if quota_applies:
        quotamod.update(Path(box), size, 1)
    return Delivered(Path(final), size, vsize)


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
