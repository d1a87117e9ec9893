"""Logging in: password databases and SASL for POP3, IMAP and SMTP AUTH.

Postfix has no names for these (it hands SASL to Dovecot or Cyrus), so the
settings take Dovecot's names where Dovecot has a flat one, and mailhorn's
``passdb_maps``/``userdb_maps`` (lookup tables, the Postfix way) where
Dovecot configures blocks.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "passdb_maps",
        Kind.LIST,
        "",
        "Tables giving each login's stored password ({SCHEME}hash or bare), searched in order.",
        origin="mailhorn",
    ),
    Param(
        "userdb_maps",
        Kind.LIST,
        "",
        "Tables of Dovecot userdb fields (home= uid= gid= mail=maildir:... quota_rule=) that override"
        " the mail location taken from the Postfix settings.",
        origin="mailhorn",
    ),
    Param(
        "default_pass_scheme",
        Kind.STRING,
        "CRYPT",
        "Password scheme of stored passwords without a {SCHEME} prefix.",
        origin="dovecot",
    ),
    Param(
        "auth_username_format",
        Kind.STRING,
        "%Lu",
        "How a login name is rewritten before lookup (%u %n %d with L/U modifiers).",
        origin="dovecot",
    ),
    Param(
        "auth_failure_delay",
        Kind.TIME,
        "2s",
        "Delay before answering a failed login.",
        origin="dovecot",
    ),
    Param(
        "auth_mechanisms",
        Kind.LIST,
        "plain",
        "SASL mechanisms offered by POP3 and IMAP (plain, login, cram-md5).",
        origin="dovecot",
    ),
    Param(
        "disable_plaintext_auth",
        Kind.BOOL,
        "yes",
        "Refuse plaintext logins unless the connection is TLS-protected or from loopback.",
        origin="dovecot",
    ),
)
