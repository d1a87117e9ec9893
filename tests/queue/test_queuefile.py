"""The queue file format: round trips, header detection, and validation of damage."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest

from mailhorn.queue.queuefile import (
    CHUNK_SIZE,
    ENVELOPE_MAX,
    CorruptQueueFile,
    DsnNotify,
    DsnRet,
    RecordType,
    encode_record,
    iter_content,
    iter_records,
    read_queue_file,
)
from mailhorn.queue.queuefile_writer import QueueFileWriter
from tests.queue.util import SAMPLE, make_store, write_sample


def build(content: bytes | list[bytes], **kw: object) -> bytes:
    """A complete queue file built in memory."""
    out = bytearray()
    writer = QueueFileWriter(out.extend, (1700000000, 250000))
    writer.sender("s@example.org")
    writer.recipient("r@example.com")
    for piece in content if isinstance(content, list) else [content]:
        writer.write_content(piece)
    offset, record = writer.finish()
    out[offset:offset + len(record)] = record
    return bytes(out)


def read(data: bytes, verify: bool = True) -> object:
    return read_queue_file(io.BytesIO(data), verify_content=verify)


def test_round_trip_every_envelope_field(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    qid = write_sample(store)
    qf = store.read("incoming", qid)
    assert qf.arrival_time == (1700000000, 250000)
    assert qf.create_time == 1700000000
    assert qf.sender == "a@example.org" and qf.fullname == "Sender Name"
    assert qf.attributes == {
        "rewrite_context": "remote", "log_client_name": "client.example",
        "log_client_address": "127.0.0.1", "helo_name": "client.example",
        "protocol_name": "ESMTP", "sasl_username": "alice", "log_ident": "ident",
        "encoding": "8bit", "smtputf8": "1",
    }
    assert qf.content_filter == "smtp:[127.0.0.1]:10024"
    assert qf.dsn_envid == "ENVID-1" and qf.dsn_ret is DsnRet.HDRS
    assert qf.warn_time == 1700003600
    first, second = qf.recipients
    assert first.address == "x@example.com" and first.orig_rcpt == "X@EXAMPLE.COM"
    assert first.dsn_orcpt == "rfc822;x@example.com"
    assert first.dsn_notify == DsnNotify.SUCCESS | DsnNotify.FAILURE
    assert second.address == "y@example.com" and second.dsn_notify is None and second.orig_rcpt is None
    assert not first.done and not second.done
    assert qf.return_receipt == "rr@example.org" and qf.errors_to == "errors@example.org"
    assert qf.content_size == len(SAMPLE)
    assert qf.header_size == SAMPLE.index(b"\n\n") + 1
    assert b"".join(store.content("incoming", qid, qf)) == SAMPLE


def test_null_sender_and_utf8_addresses() -> None:
    out = bytearray()
    writer = QueueFileWriter(out.extend, (1, 2))
    writer.sender("")
    writer.recipient("jürgen@bücher.example")
    offset, record = writer.finish()
    out[offset:offset + len(record)] = record
    qf = read_queue_file(io.BytesIO(bytes(out)))
    assert qf.sender == "" and qf.recipients[0].address == "jürgen@bücher.example"
    assert qf.content_size == 0


@pytest.mark.parametrize("pieces, header", [
    ([b"A: 1\n\nbody"], 5),
    ([b"A: 1\r\n\r\nbody"], 6),
    ([b"\nbody only"], 0),
    ([b"\r\nbody only"], 0),
    ([b"A: 1\n", b"\n", b"body"], 5),
    ([b"A: 1\r", b"\n\r", b"\nbody"], 6),
    ([b"A: 1\n", b"B: 2\n"], 10),
    ([b"A: 1\nB: 2\n\nC: 3\n\n"], 10),
])
def test_header_end_found_across_writes(pieces: list[bytes], header: int) -> None:
    qf = read_queue_file(io.BytesIO(build(pieces)))
    assert qf.header_size == header


def test_large_content_is_chunked_and_checked() -> None:
    content = bytes(range(256)) * (3 * CHUNK_SIZE // 256) + b"tail"
    data = build([content[:1000], content[1000:CHUNK_SIZE + 7], content[CHUNK_SIZE + 7:]])
    records = list(iter_records(io.BytesIO(data)))
    chunks = [r for r in records if r.type is RecordType.CONTENT]
    assert [len(c.data) for c in chunks] == [CHUNK_SIZE] * 3 + [4]
    qf = read_queue_file(io.BytesIO(data))
    assert b"".join(iter_content(io.BytesIO(data), qf)) == content
    assert read_queue_file(io.BytesIO(data), verify_content=False) == qf


def test_every_truncation_is_detected() -> None:
    data = build(SAMPLE)
    for length in range(len(data)):
        for verify in (True, False):
            with pytest.raises(CorruptQueueFile):
                read(data[:length], verify)


def test_truncation_of_a_large_file_is_detected() -> None:
    # Cuts inside content chunks (which the envelope-only mode seeks over)
    # and in the extracted segment, in both modes.
    content = bytes(range(256)) * (3 * CHUNK_SIZE // 256)
    data = build(content)
    cuts = {1 << 16, (1 << 16) - 1, (1 << 16) + 1, CHUNK_SIZE + 5, 2 * CHUNK_SIZE, len(data) - 10, len(data) - 1}
    for length in sorted(cuts):
        for verify in (True, False):
            with pytest.raises(CorruptQueueFile):
                read(data[:length], verify)
    for verify in (True, False):
        with pytest.raises(CorruptQueueFile, match="data after end"):
            read(data + b"x", verify)


class _Pipe(io.RawIOBase):
    """A stream that cannot seek, as standard input from a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), len(self._data))
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


