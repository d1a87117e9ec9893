"""The queue file: a record-based format and its validating reader (the writer is
:mod:`mailhorn.queue.queuefile_writer`).

A queue file holds one message: the envelope (arrival time, sender,
recipients with their DSN parameters and done-marks, DSN envelope id and RET,
named attributes), the message content exactly as cleanup produced it, the
records extracted from headers, and an end marker. The byte layout is
documented in ``docs/queue-format.md``; in short, every record is::

    type (1 byte) | length (4 bytes, big-endian) | data | CRC-32 (4 bytes, big-endian)

The CRC covers the type byte, the length and the data, so a truncated file,
a flipped bit or an unknown record type is detected when the file is read.
A recipient is marked done by rewriting its type byte from ``R`` to ``D`` in
place (as Postfix's queue manager does); the CRC is computed over the type
``R`` for both, so that single-byte rewrite keeps the record valid and a crash
can never leave a half-marked recipient.

Record groups follow Postfix's three segments: the envelope (``V C T ...``)
up to ``M``, the content (``B`` chunks) up to ``X``, the extracted segment up
to ``E``, which must be the last bytes of the file.

Parameters read: none (limits are constants of the format).

Errors: :class:`CorruptQueueFile` for anything that does not validate; the
queue manager moves such a file to ``corrupt/`` and logs the reason.
"""

from __future__ import annotations

import enum
import functools
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final, NamedTuple

__all__ = [
    "CorruptQueueFile",
    "DsnNotify",
    "DsnRet",
    "QueueFile",
    "Recipient",
    "Record",
    "RecordType",
    "iter_content",
    "iter_records",
    "read_queue_file",
    "split_attributes",
]

#: Data of the first record; a file that does not start with it is not ours.
MAGIC: Final = b"mailhorn-queue 1"
#: Largest content chunk (``B`` record) the reader accepts and the writer makes.
CHUNK_MAX: Final = 1 << 20
#: Size of the content chunks the writer makes.
CHUNK_SIZE: Final = 64 * 1024
#: Largest envelope or extracted record (an address, an attribute).
ENVELOPE_MAX: Final = 64 * 1024

_HEAD: Final = struct.Struct(">cI")
_CRC: Final = struct.Struct(">I")
#: Bytes a record adds around its data: type, length, CRC.
OVERHEAD: Final = _HEAD.size + _CRC.size

#: The size record is fixed-width so it can be rewritten in place at commit:
#: content size, content offset, recipient count, queue manager flags,
#: message size, header size (cf. Postfix's REC_TYPE_SIZE_FORMAT).
SIZE_FORMAT: Final = "%15d %15d %15d %15d %15d %15d"
_SIZE_LEN: Final = len(SIZE_FORMAT % (0, 0, 0, 0, 0, 0))
#: The warning-time record is fixed-width too (updated in place by qmgr).
WARN_FORMAT: Final = "%15d"
_WARN_LEN: Final = 15


class CorruptQueueFile(Exception):
    """A queue file failed validation; ``offset`` is where reading stopped."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        super().__init__(reason if offset is None else f"{reason} at offset {offset}")
        self.reason = reason
        self.offset = offset


class RecordType(bytes, enum.Enum):
    """Record types; the letters follow Postfix's rec_type.h where one exists."""

    VERSION = b"V"
    SIZE = b"C"
    TIME = b"T"
    CTIME = b"c"
    FULLNAME = b"F"
    CONTENT_FILTER = b"I"
    SENDER = b"S"
    ATTR = b"A"
    DSN_RET = b"<"
    DSN_ENVID = b"i"
    DSN_ORCPT = b"o"
    DSN_NOTIFY = b"n"
    ORIG_RCPT = b"O"
    RCPT = b"R"
    DONE = b"D"
    WARN = b"W"
    MESSAGE = b"M"
    CONTENT = b"B"
    EXTRACTED = b"X"
    RETURN_RECEIPT = b"r"
    ERRORS_TO = b"e"
    END = b"E"


