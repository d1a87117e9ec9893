"""XFORWARD (Postfix's XFORWARD_README): a trusted proxy names the real client.

A client in ``smtpd_authorized_xforward_hosts`` sees ``XFORWARD NAME ADDR
PROTO HELO SOURCE PORT IDENT`` in the EHLO reply and may send, outside a
mail transaction, ``XFORWARD NAME=... ADDR=... PORT=... PROTO=... HELO=...
IDENT=... SOURCE=...`` (xtext values, decoded by the command parser).  The
values replace the client's in what the Received: header, the logs of the
transaction, the restrictions and the policy service see, for the next
transaction only: they are forgotten when it ends or at RSET/HELO/EHLO.

``[UNAVAILABLE]`` means the value is not known (the attribute is cleared);
``[TEMPUNAVAIL]`` means a temporary lookup failure (for NAME: status 4).
An ``IPV6:`` prefix on ADDR is removed.

Replies (Postfix's): ``250 2.0.0 Ok``; ``550 5.7.0 Error: insufficient
authorization`` for a client not in the list; ``503 5.5.1 Error: MAIL
transaction in progress``; ``501 5.5.4 Bad XFORWARD attribute name: X``;
``501 5.5.4 Bad XFORWARD attribute value: X=V`` for a malformed value.

Parameters read: ``smtpd_authorized_xforward_hosts`` (by the session).
Errors: `SmtpReplyError` from :func:`apply_xforward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mailhorn.address.idna import valid_hostaddr, valid_hostname
from mailhorn.smtp.reply import Reply, SmtpReplyError, printable

__all__ = ["EHLO_XFORWARD", "Forwarded", "apply_xforward"]

#: The EHLO line an authorized client sees.
EHLO_XFORWARD: Final = "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT"
UNAVAILABLE: Final = "[UNAVAILABLE]"
TEMPUNAVAIL: Final = "[TEMPUNAVAIL]"
_NAMES: Final = frozenset({"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"})


@dataclass
class Forwarded:
    """XFORWARD attributes received so far (empty: none)."""

    attrs: dict[str, str]

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)

    @property
    def active(self) -> bool:
        return bool(self.attrs)


def _bad_value(name: str, value: str) -> SmtpReplyError:
    return SmtpReplyError(Reply.of(501, "5.5.4", f"Bad XFORWARD attribute value: {name}={printable(value)}"))


def _check(name: str, value: str) -> str:
    """Validate and normalise one attribute value."""
    if name == "NAME":
        if value == TEMPUNAVAIL or valid_hostname(value):
            return value
        raise _bad_value(name, value)
    if name == "ADDR":
        addr = value[5:] if value[:5].upper() == "IPV6:" else value
        if valid_hostaddr(addr):
            return addr
        raise _bad_value(name, value)
    if name == "PORT":
        if value.isascii() and value.isdigit() and int(value) <= 65535:
            return value
        raise _bad_value(name, value)
    if name == "SOURCE":
        if value.upper() in ("LOCAL", "REMOTE"):
            return value.upper()
        raise _bad_value(name, value)
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or (name == "PROTO" and not value):
        raise _bad_value(name, value)
    return value


def apply_xforward(forwarded: Forwarded, attributes: tuple[tuple[str, str], ...]) -> None:
    """Check every attribute first, then record them all (all or nothing)."""
    updates: list[tuple[str, str | None]] = []
    for name, value in attributes:
        if name not in _NAMES:
            raise SmtpReplyError(Reply.of(501, "5.5.4", f"Bad XFORWARD attribute name: {printable(name)}"))
        if value == UNAVAILABLE or value == "":
            updates.append((name, None))
        else:
            updates.append((name, _check(name, value)))
    for name, checked in updates:
        if checked is None:
            forwarded.attrs.pop(name, None)
        else:
            forwarded.attrs[name] = checked
