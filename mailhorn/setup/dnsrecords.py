"""The DNS records a mail domain publishes, as zone-file text.

:func:`records` gives, for ``DOMAIN`` served by host ``HOSTNAME``:

* ``MX 10 HOSTNAME.`` (RFC 5321 §5.1) and an A/AAAA hint for the host
  (its address is not known here: the line says what to put);
* SPF ``v=spf1 mx -all`` (RFC 7208: only the MX hosts send for the domain);
* the DKIM key (:mod:`mailhorn.setup.dkim`);
* DMARC ``v=DMARC1; p=quarantine; rua=mailto:postmaster@DOMAIN`` at
  ``_dmarc.DOMAIN`` (RFC 7489 §6.1);
* the SRV records of RFC 6186 §3 that let clients find the services:
  ``_submission._tcp`` 587, ``_imap._tcp`` 143, ``_imaps._tcp`` 993,
  ``_pop3._tcp`` 110, ``_pop3s._tcp`` 995, and ``_submissions._tcp`` 465
  (RFC 8314 §5.1);
* a reminder that the host's address needs a PTR record naming it
  (receivers check forward-confirmed reverse DNS).
"""

from __future__ import annotations

from mailhorn.setup import dkim

#: (service label, port) of the RFC 6186 / RFC 8314 SRV records.
SRV_SERVICES: tuple[tuple[str, int], ...] = (
    ("_submissions._tcp", 465),
    ("_submission._tcp", 587),
    ("_imaps._tcp", 993),
    ("_imap._tcp", 143),
    ("_pop3s._tcp", 995),
    ("_pop3._tcp", 110),
)


def records(domain: str, hostname: str, dkim_public: bytes, selector: str = dkim.DEFAULT_SELECTOR) -> list[str]:
    """Zone-file lines (with ``;`` comments) for ``domain``."""
    zone = domain.rstrip(".") + "."
    host = hostname.rstrip(".") + "."
    lines = [
        f"; DNS records for {domain.rstrip('.')}",
        f"{zone} IN MX 10 {host}",
        f"; {host} IN A    <the server's public IPv4 address>",
        f"; {host} IN AAAA <the server's public IPv6 address, if it has one>",
        f"; and a PTR record for each of those addresses naming {host}",
        f'{zone} IN TXT "v=spf1 mx -all"',
        *dkim.record_lines(domain, dkim_public, selector),
        f'_dmarc.{zone} IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain.rstrip(".")}"',
    ]
    for label, port in SRV_SERVICES:
        lines.append(f"{label}.{zone} IN SRV 0 1 {port} {host}")
    return lines
