"""smtpd's parameters, read once per service from the configuration.

`SmtpdSettings.from_config(config, service)` turns the main.cf values (with
the master.cf ``-o`` overrides already applied) into typed fields, so that a
session never parses configuration text.  The lists that depend on the
client (``smtpd_client_event_limit_exceptions``,
``smtpd_authorized_xforward_hosts``, ``smtpd_authorized_xclient_hosts``,
``smtpd_forbid_bare_newline_exclusions``) are built as match lists here and
asked per connection.

Parameters read (postconf(5)): ``myhostname``, ``smtpd_banner``,
``smtpd_timeout``, ``smtpd_starttls_timeout``, ``smtpd_error_sleep_time``,
``smtpd_soft_error_limit``, ``smtpd_hard_error_limit``,
``smtpd_junk_command_limit``, ``smtpd_recipient_limit``,
``message_size_limit``, ``line_length_limit``, ``smtpd_helo_required``,
``disable_vrfy_command``, ``smtpd_discard_ehlo_keywords``,
``smtpd_forbid_unauth_pipelining``, ``smtpd_forbid_bare_newline``,
``smtpd_forbid_bare_newline_exclusions``, ``smtputf8_enable``,
``smtpd_sasl_auth_enable``, ``smtpd_peername_lookup``, ``smtpd_delay_reject``,
``smtpd_client_connection_count_limit``,
``smtpd_client_connection_rate_limit``, ``smtpd_client_message_rate_limit``,
``smtpd_client_recipient_rate_limit``, ``smtpd_client_event_limit_exceptions``,
``smtpd_authorized_xforward_hosts``, ``smtpd_authorized_xclient_hosts``,
``smtpd_client_port_logging``, ``anvil_rate_time_unit``,
``smtpd_sasl_authenticated_header`` and ``smtpd_tls_received_header`` (handed
to cleanup in ``ClientInfo``, so master.cf ``-o`` overrides reach it),
``smtpd_discard_ehlo_keyword_address_maps``.  TLS parameters are read by
:mod:`mailhorn.smtpd.tls`.

Errors: `ConfigError` for a malformed value (a bad number or time), raised
when the service starts, as Postfix's smtpd exits with a fatal error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.tables.matchlist import NamadrList, namadr_list_from_config

__all__ = ["SmtpdSettings"]

#: The keywords smtpd_discard_ehlo_keywords may name (postconf(5)); "silent-discard"
#: only turns the logging of discards off.
EHLO_KEYWORDS: Final = frozenset({
    "pipelining", "size", "vrfy", "etrn", "starttls", "auth", "xclient", "xforward",
    "enhancedstatuscodes", "8bitmime", "dsn", "smtputf8", "chunking", "silent-discard",
})


@dataclass(frozen=True)
class SmtpdSettings:
    """The values one smtpd service runs with."""

    service: str
    myhostname: str
    banner: str
    timeout: int
    starttls_timeout: int
    error_sleep_time: int
    soft_error_limit: int
    hard_error_limit: int
    junk_command_limit: int
    recipient_limit: int
    message_size_limit: int
    line_length_limit: int
    helo_required: bool
    disable_vrfy: bool
    discard_ehlo: frozenset[str]
    forbid_unauth_pipelining: bool
    bare_newline: str
    smtputf8: bool
    sasl_enabled: bool
    peername_lookup: bool
    delay_reject: bool
    client_port_logging: bool
    connection_count_limit: int
    connection_rate_limit: int
    message_rate_limit: int
    recipient_rate_limit: int
    rate_time_unit: int
    event_limit_exceptions: NamadrList
    xforward_hosts: NamadrList
    xclient_hosts: NamadrList
    bare_newline_exclusions: NamadrList
    sasl_authenticated_header: bool = False
    """Whether cleanup writes ``(Authenticated sender: ...)`` for this service's mail."""
    tls_received_header: bool = False
    discard_ehlo_maps: str = ""
    """``smtpd_discard_ehlo_keyword_address_maps``: per-client keywords to hide."""

    @classmethod
    def from_config(cls, config: Config, service: str = "smtp") -> SmtpdSettings:
        bare = config.get("smtpd_forbid_bare_newline").strip().lower()
        # postconf(5): "yes" is the same as "normalize" (Postfix 3.9 wording).
        bare = {"yes": "normalize", "": "no"}.get(bare, bare)
        if bare not in ("no", "normalize", "reject"):
            bare = "no"
        return cls(
            service=service,
            myhostname=config.get("myhostname"),
            banner=config.get("smtpd_banner"),
            timeout=config.time("smtpd_timeout"),
            starttls_timeout=config.time("smtpd_starttls_timeout"),
            error_sleep_time=config.time("smtpd_error_sleep_time"),
            soft_error_limit=config.int("smtpd_soft_error_limit"),
            hard_error_limit=config.int("smtpd_hard_error_limit"),
            junk_command_limit=config.int("smtpd_junk_command_limit"),
            recipient_limit=config.int("smtpd_recipient_limit"),
            message_size_limit=config.int("message_size_limit"),
            line_length_limit=config.int("line_length_limit"),
            helo_required=config.bool("smtpd_helo_required"),
            disable_vrfy=config.bool("disable_vrfy_command"),
            discard_ehlo=frozenset(k.lower() for k in split_list(config.get("smtpd_discard_ehlo_keywords"))),
            forbid_unauth_pipelining=config.bool("smtpd_forbid_unauth_pipelining"),
            bare_newline=bare,
            smtputf8=config.bool("smtputf8_enable"),
            sasl_enabled=config.bool("smtpd_sasl_auth_enable"),
            peername_lookup=config.bool("smtpd_peername_lookup"),
            delay_reject=config.bool("smtpd_delay_reject"),
            client_port_logging=config.bool("smtpd_client_port_logging"),
            connection_count_limit=config.int("smtpd_client_connection_count_limit"),
            connection_rate_limit=config.int("smtpd_client_connection_rate_limit"),
            message_rate_limit=config.int("smtpd_client_message_rate_limit"),
            recipient_rate_limit=config.int("smtpd_client_recipient_rate_limit"),
            rate_time_unit=config.time("anvil_rate_time_unit"),
            event_limit_exceptions=namadr_list_from_config(config, "smtpd_client_event_limit_exceptions"),
            xforward_hosts=namadr_list_from_config(config, "smtpd_authorized_xforward_hosts"),
            xclient_hosts=namadr_list_from_config(config, "smtpd_authorized_xclient_hosts"),
            bare_newline_exclusions=namadr_list_from_config(config, "smtpd_forbid_bare_newline_exclusions"),
            sasl_authenticated_header=config.bool("smtpd_sasl_authenticated_header"),
            tls_received_header=config.bool("smtpd_tls_received_header"),
            discard_ehlo_maps=config.get("smtpd_discard_ehlo_keyword_address_maps").strip(),
        )
