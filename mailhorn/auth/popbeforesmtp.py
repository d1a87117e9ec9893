"""Pop-before-SMTP: a POP3 or IMAP login lets its client address relay for a while.

What it does
    Seed 002 runs the pop-before-smtp daemon, which watches the POP3 log and
    writes the addresses of clients that logged in into a table Postfix
    consults with ``check_client_access``.  Here pop3d and imapd record each
    successful login themselves (:func:`record_login`), and the lookup table
    type ``popbeforesmtp:`` answers ``OK`` for an address whose login is
    recent enough, nothing otherwise::

        pop_before_smtp_timeout = 30m
        smtpd_recipient_restrictions = permit_mynetworks,
            check_client_access popbeforesmtp:, reject_unauth_destination

    The logins live in one SQLite file, ``$data_directory/pop-before-smtp.sqlite``
    (table ``logins``: client address, expiry time), so every process of the
    master (smtpd, pop3d and imapd workers) sees the same logins; SQLite's
    locking makes concurrent writers safe.  Each write drops expired rows, so
    the file stays as small as the number of recent clients.  IPv6 addresses
    are stored in their compressed form and IPv4-mapped ones as IPv4, so the
    client address smtpd looks up matches whatever form the login came in.

    The table ignores keys that are not IP addresses (check_client_access
    also looks up the client name and its parent domains and networks), and
    its name: ``popbeforesmtp:`` is the usual spelling.

Parameters read
    ``pop_before_smtp_timeout`` (mailhorn; time, default ``0``: logins are not
    recorded; seed 002's daemon used 30 minutes), ``data_directory``.

Errors
    Recording never fails a login: a store that cannot be written is logged
    as a warning.  A lookup that cannot read the store raises
    :class:`~mailhorn.tables.base.TableRetry` (a 4xx at RCPT, never a relay).
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.iopool import offload
from mailhorn.tables.base import OpenOptions, TableRetry

__all__ = ["PARAM", "PopBeforeSmtpTable", "database_path", "open_table", "record", "record_login", "timeout"]

#: The parameter naming the relay window (mailhorn's; Postfix and Dovecot have none).
PARAM = "pop_before_smtp_timeout"
DEFAULT_TIMEOUT = "0"
#: The store's file name in data_directory.
FILE_NAME = "pop-before-smtp.sqlite"
#: How long a writer waits for another process's lock, in seconds.
BUSY_TIMEOUT = 5.0

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def timeout(config: Config) -> int:
    """``pop_before_smtp_timeout`` in seconds (0: off); ConfigError if malformed."""
    value = (config.get(PARAM) if config.raw(PARAM) is not None else DEFAULT_TIMEOUT).strip().lower()
    number, unit = (value[:-1], value[-1]) if value and value[-1] in _UNITS else (value, "s")
    if not number.isdigit():
        file, line = config.where(PARAM)
        raise ConfigError(f"invalid time value: {PARAM} = {value}", file=file, line=line, param=PARAM)
    return int(number) * _UNITS[unit]


def database_path(config: Config) -> str:
    """Where the logins are kept: ``$data_directory/pop-before-smtp.sqlite``."""
    return os.path.join(config.get("data_directory"), FILE_NAME)


def normalize(addr: str) -> str | None:
    """The stored form of a client address, or None when it is not one."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS logins (addr TEXT PRIMARY KEY, expires REAL NOT NULL)")
    return db


def record(path: str, addr: str, window: float, now: float | None = None) -> None:
    """Remember that ``addr`` logged in: it may relay until ``now + window``."""
    key = normalize(addr)
    if key is None or window <= 0:
        return
    when = time.time() if now is None else now
    db = _connect(path)
    try:
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM logins WHERE expires <= ?", (when,))
            db.execute("INSERT INTO logins (addr, expires) VALUES (?, ?) "
                       "ON CONFLICT(addr) DO UPDATE SET expires = MAX(expires, excluded.expires)",
                       (key, when + window))
    finally:
        db.close()


async def record_login(config: Config, client_addr: str) -> None:
    """Record a successful POP3/IMAP login of ``client_addr``, if enabled.

    Called by pop3d and imapd; problems are logged, never raised, so a login
    never fails because of this.
    """
    try:
        window = timeout(config)
        if window <= 0:
            return
        await offload(record, database_path(config), client_addr, window)
    except (ConfigError, OSError, sqlite3.Error) as exc:
        log.warning(f"pop-before-smtp: cannot record the login from {client_addr}: {exc}")


@dataclass
class PopBeforeSmtpTable:
    """The ``popbeforesmtp:`` lookup table: ``OK`` for recently logged-in addresses."""

    path: str
    name: str = ""
    type: str = "popbeforesmtp"
    clock: Callable[[], float] = field(default=time.time)

    def lookup(self, key: str) -> str | None:
        addr = normalize(key)
        if addr is None or not os.path.exists(self.path):
            return None
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
            try:
                row = db.execute("SELECT expires FROM logins WHERE addr = ?", (addr,)).fetchone()
            finally:
                db.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise TableRetry(f"popbeforesmtp:{self.name}: {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise TableRetry(f"popbeforesmtp:{self.name}: {self.path}: {exc}") from exc
        if row is None or float(row[0]) <= self.clock():
            return None
        return "OK"


def open_table(name: str, config: Config, options: OpenOptions) -> PopBeforeSmtpTable:
    """Open ``popbeforesmtp:`` (the name is ignored; the store is in data_directory)."""
    return PopBeforeSmtpTable(database_path(config), name)
