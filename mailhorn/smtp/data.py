"""Message content framing: DATA (dot-stuffed lines) and BDAT (counted chunks).

`DataReader.take(buf)` removes message content from the front of the input
buffer and returns it dot-unstuffed, with every line ending as CRLF, in
pieces of at most ``chunk_size`` octets: a line of any length streams through
without being held whole, so memory stays bounded (design.md §5 rule 7).

End of DATA (RFC 5321 §4.1.1.4) is ``<CR><LF>.<CR><LF>`` and nothing else.
``<LF>.<LF>``, ``<LF>.<CR><LF>``, ``<CR><LF>.<LF>`` and ``<CR>.<CR>`` are
never the end: treating them as the end is the SMTP smuggling hole
(CVE-2023-51764), which Postfix closes with ``smtpd_forbid_bare_newline``.
A dot line that does not end the message loses its leading dot (§4.5.2).

Bare LF in content, per postconf(5) ``smtpd_forbid_bare_newline``:

- ``no`` and ``normalize``: the line is taken as if it ended in CRLF.  (With
  ``no``, Postfix 3.7 also takes ``<LF>.<LF>`` as the end of the message;
  mailhorn never does, see docs/compatibility.md.)
- ``reject``: the reader stops with `BARE_NEWLINE`; the engine answers
  ``521 5.5.2`` and closes.

A bare CR is content; only LF ends lines.

`BdatReader` counts exactly ``size`` octets (RFC 3030 §2), whatever the
chunking, and passes them unchanged.

Parameters: ``mode`` (smtpd_forbid_bare_newline), ``chunk_size``.
Errors: none raised; `BARE_NEWLINE` is a result.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["BARE_NEWLINE_MODES", "BdatReader", "DataReader", "DataStatus"]

BARE_NEWLINE_MODES: Final = ("no", "normalize", "reject")
DEFAULT_CHUNK: Final = 64 * 1024


class DataStatus(enum.Enum):
    MORE = "more"  # needs more input (or call again: a chunk is full)
    END = "end"  # <CRLF>.<CRLF> seen and consumed
    BARE_NEWLINE = "bare-newline"  # reject mode saw a bare LF


class DataReader:
    """Dot-unstuffing, end-of-data detection and bare-LF policy for DATA."""

    def __init__(self, mode: str = "normalize", chunk_size: int = DEFAULT_CHUNK) -> None:
        if mode not in BARE_NEWLINE_MODES:
            raise ValueError(f"bad smtpd_forbid_bare_newline value: {mode!r}")
        if chunk_size < 1:
            raise ValueError("chunk size must be positive")
        self.mode = mode
        self.chunk_size = chunk_size
        self.reset()

    def reset(self) -> None:
        """Start of a new message: the DATA command line ended the previous
        line, so a lone dot line at once is an empty message."""
        self._line_start = True
        self._prev_crlf = True

    def take(self, buf: bytearray) -> tuple[bytes, DataStatus]:
        """Consume content from `buf`; return (unstuffed content, status)."""
        out = bytearray()
        bulk = True
        while len(out) < self.chunk_size:
            if self._line_start:
                if not buf:
                    break
                if buf[0] == 0x2E:  # "."
                    head = bytes(buf[:3])
                    if head == b".\r\n" and self._prev_crlf:
                        del buf[:3]
                        self._line_start = True
                        return bytes(out), DataStatus.END
                    if head in (b".", b".\r"):
                        break  # cannot decide yet
                    del buf[:1]  # dot-stuffing (RFC 5321 §4.5.2)
                self._line_start = False
            room = self.chunk_size - len(out)
            if bulk:
                # Fast path: the complete lines up to the next one that starts
                # with a dot pass in one copy when none ends in a bare LF;
                # bytearray.find/count do the scanning.  Once a bare LF shows
                # up, the rest of this call goes line by line (so the scan is
                # not repeated for every line).
                end = buf.find(b"\n.", 0, room)
                end = end + 1 if end >= 0 else buf.rfind(b"\n", 0, room) + 1
                if end > 0:
                    if buf.count(b"\n", 0, end) == buf.count(b"\r\n", 0, end):
                        out += buf[:end]
                        del buf[:end]
                        self._prev_crlf = True
                        self._line_start = True
                        continue
                    bulk = False
            # Look one octet past the room, so a CR at the edge of the chunk
            # is known to be bare (no LF follows) or is left for later.
            nl = buf.find(b"\n", 0, room + 1)
            if nl < 0:
                k = min(len(buf), room)
                if k and buf[k - 1] == 0x0D and k == len(buf):
                    k -= 1  # may be the CR of a CRLF still to come
                if k == 0:
                    break
                out += buf[:k]
                del buf[:k]
                continue
            if nl > 0 and buf[nl - 1] == 0x0D:
                out += buf[: nl + 1]
                self._prev_crlf = True
            else:
                if self.mode == "reject":
                    out += buf[:nl]
                    del buf[: nl + 1]
                    return bytes(out), DataStatus.BARE_NEWLINE
                out += buf[:nl]
                out += b"\r\n"
                self._prev_crlf = False
            del buf[: nl + 1]
            self._line_start = True
        return bytes(out), DataStatus.MORE


class BdatReader:
    """Exact octet counting for one BDAT chunk (RFC 3030 §2)."""

    def __init__(self, size: int, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.remaining = size
        self.chunk_size = chunk_size

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def take(self, buf: bytearray) -> bytes:
        k = min(self.remaining, len(buf), self.chunk_size)
        piece = bytes(buf[:k])
        del buf[:k]
        self.remaining -= k
        return piece
