"""Envelope addresses: RFC 5321 Mailbox and Path syntax, lengths, extensions.

:func:`parse_mailbox` checks ``Local-part "@" ( Domain / address-literal )``
(RFC 5321 §4.1.2) and returns a :class:`Mailbox` with the local part in
internal (unquoted) form:

* Local-part is a Dot-string (atoms of atext joined by single dots) or a
  Quoted-string (``"a b"``, ``"a@b"``; qtextSMTP is 32-126 except ``"`` and
  ``\\``; quoted-pairSMTP is ``\\`` followed by 32-126);
* Domain is sub-domains ``Let-dig [Ldh-str]`` joined by dots, no trailing
  dot; an address-literal is ``[1.2.3.4]``, ``[IPv6:...]`` (the tag is
  case-insensitive) or a General-address-literal, whose tag must be
  registered (RFC 5321 §4.1.3: only ``IPv6`` is);
* with ``smtputf8`` (the client said ``SMTPUTF8``, RFC 6531 §3.3) atext,
  qtextSMTP and sub-domains may also hold non-ASCII UTF-8; a non-ASCII
  sub-domain must be a valid IDNA2008 U-label;
* lengths (RFC 5321 §4.5.3.1): local part 64 octets, domain 255 octets,
  counted in UTF-8.

:func:`parse_path` checks ``"<" [ A-d-l ":" ] Mailbox ">"`` (§4.1.2), drops
a source route (§4.1.1.3, §C: "MUST accept ... and ignore"), accepts the
null path ``<>`` (returns None) and, for RCPT TO, ``<Postmaster>`` without a
domain; the whole path is at most 256 octets with its punctuation.

:func:`split_extension` and :func:`strip_extension` implement
``recipient_delimiter`` (postconf(5)): the local part is split at the FIRST
character that is any of the delimiter characters; ``postmaster``,
``mailer-daemon`` and ``double_bounce_sender`` are never split; when ``-`` is
a delimiter and ``owner_request_special = yes``, ``owner-*`` and ``*-request``
are not split; a split that leaves an empty local part is not done.

Parameters read (by callers, passed in): ``recipient_delimiter``,
``owner_request_special``, ``double_bounce_sender``, ``smtputf8_enable``.

Errors: :class:`AddressError` with the reason; no other exception escapes,
and every function runs in time linear in its input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import idna as _idna

from mailhorn.address.errors import AddressError
from mailhorn.address.idna import LABEL_MAX, ipv4_problem, ipv6_problem
from mailhorn.address.quote import quote_local, split_internal

#: RFC 5321 §4.5.3.1.1-3 (octets).
LOCAL_PART_MAX: Final = 64
DOMAIN_MAX: Final = 255
PATH_MAX: Final = 256

_ATEXT: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
_LDH: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_DCONTENT: Final = frozenset(chr(c) for c in range(33, 127)) - frozenset("[\\]")


def octets(text: str) -> int:
    """Length of ``text`` in UTF-8 octets (lengths in RFC 5321 are octets)."""
    return len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Mailbox:
    """A parsed envelope mailbox.

    ``local`` is in internal (unquoted) form; ``domain`` as written (empty for
    a bare ``Postmaster``); ``quoted`` tells whether the local part was a
    Quoted-string; ``utf8`` whether SMTPUTF8 is needed to send it.
    """

    local: str
    domain: str
    quoted: bool = False
    utf8: bool = False

    @property
    def address(self) -> str:
        """The internal form ``local@domain`` (just ``local`` without a domain)."""
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def external(self) -> str:
        """The external form, quoted where needed (quote_822_local)."""
        if not self.domain:
            return quote_local(self.local, bare=True)
        return quote_local(self.address)

    @property
    def is_address_literal(self) -> bool:
        """Whether the domain is an address literal ``[...]``."""
        return self.domain.startswith("[")


def _check_text(text: str) -> None:
    for ch in text:
        code = ord(ch)
        if code < 32 or code == 127:
            raise AddressError(f"control character {code}(decimal) in address", text)
        if 0xD800 <= code <= 0xDFFF:
            raise AddressError("malformed UTF-8 in address", text)


def _non_ascii(ch: str, smtputf8: bool, text: str) -> None:
    if not smtputf8:
        raise AddressError("non-ASCII character in address without SMTPUTF8", text)


def _scan_quoted(text: str, start: int, smtputf8: bool) -> tuple[str, int]:
    """Parse the Quoted-string at ``start``; return (content, index after it)."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= n:
                break
            nxt = text[i + 1]
            if not nxt.isascii():
                _non_ascii(nxt, smtputf8, text)
            elif not 32 <= ord(nxt) <= 126:
                raise AddressError("bad quoted-pair in local part", text)
            out.append(nxt)
            i += 2
            continue
        if not ch.isascii():
            _non_ascii(ch, smtputf8, text)
        out.append(ch)
        i += 1
    raise AddressError("unbalanced '\"' in local part", text)


