"""SASL authentication of the SMTP/LMTP client (RFC 4954; Postfix SASL_README).

:func:`find_credentials` looks ``username:password`` up in
``smtp_sasl_password_maps``: with ``smtp_sender_dependent_authentication``
first by the sender address and its ``@domain``, then by the server's host
name, then by the next hop as the transport gave it
(``[mail.isp.example]:587``, ``example.com``).  No entry: no AUTH.

:func:`choose_mechanism` picks a mechanism the server announced, passes
``smtp_sasl_mechanism_filter`` and honours the security options:
``smtp_sasl_security_options`` before TLS, ``smtp_sasl_tls_security_options``
once TLS is active.  ``noplaintext`` forbids PLAIN and LOGIN,
``noanonymous`` ANONYMOUS, ``nodictionary`` and ``noactive`` CRAM-MD5 too
(it can be attacked offline), so a password is never sent in the clear
when the options say so.  Preference: CRAM-MD5, PLAIN, LOGIN.

:class:`SaslExchange` is the client side of one exchange as a small state
machine: the AUTH command line, then one response line per 334 challenge.

Parameters read (``smtp_`` or ``lmtp_``): ``smtp_sasl_password_maps``,
``smtp_sender_dependent_authentication``, ``smtp_sasl_security_options``,
``smtp_sasl_tls_security_options``, ``smtp_sasl_mechanism_filter``.
Errors: :class:`SaslError` (with a DSN status; temporary for a table
failure or a missing mechanism).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailhorn.tables.base import Table, TableRetry, lookup_async

__all__ = ["Credentials", "SaslError", "SaslExchange", "choose_mechanism", "find_credentials"]

#: Mechanisms this client speaks, best first, with their properties.
_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")
_PLAINTEXT = {"PLAIN", "LOGIN"}
_DICTIONARY = {"CRAM-MD5", "PLAIN", "LOGIN"}


class SaslError(Exception):
    def __init__(self, dsn: str, text: str) -> None:
        super().__init__(text)
        self.dsn = dsn
        self.text = text


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def _sender_keys(sender: str) -> list[str]:
    if not sender:
        return []
    at = sender.rfind("@")
    return [sender, sender[at:]] if at >= 0 else [sender]


async def find_credentials(tables: Sequence[Table], *, sender: str, sender_dependent: bool,
                           hostname: str, nexthop: str) -> Credentials | None:
    """The first ``username:password`` found (see the module docstring)."""
    keys: list[str] = []
    if sender_dependent:
        keys.extend(_sender_keys(sender))
    keys.extend([hostname, nexthop])
    if nexthop.startswith("inet:"):
        keys.append(nexthop[5:])
    tried: set[str] = set()
    for key in keys:
        if not key or key in tried:
            continue
        tried.add(key)
        for table in tables:
            try:
                value = await lookup_async(table, key)
            except TableRetry as exc:
                raise SaslError("4.3.0", f"SASL password lookup for {key}: {exc}") from None
            if value is not None:
                user, _, password = value.partition(":")
                return Credentials(user, password)
    return None


def _options(text: str) -> set[str]:
    return {w.lower() for w in re.split(r"[\s,]+", text.strip()) if w}


def choose_mechanism(offered: Sequence[str], mechanism_filter: Sequence[str], security_options: str) -> str | None:
    """The mechanism to use, or None when none is both offered and allowed."""
    options = _options(security_options)
    wanted = {m.upper() for m in mechanism_filter}
    for mech in _MECHANISMS:
        if mech not in offered:
            continue
        if wanted and mech not in wanted:
            continue
        if "noplaintext" in options and mech in _PLAINTEXT:
            continue
        if ("nodictionary" in options or "noactive" in options) and mech in _DICTIONARY:
            continue
        return mech
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class SaslExchange:
    """The client side of one AUTH exchange (RFC 4954 §4)."""

    def __init__(self, mechanism: str, credentials: Credentials) -> None:
        self.mechanism = mechanism
        self.credentials = credentials
        self._step = 0

    def initial(self) -> str:
        """The AUTH command line (with an initial response for PLAIN, RFC 4954 §4)."""
        c = self.credentials
        if self.mechanism == "PLAIN":
            token = b"\0" + c.username.encode() + b"\0" + c.password.encode()
            return f"AUTH PLAIN {_b64(token)}"
        return f"AUTH {self.mechanism}"

    def respond(self, challenge: str) -> str:
        """The response line to a 334 challenge (base64 text)."""
        try:
            data = base64.b64decode(challenge.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SaslError("4.7.0", "malformed SASL challenge from server") from None
        c = self.credentials
        self._step += 1
        if self.mechanism == "LOGIN":
            if self._step == 1:
                return _b64(c.username.encode())
            if self._step == 2:
                return _b64(c.password.encode())
        elif self.mechanism == "CRAM-MD5" and self._step == 1:
            digest = hmac.new(c.password.encode(), data, hashlib.md5).hexdigest()
            return _b64(f"{c.username} {digest}".encode())
        elif self.mechanism == "PLAIN" and self._step == 1 and not data:
            token = b"\0" + c.username.encode() + b"\0" + c.password.encode()
            return _b64(token)
        # An unexpected challenge: cancel the exchange (RFC 4954 §4).
        return "*"