_BY_BYTE: Final[dict[int, RecordType]] = {t.value[0]: t for t in RecordType}

#: Records allowed in each segment (Postfix's REC_TYPE_ENVELOPE / CONTENT / EXTRACT).
_ENVELOPE: Final = frozenset({
    RecordType.TIME, RecordType.CTIME, RecordType.FULLNAME, RecordType.CONTENT_FILTER,
    RecordType.SENDER, RecordType.ATTR, RecordType.DSN_RET, RecordType.DSN_ENVID,
    RecordType.DSN_ORCPT, RecordType.DSN_NOTIFY, RecordType.ORIG_RCPT, RecordType.RCPT,
    RecordType.DONE, RecordType.WARN, RecordType.MESSAGE,
})
_CONTENT: Final = frozenset({RecordType.CONTENT, RecordType.EXTRACTED})
_EXTRACT: Final = frozenset({
    RecordType.CONTENT_FILTER, RecordType.DSN_ORCPT, RecordType.DSN_NOTIFY, RecordType.ORIG_RCPT, RecordType.RCPT,
    RecordType.DONE, RecordType.RETURN_RECEIPT, RecordType.ERRORS_TO, RecordType.END,
})
#: Records that only describe the recipient that follows them.
_RCPT_PREFIX: Final = frozenset({RecordType.DSN_ORCPT, RecordType.DSN_NOTIFY, RecordType.ORIG_RCPT})
#: The segments as sets of type bytes: a member test on an Enum hashes it
#: in Python, once per record of every queue file read.
_ENVELOPE_BYTES: Final = frozenset(t.value for t in _ENVELOPE)
_CONTENT_BYTES: Final = frozenset(t.value for t in _CONTENT)
_EXTRACT_BYTES: Final = frozenset(t.value for t in _EXTRACT)


class DsnRet(enum.Enum):
    """RFC 3461 §4.3 RET; stored as Postfix's numeric flags (1 FULL, 2 HDRS)."""

    FULL = 1
    HDRS = 2


class DsnNotify(enum.IntFlag):
    """RFC 3461 §4.1 NOTIFY; the bit values are Postfix's (dsn_mask.h)."""

    NEVER = 1
    SUCCESS = 2
    FAILURE = 4
    DELAY = 8


_NOTIFY_NAMES: Final = (("NEVER", DsnNotify.NEVER), ("SUCCESS", DsnNotify.SUCCESS),
                 ("FAILURE", DsnNotify.FAILURE), ("DELAY", DsnNotify.DELAY))


def notify_names(bits: DsnNotify | None) -> frozenset[str]:
    """NOTIFY bits as the RFC 3461 keyword names (``SUCCESS``, ``FAILURE``, ...)."""
    if bits is None:
        return frozenset()
    return frozenset(name for name, flag in _NOTIFY_NAMES if bits & flag)


def _crc(rtype: bytes, head: bytes, data: bytes | memoryview) -> int:
    """CRC-32 of a record with a done-mark folded back to ``R`` (see module doc)."""
    canonical = RecordType.RCPT.value if rtype == RecordType.DONE.value else rtype
    return zlib.crc32(data, zlib.crc32(head[1:], zlib.crc32(canonical)))


#: CRC-32 of each record type's byte as the CRC counts it (``D`` as ``R``),
#: the start of every record's CRC (what _crc computes first).
_CRC_SEED: Final[dict[bytes, int]] = {
    t.value: zlib.crc32(RecordType.RCPT.value if t is RecordType.DONE else t.value) for t in RecordType
}
_LENGTH: Final = struct.Struct(">I")


#: Records up to this size are assembled by concatenation (fewer calls);
#: larger ones (content) without copying their data more than once.
_SMALL_RECORD: Final = 4096


