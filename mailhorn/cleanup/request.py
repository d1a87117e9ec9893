"""The values that travel from smtpd, pickup and sendmail into cleanup.

A :class:`CleanupRequest` carries the envelope and the facts about the
client that cleanup writes into the queue file and the ``Received:`` header;
the content itself is streamed separately (``CleanupSession.write``).
:class:`CleanupResult` says what became of the message: queued (with its
queue ID), rejected by header/body checks (with the reply to give), or
discarded.

Content convention: cleanup receives the message as the client sent it after
SMTP transparency is undone (dot-unstuffed), with CRLF or LF line ends; it
stores lines with LF ends, as Postfix stores records without terminators.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mailhorn.smtp.reply import Reply


class Source(enum.Enum):
    """Where a message entered (Postfix's cleanup service names)."""

    SMTPD = "smtpd"
    PICKUP = "pickup"
    SENDMAIL = "sendmail"
    BOUNCE = "bounce"
    FORWARD = "forward"
    """Re-submitted by local(8) for aliases, .forward and :include: (``Received: by HOST (mail_name) id ...``)."""


@dataclass(frozen=True)
class RecipientRequest:
    """One envelope recipient with its DSN parameters (RFC 3461 §4)."""

    address: str
    orcpt: str | None = None
    notify: frozenset[str] = frozenset()
    orig_rcpt: str | None = None
    """The original recipient to record (a forwarded copy keeps its first
    delivery's); None: the address itself, as cleanup's ``enable_original_recipient``."""

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, address: str, orcpt: str | None = None, notify: frozenset[str] = frozenset(),
                 orig_rcpt: str | None = None) -> None:
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "orcpt", orcpt)
        object.__setattr__(self, "notify", notify)
        object.__setattr__(self, "orig_rcpt", orig_rcpt)


@dataclass(frozen=True)
class ClientInfo:
    """Who sent the message, for Received: and the queue file's attributes."""

    name: str = "localhost"
    addr: str = "127.0.0.1"
    port: str = ""
    helo: str = ""
    protocol: str = "SMTP"
    reverse_name: str = ""
    sasl_method: str = ""
    sasl_username: str = ""
    sasl_sender: str = ""
    tls: str = ""
    """TLS summary for Received: (``using TLSv1.3 with cipher ... (256/256 bits)``), empty without TLS."""
    log_ident: str = ""
    """The session's log prefix, so cleanup's lines can be tied to smtpd's."""
    sasl_authenticated_header: bool | None = None
    """The receiving service's ``smtpd_sasl_authenticated_header`` (master.cf ``-o``
    included); None: cleanup's own setting."""
    tls_received_header: bool | None = None
    """The receiving service's ``smtpd_tls_received_header``; None: cleanup's own."""

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, name: str = "localhost", addr: str = "127.0.0.1", port: str = "", helo: str = "",
                 protocol: str = "SMTP", reverse_name: str = "", sasl_method: str = "", sasl_username: str = "",
                 sasl_sender: str = "", tls: str = "", log_ident: str = "",
                 sasl_authenticated_header: bool | None = None, tls_received_header: bool | None = None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "addr", addr)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "helo", helo)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "reverse_name", reverse_name)
        object.__setattr__(self, "sasl_method", sasl_method)
        object.__setattr__(self, "sasl_username", sasl_username)
        object.__setattr__(self, "sasl_sender", sasl_sender)
        object.__setattr__(self, "tls", tls)
        object.__setattr__(self, "log_ident", log_ident)
        object.__setattr__(self, "sasl_authenticated_header", sasl_authenticated_header)
        object.__setattr__(self, "tls_received_header", tls_received_header)


@dataclass(frozen=True)
class SmtpdActions:
    """Actions that smtpd restrictions or the policy service chose for this message.

    (access(5) HOLD, DISCARD, FILTER, REDIRECT, PREPEND; the last FILTER and
    REDIRECT win, as in Postfix.)
    """

    hold: str | None = None
    discard: str | None = None
    filter: str | None = None
    redirect: str | None = None
    prepend: tuple[str, ...] = ()

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, hold: str | None = None, discard: str | None = None, filter: str | None = None,
                 redirect: str | None = None, prepend: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "hold", hold)
        object.__setattr__(self, "discard", discard)
        object.__setattr__(self, "filter", filter)
        object.__setattr__(self, "redirect", redirect)
        object.__setattr__(self, "prepend", prepend)


@dataclass(frozen=True)
class CleanupRequest:
    """Everything cleanup needs besides the content."""

    source: Source
    sender: str
    recipients: tuple[RecipientRequest, ...]
    client: ClientInfo = field(default_factory=ClientInfo)
    queue_id_hint: str | None = None
    dsn_envid: str | None = None
    dsn_ret: str | None = None
    body_type: str = ""
    """``7BIT``, ``8BITMIME`` or empty (not declared)."""
    smtputf8: bool = False
    actions: SmtpdActions = field(default_factory=SmtpdActions)
    sender_fullname: str | None = None
    """From ``sendmail -F``; used when cleanup adds a From: header."""
    extract_recipients: bool = False
    """``sendmail -t``: take recipients from To:, Cc:, Bcc: and delete Bcc:."""
    submit_uid: int | None = None
    """Local submission: the submitting user's uid (``Received: ... from userid N``)."""
    receive_override_options: tuple[str, ...] | None = None
    """The submitting service's ``receive_override_options`` (master.cf ``-o``); None: cleanup's own."""
    content_filter: str | None = None
    """The submitting service's ``content_filter``; None: cleanup's own, ``""``: none."""

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, source: Source, sender: str, recipients: tuple[RecipientRequest, ...],
                 client: ClientInfo | None = None, queue_id_hint: str | None = None,
                 dsn_envid: str | None = None, dsn_ret: str | None = None, body_type: str = "",
                 smtputf8: bool = False, actions: SmtpdActions | None = None, sender_fullname: str | None = None,
                 extract_recipients: bool = False, submit_uid: int | None = None,
                 receive_override_options: tuple[str, ...] | None = None,
                 content_filter: str | None = None) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "sender", sender)
        object.__setattr__(self, "recipients", recipients)
        object.__setattr__(self, "client", client if client is not None else ClientInfo())
        object.__setattr__(self, "queue_id_hint", queue_id_hint)
        object.__setattr__(self, "dsn_envid", dsn_envid)
        object.__setattr__(self, "dsn_ret", dsn_ret)
        object.__setattr__(self, "body_type", body_type)
        object.__setattr__(self, "smtputf8", smtputf8)
        object.__setattr__(self, "actions", actions if actions is not None else SmtpdActions())
        object.__setattr__(self, "sender_fullname", sender_fullname)
        object.__setattr__(self, "extract_recipients", extract_recipients)
        object.__setattr__(self, "submit_uid", submit_uid)
        object.__setattr__(self, "receive_override_options", receive_override_options)
        object.__setattr__(self, "content_filter", content_filter)


class Outcome(enum.Enum):
    """What cleanup did with a message."""

    QUEUED = "queued"
    REJECTED = "rejected"
    DISCARDED = "discarded"


@dataclass(frozen=True)
class CleanupResult:
    """The end of one message: its queue ID, or the reply that refuses it."""

    outcome: Outcome
    queue_id: str | None = None
    reply: Reply | None = None
    held: bool = False

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, outcome: Outcome, queue_id: str | None = None, reply: Reply | None = None,
                 held: bool = False) -> None:
        object.__setattr__(self, "outcome", outcome)
        object.__setattr__(self, "queue_id", queue_id)
        object.__setattr__(self, "reply", reply)
        object.__setattr__(self, "held", held)
