"""Shared values of the restriction engine: outcomes, evaluation context, reply texts.

A restriction answers with an :data:`Outcome`: ``None`` (DUNNO: go on with
the next restriction), :data:`PERMIT` (OK: this list is done), or a
:class:`Reply` (reject or defer: the request is refused).

:class:`Run` is one evaluation of the lists of a stage (for RCPT with
``smtpd_delay_reject = yes``: client, helo, sender, relay and recipient
lists); it gathers access(5) actions and a pending ``defer_if_permit``.
:class:`ListCtx` is one list inside it: it names the request the generic
``reject``/``defer`` talk about (``<unknown[1.2.3.4]>: Client host``,
``<a@b>: Sender address``, ...), carries ``warn_if_reject`` and a pending
``defer_if_reject`` (both per list, as in Postfix).

Reply texts follow Postfix 3.7's smtpd: ``CODE DSN <name>: Class rejected:
text``; an access(5) text may begin with an enhanced status code, which
replaces the default one (with the class digit of the reply code:
``REJECT 4.1.2 x`` gives ``554 5.0.0``, as Postfix does).

Parameters read: none here (callers pass codes in).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

from mailhorn.smtp.reply import Reply
from mailhorn.smtpd.state import Action, SmtpdState, Stage

if TYPE_CHECKING:
    from mailhorn.smtpd.checks import SmtpdChecks

__all__ = [
    "PERMIT", "SERVER_CONFIG_ERROR", "Handler", "ListCtx", "Outcome", "Permit", "Run", "dsn_and_text", "policy_reply",
    "rejection",
]


class Permit:
    """The OK outcome (a singleton)."""

    _instance: ClassVar[Permit | None] = None

    def __new__(cls) -> Permit:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "PERMIT"


PERMIT: Final = Permit()
Outcome = Reply | Permit | None

#: What smtpd says when the configuration is broken (unknown restriction,
#: table that cannot be opened or searched): Postfix's 451 4.3.5.
SERVER_CONFIG_ERROR: Final = Reply.of(451, "4.3.5", "Server configuration error")

_DSN_RE: Final = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")

#: Per list kind: the class word of replies (Postfix's SMTPD_NAME_*).
CLASS_NAMES: Final = {
    "client": "Client host",
    "reverse_client": "Unverified Client host",
    "helo": "Helo command",
    "sender": "Sender address",
    "recipient": "Recipient address",
    "relay": "Recipient address",
    "data": "Data command",
    "end_of_data": "End-of-data",
    "etrn": "Etrn command",
}


def client_namaddr(state: SmtpdState) -> str:
    """``name[addr]`` as Postfix writes a client."""
    return f"{state.client_name}[{state.client_addr}]"


def dsn_and_text(code: int, default_dsn: str, text: str) -> tuple[str, str]:
    """Split an optional leading enhanced status code off ``text``.

    A code whose class differs from the reply code's becomes ``X.0.0``.
    """
    match = _DSN_RE.match(text)
    dsn = default_dsn
    if match:
        dsn = f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
        text = text[match.end():]
    if dsn[0] != str(code)[0]:
        dsn = f"{str(code)[0]}.0.0"
    return dsn, text


def rejection(code: int, dsn: str, name: str, klass: str, text: str) -> Reply:
    """``CODE DSN <name>: Class rejected: text``."""
    return Reply.of(code, dsn, f"<{name}>: {klass} rejected: {text}")


def policy_reply(code: int, default_dsn: str, name: str, klass: str, text: str, default_text: str) -> Reply:
    """An access(5)/policy ``NNN text`` result as a reply."""
    dsn, rest = dsn_and_text(code, default_dsn, text)
    return rejection(code, dsn, name, klass, rest or default_text)


@dataclass
class Run:
    """One evaluation of a stage's restriction lists."""

    stage: Stage
    state: SmtpdState
    actions: list[Action] = field(default_factory=list)
    defer_if_permit: Reply | None = None
    discard: bool = False
    depth: int = 0

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, stage: Stage, state: SmtpdState, actions: list[Action] | None = None,
                 defer_if_permit: Reply | None = None, discard: bool = False, depth: int = 0) -> None:
        self.stage = stage
        self.state = state
        self.actions = actions if actions is not None else []
        self.defer_if_permit = defer_if_permit
        self.discard = discard
        self.depth = depth


@dataclass
class ListCtx:
    """One restriction list being evaluated."""

    kind: str
    warn: bool = False
    defer_if_reject: Reply | None = None

    def name(self, state: SmtpdState) -> str:
        """What the generic replies of this list name."""
        if self.kind in ("client", "reverse_client"):
            return client_namaddr(state)
        if self.kind == "helo":
            return state.helo_name or ""
        if self.kind == "sender":
            return state.sender or ""
        if self.kind in ("recipient", "relay"):
            return state.recipient or ""
        if self.kind == "data":
            return "DATA"
        if self.kind == "end_of_data":
            return "END-OF-MESSAGE"
        return state.etrn_domain or ""

    @property
    def klass(self) -> str:
        return CLASS_NAMES[self.kind]


#: A restriction: (engine, evaluation, list, argument) -> outcome.
Handler = Callable[["SmtpdChecks", Run, ListCtx, str], Awaitable[Outcome]]
