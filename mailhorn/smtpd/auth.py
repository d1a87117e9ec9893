"""SMTP AUTH (RFC 4954) in smtpd, with Postfix's replies and log lines.

What it does
    :class:`SmtpdSasl` is what one smtpd service knows about SASL: whether AUTH
    is offered, the mechanisms offered before and after STARTTLS, and the
    :class:`~mailhorn.auth.passdb.Authenticator` that checks the credentials
    (the same password databases as POP3 and IMAP).  :func:`start` answers
    the AUTH command and :func:`respond` each client line of the exchange
    after a ``334`` challenge (the SMTP engine hands those lines over as
    ``AuthResponse`` events); the mechanisms themselves are the sans-I/O
    state machines of :mod:`mailhorn.auth.sasl`.

    Mechanisms: PLAIN and LOGIN always (they work with every password
    scheme, as Cyrus ``mech_list: plain login`` in the seeds), CRAM-MD5 when
    ``auth_mechanisms`` lists it (its stored passwords must be
    ``{CRAM-MD5}`` or plaintext).  ``smtpd_sasl_security_options`` (before
    TLS) and ``smtpd_sasl_tls_security_options`` (after) drop mechanisms by
    their properties, as Postfix's Dovecot SASL back-end does: PLAIN and
    LOGIN are *plaintext*; CRAM-MD5 is open to *dictionary* and *active*
    attacks; none gives *mutual_auth* or *forward_secrecy*.
    ``smtpd_sasl_mechanism_filter`` then filters the names.

Replies (Postfix 3.7's texts), in the order Postfix checks:
    - ``450 4.7.1 Error: too many AUTH commands from ADDR`` over
      ``smtpd_client_auth_rate_limit`` (anvil ``auth`` event; logged
      ``warning: AUTH command rate limit exceeded: N from CLIENT for service S``);
    - ``503 5.5.1 Error: send HELO/EHLO first`` with ``smtpd_helo_required``;
    - ``503 5.5.1 Error: authentication not enabled``;
    - ``503 5.5.1 Error: MAIL transaction in progress``;
    - ``504 5.5.4 Encryption required for requested authentication
      mechanism`` before STARTTLS with ``smtpd_tls_auth_only = yes``;
    - ``503 5.5.1 Error: already authenticated``;
    - ``334 CHALLENGE`` while the exchange goes on; ``501 5.7.0
      Authentication aborted`` for ``*``; ``500 5.5.6 SASL response limit
      exceeded`` past ``smtpd_sasl_response_limit``;
    - ``235 2.7.0 Authentication successful``;
    - ``535 5.7.8 Error: authentication failed: REASON``; REASON is
      ``authentication failure`` for an unknown user, a wrong password, a
      locked account alike (Cyrus SASL's text), ``Invalid authentication
      mechanism``, ``Invalid base64 data in initial response`` /
      ``... continued response`` (Postfix's Dovecot back-end texts);
    - ``454 4.7.0 Temporary authentication failure: Authentication backend
      error`` when a password table cannot be read.

    Failures are logged ``warning: CLIENT: SASL MECH authentication failed:
    REASON, sasl_username=LOGIN`` (``(unavailable)`` before a login name is
    known); aborts ``warning: CLIENT: SASL MECH authentication aborted``.
    A failure counts as an smtpd error, so a flood of guesses ends with
    ``421 4.7.0 HOST Error: too many errors`` at ``smtpd_hard_error_limit``.

    Success sets the session's ``sasl_method``/``sasl_username`` (the
    canonical login after ``auth_username_format``) for the restrictions
    (``permit_sasl_authenticated``, ``reject_sender_login_mismatch``), the
    protocol name (ESMTPA, ESMTPSA), the Received: header and the
    ``client=`` log line.  STARTTLS forgets an earlier login (RFC 3207 §4.2).

Parameters read
    ``smtpd_sasl_auth_enable``, ``smtpd_sasl_security_options``,
    ``smtpd_sasl_tls_security_options``, ``smtpd_sasl_mechanism_filter``,
    ``smtpd_sasl_exceptions_networks``, ``smtpd_sasl_response_limit``,
    ``smtpd_sasl_local_domain``, ``broken_sasl_auth_clients``,
    ``smtpd_client_auth_rate_limit``, ``auth_mechanisms``, and those of
    :class:`~mailhorn.auth.passdb.Authenticator` (``passdb_maps``, ...).

Errors
    :class:`~mailhorn.config.errors.ConfigError` from
    :meth:`SmtpdSasl.from_config` for an unknown security option or a bad
    passdb setting, when the service starts.  Nothing escapes at login time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TYPE_CHECKING

from mailhorn import log
from mailhorn.auth import sasl
from mailhorn.auth.passdb import AuthStatus, Authenticator
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.smtp import reply as R
from mailhorn.smtp.codec import AuthResponse
from mailhorn.smtp.commands import Auth
from mailhorn.smtp.reply import Reply, printable
from mailhorn.tables.base import TableRetry
from mailhorn.tables.matchlist import NamadrList, StringList, namadr_list_from_config, string_list_from_config

if TYPE_CHECKING:
    from mailhorn.smtpd.session import Session

__all__ = ["Exchange", "SmtpdSasl", "mechanisms_allowed", "respond", "security_options", "start"]

AUTH_OK: Final = Reply.of(235, "2.7.0", "Authentication successful")
AUTH_ABORTED: Final = Reply.of(501, "5.7.0", "Authentication aborted")
ALREADY_AUTHENTICATED: Final = Reply.of(503, "5.5.1", "Error: already authenticated")
ENCRYPTION_REQUIRED: Final = Reply.of(504, "5.5.4", "Encryption required for requested authentication mechanism")
RESPONSE_LIMIT_EXCEEDED: Final = Reply.of(500, "5.5.6", "SASL response limit exceeded")

#: The SASL reason for every credential failure: Cyrus SASL's text, the same
#: whether the user is unknown or the password wrong.
REASON_FAILURE: Final = "authentication failure"
REASON_MECHANISM: Final = "Invalid authentication mechanism"
REASON_BASE64_INITIAL: Final = "Invalid base64 data in initial response"
REASON_BASE64_CONTINUED: Final = "Invalid base64 data in continued response"
REASON_TEMPORARY: Final = "Authentication backend error"

#: What each mechanism is open to (Dovecot's mechanism flags, which Postfix's
#: Dovecot back-end compares with the security options).
MECHANISM_PROPERTIES: Final[dict[str, frozenset[str]]] = {
    "PLAIN": frozenset({"plaintext", "no-mutual", "no-forward-secrecy"}),
    "LOGIN": frozenset({"plaintext", "no-mutual", "no-forward-secrecy"}),
    "CRAM-MD5": frozenset({"dictionary", "active", "no-mutual", "no-forward-secrecy"}),
}
#: Each security option and the property it refuses (postconf(5)
#: smtpd_sasl_security_options).
SECURITY_OPTIONS: Final[dict[str, str]] = {
    "noanonymous": "anonymous",
    "noplaintext": "plaintext",
    "noactive": "active",
    "nodictionary": "dictionary",
    "mutual_auth": "no-mutual",
    "mutual-auth": "no-mutual",
    "forward_secrecy": "no-forward-secrecy",
}
#: Mechanisms always offered, in the order Postfix shows them with Cyrus
#: ``mech_list: plain login``; CRAM-MD5 follows when enabled.
BASE_MECHANISMS: Final = ("PLAIN", "LOGIN")


def security_options(config: Config, param: str) -> frozenset[str]:
    """The properties refused by a security-options parameter; ConfigError if unknown."""
    value = config.get(param)
    refused: set[str] = set()
    for word in split_list(value):
        prop = SECURITY_OPTIONS.get(word.lower())
        if prop is None:
            file, line = config.where(param)
            raise ConfigError(f'unknown {param} value "{word}" in "{value}"', file=file, line=line, param=param)
        refused.add(prop)
    return frozenset(refused)


def mechanisms_allowed(mechanisms: tuple[str, ...], refused: frozenset[str],
                       name_filter: StringList | None = None) -> tuple[str, ...]:
    """The mechanisms whose properties the options allow and the filter keeps."""
    kept: list[str] = []
    for mech in mechanisms:
        if MECHANISM_PROPERTIES.get(mech, frozenset()) & refused:
            continue
        if name_filter is not None:
            try:
                if not name_filter.match(mech):
                    continue
            except TableRetry:
                continue
        kept.append(mech)
    return tuple(kept)


@dataclass(frozen=True)
class SmtpdSasl:
    """The SASL settings of one smtpd service."""

    enabled: bool
    mechanisms: tuple[str, ...]
    """Offered on a session without TLS (smtpd_sasl_security_options)."""
    tls_mechanisms: tuple[str, ...]
    """Offered after STARTTLS or on smtps (smtpd_sasl_tls_security_options)."""
    broken_clients: bool
    response_limit: int
    rate_limit: int
    local_domain: str
    exceptions: NamadrList | None
    authenticator: Authenticator | None
    hostname: str

    @classmethod
    def from_config(cls, config: Config) -> SmtpdSasl:
        enabled = config.bool("smtpd_sasl_auth_enable")
        candidates: tuple[str, ...] = BASE_MECHANISMS
        authenticator: Authenticator | None = None
        if enabled:
            if "CRAM-MD5" in sasl.mechanisms_from_config(config):
                candidates = (*BASE_MECHANISMS, "CRAM-MD5")
            authenticator = Authenticator(config)
        name_filter = string_list_from_config(config, "smtpd_sasl_mechanism_filter")
        plain = mechanisms_allowed(candidates, security_options(config, "smtpd_sasl_security_options"),
                                   name_filter)
        tls = mechanisms_allowed(candidates, security_options(config, "smtpd_sasl_tls_security_options"),
                                 name_filter)
        if enabled and not plain and not tls:
            log.warning("no SASL authentication mechanisms: smtpd_sasl_security_options and"
                        " smtpd_sasl_tls_security_options refuse all of " + " ".join(candidates))
        exceptions = namadr_list_from_config(config, "smtpd_sasl_exceptions_networks") \
            if config.get("smtpd_sasl_exceptions_networks").strip() else None
        return cls(
            enabled=enabled,
            mechanisms=plain,
            tls_mechanisms=tls,
            broken_clients=config.bool("broken_sasl_auth_clients"),
            response_limit=config.int("smtpd_sasl_response_limit"),
            rate_limit=config.int("smtpd_client_auth_rate_limit"),
            local_domain=config.get("smtpd_sasl_local_domain").strip(),
            exceptions=exceptions,
            authenticator=authenticator,
            hostname=config.get("myhostname"),
        )

    def offered(self, tls: bool) -> tuple[str, ...]:
        """The mechanisms for a session with or without TLS."""
        return self.tls_mechanisms if tls else self.mechanisms

    def excepted(self, name: str, addr: str) -> bool:
        """Whether ``smtpd_sasl_exceptions_networks`` hides AUTH from this client."""
        if self.exceptions is None:
            return False
        try:
            return self.exceptions.match(name, addr)
        except TableRetry as exc:
            log.warning(f"smtpd_sasl_exceptions_networks: {exc}")
            return False


@dataclass
class Exchange:
    """An AUTH exchange waiting for the client's next line."""

    mechanism: sasl.Mechanism
    name: str
    login: str | None = None


