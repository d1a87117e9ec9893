"""Parameters mailhorn invents because neither Postfix nor Dovecot has a name for them.

Each one is listed in docs/compatibility.md. They print under ``postconf``
like any other parameter.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

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
)
