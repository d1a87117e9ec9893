"""Command-line framing for the SMTP/LMTP engine (sans-I/O).

`LineFramer.take(buf)` cuts one command line off the front of a bytearray
that the engine fills with whatever the peer sent, in any chunking.

A line ends at LF.  A CR before the LF is part of the standard CRLF ending;
a line that ends in LF alone has a *bare newline*, which Postfix accepts for
commands unless ``smtpd_forbid_bare_newline = reject`` (postconf(5)); the
line says so and the engine decides.

Line length: RFC 5321 §4.5.3.1.4 allows 512 octets for a command line, but
Postfix reads up to ``line_length_limit`` (default 2048) octets, takes those as
the line, and throws away the rest up to the next LF (smtp_get with its skip
flag): an over-long ``NOOP xxx...`` still gets ``250 2.0.0 Ok``.  We do the
same and mark the line as truncated, so memory stays bounded by the limit
however long the peer's line is.

Parameters: ``limit`` (octets, at least 3).  Errors: none; the framer never
raises on input.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Line", "LineFramer"]


@dataclass(frozen=True, slots=True)
class Line:
    """One received line, without its CRLF/LF ending."""

    text: bytes
    bare_newline: bool
    truncated: bool

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, text: bytes, bare_newline: bool, truncated: bool) -> None:
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "bare_newline", bare_newline)
        object.__setattr__(self, "truncated", truncated)


class LineFramer:
    """Cuts lines off an input buffer, with Postfix's over-long line rule."""

    def __init__(self, limit: int) -> None:
        if limit < 3:
            raise ValueError("line length limit must be at least 3")
        self.limit = limit
        # True while discarding the tail of an over-long line.
        self.skipping = False

    def reset(self) -> None:
        self.skipping = False

    def take(self, buf: bytearray) -> Line | None:
        """Remove and return the next complete line, or None if more input is
        needed.  May consume (discard) input even when it returns None."""
        while True:
            if self.skipping:
                nl = buf.find(b"\n")
                if nl < 0:
                    del buf[:]
                    return None
                del buf[: nl + 1]
                self.skipping = False
            nl = buf.find(b"\n", 0, self.limit)
            if nl >= 0:
                raw = bytes(buf[:nl])
                del buf[: nl + 1]
                if raw.endswith(b"\r"):
                    return Line(raw[:-1], bare_newline=False, truncated=False)
                return Line(raw, bare_newline=True, truncated=False)
            if len(buf) < self.limit:
                return None
            # No LF within the limit: the first `limit` octets are the line
            # and the rest of it is dropped.
            raw = bytes(buf[: self.limit])
            del buf[: self.limit]
            self.skipping = True
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            return Line(raw, bare_newline=False, truncated=True)