# --- EHLO ---------------------------------------------------------------------------


def ehlo_lines(session: Session) -> list[str]:
    """``AUTH MECHS`` (and ``AUTH=MECHS`` for broken clients), or nothing.

    postconf(5): nothing before TLS with ``smtpd_tls_auth_only``, nothing to
    ``smtpd_sasl_exceptions_networks`` clients, nothing when no mechanism is
    left for this session.
    """
    s = session.ctx.sasl
    if not s.enabled:
        return []
    if session.ctx.tls.auth_only and session.tls is None:
        return []
    st = session.state
    if s.excepted(st.client_name, st.client_addr):
        return []
    mechs = s.offered(session.tls is not None)
    if not mechs:
        return []
    lines = [f"AUTH {' '.join(mechs)}"]
    if s.broken_clients:
        lines.append(f"AUTH={' '.join(mechs)}")
    return lines


# --- the AUTH command -----------------------------------------------------------------


async def start(session: Session, cmd: Auth) -> Reply:
    """Answer ``AUTH mechanism [initial-response]``."""
    s = session.ctx.sasl
    st = session.state
    settings = session.settings
    if s.rate_limit > 0 and session.limits_apply():
        rate = session.ctx.runtime.anvil.event("auth", settings.service, st.client_addr)
        if rate > s.rate_limit:
            log.warning(f"AUTH command rate limit exceeded: {rate} from {session.client}"
                        f" for service {settings.service}")
            return Reply.of(450, "4.7.1", f"Error: too many AUTH commands from {st.client_addr}")
    if settings.helo_required and st.helo_name is None:
        return R.NEED_HELO
    if not s.enabled or s.authenticator is None or "auth" in session.discard_ehlo:
        return R.AUTH_NOT_ENABLED
    if session.txn is not None:
        return R.MAIL_TRANSACTION_IN_PROGRESS
    if session.ctx.tls.auth_only and session.tls is None:
        return ENCRYPTION_REQUIRED
    if session.authenticated:
        return ALREADY_AUTHENTICATED
    name = printable(cmd.mechanism)
    if cmd.mechanism not in s.offered(session.tls is not None):
        return _failed(session, name, None, REASON_MECHANISM)
    initial = cmd.initial_response
    if initial is not None:
        if len(initial) > s.response_limit:
            return RESPONSE_LIMIT_EXCEEDED
        reply = _precheck(session, name, None, initial, REASON_BASE64_INITIAL)
        if reply is not None:
            return reply
    mechanism = sasl.new_mechanism(cmd.mechanism, s.hostname, s.response_limit)
    exchange = Exchange(mechanism, name)
    try:
        step = mechanism.start(initial)
    except sasl.SaslError as exc:
        return _sasl_error(session, exchange, exc)
    return await _step(session, exchange, step)