def encode_record(rtype: RecordType, data: bytes | memoryview) -> bytes:
    """One record's bytes (the same as :func:`_crc` over ``_HEAD``, in fewer steps:
    this runs for every record of every message)."""
    code: bytes = rtype._value_
    length = _LENGTH.pack(len(data))
    if len(data) <= _SMALL_RECORD:
        head = length + data
        return code + head + _CRC.pack(zlib.crc32(head, _CRC_SEED[code]))
    crc = zlib.crc32(data, zlib.crc32(length, _CRC_SEED[code]))
    return b"".join((code, length, data, _CRC.pack(crc)))


#: What envelope text may not hold. One search instead of three ``in`` tests:
#: on Python 3.11 ``bytes in bytes`` first tries the needle as an integer and
#: raises (and drops) a TypeError each time.
_CONTROL: Final = re.compile(rb"[\0\r\n]")
#: The same, for a record of NUL-separated values.
_LINE_BREAK: Final = re.compile(rb"[\r\n]")


def _text(data: bytes, what: str, offset: int, control: re.Pattern[bytes] = _CONTROL) -> str:
    """Envelope text: UTF-8 (RFC 6531 addresses) without NUL, CR or LF
    (``control``: :data:`_LINE_BREAK` where NUL separates values)."""
    if control.search(data) is not None:
        raise CorruptQueueFile(f"control character in {what}", offset)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptQueueFile(f"invalid UTF-8 in {what}", offset) from None


def split_attributes(rec: Record) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of an ``A`` record (``name=value``, one or
    more, NUL-separated); :class:`CorruptQueueFile` for a pair without a
    name or ``=``."""
    pairs = []
    for pair in _text(rec.data, "attribute", rec.offset, _LINE_BREAK).split("\0"):
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise CorruptQueueFile("malformed attribute", rec.offset)
        pairs.append((name, value))
    return pairs


class Record(NamedTuple):
    """One record as read: where it starts, its type and its data.

    Content records met with ``skip_content`` carry empty data. (A named
    tuple: one is made for every record of every queue file read.)
    """

    offset: int
    type: RecordType
    data: bytes


def _read_exact(stream: BinaryIO, count: int, offset: int, what: str) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise CorruptQueueFile(f"truncated {what}", offset)
    return data


#: Record types the reader names per record, as plain globals: an Enum
#: member looked up on its class costs as much as the rest of a small
#: record's checks.
_VERSION, _SIZE, _CONTENT_T = RecordType.VERSION, RecordType.SIZE, RecordType.CONTENT
_MESSAGE, _EXTRACTED, _END = RecordType.MESSAGE, RecordType.EXTRACTED, RecordType.END


#: Makes a :class:`Record` from its fields as a tuple, in C (``Record(...)``
#: runs the named tuple's ``__new__``, a Python function, for every record).
_new_record: Callable[[tuple[int, RecordType, bytes]], Record] = functools.partial(tuple.__new__, Record)


def iter_records(stream: BinaryIO, *, skip_content: bool = False) -> Iterator[Record]:
    """Validate and yield every record in file order.

    Checks the magic, each length bound, each CRC, each type against its
    segment, and that ``E`` is the last record. With ``skip_content`` the
    data of content chunks is seeked over (framing is still checked, their CRC
    is not): the queue manager's fast path; delivery checks them later.
    """
    read = stream.read
    head_size, crc_size = _HEAD.size, _CRC.size
    unpack = _HEAD.unpack
    skip = skip_content and stream.seekable()
    offset = 0
    segment = _ENVELOPE_BYTES
    index = 0
    while True:
        head = read(head_size)
        if len(head) != head_size:
            raise CorruptQueueFile("truncated record header" if head else "missing end-of-file marker", offset)
        rtype_byte, length = unpack(head)
        rtype = _BY_BYTE.get(rtype_byte[0])
        if rtype is None:
            raise CorruptQueueFile(f"unknown record type {rtype_byte[0]}", offset)
        if index > 1:
            if rtype_byte not in segment:
                raise CorruptQueueFile(f"unexpected record type {rtype.value.decode()}", offset)
        elif index == 0:
            if rtype is not _VERSION:
                raise CorruptQueueFile("not a queue file (no version record)", offset)
        elif rtype is not _SIZE:
            raise CorruptQueueFile("size record missing", offset)
        limit = CHUNK_MAX if rtype is _CONTENT_T else ENVELOPE_MAX
        if length > limit:
            raise CorruptQueueFile(f"record length {length} exceeds {limit}", offset)
        if skip and rtype is _CONTENT_T:
            # Truncation shows up as a short read of the next record header.
            stream.seek(length + crc_size, 1)
            data = b""
        else:
            # Data and checksum in one read; the CRC as _crc computes it, inline
            # (this runs for every record of every queue file read).
            body = read(length + crc_size)
            if len(body) != length + crc_size:
                raise CorruptQueueFile("truncated record data", offset)
            data = body[:length]
            if zlib.crc32(data, zlib.crc32(head[1:], _CRC_SEED[rtype_byte])) != int.from_bytes(body[length:], "big"):
                raise CorruptQueueFile(f"checksum mismatch in {rtype.name} record", offset)
            if index == 0 and data != MAGIC:
                raise CorruptQueueFile("unsupported queue file version", offset)
        yield _new_record((offset, rtype, data))
        offset += head_size + length + crc_size
        index += 1
        if rtype is _MESSAGE:
            segment = _CONTENT_BYTES
        elif rtype is _EXTRACTED:
            segment = _EXTRACT_BYTES
        elif rtype is _END:
            if read(1):
                raise CorruptQueueFile("data after end-of-file marker", offset)
            return


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient; ``offset`` locates its done-mark byte."""

    address: str
    offset: int
    done: bool = False
    orig_rcpt: str | None = None
    dsn_orcpt: str | None = None
    dsn_notify: DsnNotify | None = None

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, address: str, offset: int, done: bool = False, orig_rcpt: str | None = None,
                 dsn_orcpt: str | None = None, dsn_notify: DsnNotify | None = None) -> None:
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "done", done)
        object.__setattr__(self, "orig_rcpt", orig_rcpt)
        object.__setattr__(self, "dsn_orcpt", dsn_orcpt)
        object.__setattr__(self, "dsn_notify", dsn_notify)


