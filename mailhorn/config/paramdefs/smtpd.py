"""The SMTP server: greeting, command limits, timeouts, error handling, per-client
connection and rate limits (counted over ``anvil_rate_time_unit``), trusted
XCLIENT/XFORWARD clients, before-queue filtering, and the policy service
client.

Access restrictions and their reply codes are in
:mod:`mailhorn.config.paramdefs.restrictions`; TLS and SASL in their own
modules.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "smtpd_banner",
        Kind.STRING,
        "$myhostname ESMTP $mail_name",
        "The text after the 220 code in the SMTP greeting.",
    ),
    Param(
        "smtpd_timeout",
        Kind.TIME,
        "${stress?{10}:{300}}s",
        "How long the SMTP server waits for a client command or data.",
        unit="s",
    ),
    Param(
        "smtpd_starttls_timeout",
        Kind.TIME,
        "${stress?{10}:{300}}s",
        "The time limit for the TLS handshake after STARTTLS.",
        unit="s",
    ),
    Param(
        "smtpd_per_request_deadline",
        Kind.BOOL,
        "${smtpd_per_record_deadline?{$smtpd_per_record_deadline}:{${stress?{yes}:{no}}}}",
        "Whether smtpd_timeout bounds a whole command instead of each read or write.",
    ),
    Param(
        "smtpd_min_data_rate",
        Kind.INT,
        "500",
        "The slowest data rate (bytes/s) that extends a per-request deadline.",
    ),
    Param(
        "smtpd_error_sleep_time",
        Kind.TIME,
        "1s",
        "How long to pause before replying to a client with many errors.",
        unit="s",
    ),
    Param("smtpd_soft_error_limit", Kind.INT, "10", "The error count after which replies are delayed."),
    Param(
        "smtpd_hard_error_limit",
        Kind.INT,
        "${stress?{1}:{20}}",
        "The error count after which the connection is closed.",
    ),
    Param(
        "smtpd_junk_command_limit",
        Kind.INT,
        "${stress?{1}:{100}}",
        "The most NOOP, VRFY, ETRN and RSET commands that do not count as errors.",
    ),
    Param("smtpd_recipient_limit", Kind.INT, "1000", "The most recipients accepted for one message."),
    Param(
        "smtpd_recipient_overshoot_limit",
        Kind.INT,
        "1000",
        "The excess recipients that count as one error.",
    ),
    Param(
        "smtpd_history_flush_threshold",
        Kind.INT,
        "100",
        "The most commands kept for a postmaster notice about a session.",
    ),
    Param(
        "smtpd_helo_required",
        Kind.BOOL,
        "no",
        "Whether the client must send HELO or EHLO before MAIL FROM.",
    ),
    Param("smtpd_noop_commands", Kind.LIST, "", "Commands answered with 250 and otherwise ignored."),
    Param(
        "smtpd_forbidden_commands",
        Kind.LIST,
        "CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}",
        "Commands that close the connection (e.g. HTTP requests).",
    ),
    Param(
        "smtpd_command_filter",
        Kind.STRING,
        "",
        "A table that rewrites client commands before they are parsed.",
    ),
    Param(
        "smtpd_discard_ehlo_keywords",
        Kind.LIST,
        "",
        "EHLO keywords not announced and their commands refused.",
    ),
    Param(
        "smtpd_discard_ehlo_keyword_address_maps",
        Kind.LIST,
        "",
        "Per-client smtpd_discard_ehlo_keywords settings.",
    ),
    Param(
        "smtpd_forbid_unauth_pipelining",
        Kind.BOOL,
        "no",
        "Whether a client that sends commands ahead of time without permission is disconnected.",
    ),
    Param(
        "smtpd_forbid_bare_newline",
        Kind.STRING,
        "no",
        "Whether a bare LF in a command or message is refused: no, normalize or reject.",
    ),
    Param(
        "smtpd_forbid_bare_newline_exclusions",
        Kind.LIST,
        "$mynetworks",
        "Clients exempt from smtpd_forbid_bare_newline.",
    ),
    Param(
        "smtpd_forbid_bare_newline_reject_code",
        Kind.INT,
        "550",
        "The reply code when a bare LF is refused.",
    ),
    Param("smtpd_peername_lookup", Kind.BOOL, "yes", "Whether the client's host name is looked up in DNS."),
    Param("smtpd_client_port_logging", Kind.BOOL, "no", "Whether the client's port is logged."),
    Param(
        "smtpd_delay_open_until_valid_rcpt",
        Kind.BOOL,
        "yes",
        "Whether the queue file is created only at the first valid recipient.",
    ),
    Param(
        "smtpd_authorized_verp_clients",
        Kind.LIST,
        "$authorized_verp_clients",
        "Clients that may ask for VERP delivery with XVERP.",
    ),
    Param(
        "smtpd_authorized_xclient_hosts",
        Kind.LIST,
        "",
        "Clients that may override client attributes with XCLIENT.",
    ),
    Param(
        "smtpd_authorized_xforward_hosts",
        Kind.LIST,
        "",
        "Clients that may forward client attributes with XFORWARD.",
    ),
    Param(
        "smtpd_client_connection_count_limit",
        Kind.INT,
        "50",
        "The most simultaneous connections from one client.",
    ),
    Param(
        "smtpd_client_connection_rate_limit",
        Kind.INT,
        "0",
        "The most connections from one client per anvil_rate_time_unit.",
    ),
    Param(
        "smtpd_client_message_rate_limit",
        Kind.INT,
        "0",
        "The most messages from one client per anvil_rate_time_unit.",
    ),
    Param(
        "smtpd_client_recipient_rate_limit",
        Kind.INT,
        "0",
        "The most recipients from one client per anvil_rate_time_unit.",
    ),
    Param(
        "smtpd_client_new_tls_session_rate_limit",
        Kind.INT,
        "0",
        "The most new TLS sessions from one client per anvil_rate_time_unit.",
    ),
    Param(
        "smtpd_client_auth_rate_limit",
        Kind.INT,
        "0",
        "The most AUTH commands from one client per anvil_rate_time_unit.",
    ),
    Param(
        "smtpd_client_event_limit_exceptions",
        Kind.LIST,
        "${smtpd_client_connection_limit_exceptions:$mynetworks}",
        "Clients exempt from the connection and rate limits.",
    ),
    Param(
        "anvil_rate_time_unit",
        Kind.TIME,
        "60s",
        "The time unit over which client rates are counted.",
        unit="s",
    ),
    Param(
        "anvil_status_update_time",
        Kind.TIME,
        "600s",
        "How often the busiest clients are logged.",
        unit="s",
    ),
    Param(
        "smtpd_proxy_filter",
        Kind.STRING,
        "",
        "A before-queue content filter that receives the SMTP session.",
    ),
    Param("smtpd_proxy_ehlo", Kind.STRING, "$myhostname", "The EHLO name sent to the before-queue filter."),
    Param("smtpd_proxy_options", Kind.LIST, "", "Options for talking to the before-queue filter."),
    Param(
        "smtpd_proxy_timeout",
        Kind.TIME,
        "100s",
        "The time limit for the before-queue filter's replies.",
        unit="s",
    ),
    Param(
        "smtpd_upstream_proxy_protocol",
        Kind.STRING,
        "",
        "The protocol of a proxy in front of the SMTP server (haproxy).",
    ),
    Param(
        "smtpd_upstream_proxy_timeout",
        Kind.TIME,
        "5s",
        "The time limit for the proxy protocol header.",
        unit="s",
    ),
    Param(
        "smtpd_expansion_filter",
        Kind.STRING,
        (
            "\\t\\40!\"#$%&'()*+,"
            "-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
        ),
        "The characters allowed in $name expansions of reply texts.",
        raw=True,
    ),
    Param("smtpd_reject_footer", Kind.STRING, "", "Text appended to every 4xx and 5xx reply.", raw=True),
    Param("smtpd_reject_footer_maps", Kind.LIST, "", "Per-reply smtpd_reject_footer settings."),
    Param(
        "smtpd_dns_reply_filter",
        Kind.STRING,
        "",
        "A table that rewrites DNS replies the SMTP server receives.",
    ),
    Param(
        "smtpd_log_access_permit_actions",
        Kind.LIST,
        "",
        "Access table actions that are logged when they permit.",
    ),
    Param(
        "smtpd_policy_service_default_action",
        Kind.STRING,
        "451 4.3.5 Server configuration problem",
        "The action when a policy service cannot be reached.",
    ),
    Param(
        "smtpd_policy_service_max_idle",
        Kind.TIME,
        "300s",
        "How long an idle policy service connection is kept.",
        unit="s",
    ),
    Param(
        "smtpd_policy_service_max_ttl",
        Kind.TIME,
        "1000s",
        "How long a policy service connection is kept at most.",
        unit="s",
    ),
    Param(
        "smtpd_policy_service_policy_context",
        Kind.STRING,
        "",
        "Text sent to policy services as policy_context.",
    ),
    Param(
        "smtpd_policy_service_request_limit",
        Kind.INT,
        "0",
        "How many requests one policy service connection carries (0 = no limit).",
    ),
    Param(
        "smtpd_policy_service_retry_delay",
        Kind.TIME,
        "1s",
        "How long to wait before retrying a policy service.",
        unit="s",
    ),
    Param(
        "smtpd_policy_service_timeout",
        Kind.TIME,
        "100s",
        "The time limit for a policy service reply.",
        unit="s",
    ),
    Param("smtpd_policy_service_try_limit", Kind.INT, "2", "How often a policy service request is tried."),
)
