"""Internal and external forms of an address, as Postfix's quote_822_local.

Postfix keeps an address in two forms:

* the *internal* form, with the local part unquoted: ``a b@example.com``,
  ``a@b@example.com``; this is what tables are searched with and what the
  queue file stores;
* the *external* form, quoted where RFC 5321/5322 need it:
  ``"a b"@example.com``, ``"a@b"@example.com``; this is what goes on the
  wire and into headers.

:func:`quote_local` turns internal into external form. The local part (the
text before the LAST ``@``; all of it when there is none) stays as it is when
it is a dot-string: not empty, no leading, trailing or doubled dot, and no
space, control character (0-31, 127) or RFC 822 special
``( ) < > @ , ; : \\ " [ ]``. Otherwise the whole local part is put in double
quotes with a backslash before ``"``, ``\\`` and CR. Non-ASCII characters are
left alone (Postfix's default, "8-bit clean"; RFC 6531 allows them in a
dot-string). A source route prefix ``@a,@b:`` is copied unchanged.

:func:`unquote_local` turns external into internal form: double quotes are
removed and backslash escapes resolved in the local part, which ends at the
last ``@`` outside quotes; the domain after it is copied unchanged.

:func:`split_internal` and :func:`split_external` split either form into
local part and domain at the last (unquoted) ``@``.

Parameters read: none. Errors: none; every string has both forms.
"""

from __future__ import annotations

import re
from typing import Final

#: A run of characters that may stand unquoted in a local part: no control
#: character, space, DEL or RFC 822 special ``()<>@,;:\\"[]`` (non-ASCII is
#: allowed, RFC 6531; the dots are checked apart).
_ATOM_TEXT: Final = re.compile(r'[^\x00-\x20\x7f()<>@,;:\\"\[\]]+')


def _route_end(address: str) -> int:
    """Length of a source route prefix ``@a,@b:`` (0 when there is none)."""
    if address.startswith("@"):
        colon = address.find(":")
        if colon >= 0:
            return colon + 1
    return 0


def is_dot_string(local: str) -> bool:
    """Whether ``local`` may appear unquoted (Postfix's is_822_dot_string)."""
    if not local or local[0] == "." or local[-1] == "." or ".." in local:
        return False
    return _ATOM_TEXT.fullmatch(local) is not None


def quote_string(local: str) -> str:
    """``local`` as a quoted-string: backslash before ``"``, ``\\`` and CR."""
    out = ['"']
    for ch in local:
        if ch in '"\\\r':
            out.append("\\")
        out.append(ch)
    out.append('"')
    return "".join(out)


def quote_local(address: str, *, bare: bool = False) -> str:
    """The external form of an internal-form address (quote_822_local).

    ``bare``: the input is a local part without ``@domain`` (an ``@`` in it
    is then part of the local part).
    """
    start = _route_end(address)
    rest = address[start:]
    end = len(rest) if bare else rest.rfind("@")
    if end < 0:
        end = len(rest)
    local = rest[:end]
    if is_dot_string(local):
        return address
    return address[:start] + quote_string(local) + rest[end:]


def unquote_local(address: str) -> str:
    """The internal form of an external-form address (unquote_822_local)."""
    if '"' not in address and "\\" not in address:
        return address  # nothing quoted or escaped: both forms are the same
    start = _route_end(address)
    out: list[str] = [address[:start]]
    in_quote = False
    at_out = -1
    at_src = -1
    i = start
    n = len(address)
    while i < n:
        ch = address[i]
        if ch == '"':
            in_quote = not in_quote
            i += 1
            continue
        if ch == "@":
            if not in_quote:
                at_out = len(out)
                at_src = i
        elif ch == "\\":
            if i + 1 >= n:
                i += 1
                continue
            i += 1
            ch = address[i]
        out.append(ch)
        i += 1
    if at_out >= 0:
        del out[at_out:]
        out.append(address[at_src:])
    return "".join(out)


def split_internal(address: str) -> tuple[str, str | None]:
    """(local part, domain) of an internal-form address; domain None without ``@``."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        return address, None
    return local, domain


def last_unquoted_at(address: str) -> int:
    """Index of the last ``@`` outside double quotes and escapes, or -1."""
    in_quote = False
    last = -1
    i = 0
    n = len(address)
    while i < n:
        ch = address[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            in_quote = not in_quote
        elif ch == "@" and not in_quote:
            last = i
        i += 1
    return last


def split_external(address: str) -> tuple[str, str | None]:
    """(local part as written, domain) at the last unquoted ``@``."""
    at = last_unquoted_at(address)
    if at < 0:
        return address, None
    return address[:at], address[at + 1 :]
