"""imapd's session state (RFC 3501 §3) and the settings one IMAP service reads.

What it does
    :class:`Phase` is the RFC 3501 §3 state of a session: not
    authenticated, authenticated, selected, logout. :func:`allowed` says
    whether a command row of :data:`mailhorn.imap.commands.COMMANDS` may run
    in a phase, and :func:`refusal` gives the ``BAD`` text Dovecot sends
    when it may not. :class:`SessionState` holds what a session knows about
    itself (phase, TLS, user, selected mailbox, ENABLEd extensions, byte
    counters for the ``Disconnected`` log line).

    :class:`ImapSettings` reads the service's parameters once, when the
    service starts. Postfix has no IMAP server, so the names are Dovecot's
    where Dovecot has one, shared with pop3d where Dovecot shares them
    (all declared in the parameter registry):

    ``imap_max_line_length`` (Dovecot, 64k)
        longest command line; literals count against it (codec).
    ``login_greeting`` (Dovecot; default ``mailhorn ready.``)
        the text after ``* OK [CAPABILITY …]``.
    ``disable_plaintext_auth`` (Dovecot, yes)
        LOGIN and AUTHENTICATE PLAIN/LOGIN only over TLS or from a secured
        (loopback) client; otherwise the capability list says
        ``LOGINDISABLED``.
    ``auth_mechanisms`` (Dovecot, ``plain``)
        the ``AUTH=`` capabilities.
    ``imap_idle_notify_interval`` (Dovecot, 2m)
        how often IDLE sends ``* OK Still here``.
    ``mailbox_idle_check_interval`` (Dovecot, 30s)
        how often IDLE rescans the Maildir for changes made by other
        processes (a cheap look at the ``new/`` and ``cur/`` directories
        happens every second).
    ``imap_idle_timeout`` (mailhorn, 30m; RFC 3501 §5.4 minimum) and
    ``imap_login_timeout`` (mailhorn, 3m)
        how long an authenticated / a not yet authenticated client may stay
        silent before ``* BYE``.
    ``ssl``, ``ssl_cert``, ``ssl_key``, ``ssl_min_protocol`` (Dovecot) and
    ``imap_tls_wrappermode`` (mailhorn; imaps, port 993)
        STARTTLS and TLS on connect, read by
        :func:`mailhorn.mailaccess.tls_settings`; ``ssl = required``
        refuses plaintext logins before STARTTLS.
    APPENDLIMIT (RFC 7889)
        ``quota_max_mail_size`` (Dovecot) when set, else
        ``message_size_limit``; 0 means no limit.

Errors
    :class:`~mailhorn.config.errors.ConfigError` from
    :meth:`ImapSettings.from_config` for a value that is not a number,
    size, time or boolean, or an unknown ``ssl`` or ``ssl_min_protocol``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailhorn import mailaccess
from mailhorn.config.load import Config
from mailhorn.imap.commands import CommandSpec, State
from mailhorn.mailaccess import TlsSettings

if TYPE_CHECKING:
    from mailhorn.auth.userdb import UserInfo
    from mailhorn.imap.mailbox import SelectedMailbox


class SessionClosed(Exception):
    """The client went away or the session must end now (the text says why)."""


class Phase(enum.Enum):
    """RFC 3501 §3."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_STATE_OF = {
    Phase.NOT_AUTHENTICATED: State.NOT_AUTH,
    Phase.AUTHENTICATED: State.AUTH,
    Phase.SELECTED: State.SELECTED,
}


def allowed(spec_states: State, phase: Phase) -> bool:
    """Whether a command whose row says ``spec_states`` may run now."""
    flag = _STATE_OF.get(phase)
    return flag is not None and bool(spec_states & flag)


def refusal(spec: CommandSpec | State, phase: Phase) -> str:
    """Dovecot's BAD text for a command given in the wrong state."""
    states = spec.states if isinstance(spec, CommandSpec) else spec
    if phase is Phase.NOT_AUTHENTICATED:
        return "Please authenticate first."
    if states == State.SELECTED:
        return "No mailbox selected"
    if states == State.NOT_AUTH:
        return "Already authenticated"
    return "Command not allowed now"


@dataclass
class SessionState:
    """What one session knows about itself."""

    phase: Phase = Phase.NOT_AUTHENTICATED
    tls: bool = False
    user: UserInfo | None = None
    selected: SelectedMailbox | None = None
    enabled: set[str] = field(default_factory=set)
    bytes_in: int = 0
    bytes_out: int = 0
    auth_attempts: int = 0
    method: str = ""


# --- settings -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ImapSettings:
    """The parameters of one IMAP service (see the module text)."""

    max_line_length: int
    greeting: str
    disable_plaintext_auth: bool
    idle_notify_interval: float
    idle_check_interval: float
    autologout: float
    login_timeout: float
    append_limit: int | None
    tls: TlsSettings
    hostname: str

    @classmethod
    def from_config(cls, config: Config) -> ImapSettings:
        if config.get("quota_max_mail_size").strip():
            limit = mailaccess.size(config, "quota_max_mail_size")
        else:
            limit = config.int("message_size_limit")
        return cls(
            max_line_length=max(mailaccess.size(config, "imap_max_line_length"), 1024),
            greeting=config.get("login_greeting").strip(),
            disable_plaintext_auth=config.bool("disable_plaintext_auth"),
            idle_notify_interval=float(max(config.time("imap_idle_notify_interval"), 1)),
            idle_check_interval=float(max(config.time("mailbox_idle_check_interval"), 1)),
            autologout=float(max(config.time("imap_idle_timeout"), 1)),
            login_timeout=float(max(config.time("imap_login_timeout"), 1)),
            append_limit=limit or None,
            tls=mailaccess.tls_settings(config, "imap_tls_wrappermode"),
            hostname=config.get("myhostname") or "localhost",
        )


__all__ = ["ImapSettings", "Phase", "SessionClosed", "SessionState", "allowed", "refusal"]
