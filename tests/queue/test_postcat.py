"""postcat: output format, compared with the real Postfix postcat where it exists.

The Postfix oracle reads Postfix's own queue format, so each test converts
the mailhorn queue file record by record into Postfix's format (the same
letters; content chunks become one ``N`` record per line) and expects the
same output from both programs.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

import pytest

from mailhorn.cli import postcat
from mailhorn.queue.queuefile import RecordType, iter_records, split_attributes
from mailhorn.queue.store import QueueStore
from tests.conftest import run_postfix
from tests.queue.util import make_store, write_sample

CONTENT = (b"Received: from client.example (localhost [127.0.0.1])\r\n"
           b"\tby mail.example with ESMTP\r\n"
           b"Subject: a test\r\n"
           b"\r\n"
           b"first body line\r\n"
           b"\r\n"
           b"last line without newline")


def _postfix_record(rtype: bytes, data: bytes) -> bytes:
    out = bytearray(rtype)
    length = len(data)
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out) + data


def to_postfix(path: str) -> bytes:
    """The same queue file in Postfix's record format.

    The size record is rebuilt with Postfix's offsets (content size between
    the ``M`` and ``X`` records, offset of the first content record), as
    Postfix's postcat navigates by them.
    """
    records: list[tuple[bytes, bytes]] = []
    content = bytearray()
    with open(path, "rb") as stream:
        for rec in iter_records(stream):
            if rec.type is RecordType.VERSION:
                continue
            if rec.type is RecordType.CONTENT:
                content += rec.data
                continue
            if rec.type is RecordType.EXTRACTED:
                lines = bytes(content).split(b"\n")
                if content.endswith(b"\n"):
                    lines.pop()
                records += [(b"N", line.removesuffix(b"\r")) for line in lines]
            if rec.type is RecordType.ATTR:
                # Postfix has one record per attribute.
                records += [(b"A", f"{name}={value}".encode()) for name, value in split_attributes(rec)]
                continue
            records.append((rec.type.value, rec.data))
    encoded = [_postfix_record(t, d) for t, d in records]
    types = [t for t, _d in records]
    start = types.index(b"M") + 1
    end = types.index(b"X")
    data_offset = sum(len(e) for e in encoded[:start])
    content_size = sum(len(e) for e in encoded[start:end])
    fields = records[0][1].split()
    size = b"%15d %15d %15d %15d %15d %15d" % (content_size, data_offset, int(fields[2]), 0,
                                              int(fields[4]), int(fields[5]))
    encoded[0] = _postfix_record(b"C", size)
    return b"".join(encoded)


def _without_size_line(text: str) -> str:
    """The output less the message_size line, whose offsets are format-specific."""
    return "".join(line for line in text.splitlines(keepends=True) if "message_size: " not in line)


def ours(argv: list[str], capfdbinary: pytest.CaptureFixture[bytes]) -> tuple[int, bytes, bytes]:
    status = postcat.run(argv)
    out, err = capfdbinary.readouterr()
    return status, out, err


@pytest.fixture()
def queued(tmp_path: Path) -> tuple[QueueStore, str, Path]:
    store = make_store(tmp_path)
    qid = write_sample(store, content=CONTENT)
    store.move(qid, "incoming", "deferred")
    confdir = tmp_path / "conf"
    confdir.mkdir()
    (confdir / "main.cf").write_text(f"queue_directory = {store.root}\n")
    return store, qid, confdir


@pytest.mark.oracle
@pytest.mark.parametrize("flags", [[], ["-e"], ["-h"], ["-b"], ["-bh"], ["-eh"], ["-d"], ["-ed"]])
def test_same_output_as_postfix(queued: tuple[QueueStore, str, Path], flags: list[str],
                                tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    store, qid, confdir = queued
    # Each program reads the same relative name from its own queue directory.
    theirs_dir = tmp_path / "theirs"
    theirs_dir.mkdir()
    theirs_conf = tmp_path / "theirs-conf"
    theirs_conf.mkdir()
    (theirs_conf / "main.cf").write_text(f"queue_directory = {theirs_dir}\n")
    name = f"deferred/{qid[0]}/{qid}"
    (theirs_dir / "deferred").mkdir()
    (theirs_dir / "deferred" / qid[0]).mkdir()
    (theirs_dir / name).write_bytes(to_postfix(store.path("deferred", qid)))
    expected = subprocess.run(
        [_postcat(), "-c", str(theirs_conf), *flags, name], capture_output=True, cwd=theirs_dir,
        env={k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"})
    assert expected.returncode == 0 and expected.stderr == b"", expected.stderr
    cwd = os.getcwd()
    os.chdir(store.root)
    try:
        status, out, err = ours(["-c", str(confdir), *flags, name], capfdbinary)
    finally:
        os.chdir(cwd)
    assert (status, err) == (0, b"")
    # Byte for byte, except the size record: both print it as Postfix's
    # fixed-width columns, but the offsets in it belong to each format.
    assert _without_size_line(out.decode()) == _without_size_line(expected.stdout.decode())
    size_lines = [line for line in out.decode().splitlines() if "message_size: " in line]
    if "-e" in flags or len(flags) == 0 or flags == ["-d"]:
        assert len(size_lines) == 1
        assert re.fullmatch(r"( *\d+ )?message_size:( {1,15}\d{1,15}){6}", size_lines[0]), size_lines


def _postcat() -> str:
    result = run_postfix("postconf", "-h", "command_directory")
    return os.path.join(result.stdout.strip() or "/usr/sbin", "postcat")


def test_queue_search_and_verbose(queued: tuple[QueueStore, str, Path],
                                  capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    store, qid, confdir = queued
    status, out, err = ours(["-c", str(confdir), "-q", "-v", qid], capfdbinary)
    assert status == 0
    text = out.decode()
    assert text.startswith(f"*** ENVELOPE RECORDS deferred/{qid[0]}/{qid} ***\n")
    assert "regular_text: Subject: a test\n" in text
    assert "regular_text: last line without newline\n" in text
    assert text.endswith(f"*** MESSAGE FILE END deferred/{qid[0]}/{qid} ***\n")


def test_offsets_and_missing_queue_file(queued: tuple[QueueStore, str, Path],
                                        capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    store, qid, confdir = queued
    status, out, _err = ours(["-c", str(confdir), "-q", "-o", "-e", qid], capfdbinary)
    first = out.decode().splitlines()[1]
    assert first.startswith("       25 message_size: ")
    with pytest.raises(SystemExit) as info:
        postcat.run(["-c", str(confdir), "-q", "ABCDEF123"])
    assert info.value.code == 1
    assert b"postcat: fatal: open queue file ABCDEF123: No such file or directory" in capfdbinary.readouterr().err


def test_damaged_files_are_reported(queued: tuple[QueueStore, str, Path], tmp_path: Path,
                                    capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    store, qid, _confdir = queued
    junk = tmp_path / "junk"
    junk.write_bytes(b"From: x\n\nnot a queue file\n")
    status, out, err = ours([str(junk)], capfdbinary)
    assert status == 1 and out == b""
    assert err == f"postcat: warning: {junk}: input is not a valid queue file\n".encode()
    data = Path(store.path("deferred", qid)).read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[:-20])
    status, out, err = ours([str(cut)], capfdbinary)
    assert status == 1
    assert out.startswith(f"*** ENVELOPE RECORDS {cut} ***\n".encode())
    assert b"MESSAGE FILE END" not in out
    assert err.startswith(f"postcat: warning: {cut}: corrupt queue file: ".encode())


def test_usage(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    with pytest.raises(SystemExit) as info:
        postcat.run(["-x"])
    assert info.value.code == 1
    assert b"postcat: fatal: usage: postcat" in capfdbinary.readouterr().err


def test_reads_standard_input(queued: tuple[QueueStore, str, Path], monkeypatch: pytest.MonkeyPatch,
                              capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    store, qid, _confdir = queued
    data = Path(store.path("deferred", qid)).read_bytes()

    class Stdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr("sys.stdin", Stdin)
    status, out, _err = ours(["-h"], capfdbinary)
    assert status == 0
    assert out == (b"Received: from client.example (localhost [127.0.0.1])\n"
                   b"\tby mail.example with ESMTP\nSubject: a test\n")
