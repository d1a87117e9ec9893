"""Defaults that Postfix computes on the running host rather than compiles in.

* ``myhostname``: the host's name from gethostname(); a name without a dot
  gets ``.localdomain`` appended, as Postfix does (mail_params.c).
* ``mydomain``: ``myhostname`` minus its first label, or ``localdomain``
  when ``myhostname`` has a single label.

Each function takes a lookup of other parameters' expanded values, so a
``myhostname`` set in main.cf moves ``mydomain`` with it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

Lookup = Callable[[str], str]

#: Postfix's DEF_MYDOMAIN, used when the host name has no domain part.
DEFAULT_DOMAIN = "localdomain"


def myhostname(_lookup: Lookup) -> str:
    """The host's fully-qualified name, as Postfix derives it."""
    name = socket.gethostname()
    if "." not in name:
        name = f"{name}.{DEFAULT_DOMAIN}"
    return name.lower() if name.isascii() else name


def mydomain(lookup: Lookup) -> str:
    """The parent domain of ``myhostname``."""
    host = lookup("myhostname")
    _, dot, parent = host.partition(".")
    return parent if dot and parent else DEFAULT_DOMAIN
