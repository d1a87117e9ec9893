"""POP3 and IMAP settings that take Dovecot's names.

Postfix has no POP3 or IMAP server, so the settings of mailhorn's
``pop3d`` and ``imapd`` use the names a Dovecot site already knows
(design.md §1): the TLS settings ``ssl``, ``ssl_cert``, ``ssl_key`` and
``ssl_min_protocol`` are shared by both servers, as in dovecot.conf, and so
is ``login_greeting``. Sizes (``imap_max_line_length``,
``quota_max_mail_size``) are Dovecot size values: bytes, or a number with
``k``, ``m``, ``g`` or ``t``. Times are Postfix time values whose bare
numbers are seconds, as Dovecot's are.

The names Dovecot does not have (TLS on connect, the login and idle
timeouts) are invented in :mod:`mailhorn.config.paramdefs.invented`; the
login settings (``auth_mechanisms``, ``disable_plaintext_auth``, …) are in
:mod:`mailhorn.config.paramdefs.access`.
"""

from __future__ import annotations

from mailhorn.config.params import Kind, Param

PARAMS: tuple[Param, ...] = (
    Param(
        "ssl",
        Kind.STRING,
        "yes",
        "TLS for POP3 and IMAP: yes offers STLS/STARTTLS, no never does, required refuses logins before TLS.",
        origin="dovecot",
    ),
    Param(
        "ssl_cert",
        Kind.STRING,
        "$smtpd_tls_cert_file",
        "The POP3 and IMAP server certificate chain file (a leading < as in dovecot.conf is accepted).",
        origin="dovecot",
    ),
    Param(
        "ssl_key",
        Kind.STRING,
        "$smtpd_tls_key_file",
        "The private key of ssl_cert (a leading < is accepted); empty: the key is in ssl_cert's file.",
        origin="dovecot",
    ),
    Param(
        "ssl_min_protocol",
        Kind.STRING,
        "TLSv1.2",
        "The oldest TLS version POP3 and IMAP accept (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3, ANY, LATEST).",
        origin="dovecot",
    ),
    Param(
        "login_greeting",
        Kind.STRING,
        "mailhorn ready.",
        "The text of the POP3 and IMAP greeting.",
        origin="dovecot",
    ),
    Param(
        "pop3_lock_session",
        Kind.BOOL,
        "yes",
        "Let only one POP3 session at a time use a maildrop (Dovecot's dovecot-pop3-session.lock).",
        origin="dovecot",
    ),
    Param(
        "pop3_uidl_format",
        Kind.STRING,
        "%08Xu%08Xv",
        "POP3 UIDLs: %u the IMAP UID, %v the UIDVALIDITY, %f the Maildir file name (X: hexadecimal).",
        origin="dovecot",
    ),
    Param(
        "pop3_logout_format",
        Kind.STRING,
        "top=%t/%p, retr=%r/%b, del=%d/%m, size=%s",
        "The statistics at the end of a POP3 session's Disconnected log line.",
        origin="dovecot",
    ),
    Param(
        "imap_max_line_length",
        Kind.STRING,
        "64k",
        "The longest IMAP command line, literals included (a size; at least 1k is used).",
        origin="dovecot",
    ),
    Param(
        "imap_idle_notify_interval",
        Kind.TIME,
        "2m",
        "How often an IMAP IDLE sends * OK Still here.",
        origin="dovecot",
    ),
    Param(
        "mailbox_idle_check_interval",
        Kind.TIME,
        "30s",
        "How often an IMAP IDLE rescans the mailbox for changes made by other processes.",
        origin="dovecot",
    ),
    Param(
        "quota_max_mail_size",
        Kind.STRING,
        "",
        "The largest message IMAP APPEND takes (a size; 0: no limit; empty: $message_size_limit).",
        origin="dovecot",
    ),
)
