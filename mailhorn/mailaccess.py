"""What the POP3 and IMAP servers share: TLS, secured connections, sizes, peers.

What it does
    :func:`tls_settings` reads the TLS settings both ``pop3d`` and ``imapd``
    use, with Dovecot's names, and builds the server context once per
    service:

    ``ssl`` (``yes``, ``no``, ``required``)
        ``yes`` offers STLS/STARTTLS when a certificate is usable; ``no``
        never offers it; ``required`` also refuses plaintext logins before
        TLS from every client, loopback included (Dovecot exempts clients
        that connect from the server's own address).
    ``ssl_cert``, ``ssl_key``
        the certificate chain and key files, plain paths; dovecot.conf's
        ``<file`` form is accepted. An empty ``ssl_key`` means the key is in
        the certificate file. A certificate that cannot be loaded is logged
        (``No server certs available. TLS won't be enabled``, as Postfix's
        smtpd says) and TLS is not offered.
    ``ssl_min_protocol``
        the oldest TLS version accepted: ``TLSv1``, ``TLSv1.1``, ``TLSv1.2``,
        ``TLSv1.3``, ``ANY`` (whatever the TLS library allows; ``SSLv3``
        means the same, the library has no SSLv3) or ``LATEST`` (TLSv1.3).
    ``pop3_tls_wrappermode`` / ``imap_tls_wrappermode`` (the parameter is
    the caller's)
        TLS from the first byte (pop3s, imaps). Without a usable certificate
        a warning is logged when the service starts and each connection is
        closed unanswered, so a missing certificate never turns pop3s or
        imaps into plaintext.

    :func:`plaintext_allowed` is Dovecot's rule for LOGIN, USER/PASS and the
    PLAIN and LOGIN SASL mechanisms: allowed over TLS, on a *secured*
    connection (:func:`secured_peer`: a loopback client connecting to the
    address it came from), or everywhere with ``disable_plaintext_auth =
    no``; never before TLS with ``ssl = required``.

    :func:`size` reads a Dovecot size value (``65536``, ``64k``, ``10M``,
    ``1g``, ``1t``, an optional ``b`` after the unit).

Errors
    :class:`~mailhorn.config.errors.ConfigError` naming the file, line and
    parameter for an ``ssl`` or ``ssl_min_protocol`` value mailhorn does not
    know and for a value of :func:`size` that is not a size.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import warnings
from dataclasses import dataclass

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config

__all__ = [
    "SSL_MODES", "TlsSettings", "peer_address", "plaintext_allowed", "secured_peer", "security_flag",
    "server_context", "size", "tls_settings",
]

#: The values of ``ssl``.
SSL_MODES = ("yes", "no", "required")

#: ``ssl_min_protocol`` values; None leaves the TLS library's own minimum.
_MIN_PROTOCOLS: dict[str, ssl.TLSVersion | None] = {
    "ANY": None,
    "SSLV3": None,
    "TLSV1": ssl.TLSVersion.TLSv1,
    "TLSV1.1": ssl.TLSVersion.TLSv1_1,
    "TLSV1.2": ssl.TLSVersion.TLSv1_2,
    "TLSV1.3": ssl.TLSVersion.TLSv1_3,
    "LATEST": ssl.TLSVersion.TLSv1_3,
}
_SIZE_RE = re.compile(r"^(\d+)\s*([kmgt]?)b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _bad(config: Config, name: str, what: str) -> ConfigError:
    file, line = config.where(name)
    return ConfigError(f"{what}: {name} = {config.get(name)}", file=file, line=line, param=name)


def size(config: Config, name: str) -> int:
    """A Dovecot size value in bytes (see the module text)."""
    match = _SIZE_RE.match(config.get(name).strip())
    if match is None:
        raise _bad(config, name, "invalid size value")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def _path(value: str) -> str:
    """A certificate path; dovecot.conf's ``<file`` form is accepted."""
    value = value.strip()
    return value[1:].strip() if value.startswith("<") else value


def _min_protocol(config: Config) -> ssl.TLSVersion | None:
    name = config.get("ssl_min_protocol").strip().upper()
    if name not in _MIN_PROTOCOLS:
        raise _bad(config, "ssl_min_protocol", "unknown TLS protocol")
    return _MIN_PROTOCOLS[name]


def server_context(config: Config) -> ssl.SSLContext | None:
    """The server context from ``ssl_cert``/``ssl_key``/``ssl_min_protocol``; None without a certificate."""
    minimum = _min_protocol(config)
    cert = _path(config.get("ssl_cert"))
    key = _path(config.get("ssl_key")) or cert
    if not cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_COMPRESSION
    if minimum is not None:
        with warnings.catch_warnings():
            # TLSv1 and TLSv1.1 are deprecated in Python, but a site may still ask for them.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = minimum
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        log.warning(f"cannot load the server certificate or key (ssl_cert, ssl_key): {exc}")
        log.warning("No server certs available. TLS won't be enabled")
        return None
    return context


@dataclass(frozen=True)
class TlsSettings:
    """One service's TLS: the ``ssl`` mode, the context (None: no TLS possible), TLS on connect."""

    mode: str
    context: ssl.SSLContext | None
    wrappermode: bool

    def starttls_offered(self, tls_active: bool) -> bool:
        """Whether STLS/STARTTLS is announced and accepted now."""
        return self.context is not None and not tls_active and self.mode != "no"


def tls_settings(config: Config, wrappermode_param: str) -> TlsSettings:
    """Read ``ssl``, the certificate settings and ``wrappermode_param`` for one service."""
    mode = config.get("ssl").strip().lower()
    if mode not in SSL_MODES:
        raise _bad(config, "ssl", "bad ssl value (yes, no, required)")
    wrapper = config.bool(wrappermode_param)
    context = server_context(config) if mode != "no" or wrapper else None
    if wrapper and context is None:
        log.warning(f"{wrappermode_param} = yes without a usable certificate (ssl_cert, ssl_key): "
                    "connections will be closed")
    return TlsSettings(mode, context, wrapper)


def peer_address(sockaddr: object) -> str:
    """The address of a socket address tuple, IPv4-mapped IPv6 shown as IPv4."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        addr = str(sockaddr[0])
        return addr[7:] if addr.startswith("::ffff:") and "." in addr else addr
    return ""


def secured_peer(client: str, server: str) -> bool:
    """Dovecot's "secured" without TLS: a loopback client connecting to the address it came from."""
    try:
        return ipaddress.ip_address(client).is_loopback and client == server
    except ValueError:
        return False


def plaintext_allowed(tls: TlsSettings, *, tls_active: bool, secured: bool, disable_plaintext_auth: bool) -> bool:
    """Whether plaintext logins may be used on a connection now (see the module text)."""
    if tls.mode == "required" and not tls_active:
        return False
    return tls_active or secured or not disable_plaintext_auth


def security_flag(tls_active: bool, secured: bool) -> str:
    """``TLS``, ``secured`` or nothing: the flag Dovecot's login lines carry."""
    if tls_active:
        return "TLS"
    return "secured" if secured else ""
