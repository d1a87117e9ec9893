"""Password databases and the login check the SMTP, POP3 and IMAP servers share.

What it does
    :class:`PassDB` finds a user's stored password in the tables of
    ``passdb_maps``, searched in order like any Postfix ``*_maps`` list: the
    first table that has the key answers; a temporary error stops the search.
    The key is the login after ``auth_username_format``; the value is the
    stored password, ``{SCHEME}``-prefixed or bare (then
    ``default_pass_scheme`` applies, see :mod:`mailhorn.auth.passwords`).
    Any table type works: ``mysql:``/``pgsql:``/``sqlite:`` with a query such
    as ``SELECT password FROM users WHERE email='%s'`` (seed 003),
    ``passwd-file:`` (Dovecot passwd-file and htpasswd files), ``texthash:``.
    The special table ``unix:shadow.byname`` reads /etc/shadow
    (:mod:`mailhorn.auth.shadow`; needs root): a login ``name`` or
    ``name@domain`` with a ``mydestination`` domain looks ``name`` up; locked
    (``!``, ``*``), password-less and expired accounts never match.  In a
    worker running as ``mail_owner`` the table is never read: the password
    goes to the spawner (:func:`mailhorn.privsep.verify_password`), which
    answers yes, no, or unknown (then the next table is asked), so no hash
    ever reaches the worker.

    :class:`Authenticator` checks a login:
    :meth:`~Authenticator.authenticate` for a password (PLAIN, LOGIN, POP3
    USER/PASS, IMAP LOGIN) and :meth:`~Authenticator.authenticate_cram_md5`
    for a CRAM-MD5 answer.  It returns an :class:`AuthResult`:

    * ``OK`` with the canonical user name (the formatted login);
    * ``FAILED``: the very same object, text and work for an unknown user, a
      wrong password, a locked account or an unusable stored password.  An
      unknown user's password is verified against a stand-in hash (the most
      recent stored password looked up, so the cost is the site's own), so
      both paths run one password verification; then the reply waits
      ``auth_failure_delay``;
    * ``TEMPFAIL``: a table could not be read (:class:`TableRetry`, a
      database down, /etc/shadow unreadable): servers answer ``454 4.7.0``,
      ``-ERR [SYS/TEMP]``, ``NO [UNAVAILABLE]``; the failure is not counted;
    * ``LIMITED``: too many failures from the client address
      (:mod:`mailhorn.auth.limiter`); the password was not looked at.

    Password verification (argon2 and bcrypt cost 50–100 ms) and table
    lookups run in worker threads, never in the event loop.

Parameters read
    ``passdb_maps``, ``default_pass_scheme``, ``auth_username_format``,
    ``auth_failure_delay``, ``mydestination`` (for ``unix:shadow.byname``).

Errors
    :class:`~mailhorn.config.errors.ConfigError` from the constructor for a
    bad ``auth_username_format``, ``auth_failure_delay`` or table name.  At
    login time nothing is raised: problems become ``TEMPFAIL`` (logged as
    warnings) or ``FAILED`` (an unsupported scheme such as Apache's
    ``$apr1$`` is logged as an error naming the user and the scheme).
    Passwords never appear in logs.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import os
import secrets
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mailhorn import log, privsep
from mailhorn.auth import cram_md5, passwords
from mailhorn.auth.limiter import Limiter
from mailhorn.auth.shadow import ShadowError, shadow_password
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.iopool import offload
from mailhorn.tables.base import Table, TableConfigError, TableRetry
from mailhorn.tables.matchlist import DomainList, MatchListRetry, domain_list_from_config
from mailhorn.tables.registry import open_table

#: The table that reads /etc/shadow.
SHADOW_TABLE = "unix:shadow.byname"
#: Longest login accepted (Postfix's and Dovecot's practical limit on names).
MAX_LOGIN = 255

# --- auth_username_format --------------------------------------------------------

_VAR_RE = re.compile(r"%([LU]*)(?:([undh%])|\{(user|username|domain|home)\})")
_LONG_NAMES = {"user": "u", "username": "n", "domain": "d", "home": "h"}


def login_variables(login: str) -> dict[str, str]:
    """Dovecot's ``%u``, ``%n`` and ``%d`` of a login (``%d`` empty without ``@``)."""
    local, at, domain = login.rpartition("@")
    if not at:
        local, domain = login, ""
    return {"u": login, "n": local, "d": domain}