def _scan_dot_string(text: str, start: int, smtputf8: bool) -> tuple[str, int]:
    """Parse the Dot-string at ``start``; return (text, index after it)."""
    i = start
    n = len(text)
    atom = 0
    while i < n:
        ch = text[i]
        if ch in _ATEXT:
            atom += 1
        elif not ch.isascii():
            _non_ascii(ch, smtputf8, text)
            atom += 1
        elif ch == ".":
            if atom == 0:
                raise AddressError("misplaced '.' in local part", text)
            atom = 0
        else:
            break
        i += 1
    if i == start:
        raise AddressError("empty local part", text)
    if atom == 0:
        raise AddressError("misplaced '.' in local part", text)
    return text[start:i], i


def check_domain(domain: str, *, smtputf8: bool = False, text: str = "") -> None:
    """Check an RFC 5321 Domain or address-literal; raise AddressError."""
    where = text or domain
    if not domain:
        raise AddressError("empty domain", where)
    if octets(domain) > DOMAIN_MAX:
        raise AddressError(f"domain longer than {DOMAIN_MAX} octets", where)
    if domain.startswith("["):
        check_address_literal(domain, text=where)
        return
    for label in domain.split("."):
        if not label:
            raise AddressError("misplaced '.' in domain", where)
        if len(label) > LABEL_MAX:
            raise AddressError(f"domain label longer than {LABEL_MAX} characters", where)
        if label.isascii():
            if not all(ch in _LDH for ch in label) or label[0] == "-" or label[-1] == "-":
                raise AddressError("bad character or misplaced hyphen in domain", where)
            if label[:4].lower() == "xn--":
                _valid_label(label.lower(), where)
            continue
        if not smtputf8:
            raise AddressError("non-ASCII domain without SMTPUTF8", where)
        _valid_label(label, where)


def _valid_label(label: str, where: str) -> None:
    """An A-label must decode, a U-label must encode (IDNA2008, RFC 5891 §5.4)."""
    try:
        if label.isascii():
            _idna.ulabel(label)
        else:
            encoded = _idna.alabel(label)
            if len(encoded) > LABEL_MAX:
                raise AddressError(f"domain label longer than {LABEL_MAX} characters", where)
    except (_idna.IDNAError, UnicodeError) as exc:
        raise AddressError(f"invalid internationalized domain label: {exc}", where) from None


def check_address_literal(literal: str, *, text: str = "") -> None:
    """Check ``[IPv4]``, ``[IPv6:addr]`` or a registered general literal."""
    where = text or literal
    if len(literal) < 3 or not literal.endswith("]"):
        raise AddressError("malformed address literal", where)
    inner = literal[1:-1]
    tag, colon, content = inner.partition(":")
    if not colon:
        problem = ipv4_problem(inner) if all(c.isdigit() or c == "." for c in inner) else "not an IPv4 address"
        if problem is None and all(0 < len(part) <= 3 for part in inner.split(".")):
            return
        raise AddressError("bad IPv4 address literal", where)
    if tag.lower() == "ipv6":
        if content and ipv6_problem(content) is None:
            return
        raise AddressError("bad IPv6 address literal", where)
    if not tag or not all(ch in _LDH for ch in tag) or not content or not all(ch in _DCONTENT for ch in content):
        raise AddressError("malformed address literal", where)
    raise AddressError(f"unsupported address literal tag {tag!r}", where)


