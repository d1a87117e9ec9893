"""access(5) tables: the lookup keys smtpd tries, and the meaning of a result.

Key search order (access(5) "EMAIL ADDRESS PATTERNS", "HOST NAME/ADDRESS
PATTERNS"; postconf(5) parent_domain_matches_subdomains):

* an e-mail address ``user+ext@domain``: ``user+ext@domain``, then (with a
  ``recipient_delimiter``) ``user@domain``; then ``domain`` and each parent
  domain (``example.com``, ``com`` when ``smtpd_access_maps`` is in
  ``parent_domain_matches_subdomains``, else ``.example.com``, ``.com``);
  then ``user+ext@`` and ``user@``.  The null sender is looked up as
  ``smtpd_null_access_lookup_key`` (``<>``).
* a host name: the name, then its parent domains as above.
* an address: ``1.2.3.4``, ``1.2.3``, ``1.2``, ``1``; an IPv6 address as
  written, then with its last ``:``-field dropped, repeatedly.

``regexp:``, ``pcre:`` and ``cidr:`` tables get the whole string only
(they are not fixed-key tables), as Postfix's DICT_FLAG_FIXED rule says.

:func:`parse_action` splits a result into its verb and text; the verbs are
listed in :data:`VERBS`.  Anything else is a restriction list (a class name
or restrictions), which the engine evaluates.

Parameters read (by callers, passed in): ``parent_domain_matches_subdomains``,
``recipient_delimiter``, ``smtpd_null_access_lookup_key``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from mailhorn.tables.base import Table

__all__ = ["VERBS", "AccessResult", "address_keys", "domain_keys", "hostaddr_keys", "is_fixed", "parse_action"]

#: Result verbs of access(5) (compared case-insensitively).
VERBS: Final = frozenset({
    "OK", "REJECT", "DEFER", "DEFER_IF_REJECT", "DEFER_IF_PERMIT", "DUNNO", "HOLD", "DISCARD",
    "REDIRECT", "FILTER", "PREPEND", "WARN", "INFO", "BCC",
})

PATTERN_TYPES: Final = frozenset({"regexp", "pcre", "cidr"})


def is_fixed(table: Table) -> bool:
    """Whether the table takes fixed keys (and so partial keys are tried)."""
    return table.type not in PATTERN_TYPES


@dataclass(frozen=True)
class AccessResult:
    """A parsed table value: ``verb`` (upper case) and the rest of the line.

    ``verb`` is ``NUMERIC`` for ``NNN text`` results (``code`` set) and
    ``RESTRICTIONS`` when the value is a restriction list.
    """

    verb: str
    text: str
    code: int = 0

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, verb: str, text: str, code: int = 0) -> None:
        object.__setattr__(self, "verb", verb)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "code", code)


def parse_action(value: str) -> AccessResult:
    """Classify an access table result (access(5) "ACCEPT ACTIONS" ...)."""
    value = value.strip()
    word, _, rest = value.partition(" ")
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = (more + " " + rest).strip()
    rest = rest.strip()
    upper = word.upper()
    if value.isdigit():
        # An all-numeric result means OK (access(5)).
        return AccessResult("OK", "")
    if len(word) == 3 and word.isdigit() and word[0] in "45":
        return AccessResult("NUMERIC", rest, int(word))
    if upper in VERBS:
        return AccessResult(upper, rest)
    return AccessResult("RESTRICTIONS", value)


def domain_keys(domain: str, parent_style: bool, fixed: bool = True) -> Iterator[str]:
    """``domain`` then its parents, in parent or dot style."""
    yield domain
    if not fixed:
        return
    name = domain
    while True:
        dot = name.find(".", 1 if name.startswith(".") else 0)
        if dot < 0:
            return
        if parent_style:
            name = name[dot + 1 :]
            if not name:
                return
            yield name
        else:
            name = name[dot:]
            if name == ".":
                return
            yield name
            name = name[1:]
            # loop continues with the name without its leading dot


def address_keys(address: str, *, null_key: str, delimiters: str, parent_style: bool,
                 fixed: bool = True) -> Iterator[str]:
    """The keys tried for an e-mail address, in order."""
    if address == "":
        yield null_key
        return
    if not fixed:
        yield address
        return
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    stripped: str | None = None
    if delimiters and local.lower() not in ("postmaster", "mailer-daemon"):
        cut = min((local.find(ch) for ch in delimiters if ch in local), default=-1)
        if cut > 0:
            stripped = local[:cut]
    yield address
    if stripped is not None:
        yield f"{stripped}@{domain}" if at else stripped
    if domain:
        yield from domain_keys(domain, parent_style)
    if at:
        yield f"{local}@"
        if stripped is not None:
            yield f"{stripped}@"


def hostaddr_keys(addr: str, fixed: bool = True) -> Iterator[str]:
    """``1.2.3.4``, ``1.2.3``, ``1.2``, ``1`` (IPv6: drop ``:``-fields)."""
    yield addr
    if not fixed:
        return
    sep = ":" if ":" in addr else "."
    rest = addr
    while True:
        cut = rest.rfind(sep)
        if cut <= 0:
            return
        rest = rest[:cut].rstrip(":")
        if not rest:
            return
        yield rest
