"""Mail filter (Milter) applications called while mail is received, with the
timeouts, default action and macros of the Milter protocol.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param("smtpd_milters", Kind.LIST, "", "Milter applications for mail received by SMTP."),
    Param("non_smtpd_milters", Kind.LIST, "", "Milter applications for mail not received by SMTP."),
    Param("smtpd_milter_maps", Kind.LIST, "", "Tables that choose Milters by client address."),
    Param("milter_protocol", Kind.STRING, "6", "The Milter protocol version offered."),
    Param(
        "milter_default_action",
        Kind.STRING,
        "tempfail",
        "What happens when a Milter fails: accept, reject, tempfail or quarantine.",
    ),
    Param("milter_macro_daemon_name", Kind.STRING, "$myhostname", "The {daemon_name} macro sent to Milters."),
    Param("milter_macro_v", Kind.STRING, "$mail_name $mail_version", "The {v} macro sent to Milters."),
    Param("milter_macro_defaults", Kind.LIST, "", "Default values of Milter macros."),
    Param("milter_connect_timeout", Kind.TIME, "30s", "The time limit for connecting to a Milter.", unit="s"),
    Param("milter_command_timeout", Kind.TIME, "30s", "The time limit for each Milter command.", unit="s"),
    Param(
        "milter_content_timeout",
        Kind.TIME,
        "300s",
        "The time limit for sending message content to a Milter.",
        unit="s",
    ),
    Param(
        "milter_connect_macros",
        Kind.LIST,
        "j {daemon_name} {daemon_addr} v _",
        "Macros sent to Milters after the connection is made.",
    ),
    Param(
        "milter_helo_macros",
        Kind.LIST,
        "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
        "Macros sent to Milters after HELO or EHLO.",
    ),
    Param(
        "milter_mail_macros",
        Kind.LIST,
        "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}",
        "Macros sent to Milters after MAIL FROM.",
    ),
    Param(
        "milter_rcpt_macros",
        Kind.LIST,
        "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
        "Macros sent to Milters after RCPT TO.",
    ),
    Param("milter_data_macros", Kind.LIST, "i", "Macros sent to Milters after DATA."),
    Param("milter_end_of_header_macros", Kind.LIST, "i", "Macros sent to Milters after the message headers."),
    Param("milter_end_of_data_macros", Kind.LIST, "i", "Macros sent to Milters after the message content."),
    Param("milter_unknown_command_macros", Kind.LIST, "", "Macros sent to Milters after an unknown command."),
    Param("milter_header_checks", Kind.LIST, "", "Pattern tables applied to headers added by Milters."),
)