def test_unseekable_stream_reads_and_checks_the_same() -> None:
    # Content chunks larger than the reader's block are read away instead of
    # seeked over; a record that straddles two blocks is put together.
    content = bytes(range(256)) * (3 * CHUNK_SIZE // 256) + b"tail"
    data = build(content)
    for verify in (True, False):
        stream = io.BufferedReader(_Pipe(data))
        assert not stream.seekable()
        assert read_queue_file(stream, verify_content=verify) == read(data, verify)
        for length in (CHUNK_SIZE + 5, 2 * CHUNK_SIZE, len(data) - 10, len(data) - 1):
            with pytest.raises(CorruptQueueFile):
                read_queue_file(io.BufferedReader(_Pipe(data[:length])), verify_content=verify)
        with pytest.raises(CorruptQueueFile, match="data after end"):
            read_queue_file(io.BufferedReader(_Pipe(data + b"x")), verify_content=verify)


def test_attributes_share_one_record_and_read_back() -> None:
    out = bytearray()
    writer = QueueFileWriter(out.extend, (1700000000, 0))
    writer.sender("s@example.org")
    writer.attributes([("client_name", "mx.example"), ("helo_name", "mx"), ("sasl_username", "")])
    writer.attribute("log_ident", "x=y")
    writer.recipient("r@example.com")
    writer.write_content(SAMPLE)
    offset, record = writer.finish()
    out[offset:offset + len(record)] = record
    attrs = [r.data for r in iter_records(io.BytesIO(bytes(out))) if r.type is RecordType.ATTR]
    assert attrs == [b"client_name=mx.example\0helo_name=mx\0sasl_username=", b"log_ident=x=y"]
    qf = read_queue_file(io.BytesIO(bytes(out)))
    assert qf.attributes == {"client_name": "mx.example", "helo_name": "mx", "sasl_username": "",
                             "log_ident": "x=y"}


def test_attributes_beyond_one_record_are_split() -> None:
    out = bytearray()
    writer = QueueFileWriter(out.extend, (1700000000, 0))
    writer.sender("s@example.org")
    pairs = [(f"name{i}", "v" * 20000) for i in range(5)]
    writer.attributes(pairs)
    writer.recipient("r@example.com")
    writer.write_content(SAMPLE)
    offset, record = writer.finish()
    out[offset:offset + len(record)] = record
    attrs = [r.data for r in iter_records(io.BytesIO(bytes(out))) if r.type is RecordType.ATTR]
    assert len(attrs) == 2 and all(len(a) <= ENVELOPE_MAX for a in attrs)
    assert read_queue_file(io.BytesIO(bytes(out))).attributes == dict(pairs)


def test_malformed_attribute_among_several_is_corrupt() -> None:
    out = bytearray()
    writer = QueueFileWriter(out.extend, (1700000000, 0))
    writer.sender("s@example.org")
    writer.attributes([("a", "1"), ("b", "2")])
    writer.recipient("r@example.com")
    writer.write_content(SAMPLE)
    offset, record = writer.finish()
    out[offset:offset + len(record)] = record
    data = bytes(out)
    attr = next(r for r in iter_records(io.BytesIO(data)) if r.type is RecordType.ATTR)
    for bad in (b"a=1\0b_2", b"a=1\0=bb", b"a=1\r\nb"):
        damaged = data[:attr.offset] + encode_record(RecordType.ATTR, bad) + data[attr.offset + 9 + len(bad):]
        with pytest.raises(CorruptQueueFile, match="malformed attribute|control character"):
            read(damaged)
    fresh = QueueFileWriter(bytearray().extend, (1, 2))
    with pytest.raises(ValueError, match="control character"):
        fresh.attributes([("a", "1\0b=2")])


def test_every_flipped_bit_is_detected() -> None:
    data = build(SAMPLE)
    for position in range(len(data)):
        for mask in (0x01, 0x20, 0x80):
            damaged = bytearray(data)
            damaged[position] ^= mask
            with pytest.raises(CorruptQueueFile):
                read(bytes(damaged))


def test_flipped_content_found_when_streaming_content() -> None:
    data = bytearray(build(SAMPLE))
    qf = read_queue_file(io.BytesIO(bytes(data)))
    data[qf.content_offset + 9] ^= 0x04
    # The envelope-only fast path cannot see it; streaming the content does.
    qf2 = read_queue_file(io.BytesIO(bytes(data)), verify_content=False)
    with pytest.raises(CorruptQueueFile, match="checksum"):
        b"".join(iter_content(io.BytesIO(bytes(data)), qf2))


def _reframe(data: bytes, at: int, new_type: bytes) -> bytes:
    """Change a record's type and recompute its CRC, as a buggy writer might."""
    length = struct.unpack(">I", data[at + 1:at + 5])[0]
    body = data[at + 5:at + 5 + length]
    head = new_type + data[at + 1:at + 5]
    crc = zlib.crc32(body, zlib.crc32(head[1:], zlib.crc32(new_type)))
    return data[:at] + head + body + struct.pack(">I", crc) + data[at + 9 + length:]


def test_unknown_and_misplaced_record_types() -> None:
    data = build(SAMPLE)
    sender = next(r for r in iter_records(io.BytesIO(data)) if r.type is RecordType.SENDER)
    with pytest.raises(CorruptQueueFile, match="unknown record type"):
        read(_reframe(data, sender.offset, b"Z"))
    # A content chunk in the envelope segment is out of place.
    with pytest.raises(CorruptQueueFile, match="unexpected record type"):
        read(_reframe(data, sender.offset, b"B"))


def test_required_records_and_end_marker() -> None:
    data = build(SAMPLE)
    with pytest.raises(CorruptQueueFile, match="data after end"):
        read(data + b"x")
    with pytest.raises(CorruptQueueFile, match="not a queue file"):
        read(b"From: someone\n\nhello\n")
    with pytest.raises(CorruptQueueFile):
        read(b"")
    records = list(iter_records(io.BytesIO(data)))
    sender = next(r for r in records if r.type is RecordType.SENDER)
    without_sender = data[:sender.offset] + data[sender.offset + 9 + len(sender.data):]
    with pytest.raises(CorruptQueueFile, match="sender record missing"):
        read(without_sender)


def test_length_prefix_is_bounded() -> None:
    data = build(SAMPLE)
    sender = next(r for r in iter_records(io.BytesIO(data)) if r.type is RecordType.SENDER)
    huge = data[:sender.offset + 1] + struct.pack(">I", 1 << 30) + data[sender.offset + 5:]
    with pytest.raises(CorruptQueueFile, match="exceeds"):
        read(huge)


def test_size_record_must_agree() -> None:
    out = bytearray()
    writer = QueueFileWriter(out.extend, (1, 2))
    writer.sender("s@x")
    writer.recipient("r@x")
    writer.write_content(b"hello\n")
    offset, _record = writer.finish()
    wrong = encode_record(RecordType.SIZE, b"%15d %15d %15d %15d %15d %15d" % (7, writer.content_offset, 1, 0, 7, 0))
    out[offset:offset + len(wrong)] = wrong
    with pytest.raises(CorruptQueueFile, match="content size"):
        read(bytes(out), verify=False)


def test_writer_refuses_bad_input() -> None:
    writer = QueueFileWriter(bytearray().extend, (1, 2))
    with pytest.raises(ValueError):
        writer.write_content(b"no sender yet")
    with pytest.raises(ValueError):
        writer.sender("a@b\r\nRCPT TO:<x@y>")
    with pytest.raises(ValueError):
        writer.attribute("bad name", "x")
    writer.sender("a@b")
    writer.write_content(b"x")
    with pytest.raises(ValueError):
        writer.sender("late@b")
