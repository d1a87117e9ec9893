"""Line framing and message-content framing, independent of chunking."""

from __future__ import annotations

import random

import pytest

from mailhorn.smtp.data import BdatReader, DataReader, DataStatus
from mailhorn.smtp.lines import Line, LineFramer


def frame_lines(data: bytes, sizes: list[int], limit: int = 2048) -> list[Line]:
    framer = LineFramer(limit)
    buf = bytearray()
    out: list[Line] = []
    pos = 0
    for size in sizes + [len(data)]:
        buf += data[pos : pos + size]
        pos += size
        while (line := framer.take(buf)) is not None:
            out.append(line)
        assert len(buf) < limit
    return out


def test_lines_crlf_and_bare_lf() -> None:
    lines = frame_lines(b"A\r\nB\nC\r\r\n\r\n", [])
    assert lines == [
        Line(b"A", False, False), Line(b"B", True, False),
        Line(b"C\r", False, False), Line(b"", False, False),
    ]


def test_overlong_line_truncated_and_rest_skipped() -> None:
    data = b"NOOP " + b"x" * 100 + b"\r\nQUIT\r\n"
    expected = [Line(b"NOOP " + b"x" * 11, False, True), Line(b"QUIT", False, False)]
    assert frame_lines(data, [], limit=16) == expected
    assert frame_lines(data, [1] * len(data), limit=16) == expected
    # exactly at the limit, CRLF included, is not truncated
    assert frame_lines(b"x" * 14 + b"\r\n", [], limit=16) == [Line(b"x" * 14, False, False)]


def test_line_framer_rejects_tiny_limit() -> None:
    with pytest.raises(ValueError):
        LineFramer(2)


def read_data(data: bytes, sizes: list[int], mode: str = "normalize", chunk: int = 7) -> tuple[bytes, DataStatus, bytes]:
    reader = DataReader(mode, chunk)
    buf = bytearray()
    out = bytearray()
    pos = 0
    status = DataStatus.MORE
    for size in sizes + [len(data)]:
        buf += data[pos : pos + size]
        pos += size
        while True:
            piece, status = reader.take(buf)
            assert len(piece) <= chunk + 2
            out += piece
            if status is not DataStatus.MORE or not piece:
                break
        if status is not DataStatus.MORE:
            break
    return bytes(out), status, bytes(buf) + data[pos:]


CASES = [
    (b"hello\r\n.\r\nNEXT", b"hello\r\n", DataStatus.END, b"NEXT"),
    (b".\r\n", b"", DataStatus.END, b""),
    (b"..\r\n.\r\n", b".\r\n", DataStatus.END, b""),
    (b"a\n.\nb\r\n.\r\n", b"a\r\n\r\nb\r\n", DataStatus.END, b""),
    (b"a\n.\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n", DataStatus.END, b""),
    (b"a\r.\r\r\n.\r\n", b"a\r.\r\r\n", DataStatus.END, b""),
    (b"long line without end " * 5 + b"\r\n.\r\n", b"long line without end " * 5 + b"\r\n", DataStatus.END, b""),
    (b"x\r\r\r\r\n.\r\n", b"x\r\r\r\r\n", DataStatus.END, b""),
]


@pytest.mark.parametrize(("data", "content", "status", "rest"), CASES)
def test_data_reader_any_chunking(data: bytes, content: bytes, status: DataStatus, rest: bytes) -> None:
    assert read_data(data, []) == (content, status, rest)
    assert read_data(data, [1] * len(data)) == (content, status, rest)
    rng = random.Random(len(data))
    for _ in range(50):
        sizes = [rng.randint(1, 5) for _ in range(len(data))]
        assert read_data(data, sizes, chunk=rng.randint(1, 9)) == (content, status, rest)


def test_data_reader_reject_mode() -> None:
    content, status, _ = read_data(b"ok\r\nbad\nmore\r\n.\r\n", [], mode="reject")
    assert status is DataStatus.BARE_NEWLINE
    assert content.startswith(b"ok\r\n")


def test_data_reader_bad_mode() -> None:
    with pytest.raises(ValueError):
        DataReader("sometimes")


def test_bdat_exact_counts() -> None:
    data = b"0123456789BDAT 0 LAST\r\n"
    for sizes in ([], [1] * len(data), [3, 4, 5]):
        reader = BdatReader(10, chunk_size=4)
        buf = bytearray()
        got = bytearray()
        pos = 0
        for size in sizes + [len(data)]:
            buf += data[pos : pos + size]
            pos += size
            while not reader.done and (piece := reader.take(buf)):
                assert len(piece) <= 4
                got += piece
        assert got == b"0123456789" and reader.done
        assert bytes(buf) == b"BDAT 0 LAST\r\n"
