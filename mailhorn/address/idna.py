"""Domain names: Postfix's hostname rules, IDNA2008 conversion, FQDN checks.

Hostname syntax (Postfix's valid_hostname, used by ``reject_invalid_*`` and
``reject_non_fqdn_*``): letters, digits, ``_`` and ``-``; labels of at most 63
characters separated by single dots, no leading or trailing dot, no hyphen at
the start or end of a label, at most 255 characters in all, and not made of
digits and dots only (``numeric hostname``). :func:`hostname_problem` returns
Postfix's complaint (``misplaced delimiter``, ``hostname label too long``,
...) or None.

Address syntax (valid_hostaddr): :func:`hostaddr_problem` for a dotted quad
(four octets of at most 255, no ``0.x.y.z`` except 0.0.0.0) or an IPv6
address (hex fields of at most four digits, one ``::``, an IPv4 tail).

IDNA (RFC 5890-5893, IDNA2008, through the ``idna`` package; the stdlib codec
implements IDNA2003 and is not used): :func:`domain_to_ascii` maps a name with
UTS #46 (non-transitional unless ``enable_idna2003_compatibility = yes``, as
Postfix's midna_domain does) and turns each non-ASCII label into its A-label;
ASCII labels are lower-cased. :func:`domain_to_utf8` turns A-labels
(``xn--``) back into U-labels. :func:`normalize_domain` gives the form used
for comparisons: one trailing dot removed, lower case, UTS #46 mapped.

FQDN checks (smtpd's reject_non_fqdn_helo_hostname, reject_non_fqdn_sender,
reject_non_fqdn_recipient): :func:`is_fqdn_hostname` and
:func:`is_fqdn_address` drop one trailing dot (not two), then ask for a valid
hostname with at least one dot; a non-ASCII name counts only when the client
asked for SMTPUTF8 and its A-label form is valid. Address literals
(``[1.2.3.4]``) are not judged by is_fqdn_address, as Postfix skips them.

Parameters read: none directly; callers pass ``smtputf8`` and
``transitional`` from ``smtputf8_enable`` and ``enable_idna2003_compatibility``.

Errors: :class:`DomainError` (an :class:`AddressError`) from the conversions.
"""

from __future__ import annotations

from typing import Final

import idna as _idna

from mailhorn.address.errors import DomainError

#: RFC 1035 / Postfix VALID_HOSTNAME_LEN and VALID_LABEL_LEN.
HOSTNAME_MAX: Final = 255
LABEL_MAX: Final = 63

_V6_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _is_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def hostname_problem(name: str, *, wildcard: bool = False) -> str | None:
    """Why ``name`` is not a valid hostname (Postfix's words), or None.

    ``wildcard`` allows ``*`` as the whole first label (DO_WILDCARD).
    """
    if not name:
        return "empty hostname"
    label_length = 0
    label_count = 0
    non_numeric = False
    n = len(name)
    for i, ch in enumerate(name):
        nxt = name[i + 1] if i + 1 < n else ""
        if _is_alnum(ch) or ch == "_":
            if label_length == 0:
                label_count += 1
            label_length += 1
            if label_length > LABEL_MAX:
                return f"hostname label too long: {name[:100]}"
            if not ch.isdigit():
                non_numeric = True
        elif wildcard and ch == "*":
            if label_length or label_count or (nxt and nxt != "."):
                return f"'*' can be the first label only: {name[:100]}"
            label_count += 1
            label_length += 1
            non_numeric = True
        elif ch == ".":
            if label_length == 0 or not nxt:
                return f"misplaced delimiter: {name[:100]}"
            label_length = 0
        elif ch == "-":
            non_numeric = True
            label_length += 1
            if label_length == 1 or not nxt or nxt == ".":
                return f"misplaced hyphen: {name[:100]}"
        else:
            return f"invalid character {_octet(ch)}(decimal): {name[:100]}"
    if not non_numeric:
        return f"numeric hostname: {name[:100]}"
    if len(name) > HOSTNAME_MAX:
        return f"bad length {len(name)} for {name[:100]}..."
    return None


