"""SASL authentication: the SMTP server's AUTH support, and the SMTP and LMTP
clients' logins to other servers.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param("smtpd_sasl_auth_enable", Kind.BOOL, "no", "Whether the SMTP server offers AUTH."),
    Param(
        "smtpd_sasl_type",
        Kind.STRING,
        "cyrus",
        "The SASL implementation the SMTP server uses (cyrus or dovecot).",
    ),
    Param("smtpd_sasl_path", Kind.STRING, "smtpd", "Where the SMTP server's SASL implementation is found."),
    Param("smtpd_sasl_service", Kind.STRING, "smtp", "The service name given to the SASL implementation."),
    Param(
        "smtpd_sasl_security_options",
        Kind.LIST,
        "noanonymous",
        "Which SASL mechanisms are offered on unencrypted sessions.",
    ),
    Param(
        "smtpd_sasl_tls_security_options",
        Kind.LIST,
        "$smtpd_sasl_security_options",
        "Which SASL mechanisms are offered on TLS sessions.",
    ),
    Param(
        "smtpd_sasl_mechanism_filter",
        Kind.LIST,
        "!external, static:rest",
        "A filter on the SASL mechanisms announced to clients.",
    ),
    Param("smtpd_sasl_local_domain", Kind.STRING, "", "The realm appended to SASL login names."),
    Param(
        "smtpd_sasl_authenticated_header",
        Kind.BOOL,
        "no",
        "Whether the login name is recorded in the Received: header.",
    ),
    Param("smtpd_sasl_exceptions_networks", Kind.LIST, "", "Clients to which AUTH is not announced."),
    Param("smtpd_sasl_response_limit", Kind.INT, "12288", "The longest AUTH response accepted, in bytes."),
    Param(
        "broken_sasl_auth_clients",
        Kind.BOOL,
        "no",
        "Whether AUTH is also announced in the obsolete AUTH= form.",
    ),
    Param("cyrus_sasl_config_path", Kind.STRING, "", "Where the Cyrus SASL library finds its configuration."),
    Param(
        "send_cyrus_sasl_authzid",
        Kind.BOOL,
        "no",
        "Whether the client sends an authorization ID with its SASL login.",
    ),
    Param("smtp_sasl_auth_enable", Kind.BOOL, "no", "Whether the SMTP client authenticates to servers."),
    Param("lmtp_sasl_auth_enable", Kind.BOOL, "no", "Whether the LMTP client authenticates to servers."),
    Param("smtp_sasl_type", Kind.STRING, "cyrus", "The SASL implementation the SMTP client uses."),
    Param("lmtp_sasl_type", Kind.STRING, "cyrus", "The SASL implementation the LMTP client uses."),
    Param("smtp_sasl_path", Kind.STRING, "", "Where the SMTP client's SASL implementation is found."),
    Param("lmtp_sasl_path", Kind.STRING, "", "Where the LMTP client's SASL implementation is found."),
    Param(
        "smtp_sasl_password_maps",
        Kind.LIST,
        "",
        "The SMTP client's login name and password per destination or sender.",
    ),
    Param(
        "lmtp_sasl_password_maps",
        Kind.LIST,
        "",
        "The LMTP client's login name and password per destination or sender.",
    ),
    Param(
        "smtp_sasl_security_options",
        Kind.LIST,
        "noplaintext, noanonymous",
        "Which SASL mechanisms the SMTP client may use without TLS.",
    ),
    Param(
        "lmtp_sasl_security_options",
        Kind.LIST,
        "noplaintext, noanonymous",
        "Which SASL mechanisms the LMTP client may use without TLS.",
    ),
    Param(
        "smtp_sasl_tls_security_options",
        Kind.LIST,
        "$smtp_sasl_security_options",
        "Which SASL mechanisms the SMTP client may use with TLS.",
    ),
    Param(
        "lmtp_sasl_tls_security_options",
        Kind.LIST,
        "$lmtp_sasl_security_options",
        "Which SASL mechanisms the LMTP client may use with TLS.",
    ),
    Param(
        "smtp_sasl_tls_verified_security_options",
        Kind.LIST,
        "$smtp_sasl_tls_security_options",
        "Which SASL mechanisms the SMTP client may use with verified TLS.",
    ),
    Param(
        "lmtp_sasl_tls_verified_security_options",
        Kind.LIST,
        "$lmtp_sasl_tls_security_options",
        "Which SASL mechanisms the LMTP client may use with verified TLS.",
    ),
    Param(
        "smtp_sasl_mechanism_filter",
        Kind.LIST,
        "",
        "A filter on the SASL mechanisms the SMTP client considers.",
    ),
    Param(
        "lmtp_sasl_mechanism_filter",
        Kind.LIST,
        "",
        "A filter on the SASL mechanisms the LMTP client considers.",
    ),
    Param(
        "smtp_sasl_auth_soft_bounce",
        Kind.BOOL,
        "yes",
        "Whether an authentication failure defers instead of bouncing.",
    ),
    Param(
        "lmtp_sasl_auth_soft_bounce",
        Kind.BOOL,
        "yes",
        "Whether an authentication failure defers instead of bouncing.",
    ),
    Param(
        "smtp_sasl_auth_cache_name",
        Kind.STRING,
        "",
        "The table that remembers failed SMTP client logins.",
    ),
    Param(
        "lmtp_sasl_auth_cache_name",
        Kind.STRING,
        "",
        "The table that remembers failed LMTP client logins.",
    ),
    Param(
        "smtp_sasl_auth_cache_time",
        Kind.TIME,
        "90d",
        "How long a failed SMTP client login is remembered.",
        unit="d",
    ),
    Param(
        "lmtp_sasl_auth_cache_time",
        Kind.TIME,
        "90d",
        "How long a failed LMTP client login is remembered.",
        unit="d",
    ),
    Param(
        "smtp_sender_dependent_authentication",
        Kind.BOOL,
        "no",
        "Whether the SMTP client's login is chosen by sender.",
    ),
    Param(
        "lmtp_sender_dependent_authentication",
        Kind.BOOL,
        "no",
        "Whether the LMTP client's login is chosen by sender.",
    ),
    Param(
        "smtp_send_dummy_mail_auth",
        Kind.BOOL,
        "no",
        "Whether the SMTP client sends AUTH=<> in MAIL FROM.",
    ),
    Param(
        "lmtp_send_dummy_mail_auth",
        Kind.BOOL,
        "no",
        "Whether the LMTP client sends AUTH=<> in MAIL FROM.",
    ),
)