def expand_variables(fmt: str, values: Mapping[str, str], what: str) -> str:
    """Expand Dovecot ``%`` variables of ``fmt`` from ``values`` (keys ``u n d h``).

    Long forms ``%{user}`` ``%{username}`` ``%{domain}`` ``%{home}`` and
    ``%%`` are understood; modifiers ``L`` (lower case) and ``U`` (upper
    case) go between ``%`` and the variable.  A variable not known, or not
    given in ``values``, raises ConfigError naming ``what``.
    """
    out: list[str] = []
    pos = 0
    for match in _VAR_RE.finditer(fmt):
        if "%" in fmt[pos : match.start()]:
            break
        code = match.group(2) or _LONG_NAMES[match.group(3)]
        value = "%" if code == "%" else values.get(code)
        if value is None:
            break
        out.append(fmt[pos : match.start()])
        for modifier in match.group(1):
            value = value.lower() if modifier == "L" else value.upper()
        out.append(value)
        pos = match.end()
    rest = fmt[pos:]
    if "%" in rest:
        raise ConfigError(f"{what}: unknown variable in: {fmt}", param=what)
    out.append(rest)
    return "".join(out)


def format_username(fmt: str, login: str) -> str:
    """Apply Dovecot's ``auth_username_format`` (``%Lu`` by default) to ``login``.

    Variables: ``%u``/``%{user}`` the whole login, ``%n``/``%{username}`` the
    part before the last ``@``, ``%d``/``%{domain}`` the part after it
    (empty without ``@``), ``%%`` a percent sign; modifiers ``L`` (lower
    case) and ``U`` (upper case) between ``%`` and the variable.
    """
    return expand_variables(fmt, login_variables(login), "auth_username_format")


def valid_login(login: str) -> bool:
    """Whether ``login`` may be looked up at all: not empty, no controls, not too long."""
    return 0 < len(login) <= MAX_LOGIN and all(ch >= " " and ch != "\x7f" for ch in login)


# --- the password tables -------------------------------------------------------------


@dataclass(frozen=True)
class ShadowTable:
    """``unix:shadow.byname``: usable /etc/shadow hashes of local accounts."""

    is_local: Callable[[str], bool]
    path: str = "/etc/shadow"
    type: str = "unix"
    name: str = "shadow.byname"

    def account(self, key: str) -> str | None:
        """The account name ``key`` stands for (``name`` or ``name@local-domain``), or None."""
        name, at, domain = key.rpartition("@")
        if not at:
            return key
        if not name or not self.is_local(domain):
            return None
        return name

    def lookup(self, key: str) -> str | None:
        """The hash of ``key`` (``name`` or ``name@local-domain``), or None."""
        name = self.account(key)
        if name is None:
            return None
        try:
            return shadow_password(name, self.path)
        except ShadowError as exc:
            raise TableRetry(f"{SHADOW_TABLE}: {exc}") from exc


@dataclass(frozen=True)
class Delegated:
    """A stored password only the spawner may check: that of system account ``name``."""

    name: str


class PassDB:
    """The ordered tables of ``passdb_maps``."""

    def __init__(self, config: Config, shadow_path: str = "/etc/shadow") -> None:
        self.tables: list[Table] = []
        self._local: DomainList | None = None
        self._config = config
        for spec in config.list("passdb_maps"):
            bare = spec[len("proxy:"):] if spec.startswith("proxy:") else spec
            if bare == SHADOW_TABLE:
                self.tables.append(ShadowTable(self._is_local, shadow_path))
            else:
                self.tables.append(open_table(spec, config))

    def _is_local(self, domain: str) -> bool:
        if self._local is None:
            self._local = domain_list_from_config(self._config, "mydestination")
        try:
            return self._local.match(domain)
        except MatchListRetry as exc:
            raise TableRetry(str(exc)) from exc

    def lookup(self, user: str) -> str | None:
        """The stored password of ``user``; raises TableRetry/TableConfigError."""
        for table in self.tables:
            value = table.lookup(user)
            if value is not None:
                return value
        return None

    def find(self, user: str, start: int = 0) -> tuple[int, str | Delegated] | None:
        """The first answer from table ``start`` on, with its index; the shadow table is
        :class:`Delegated` when a spawner checks it.  Raises TableRetry/TableConfigError."""
        for index in range(start, len(self.tables)):
            table = self.tables[index]
            if isinstance(table, ShadowTable) and privsep.active():
                name = table.account(user)
                if name is not None and valid_login(name):
                    return index, Delegated(name)
                continue
            value = table.lookup(user)
            if value is not None:
                return index, value
        return None