def _octet(ch: str) -> int:
    """The first byte of ``ch`` in UTF-8, as Postfix reports a bad byte."""
    return ch.encode("utf-8", "surrogatepass")[0]


def valid_hostname(name: str, *, wildcard: bool = False) -> bool:
    """Whether ``name`` is a syntactically valid hostname."""
    return hostname_problem(name, wildcard=wildcard) is None


def ipv4_problem(addr: str) -> str | None:
    """Why ``addr`` is not a dotted quad (valid_ipv4_hostaddr), or None."""
    in_byte = False
    count = 0
    value = 0
    n = len(addr)
    for i, ch in enumerate(addr):
        if ch.isascii() and ch.isdigit():
            if not in_byte:
                in_byte = True
                value = 0
                count += 1
            value = value * 10 + int(ch)
            if value > 255:
                return f"invalid octet value: {addr[:100]}"
        elif ch == ".":
            if not in_byte or i + 1 == n:
                return f"misplaced dot: {addr[:100]}"
            if count == 1 and value == 0 and addr.strip("0.") != "":
                return f"bad initial octet value: {addr[:100]}"
            in_byte = False
        else:
            return f"invalid character {_octet(ch)}(decimal): {addr[:100]}"
    if count != 4:
        return f"invalid octet count: {addr[:100]}"
    return None


def ipv6_problem(addr: str) -> str | None:
    """Why ``addr`` is not an IPv6 address (valid_ipv6_hostaddr), or None."""
    null_field = 0
    field = 0
    length = 0
    i = 0
    n = len(addr)
    while True:
        ch = addr[i] if i < n else ""
        if ch == "":
            if field < 2:
                return f"too few `:' in IPv6 address: {addr[:100]}"
            if length == 0 and null_field != field - 1:
                return f"bad null last field in IPv6 address: {addr[:100]}"
            return None
        if ch == ".":
            if field < 2 or field > 6:
                return f"malformed IPv4-in-IPv6 address: {addr[:100]}"
            return ipv4_problem(addr[i - length :])
        if ch == ":":
            after = addr[i + 1] if i + 1 < n else ""
            if field == 0 and length == 0 and _is_alnum(after):
                return f"bad null first field in IPv6 address: {addr[:100]}"
            field += 1
            if field > 7:
                return f"too many `:' in IPv6 address: {addr[:100]}"
            i += 1
            length = 0
            if i < n and addr[i] == ":":
                if null_field > 0:
                    return f"too many `::' in IPv6 address: {addr[:100]}"
                null_field = field
            continue
        length = 0
        while i + length < n and addr[i + length] in _V6_HEX:
            length += 1
        if length > 4:
            return f"malformed IPv6 address: {addr[:100]}"
        if length == 0:
            return f"invalid character {_octet(ch)}(decimal) in IPv6 address: {addr[:100]}"
        i += length


def hostaddr_problem(addr: str) -> str | None:
    """Why ``addr`` is not a numeric address (valid_hostaddr), or None."""
    if not addr:
        return "empty address"
    if ":" in addr:
        return ipv6_problem(addr)
    return ipv4_problem(addr)


def valid_hostaddr(addr: str) -> bool:
    """Whether ``addr`` is a valid IPv4 or IPv6 address text."""
    return hostaddr_problem(addr) is None


# -- IDNA ---------------------------------------------------------------


def truncate_dot(name: str) -> str:
    """Drop one trailing dot, but not from ``..`` (smtpd's dup_if_truncate)."""
    if len(name) > 1 and name.endswith(".") and name[-2] != ".":
        return name[:-1]
    return name


def _map(name: str, transitional: bool) -> str:
    try:
        return _idna.uts46_remap(name, std3_rules=False, transitional=transitional)
    except _idna.IDNAError as exc:
        raise DomainError(f"Problem translating domain \"{name[:100]}\" to IDNA form: {exc}", name) from None


