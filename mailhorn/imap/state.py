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
    where Dovecot has a flat name, and follow Postfix's per-program
    ``smtpd_tls_*`` pattern for TLS:

    ``imap_max_line_length`` (Dovecot, 64k)
        longest command line; literals count against it (codec).
    ``login_greeting`` (Dovecot; default ``mailhorn ready.``)
        the text after ``* OK [CAPABILITY …]``.
    ``disable_plaintext_auth`` (Dovecot, yes)
        LOGIN and AUTHENTICATE PLAIN/LOGIN only over TLS or from loopback;
        otherwise the capability list says ``LOGINDISABLED``.
    ``auth_mechanisms`` (Dovecot, ``plain``)
        the ``AUTH=`` capabilities.
    ``imap_idle_notify_interval`` (Dovecot, 2m)
        how often IDLE sends ``* OK Still here``.
    ``mailbox_idle_check_interval`` (Dovecot, 30s)
        how often IDLE rescans the Maildir for changes made by other
        processes (a cheap look at the ``new/`` and ``cur/`` directories
        happens every second).
    ``imapd_autologout`` (mailhorn, 30m; RFC 3501 §5.4 minimum) and
    ``imapd_login_timeout`` (mailhorn, 60s)
        how long an authenticated / a not yet authenticated client may stay
        silent before ``* BYE``.
    ``imapd_tls_cert_file``, ``imapd_tls_key_file`` (mailhorn; default
    ``$smtpd_tls_cert_file`` and ``$smtpd_tls_key_file``)
        the server certificate and key; per service with master.cf ``-o``.
    ``imapd_tls_security_level`` (mailhorn; ``may``)
        ``none`` offers no STARTTLS, ``may`` offers it, ``encrypt`` refuses
        every login before STARTTLS.
    ``imapd_tls_wrappermode`` (mailhorn; ``no``)
        TLS from the first byte (imaps, port 993).
    APPENDLIMIT (RFC 7889)
        ``quota_max_mail_size`` (Dovecot) when set, else
        ``message_size_limit``; 0 means no limit.

Errors
    :class:`~mailhorn.config.errors.ConfigError` from
    :meth:`ImapSettings.from_config` for a value that is not a number,
    time or boolean.
"""

from __future__ import annotations

import enum
import re
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.imap.commands import CommandSpec, State

if TYPE_CHECKING:
    from mailhorn.auth.userdb import UserInfo
    from mailhorn.imap.mailbox import SelectedMailbox

DEFAULT_GREETING = "mailhorn ready."

#: Defaults of the parameters the registry does not declare.
DEFAULTS: dict[str, str] = {
    "imap_max_line_length": "64k",
    "login_greeting": DEFAULT_GREETING,
    "disable_plaintext_auth": "yes",
    "auth_mechanisms": "plain",
    "imap_idle_notify_interval": "2m",
    "mailbox_idle_check_interval": "30s",
    "imapd_autologout": "30m",
    "imapd_login_timeout": "60s",
    "imapd_tls_cert_file": "$smtpd_tls_cert_file",
    "imapd_tls_key_file": "$smtpd_tls_key_file",
    "imapd_tls_security_level": "may",
    "imapd_tls_wrappermode": "no",
    "quota_max_mail_size": "",
}

_SIZE_RE = re.compile(r"^(\d+)\s*([kmg]?)b?$", re.IGNORECASE)
_TIME_RE = re.compile(r"^(\d+)\s*([smhdw]?)$", re.IGNORECASE)
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


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

def _raw(config: Config, name: str) -> str:
    """The expanded value of ``name`` or of its default in :data:`DEFAULTS`."""
    if config.raw(name) is None:
        return config.expand(DEFAULTS.get(name, ""), name)
    return config.get(name)


def _bad(config: Config, name: str, value: str, what: str) -> ConfigError:
    file, line = config.where(name)
    return ConfigError(f"invalid {what} value: {name} = {value}", file=file, line=line, param=name)


def _size(config: Config, name: str) -> int:
    value = _raw(config, name).strip()
    m = _SIZE_RE.match(value)
    if m is None:
        raise _bad(config, name, value, "size")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def _seconds(config: Config, name: str) -> float:
    value = _raw(config, name).strip()
    m = _TIME_RE.match(value)
    if m is None:
        raise _bad(config, name, value, "time")
    return float(int(m.group(1)) * _TIME_UNITS[m.group(2).lower()])


def _bool(config: Config, name: str) -> bool:
    value = _raw(config, name).strip().lower()
    if value not in ("yes", "no"):
        raise _bad(config, name, value, "boolean")
    return value == "yes"


def _tls_context(config: Config) -> ssl.SSLContext | None:
    cert = _raw(config, "imapd_tls_cert_file").strip().lstrip("<").strip()
    key = _raw(config, "imapd_tls_key_file").strip().lstrip("<").strip() or cert
    if not cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_COMPRESSION
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        log.warning(f"cannot load the server certificate or key: {exc}")
        log.warning("No server certs available. TLS won't be enabled")
        return None
    return context


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
    tls_level: str
    tls_context: ssl.SSLContext | None
    wrappermode: bool
    hostname: str

    @classmethod
    def from_config(cls, config: Config) -> ImapSettings:
        level = _raw(config, "imapd_tls_security_level").strip().lower() or "may"
        if level not in ("none", "may", "encrypt"):
            raise _bad(config, "imapd_tls_security_level", level, "TLS security level")
        wrapper = _bool(config, "imapd_tls_wrappermode")
        context = _tls_context(config) if level != "none" or wrapper else None
        if wrapper and context is None:
            log.warning("imapd_tls_wrappermode = yes without a usable certificate: "
                        "connections will fail")
        limit_text = _raw(config, "quota_max_mail_size").strip()
        if limit_text:
            limit = _size(config, "quota_max_mail_size")
        else:
            limit = config.int("message_size_limit") if config.raw("message_size_limit") else 0
        return cls(
            max_line_length=max(_size(config, "imap_max_line_length"), 1024),
            greeting=_raw(config, "login_greeting").strip() or DEFAULT_GREETING,
            disable_plaintext_auth=_bool(config, "disable_plaintext_auth"),
            idle_notify_interval=max(_seconds(config, "imap_idle_notify_interval"), 1.0),
            idle_check_interval=max(_seconds(config, "mailbox_idle_check_interval"), 1.0),
            autologout=max(_seconds(config, "imapd_autologout"), 1.0),
            login_timeout=max(_seconds(config, "imapd_login_timeout"), 1.0),
            append_limit=limit or None,
            tls_level=level,
            tls_context=context,
            wrappermode=wrapper,
            hostname=config.get("myhostname") if config.raw("myhostname") else "localhost",
        )


__all__ = ["DEFAULTS", "ImapSettings", "Phase", "SessionClosed", "SessionState", "allowed", "refusal"]
