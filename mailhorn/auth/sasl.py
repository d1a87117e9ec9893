"""SASL server mechanisms PLAIN, LOGIN and CRAM-MD5 as sans-I/O state machines.

What it does
    A server (smtpd ``AUTH``, POP3 ``AUTH``, IMAP ``AUTHENTICATE``) creates a
    mechanism with :func:`new_mechanism`, passes the client's initial
    response (or None when there was none) to :meth:`Mechanism.start`, and
    each later client line to :meth:`Mechanism.step`.  Each call returns a
    :class:`Challenge` (bytes the server sends base64-encoded: ``334 …``,
    ``+ …``) or the final :class:`Credentials`, which the server gives to
    :class:`mailhorn.auth.passdb.Authenticator` (:func:`check`).  The
    mechanisms never do I/O and never see the password database.

    Client data is base64 (RFC 4648 §4, strict: padding required, no
    whitespace).  ``=`` stands for an empty response (RFC 4954 §4, RFC 4959,
    RFC 5034 initial responses); ``*`` cancels the exchange (RFC 4954 §4,
    RFC 3501 §6.2.2), raising :class:`SaslCancelled`.

Mechanisms
    ``PLAIN`` (RFC 4616): one message ``[authzid] NUL authcid NUL passwd``
    in UTF-8; without an initial response the server first sends an empty
    challenge.  authcid and passwd must not be empty.  An authzid is accepted
    only when empty or equal to authcid: mailhorn has no master users, so a
    request to act as someone else is refused.

    ``LOGIN`` (draft-murchison-sasl-login): challenges ``Username:`` and
    ``Password:`` (``VXNlcm5hbWU6``, ``UGFzc3dvcmQ6`` in base64); an
    initial response is the user name.

    ``CRAM-MD5`` (RFC 2195): the server sends ``<random.timestamp@host>``;
    the client answers ``user SP digest`` (32 lowercase hex digits of
    HMAC-MD5 keyed with the password).  An initial response is refused,
    since the server speaks first.

    PLAIN and LOGIN send the password itself (``plaintext``): servers offer
    them only over TLS or to localhost unless ``disable_plaintext_auth = no``
    (:func:`offered_mechanisms`).

Parameters read
    ``auth_mechanisms`` (:func:`mechanisms_from_config`) and
    ``disable_plaintext_auth`` (:func:`plaintext_auth_allowed`); servers
    pass ``myhostname`` and ``smtpd_sasl_response_limit``.

Errors
    :class:`SaslCancelled` (the client sent ``*``): 501 5.0.0 / ``-ERR`` /
    ``BAD``.  :class:`SaslSyntaxError`: bad base64, a malformed message, a
    response too long, or a call out of turn (501 5.5.2 "Cannot decode").
    :class:`SaslRefused`: a well-formed request that cannot succeed (an
    authzid other than authcid): 535 5.7.8.  All are :class:`SaslError`.
"""

from __future__ import annotations

import binascii
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mailhorn.auth.passdb import AuthResult, Authenticator
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config

#: Postfix's default smtpd_sasl_response_limit: the longest client response.
DEFAULT_RESPONSE_LIMIT = 12288


class SaslError(Exception):
    """An exchange that ends without credentials."""


class SaslCancelled(SaslError):
    """The client cancelled the exchange with ``*``."""


class SaslSyntaxError(SaslError):
    """Malformed client data, or data sent out of turn."""


class SaslRefused(SaslError):
    """A request the server will not grant whatever the password."""


@dataclass(frozen=True)
class Challenge:
    """Data for the client; the server sends it base64-encoded."""

    data: bytes

    def encoded(self) -> str:
        """The base64 text of the challenge (empty for an empty challenge)."""
        return binascii.b2a_base64(self.data, newline=False).decode("ascii")


@dataclass(frozen=True)
class Credentials:
    """What a finished exchange proves.

    For PLAIN and LOGIN ``password`` is set; for CRAM-MD5 ``challenge`` and
    ``response`` (the hex digest) are.  ``authzid`` is empty or equal to
    ``authcid``.
    """

    mechanism: str
    authcid: str
    authzid: str = ""
    password: str | None = None
    challenge: bytes | None = None
    response: str | None = None


Step = Challenge | Credentials