async def respond(session: Session, event: AuthResponse) -> Reply:
    """Answer one client line of the exchange (after a 334)."""
    exchange = session.sasl_exchange
    session.sasl_exchange = None
    if exchange is None:  # the engine only asks after our 334
        return R.AUTH_NOT_ENABLED
    text = event.line
    if event.truncated or len(text) > session.ctx.sasl.response_limit:
        return RESPONSE_LIMIT_EXCEEDED
    reply = _precheck(session, exchange.name, exchange.login, text, REASON_BASE64_CONTINUED)
    if reply is not None:
        return reply
    try:
        step = exchange.mechanism.step(text)
    except sasl.SaslError as exc:
        return _sasl_error(session, exchange, exc)
    return await _step(session, exchange, step)


def _precheck(session: Session, name: str, login: str | None, text: str, reason: str) -> Reply | None:
    """``*`` aborts; anything that is not base64 fails with Postfix's reason."""
    try:
        sasl.decode_response(text, len(text) + 1)
    except sasl.SaslCancelled:
        log.warning(f"{session.client}: SASL {name} authentication aborted")
        return AUTH_ABORTED
    except sasl.SaslSyntaxError:
        return _failed(session, name, login, reason)
    return None


def _sasl_error(session: Session, exchange: Exchange, exc: sasl.SaslError) -> Reply:
    if isinstance(exc, sasl.SaslCancelled):
        log.warning(f"{session.client}: SASL {exchange.name} authentication aborted")
        return AUTH_ABORTED
    # A malformed or refused message fails like a wrong password.
    return _failed(session, exchange.name, exchange.login, REASON_FAILURE)


