"""DKIM keys: a new RSA key pair and the DNS record that publishes it.

:func:`generate_key` writes an RSA 2048 private key (RFC 8301 §3.2: signers
MUST use at least 1024 bits and SHOULD use 2048) as PEM, in the PKCS#1
``RSA PRIVATE KEY`` form that opendkim and dkimpy read, mode 0600 (0640 with
the group of the user that signs).

The record (RFC 6376 §3.6.1) lives at ``SELECTOR._domainkey.DOMAIN`` and
holds ``v=DKIM1; k=rsa; p=BASE64``, ``p`` being the DER
SubjectPublicKeyInfo. :func:`record_lines` writes it in zone-file form, the
value cut into strings of at most 255 octets (RFC 1035 §3.3.14's limit on
one character-string; the strings are joined by resolvers, RFC 7208 §3.3
and RFC 6376 §3.6.2.2). :func:`parse_record` reads such text back into the
public key, so that what was printed can be checked against the key.

Errors: ``OSError`` when writing; ``ValueError`` from :func:`parse_record`
for text that is not a DKIM key record.
"""

from __future__ import annotations

import base64
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailhorn.setup.tls import write_private

DEFAULT_SELECTOR = "default"
KEY_BITS = 2048
#: Longest character-string in a TXT record (RFC 1035 §3.3.14).
MAX_STRING = 255


def generate_key(path: str, group: int | None = None) -> bytes:
    """Write a new private key to ``path``; return the public key's DER SubjectPublicKeyInfo."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    write_private(path, pem, group)
    return public_der(pem)


def public_der(private_pem: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a PEM private key."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def txt_value(public: bytes) -> str:
    """The record's value: ``v=DKIM1; k=rsa; p=...``."""
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode("ascii")


def record_name(domain: str, selector: str = DEFAULT_SELECTOR) -> str:
    """``SELECTOR._domainkey.DOMAIN.`` (absolute)."""
    return f"{selector}._domainkey.{domain.rstrip('.')}."


def record_lines(domain: str, public: bytes, selector: str = DEFAULT_SELECTOR) -> list[str]:
    """The zone-file lines of the record, the value split into quoted strings."""
    value = txt_value(public)
    chunks = [value[i:i + MAX_STRING] for i in range(0, len(value), MAX_STRING)]
    if len(chunks) == 1:
        return [f'{record_name(domain, selector)} IN TXT "{chunks[0]}"']
    lines = [f"{record_name(domain, selector)} IN TXT ("]
    lines += [f'    "{chunk}"' for chunk in chunks]
    lines[-1] += " )"
    return lines


_STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


def parse_record(text: str) -> bytes:
    """The DER public key of a record printed by :func:`record_lines` (or any TXT text).

    The quoted strings are joined (or, without quotes, the text is taken as
    the value), then the ``p=`` tag (RFC 6376 §3.6.1) is decoded; white
    space inside the base64 is ignored (§3.6.2.2).
    """
    strings = _STRING_RE.findall(text)
    value = "".join(strings) if strings else text
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, eq, tag_value = part.partition("=")
        if eq:
            tags[name.strip()] = tag_value.strip()
    if tags.get("v", "DKIM1") != "DKIM1":
        raise ValueError(f"not a DKIM key record: v={tags['v']}")
    if "p" not in tags or not tags["p"]:
        raise ValueError("no public key (p=) in the record")
    return base64.b64decode("".join(tags["p"].split()), validate=True)
