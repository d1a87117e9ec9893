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
