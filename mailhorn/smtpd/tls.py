"""TLS for smtpd: the server context, the security level, and TLS summaries.

`SmtpdTls.from_config(config)` decides what the service offers:

- the level: ``smtpd_tls_security_level`` (``none``, ``may``, ``encrypt``);
  when empty, the legacy ``smtpd_enforce_tls = yes`` means ``encrypt`` and
  ``smtpd_use_tls = yes`` means ``may`` (postconf(5)).  ``encrypt`` makes
  every command but HELO, EHLO, STARTTLS, NOOP and QUIT answer ``530 5.7.0
  Must issue a STARTTLS command first``;
- the certificate: ``smtpd_tls_chain_files`` (each file holds a key and its
  chain, or the key comes first and its certificates follow) or else
  ``smtpd_tls_cert_file`` with ``smtpd_tls_key_file`` (the key may be in the
  certificate file, as the default ``$smtpd_tls_cert_file`` says).  Without
  a usable certificate TLS is not offered and a warning says why, as Postfix
  does (``warning: No server certs available. TLS won't be enabled``);
- protocols: ``smtpd_tls_protocols`` at level ``may`` and
  ``smtpd_tls_mandatory_protocols`` at ``encrypt``, in both Postfix forms
  (``>=TLSv1.2``, ``<=TLSv1.3`` and the exclusion list ``!SSLv2, !SSLv3``);
- ciphers: ``smtpd_tls_ciphers`` / ``smtpd_tls_mandatory_ciphers`` name a
  grade whose OpenSSL list is ``tls_<grade>_cipherlist``;
  ``smtpd_tls_exclude_ciphers`` / ``smtpd_tls_mandatory_exclude_ciphers``
  are removed from it (TLS 1.3 suites are not affected, as in Postfix);
- ``smtpd_tls_wrappermode`` (smtps, port 465: TLS from the first byte),
  ``smtpd_tls_received_header``, ``smtpd_tls_loglevel``,
  ``smtpd_tls_auth_only``.

`tls_summary()` gives the text of the ``Anonymous TLS connection established``
log line and of the Received: header comment (``TLSv1.3 with cipher
TLS_AES_256_GCM_SHA384 (256/256 bits)``).  Postfix 3.4 and later append the
key-exchange group and server signature; Python's ssl module does not report
them, so they are left out (docs/compatibility.md).

Errors: none raised; configuration problems are logged as warnings and TLS
is then not offered.
"""

from __future__ import annotations

import ssl
import warnings
from dataclasses import dataclass
from typing import Final

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list

__all__ = ["SmtpdTls", "TlsInfo", "tls_info", "tls_summary"]