@dataclass(frozen=True, slots=True)
class QueueFile:
    """The validated envelope of one queue file (content is read by iter_content)."""

    arrival_time: tuple[int, int]
    sender: str
    recipients: tuple[Recipient, ...]
    content_size: int
    content_offset: int
    header_size: int
    create_time: int | None = None
    fullname: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    content_filter: str | None = None
    dsn_envid: str | None = None
    dsn_ret: DsnRet | None = None
    warn_time: int | None = None
    warn_offset: int | None = None
    return_receipt: str | None = None
    errors_to: str | None = None
    file_size: int = 0

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, arrival_time: tuple[int, int], sender: str, recipients: tuple[Recipient, ...],
                 content_size: int, content_offset: int, header_size: int, create_time: int | None = None,
                 fullname: str | None = None, attributes: dict[str, str] | None = None,
                 content_filter: str | None = None, dsn_envid: str | None = None,
                 dsn_ret: DsnRet | None = None, warn_time: int | None = None, warn_offset: int | None = None,
                 return_receipt: str | None = None, errors_to: str | None = None, file_size: int = 0) -> None:
        object.__setattr__(self, "arrival_time", arrival_time)
        object.__setattr__(self, "sender", sender)
        object.__setattr__(self, "recipients", recipients)
        object.__setattr__(self, "content_size", content_size)
        object.__setattr__(self, "content_offset", content_offset)
        object.__setattr__(self, "header_size", header_size)
        object.__setattr__(self, "create_time", create_time)
        object.__setattr__(self, "fullname", fullname)
        object.__setattr__(self, "attributes", attributes if attributes is not None else {})
        object.__setattr__(self, "content_filter", content_filter)
        object.__setattr__(self, "dsn_envid", dsn_envid)
        object.__setattr__(self, "dsn_ret", dsn_ret)
        object.__setattr__(self, "warn_time", warn_time)
        object.__setattr__(self, "warn_offset", warn_offset)
        object.__setattr__(self, "return_receipt", return_receipt)
        object.__setattr__(self, "errors_to", errors_to)
        object.__setattr__(self, "file_size", file_size)

    @property
    def pending(self) -> tuple[Recipient, ...]:
        """Recipients not yet marked done."""
        return tuple(r for r in self.recipients if not r.done)


