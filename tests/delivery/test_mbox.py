"""mbox appends and the From_ line/quoting, independent of users and queues."""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.delivery import headers, mbox


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 64])
def test_from_quoting_across_chunk_boundaries(size: int) -> None:
    text = b"From a\nx From b\nFrom c\nFro\nFrom\n>From d\nFrom "
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
    assert b"".join(headers.quote_from(chunks)) == (
        b">From a\nx From b\n>From c\nFro\nFrom\n>From d\n>From ")


def test_prepend_headers_order_and_quoting() -> None:
    assert headers.prepend_headers(sender="a b@x", orig_rcpt="O@x", delivered="User@X") == (
        b'Return-Path: <"a b"@x>\nX-Original-To: O@x\nDelivered-To: user@x\n')
    assert headers.prepend_headers(sender="", orig_rcpt=None, delivered=None) == b"Return-Path: <>\n"
    assert headers.from_line("", 0).startswith(b"From MAILER-DAEMON  ")


def test_failed_append_truncates_back(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(b"From x  Thu Jan  1 00:00:00 1970\nold\n\n")

    def pieces() -> Iterator[bytes]:
        yield b"From y  Thu Jan  1 00:00:00 1970\n"
        yield b"partial"
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError):
        mbox.append(str(box), pieces(), locks=mbox.LockSettings(attempts=1, delay=0.01))
    assert box.read_bytes() == b"From x  Thu Jan  1 00:00:00 1970\nold\n\n"
    assert not (tmp_path / "box.lock").exists()


def test_size_limit_and_symlink(tmp_path: Path) -> None:
    box = tmp_path / "box"
    with pytest.raises(OSError) as info:
        mbox.append(str(box), [b"x" * 100], size_limit=50)
    assert info.value.errno == errno.EFBIG and box.read_bytes() == b""
    (tmp_path / "link").symlink_to(box)
    with pytest.raises(mbox.MboxFileError):
        mbox.append(str(tmp_path / "link"), [b"x"])


def test_locked_mailbox_is_a_temporary_failure(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(b"")
    # Another process holds the fcntl lock until its stdin closes.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()", str(box)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(mbox.MboxLockError):
            mbox.append(str(box), [b"x"], locks=mbox.LockSettings(("fcntl",), attempts=2, delay=0.01))
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert box.read_bytes() == b""