_VERSIONS: Final = {
    "SSLV2": None,
    "SSLV3": ssl.TLSVersion.SSLv3,
    "TLSV1": ssl.TLSVersion.TLSv1,
    "TLSV1.1": ssl.TLSVersion.TLSv1_1,
    "TLSV1.2": ssl.TLSVersion.TLSv1_2,
    "TLSV1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER: Final = ["SSLV3", "TLSV1", "TLSV1.1", "TLSV1.2", "TLSV1.3"]


@dataclass(frozen=True)
class TlsInfo:
    """What a session knows about its TLS layer."""

    protocol: str
    cipher: str
    bits: int
    alg_bits: int


def tls_info(obj: ssl.SSLObject) -> TlsInfo:
    """Protocol, cipher and strength of an established TLS session."""
    cipher = obj.cipher()
    name, _proto, bits = cipher if cipher is not None else ("unknown", "", 0)
    return TlsInfo(obj.version() or "unknown", name, bits or 0, bits or 0)


def tls_summary(info: TlsInfo) -> str:
    """``TLSv1.3 with cipher NAME (256/256 bits)``, Postfix's summary form."""
    return f"{info.protocol} with cipher {info.cipher} ({info.bits}/{info.alg_bits} bits)"


def _version_range(spec: str, param: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """Min and max protocol from a Postfix protocol list."""
    lo, hi = 0, len(_ORDER) - 1
    excluded: set[str] = set()
    for word in split_list(spec.replace(":", " ")):
        w = word.upper()
        if w.startswith(">="):
            name = w[2:]
            if name in _ORDER:
                lo = max(lo, _ORDER.index(name))
            else:
                log.warning(f"{param}: unknown protocol: {word}")
        elif w.startswith("<="):
            name = w[2:]
            if name in _ORDER:
                hi = min(hi, _ORDER.index(name))
            else:
                log.warning(f"{param}: unknown protocol: {word}")
        elif w.startswith("!"):
            excluded.add(w[1:])
        elif w in _VERSIONS:
            pass
        else:
            log.warning(f"{param}: unknown protocol: {word}")
    # Exclusions can only trim the ends of the range: TLS protocols are contiguous.
    while lo <= hi and _ORDER[lo] in excluded:
        lo += 1
    while hi >= lo and _ORDER[hi] in excluded:
        hi -= 1
    if lo > hi:
        lo = hi = len(_ORDER) - 1
    low = _VERSIONS[_ORDER[lo]]
    high = _VERSIONS[_ORDER[hi]]
    assert low is not None and high is not None
    return low, high


def _cipher_list(config: Config, grade_param: str, exclude_param: str) -> str:
    grade = config.get(grade_param).strip().lower() or "medium"
    base = config.get(f"tls_{grade}_cipherlist") if grade in ("export", "low", "medium", "high", "null") else ""
    if not base:
        log.warning(f"invalid {grade_param} value \"{grade}\"; using medium")
        base = config.get("tls_medium_cipherlist")
    excludes = split_list(config.get(exclude_param))
    return ":".join([base, *(f"!{e}" for e in excludes)])


def _load_certificates(context: ssl.SSLContext, config: Config) -> bool:
    chain_files = split_list(config.get("smtpd_tls_chain_files"))
    try:
        if chain_files:
            for path in chain_files:
                context.load_cert_chain(path, path)
            return True
        cert = config.get("smtpd_tls_cert_file").strip()
        key = config.get("smtpd_tls_key_file").strip() or cert
        if not cert:
            return False
        context.load_cert_chain(cert, key)
        return True
    except (OSError, ssl.SSLError) as exc:
        log.warning(f"cannot load the server certificate or key: {exc}")
        return False


@dataclass(frozen=True)
class SmtpdTls:
    """The TLS policy of one smtpd service."""

    level: str
    context: ssl.SSLContext | None
    wrappermode: bool
    received_header: bool
    loglevel: int
    auth_only: bool

    @property
    def offered(self) -> bool:
        """STARTTLS appears in EHLO (a usable certificate and level may/encrypt)."""
        return self.context is not None and self.level in ("may", "encrypt") and not self.wrappermode

    @property
    def required(self) -> bool:
        return self.level == "encrypt"

    @classmethod
    def from_config(cls, config: Config) -> SmtpdTls:
        level = config.get("smtpd_tls_security_level").strip().lower()
        if not level:
            if config.bool("smtpd_enforce_tls"):
                level = "encrypt"
            elif config.bool("smtpd_use_tls"):
                level = "may"
            else:
                level = "none"
        if level not in ("none", "may", "encrypt"):
            log.warning(f"invalid smtpd_tls_security_level value \"{level}\"; using none")
            level = "none"
        wrapper = config.bool("smtpd_tls_wrappermode")
        context: ssl.SSLContext | None = None
        if level != "none" or wrapper:
            context = cls._context(config, mandatory=level == "encrypt")
        return cls(
            level=level,
            context=context,
            wrappermode=wrapper and context is not None,
            received_header=config.bool("smtpd_tls_received_header"),
            loglevel=config.int("smtpd_tls_loglevel"),
            auth_only=config.bool("smtpd_tls_auth_only"),
        )

    @staticmethod
    def _context(config: Config, *, mandatory: bool) -> ssl.SSLContext | None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.options |= ssl.OP_NO_COMPRESSION
        if not _load_certificates(context, config):
            log.warning("No server certs available. TLS won't be enabled")
            return None
        proto_param = "smtpd_tls_mandatory_protocols" if mandatory else "smtpd_tls_protocols"
        low, high = _version_range(config.get(proto_param), proto_param)
        try:
            with warnings.catch_warnings():
                # The site asked for TLSv1/TLSv1.1 (Postfix's default ">=TLSv1"):
                # Python only warns that these versions are deprecated.
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = low
                context.maximum_version = high
        except ValueError as exc:
            log.warning(f"{proto_param}: {exc}")
        grade = "smtpd_tls_mandatory_ciphers" if mandatory else "smtpd_tls_ciphers"
        exclude = "smtpd_tls_mandatory_exclude_ciphers" if mandatory else "smtpd_tls_exclude_ciphers"
        ciphers = _cipher_list(config, grade, exclude)
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError:
            log.warning(f"invalid cipher list \"{ciphers}\" for {grade}; using OpenSSL's default")
        if config.bool("smtpd_tls_ask_ccert") or config.bool("smtpd_tls_req_ccert"):
            context.verify_mode = ssl.CERT_OPTIONAL
            cafile = config.get("smtpd_tls_CAfile").strip() or None
            capath = config.get("smtpd_tls_CApath").strip() or None
            if cafile or capath:
                try:
                    context.load_verify_locations(cafile, capath)
                except (OSError, ssl.SSLError) as exc:
                    log.warning(f"cannot load the CA certificates: {exc}")
        return context