def _int(data: bytes, what: str, offset: int) -> int:
    text = data.strip()
    if not text or not text.isdigit() or len(text) > 19:
        raise CorruptQueueFile(f"bad number in {what}", offset)
    return int(text)


def read_queue_file(stream: BinaryIO, *, verify_content: bool = True) -> QueueFile:
    """Read and validate a whole queue file from ``stream`` (positioned at 0).

    Raises :class:`CorruptQueueFile` unless every record validates and the
    required ones (version, size, arrival time, sender, message start,
    extracted start, end) are present and consistent with the size record.
    """
    state = _EnvelopeBuilder()
    for record in iter_records(stream, skip_content=not verify_content):
        state.add(record)
    return state.build()


class _EnvelopeBuilder:
    """Collects records into a :class:`QueueFile`, checking cross-record rules."""

    def __init__(self) -> None:
        self.size: list[int] = []
        self.time: tuple[int, int] | None = None
        self.sender: str | None = None
        self.recipients: list[Recipient] = []
        self.prefix: dict[RecordType, bytes] = {}
        self.fields: dict[str, object] = {}
        self.attributes: dict[str, str] = {}
        self.content_seen = 0
        self.content_offset: int | None = None
        self.end = 0

    def add(self, rec: Record) -> None:
        """Take one record (records the builder has no use for are ignored)."""
        handler = _ADD.get(rec.type)
        if handler is not None:
            handler(self, rec)

    # One method per record type (see _ADD), the most frequent first.
    def _attr(self, rec: Record) -> None:
        self.attributes.update(split_attributes(rec))

    def _size(self, rec: Record) -> None:
        data, at = rec.data, rec.offset
        fields = data.split()
        if len(data) != _SIZE_LEN or len(fields) != 6:
            raise CorruptQueueFile("malformed size record", at)
        self.size = [_int(f, "size record", at) for f in fields]

    def _time(self, rec: Record) -> None:
        at = rec.offset
        parts = rec.data.split(b" ")
        if len(parts) != 2:
            raise CorruptQueueFile("malformed arrival time", at)
        self.time = (_int(parts[0], "arrival time", at), _int(parts[1], "arrival time", at))
        if self.time[1] >= 1_000_000:
            raise CorruptQueueFile("malformed arrival time", at)

    def _ctime(self, rec: Record) -> None:
        self.fields["create_time"] = _int(rec.data, "create time", rec.offset)

    def _fullname(self, rec: Record) -> None:
        self.fields["fullname"] = _text(rec.data, "full name", rec.offset)

    def _sender(self, rec: Record) -> None:
        if self.sender is not None:
            raise CorruptQueueFile("duplicate sender record", rec.offset)
        self.sender = _text(rec.data, "sender", rec.offset)

    def _content_filter(self, rec: Record) -> None:
        self.fields["content_filter"] = _text(rec.data, "content filter", rec.offset)

    def _dsn_ret(self, rec: Record) -> None:
        ret = _int(rec.data, "DSN RET", rec.offset)
        if ret not in (1, 2):
            raise CorruptQueueFile("bad DSN RET value", rec.offset)
        self.fields["dsn_ret"] = DsnRet(ret)

    def _dsn_envid(self, rec: Record) -> None:
        self.fields["dsn_envid"] = _text(rec.data, "DSN envelope id", rec.offset)

    def _warn(self, rec: Record) -> None:
        if len(rec.data) != _WARN_LEN:
            raise CorruptQueueFile("malformed warning time", rec.offset)
        self.fields["warn_time"] = _int(rec.data, "warning time", rec.offset)
        self.fields["warn_offset"] = rec.offset

    def _rcpt_prefix(self, rec: Record) -> None:
        """DSN ORCPT, DSN NOTIFY or the original recipient of the recipient that follows."""
        if rec.type in self.prefix:
            raise CorruptQueueFile(f"duplicate {rec.type.name} before recipient", rec.offset)
        self.prefix[rec.type] = rec.data

    def _message(self, rec: Record) -> None:
        if self.prefix:
            raise CorruptQueueFile("recipient attributes without recipient", rec.offset)
        self.content_offset = rec.offset + OVERHEAD

    def _content(self, rec: Record) -> None:
        self.content_seen += len(rec.data)

    def _extracted(self, rec: Record) -> None:
        self.fields["_extracted_at"] = rec.offset

    def _return_receipt(self, rec: Record) -> None:
        self.fields["return_receipt"] = _text(rec.data, "return receipt", rec.offset)

    def _errors_to(self, rec: Record) -> None:
        self.fields["errors_to"] = _text(rec.data, "errors-to", rec.offset)

    def _end(self, rec: Record) -> None:
        if self.prefix:
            raise CorruptQueueFile("recipient attributes without recipient", rec.offset)
        self.end = rec.offset + OVERHEAD

    def _recipient(self, rec: Record) -> None:
        at = rec.offset
        notify = None
        if RecordType.DSN_NOTIFY in self.prefix:
            bits = _int(self.prefix[RecordType.DSN_NOTIFY], "DSN NOTIFY", at)
            if bits == 0 or bits > 15 or (bits & DsnNotify.NEVER and bits != DsnNotify.NEVER):
                raise CorruptQueueFile("bad DSN NOTIFY value", at)
            notify = DsnNotify(bits)
        orig = self.prefix.get(RecordType.ORIG_RCPT)
        orcpt = self.prefix.get(RecordType.DSN_ORCPT)
        self.recipients.append(Recipient(
            address=_text(rec.data, "recipient", at),
            offset=at,
            done=rec.type is RecordType.DONE,
            orig_rcpt=None if orig is None else _text(orig, "original recipient", at),
            dsn_orcpt=None if orcpt is None else _text(orcpt, "DSN original recipient", at),
            dsn_notify=notify,
        ))
        self.prefix = {}

    def build(self) -> QueueFile:
        if self.time is None:
            raise CorruptQueueFile("arrival time record missing")
        if self.sender is None:
            raise CorruptQueueFile("sender record missing")
        if self.content_offset is None or "_extracted_at" not in self.fields:
            raise CorruptQueueFile("message content segment missing")
        content_size, content_offset, rcpt_count, _flags, _msize, header_size = self.size
        if content_offset != self.content_offset:
            raise CorruptQueueFile("size record: content offset mismatch")
        if rcpt_count != len(self.recipients):
            raise CorruptQueueFile("size record: recipient count mismatch")
        if header_size > content_size:
            raise CorruptQueueFile("size record: header size exceeds content size")
        extracted_at = self.fields["_extracted_at"]
        assert isinstance(extracted_at, int)
        if self.content_seen and self.content_seen != content_size:
            raise CorruptQueueFile("size record: content size mismatch")
        # Content bytes plus one record's overhead per chunk must fill M..X exactly.
        span = extracted_at - content_offset
        chunks, rest = divmod(span - content_size, OVERHEAD) if span >= content_size else (-1, 1)
        if rest or chunks < 0 or (content_size and chunks == 0):
            raise CorruptQueueFile("size record: content size mismatch")
        f = self.fields

        def opt_str(name: str) -> str | None:
            value = f.get(name)
            return value if isinstance(value, str) else None

        def opt_int(name: str) -> int | None:
            value = f.get(name)
            return value if isinstance(value, int) else None

        ret = f.get("dsn_ret")
        return QueueFile(
            arrival_time=self.time,
            sender=self.sender,
            recipients=tuple(self.recipients),
            content_size=content_size,
            content_offset=content_offset,
            header_size=header_size,
            create_time=opt_int("create_time"),
            fullname=opt_str("fullname"),
            attributes=self.attributes,
            content_filter=opt_str("content_filter"),
            dsn_envid=opt_str("dsn_envid"),
            dsn_ret=ret if isinstance(ret, DsnRet) else None,
            warn_time=opt_int("warn_time"),
            warn_offset=opt_int("warn_offset"),
            return_receipt=opt_str("return_receipt"),
            errors_to=opt_str("errors_to"),
            file_size=self.end,
        )


