"""The mail directory: virtual domains, mailboxes, forwardings and transports.

The tables are those of the Postfix + MySQL guides (``domains``,
``forwardings``, ``users``, ``transport``), read by ``mysql:``, ``pgsql:`` and
``sqlite:`` lookup tables and written by ``mailhorn domain|user|alias|transport``.

* :mod:`mailhorn.directory.url` — which database (``directory_database`` or
  the ``*.cf`` file behind ``virtual_mailbox_domains``);
* :mod:`mailhorn.directory.schema` — the tables per engine;
* :mod:`mailhorn.directory.store` — the repository and the name checks.
"""

from __future__ import annotations

from mailhorn.directory.store import Directory, DirectoryError, Forwarding, Transport, User
from mailhorn.directory.url import DatabaseURL, URLError, from_config, parse_url

__all__ = [
    "DatabaseURL",
    "Directory",
    "DirectoryError",
    "Forwarding",
    "Transport",
    "URLError",
    "User",
    "from_config",
    "parse_url",
]
