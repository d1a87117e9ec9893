"""The queue file writer: one message serialised into the records of :mod:`mailhorn.queue.queuefile`.

What it does
    :class:`QueueFileWriter` turns envelope calls, content and extracted
    records into record bytes in the format's segment order and hands them
    to the caller's ``emit``; the caller (``store.QueueWriter``, the
    maildrop writer) owns the file and its durability. It refuses what the
    reader would refuse (control characters in envelope text, bad attribute
    names, records out of order) with ``ValueError``.

Parameters read: none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final

from mailhorn.queue.queuefile import (
    CHUNK_SIZE,
    ENVELOPE_MAX,
    MAGIC,
    SIZE_FORMAT,
    WARN_FORMAT,
    DsnNotify,
    DsnRet,
    RecordType,
    encode_record,
)

__all__ = ["QueueFileWriter"]

#: An attribute name: ASCII letters, digits and underscores.
_ATTR_NAME: Final = re.compile(r"[A-Za-z0-9_]+")
#: Attribute names already found well-formed (a few dozen exist; the bound
#: keeps names from damaged input from growing it).
_GOOD_NAMES: Final[set[str]] = set()
_GOOD_NAMES_MAX: Final = 256


def _check_text(value: str, what: str) -> bytes:
    """Encode envelope text for writing, refusing what the reader would refuse."""
    if "\0" in value or "\r" in value or "\n" in value:
        raise ValueError(f"control character in {what}: {value!r}")
    data = value.encode("utf-8")
    if len(data) > ENVELOPE_MAX:
        raise ValueError(f"{what} longer than {ENVELOPE_MAX} bytes")
    return data


class QueueFileWriter:
    """Serialises one message into records, handing bytes to ``emit``.

    The caller (``store.QueueWriter``) owns the file and its durability; this
    class only knows the format and the order of segments: envelope calls,
    then :meth:`write_content` (any number of times), then extracted-segment
    calls, then :meth:`finish`, which returns the size record to patch in.
    """

    def __init__(self, emit: Callable[[bytes], None], arrival: tuple[int, int]) -> None:
        self._emit = emit
        self.offset = 0
        self._segment = "envelope"
        self._have_sender = False
        self.recipient_count = 0
        self.content_size = 0
        self.content_offset = 0
        self.header_size: int | None = None
        self._tail = b""
        self._pending = bytearray()
        self._put(RecordType.VERSION, MAGIC)
        self.size_offset = self.offset
        self._put(RecordType.SIZE, (SIZE_FORMAT % (0, 0, 0, 0, 0, 0)).encode())
        self._put(RecordType.TIME, b"%d %d" % arrival)

    def _put(self, rtype: RecordType, data: bytes | memoryview) -> int:
        """Emit one record; returns its offset."""
        at = self.offset
        record = encode_record(rtype, data)
        self._emit(record)
        self.offset += len(record)
        return at

    def _need(self, segment: str) -> None:
        if self._segment != segment:
            raise ValueError(f"queue file record out of order: in {self._segment}, wanted {segment}")

    # -- envelope --------------------------------------------------------
    def create_time(self, seconds: int) -> None:
        self._need("envelope")
        self._put(RecordType.CTIME, b"%d" % seconds)

    def sender(self, address: str, fullname: str | None = None) -> None:
        """The envelope sender; ``""`` is the null sender ``<>``."""
        self._need("envelope")
        if fullname:
            self._put(RecordType.FULLNAME, _check_text(fullname, "full name"))
        self._put(RecordType.SENDER, _check_text(address, "sender"))
        self._have_sender = True

    def attribute(self, name: str, value: str) -> None:
        """A named attribute (client_name, helo_name, sasl_username, ...)."""
        self.attributes(((name, value),))

    def attributes(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Named attributes in one ``A`` record, ``name=value`` pairs separated
        by NUL (cleanup writes a dozen for every message: one record instead of
        a dozen to encode, and to read back at every delivery attempt)."""
        self._need("envelope")
        block: list[bytes] = []
        size = -1  # the bytes of the block: pairs and the NULs between them
        for name, value in pairs:
            if name not in _GOOD_NAMES:
                if _ATTR_NAME.fullmatch(name) is None:
                    raise ValueError(f"bad attribute name {name!r}")
                if len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
                    _GOOD_NAMES.add(name)
            pair = _check_text(f"{name}={value}", "attribute")
            if block and size + 1 + len(pair) > ENVELOPE_MAX:
                self._put(RecordType.ATTR, b"\0".join(block))
                block, size = [], -1
            block.append(pair)
            size += 1 + len(pair)
        if block:
            self._put(RecordType.ATTR, b"\0".join(block))

    def content_filter(self, value: str) -> None:
        """The content filter; one in the extracted segment (chosen after the
        content, e.g. by smtpd_end_of_data_restrictions) overrides the envelope's."""
        if self._segment not in ("envelope", "extracted"):
            raise ValueError("a content filter goes in the envelope or extracted segment")
        self._put(RecordType.CONTENT_FILTER, _check_text(value, "content filter"))

    def dsn(self, envid: str | None, ret: DsnRet | None) -> None:
        """RFC 3461 ENVID and RET from MAIL FROM."""
        self._need("envelope")
        if ret is not None:
            self._put(RecordType.DSN_RET, b"%d" % ret.value)
        if envid is not None:
            self._put(RecordType.DSN_ENVID, _check_text(envid, "DSN envelope id"))

    def warn_time(self, when: int) -> int:
        """When to send a delay warning (0 = none); returns the record offset."""
        self._need("envelope")
        return self._put(RecordType.WARN, (WARN_FORMAT % when).encode())

    def recipient(self, address: str, *, orig_rcpt: str | None = None,
                  dsn_orcpt: str | None = None, dsn_notify: DsnNotify | None = None,
                  done: bool = False) -> int:
        """A recipient with its DSN parameters; returns the offset of its done-mark byte."""
        if self._segment not in ("envelope", "extracted"):
            raise ValueError("recipients go in the envelope or extracted segment")
        if dsn_orcpt is not None:
            self._put(RecordType.DSN_ORCPT, _check_text(dsn_orcpt, "DSN original recipient"))
        if dsn_notify is not None:
            self._put(RecordType.DSN_NOTIFY, b"%d" % int(dsn_notify))
        if orig_rcpt is not None:
            self._put(RecordType.ORIG_RCPT, _check_text(orig_rcpt, "original recipient"))
        self.recipient_count += 1
        rtype = RecordType.DONE if done else RecordType.RCPT
        return self._put(rtype, _check_text(address, "recipient"))

    # -- content ---------------------------------------------------------
    def write_content(self, data: bytes | memoryview) -> None:
        """Append message content (stored as is) in bounded chunks."""
        if self._segment == "envelope":
            if not self._have_sender:
                raise ValueError("queue file needs a sender before content")
            self._put(RecordType.MESSAGE, b"")
            self._segment = "content"
            self.content_offset = self.offset
        self._need("content")
        view = memoryview(data).cast("B")
        if self.header_size is None:
            self._find_header_end(bytes(view))
        self.content_size += len(view)
        pos = 0
        if self._pending:
            pos = CHUNK_SIZE - len(self._pending)
            self._pending += view[:pos]
            if len(self._pending) < CHUNK_SIZE:
                return
            self._put(RecordType.CONTENT, bytes(self._pending))
            self._pending.clear()
        while len(view) - pos >= CHUNK_SIZE:
            self._put(RecordType.CONTENT, view[pos:pos + CHUNK_SIZE])
            pos += CHUNK_SIZE
        self._pending += view[pos:]

    def _find_header_end(self, data: bytes) -> None:
        """Note where the header ends: at the first empty line (RFC 5322 §2.1).

        Only the first writes are searched; two bytes carried between calls
        find a separator split across them.
        """
        probe = self._tail + data
        base = self.content_size - len(self._tail)
        if base == 0 and (probe.startswith(b"\n") or probe.startswith(b"\r\n")):
            self.header_size = 0
            return
        found = [at for at in (probe.find(b"\n\n"), probe.find(b"\n\r\n")) if at >= 0]
        if found:
            self.header_size = base + min(found) + 1
        else:
            self._tail = probe[-2:]

    def end_content(self) -> None:
        """Close the content segment and open the extracted one."""
        if self._segment == "envelope":
            self.write_content(b"")
        self._need("content")
        if self._pending:
            self._put(RecordType.CONTENT, bytes(self._pending))
            self._pending.clear()
        self._put(RecordType.EXTRACTED, b"")
        self._segment = "extracted"

    def extracted(self, rtype: RecordType, value: str) -> None:
        """Return-Receipt-To / Errors-To style records found in headers."""
        self._need("extracted")
        if rtype not in (RecordType.RETURN_RECEIPT, RecordType.ERRORS_TO):
            raise ValueError(f"not an extracted record type: {rtype}")
        self._put(rtype, _check_text(value, rtype.name.lower()))

    def finish(self) -> tuple[int, bytes]:
        """Write the end marker; returns (offset, bytes) of the final size record."""
        if self._segment != "extracted":
            self.end_content()
        self._put(RecordType.END, b"")
        self._segment = "done"
        header = self.content_size if self.header_size is None else self.header_size
        size = (SIZE_FORMAT % (self.content_size, self.content_offset, self.recipient_count,
                               0, self.content_size, header)).encode()
        return self.size_offset, encode_record(RecordType.SIZE, size)