def decode_response(text: str, limit: int = DEFAULT_RESPONSE_LIMIT) -> bytes:
    """Decode one client response: ``*`` cancels, ``=`` is empty, else strict base64."""
    text = text.rstrip("\r\n")
    if text == "*":
        raise SaslCancelled("authentication aborted by the client")
    if len(text) > limit:
        raise SaslSyntaxError("response too long")
    if text == "=":
        return b""
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SaslSyntaxError("invalid base64 data in response") from None


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslSyntaxError(f"{what} is not valid UTF-8") from None


class Mechanism(Protocol):
    """One server-side SASL exchange."""

    name: str
    plaintext: bool

    def start(self, initial: str | None) -> Step:
        """Begin, with the initial response text (base64, ``=``) or None."""
        ...

    def step(self, response: str) -> Step:
        """Take one client response line (base64, ``=`` or ``*``)."""
        ...


class _Base:
    """Shared bookkeeping: the response limit and the end of the exchange."""

    name = ""
    plaintext = True

    def __init__(self, limit: int = DEFAULT_RESPONSE_LIMIT) -> None:
        self.limit = limit
        self.done = False
        self.started = False

    def _begin(self) -> None:
        if self.started:
            raise SaslSyntaxError(f"{self.name}: exchange already started")
        self.started = True

    def _decode(self, text: str) -> bytes:
        if self.done or not self.started:
            raise SaslSyntaxError(f"{self.name}: no response expected")
        try:
            return decode_response(text, self.limit)
        except SaslError:
            self.done = True
            raise

    def _finish(self, credentials: Credentials) -> Credentials:
        self.done = True
        return credentials


class Plain(_Base):
    """RFC 4616 PLAIN."""

    name = "PLAIN"

    def start(self, initial: str | None) -> Step:
        self._begin()
        if initial is None:
            return Challenge(b"")
        return self._message(self._decode(initial))

    def step(self, response: str) -> Step:
        return self._message(self._decode(response))

    def _message(self, data: bytes) -> Credentials:
        self.done = True
        parts = data.split(b"\0")
        if len(parts) != 3:
            raise SaslSyntaxError("PLAIN: expected authzid NUL authcid NUL passwd")
        authzid, authcid, passwd = (_utf8(p, "PLAIN message") for p in parts)
        if not authcid or not passwd:
            raise SaslSyntaxError("PLAIN: empty authentication identity or password")
        if authzid and authzid != authcid:
            # RFC 4616 §2: the server decides whether authcid may act as authzid;
            # without master users, nobody may act as someone else.
            raise SaslRefused("PLAIN: authorization identity differs from authentication identity")
        return self._finish(Credentials(self.name, authcid, authzid, password=passwd))


#: LOGIN's challenges (draft-murchison-sasl-login §2.1).
USERNAME_CHALLENGE = b"Username:"
PASSWORD_CHALLENGE = b"Password:"


class Login(_Base):
    """The LOGIN mechanism: user name, then password."""

    name = "LOGIN"

    def __init__(self, limit: int = DEFAULT_RESPONSE_LIMIT) -> None:
        super().__init__(limit)
        self.username: str | None = None

    def start(self, initial: str | None) -> Step:
        self._begin()
        if initial is None:
            return Challenge(USERNAME_CHALLENGE)
        return self._take(self._decode(initial))

    def step(self, response: str) -> Step:
        return self._take(self._decode(response))

    def _take(self, data: bytes) -> Step:
        value = _utf8(data, "LOGIN response")
        if "\0" in value:
            self.done = True
            raise SaslSyntaxError("LOGIN: NUL in response")
        if self.username is None:
            if not value:
                self.done = True
                raise SaslSyntaxError("LOGIN: empty user name")
            self.username = value
            return Challenge(PASSWORD_CHALLENGE)
        return self._finish(Credentials(self.name, self.username, password=value))


def cram_md5_challenge(hostname: str, random: Callable[[int], bytes] = os.urandom,
                       clock: Callable[[], float] = time.time) -> bytes:
    """An RFC 2195 challenge ``<random.timestamp@hostname>`` (msg-id form, RFC 822)."""
    number = int.from_bytes(random(8), "big")
    return f"<{number}.{int(clock())}@{hostname}>".encode("ascii", "replace")