# --- results -------------------------------------------------------------------------


class AuthStatus(enum.Enum):
    """The outcome of a login attempt."""

    OK = "ok"
    FAILED = "failed"
    TEMPFAIL = "tempfail"
    LIMITED = "limited"


@dataclass(frozen=True)
class AuthResult:
    """A login outcome; ``user`` is the canonical name when ``status`` is OK."""

    status: AuthStatus
    user: str | None
    text: str

    @property
    def ok(self) -> bool:
        """Whether the login succeeded."""
        return self.status is AuthStatus.OK


#: The one failure result (Dovecot's text), whatever went wrong.
AUTH_FAILED = AuthResult(AuthStatus.FAILED, None, "Authentication failed.")
#: A table could not be read; the client should try again later.
AUTH_TEMPFAIL = AuthResult(AuthStatus.TEMPFAIL, None, "Temporary authentication failure.")
#: Too many failures from this client address.
AUTH_LIMITED = AuthResult(AuthStatus.LIMITED, None, "Too many authentication failures, try again later.")


# --- the authenticator ---------------------------------------------------------------


@dataclass(frozen=True)
class _Stored:
    """A stored password and the scheme that applies to it when bare."""

    value: str
    default_scheme: str
    delegated: Delegated | None = None
    index: int = 0


def _unsupported_scheme(stored: str) -> str | None:
    """A clear name for stored formats that are known but not supported."""
    if stored.startswith("$apr1$"):
        return "APR1 (Apache htpasswd MD5; re-hash with htpasswd -B for bcrypt)"
    return None