def domain_to_ascii(name: str, *, transitional: bool = False) -> str:
    """The all-ASCII form of ``name``: UTS #46 mapped, A-labels, lower case.

    An ASCII label is only lower-cased (``_`` stays allowed, as in hostnames);
    an ``xn--`` label must decode to a valid U-label.
    """
    if name.isascii():
        lowered = name.lower()
        for label in lowered.split("."):
            if label.startswith("xn--"):
                _check_alabel(label, name)
        return lowered
    mapped = _map(name, transitional)
    out: list[str] = []
    for label in mapped.split("."):
        if label.isascii():
            if label.startswith("xn--"):
                _check_alabel(label, name)
            out.append(label)
            continue
        try:
            out.append(_idna.alabel(label).decode("ascii"))
        except (_idna.IDNAError, UnicodeError) as exc:
            raise DomainError(
                f"Problem translating domain \"{name[:100]}\" to IDNA form: {exc}", name
            ) from None
    return ".".join(out)


def _check_alabel(label: str, name: str) -> str:
    try:
        return _idna.ulabel(label)
    except (_idna.IDNAError, UnicodeError) as exc:
        raise DomainError(f"Problem translating domain \"{name[:100]}\" to UTF-8 form: {exc}", name) from None


def domain_to_utf8(name: str, *, transitional: bool = False) -> str:
    """The U-label form of ``name``: ``xn--`` labels decoded, lower case."""
    if name.isascii() and "xn--" not in name.lower():
        return name.lower()
    mapped = name.lower() if name.isascii() else _map(name, transitional)
    out: list[str] = []
    for label in mapped.split("."):
        if label.startswith("xn--"):
            out.append(_check_alabel(label, name))
        elif not label.isascii():
            try:
                _idna.alabel(label)
            except (_idna.IDNAError, UnicodeError) as exc:
                raise DomainError(
                    f"Problem translating domain \"{name[:100]}\" to IDNA form: {exc}", name
                ) from None
            out.append(label)
        else:
            out.append(label)
    return ".".join(out)


def normalize_domain(name: str, *, transitional: bool = False) -> str:
    """The comparison form of a domain: one trailing dot dropped, lower case,
    UTS #46 mapped (U-labels stay U-labels; use :func:`domain_to_ascii` for DNS).

    Address literals ``[...]`` are only lower-cased inside (``[IPv6:...]``
    keeps its tag's case-insensitive meaning).
    """
    if name.startswith("[") and name.endswith("]"):
        return name
    name = truncate_dot(name)
    if name.isascii():
        return name.lower()
    return _map(name, transitional)


def valid_utf8_hostname(name: str, *, smtputf8: bool, transitional: bool = False) -> bool:
    """valid_hostname for ASCII names; for others, only with SMTPUTF8 and when
    the A-label form is a valid hostname (smtpd's valid_utf8_hostname)."""
    if name.isascii():
        return valid_hostname(name)
    if not smtputf8:
        return False
    try:
        return valid_hostname(domain_to_ascii(name, transitional=transitional))
    except DomainError:
        return False


def is_fqdn_hostname(name: str, *, smtputf8: bool = False, transitional: bool = False) -> bool:
    """Whether reject_non_fqdn_helo_hostname accepts ``name``."""
    test = truncate_dot(name)
    return valid_utf8_hostname(test, smtputf8=smtputf8, transitional=transitional) and "." in test


def is_fqdn_address(address: str, *, smtputf8: bool = False, transitional: bool = False) -> bool:
    """Whether reject_non_fqdn_sender/recipient accepts an internal-form address.

    The domain is the text after the last ``@`` (empty without one); an
    address literal domain is accepted unjudged. Callers skip the null
    sender ``<>`` themselves, as smtpd does.
    """
    _, sep, domain = address.rpartition("@")
    if not sep:
        domain = ""
    if domain.startswith("[") and domain.endswith("]"):
        return True
    test = truncate_dot(domain)
    if not test:
        return False
    return valid_utf8_hostname(test, smtputf8=smtputf8, transitional=transitional) and "." in test
