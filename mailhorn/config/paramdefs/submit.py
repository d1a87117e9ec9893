"""Local submission (sendmail, postdrop, pickup), queue access (mailq,
postqueue) and the fast flush service for ETRN and ``sendmail -qR``.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "authorized_submit_users",
        Kind.LIST,
        "static:anyone",
        "Users who may submit mail with the sendmail command.",
    ),
    Param("authorized_mailq_users", Kind.LIST, "static:anyone", "Users who may list the queue."),
    Param("authorized_flush_users", Kind.LIST, "static:anyone", "Users who may flush the queue."),
    Param(
        "local_login_sender_maps",
        Kind.LIST,
        "static:*",
        "Which envelope senders each local user may use with sendmail.",
    ),
    Param(
        "empty_address_local_login_sender_maps_lookup_key",
        Kind.STRING,
        "<>",
        "The local_login_sender_maps key that stands for the null sender.",
    ),
    Param(
        "sendmail_fix_line_endings",
        Kind.STRING,
        "always",
        "Which line endings the sendmail command converts to LF: always, strict or never.",
    ),
    Param(
        "fast_flush_domains",
        Kind.LIST,
        "$relay_domains",
        "Destinations whose deferred mail is indexed for fast ETRN and sendmail -qR.",
    ),
    Param("fast_flush_purge_time", Kind.TIME, "7d", "How long an unused fast flush log is kept.", unit="d"),
    Param(
        "fast_flush_refresh_time",
        Kind.TIME,
        "12h",
        "How long before an unused fast flush log is refreshed.",
        unit="h",
    ),
    Param("default_verp_delimiters", Kind.STRING, "+=", "The VERP delimiters used when none are given."),
    Param("verp_delimiter_filter", Kind.STRING, "-=+", "The characters allowed as VERP delimiters."),
    Param(
        "disable_verp_bounces",
        Kind.BOOL,
        "no",
        "Whether one bounce lists all failed recipients even for VERP mail.",
    ),
)
