"""TLS policy of the SMTP/LMTP client (smtp(8) "TLS SUPPORT", TLS_README).

:func:`policy_for` decides the policy for one destination:

* ``smtp_tls_policy_maps`` is searched first with the next hop as the
  transport gave it (``example.com``, ``[mail.example.com]:587``), then for a
  domain its parent domains as ``.example.com``; a value is ``LEVEL
  [name=value ...]`` with ``match=``, ``protocols=``, ``ciphers=``,
  ``servername=`` and ``tafile=`` (used as a CA file) understood;
* else ``smtp_tls_security_level``, else the obsolete ``smtp_enforce_tls``
  (encrypt) and ``smtp_use_tls`` (may).

Levels: ``none`` (no TLS), ``may`` (STARTTLS when offered; a failed
handshake is retried in plaintext), ``encrypt`` (TLS required, any
certificate), ``verify`` (trusted certificate whose name matches
``smtp_tls_verify_cert_match``, default ``hostname``: the MX host name),
``secure`` (trusted certificate matching ``smtp_tls_secure_cert_match``,
default ``nexthop, dot-nexthop``).  ``dane`` and ``dane-only`` are taken as
``may`` and ``encrypt`` (no DNSSEC here); ``fingerprint`` as ``secure``.
At ``encrypt`` and above mail never goes out in plaintext.

:meth:`TlsPolicy.context` builds the client ``SSLContext`` (protocol range
from ``smtp_tls_mandatory_protocols`` at ``encrypt`` and above, else
``smtp_tls_protocols``; trust anchors from ``smtp_tls_CAfile``/``CApath``
only, as with Postfix's default ``tls_append_default_CA = no``; a client
certificate from ``smtp_tls_cert_file``/``smtp_tls_key_file``).
:func:`peer_names_match` applies the match rules to a verified certificate.

Parameters read (``smtp_`` or ``lmtp_``): ``smtp_tls_security_level``,
``smtp_use_tls``, ``smtp_enforce_tls``, ``smtp_tls_policy_maps``,
``smtp_tls_CAfile``, ``smtp_tls_CApath``, ``smtp_tls_cert_file``,
``smtp_tls_key_file``, ``smtp_tls_protocols``,
``smtp_tls_mandatory_protocols``, ``smtp_tls_verify_cert_match``,
``smtp_tls_secure_cert_match``, ``smtp_tls_servername``,
``smtp_tls_loglevel``.  Errors: :class:`TlsPolicyError` (a table lookup
failed or the policy is malformed: the delivery is deferred).
"""

from __future__ import annotations

import enum
import re
import ssl
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailhorn.delivery.mx import Nexthop
from mailhorn.tables.base import Table, TableRetry, lookup_async

__all__ = ["Level", "TlsPolicy", "TlsPolicyError", "peer_names_match", "policy_for"]


class Level(enum.IntEnum):
    NONE = 0
    MAY = 1
    ENCRYPT = 2
    VERIFY = 3
    SECURE = 4