class CramMd5(_Base):
    """RFC 2195 CRAM-MD5."""

    name = "CRAM-MD5"
    plaintext = False

    def __init__(self, hostname: str, limit: int = DEFAULT_RESPONSE_LIMIT,
                 challenge: bytes | None = None) -> None:
        super().__init__(limit)
        self.challenge = challenge if challenge is not None else cram_md5_challenge(hostname)

    def start(self, initial: str | None) -> Step:
        self._begin()
        if initial is not None:
            self.done = True
            raise SaslSyntaxError("CRAM-MD5: the server speaks first; no initial response")
        return Challenge(self.challenge)

    def step(self, response: str) -> Step:
        value = _utf8(self._decode(response), "CRAM-MD5 response")
        user, sep, digest = value.rpartition(" ")
        if not sep or not user or len(digest) != 32 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            self.done = True
            raise SaslSyntaxError("CRAM-MD5: expected user SP 32 hex digits")
        return self._finish(Credentials(self.name, user, challenge=self.challenge, response=digest.lower()))


#: Every mechanism by its name (Dovecot's ``auth_mechanisms`` names, upper case).
MECHANISMS: dict[str, Callable[[str, int], Mechanism]] = {
    "PLAIN": lambda hostname, limit: Plain(limit),
    "LOGIN": lambda hostname, limit: Login(limit),
    "CRAM-MD5": lambda hostname, limit: CramMd5(hostname, limit),
}
#: The mechanisms that send the password itself.
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


def new_mechanism(name: str, hostname: str, limit: int = DEFAULT_RESPONSE_LIMIT) -> Mechanism:
    """A fresh exchange for mechanism ``name`` (case-insensitive); KeyError if unknown."""
    return MECHANISMS[name.upper()](hostname, limit)


def configured_mechanisms(value: str) -> list[str]:
    """The known mechanisms of an ``auth_mechanisms`` value, upper case, in order.

    Unknown names raise ValueError naming them, so a typo is caught when the
    server starts rather than silently dropped.
    """
    names: list[str] = []
    for word in value.replace(",", " ").split():
        upper = word.upper()
        if upper not in MECHANISMS:
            raise ValueError(f"auth_mechanisms: unsupported mechanism: {word}")
        if upper not in names:
            names.append(upper)
    return names


def offered_mechanisms(configured: list[str], plaintext_allowed: bool) -> list[str]:
    """The mechanisms to announce: plaintext ones only where allowed.

    ``plaintext_allowed`` is true over TLS, for a loopback client, or with
    ``disable_plaintext_auth = no`` (Dovecot's rule for ``secured``
    connections).
    """
    return [m for m in configured if plaintext_allowed or m not in PLAINTEXT_MECHANISMS]


async def check(authenticator: Authenticator, credentials: Credentials, client_addr: str,
                service: str) -> AuthResult:
    """Verify finished credentials with the authenticator."""
    if credentials.password is not None:
        return await authenticator.authenticate(credentials.authcid, credentials.password, client_addr, service)
    if credentials.challenge is None or credentials.response is None:
        raise ValueError("credentials carry neither a password nor a CRAM-MD5 answer")
    return await authenticator.authenticate_cram_md5(credentials.authcid, credentials.challenge,
                                                     credentials.response, client_addr, service)


def mechanisms_from_config(config: Config) -> list[str]:
    """``auth_mechanisms`` (default ``plain``) as upper-case names; ConfigError if unknown."""
    try:
        return configured_mechanisms(config.get("auth_mechanisms"))
    except ValueError as exc:
        file, line = config.where("auth_mechanisms")
        raise ConfigError(str(exc), file=file, line=line, param="auth_mechanisms") from None


def plaintext_auth_allowed(config: Config, secured: bool) -> bool:
    """Whether PLAIN/LOGIN, POP3 USER/PASS and IMAP LOGIN may be used on a connection.

    ``secured`` is true over TLS or for a loopback client.  Dovecot 2.3's
    ``disable_plaintext_auth`` (default ``yes``) refuses them elsewhere.
    """
    if secured:
        return True
    value = config.get("disable_plaintext_auth").strip().lower()
    if value not in ("yes", "no"):
        file, line = config.where("disable_plaintext_auth")
        raise ConfigError(f"bad boolean configuration: disable_plaintext_auth = {value}", file=file, line=line,
                          param="disable_plaintext_auth")
    return value == "no"
