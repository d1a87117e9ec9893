"""Reading /etc/shadow: the stored passwords of system accounts (shadow(5)).

What it does
    :func:`shadow_entry` finds one account's line in the shadow file and
    returns its fields; :func:`shadow_password` returns the hash a passdb can
    verify, or None when the account cannot log in with a password.  This is
    what passdb's ``unix:shadow.byname`` table answers (the ``passwd`` file
    only holds ``x`` for such accounts).

    An account never matches (None) when its password field is empty, or
    starts with ``!`` or ``*`` (locked, or no password: passwd(1) ``-l``,
    useradd(8) without a password), or when its expiration date (field 8,
    days since 1970-01-01) has passed, as login(1) with PAM's pam_unix
    refuses such accounts.

Files read
    ``/etc/shadow`` (mode 0640 root:shadow): reading it needs root or the
    ``shadow`` group.  The file is read anew on each lookup, so ``chpasswd``
    and ``passwd`` changes apply at once.

Errors
    :class:`ShadowError` when the file cannot be read (the message names the
    file and the reason, e.g. ``Permission denied``: the process is not root).
    Malformed lines are skipped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

#: Where the system keeps shadow passwords.
SHADOW_FILE = "/etc/shadow"

_DAY = 86400


class ShadowError(Exception):
    """The shadow file cannot be read."""


@dataclass(frozen=True)
class ShadowEntry:
    """The fields of one shadow(5) line that matter for logging in.

    ``expire`` is the account expiration in days since the epoch, None when
    the field is empty.
    """

    name: str
    password: str
    expire: int | None


def _parse_line(line: str) -> ShadowEntry | None:
    fields = line.rstrip("\n").split(":")
    if len(fields) < 2 or not fields[0]:
        return None
    expire: int | None = None
    if len(fields) > 7 and fields[7].strip():
        try:
            expire = int(fields[7])
        except ValueError:
            return None
    return ShadowEntry(fields[0], fields[1], expire)


def shadow_entry(name: str, path: str = SHADOW_FILE) -> ShadowEntry | None:
    """The shadow entry of account ``name`` (exact, case-sensitive), or None."""
    if not name or ":" in name or "\n" in name:
        return None
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fp:
            for line in fp:
                if line.startswith(name + ":"):
                    return _parse_line(line)
    except OSError as exc:
        raise ShadowError(f"open {path}: {os.strerror(exc.errno or 0)}") from exc
    return None


def usable_password(entry: ShadowEntry, now: float | None = None) -> str | None:
    """The entry's hash, or None for a locked, password-less or expired account."""
    pw = entry.password
    if not pw or pw[0] in "!*":
        return None
    if entry.expire is not None and entry.expire >= 0:
        today = int((time.time() if now is None else now) // _DAY)
        # shadow(5): the account is expired on and after the given day.
        if today >= entry.expire:
            return None
    return pw


def shadow_password(name: str, path: str = SHADOW_FILE) -> str | None:
    """The crypt(3) hash of a system account that may log in, or None."""
    entry = shadow_entry(name, path)
    return None if entry is None else usable_password(entry)
