"""Parameters mailhorn invents because neither Postfix nor Dovecot has a name for them.

Each one is listed in docs/compatibility.md. They print under ``postconf``
like any other parameter.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mailhorn.config.params import Kind, Param


def _cpu_count(lookup: Callable[[str], str]) -> str:
    """The default of ``master_worker_count``: the number of CPUs (at least 1)."""
    return str(os.cpu_count() or 1)


PARAMS: tuple[Param, ...] = (
    Param(
        "dns_servers",
        Kind.LIST,
        "",
        "DNS servers (address or [address]:port) to ask instead of those in /etc/resolv.conf.",
        origin="mailhorn",
    ),
    Param(
        "directory_database",
        Kind.STRING,
        "",
        "The mail directory database URL (sqlite:, mysql:, postgresql:); empty: the SQL table of"
        " virtual_mailbox_domains, else sqlite:$config_directory/directory.sqlite.",
        origin="mailhorn",
    ),
    Param(
        "pop3_tls_wrappermode",
        Kind.BOOL,
        "no",
        "POP3 over TLS from the first byte (pop3s, port 995), per service with master.cf -o.",
        origin="mailhorn",
    ),
    Param(
        "imap_tls_wrappermode",
        Kind.BOOL,
        "no",
        "IMAP over TLS from the first byte (imaps, port 993), per service with master.cf -o.",
        origin="mailhorn",
    ),
    Param(
        "pop3_login_timeout",
        Kind.TIME,
        "3m",
        "How long a POP3 client may stay silent before it has logged in.",
        origin="mailhorn",
    ),
    Param(
        "imap_login_timeout",
        Kind.TIME,
        "3m",
        "How long an IMAP client may stay silent before it has logged in.",
        origin="mailhorn",
    ),
    Param(
        "pop3_idle_timeout",
        Kind.TIME,
        "10m",
        "How long a logged-in POP3 client may stay silent (RFC 1939 autologout timer, at least 10m).",
        origin="mailhorn",
    ),
    Param(
        "imap_idle_timeout",
        Kind.TIME,
        "30m",
        "How long a logged-in IMAP client may stay silent before * BYE (RFC 3501 autologout, at least 30m).",
        origin="mailhorn",
    ),
    Param(
        "master_worker_count",
        Kind.INT,
        "",
        "The number of worker processes that serve the network services; by default one per"
        " CPU the system has (os.cpu_count()), as each worker runs one event loop on one core.",
        origin="mailhorn",
        derive=_cpu_count,
    ),
    Param(
        "master_drain_time",
        Kind.TIME,
        "10s",
        "How long stopping workers get to finish their sessions.",
        origin="mailhorn",
    ),
    Param(
        "mailbox_special_use",
        Kind.LIST,
        "Drafts=\\Drafts, Junk=\\Junk, Trash=\\Trash, Sent=\\Sent, { Sent Messages = \\Sent }",
        "RFC 6154 special-use attributes of mailboxes, Name=\\Attribute (braces around an element"
        " with spaces), as Dovecot's mailbox { special_use } blocks; shown by IMAP LIST.",
        origin="mailhorn",
    ),
    Param(
        "pop_before_smtp_timeout",
        Kind.TIME,
        "0",
        "How long a POP3/IMAP login lets its client address relay through popbeforesmtp: (0: off).",
        origin="mailhorn",
    ),
)
