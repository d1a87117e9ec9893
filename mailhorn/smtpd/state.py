"""The facts of one SMTP session that access restrictions look at.

smtpd fills a :class:`SmtpdState` as the dialogue goes on; the restriction
engine (:mod:`mailhorn.smtpd.checks`) reads it at each stage and answers with
a :class:`CheckResult`: no reply (go on), or the reply that rejects or defers
the command, plus the access(5) actions that apply to the message (HOLD,
DISCARD, FILTER, REDIRECT, PREPEND, WARN). The policy delegation protocol
(SMTPD_POLICY_README) sends the same facts as attributes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mailhorn.smtp.reply import Reply


class Stage(enum.Enum):
    """The SMTP stage a restriction list runs at (policy protocol ``protocol_state``)."""

    CONNECT = "CONNECT"
    EHLO = "EHLO"
    HELO = "HELO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    END_OF_MESSAGE = "END-OF-MESSAGE"
    VRFY = "VRFY"
    ETRN = "ETRN"

    # Members are singletons compared by identity, so identity hashing is
    # consistent; Enum's own __hash__ is Python code, and stages key the
    # restriction plans looked up at every command.
    __hash__ = object.__hash__


@dataclass
class SmtpdState:
    """Mutable per-session facts; smtpd owns it, checks read it (and mark a discarded transaction)."""

    service: str = "smtp"
    client_name: str = "unknown"
    """Verified name (forward and reverse agree), else ``unknown``."""
    reverse_client_name: str = "unknown"
    client_addr: str = ""
    client_port: str = ""
    server_addr: str = ""
    server_port: str = ""
    client_name_status: int = 0
    """0 ok; 4 temporary lookup failure; 5 no name (Postfix's peer_code)."""
    reverse_client_name_status: int = 0
    helo_name: str | None = None
    protocol: str = "SMTP"
    stage: Stage = Stage.CONNECT
    sender: str | None = None
    """Envelope sender of the current transaction (``""`` is the null sender)."""
    recipient: str | None = None
    """The recipient being checked at RCPT."""
    recipient_count: int = 0
    size: int = 0
    """SIZE= of MAIL FROM, or the message size at end of data."""
    etrn_domain: str | None = None
    queue_id: str = ""
    instance: str = ""
    """Unique per transaction, for the policy protocol ``instance`` attribute."""
    sasl_method: str = ""
    sasl_username: str = ""
    sasl_sender: str = ""
    tls_protocol: str = ""
    tls_cipher: str = ""
    tls_cipher_bits: int = 0
    tls_peer_subject: str = ""
    tls_peer_issuer: str = ""
    tls_peer_fingerprint: str = ""
    tls_peer_pubkey_fingerprint: str = ""
    pipelined: bool = False
    """The client sent the current command before our previous reply (reject_unauth_pipelining)."""
    encryption_keysize: int = 0
    stress: bool = False
    dsn_envid: str = ""
    dsn_ret: str = ""
    dsn_notify: str = ""
    dsn_orcpt: str = ""
    xforward: dict[str, str] = field(default_factory=dict)
    """Attributes received with XFORWARD (Postfix's XFORWARD_README)."""
    discarded_instance: str | None = None
    """The ``instance`` of a transaction a DISCARD action applied to: the
    restrictions pass for the rest of it (access(5) DISCARD)."""


@dataclass(frozen=True)
class Action:
    """One access(5) side effect: ``kind`` is HOLD, DISCARD, FILTER, REDIRECT, PREPEND or WARN."""

    kind: str
    text: str

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, kind: str, text: str) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "text", text)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one restriction stage.

    ``reply`` is None when the stage passes (OK, DUNNO, end of list); else it is
    the 4xx/5xx reply that smtpd sends (logged as ``NOQUEUE: reject: ...``).
    ``actions`` apply to the current message whatever the reply.
    """

    reply: Reply | None = None
    actions: tuple[Action, ...] = ()

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, reply: Reply | None = None, actions: tuple[Action, ...] = ()) -> None:
        object.__setattr__(self, "reply", reply)
        object.__setattr__(self, "actions", actions)

    @property
    def accepted(self) -> bool:
        """No rejection at this stage."""
        return self.reply is None
