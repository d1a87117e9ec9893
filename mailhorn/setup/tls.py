"""A self-signed certificate for the SMTP, POP3 and IMAP services.

:func:`make_self_signed` writes an RSA 2048 key (PKCS#8 PEM, mode 0600, or
0640 with a group when the services run as another user and must read it)
and an X.509 v3 certificate for the host name: subject CN and
subjectAltName dNSName set to it (RFC 6125 §6.4.4: clients match the SAN),
valid from now for :data:`VALID_DAYS` days, ``basicConstraints CA:FALSE``
and the ``serverAuth`` extended key usage. Clients will not trust it; it
gives encryption until a certificate from a CA replaces it
(``smtpd_tls_cert_file``/``smtpd_tls_key_file``).

:func:`check_pair` loads a certificate and key the way the services will
(``ssl.SSLContext.load_cert_chain``), so a mismatched or unreadable pair is
found when the configuration is written, not at the first STARTTLS.

Errors: ``OSError`` for files that cannot be written; :class:`TlsSetupError`
for a pair that does not load.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825
KEY_BITS = 2048


class TlsSetupError(Exception):
    """A certificate and key that cannot be used; the text says why."""


def write_private(path: str, data: bytes, group: int | None = None) -> None:
    """Write ``data`` to a new file only its owner (and ``group``, read-only) may read."""
    mode = 0o600 if group is None else 0o640
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        if group is not None:
            os.fchown(fd, -1, group)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _san(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def make_self_signed(hostname: str, cert_path: str, key_path: str, group: int | None = None,
                     extra_names: Sequence[str] = ()) -> None:
    """Write a new key and a self-signed certificate for ``hostname`` (and ``extra_names``)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in (hostname, *extra_names)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    write_private(key_path, key_pem, group)
    tmp = cert_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, cert_path)


def check_pair(cert_path: str, key_path: str) -> None:
    """Raise :class:`TlsSetupError` unless the certificate and key load together."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path)
    except FileNotFoundError as exc:
        raise TlsSetupError(f"{exc.filename}: no such file") from None
    except PermissionError as exc:
        raise TlsSetupError(f"{exc.filename}: permission denied") from None
    except ssl.SSLError as exc:
        raise TlsSetupError(f"certificate {cert_path} and key {key_path} do not load together: "
                            f"{exc.reason or exc}") from None


def certificate_names(cert_path: str) -> list[str]:
    """The DNS names of a certificate's subjectAltName (for messages and tests)."""
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]