_LEVELS = {
    "none": Level.NONE, "may": Level.MAY, "encrypt": Level.ENCRYPT, "verify": Level.VERIFY,
    "secure": Level.SECURE, "dane": Level.MAY, "dane-only": Level.ENCRYPT, "fingerprint": Level.SECURE,
}
_ORDER = ["SSLV3", "TLSV1", "TLSV1.1", "TLSV1.2", "TLSV1.3"]
_VERSIONS = [ssl.TLSVersion.SSLv3, ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1,
             ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


class TlsPolicyError(Exception):
    """The policy could not be determined; defer (``4.7.5``)."""


@dataclass
class TlsPolicy:
    level: Level
    match: list[str] = field(default_factory=list)
    protocols: str = ""
    ca_file: str = ""
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    servername: str = ""
    loglevel: int = 0

    @property
    def mandatory(self) -> bool:
        """Mail must not go out without TLS."""
        return self.level >= Level.ENCRYPT

    @property
    def verifies(self) -> bool:
        return self.level >= Level.VERIFY

    def context(self) -> ssl.SSLContext:
        """The client context for this policy."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        low, high = protocol_range(self.protocols)
        with warnings.catch_warnings():
            # Postfix's default ">=TLSv1" names versions Python calls deprecated;
            # the site's protocol list decides, as in Postfix.
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = low
            ctx.maximum_version = high
        if self.verifies:
            ctx.verify_mode = ssl.CERT_REQUIRED
            if self.ca_file or self.ca_path:
                ctx.load_verify_locations(cafile=self.ca_file or None, capath=self.ca_path or None)
        else:
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        return ctx


def protocol_range(spec: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """Min and max version of a Postfix protocol list (``>=TLSv1.2``, ``!SSLv2, !SSLv3``,
    ``TLSv1.2 TLSv1.3``); exclusions trim the ends, TLS versions being contiguous."""
    lo, hi = 0, len(_ORDER) - 1
    excluded: set[str] = set()
    listed: list[int] = []
    for word in re.split(r"[\s,:]+", spec.strip()):
        w = word.upper()
        if not w:
            continue
        if w.startswith(">=") and w[2:] in _ORDER:
            lo = max(lo, _ORDER.index(w[2:]))
        elif w.startswith("<=") and w[2:] in _ORDER:
            hi = min(hi, _ORDER.index(w[2:]))
        elif w.startswith("!"):
            excluded.add(w[1:])
        elif w in _ORDER:
            listed.append(_ORDER.index(w))
    if listed:
        lo, hi = max(lo, min(listed)), min(hi, max(listed))
    while lo <= hi and _ORDER[lo] in excluded:
        lo += 1
    while hi >= lo and _ORDER[hi] in excluded:
        hi -= 1
    if lo > hi:
        lo = hi = len(_ORDER) - 1
    # OpenSSL builds refuse SSLv3 outright; start at TLSv1 at the lowest.
    return _VERSIONS[max(lo, 1)], _VERSIONS[max(hi, 1)]


def _policy_keys(hop: Nexthop) -> list[str]:
    keys = [hop.text] if hop.text else []
    if hop.mx and not hop.text.startswith("["):
        labels = hop.host.split(".")
        keys.append(hop.host)
        keys.extend("." + ".".join(labels[i:]) for i in range(1, len(labels)))
    seen: list[str] = []
    for key in keys:
        if key not in seen:
            seen.append(key)
    return seen


def _split_match(value: str) -> list[str]:
    return [w for w in re.split(r"[\s,:]+", value.strip()) if w]


async def policy_for(get: Callable[[str], str], tables: Sequence[Table], hop: Nexthop) -> TlsPolicy:
    """The TLS policy for ``hop``; ``get`` reads an ``smtp_*`` parameter (the caller
    maps it to ``lmtp_*``)."""
    policy = TlsPolicy(_default_level(get))
    policy.ca_file = get("smtp_tls_CAfile")
    policy.ca_path = get("smtp_tls_CApath")
    policy.cert_file = get("smtp_tls_cert_file")
    policy.key_file = get("smtp_tls_key_file")
    policy.servername = get("smtp_tls_servername")
    loglevel = get("smtp_tls_loglevel").strip()
    policy.loglevel = int(loglevel) if loglevel.isdigit() else 0
    entry: str | None = None
    for key in _policy_keys(hop):
        for table in tables:
            try:
                entry = await lookup_async(table, key)
            except TableRetry as exc:
                raise TlsPolicyError(f"TLS policy lookup for {hop.text or hop.host}: {exc}") from None
            if entry is not None:
                break
        if entry is not None:
            break
    attrs: dict[str, str] = {}
    if entry is not None:
        words = entry.split()
        if not words or words[0].lower() not in _LEVELS:
            raise TlsPolicyError(f"TLS policy table entry for {hop.text or hop.host}: "
                                 f"invalid security level \"{words[0] if words else ''}\"")
        policy.level = _LEVELS[words[0].lower()]
        for word in words[1:]:
            name, sep, value = word.partition("=")
            if not sep:
                raise TlsPolicyError(f"TLS policy table entry for {hop.text or hop.host}: "
                                     f"malformed attribute \"{word}\"")
            attrs[name.lower()] = value
    mandatory = policy.level >= Level.ENCRYPT
    policy.protocols = attrs.get("protocols") or get("smtp_tls_mandatory_protocols" if mandatory
                                                     else "smtp_tls_protocols")
    if "tafile" in attrs:
        policy.ca_file = attrs["tafile"]
    if "servername" in attrs:
        policy.servername = attrs["servername"]
    if "match" in attrs:
        policy.match = _split_match(attrs["match"])
    elif policy.level == Level.VERIFY:
        policy.match = _split_match(get("smtp_tls_verify_cert_match"))
    elif policy.level == Level.SECURE:
        policy.match = _split_match(get("smtp_tls_secure_cert_match"))
    return policy


def _default_level(get: Callable[[str], str]) -> Level:
    level = get("smtp_tls_security_level").strip().lower()
    if level:
        if level not in _LEVELS:
            raise TlsPolicyError(f"invalid smtp_tls_security_level value \"{level}\"")
        return _LEVELS[level]
    if get("smtp_enforce_tls").lower() == "yes":
        return Level.ENCRYPT
    if get("smtp_use_tls").lower() == "yes":
        return Level.MAY
    return Level.NONE


def cert_names(cert: dict[str, Any]) -> list[str]:
    """DNS names of a peer certificate: subjectAltName DNS entries, else the CN
    (RFC 6125 §6.4.4)."""
    sans = [str(value).lower() for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    if sans:
        return sans
    names: list[str] = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(str(value).lower())
    return names


def _name_matches(pattern: str, name: str) -> bool:
    """``*.example.com`` covers one label; otherwise exact (case-folded)."""
    if pattern.startswith("*."):
        return "." in name and name.split(".", 1)[1] == pattern[2:]
    return pattern == name


def peer_names_match(policy: TlsPolicy, cert: dict[str, Any], hostname: str, hop: Nexthop) -> bool:
    """Whether a verified certificate names the server as the policy's ``match`` asks:
    ``hostname`` (the server's name), ``nexthop``, ``dot-nexthop`` (a subdomain of the
    next hop), ``.domain`` (a subdomain), or a literal name."""
    names = cert_names(cert)
    if not names:
        return False
    hostname = hostname.lower().rstrip(".")
    nexthop = hop.host.lower().rstrip(".")
    for rule in policy.match or ["hostname"]:
        r = rule.lower()
        if r == "hostname":
            wanted = [hostname]
        elif r == "nexthop":
            wanted = [nexthop]
        elif r == "dot-nexthop":
            if any(n.endswith("." + nexthop) for n in names if not n.startswith("*.")):
                return True
            wanted = []
        elif r.startswith("."):
            if any(n.endswith(r) for n in names if not n.startswith("*.")):
                return True
            wanted = []
        else:
            wanted = [r]
        if any(_name_matches(n, w) for n in names for w in wanted):
            return True
    return False