#: What the builder does with each record type (the version record needs nothing more).
_ADD: Final[dict[RecordType, Callable[[_EnvelopeBuilder, Record], None]]] = {
    RecordType.ATTR: _EnvelopeBuilder._attr,
    RecordType.SIZE: _EnvelopeBuilder._size,
    RecordType.TIME: _EnvelopeBuilder._time,
    RecordType.CTIME: _EnvelopeBuilder._ctime,
    RecordType.FULLNAME: _EnvelopeBuilder._fullname,
    RecordType.SENDER: _EnvelopeBuilder._sender,
    RecordType.CONTENT_FILTER: _EnvelopeBuilder._content_filter,
    RecordType.DSN_RET: _EnvelopeBuilder._dsn_ret,
    RecordType.DSN_ENVID: _EnvelopeBuilder._dsn_envid,
    RecordType.WARN: _EnvelopeBuilder._warn,
    RecordType.DSN_ORCPT: _EnvelopeBuilder._rcpt_prefix,
    RecordType.DSN_NOTIFY: _EnvelopeBuilder._rcpt_prefix,
    RecordType.ORIG_RCPT: _EnvelopeBuilder._rcpt_prefix,
    RecordType.RCPT: _EnvelopeBuilder._recipient,
    RecordType.DONE: _EnvelopeBuilder._recipient,
    RecordType.MESSAGE: _EnvelopeBuilder._message,
    RecordType.CONTENT: _EnvelopeBuilder._content,
    RecordType.EXTRACTED: _EnvelopeBuilder._extracted,
    RecordType.RETURN_RECEIPT: _EnvelopeBuilder._return_receipt,
    RecordType.ERRORS_TO: _EnvelopeBuilder._errors_to,
    RecordType.END: _EnvelopeBuilder._end,
}


