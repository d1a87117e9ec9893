"""Who the services run as: ``mail_owner`` when the master starts as root.

A master started by root binds its listeners (ports below 1024 included) and
then each worker gives up root for good: supplementary groups reduced to
``mail_owner``'s group, then ``setgid``, then ``setuid`` (in that order, since
after ``setuid`` the others are no longer allowed). A master started by an
ordinary user runs everything as that user.

Parameters read: ``mail_owner``.

Errors: :class:`ConfigError` for an unknown ``mail_owner`` or one with a
privileged user ID (Postfix refuses root as ``mail_owner`` too).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import signal
from dataclasses import dataclass

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Identity:
    """A user to run as."""

    name: str
    uid: int
    gid: int


def service_identity(config: Config) -> Identity | None:
    """``mail_owner`` when running as root, else None (stay who we are)."""
    if os.geteuid() != 0:
        return None
    name = config.get("mail_owner")
    file, line = config.where("mail_owner")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"unknown user name value: {name}", file=file, line=line, param="mail_owner") from None
    if entry.pw_uid == 0:
        raise ConfigError(f"user {name} has privileged user ID: {entry.pw_uid}", file=file, line=line,
                          param="mail_owner")
    return Identity(name, entry.pw_uid, entry.pw_gid)


def drop_privileges(identity: Identity) -> None:
    """Become ``identity`` irrevocably."""
    os.setgroups([identity.gid])
    os.setgid(identity.gid)
    os.setuid(identity.uid)


def die_with_parent() -> None:
    """Ask Linux to kill this process when the master dies (``abort``, a crash).

    Set after the privilege drop, because a change of credentials clears it.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
