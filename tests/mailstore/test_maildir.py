"""Delivery, listing, flags, keywords and the uidlist on real files."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.mailstore import uidlist
from mailhorn.mailstore.errors import CorruptFile, DiskFull, LockTimeout, NoSuchFolder
from mailhorn.mailstore.lock import DotLock
from mailhorn.mailstore.maildir import Mailbox, parse_name
from mailhorn.mailstore.writer import clean_tmp, deliver
from tests.conftest import require

NAME_RE = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.([^,:/]+),S=(\d+),W=(\d+)$")


def test_delivery_name_sizes_and_durable_layout(tmp_path: Path) -> None:
    body = b"From: a@b\nSubject: x\n\nline\r\nbare\n"
    d = deliver(tmp_path / "Maildir", io.BytesIO(body))
    m = NAME_RE.match(d.filename)
    assert m, d.filename
    assert int(m.group(3)) == os.getpid()
    assert m.group(5) == socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    assert d.size == len(body) == int(m.group(6))
    assert d.vsize == len(body) + 4 == int(m.group(7))  # four bare LFs become CRLF
    assert d.path.parent == tmp_path / "Maildir" / "new"
    assert d.path.read_bytes() == body
    assert list((tmp_path / "Maildir" / "tmp").iterdir()) == []
    assert (d.path.stat().st_mode & 0o777) == 0o600


def test_vsize_counts_crlf_split_across_chunks(tmp_path: Path) -> None:
    chunks = [b"a\r", b"\nb\n", b"\r", b"\n", b"c"]
    d = deliver(tmp_path, iter(chunks))
    assert d.size == 8 and d.vsize == 9  # only the LF after "b" is bare


def test_large_message_streams(tmp_path: Path) -> None:
    def gen() -> Iterator[bytes]:
        line = b"x" * 99 + b"\n"
        for _ in range(2000):
            yield line * 100  # 20 MB in 10 kB chunks
    d = deliver(tmp_path, gen())
    assert d.size == 20_000_000 == d.path.stat().st_size
    assert d.vsize == 20_200_000


def test_flags_at_delivery_go_to_cur(tmp_path: Path) -> None:
    d = deliver(tmp_path, io.BytesIO(b"x\n"), flags="TSF")
    assert d.path.parent.name == "cur"
    assert d.filename.endswith(":2,FST")
    d2 = deliver(tmp_path, io.BytesIO(b"y\n"), flags="S", keywords=["$Junk", "Work"])
    assert d2.filename.endswith(":2,Sab")
    assert (tmp_path / "dovecot-keywords").read_text() == "0 $Junk\n1 Work\n"
    with pytest.raises(ValueError):
        deliver(tmp_path, io.BytesIO(b"z\n"), flags="X")
    with pytest.raises(ValueError):
        deliver(tmp_path, io.BytesIO(b"z\n"), keywords=["bad word"])
    assert len(list((tmp_path / "new").iterdir())) + len(list((tmp_path / "cur").iterdir())) == 2


def test_failed_delivery_leaves_nothing(tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield b"From: a@b\n\npartial"
        raise ConnectionResetError("client went away")
    deliver(tmp_path, io.BytesIO(b"ok\n"))
    with pytest.raises(ConnectionResetError):
        deliver(tmp_path, broken())
    assert list((tmp_path / "tmp").iterdir()) == []
    assert len(list((tmp_path / "new").iterdir())) == 1


def test_parse_name_keeps_dovecot_extension_field() -> None:
    info = parse_name("1035478339.27041_118.foo.org,S=1000,W=1030:2,ST,xyz")
    assert (info.size, info.vsize, info.flags, info.extra) == (1000, 1030, "ST", ",xyz")
    plain = parse_name("1035478339.27041_118.foo.org")
    assert (plain.size, plain.vsize, plain.flags) == (None, None, "")


def test_sync_assigns_uids_in_delivery_order_and_keeps_them(tmp_path: Path) -> None:
    names = ["1700000002.M5P1.h", "1700000001.M900000P1.h", "1700000001.M10P1.h", "1600000000.qmail.h"]
    for n in names:
        (tmp_path / "new").mkdir(parents=True, exist_ok=True)
        (tmp_path / "cur").mkdir(exist_ok=True)
        (tmp_path / "tmp").mkdir(exist_ok=True)
        (tmp_path / "new" / n).write_bytes(b"m\n")
    box = Mailbox(tmp_path)
    listed = box.sync()
    assert [(m.uid, m.base) for m in listed] == [
        (1, "1600000000.qmail.h"), (2, "1700000001.M10P1.h"),
        (3, "1700000001.M900000P1.h"), (4, "1700000002.M5P1.h")]
    text = (tmp_path / "dovecot-uidlist").read_text()
    header = text.split("\n")[0]
    assert re.fullmatch(rf"3 V{box.uidvalidity} N5 G[0-9a-f]{{32}}", header)
    assert text.split("\n")[1:] == ["1 :1600000000.qmail.h", "2 :1700000001.M10P1.h",
                                    "3 :1700000001.M900000P1.h", "4 :1700000002.M5P1.h", ""]
    # Reopen: same UIDs; a flag change (new -> cur) keeps the UID; new mail gets 5.
    again = Mailbox(tmp_path)
    moved = again.set_flags(again.sync()[1], add="S")
    assert moved.uid == 2 and moved.path.parent.name == "cur" and moved.path.name.endswith(":2,S")
    deliver(tmp_path, io.BytesIO(b"new\n"))
    third = Mailbox(tmp_path).sync()
    assert [m.uid for m in third] == [1, 2, 3, 4, 5]
    assert third[1].flags == "S"
    assert Mailbox(tmp_path).sync()[4].uid == 5
    # Expunge rewrites the list; UIDs are never reused.
    Mailbox(tmp_path).expunge([third[0], third[4]])
    fourth = Mailbox(tmp_path)
    assert [m.uid for m in fourth.sync()] == [2, 3, 4]
    assert fourth.next_uid == 6
    deliver(tmp_path, io.BytesIO(b"after\n"))
    assert [m.uid for m in Mailbox(tmp_path).sync()] == [2, 3, 4, 6]


def test_files_removed_behind_our_back_are_forgotten(tmp_path: Path) -> None:
    for n in range(3):
        deliver(tmp_path, io.BytesIO(b"%d\n" % n))
    first = Mailbox(tmp_path).sync()
    first[1].path.unlink()
    assert [m.uid for m in Mailbox(tmp_path).sync()] == [1, 3]
    assert "2 :" not in (tmp_path / "dovecot-uidlist").read_text()


def test_set_flags_follows_a_concurrent_rename(tmp_path: Path) -> None:
    deliver(tmp_path, io.BytesIO(b"x\n"))
    box = Mailbox(tmp_path)
    msg = box.sync()[0]
    # Another process marks it seen first: our Message has a stale path.
    os.rename(msg.path, tmp_path / "cur" / (msg.base + ":2,S"))
    updated = box.set_flags(msg, add="F", add_keywords=["$Label1"], remove_keywords=["none"])
    assert updated.path.name == msg.base + ":2,FSa" and updated.uid == msg.uid
    assert updated.keywords == ("$Label1",)
    assert b"".join(box.read(msg)) == b"x\n"  # reading follows the rename too
    cleared = box.set_flags(updated, remove="FS", remove_keywords=["$Label1"])
    assert cleared.path.name == msg.base + ":2,"
    assert cleared.flags == "" and cleared.keywords == ()


def test_message_listing_fields(tmp_path: Path) -> None:
    d = deliver(tmp_path, io.BytesIO(b"a\nb\n"), internal_date=1_000_000_000.0)
    msg = Mailbox(tmp_path).sync()[0]
    assert (msg.size, msg.vsize, msg.internal_date) == (d.size, d.vsize, 1_000_000_000.0)
    assert msg.recent_dir and msg.flags == "" and msg.imap_flags() == ()
    with pytest.raises(NoSuchFolder):
        Mailbox(tmp_path, "Missing").sync()


def test_uidlist_formats() -> None:
    parsed = uidlist.parse(
        b"3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1 Xextra\n"
        b"25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n"
        b"25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n"
        b"garbage line\n"
        b"25018 :half-written")
    assert (parsed.uidvalidity, parsed.next_uid, parsed.guid) == (1275660208, 25022, "3085f01b7f11094c501100008c4a11c1")
    assert [(r.uid, r.ext, r.base) for r in parsed.records] == [
        (25006, "", "1276528487.M364837P9451.kurkku,S=1355,W=1394"),
        (25017, "W2481", "1276533073.M242911P3632.kurkku")]
    assert parsed.render() == (
        b"3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1 Xextra\n"
        b"25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n"
        b"25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n")
    courier = uidlist.parse(b"1 1100000000 7\n5 1100000001.1234.host\n")
    assert courier.uidvalidity == 1100000000 and courier.records[0].base == "1100000001.1234.host"
    appended = uidlist.parse(b"3 V1 N2 Gab\n1 :a\n2 :b\n9 :c\n")
    assert appended.effective_next_uid() == 10
    for bad in (b"", b"9 V1\n", b"3 Vx N1\n", b"3 N5\n"):
        with pytest.raises(CorruptFile):
            uidlist.parse(bad)


def test_vsize_from_uidlist_extension_field(tmp_path: Path) -> None:
    for d in ("cur", "new", "tmp"):
        (tmp_path / d).mkdir()
    (tmp_path / "cur" / "1276533073.M242911P3632.kurkku:2,F").write_bytes(b"abc\n")
    (tmp_path / "dovecot-uidlist").write_bytes(b"3 V5 N18 G00\n17 W2481 :1276533073.M242911P3632.kurkku:2,F\n")
    msg = Mailbox(tmp_path).sync()[0]
    assert (msg.uid, msg.size, msg.vsize, msg.flags) == (17, 4, 2481, "F")


def test_dotlock_content_stale_and_timeout(tmp_path: Path) -> None:
    target = tmp_path / "dovecot-uidlist"
    with DotLock(target) as lock:
        content = (tmp_path / "dovecot-uidlist.lock").read_text()
        assert content == f"{os.getpid()}:{socket.gethostname()}"
        with pytest.raises(LockTimeout):
            DotLock(target, timeout=0.2).acquire()
        assert lock.held
    assert not (tmp_path / "dovecot-uidlist.lock").exists()
    # A lock left by a dead local process is broken at once.
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    (tmp_path / "dovecot-uidlist.lock").write_text(f"{pid}:{socket.gethostname()}")
    with DotLock(target, timeout=1):
        pass
    # An old lock of unknown owner is stale after the timeout (mtime in the past).
    (tmp_path / "dovecot-uidlist.lock").write_text("")
    os.utime(tmp_path / "dovecot-uidlist.lock", (0, 0))
    with DotLock(target, timeout=1):
        pass
    # A fresh lock of another host is respected.
    (tmp_path / "dovecot-uidlist.lock").write_text("1:elsewhere.example")
    with pytest.raises(LockTimeout):
        DotLock(target, timeout=0.2).acquire()


def test_clean_tmp(tmp_path: Path) -> None:
    deliver(tmp_path, io.BytesIO(b"x\n"))
    old = tmp_path / "tmp" / "1.M1P1.host"
    old.write_bytes(b"partial")
    os.utime(old, (0, 0))
    fresh = tmp_path / "tmp" / "2.M1P1.host"
    fresh.write_bytes(b"in progress")
    later = time.time() + 2 * 3600
    os.utime(fresh, (later, later))
    assert clean_tmp(tmp_path, max_age=3600) == 0  # ctime is recent for both
    assert clean_tmp(tmp_path, max_age=3600, now=later) == 1
    assert not old.exists() and fresh.exists()
    assert len(list((tmp_path / "new").iterdir())) == 1


def test_disk_full_is_a_distinct_error_and_leaves_nothing(tmp_path: Path) -> None:
    """A real full file system: a 64 kB tmpfs mounted inside the test's directory."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode == 0
    require(mounted, "mounting a small tmpfs needs root")
    try:
        root = mnt / "Maildir"
        deliver(root, io.BytesIO(b"small\n"))
        with pytest.raises(DiskFull):
            deliver(root, io.BytesIO(b"z" * 200_000))
        assert list((root / "tmp").iterdir()) == []
        assert len(list((root / "new").iterdir())) == 1
        deliver(root, io.BytesIO(b"still room for this\n"))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