async def _step(session: Session, exchange: Exchange, step: sasl.Step) -> Reply:
    if isinstance(step, sasl.Challenge):
        if isinstance(exchange.mechanism, sasl.Login):
            exchange.login = exchange.mechanism.username
        session.sasl_exchange = exchange
        return Reply.of(334, None, step.encoded())
    s = session.ctx.sasl
    assert s.authenticator is not None
    credentials = step
    login = credentials.authcid
    if s.local_domain and "@" not in login:
        # Cyrus SASL's user_realm: a bare name belongs to smtpd_sasl_local_domain.
        login = f"{login}@{s.local_domain}"
        credentials = sasl.Credentials(credentials.mechanism, login, credentials.authzid,
                                       credentials.password, credentials.challenge, credentials.response)
    result = await sasl.check(s.authenticator, credentials, session.state.client_addr, "smtp")
    if result.status is AuthStatus.TEMPFAIL:
        return _failed(session, exchange.name, login, REASON_TEMPORARY, temporary=True)
    if not result.ok or result.user is None:
        return _failed(session, exchange.name, login, REASON_FAILURE)
    st = session.state
    st.sasl_method = exchange.name
    st.sasl_username = printable(result.user)
    session.authenticated = True
    session.update_protocol()
    return AUTH_OK


def _failed(session: Session, name: str, login: str | None, reason: str, *, temporary: bool = False) -> Reply:
    user = printable(login) if login else "(unavailable)"
    log.warning(f"{session.client}: SASL {name} authentication failed: {reason}, sasl_username={user}")
    if temporary:
        return Reply.of(454, "4.7.0", f"Temporary authentication failure: {reason}")
    return Reply.of(535, "5.7.8", f"Error: authentication failed: {reason}")


def forget(session: Session) -> None:
    """Drop a login and any exchange (after STARTTLS, RFC 3207 §4.2)."""
    st = session.state
    st.sasl_method = st.sasl_username = st.sasl_sender = ""
    session.authenticated = False
    session.sasl_exchange = None
