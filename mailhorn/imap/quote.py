"""How strings are written in IMAP responses (RFC 3501 §4.3, §9 ``string``).

What it does
    Three writers, each matching the output of Dovecot 2.3, the reference
    server for mailhorn's mail store:

    * :func:`nstring` — ``NIL``, a quoted string, or a literal. A string is
      quoted unless it holds CR, LF, an 8-bit byte, or more than four
      characters that need a backslash (``"`` and ``\\``): then it is a
      literal ``{n}CRLF…``, which is both exact and cheaper to read.
    * :func:`nstring_nolf` — the same after removing CR and LF (header values
      in ENVELOPE: date, In-Reply-To, Message-ID).
    * :func:`string_for_humans` — subjects and display names in ENVELOPE:
      CR/LF removed, TABs made spaces, runs of spaces squeezed, leading and
      trailing spaces dropped. A string that needed none of this and has no
      ``"``, ``\\`` or 8-bit byte is written quoted as is; otherwise the
      cleaned text goes out as a literal.

Errors
    None: every byte string has a representation.
"""

from __future__ import annotations

_LITERAL_BYTES = frozenset(b"\r\n")
_ESCAPED = frozenset(b'"\\')


def literal(value: bytes) -> bytes:
    """``{n}CRLF`` followed by the bytes (RFC 3501 §4.3)."""
    return b"{%d}\r\n" % len(value) + value


def quoted(value: bytes) -> bytes:
    """A quoted string with ``"`` and ``\\`` escaped; the caller checked it has no CR/LF/8-bit."""
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def string(value: bytes) -> bytes:
    """A string: quoted when that is possible and cheap, a literal otherwise."""
    escapes = 0
    for byte in value:
        if byte in _LITERAL_BYTES or byte >= 0x80:
            return literal(value)
        if byte in _ESCAPED:
            escapes += 1
            if escapes > 4:
                return literal(value)
    return quoted(value)


def nstring(value: bytes | None) -> bytes:
    return b"NIL" if value is None else string(value)


def nstring_nolf(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    return string(value.replace(b"\r", b"").replace(b"\n", b""))


def string_for_humans(value: bytes) -> bytes:
    """A display string (subject, phrase): see the module text."""
    modify = False
    for i, byte in enumerate(value):
        if byte in (0x0D, 0x0A, 0x09) or byte >= 0x80 or byte in _ESCAPED:
            modify = True
            break
        if byte == 0x20 and (i == 0 or i == len(value) - 1 or value[i - 1] == 0x20):
            modify = True
            break
    if not modify:
        return b'"' + value + b'"'
    text = value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\t", b" ")
    cleaned = b" ".join(w for w in text.split(b" ") if w)
    if not cleaned:
        return b'""'
    return literal(cleaned)


def nstring_for_humans(value: bytes | None) -> bytes:
    return b"NIL" if value is None else string_for_humans(value)


def astring(value: bytes) -> bytes:
    """An atom where the grammar allows one (RFC 3501 ``astring``), else a string.

    Used for mailbox names in LIST/STATUS responses.
    """
    if value and all(0x21 <= b < 0x7F and b not in b'(){ %*"\\]' for b in value):
        return value
    return string(value)