class Authenticator:
    """Checks logins against ``passdb_maps`` with failure delays and limits."""

    def __init__(self, config: Config, limiter: Limiter | None = None, shadow_path: str = "/etc/shadow") -> None:
        self.username_format = config.get("auth_username_format")
        format_username(self.username_format, "user@example.com")  # validate now, not at login
        self.default_scheme = config.get("default_pass_scheme").strip() or passwords.DEFAULT_PASS_SCHEME
        self.failure_delay = float(config.time("auth_failure_delay"))
        self.passdb = PassDB(config, shadow_path)
        self.limiter = limiter if limiter is not None else Limiter(delay=self.failure_delay)
        if not self.passdb.tables:
            log.warning("passdb_maps is empty: no login can succeed")
        # The stand-in for unknown users: replaced by each real stored password seen.
        self._stand_in = _Stored(passwords.hash_password(secrets.token_hex(16), "CRYPT"), self.default_scheme)
        self._stand_in_context = cram_md5.hmac_md5_context(os.urandom(16))

    def canonical(self, login: str) -> str:
        """The user name ``login`` is looked up as (``auth_username_format``)."""
        return format_username(self.username_format, login)

    async def _stored(self, user: str, start: int = 0) -> _Stored | None:
        """The stored password of ``user`` (from table ``start`` on), None if unknown; raises on table errors."""
        found = await offload(self.passdb.find, user, start)
        if found is None:
            return None
        index, value = found
        if isinstance(value, Delegated):
            return _Stored("", "CRYPT", value, index)
        if value == "":
            return None
        stored = _Stored(value, self.default_scheme, None, index)
        self._stand_in = stored
        return stored

    async def _begin(self, client_addr: str) -> AuthResult | None:
        """Apply the limiter: a result when the attempt is refused, else None after any penalty."""
        verdict = self.limiter.check(client_addr)
        if verdict.refused:
            log.info(f"auth: rip={client_addr}: refused after {verdict.failures} failed logins")
            return AUTH_LIMITED
        if verdict.delay > 0:
            await asyncio.sleep(verdict.delay)
        return None

    async def _failed(self, client_addr: str, service: str, user: str, reason: str) -> AuthResult:
        log.info(f"auth: {service}({user},{client_addr}): {reason}")
        self.limiter.record_failure(client_addr)
        if self.failure_delay > 0:
            await asyncio.sleep(self.failure_delay)
        return AUTH_FAILED

    def _tempfail(self, client_addr: str, service: str, user: str, exc: Exception) -> AuthResult:
        log.warning(f"auth: {service}({user},{client_addr}): passdb lookup failed: {exc}")
        return AUTH_TEMPFAIL

    @staticmethod
    def _verify(password: str | bytes, stored: _Stored, user: str) -> bool | str:
        """True/False, or the reason the stored password cannot be checked."""
        try:
            return passwords.verify(password, stored.value, stored.default_scheme, user=user)
        except passwords.PasswordError as exc:
            return str(exc)

    async def authenticate(self, login: str, password: str | bytes, client_addr: str, service: str) -> AuthResult:
        """Check ``login``/``password`` from ``client_addr`` for ``service`` (smtp, pop3, imap)."""
        refused = await self._begin(client_addr)
        if refused is not None:
            return refused
        user = self.canonical(login) if valid_login(login) else ""
        checked = False  # a spawner already spent a stand-in verification on this login
        try:
            stored = await self._stored(user) if valid_login(user) else None
            while stored is not None and stored.delegated is not None:
                verdict = await privsep.verify_password(stored.delegated.name, password)
                if verdict == "unknown":
                    checked = True
                    stored = await self._stored(user, stored.index + 1)
                    continue
                if verdict == "tempfail":
                    return self._tempfail(client_addr, service, user, TableRetry(
                        f"{SHADOW_TABLE}: the password check is not available"))
                if verdict != "yes":
                    return await self._failed(client_addr, service, user, "Password mismatch")
                self.limiter.record_success(client_addr)
                return AuthResult(AuthStatus.OK, user, "Authentication successful.")
        except (TableRetry, TableConfigError, ConfigError, OSError) as exc:
            return self._tempfail(client_addr, service, user, exc)
        candidate = stored if stored is not None else self._stand_in
        unsupported = _unsupported_scheme(candidate.value)
        outcome: bool | str = False
        if stored is not None or not checked:
            outcome = await offload(self._verify, password, candidate, user)
        if stored is None:
            return await self._failed(client_addr, service, user, "unknown user")
        if unsupported is not None:
            log.error(f"auth: {service}({user},{client_addr}): unsupported password scheme {unsupported}")
            return await self._failed(client_addr, service, user, "unsupported password scheme")
        if isinstance(outcome, str):
            log.error(f"auth: {service}({user},{client_addr}): invalid stored password: {outcome}")
            return await self._failed(client_addr, service, user, "invalid stored password")
        if not outcome:
            return await self._failed(client_addr, service, user, "Password mismatch")
        self.limiter.record_success(client_addr)
        return AuthResult(AuthStatus.OK, user, "Authentication successful.")

    async def cram_md5_context(self, login: str) -> bytes | None:
        """The HMAC-MD5 context of ``login``'s stored password, or None.

        None when the user is unknown or the scheme is one-way (only
        ``{CRAM-MD5}``/``{HMAC-MD5}`` and plaintext passwords can answer
        CRAM-MD5).  Raises TableRetry when a table cannot be read.
        """
        user = self.canonical(login)
        stored = await self._stored(user) if valid_login(user) else None
        if stored is None or stored.delegated is not None:
            return None  # shadow(5) hashes are one-way: no CRAM-MD5
        try:
            return passwords.cram_md5_context(stored.value, stored.default_scheme)
        except passwords.PasswordError:
            return None

    async def authenticate_cram_md5(self, login: str, challenge: bytes, response: str, client_addr: str,
                                    service: str) -> AuthResult:
        """Check a CRAM-MD5 answer (RFC 2195): ``response`` is the client's hex digest."""
        refused = await self._begin(client_addr)
        if refused is not None:
            return refused
        user = self.canonical(login) if valid_login(login) else ""
        try:
            stored = await self._stored(user) if valid_login(user) else None
        except (TableRetry, TableConfigError, ConfigError, OSError) as exc:
            return self._tempfail(client_addr, service, user, exc)
        context: bytes | None = None
        reason = "unknown user"
        if stored is not None and stored.delegated is not None:
            reason = "Requested CRAM-MD5 scheme, but we have only CRYPT"
        elif stored is not None:
            try:
                context = passwords.cram_md5_context(stored.value, stored.default_scheme)
                reason = "Password mismatch"
            except passwords.PasswordError as exc:
                reason = f"invalid stored password: {exc}"
            if context is None and reason == "Password mismatch":
                scheme = passwords.split_scheme(stored.value, stored.default_scheme)[0]
                reason = f"Requested CRAM-MD5 scheme, but we have only {scheme}"
        expected = cram_md5.cram_md5_response(context or self._stand_in_context, challenge)
        matches = hmac.compare_digest(expected.encode("ascii"), response.lower().encode("ascii", "replace"))
        if context is None or not matches:
            return await self._failed(client_addr, service, user, reason)
        self.limiter.record_success(client_addr)
        return AuthResult(AuthStatus.OK, user, "Authentication successful.")
