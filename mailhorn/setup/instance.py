"""Writing a new instance: directories, configuration files, directory database, first user.

Used by ``mailhorn quickstart`` and the demo. The steps, each of which can
be repeated:

* :func:`make_directories`: the configuration directory, the queue
  directory's parent and the mailbox base; the mailbox base belongs to the
  mailbox owner (``virtual_uid_maps``), since delivery and POP3/IMAP run as
  that user;
* :func:`write_configuration`: main.cf, master.cf and the map files
  (:mod:`mailhorn.setup.templates`). The map files hold the database
  password: mode 0640, group of the services' user when started as root
  (the guide's ``chmod o=``/``chgrp postfix``);
* :func:`populate_directory`: the schema (missing tables only), the domain,
  the user with a hashed password (``{ARGON2ID}`` by default), and the
  RFC 2142 role addresses ``postmaster@`` and ``abuse@`` forwarded to the
  user unless they exist.

The services of a master started as root read the configuration, the
directory and the TLS key as ``mail_owner``: :class:`Owner` says which user
and group files must be readable by.

Errors: ``OSError`` for files; :class:`~mailhorn.directory.DirectoryError`
from the database.
"""

from __future__ import annotations

import os
import pwd
import secrets
import string
from dataclasses import dataclass

from mailhorn.auth import passwords
from mailhorn.directory.store import Directory, normalize_address, normalize_domain
from mailhorn.directory.url import DatabaseURL
from mailhorn.setup import templates
from mailhorn.setup.tls import write_private

#: Role addresses forwarded to the first user (RFC 2142 §2, §4).
ROLE_ADDRESSES: tuple[str, ...] = ("postmaster", "abuse")
PASSWORD_LENGTH = 20
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Owner:
    """The user the services run as (``mail_owner`` under root, else the caller)."""

    name: str
    uid: int
    gid: int
    #: True when the master starts as root and hands work to this user.
    separate: bool


def current_owner(mail_owner: str) -> Owner:
    """Who will run the services: ``mail_owner`` when we are root, else ourselves.

    Raises ``KeyError`` when running as root and ``mail_owner`` does not exist.
    """
    if os.geteuid() == 0:
        entry = pwd.getpwnam(mail_owner)
        return Owner(entry.pw_name, entry.pw_uid, entry.pw_gid, True)
    entry = pwd.getpwuid(os.geteuid())
    return Owner(entry.pw_name, entry.pw_uid, os.getegid(), False)


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password of letters and digits (safe to paste into a shell line)."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def make_directories(layout: templates.Layout, owner: Owner) -> None:
    """Create the configuration directory, the queue's parent and the mailbox base."""
    os.makedirs(layout.config_dir, mode=0o755, exist_ok=True)
    os.makedirs(os.path.dirname(layout.queue_directory.rstrip("/")) or "/", mode=0o755, exist_ok=True)
    if not os.path.isdir(layout.mailbox_base):
        os.makedirs(layout.mailbox_base, mode=0o700)
    if owner.separate:
        os.chown(layout.mailbox_base, layout.uid, layout.gid)


def write_file(path: str, text: str, mode: int = 0o644, group: int | None = None) -> None:
    """Replace ``path`` with ``text`` (written beside it, then renamed)."""
    if mode & 0o007 == 0 and mode != 0o644:
        write_private(path, text.encode("utf-8"), group)
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_configuration(layout: templates.Layout, owner: Owner, header: str) -> list[str]:
    """Write main.cf, master.cf and the map files; return the paths written."""
    group = owner.gid if owner.separate else None
    written = []
    main = os.path.join(layout.config_dir, "main.cf")
    write_file(main, templates.main_cf(layout, header))
    written.append(main)
    master = os.path.join(layout.config_dir, "master.cf")
    write_file(master, templates.master_cf(layout, header))
    written.append(master)
    for name, text in templates.map_files(layout.database).items():
        path = os.path.join(layout.config_dir, name)
        write_file(path, text, 0o640, group)
        written.append(path)
    return written


def share_sqlite(url: DatabaseURL, owner: Owner) -> None:
    """Let the services read an SQLite directory: mode 0640, group of the services' user."""
    if url.engine != "sqlite" or not os.path.exists(url.path):
        return
    if owner.separate:
        os.chown(url.path, -1, owner.gid)
    os.chmod(url.path, 0o640 if owner.separate else 0o600)


@dataclass(frozen=True)
class UserResult:
    """What :func:`populate_directory` did for the user."""

    address: str
    created: bool
    password_set: bool


def populate_directory(url: DatabaseURL, domain: str, address: str, password: str,
                       reset_password: bool, scheme: str = passwords.DEFAULT_HASH_SCHEME) -> UserResult:
    """Schema, domain, user and role addresses in the directory at ``url``.

    An existing user keeps its password unless ``reset_password``.
    """
    with Directory.open(url, create=True) as directory:
        stored_domain = normalize_domain(domain)
        if stored_domain not in directory.domains():
            directory.add_domain(stored_domain)
        email = normalize_address(address)
        existing = directory.user(email)
        if existing is None:
            directory.add_user(email, passwords.hash_password(password, scheme, user=email))
            result = UserResult(email, True, True)
        elif reset_password:
            directory.set_password(email, passwords.hash_password(password, scheme, user=email))
            result = UserResult(email, False, True)
        else:
            result = UserResult(email, False, False)
        sources = {f.source for f in directory.forwardings(stored_domain)}
        users = {u.email for u in directory.users(stored_domain)}
        for role in ROLE_ADDRESSES:
            source = f"{role}@{stored_domain}"
            if source not in sources and source not in users and source != email:
                directory.add_forwarding(source, [email])
    return result
