"""``unix:passwd.byname`` and ``unix:group.byname``: the system account tables.

The value is the account's line as in /etc/passwd or /etc/group, as Postfix
returns it: ``name:passwd:uid:gid:gecos:dir:shell`` and
``name:passwd:gid:member,member``. Keys are folded to lower case unless
``postmap -f``. The tables cannot be listed or built.

Errors: any other name raises TableConfigError ``unknown table: unix:NAME``.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable
from dataclasses import dataclass

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError
from mailhorn.tables.source import check_name, fold_key


def passwd_line(name: str) -> str | None:
    """The passwd(5) line of user ``name``."""
    try:
        pw = pwd.getpwnam(name)
    except (KeyError, ValueError):
        return None
    return f"{pw.pw_name}:{pw.pw_passwd}:{pw.pw_uid}:{pw.pw_gid}:{pw.pw_gecos}:{pw.pw_dir}:{pw.pw_shell}"


def group_line(name: str) -> str | None:
    """The group(5) line of group ``name``."""
    try:
        gr = grp.getgrnam(name)
    except (KeyError, ValueError):
        return None
    return f"{gr.gr_name}:{gr.gr_passwd}:{gr.gr_gid}:{','.join(gr.gr_mem)}"


#: The maps the unix: type knows, by name.
UNIX_MAPS: dict[str, Callable[[str], str | None]] = {
    "passwd.byname": passwd_line,
    "group.byname": group_line,
}


@dataclass(frozen=True)
class UnixTable:
    """One of :data:`UNIX_MAPS`."""

    name: str
    fold: bool
    type: str = "unix"

    def lookup(self, key: str) -> str | None:
        """The account line for ``key`` or None."""
        return UNIX_MAPS[self.name](fold_key(key, False) if self.fold else key)


def open_unix(name: str, config: Config, options: OpenOptions) -> UnixTable:
    """Open ``unix:passwd.byname`` or ``unix:group.byname``."""
    check_name("unix", name)
    if name not in UNIX_MAPS:
        raise TableConfigError(f"unknown table: unix:{name}")
    return UnixTable(name, options.fold_case)
