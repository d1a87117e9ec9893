"""The address layer: envelope and header addresses, quoting, domains.

* :mod:`mailhorn.address.quote`: internal and external forms
  (quote_822_local / unquote_822_local), splitting at the last ``@``;
* :mod:`mailhorn.address.parse`: RFC 5321 Mailbox and Path syntax, lengths,
  ``recipient_delimiter`` extensions;
* :mod:`mailhorn.address.idna`: hostname and address syntax as Postfix checks
  it, IDNA2008 A-label/U-label conversion, FQDN tests;
* :mod:`mailhorn.address.header`: RFC 5322 address lists in headers.

Every error is an :class:`AddressError`.
"""

from __future__ import annotations

from mailhorn.address.errors import AddressError, DomainError
from mailhorn.address.header import HeaderAddress, parse_address_list
from mailhorn.address.idna import (
    domain_to_ascii,
    domain_to_utf8,
    hostaddr_problem,
    hostname_problem,
    is_fqdn_address,
    is_fqdn_hostname,
    normalize_domain,
    valid_hostaddr,
    valid_hostname,
    valid_utf8_hostname,
)
from mailhorn.address.parse import (
    Extension,
    Mailbox,
    parse_mailbox,
    parse_path,
    split_extension,
    strip_extension,
)
from mailhorn.address.quote import quote_local, split_external, split_internal, unquote_local

__all__ = [
    "AddressError",
    "DomainError",
    "Extension",
    "HeaderAddress",
    "Mailbox",
    "domain_to_ascii",
    "domain_to_utf8",
    "hostaddr_problem",
    "hostname_problem",
    "is_fqdn_address",
    "is_fqdn_hostname",
    "normalize_domain",
    "parse_address_list",
    "parse_mailbox",
    "parse_path",
    "quote_local",
    "split_extension",
    "split_external",
    "split_internal",
    "strip_extension",
    "unquote_local",
    "valid_hostaddr",
    "valid_hostname",
    "valid_utf8_hostname",
]