def parse_mailbox(text: str, *, smtputf8: bool = False, check_lengths: bool = True) -> Mailbox:
    """Parse an RFC 5321 Mailbox (no angle brackets); raise AddressError."""
    if len(text) > 4 * PATH_MAX:
        raise AddressError("address too long", text)
    _check_text(text)
    if not text:
        raise AddressError("empty address", text)
    if text[0] == '"':
        local, end = _scan_quoted(text, 0, smtputf8)
        quoted = True
    else:
        local, end = _scan_dot_string(text, 0, smtputf8)
        quoted = False
    if end >= len(text) or text[end] != "@":
        if end < len(text) and text[end] != "@":
            raise AddressError(f"bad character {text[end]!r} in local part", text)
        raise AddressError("missing '@domain'", text)
    domain = text[end + 1 :]
    if check_lengths and octets(text[:end]) > LOCAL_PART_MAX:
        raise AddressError(f"local part longer than {LOCAL_PART_MAX} octets", text)
    check_domain(domain, smtputf8=smtputf8, text=text)
    utf8 = not text.isascii()
    return Mailbox(local, domain, quoted, utf8)


def parse_path(text: str, *, smtputf8: bool = False, postmaster: bool = False) -> Mailbox | None:
    """Parse an RFC 5321 Reverse-path or Forward-path with its angle brackets.

    Returns None for the null path ``<>``. ``postmaster``: accept
    ``<Postmaster>`` without a domain (RCPT TO, RFC 5321 §4.1.1.3).
    """
    if len(text) > 4 * PATH_MAX:
        raise AddressError("address too long", text)
    _check_text(text)
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise AddressError("path not enclosed in '<' and '>'", text)
    if octets(text) > PATH_MAX:
        raise AddressError(f"path longer than {PATH_MAX} octets", text)
    inner = text[1:-1]
    if not inner:
        return None
    if postmaster and inner.lower() == "postmaster":
        return Mailbox(inner, "")
    if inner[0] == "@":
        colon = inner.find(":")
        if colon < 0:
            raise AddressError("source route without ':'", text)
        for hop in inner[:colon].split(","):
            if not hop.startswith("@"):
                raise AddressError("malformed source route", text)
            check_domain(hop[1:], smtputf8=smtputf8, text=text)
        inner = inner[colon + 1 :]
    return parse_mailbox(inner, smtputf8=smtputf8)


# -- recipient_delimiter ------------------------------------------------------


@dataclass(frozen=True)
class Extension:
    """A local part split at a recipient delimiter: ``base`` + ``delimiter`` + ``extension``."""

    base: str
    delimiter: str
    extension: str


def split_extension(
    local: str,
    delimiters: str,
    *,
    owner_request_special: bool = True,
    double_bounce_sender: str = "double-bounce",
) -> Extension | None:
    """Split an internal-form local part at the first delimiter character.

    Returns None when there is nothing to split (postconf(5)
    recipient_delimiter, owner_request_special; Postfix's split_addr).
    """
    if not delimiters:
        return None
    folded = local.lower()
    if folded in ("postmaster", "mailer-daemon") or folded == double_bounce_sender.lower():
        return None
    if "-" in delimiters and owner_request_special:
        if folded.startswith("owner-"):
            return None
        if len(folded) > len("-request") and folded.endswith("-request"):
            return None
    for i, ch in enumerate(local):
        if ch in delimiters:
            if i == 0:
                return None
            return Extension(local[:i], ch, local[i + 1 :])
    return None


def strip_extension(
    address: str,
    delimiters: str,
    *,
    owner_request_special: bool = True,
    double_bounce_sender: str = "double-bounce",
) -> str:
    """``user+ext@domain`` -> ``user@domain`` for an internal-form address."""
    local, domain = split_internal(address)
    split = split_extension(
        local, delimiters, owner_request_special=owner_request_special, double_bounce_sender=double_bounce_sender
    )
    if split is None:
        return address
    return split.base if domain is None else f"{split.base}@{domain}"
