"""The one error type of the address layer.

Every malformed, hostile or oversized address raises :class:`AddressError`
(never another exception), with a short reason in Postfix's or the RFC's
words, so the SMTP server can answer ``501 5.1.7 Bad sender address syntax``
or ``501 5.1.3 Bad recipient address syntax`` and log the reason.
"""

from __future__ import annotations


class AddressError(ValueError):
    """An address that cannot be parsed or does not satisfy the grammar.

    ``reason`` is the human-readable cause (``local part too long``,
    ``unbalanced '"'``, ...); ``text`` is the offending input, truncated to
    100 characters and with control characters shown as ``?`` (Postfix's
    printable()), so it is safe to log and to echo in a reply.
    """

    def __init__(self, reason: str, text: str = "") -> None:
        self.reason = reason
        self.text = printable(text[:100])
        super().__init__(f"{reason}: {self.text}" if text else reason)


def printable(text: str) -> str:
    """``text`` with control characters and surrogates replaced by ``?``."""
    return "".join(
        "?" if ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text
    )


class DomainError(AddressError):
    """A domain that is not a valid hostname or cannot be converted by IDNA."""
