"""``passwd-file:/path``: Dovecot's passwd-file format and htpasswd files as a table.

What it does
    Each line of the file is ``user:password:uid:gid:gecos:home:shell:extra``
    (Dovecot's passwd-file, passwd(5) with ``{SCHEME}`` passwords and
    space-separated ``key=value`` extra fields at the end); trailing fields may
    be left out, so an Apache ``htpasswd`` file (``user:hash``, as seed 002's
    vm-pop3d reads them) is a passwd-file too.  Empty lines and lines starting
    with ``#`` are ignored; for a user named twice the first line wins.

    :meth:`PasswdFileTable.lookup` returns the password field (passdb use);
    :meth:`PasswdFileTable.entry` returns every field.

    A name containing ``%d`` selects one file per domain, as Dovecot's
    ``passwd-file`` path variables and vm-pop3d's per-domain files do:
    ``passwd-file:/var/spool/virtual/%d/passwd`` looks ``tex@pippo.it`` up as
    ``tex`` in ``/var/spool/virtual/pippo.it/passwd``.  A key without a domain,
    or a domain that could leave the directory (``/``, a leading ``.``),
    is not found.

    Keys are folded to lower case (user names in the file too) unless the
    table is opened without case folding.  A file is read again when its
    inode, size or modification time changes, so edits by ``htpasswd`` apply
    without a reload.

Errors
    A single file that is missing when the table is opened raises
    :class:`TableConfigError` ``open database FILE: REASON`` (texthash's
    Postfix text); a file that cannot be read later raises
    :class:`TableRetry`.  A per-domain file that does not exist means "not
    found".  Malformed lines (no ``:``) are skipped with a warning naming
    the file and line.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError, TableRetry
from mailhorn.tables.source import check_name, fold_key, utf8_enabled

#: The path variable that selects a per-domain file.
DOMAIN_VARIABLE = "%d"


@dataclass(frozen=True)
class PasswdEntry:
    """One line of a passwd-file; absent fields are empty strings.

    ``extra`` holds the ``key=value`` extra fields (Dovecot's userdb/passdb
    extra fields, e.g. ``userdb_quota_rule=*:storage=100M``); a bare word
    maps to ``""``.
    """

    user: str
    password: str
    uid: str = ""
    gid: str = ""
    gecos: str = ""
    home: str = ""
    shell: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def parse_line(line: str) -> PasswdEntry | None:
    """Split one passwd-file line; None when it has no ``user:`` part."""
    user, sep, rest = line.partition(":")
    if not sep or not user:
        return None
    # The extra fields may contain ':' (quota_rule=*:storage=1G), so split
    # only the six fields that precede them.
    fields = rest.split(":", 6)
    fields += [""] * (7 - len(fields))
    extra: dict[str, str] = {}
    for word in fields[6].split():
        key, _, value = word.partition("=")
        extra.setdefault(key, value)
    return PasswdEntry(user, fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], extra)


@dataclass
class _Loaded:
    """One file as last read, with the stat values that identify that version."""

    signature: tuple[int, int, int, int]
    entries: dict[str, PasswdEntry]


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class PasswdFileTable:
    """A passwd-file (or one per domain with ``%d`` in the name)."""

    type = "passwd-file"

    def __init__(self, name: str, fold: bool, utf8: bool) -> None:
        self.name = name
        self.fold = fold
        self.utf8 = utf8
        self.per_domain = DOMAIN_VARIABLE in name
        self._files: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def _key(self, key: str) -> str:
        return fold_key(key, self.utf8) if self.fold else key

    def _read(self, path: str, st: os.stat_result) -> _Loaded:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fp:
                text = fp.read()
        except OSError as exc:
            raise TableRetry(f"open database {path}: {os.strerror(exc.errno or 0)}") from exc
        entries: dict[str, PasswdEntry] = {}
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            entry = parse_line(line)
            if entry is None:
                log.warning(f"{path}, line {number}: expected format: user:password[:uid:gid:gecos:home:shell:extra]")
                continue
            entries.setdefault(self._key(entry.user), entry)
        return _Loaded(_signature(st), entries)

    def _file(self, path: str, missing_ok: bool) -> dict[str, PasswdEntry] | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise TableRetry(f"open database {path}: No such file or directory") from None
        except OSError as exc:
            raise TableRetry(f"open database {path}: {os.strerror(exc.errno or 0)}") from exc
        with self._lock:
            loaded = self._files.get(path)
            if loaded is None or loaded.signature != _signature(st):
                loaded = self._read(path, st)
                self._files[path] = loaded
            return loaded.entries

    def _locate(self, key: str) -> tuple[str, str] | None:
        """(file path, user name to find) for ``key``, or None when no file can hold it."""
        if not self.per_domain:
            return self.name, key
        local, at, domain = key.rpartition("@")
        if not at or not local or not domain:
            return None
        domain = domain.lower()
        if "/" in domain or domain.startswith(".") or "\0" in domain or "%" in domain:
            return None
        return self.name.replace(DOMAIN_VARIABLE, domain), local

    def entry(self, key: str) -> PasswdEntry | None:
        """The whole entry for ``key``, or None."""
        where = self._locate(key)
        if where is None:
            return None
        path, user = where
        entries = self._file(path, missing_ok=self.per_domain)
        if entries is None:
            return None
        return entries.get(self._key(user))

    def lookup(self, key: str) -> str | None:
        """The password field of ``key``'s line, or None."""
        found = self.entry(key)
        return None if found is None else found.password


def open_passwd_file(name: str, config: Config, options: OpenOptions) -> PasswdFileTable:
    """Open ``passwd-file:/path`` (or ``passwd-file:/dir/%d/file``)."""
    check_name("passwd-file", name)
    if not name.startswith("/"):
        raise TableConfigError(f"passwd-file:{name}: the file name must be an absolute path")
    table = PasswdFileTable(name, options.fold_case, utf8_enabled(config))
    if not table.per_domain and not options.create:
        try:
            os.stat(name)
        except OSError as exc:
            raise TableConfigError(f"open database {name}: {os.strerror(exc.errno or 0)}") from exc
    return table