def iter_content(stream: BinaryIO, qf: QueueFile) -> Iterator[bytes]:
    """Yield the message content in chunks, checking each chunk's CRC again.

    Memory stays bounded by :data:`CHUNK_MAX` whatever the message size.
    """
    stream.seek(qf.content_offset)
    offset = qf.content_offset
    total = 0
    while True:
        head = _read_exact(stream, _HEAD.size, offset, "record header")
        rtype_byte, length = _HEAD.unpack(head)
        if rtype_byte == RecordType.EXTRACTED.value:
            break
        if rtype_byte != RecordType.CONTENT.value or length > CHUNK_MAX:
            raise CorruptQueueFile("bad content record", offset)
        data = _read_exact(stream, length, offset, "content")
        (crc,) = _CRC.unpack(_read_exact(stream, _CRC.size, offset, "record checksum"))
        if crc != _crc(rtype_byte, head, data):
            raise CorruptQueueFile("checksum mismatch in CONTENT record", offset)
        total += length
        offset += OVERHEAD + length
        if data:
            yield data
    if total != qf.content_size:
        raise CorruptQueueFile("content size mismatch", offset)


def done_mark_ok(type_byte: bytes) -> bool:
    """Whether a byte read at a recipient offset is a recipient record type."""
    return type_byte in (RecordType.RCPT.value, RecordType.DONE.value)


def warn_record(when: int) -> bytes:
    """The full WARN record for an in-place update of the warning time."""
    return encode_record(RecordType.WARN, (WARN_FORMAT % when).encode())
